/* Unit tests for src/proxy/httpclient.c and the pool under it (src/proxy/upstream.c), used
 * alone: no client connection, no stream, no snapshot. A worker is built by hand (its loop, its
 * buffer pool, its stats block), the cluster and endpoint point at a backend that each test
 * starts on 127.0.0.1: a thread that accepts, reads request heads and answers from a script
 * (bytes in one or two writes, then keep the connection, close it, reset it, close it later,
 * close it at the next request, or carry a tunnel). The test drives the worker's loop the way
 * proxy/worker.c does (one iteration, then the ready list and the dead connections) until a
 * condition holds or a deadline passes, and checks the callbacks the exchange made: which, in
 * what order (a string such as "HBE": on_head, on_body, on_body with end; "X": on_error) and
 * with what arguments. Every wait is bounded; the backend stops within a few seconds whatever
 * happens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/httpclient.h"
#include "proxy/proxy.h"
#include "observe/stats.h"

#define WAIT_MS 5000 /* the longest any condition is waited for */
#define BIG_BODY (1u << 20)

/* ---- the scripted backend -------------------------------------------------------------------- */

/* What the backend does after writing a response. */
enum be_after {
    BE_KEEP = 0,   /* keep the connection for the next request */
    BE_CLOSE,      /* close it (FIN) */
    BE_RST,        /* wait rst_delay_ms, then reset it (SO_LINGER 0) */
    BE_CLOSE_IDLE, /* close it close_ms later, while it is idle */
    BE_TUNNEL,     /* read 4 bytes, answer "pong", close */
};

/* The answer to one request (the n-th request the backend reads, over all connections). */
struct be_resp {
    const char *bytes; /* NULL: close the connection at once, answering nothing */
    size_t len;        /* 0: strlen(bytes) */
    size_t split;      /* > 0: write bytes[0..split), pause 50 ms, then the rest */
    size_t body_len;   /* then this many generated body bytes (body_byte) */
    size_t req_body;   /* > 0: first wait 200 ms, then read a request body this long */
    enum be_after after;
    int rst_delay_ms;
    int close_ms;
};

#define BE_MAX_CONNS 8
#define BE_MAX_REQS 16

struct be_conn {
    int fd, id;
    size_t len;
    uint64_t close_at; /* BE_CLOSE_IDLE: when; 0: never */
    char buf[8192];
};

struct backend {
    int lfd;
    uint16_t port;
    pthread_t th;
    bool started;
    struct be_resp script[4]; /* a copy: the test's array may be gone before the thread */
    int nscript;
    atomic_int conns;    /* accepted */
    atomic_int requests; /* request heads read */
    atomic_int eofs;     /* connections the client closed or reset */
    atomic_int stop;
    _Atomic uint64_t eof_ms;     /* when the last of those was seen */
    char reqs[BE_MAX_REQS][512]; /* each request head as received */
    int req_conn[BE_MAX_REQS];   /* ... and the connection (accept order) it came on */
    char tunnel_got[8];
    atomic_size_t req_body_got; /* request body bytes read that matched body_byte */
    struct be_conn c[BE_MAX_CONNS];
};

static const char DEFAULT_RESP[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/* body_byte: byte <i> of a generated body (not periodic over a buffer's length). */
static char body_byte(size_t i)
{
    return (char)((i * 2654435761u) >> 13);
}

static bool be_send(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false; /* closed, reset, or SO_SNDTIMEO passed */
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static void be_drop(struct backend *b, int i)
{
    close(b->c[i].fd);
    b->c[i].fd = -1;
}

/* be_req_body: waits 200 ms (the client's socket fills), then reads <need> bytes of request
 * body on slot <i> (those already in its buffer first), counting those that are as sent. */
static void be_req_body(struct backend *b, int i, size_t need)
{
    struct be_conn *c = &b->c[i];
    size_t got = 0, good = 0;
    uint64_t end = pt_now_ms() + 5000;
    char chunk[16384];

    usleep(200 * 1000);
    while (got < need && pt_now_ms() < end) {
        size_t n = 0;
        if (c->len > 0) {
            n = c->len < need - got ? c->len : need - got;
            memcpy(chunk, c->buf, n);
            memmove(c->buf, c->buf + n, c->len - n + 1);
            c->len -= n;
        } else {
            struct pollfd p = { c->fd, POLLIN, 0 };
            size_t want = need - got < sizeof(chunk) ? need - got : sizeof(chunk);
            ssize_t r = poll(&p, 1, 50) == 1 ? recv(c->fd, chunk, want, 0) : 0;
            if (p.revents && r <= 0)
                break;
            n = r > 0 ? (size_t)r : 0;
        }
        for (size_t k = 0; k < n; k++)
            good += chunk[k] == body_byte(got + k);
        got += n;
    }
    atomic_store(&b->req_body_got, good);
}

/* be_answer: the scripted answer to request <idx> on connection slot <i>. */
static void be_answer(struct backend *b, int i, int idx)
{
    static const struct be_resp dflt = { .bytes = DEFAULT_RESP };
    const struct be_resp *r = idx < b->nscript ? &b->script[idx] : &dflt;
    int fd = b->c[i].fd;

    if (r->bytes == NULL) {
        be_drop(b, i);
        return;
    }
    if (r->req_body > 0)
        be_req_body(b, i, r->req_body);
    size_t len = r->len ? r->len : strlen(r->bytes);
    size_t split = r->split && r->split < len ? r->split : len;
    bool ok = be_send(fd, r->bytes, split);
    if (ok && split < len) {
        usleep(50 * 1000);
        ok = be_send(fd, r->bytes + split, len - split);
    }
    char chunk[16384];
    for (size_t off = 0; ok && off < r->body_len; off += sizeof(chunk)) {
        size_t n = r->body_len - off < sizeof(chunk) ? r->body_len - off : sizeof(chunk);
        for (size_t k = 0; k < n; k++)
            chunk[k] = body_byte(off + k);
        ok = be_send(fd, chunk, n);
    }
    switch (r->after) {
    case BE_KEEP:
        break;
    case BE_CLOSE:
        be_drop(b, i);
        break;
    case BE_RST: {
        struct linger lg = { 1, 0 };
        usleep((useconds_t)r->rst_delay_ms * 1000);
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        be_drop(b, i);
        break;
    }
    case BE_CLOSE_IDLE:
        b->c[i].close_at = pt_now_ms() + (uint64_t)r->close_ms;
        break;
    case BE_TUNNEL: {
        size_t got = 0;
        struct pollfd p = { fd, POLLIN, 0 };
        uint64_t end = pt_now_ms() + 3000;
        while (got < 4 && pt_now_ms() < end && poll(&p, 1, 50) >= 0) {
            ssize_t n = p.revents ? recv(fd, b->tunnel_got + got, 4 - got, 0) : 0;
            if (p.revents && n <= 0)
                break;
            got += n > 0 ? (size_t)n : 0;
        }
        be_send(fd, "pong", 4);
        be_drop(b, i);
        break;
    }
    }
}

/* be_read: reads what connection slot <i> has; answers each complete request head. */
static void be_read(struct backend *b, int i)
{
    struct be_conn *c = &b->c[i];
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
    char *end;

    if (n <= 0) {
        atomic_store(&b->eof_ms, pt_now_ms());
        atomic_fetch_add(&b->eofs, 1);
        be_drop(b, i);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    while (c->fd >= 0 && (end = strstr(c->buf, "\r\n\r\n")) != NULL) {
        size_t hl = (size_t)(end + 4 - c->buf);
        int idx = atomic_load(&b->requests);
        if (idx < BE_MAX_REQS) {
            size_t k = hl < sizeof(b->reqs[idx]) - 1 ? hl : sizeof(b->reqs[idx]) - 1; /* cut */
            memcpy(b->reqs[idx], c->buf, k);
            b->reqs[idx][k] = '\0';
            b->req_conn[idx] = c->id;
        }
        memmove(c->buf, c->buf + hl, c->len - hl + 1);
        c->len -= hl;
        atomic_fetch_add(&b->requests, 1);
        be_answer(b, i, idx);
    }
}

static void *be_main(void *arg)
{
    struct backend *b = arg;
    uint64_t hard_end = pt_now_ms() + 30000;

    while (!atomic_load(&b->stop) && pt_now_ms() < hard_end) {
        struct pollfd p[BE_MAX_CONNS + 1];
        int map[BE_MAX_CONNS + 1], np = 0;
        p[np] = (struct pollfd){ b->lfd, POLLIN, 0 };
        map[np++] = -1;
        for (int i = 0; i < BE_MAX_CONNS; i++)
            if (b->c[i].fd >= 0) {
                p[np] = (struct pollfd){ b->c[i].fd, POLLIN, 0 };
                map[np++] = i;
            }
        if (poll(p, (nfds_t)np, 10) < 0)
            break;
        for (int k = 0; k < np; k++) {
            if (!p[k].revents)
                continue;
            if (map[k] >= 0) {
                if (b->c[map[k]].fd >= 0)
                    be_read(b, map[k]);
                continue;
            }
            int fd = accept(b->lfd, NULL, NULL);
            int slot = -1;
            for (int i = 0; fd >= 0 && i < BE_MAX_CONNS && slot < 0; i++)
                if (b->c[i].fd < 0)
                    slot = i;
            if (slot < 0) {
                if (fd >= 0)
                    close(fd);
                continue;
            }
            struct timeval tv = { 5, 0 };
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
            b->c[slot] = (struct be_conn){ .fd = fd, .id = atomic_fetch_add(&b->conns, 1) };
        }
        for (int i = 0; i < BE_MAX_CONNS; i++)
            if (b->c[i].fd >= 0 && b->c[i].close_at != 0 && pt_now_ms() >= b->c[i].close_at)
                be_drop(b, i);
    }
    for (int i = 0; i < BE_MAX_CONNS; i++)
        if (b->c[i].fd >= 0)
            be_drop(b, i);
    return NULL;
}

/* listen_loopback: a listening socket on 127.0.0.1 (any port) with <backlog>; its port. */
static int listen_loopback(int backlog, uint16_t *port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, backlog), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* ---- the fixture: a hand-made worker, cluster and endpoint ---------------------------------- */

/* What one exchange reported. */
struct rec {
    struct pt_hc hc;
    char ev[64]; /* H on_head, B on_body (a run of them: one B), E on_body with end,
                            * X on_error */
    int nev;
    int send_rc; /* what pt_hc_send returned for the request */
    int nwritable;
    int nev_at_writable;      /* callbacks before the (last) on_writable */
    bool blocked_at_writable; /* pt_hc_send_blocked() then */
    int status;
    char reason[64];
    char headers[4096]; /* "Name: value\n" for each header, in order */
    char *body;
    size_t blen, bcap;
    int nbody, nend, npieces;
    bool empty_piece; /* on_body gave a piece of length 0 */
    bool pieces_over; /* on_body gave more than PT_BODY_RUNS pieces */
    char err_reason[64], err_flags[16], err_tfr[200];
    bool tfr_null;
    bool pause_first, pause_each; /* pt_hc_pause in on_body: the first time / every time */
    uint64_t done_ms;
};

struct fx {
    struct pt_worker *w;
    struct pt_cluster c;
    struct pt_endpoint ep;
    struct backend be;
    struct pt_proxy_limits saved;
    struct rec r[4];
    int fillers[32], nfillers, full_lfd;
};

static uint32_t g_stats_idx;

/* ev_add: appends <c> to r->ev; a run of on_body calls without end shows as one B. */
static void ev_add(struct rec *r, char c)
{
    if (c == 'B' && r->nev > 0 && r->ev[r->nev - 1] == 'B')
        return;
    if (r->nev < (int)sizeof(r->ev) - 1)
        r->ev[r->nev++] = c;
}

static int rec_on_head(void *owner, const struct pt_h1_response *res)
{
    struct rec *r = owner;
    size_t off = 0;

    ev_add(r, 'H');
    r->status = res->status;
    snprintf(r->reason, sizeof(r->reason), "%.*s", (int)res->reason.len, res->reason.ptr);
    for (size_t i = 0; i < res->nheaders; i++) {
        const struct pt_header *h = &res->headers[i];
        int n = snprintf(r->headers + off, sizeof(r->headers) - off, "%.*s: %.*s\n",
                         (int)h->name.len, h->name.ptr, (int)h->value.len, h->value.ptr);
        assert_true(n > 0 && (size_t)n < sizeof(r->headers) - off);
        off += (size_t)n;
    }
    return 0;
}

static int rec_on_body(void *owner, const struct iovec *iov, int n, bool end)
{
    struct rec *r = owner;

    ev_add(r, end ? 'E' : 'B');
    r->nbody++;
    r->nend += end;
    if (n > PT_BODY_RUNS)
        r->pieces_over = true;
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len == 0)
            r->empty_piece = true;
        if (r->blen + iov[i].iov_len > r->bcap) {
            r->bcap = (r->blen + iov[i].iov_len) * 2;
            r->body = realloc(r->body, r->bcap);
            assert_non_null(r->body);
        }
        memcpy(r->body + r->blen, iov[i].iov_base, iov[i].iov_len);
        r->blen += iov[i].iov_len;
        r->npieces++;
    }
    if (end)
        r->done_ms = pt_now_ms();
    if (!end && (r->pause_each || (r->pause_first && r->nbody == 1)))
        pt_hc_pause(&r->hc);
    return 0;
}

static void rec_on_writable(void *owner)
{
    struct rec *r = owner;
    r->nwritable++;
    r->nev_at_writable = r->nev;
    r->blocked_at_writable = pt_hc_send_blocked(&r->hc);
}

static void rec_on_error(void *owner, const char *reason, const char *tfr, const char *flags)
{
    struct rec *r = owner;

    ev_add(r, 'X');
    snprintf(r->err_reason, sizeof(r->err_reason), "%s", reason);
    snprintf(r->err_flags, sizeof(r->err_flags), "%s", flags);
    r->tfr_null = tfr == NULL;
    snprintf(r->err_tfr, sizeof(r->err_tfr), "%s", tfr ? tfr : "");
    r->done_ms = pt_now_ms();
}

static const struct pt_hc_ops rec_ops = {
    .on_head = rec_on_head,
    .on_body = rec_on_body,
    .on_writable = rec_on_writable,
    .on_error = rec_on_error,
};

/* ev_match: <s> matches <p>, where "c*" is any number of c, "c+" one or more, "c?" at most one. */
static bool ev_match(const char *s, const char *p)
{
    if (*p == '\0')
        return *s == '\0';
    if (p[1] == '*' || p[1] == '?')
        return ev_match(s, p + 2) || (*s == p[0] && ev_match(s + 1, p[1] == '*' ? p : p + 2));
    if (p[1] == '+') {
        char star[64];
        snprintf(star, sizeof(star), "%c*%s", p[0], p + 2);
        return *s == p[0] && ev_match(s + 1, star);
    }
    return *s == p[0] && ev_match(s + 1, p + 1);
}

#define assert_ev(r, pat)                                                                          \
    do {                                                                                           \
        if (!ev_match((r)->ev, (pat)))                                                             \
            fail_msg("callbacks were \"%s\", expected \"%s\"", (r)->ev, (pat));                    \
    } while (0)

/* drain: what proxy/worker.c's before_sleep does for upstream connections. */
static void drain(struct pt_worker *w)
{
    while (w->ready_ups != NULL)
        pt_up_run_ready(w);
    pt_up_free_dead(w);
}

/* run_until: runs the worker's loop until <cond>(<arg>) holds or <ms> pass; whether it held. */
static bool run_until(struct fx *f, bool (*cond)(struct fx *, void *), void *arg, int ms)
{
    uint64_t end = pt_now_ms() + (uint64_t)ms;

    while (!cond(f, arg)) {
        if (pt_now_ms() >= end)
            return false;
        pt_loop_run_once(f->w->loop, 5);
        drain(f->w);
    }
    return true;
}

static bool never(struct fx *f, void *arg)
{
    return false;
}

static void run_for(struct fx *f, int ms)
{
    run_until(f, never, NULL, ms);
}

static bool rec_done(struct fx *f, void *arg)
{
    struct rec *r = arg;
    return r->nend > 0 || strchr(r->ev, 'X') != NULL;
}

static bool rec_headed(struct fx *f, void *arg)
{
    struct rec *r = arg;
    return strchr(r->ev, 'H') != NULL || strchr(r->ev, 'X') != NULL;
}

static bool rec_some_body(struct fx *f, void *arg)
{
    struct rec *r = arg;
    return r->nbody > 0 || strchr(r->ev, 'X') != NULL;
}

static bool be_eofs_reach(struct fx *f, void *arg)
{
    return atomic_load(&f->be.eofs) >= *(int *)arg;
}

/* pool_idle: idle connections in the worker's pool, all endpoints. */
static uint32_t pool_idle(const struct pt_worker *w)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < w->npools_cap; i++)
        if (w->pools[i] != NULL)
            n += w->pools[i]->nidle;
    return n;
}

static bool pool_empty(struct fx *f, void *arg)
{
    return pool_idle(f->w) == 0;
}

static struct pt_cluster_stats *cstats(struct fx *f)
{
    struct pt_cluster_stats *cs = pt_stats_cluster(f->w->st, g_stats_idx);
    assert_non_null(cs);
    return cs;
}

static void point_at(struct fx *f, uint16_t port)
{
    struct sockaddr_in *sa = (struct sockaddr_in *)&f->ep.addr;

    memset(&f->ep, 0, sizeof(f->ep));
    sa->sin_family = AF_INET;
    sa->sin_port = htons(port);
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->ep.addrlen = sizeof(*sa);
    snprintf(f->ep.name, sizeof(f->ep.name), "127.0.0.1:%u", port);
}

/* be_start: starts the backend with <script> (<n> answers; then DEFAULT_RESP) and points the
 * endpoint at it. */
static void be_start(struct fx *f, const struct be_resp *script, int n)
{
    struct backend *b = &f->be;

    assert_true(n >= 0 && n <= (int)PT_ARRAY_SIZE(b->script));
    b->lfd = listen_loopback(16, &b->port);
    if (n > 0)
        memcpy(b->script, script, (size_t)n * sizeof(*script));
    b->nscript = n;
    assert_int_equal(pthread_create(&b->th, NULL, be_main, b), 0);
    b->started = true;
    point_at(f, b->port);
}

static const char GET[] = "GET /a HTTP/1.1\r\nHost: be\r\n\r\n";

/* start: starts exchange <r> (reset first) on the fixture's endpoint and sends <req>. */
static void start(struct fx *f, struct rec *r, const char *req, bool fresh, bool head,
                  bool allow_101)
{
    pt_hc_finish(&r->hc, false);
    free(r->body);
    memset(r, 0, sizeof(*r));
    /* As a worker starts an exchange inside an iteration that just woke: timers are armed from
     * the loop's cached clock, which the test may have left for long (a blocking helper). */
    pt_loop_update_time(f->w->loop);
    assert_int_equal(pt_hc_start(&r->hc, f->w, &f->c, &f->ep, fresh, &rec_ops, r,
                                 (head ? PT_HC_HEAD_REQUEST : 0) | (allow_101 ? PT_HC_ALLOW_101 : 0)),
                     0);
    struct iovec iov = { (void *)req, strlen(req) };
    r->send_rc = pt_hc_send(&r->hc, &iov, 1, false);
    assert_true(r->send_rc == 0 || r->send_rc == PT_AGAIN);
}

/* exchange: a whole exchange that must end well: GET, DEFAULT_RESP back. */
static void exchange_ok(struct fx *f, struct rec *r, bool expect_reused)
{
    start(f, r, GET, false, false, false);
    assert_int_equal(pt_hc_reused(&r->hc), expect_reused);
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_ev(r, "HB*E");
    assert_int_equal(r->status, 200);
    assert_int_equal(r->blen, 2);
    assert_memory_equal(r->body, "ok", 2);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    f->saved = pt_proxy_limits;
    f->full_lfd = -1;
    f->be.lfd = -1;
    for (int i = 0; i < BE_MAX_CONNS; i++)
        f->be.c[i].fd = -1;
    f->w = calloc(1, sizeof(*f->w));
    if (f->w == NULL || (f->w->loop = pt_loop_new()) == NULL ||
        (f->w->st = pt_stats_worker_new(0)) == NULL)
        return -1;
    f->w->bufs.max_free = 1024;
    f->c.name = "cluster_hctest";
    f->c.stats_name = "hctest";
    f->c.connect_timeout_ms = 3000;
    f->c.stats_idx = g_stats_idx;
    *state = f;
    return 0;
}

/* teardown: ends every exchange, closes the pool's idle connections (taking each and giving it
 * back as not reusable: upstream.c has no other way in), frees the worker; no connection may be
 * left counted as active. */
static int teardown(void **state)
{
    struct fx *f = *state;
    struct pt_worker *w = f->w;

    for (int i = 0; i < 4; i++) {
        pt_hc_finish(&f->r[i].hc, false);
        free(f->r[i].body);
    }
    for (uint32_t i = 0; i < w->npools_cap; i++) {
        struct pt_pool_entry *e = w->pools[i];
        if (e == NULL)
            continue;
        while (e->nidle > 0) {
            struct pt_endpoint ep = { .addr = e->addr, .addrlen = e->addrlen };
            struct pt_cluster c = { .tls_ctx = e->tls, .stats_idx = g_stats_idx, .up_opts = e->opts };
            bool reused = false;
            struct pt_upstream *up = pt_up_acquire(w, &c, &ep, false, true, &reused);
            if (up == NULL)
                break;
            pt_up_release(up, false);
        }
        free(e);
    }
    free(w->pools);
    pt_up_free_dead(w);
    while (w->free_up != NULL) {
        struct pt_upstream *up = w->free_up;
        w->free_up = up->idle_next;
        free(up);
    }
    int64_t active = pt_stats_cluster(w->st, g_stats_idx)->upstream_cx_active;
    pt_buf_pool_drain(&w->bufs);
    pt_stats_worker_free(w->st);
    pt_loop_free(w->loop);
    free(w);
    if (f->be.started) {
        atomic_store(&f->be.stop, 1);
        pthread_join(f->be.th, NULL);
    }
    if (f->be.lfd >= 0)
        close(f->be.lfd);
    for (int i = 0; i < f->nfillers; i++)
        close(f->fillers[i]);
    if (f->full_lfd >= 0)
        close(f->full_lfd);
    pt_proxy_limits = f->saved;
    free(f);
    if (active != 0)
        fail_msg("%lld upstream connections still counted as active", (long long)active);
    return 0;
}

/* ---- 1. plain exchanges ---------------------------------------------------------------------- */

/* A Content-Length body in two writes: the head once, with its status, reason and headers in
 * order; the pieces make the body; end once, last. The backend got the request as sent, and a
 * finished exchange leaves its connection in the pool. */
static void test_content_length(void **state)
{
    struct fx *f = *state;
    static const char resp[] =
        "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Test: a\r\n\r\nhello world";
    struct be_resp script[] = { { .bytes = resp, .split = sizeof(resp) - 1 - 5 } };
    struct rec *r = &f->r[0];

    be_start(f, script, 1);
    start(f, r, GET, false, false, false);
    assert_false(pt_hc_reused(&r->hc));
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_ev(r, "HB*E");
    assert_int_equal(r->nend, 1);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->reason, "OK");
    assert_string_equal(r->headers, "Content-Length: 11\nX-Test: a\n");
    assert_int_equal(r->blen, 11);
    assert_memory_equal(r->body, "hello world", 11);
    assert_false(r->empty_piece);
    assert_false(r->pieces_over);
    assert_int_equal(r->nwritable, r->send_rc == PT_AGAIN ? 1 : 0);
    assert_int_equal(atomic_load(&f->be.requests), 1);
    assert_string_equal(f->be.reqs[0], GET);
    pt_hc_finish(&r->hc, true);
    assert_null(r->hc.up);
    assert_int_equal(pool_idle(f->w), 1);
    assert_int_equal(cstats(f)->upstream_cx_total, 1);
}

/* A chunked body with an extension and a trailer, cut inside a chunk: the pieces are the data
 * only; the trailer is neither a header nor body; the connection is clean for the pool. */
static void test_chunked(void **state)
{
    struct fx *f = *state;
    static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "5;name=\"v;x\"\r\nhello\r\n6\r\n world\r\n"
                               "0\r\nX-Trailer: t\r\n\r\n";
    struct be_resp script[] = { { .bytes = resp, .split = strstr(resp, "llo\r\n") - resp } };
    struct rec *r = &f->r[0];

    be_start(f, script, 1);
    start(f, r, GET, false, false, false);
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_ev(r, "HB*E");
    assert_int_equal(r->nend, 1);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->headers, "Transfer-Encoding: chunked\n");
    assert_int_equal(r->blen, 11);
    assert_memory_equal(r->body, "hello world", 11);
    assert_false(r->empty_piece);
    pt_hc_finish(&r->hc, true);
    assert_int_equal(pool_idle(f->w), 1);
    /* Nothing of the first response is left to be read as the second one. */
    exchange_ok(f, &f->r[1], true);
    assert_int_equal(atomic_load(&f->be.conns), 1);
}

/* HEAD: a Content-Length but no body: on_body once, at once, with nothing and end; the
 * connection is reusable and the next response on it is read from its first byte. */
static void test_head_request(void **state)
{
    struct fx *f = *state;
    static const char head_req[] = "HEAD /a HTTP/1.1\r\nHost: be\r\n\r\n";
    struct be_resp script[] = { { .bytes = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" } };
    struct rec *r = &f->r[0];

    be_start(f, script, 1);
    start(f, r, head_req, false, true, false);
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_string_equal(r->ev, "HE");
    assert_int_equal(r->status, 200);
    assert_string_equal(r->headers, "Content-Length: 1000\n");
    assert_int_equal(r->npieces, 0);
    assert_int_equal(r->blen, 0);
    assert_string_equal(f->be.reqs[0], head_req);
    pt_hc_finish(&r->hc, true);
    assert_int_equal(pool_idle(f->w), 1);
    exchange_ok(f, &f->r[1], true);
    assert_int_equal(atomic_load(&f->be.conns), 1);
}

/* A request bigger than the socket takes at once (8 MiB; the backend reads it only after
 * 200 ms): pt_hc_send keeps the rest (PT_AGAIN, pt_hc_send_blocked), on_writable comes once it
 * is all out and before any response, the backend gets every byte as sent, then the answer. */
static void test_send_blocked_writable(void **state)
{
    struct fx *f = *state;
    size_t blen = 8u << 20;
    char head[128], *body = malloc(blen);
    struct be_resp script[] = { { .bytes = DEFAULT_RESP, .req_body = blen } };
    struct rec *r = &f->r[0];

    assert_non_null(body);
    for (size_t i = 0; i < blen; i++)
        body[i] = body_byte(i);
    int n = snprintf(head, sizeof(head),
                     "POST /up HTTP/1.1\r\nHost: be\r\nContent-Length: %zu\r\n\r\n", blen);
    assert_true(n > 0 && (size_t)n < sizeof(head));
    be_start(f, script, 1);
    start(f, r, head, false, false, false); /* the head alone: queued until connected */
    struct iovec iov = { body, blen };
    int rc = pt_hc_send(&r->hc, &iov, 1, false);
    free(body); /* what the socket did not take was copied */
    assert_int_equal(rc, PT_AGAIN);
    assert_true(pt_hc_send_blocked(&r->hc));
    assert_true(run_until(f, rec_done, r, WAIT_MS * 2));
    assert_ev(r, "HB*E");
    assert_int_equal(r->nwritable, 1);
    assert_int_equal(r->nev_at_writable, 0); /* before the head */
    assert_false(r->blocked_at_writable);
    assert_false(pt_hc_send_blocked(&r->hc));
    assert_int_equal(atomic_load(&f->be.req_body_got), blen);
    assert_int_equal(r->status, 200);
    pt_hc_finish(&r->hc, true);
    assert_int_equal(pool_idle(f->w), 1);
}

/* ---- 2. pooled keep-alive -------------------------------------------------------------------- */

/* Two exchanges one after the other: the second takes the first's connection from the pool. */
static void test_keepalive_reuse(void **state)
{
    struct fx *f = *state;

    be_start(f, NULL, 0);
    exchange_ok(f, &f->r[0], false);
    pt_hc_finish(&f->r[0].hc, true);
    exchange_ok(f, &f->r[1], true);
    pt_hc_finish(&f->r[1].hc, true);
    assert_int_equal(atomic_load(&f->be.conns), 1);
    assert_int_equal(atomic_load(&f->be.requests), 2);
    assert_int_equal(f->be.req_conn[0], f->be.req_conn[1]);
    assert_int_equal(cstats(f)->upstream_cx_total, 1);
    assert_int_equal(pool_idle(f->w), 1);
}

/* A response with Connection: close (the backend itself keeps the connection): finish(true)
 * closes it; the next exchange opens another. */
static void test_connection_close_not_reused(void **state)
{
    struct fx *f = *state;
    struct be_resp script[] = {
        { .bytes = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok" },
    };
    int one = 1;

    be_start(f, script, 1);
    exchange_ok(f, &f->r[0], false);
    assert_string_equal(f->r[0].headers, "Content-Length: 2\nConnection: close\n");
    pt_hc_finish(&f->r[0].hc, true);
    assert_int_equal(pool_idle(f->w), 0);
    assert_true(run_until(f, be_eofs_reach, &one, WAIT_MS)); /* the backend saw it close */
    exchange_ok(f, &f->r[1], false);
    assert_int_equal(atomic_load(&f->be.conns), 2);
    assert_int_equal(cstats(f)->upstream_cx_total, 2);
}

/* finish(false) (the owner did not send its whole request) never pools the connection. */
static void test_finish_false_not_reused(void **state)
{
    struct fx *f = *state;
    int one = 1;

    be_start(f, NULL, 0);
    exchange_ok(f, &f->r[0], false);
    pt_hc_finish(&f->r[0].hc, false);
    assert_int_equal(pool_idle(f->w), 0);
    assert_true(run_until(f, be_eofs_reach, &one, WAIT_MS));
    exchange_ok(f, &f->r[1], false);
    assert_int_equal(atomic_load(&f->be.conns), 2);
}

/* ---- 3. a closed pooled connection ----------------------------------------------------------- */

/* The backend closes the connection 50 ms after its answer, while it sits in the pool: the
 * pool notices and drops it; the next exchange gets a new connection and succeeds. */
static void test_closed_while_idle(void **state)
{
    struct fx *f = *state;
    struct be_resp script[] = { { .bytes = DEFAULT_RESP, .after = BE_CLOSE_IDLE, .close_ms = 50 } };

    be_start(f, script, 1);
    exchange_ok(f, &f->r[0], false);
    pt_hc_finish(&f->r[0].hc, true);
    assert_int_equal(pool_idle(f->w), 1);
    assert_true(run_until(f, pool_empty, NULL, WAIT_MS));
    assert_int_equal(cstats(f)->upstream_cx_destroy, 1);
    exchange_ok(f, &f->r[1], false);
    assert_int_equal(atomic_load(&f->be.conns), 2);
}

/* The backend closes the pooled connection the moment the second request arrives: that
 * exchange fails with "connection termination"/UC, no head, no body, and says it was on a
 * reused connection (what lets a caller try once more); a fresh one then works. */
static void test_closed_on_reuse(void **state)
{
    struct fx *f = *state;
    struct be_resp script[] = { { .bytes = DEFAULT_RESP }, { .bytes = NULL /* close at once */ } };
    struct rec *r = &f->r[1];

    be_start(f, script, 2);
    exchange_ok(f, &f->r[0], false);
    pt_hc_finish(&f->r[0].hc, true);
    start(f, r, GET, false, false, false);
    assert_true(pt_hc_reused(&r->hc));
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_string_equal(r->ev, "X");
    assert_string_equal(r->err_reason, "connection termination");
    assert_string_equal(r->err_flags, "UC");
    assert_true(r->tfr_null);
    assert_true(pt_hc_reused(&r->hc));
    assert_null(r->hc.up);
    pt_hc_finish(&r->hc, false); /* a no-op after on_error */
    assert_int_equal(atomic_load(&f->be.conns), 1);
    assert_int_equal(atomic_load(&f->be.requests), 2);
    start(f, &f->r[2], GET, true, false, false);
    assert_false(pt_hc_reused(&f->r[2].hc));
    assert_true(run_until(f, rec_done, &f->r[2], WAIT_MS));
    assert_ev(&f->r[2], "HB*E");
    assert_int_equal(atomic_load(&f->be.conns), 2);
}

/* ---- 4. timeouts and pool limits ------------------------------------------------------------- */

/* full_listener: a listening socket whose accept queue is full (connections the test made and
 * nobody accepts) so that a new SYN is dropped: a connect to it stays in progress. */
static void full_listener(struct fx *f)
{
    uint16_t port;
    f->full_lfd = listen_loopback(0, &port);
    point_at(f, port);
    for (int i = 0; i < 16; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int err = 0;
        socklen_t len = sizeof(err);
        struct pollfd p = { fd, POLLOUT, 0 };
        assert_true(fd >= 0);
        if (connect(fd, (struct sockaddr *)&f->ep.addr, f->ep.addrlen) == 0 ||
            (errno == EINPROGRESS && poll(&p, 1, 300) == 1 &&
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)) {
            f->fillers[f->nfillers++] = fd;
            continue;
        }
        close(fd); /* this one did not get through: the queue is full */
        return;
    }
    fail_msg("the accept queue of a listen(fd, 0) socket never filled");
}

/* A connect that does not complete: "connection timeout"/UF after connect_timeout_ms, not
 * before, and not much later. */
static void test_connect_timeout(void **state)
{
    struct fx *f = *state;
    struct rec *r = &f->r[0];

    full_listener(f);
    f->c.connect_timeout_ms = 100;
    uint64_t t0 = pt_now_ms();
    start(f, r, GET, false, false, false);
    assert_int_equal(r->send_rc, PT_AGAIN); /* kept until connected */
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    uint64_t took = r->done_ms - t0;
    assert_string_equal(r->ev, "X");
    assert_string_equal(r->err_reason, "connection timeout");
    assert_string_equal(r->err_flags, "UF");
    assert_true(r->tfr_null);
    assert_false(pt_hc_reused(&r->hc));
    assert_int_equal(r->nwritable, 0);
    if (took < 95 || took > 1500)
        fail_msg("the connect timeout of 100 ms fired after %llu ms", (unsigned long long)took);
    assert_int_equal(cstats(f)->upstream_cx_connect_timeout, 1);
}

/* Nothing listens: "remote connection failure"/UF, the cause in the transport failure reason. */
static void test_connect_refused(void **state)
{
    struct fx *f = *state;
    struct rec *r = &f->r[0];
    uint16_t port;
    int fd = listen_loopback(1, &port);

    close(fd); /* the port is free again: connections to it are refused */
    point_at(f, port);
    start(f, r, GET, false, false, false);
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_string_equal(r->ev, "X");
    assert_string_equal(r->err_reason, "remote connection failure");
    assert_string_equal(r->err_flags, "UF");
    assert_string_equal(r->err_tfr, "delayed connect error: Connection refused");
}

/* upstream_idle_ms: a pooled connection closes after that long idle (the backend sees the
 * close, not before); the next exchange is on a new connection. */
static void test_pool_idle_timeout(void **state)
{
    struct fx *f = *state;
    int one = 1;

    pt_proxy_limits.upstream_idle_ms = 100;
    be_start(f, NULL, 0);
    exchange_ok(f, &f->r[0], false);
    uint64_t t0 = pt_now_ms();
    pt_hc_finish(&f->r[0].hc, true);
    assert_int_equal(pool_idle(f->w), 1);
    assert_true(run_until(f, be_eofs_reach, &one, WAIT_MS));
    uint64_t took = atomic_load(&f->be.eof_ms) - t0;
    if (took < 95 || took > 1500)
        fail_msg("the idle timeout of 100 ms closed the connection after %llu ms",
                 (unsigned long long)took);
    assert_int_equal(pool_idle(f->w), 0);
    exchange_ok(f, &f->r[1], false);
    assert_int_equal(atomic_load(&f->be.conns), 2);
}

/* upstream_max_lifetime_ms: a connection older than that when its exchange ends is not pooled;
 * the next exchange opens a new one. */
static void test_max_lifetime_at_release(void **state)
{
    struct fx *f = *state;
    int one = 1;

    pt_proxy_limits.upstream_max_lifetime_ms = 150;
    be_start(f, NULL, 0);
    exchange_ok(f, &f->r[0], false);
    pt_hc_finish(&f->r[0].hc, true); /* young: pooled */
    assert_int_equal(pool_idle(f->w), 1);
    exchange_ok(f, &f->r[1], true);
    run_for(f, 200);
    pt_hc_finish(&f->r[1].hc, true); /* now older than 150 ms: closed */
    assert_int_equal(pool_idle(f->w), 0);
    assert_true(run_until(f, be_eofs_reach, &one, WAIT_MS));
    exchange_ok(f, &f->r[2], false);
    assert_int_equal(atomic_load(&f->be.conns), 2);
    assert_int_equal(atomic_load(&f->be.requests), 3);
}

/* upstream_max_lifetime_ms: a connection pooled while young and still idle in the pool once
 * older than the limit is not handed out again ("not reused after this long"). */
static void test_max_lifetime_while_idle(void **state)
{
    struct fx *f = *state;

    pt_proxy_limits.upstream_max_lifetime_ms = 150;
    be_start(f, NULL, 0);
    exchange_ok(f, &f->r[0], false);
    pt_hc_finish(&f->r[0].hc, true);
    run_for(f, 250); /* idle in the pool past its lifetime (the idle timeout is 60 s) */
    start(f, &f->r[1], GET, false, false, false);
    if (pt_hc_reused(&f->r[1].hc))
        fail_msg("a pooled connection 250 ms old was reused with upstream_max_lifetime_ms = 150");
    assert_true(run_until(f, rec_done, &f->r[1], WAIT_MS));
    assert_ev(&f->r[1], "HB*E");
    assert_int_equal(atomic_load(&f->be.conns), 2);
}

/* ---- 4b. a cluster's own connection settings (Mapping keepalive, cluster_idle_timeout_ms,
 * cluster_max_connection_lifetime_ms) ------------------------------------------------------- */

/* cluster_idle_timeout_ms wins over upstream_idle_ms (60 s here): the backend sees the close
 * after the cluster's 100 ms. */
static void test_cluster_idle_timeout_wins(void **state)
{
    struct fx *f = *state;
    int one = 1;

    pt_proxy_limits.upstream_idle_ms = 60000;
    f->c.up_opts.idle_ms = 100;
    be_start(f, NULL, 0);
    exchange_ok(f, &f->r[0], false);
    uint64_t t0 = pt_now_ms();
    pt_hc_finish(&f->r[0].hc, true);
    assert_int_equal(pool_idle(f->w), 1);
    assert_true(run_until(f, be_eofs_reach, &one, WAIT_MS));
    uint64_t took = atomic_load(&f->be.eof_ms) - t0;
    if (took < 95 || took > 1500)
        fail_msg("the cluster's idle timeout of 100 ms closed the connection after %llu ms",
                 (unsigned long long)took);
    assert_int_equal(pool_idle(f->w), 0);
}

/* cluster_max_connection_lifetime_ms: a pooled connection is closed when it reaches its
 * lifetime, idle or not (Envoy's max_connection_duration), well before the idle timeout. */
static void test_cluster_lifetime_closes_idle(void **state)
{
    struct fx *f = *state;
    int one = 1;

    pt_proxy_limits.upstream_idle_ms = 60000;
    f->c.up_opts.lifetime_ms = 200;
    be_start(f, NULL, 0);
    uint64_t t0 = pt_now_ms();
    exchange_ok(f, &f->r[0], false);
    pt_hc_finish(&f->r[0].hc, true);
    exchange_ok(f, &f->r[1], true); /* young: reused */
    pt_hc_finish(&f->r[1].hc, true);
    assert_int_equal(pool_idle(f->w), 1);
    assert_true(run_until(f, be_eofs_reach, &one, WAIT_MS));
    uint64_t took = atomic_load(&f->be.eof_ms) - t0;
    if (took < 190 || took > 1500)
        fail_msg("a connection with a lifetime of 200 ms closed after %llu ms", (unsigned long long)took);
    exchange_ok(f, &f->r[2], false);
    assert_int_equal(atomic_load(&f->be.conns), 2);
}

static int sockopt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

/* keepalive: the cluster's connections have SO_KEEPALIVE with its probes, idle time and
 * interval; those of a cluster without keepalive do not, and the two never share one. */
static void test_keepalive_socket_options(void **state)
{
    struct fx *f = *state;
    struct rec *r = &f->r[0];

    be_start(f, NULL, 0);
    exchange_ok(f, &f->r[1], false); /* no keepalive: pooled */
    assert_int_equal(sockopt(f->r[1].hc.up->io.fd, SOL_SOCKET, SO_KEEPALIVE), 0);
    pt_hc_finish(&f->r[1].hc, true);
    f->c.up_opts = (struct pt_up_opts){ .keepalive = 1, .ka_probes = 4, .ka_idle_s = 40, .ka_interval_s = 7 };
    start(f, r, GET, false, false, false);
    assert_false(pt_hc_reused(&r->hc)); /* the pooled one has other settings */
    assert_non_null(r->hc.up);
    int fd = r->hc.up->io.fd;
    assert_int_equal(sockopt(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
    assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
    assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE), 40);
    assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL), 7);
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_ev(r, "HB*E");
    pt_hc_finish(&r->hc, true);
    assert_int_equal(pool_idle(f->w), 2);
    exchange_ok(f, &f->r[2], true); /* the same settings again: pooled connection reused */
    assert_int_equal(sockopt(f->r[2].hc.up->io.fd, IPPROTO_TCP, TCP_KEEPIDLE), 40);
    /* only the kernel's values: SO_KEEPALIVE alone */
    f->c.up_opts = (struct pt_up_opts){ .keepalive = 1 };
    exchange_ok(f, &f->r[3], false);
    assert_int_equal(sockopt(f->r[3].hc.up->io.fd, SOL_SOCKET, SO_KEEPALIVE), 1);
    assert_int_equal(atomic_load(&f->be.conns), 3);
}

/* max_idle_per_endpoint = 0: nothing is pooled, every exchange has its own connection. */
static void test_max_idle_zero(void **state)
{
    struct fx *f = *state;
    int one = 1;

    pt_proxy_limits.max_idle_per_endpoint = 0;
    be_start(f, NULL, 0);
    exchange_ok(f, &f->r[0], false);
    pt_hc_finish(&f->r[0].hc, true);
    assert_int_equal(pool_idle(f->w), 0);
    assert_true(run_until(f, be_eofs_reach, &one, WAIT_MS));
    exchange_ok(f, &f->r[1], false);
    pt_hc_finish(&f->r[1].hc, true);
    assert_int_equal(pool_idle(f->w), 0);
    assert_int_equal(atomic_load(&f->be.conns), 2);
}

/* ---- 5. 1xx ---------------------------------------------------------------------------------- */

/* 100 and 103 (with headers) then 200, all in one write: on_head once, the 200 and its headers
 * only. */
static void test_1xx_skipped(void **state)
{
    struct fx *f = *state;
    struct be_resp script[] = {
        { .bytes = "HTTP/1.1 100 Continue\r\n\r\n"
                   "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: 1\r\n\r\nok" }
    };
    struct rec *r = &f->r[0];

    be_start(f, script, 1);
    start(f, r, GET, false, false, false);
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_ev(r, "HB*E");
    assert_int_equal(r->status, 200);
    assert_string_equal(r->reason, "OK");
    assert_string_equal(r->headers, "Content-Length: 2\nX-Final: 1\n");
    assert_int_equal(r->blen, 2);
    assert_memory_equal(r->body, "ok", 2);
    pt_hc_finish(&r->hc, true);
    assert_int_equal(pool_idle(f->w), 1);
}

/* 103 Early Hints alone first, the 200 50 ms later: the same. */
static void test_103_then_200_later(void **state)
{
    struct fx *f = *state;
    static const char resp[] = "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                               "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: 1\r\n\r\nok";
    struct be_resp script[] = { { .bytes = resp, .split = strstr(resp, "HTTP/1.1 200") - resp } };
    struct rec *r = &f->r[0];

    be_start(f, script, 1);
    start(f, r, GET, false, false, false);
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_ev(r, "HB*E");
    assert_int_equal(r->status, 200);
    assert_string_equal(r->headers, "Content-Length: 2\nX-Final: 1\n");
    assert_int_equal(r->blen, 2);
    assert_memory_equal(r->body, "ok", 2);
    pt_hc_finish(&r->hc, true);
    assert_int_equal(pool_idle(f->w), 1);
    exchange_ok(f, &f->r[1], true);
}

/* A 101 the caller did not allow: "protocol error"/UPE, no head; the connection is closed. */
static void test_101_not_allowed(void **state)
{
    struct fx *f = *state;
    struct be_resp script[] = { { .bytes =
                                      "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                                      "Upgrade: websocket\r\n\r\n\x81\x02hi" } };
    struct rec *r = &f->r[0];
    int one = 1;

    be_start(f, script, 1);
    start(f, r, GET, false, false, false);
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_string_equal(r->ev, "X");
    assert_string_equal(r->err_reason, "protocol error");
    assert_string_equal(r->err_flags, "UPE");
    assert_true(r->tfr_null);
    assert_int_equal(pool_idle(f->w), 0);
    assert_true(run_until(f, be_eofs_reach, &one, WAIT_MS));
}

/* A 101 the caller allowed: on_head with 101 and its headers; the bytes that came with it and
 * those after come through on_body as they are, bytes go the other way too, and the backend's
 * close ends it (end=true). The connection is never pooled. */
static void test_101_tunnel(void **state)
{
    struct fx *f = *state;
    static const char upgrade_req[] = "GET /ws HTTP/1.1\r\nHost: be\r\nConnection: Upgrade\r\n"
                                      "Upgrade: websocket\r\n\r\n";
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                               "Upgrade: websocket\r\n\r\n\x81\x02hi";
    struct be_resp script[] = { { .bytes = resp, .len = sizeof(resp) - 1, .after = BE_TUNNEL } };
    struct rec *r = &f->r[0];

    be_start(f, script, 1);
    start(f, r, upgrade_req, false, false, true);
    assert_true(run_until(f, rec_headed, r, WAIT_MS));
    assert_int_equal(r->status, 101);
    assert_string_equal(r->headers, "Connection: Upgrade\nUpgrade: websocket\n");
    struct iovec iov = { "ping", 4 };
    int rc = pt_hc_send(&r->hc, &iov, 1, false);
    assert_true(rc == 0 || rc == PT_AGAIN);
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_ev(r, "HB*E");
    assert_int_equal(r->nend, 1);
    assert_int_equal(r->blen, 8);
    assert_memory_equal(r->body, "\x81\x02hipong", 8);
    assert_string_equal(f->be.tunnel_got, "ping");
    pt_hc_finish(&r->hc, true);
    assert_int_equal(pool_idle(f->w), 0);
}

/* A body that ends at the backend's close (no Content-Length, no chunking): the bytes, then
 * end=true at the close, no error; such a connection is never pooled. */
static void test_until_close_body(void **state)
{
    struct fx *f = *state;
    struct be_resp script[] = { { .bytes = "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil the end",
                                  .after = BE_CLOSE } };
    struct rec *r = &f->r[0];

    be_start(f, script, 1);
    start(f, r, GET, false, false, false);
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_ev(r, "HB*E");
    assert_int_equal(r->nend, 1);
    assert_string_equal(r->headers, "X-A: 1\n");
    assert_int_equal(r->blen, 13);
    assert_memory_equal(r->body, "until the end", 13);
    pt_hc_finish(&r->hc, true);
    assert_int_equal(pool_idle(f->w), 0);
}

/* A chunked body whose trailer section arrives in two writes: end comes once, after the blank
 * line that ends the trailers (not at the last chunk), and the connection is clean for reuse. */
static void test_chunked_trailer_split(void **state)
{
    struct fx *f = *state;
    static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n";
    struct be_resp script[] = { { .bytes = resp, .split = strstr(resp, "t\r\n\r\n") - resp + 2 } };
    struct rec *r = &f->r[0];

    be_start(f, script, 1);
    start(f, r, GET, false, false, false);
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_ev(r, "HB*E");
    assert_int_equal(r->nend, 1);
    assert_int_equal(r->blen, 3);
    assert_memory_equal(r->body, "abc", 3);
    pt_hc_finish(&r->hc, true);
    assert_int_equal(pool_idle(f->w), 1);
    exchange_ok(f, &f->r[1], true);
}

/* ---- 6. the connection ends inside a body ---------------------------------------------------- */

/* reset_mid_body: 40 of 100 bytes, then the backend closes (<after>): on_head, on_body with
 * the 40 bytes, then "connection termination"/UC; never end=true. */
static void reset_mid_body(struct fx *f, enum be_after after)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
                               "0123456789abcdefghijklmnopqrstuvwxyzABCD";
    struct be_resp script[] = { { .bytes = resp, .after = after, .rst_delay_ms = 100 } };
    struct rec *r = &f->r[0];

    be_start(f, script, 1);
    start(f, r, GET, false, false, false);
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_ev(r, "HB+X");
    assert_int_equal(r->nend, 0);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->blen, 40);
    assert_memory_equal(r->body, "0123456789abcdefghijklmnopqrstuvwxyzABCD", 40);
    assert_string_equal(r->err_reason, "connection termination");
    assert_string_equal(r->err_flags, "UC");
    assert_true(r->tfr_null);
    assert_null(r->hc.up);
    assert_int_equal(pool_idle(f->w), 0);
}

static void test_fin_mid_body(void **state)
{
    reset_mid_body(*state, BE_CLOSE);
}

static void test_rst_mid_body(void **state)
{
    reset_mid_body(*state, BE_RST);
}

/* The same while the owner is paused: the backend sends 40 bytes, 30 more 50 ms later, then
 * closes; the owner resumes only after the close. It gets the 70 bytes the connection
 * carried, then "connection termination"/UC; never end=true. */
static void test_fin_mid_body_paused(void **state)
{
    struct fx *f = *state;
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
                               "0123456789abcdefghijklmnopqrstuvwxyzABCD"
                               "EFGHIJKLMNOPQRSTUVWXYZ!#$%&*+-";
    struct be_resp script[] = {
        { .bytes = resp, .split = strstr(resp, "EFGH") - resp, .after = BE_CLOSE }
    };
    struct rec *r = &f->r[0];

    be_start(f, script, 1);
    start(f, r, GET, false, false, false);
    r->pause_first = true;
    assert_true(run_until(f, rec_some_body, r, WAIT_MS));
    assert_int_equal(r->blen, 40);
    run_for(f, 300); /* the rest and the close arrive meanwhile */
    assert_string_equal(r->ev, "HB");
    pt_hc_resume(&r->hc);
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_ev(r, "HB+X");
    assert_int_equal(r->nend, 0);
    assert_string_equal(r->err_reason, "connection termination");
    assert_string_equal(r->err_flags, "UC");
    if (r->blen != 70)
        fail_msg("on_body gave %zu of the 70 body bytes received before the close", r->blen);
    assert_memory_equal(r->body, resp + strlen(resp) - 70, 70);
}

/* ---- 7. malformed responses ------------------------------------------------------------------ */

/* Content-Length and Transfer-Encoding both: "protocol error"/UPE, no head, connection closed. */
static void test_cl_and_te(void **state)
{
    struct fx *f = *state;
    struct be_resp script[] = {
        { .bytes = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\n0\r\n\r\n" }
    };
    struct rec *r = &f->r[0];
    int one = 1;

    be_start(f, script, 1);
    start(f, r, GET, false, false, false);
    assert_true(run_until(f, rec_done, r, WAIT_MS));
    assert_string_equal(r->ev, "X");
    assert_string_equal(r->err_reason, "protocol error");
    assert_string_equal(r->err_flags, "UPE");
    assert_int_equal(pool_idle(f->w), 0);
    assert_true(run_until(f, be_eofs_reach, &one, WAIT_MS));
}

/* A head longer than the connection's buffer (PT_BUF_SIZE; the head limit is larger):
 * "protocol error"/UPE, no head. */
static void test_head_larger_than_buffer(void **state)
{
    struct fx *f = *state;
    size_t big = PT_BUF_SIZE + 4096;
    char *resp = malloc(big + 128);
    struct rec *r = &f->r[0];

    assert_non_null(resp);
    assert_true(pt_proxy_limits.max_head_bytes > big + 64);
    int n = snprintf(resp, 64, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(resp + n, 'a', big);
    snprintf(resp + n + big, 64, "\r\nContent-Length: 0\r\n\r\n");
    struct be_resp script[] = { { .bytes = resp } };
    be_start(f, script, 1);
    start(f, r, GET, false, false, false);
    bool done = run_until(f, rec_done, r, WAIT_MS);
    atomic_store(&f->be.stop, 1); /* the script points at resp: stop before freeing it */
    pthread_join(f->be.th, NULL);
    f->be.started = false;
    free(resp);
    assert_true(done);
    assert_string_equal(r->ev, "X");
    assert_string_equal(r->err_reason, "protocol error");
    assert_string_equal(r->err_flags, "UPE");
}

/* ---- 8. pause and resume --------------------------------------------------------------------- */

/* check_big_body: <r> got the whole generated body of BIG_BODY bytes, in order, then end. */
static void check_big_body(struct rec *r)
{
    assert_ev(r, "HB+E");
    assert_int_equal(r->nend, 1);
    assert_int_equal(r->blen, BIG_BODY);
    for (size_t i = 0; i < BIG_BODY; i++)
        if (r->body[i] != body_byte(i))
            fail_msg("body byte %zu differs", i);
    assert_false(r->empty_piece);
    assert_false(r->pieces_over);
}

/* Paused after the first on_body, the client gives nothing more however long the loop runs
 * (the backend's 1 MiB fills the buffers); resumed, the rest arrives, whole, then end. */
static void test_pause_resume(void **state)
{
    struct fx *f = *state;
    struct be_resp script[] = { { .bytes = "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n",
                                  .body_len = BIG_BODY } };
    struct rec *r = &f->r[0];

    be_start(f, script, 1);
    start(f, r, GET, false, false, false);
    r->pause_first = true;
    assert_true(run_until(f, rec_some_body, r, WAIT_MS));
    int nbody = r->nbody;
    size_t blen = r->blen;
    run_for(f, 300);
    assert_int_equal(r->nbody, nbody);
    assert_int_equal(r->blen, blen);
    assert_int_equal(r->nend, 0);
    assert_non_null(r->hc.up);
    assert_true(r->blen < BIG_BODY);
    /* It read until its buffer was full, and no further. */
    assert_int_equal(r->hc.up->in.len, r->hc.up->in.cap);
    pt_hc_resume(&r->hc);
    assert_true(run_until(f, rec_done, r, WAIT_MS * 2));
    check_big_body(r);
    pt_hc_finish(&r->hc, true);
    assert_int_equal(pool_idle(f->w), 1);
}

/* Paused after every on_body and resumed one loop iteration later, until the end: nothing is
 * lost, duplicated or reordered. */
static void test_pause_each_piece(void **state)
{
    struct fx *f = *state;
    struct be_resp script[] = { { .bytes = "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n",
                                  .body_len = BIG_BODY } };
    struct rec *r = &f->r[0];
    uint64_t end = pt_now_ms() + WAIT_MS * 2;

    be_start(f, script, 1);
    start(f, r, GET, false, false, false);
    r->pause_each = true;
    while (!rec_done(f, r) && pt_now_ms() < end) {
        pt_loop_run_once(f->w->loop, 5);
        drain(f->w);
        if (r->hc.paused)
            pt_hc_resume(&r->hc);
        drain(f->w);
    }
    check_big_body(r);
    assert_true(r->nbody > 2);
    pt_hc_finish(&r->hc, true);
    assert_int_equal(pool_idle(f->w), 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the proxy does (main.c) */
    g_stats_idx = pt_stats_cluster_index("hctest");
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_content_length),
        T(test_chunked),
        T(test_head_request),
        T(test_send_blocked_writable),
        T(test_keepalive_reuse),
        T(test_connection_close_not_reused),
        T(test_finish_false_not_reused),
        T(test_closed_while_idle),
        T(test_closed_on_reuse),
        T(test_connect_timeout),
        T(test_connect_refused),
        T(test_pool_idle_timeout),
        T(test_max_lifetime_at_release),
        T(test_max_lifetime_while_idle),
        T(test_cluster_idle_timeout_wins),
        T(test_cluster_lifetime_closes_idle),
        T(test_keepalive_socket_options),
        T(test_max_idle_zero),
        T(test_1xx_skipped),
        T(test_103_then_200_later),
        T(test_101_not_allowed),
        T(test_101_tunnel),
        T(test_until_close_body),
        T(test_chunked_trailer_split),
        T(test_fin_mid_body),
        T(test_rst_mid_body),
        T(test_fin_mid_body_paused),
        T(test_cl_and_te),
        T(test_head_larger_than_buffer),
        T(test_pause_resume),
        T(test_pause_each_piece),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
