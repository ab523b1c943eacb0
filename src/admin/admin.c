/* The admin server: a small HTTP/1.1 server on the control thread for operators and probes.
 *   /ambassador/v0/check_alive   200 while the process runs
 *   /ambassador/v0/check_ready   200 once a configuration is live, else 503
 *   /ambassador/v0/diag/         the resources in force with their errors and notices (JSON)
 *   /metrics                     Prometheus text (observe/metrics.c)
 * One request per connection; requests are tiny and answered at once. Never on the data path. */
#include "admin/admin.h"
#include "config/snapshot.h"
#include "core/log.h"
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
#define PT_ADMIN_TIMEOUT_MS 10000
#define PT_ADMIN_WARMING_MS 5000

struct admin_conn {
    struct pt_io io;
    struct pt_timer timer;
    size_t len;
    char buf[PT_ADMIN_REQ_MAX];
};

static struct pt_io listen_io;
static struct pt_loop *admin_loop;

static void conn_close(struct admin_conn *c)
{
    pt_timer_cancel(&c->timer);
    close(c->io.fd);
    free(c);
}

static void write_all(int fd, const char *p, size_t n)
{
    /* The admin socket is non-blocking; a scrape is small, so wait briefly for room. */
    for (int tries = 0; n > 0 && tries < 1000;) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EAGAIN) {
            usleep(1000);
            tries++;
        } else {
            return;
        }
    }
}

static void respond(struct admin_conn *c, int status, const char *ctype, const char *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\nconnection: close\r\n\r\n",
                     status, status == 200 ? "OK" : status == 404 ? "Not Found" : status == 503 ? "Service Unavailable" : "Bad Request",
                     ctype, len);
    write_all(c->io.fd, head, (size_t)n);
    write_all(c->io.fd, body, len);
}

static bool path_is(struct pt_str path, const char *p)
{
    return pt_str_eq(path, pt_str_c(p));
}

/* The diag document: the snapshot's (resources, errors, notices, clusters, built when it was
 * compiled) plus what changes without a recompile: the Istio certificate directory. */
static char *diag_document(const struct pt_snapshot *s)
{
    json_t *root = s && s->diag_json ? json_loads(s->diag_json, 0, NULL) : NULL;
    const char *dir = getenv("AMBASSADOR_ISTIO_SECRET_DIR");
    char *out;

    if (root == NULL)
        root = json_pack("{s:[],s:[],s:[]}", "resources", "errors", "notices");
    json_object_set_new(root, "ready", json_boolean(s != NULL));
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

static void handle(struct admin_conn *c, const struct pt_h1_request *req)
{
    struct pt_str path = req->path;
    struct pt_snapshot *s = pt_snapshot_current();

    if (path_is(path, "/ambassador/v0/check_alive")) {
        static const char ok[] = "Portico is alive and well\n";
        respond(c, 200, "text/plain", ok, sizeof(ok) - 1);
    } else if (path_is(path, "/ambassador/v0/check_ready")) {
        static const char ok[] = "Portico is ready and waiting\n", no[] = "Portico is not ready\n";
        if (s != NULL && !warming(s))
            respond(c, 200, "text/plain", ok, sizeof(ok) - 1);
        else
            respond(c, 503, "text/plain", no, sizeof(no) - 1);
    } else if (path_is(path, "/ambassador/v0/diag/") || path_is(path, "/ambassador/v0/diag")) {
        char *j = diag_document(s);
        respond(c, 200, "application/json", j, strlen(j));
        free(j);
    } else if (path_is(path, "/metrics")) {
        size_t len;
        char *text = pt_metrics_render(&len);
        respond(c, 200, "text/plain; version=0.0.4", text ? text : "", text ? len : 0);
        free(text);
    } else {
        respond(c, 404, "text/plain", "", 0);
    }
}

static void on_conn(struct pt_io *io, uint32_t events)
{
    struct admin_conn *c = (struct admin_conn *)io;
    struct pt_header hdrs[64];
    struct pt_h1_request req;
    struct pt_h1_limits lim = { PT_ADMIN_REQ_MAX, 64 };

    for (;;) {
        ssize_t n = read(io->fd, c->buf + c->len, sizeof(c->buf) - c->len);
        if (n > 0) {
            c->len += (size_t)n;
            int r = pt_h1_parse_request(c->buf, c->len, &req, hdrs, 64, &lim);
            if (r > 0) {
                handle(c, &req);
                conn_close(c);
                return;
            }
            if (r != PT_AGAIN || c->len == sizeof(c->buf)) {
                respond(c, 400, "text/plain", "Bad Request", 11);
                conn_close(c);
                return;
            }
            continue;
        }
        if (n < 0 && errno == EAGAIN)
            return;
        conn_close(c);
        return;
    }
}

static void on_timeout(struct pt_timer *t)
{
    conn_close(pt_container_of(t, struct admin_conn, timer));
}

static void on_accept(struct pt_io *io, uint32_t events)
{
    for (;;) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct admin_conn *c;
        if (fd < 0)
            return;
        if ((c = calloc(1, sizeof(*c))) == NULL) {
            close(fd);
            continue;
        }
        c->io.fd = fd;
        c->io.cb = on_conn;
        c->timer.cb = on_timeout;
        if (pt_loop_add(admin_loop, &c->io, EPOLLIN | EPOLLRDHUP) != 0) {
            close(fd);
            free(c);
            continue;
        }
        pt_timer_arm(admin_loop, &c->timer, PT_ADMIN_TIMEOUT_MS);
    }
}

int pt_admin_start(struct pt_loop *loop, int port)
{
    struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = in6addr_any };
    int one = 1, zero = 0, fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    admin_loop = loop;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        /* During a hot restart both processes serve the admin port for a moment. */
        if (getenv("AMBASSADOR_ENVOY_BASE_ID") != NULL)
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0) {
        struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (fd < 0 || bind(fd, (struct sockaddr *)&a4, sizeof(a4)) != 0) {
            pt_error("admin: cannot listen on port %d: %s", port, strerror(errno));
            if (fd >= 0)
                close(fd);
            return PT_IO;
        }
    }
    if (listen(fd, 128) != 0) {
        pt_error("admin: listen on port %d: %s", port, strerror(errno));
        close(fd);
        return PT_IO;
    }
    listen_io.fd = fd;
    listen_io.cb = on_accept;
    return pt_loop_add(loop, &listen_io, EPOLLIN);
}
