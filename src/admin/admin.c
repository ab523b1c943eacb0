/* The admin server: a small HTTP/1.1 server on the control thread for operators and probes.
 *   /ambassador/v0/check_alive   200 while the process runs
 *   /ambassador/v0/check_ready   200 once a configuration is live, else 503
 *   /ambassador/v0/diag/         the resources in force with their errors and notices (JSON)
 *   /metrics                     Prometheus text (observe/metrics.c)
 * One request per connection. The control thread also reloads the configuration, so nothing here
 * may wait on a client: sockets are non-blocking, each connection keeps its request and its
 * response until they are read and written, a connection that stalls is closed after the
 * timeout, and at most max_connections are open (more are closed as soon as accepted). Never on
 * the data path; main.c starts it. */
#include "admin/admin.h"
#include "control/reload.h"
#include "model/snapshot-t.h"
#include "cluster/health.h"
#include "core/log.h"
#include "observe/stats.h"
#include "core/loop.h"
#include "http/h1.h"
#include "observe/metrics.h"
#include "sources/kubernetes.h"
#include "tls/tls.h"

#include <jansson.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define PT_ADMIN_REQ_MAX 16384
#define PT_ADMIN_WARMING_MS 5000
#define PT_ADMIN_ACCEPT_BATCH 64    /* accepts per wake-up; then the listener is re-armed */
#define PT_ADMIN_PAUSE_MS 250       /* no accepting after EMFILE, ENFILE, ENOBUFS or ENOMEM */
#define PT_ADMIN_WARN_MS 10000      /* at most one warning about refused connections in this time */

/* One admin connection: reading its request into <buf>, then writing <head> and <body>. */
struct admin_conn {
    struct pt_io io;
    struct pt_timer timer;  /* the head's deadline, then the write idle timeout */
    bool responding;        /* the request was read; the response is being written */
    size_t len;             /* bytes in buf */
    size_t sent;            /* bytes of head, then body, written */
    size_t head_len, body_len;
    const char *body;       /* body_owned, or a string literal */
    char *body_owned;       /* malloc'ed body, freed with the connection */
    char head[256];
    char buf[PT_ADMIN_REQ_MAX];
};

static struct {
    struct pt_loop *loop;
    struct pt_admin_opts opts;
    struct pt_io listen_io;
    struct pt_timer pause_timer; /* armed while accepting is paused */
    bool paused;
    uint32_t nconns;
    uint64_t warned_ms;
    uint32_t unwarned;           /* refusals since the last warning */
} admin;

static void conn_close(struct admin_conn *c)
{
    pt_timer_cancel(&c->timer);
    close(c->io.fd);
    free(c->body_owned);
    free(c);
    admin.nconns--;
}

/* Writes what is left of the response without waiting; closes the connection once all of it is
 * out, or on an error. On EAGAIN the edge-triggered EPOLLOUT brings us back here. */
static void send_some(struct admin_conn *c)
{
    for (;;) {
        struct iovec iov[2];
        int n = 0;
        if (c->sent < c->head_len)
            iov[n++] = (struct iovec){ c->head + c->sent, c->head_len - c->sent };
        size_t boff = c->sent > c->head_len ? c->sent - c->head_len : 0;
        if (boff < c->body_len)
            iov[n++] = (struct iovec){ (char *)c->body + boff, c->body_len - boff };
        if (n == 0) {
            conn_close(c);
            return;
        }
        ssize_t w = writev(c->io.fd, iov, n);
        if (w > 0) {
            c->sent += (size_t)w;
            pt_timer_arm(admin.loop, &c->timer, admin.opts.timeout_ms);
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            conn_close(c);
            return;
        }
    }
}

/* Starts the response: <body> of <len> bytes is a string literal, or malloc'ed when <owned>
 * (then the connection frees it). */
static void respond(struct admin_conn *c, int status, const char *ctype, const char *body, size_t len,
                    bool owned)
{
    int n = snprintf(c->head, sizeof(c->head),
                     "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\nconnection: close\r\n\r\n",
                     status, status == 200 ? "OK" : status == 404 ? "Not Found" : status == 503 ? "Service Unavailable" : "Bad Request",
                     ctype, len);
    c->responding = true;
    if (n < 0 || (size_t)n >= sizeof(c->head)) { /* cannot happen with our content types */
        if (owned)
            free((char *)body);
        conn_close(c);
        return;
    }
    c->head_len = (size_t)n;
    c->body = body;
    c->body_len = len;
    c->body_owned = owned ? (char *)body : NULL;
    pt_timer_arm(admin.loop, &c->timer, admin.opts.timeout_ms);
    send_some(c);
}

static bool path_is(struct pt_str path, const char *p)
{
    return pt_str_eq(path, pt_str_c(p));
}

/* endpoint_health: each endpoint of each cluster of <s> with its health now: "healthy" or
 * "unhealthy", and why (failed_active_hc, ejected: passive health). Clusters without
 * health_checks are never checked and always healthy. */
static json_t *endpoint_health(const struct pt_snapshot *s)
{
    json_t *out = json_array();

    for (uint32_t i = 0; s != NULL && i < s->nclusters; i++) {
        const struct pt_cluster *c = s->clusters[i];
        json_t *eps = json_array();
        for (uint32_t k = 0; k < c->nendpoints; k++) {
            uint32_t f = c->health != NULL && k < c->health->n ? pt_health_flags(c->health, k) : 0;
            json_array_append_new(eps, json_pack("{s:s,s:s,s:b,s:b}", "address", c->endpoints[k].name, "health",
                                                 f == 0 ? "healthy" : "unhealthy", "failed_active_hc",
                                                 (f & ~PT_HEALTH_EJECTED) != 0, "ejected",
                                                 (f & PT_HEALTH_EJECTED) != 0));
        }
        json_array_append_new(out, json_pack("{s:s,s:b,s:o}", "name", c->name, "health_checked", c->health != NULL,
                                             "endpoints", eps));
    }
    return out;
}

/* The diag document: the snapshot's (resources, errors, notices, clusters, built when it was
 * compiled) plus what changes without a recompile: the Istio certificate directory and the
 * endpoints' health. */
static char *diag_document(const struct pt_snapshot *s)
{
    json_t *root = s && s->diag_json ? json_loads(s->diag_json, 0, NULL) : NULL;
    const char *dir = getenv("AMBASSADOR_ISTIO_SECRET_DIR");
    char *out;

    if (root == NULL)
        root = json_pack("{s:[],s:[],s:[]}", "resources", "errors", "notices");
    json_object_set_new(root, "ready", json_boolean(s != NULL));
    json_object_set_new(root, "endpoint_health", endpoint_health(s));
    if (pt_kubernetes_state() != NULL)
        json_object_set_new(root, "kubernetes", json_pack("{s:s,s:s}", "state", pt_kubernetes_state(),
                                                          "last_error", pt_kubernetes_last_error()));
    if (dir != NULL && dir[0] != '\0') {
        struct pt_istio_pair p = { 0 };
        bool have = pt_istio_certs_get(&p);
        const char *ns = getenv("AMBASSADOR_NAMESPACE");
        char obj[300];
        snprintf(obj, sizeof(obj), "Secret/%s/istio-certs", ns && ns[0] ? ns : "default");
        json_object_set_new(root, "istio_certs",
                            json_pack("{s:s,s:b,s:s,s:I,s:I,s:s}", "dir", dir, "loaded", have, "serial",
                                      have ? p.serial : "", "not_after", (json_int_t)(have ? p.not_after : 0),
                                      "generation", (json_int_t)p.generation, "error", p.error));
        if (p.error[0] != '\0')
            json_array_append_new(json_object_get(root, "errors"),
                                  json_pack("{s:s,s:s,s:s}", "location", dir, "object", obj, "message", p.error));
        pt_istio_pair_free(&p);
    }
    out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return out ? out : strdup("{}");
}

/* As Envoy's cluster warming: right after start, not ready while a cluster waits for its first
 * DNS answer (a few milliseconds), so that the first requests do not get 503s; never longer
 * than PT_ADMIN_WARMING_MS, so that a name that never answers cannot keep readiness down. */
static bool warming(const struct pt_snapshot *s)
{
    static uint64_t first;
    uint64_t now = pt_now_ms();
    if (first == 0)
        first = now;
    if (now - first > PT_ADMIN_WARMING_MS)
        return false;
    for (uint32_t i = 0; i < s->nclusters; i++)
        if (s->clusters[i]->dns_pending)
            return true;
    return false;
}

/* Answers the request; the connection may be closed when this returns. */
static void handle(struct admin_conn *c, const struct pt_h1_request *req)
{
    struct pt_str path = req->path;
    struct pt_snapshot *s = pt_reload_snapshot();

    if (path_is(path, "/ambassador/v0/check_alive")) {
        static const char ok[] = "Portico is alive and well\n";
        respond(c, 200, "text/plain", ok, sizeof(ok) - 1, false);
    } else if (path_is(path, "/ambassador/v0/check_ready")) {
        static const char ok[] = "Portico is ready and waiting\n", no[] = "Portico is not ready\n";
        if (s != NULL && !warming(s))
            respond(c, 200, "text/plain", ok, sizeof(ok) - 1, false);
        else
            respond(c, 503, "text/plain", no, sizeof(no) - 1, false);
    } else if (path_is(path, "/ambassador/v0/diag/") || path_is(path, "/ambassador/v0/diag")) {
        char *j = diag_document(s);
        if (j != NULL)
            respond(c, 200, "application/json", j, strlen(j), true);
        else
            respond(c, 503, "text/plain", "", 0, false); /* out of memory */
    } else if (path_is(path, "/metrics")) {
        size_t len;
        char *text = pt_metrics_render(s, pt_reload_stats(), &len);
        if (text != NULL)
            respond(c, 200, "text/plain; version=0.0.4", text, len, true);
        else
            respond(c, 200, "text/plain; version=0.0.4", "", 0, false);
    } else {
        respond(c, 404, "text/plain", "", 0, false);
    }
}

static void on_conn(struct pt_io *io, uint32_t events)
{
    struct admin_conn *c = (struct admin_conn *)io;
    struct pt_header hdrs[64];
    struct pt_h1_request req;
    struct pt_h1_limits lim = { PT_ADMIN_REQ_MAX, 64 };

    if (c->responding) {
        send_some(c);
        return;
    }
    for (;;) {
        ssize_t n = read(io->fd, c->buf + c->len, sizeof(c->buf) - c->len);
        if (n > 0) {
            c->len += (size_t)n;
            int r = pt_h1_parse_request(c->buf, c->len, &req, hdrs, 64, &lim);
            if (r > 0) {
                handle(c, &req);
                return;
            }
            if (r != PT_AGAIN || c->len == sizeof(c->buf)) {
                respond(c, 400, "text/plain", "Bad Request", 11, false);
                return;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_close(c); /* closed before a whole request */
        return;
    }
}

/* A stalled connection is reset rather than closed: the kernel would otherwise keep trying to
 * deliver what is left in its send buffer (up to a few MiB) to a client that does not read. */
static void on_timeout(struct pt_timer *t)
{
    struct admin_conn *c = pt_container_of(t, struct admin_conn, timer);
    struct linger abort_now = { .l_onoff = 1, .l_linger = 0 };

    setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof(abort_now));
    conn_close(c);
}

/* Whether a warning about refused admin connections may be logged now (one per
 * PT_ADMIN_WARN_MS); <missed> is how many were not logged since the last one. */
static bool may_warn(uint32_t *missed)
{
    uint64_t now = pt_loop_now_ms(admin.loop);
    if (admin.warned_ms != 0 && now - admin.warned_ms < PT_ADMIN_WARN_MS) {
        admin.unwarned++;
        return false;
    }
    *missed = admin.unwarned;
    admin.unwarned = 0;
    admin.warned_ms = now ? now : 1;
    return true;
}

static void on_accept_resume(struct pt_timer *t)
{
    admin.paused = false;
    pt_loop_mod(admin.loop, &admin.listen_io, EPOLLIN); /* reports a non-empty queue at once */
}

/* accept failed for want of descriptors or memory: stop accepting for PT_ADMIN_PAUSE_MS rather
 * than spin on a queue we cannot take from. */
static void accept_pause(int err)
{
    uint32_t missed;

    pt_stats_accept_paused();
    if (may_warn(&missed))
        pt_warn("admin: accept: %s: not accepting connections for %d ms (%u more refusals since "
                "the last warning)", strerror(err), PT_ADMIN_PAUSE_MS, missed);
    admin.paused = true;
    pt_loop_mod(admin.loop, &admin.listen_io, 0);
    admin.pause_timer.cb = on_accept_resume;
    pt_timer_arm(admin.loop, &admin.pause_timer, PT_ADMIN_PAUSE_MS);
}

/* Takes one accepted connection <fd>, or closes it when max_connections are open. */
static void conn_open(int fd)
{
    struct admin_conn *c;
    uint32_t missed;

    if (admin.nconns >= admin.opts.max_connections) {
        close(fd);
        pt_stats_admin_rejected();
        if (may_warn(&missed))
            pt_warn("admin: %u connections open (--admin-max-connections): new ones are closed "
                    "(%u more refusals since the last warning)", admin.nconns, missed);
        return;
    }
    if ((c = malloc(sizeof(*c))) == NULL) {
        close(fd);
        return;
    }
    memset(c, 0, offsetof(struct admin_conn, buf)); /* buf is filled as it is read */
    c->io.fd = fd;
    c->io.cb = on_conn;
    c->timer.cb = on_timeout;
    if (pt_loop_add(admin.loop, &c->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP) != 0) {
        close(fd);
        free(c);
        return;
    }
    admin.nconns++;
    pt_timer_arm(admin.loop, &c->timer, admin.opts.timeout_ms);
}

static void on_accept(struct pt_io *io, uint32_t events)
{
    if (admin.paused)
        return;
    for (int i = 0; i < PT_ADMIN_ACCEPT_BATCH; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_open(fd);
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            accept_pause(errno);
        else if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO || errno == EPERM)
            continue;
        return; /* EAGAIN: the queue is empty */
    }
    pt_loop_mod(admin.loop, io, EPOLLIN); /* more may wait: the next iteration goes on */
}

bool pt_admin_bind_valid(const char *addr)
{
    struct in6_addr a6;
    struct in_addr a4;
    return addr != NULL && (inet_pton(AF_INET, addr, &a4) == 1 || inet_pton(AF_INET6, addr, &a6) == 1);
}

/* A socket bound to <addr> (numeric) and the admin port, or -1 with errno set. */
static int bind_one(const char *addr)
{
    struct sockaddr_storage ss = { 0 };
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    int one = 1, zero = 0, fd, saved;

    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)admin.opts.port);
        len = sizeof(*s4);
    } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)admin.opts.port);
        len = sizeof(*s6);
    } else {
        errno = EINVAL;
        return -1;
    }
    if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* During a hot restart both processes serve the admin port for a moment. */
    if (getenv("AMBASSADOR_ENVOY_BASE_ID") != NULL)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)); /* "::" takes IPv4 too */
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 128) != 0) {
        saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int pt_admin_start(struct pt_loop *loop, const struct pt_admin_opts *opts)
{
    const char *addr = opts->bind ? opts->bind : "::";
    int fd;

    admin.loop = loop;
    admin.opts = *opts;
    fd = bind_one(addr);
    if (fd < 0 && opts->bind == NULL) {
        addr = "0.0.0.0"; /* no IPv6 on this host */
        fd = bind_one(addr);
    }
    if (fd < 0) {
        pt_error("admin: cannot listen on %s port %d: %s", addr, opts->port, strerror(errno));
        return PT_IO;
    }
    admin.listen_io.fd = fd;
    admin.listen_io.cb = on_accept;
    return pt_loop_add(loop, &admin.listen_io, EPOLLIN);
}
