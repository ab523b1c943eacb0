/* Upstream connections and the per-worker pool of idle ones, keyed by endpoint address.
 * A connection is busy (owned by one request) or idle (in its endpoint's list with an idle
 * timer). It reports to its owner only through the callbacks the owner gave (struct
 * pt_up_ops), from its own event handler or the worker's ready list, never from inside a call
 * the owner made: bytes read go to up->in and the owner is told; the owner decides everything
 * about HTTP. Called by proxy/session.c and proxy/stream.c. */
#include "proxy/proxy.h"
#include "core/log.h"
#include "proxy/sockio.h"
#include "proxy/retry.h"
#include "tls/tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* hash_addr: FNV-1a over 8-byte words (a sockaddr_in is two), each step folding the high
 * half down so that every byte reaches the low bits the table index uses. The TLS context and
 * the connection settings (<o>, mostly all-zero) seed it. */
static uint64_t hash_addr(const struct sockaddr_storage *a, socklen_t len, const SSL_CTX *tls,
                          const struct pt_up_opts *o)
{
    const unsigned char *p = (const unsigned char *)a;
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)tls, x;

    if (o->idle_ms | o->lifetime_ms | o->keepalive) {
        memcpy(&x, o, sizeof(x));
        h = (h ^ x) * 1099511628211ull;
        memcpy(&x, (const unsigned char *)o + 8, sizeof(x));
        h = (h ^ x) * 1099511628211ull;
    }
    socklen_t i = 0;

    for (; i + 8 <= len; i += 8) {
        memcpy(&x, p + i, sizeof(x));
        h = (h ^ x) * 1099511628211ull;
        h ^= h >> 29;
    }
    for (; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h ^ (h >> 32);
}

static int pools_grow(struct pt_worker *w)
{
    uint32_t cap = w->npools_cap ? w->npools_cap * 2 : 64;
    struct pt_pool_entry **neu = calloc(cap, sizeof(*neu));

    if (neu == NULL)
        return PT_NOMEM;
    for (uint32_t i = 0; i < w->npools_cap; i++) {
        struct pt_pool_entry *e = w->pools[i];
        uint64_t h;
        if (e == NULL)
            continue;
        for (h = hash_addr(&e->addr, e->addrlen, e->tls, &e->opts); neu[h & (cap - 1)] != NULL; h++)
            ;
        neu[h & (cap - 1)] = e;
    }
    free(w->pools);
    w->pools = neu;
    w->npools_cap = cap;
    return 0;
}

/* The pool entry of an endpoint for a TLS context and connection settings <o> (clusters with
 * other settings keep their connections apart); entries live as long as the worker (a handful
 * per backend). */
static struct pt_pool_entry *pool_find(struct pt_worker *w, const struct pt_endpoint *ep, SSL_CTX *tls,
                                       const struct pt_up_opts *o)
{
    struct pt_pool_entry *e;
    uint64_t h;

    if (w->npools_used * 2 >= w->npools_cap && pools_grow(w) != 0)
        return NULL;
    for (h = hash_addr(&ep->addr, ep->addrlen, tls, o); (e = w->pools[h & (w->npools_cap - 1)]) != NULL; h++)
        if (e->tls == tls && e->addrlen == ep->addrlen && memcmp(&e->addr, &ep->addr, ep->addrlen) == 0 &&
            memcmp(&e->opts, o, sizeof(*o)) == 0)
            return e;
    if ((e = calloc(1, sizeof(*e))) == NULL)
        return NULL;
    /* The entry keeps the context alive: a pooled connection may outlive its snapshot. */
    if (tls != NULL)
        SSL_CTX_up_ref(tls);
    e->tls = tls;
    e->addr = ep->addr;
    e->addrlen = ep->addrlen;
    e->opts = *o;
    e->idle_head.idle_next = e->idle_head.idle_prev = &e->idle_head;
    w->pools[h & (w->npools_cap - 1)] = e;
    w->npools_used++;
    return e;
}

struct pt_pool_entry *pt_up_pool(struct pt_worker *w, const struct pt_cluster *c, const struct pt_endpoint *ep)
{
    return pool_find(w, ep, c->tls_ctx, &c->up_opts);
}

uint32_t pt_up_pool_idle_ms(const struct pt_pool_entry *e, uint64_t created_ms, uint64_t now_ms)
{
    uint32_t idle = e->opts.idle_ms ? e->opts.idle_ms : pt_proxy_limits.upstream_idle_ms;
    uint32_t life = pt_up_pool_lifetime_ms(e);
    uint64_t age = now_ms - created_ms;

    if (life == 0)
        return idle;
    if (age >= life)
        return 0;
    return life - age < idle ? (uint32_t)(life - age) : idle;
}

static void idle_unlink(struct pt_upstream *up)
{
    up->idle_prev->idle_next = up->idle_next;
    up->idle_next->idle_prev = up->idle_prev;
    up->idle_next = up->idle_prev = NULL;
    up->pool->nidle--;
}

/* cx_give_back: a connection counted in <cb> closed (or was never opened). */
static void cx_give_back(struct pt_worker *w, struct pt_breakers *cb, uint32_t cst_idx)
{
    struct pt_cluster_stats *cs = pt_stats_cluster(w->st, cst_idx);

    pt_cb_give(&cb->cx, cb->max_connections, cs ? &cs->circuit_breakers_default_cx_open : NULL);
}

/* cx_take: one more connection of cluster <c> under its max_connections; false, counted as
 * Envoy's upstream_cx_overflow, when they are all open. */
static bool cx_take(struct pt_worker *w, const struct pt_cluster *c)
{
    struct pt_cluster_stats *cs = pt_stats_cluster(w->st, c->stats_idx);

    if (!pt_cb_take(&c->breakers->cx, c->breakers->max_connections, cs ? &cs->circuit_breakers_default_cx_open : NULL)) {
        if (cs != NULL)
            pt_stats_inc(&cs->upstream_cx_overflow);
        w->cx_overflow = true;
        return false;
    }
    return true;
}

/* wake: the first request waiting for a connection of <e>, if any, goes again. */
static void wake(struct pt_pool_entry *e)
{
    struct pt_stream *st = e->wait_head;

    if (st == NULL)
        return;
    pt_up_unwait(st);
    pt_stream_cx_ready(st);
}

void pt_up_wait(struct pt_pool_entry *e, struct pt_stream *st, bool first)
{
    st->cxw_entry = e;
    if (first) { /* its turn came and went: still first */
        st->cxw_prev = NULL;
        st->cxw_next = e->wait_head;
        if (e->wait_head != NULL)
            e->wait_head->cxw_prev = st;
        else
            e->wait_tail = st;
        e->wait_head = st;
    } else {
        st->cxw_next = NULL;
        st->cxw_prev = e->wait_tail;
        if (e->wait_tail != NULL)
            e->wait_tail->cxw_next = st;
        else
            e->wait_head = st;
        e->wait_tail = st;
    }
    st->flags |= PT_SF_CX_WAIT;
}

void pt_up_unwait(struct pt_stream *st)
{
    struct pt_pool_entry *e = st->cxw_entry;

    if (st->cxw_prev != NULL)
        st->cxw_prev->cxw_next = st->cxw_next;
    else
        e->wait_head = st->cxw_next;
    if (st->cxw_next != NULL)
        st->cxw_next->cxw_prev = st->cxw_prev;
    else
        e->wait_tail = st->cxw_prev;
    st->cxw_entry = NULL;
    st->cxw_prev = st->cxw_next = NULL;
    st->flags &= ~PT_SF_CX_WAIT;
}

static void up_close(struct pt_upstream *up)
{
    struct pt_worker *w = up->w;
    if (up->dead)
        return;
    if (up->state == PT_UP_IDLE)
        idle_unlink(up);
    pt_timer_cancel(&up->timer);
    {
        struct pt_cluster_stats *cs = pt_stats_cluster(w->st, up->cst_idx);
        if (cs != NULL) {
            pt_gauge_dec(&cs->upstream_cx_active);
            pt_stats_inc(&cs->upstream_cx_destroy);
        }
    }
    if (up->cb != NULL) /* its cluster's max_connections */
        cx_give_back(w, up->cb, up->cst_idx), up->cb = NULL;
    pt_sock_close(up->io.fd, up->ssl, false);
    up->ssl = NULL;
    pt_buf_release(&w->bufs, &up->in);
    pt_buf_release(&w->bufs, &up->out);
    up->dead = true;
    up->owner = NULL;
    up->ops = NULL;
    up->pool->nopen--;
    wake(up->pool); /* a place under max_connections, or the last connection gone */
    /* Freed after this loop iteration: an event for it may still be queued. */
    up->idle_next = w->dead_up;
    w->dead_up = up;
}

void pt_up_free_dead(struct pt_worker *w)
{
    while (w->dead_up != NULL) {
        struct pt_upstream *up = w->dead_up;
        w->dead_up = up->idle_next;
        up->idle_next = w->free_up;
        w->free_up = up;
    }
}

/* up_fail: closes <up> and tells its owner, if it has one, why (Envoy's reset reason, the
 * transport failure reason or NULL, the response flags). */
static void up_fail(struct pt_upstream *up, const char *reason, const char *tfr, const char *flags)
{
    void *owner = up->owner;
    const struct pt_up_ops *ops = up->ops;

    up_close(up);
    if (owner != NULL)
        ops->on_error(owner, reason, tfr, flags);
}

static void up_on_timer(struct pt_timer *t)
{
    struct pt_upstream *up = pt_container_of(t, struct pt_upstream, timer);

    if ((up->state == PT_UP_CONNECTING || up->state == PT_UP_HANDSHAKE) && up->owner != NULL) {
        struct pt_cluster_stats *cs = pt_stats_cluster(up->w->st, up->cst_idx);
        if (cs != NULL) {
            pt_stats_inc(&cs->upstream_cx_connect_fail);
            pt_stats_inc(&cs->upstream_cx_connect_timeout);
        }
        up_fail(up, "connection timeout", NULL, "UF");
        return;
    }
    up_close(up); /* idle too long */
}

/* Reads what the socket has into up->in. Returns bytes read, 0 on EOF, PT_AGAIN, PT_IO. */
static int up_fill(struct pt_upstream *up)
{
    ssize_t n;

    if (pt_buf_reserve(&up->w->bufs, &up->in) != 0)
        return PT_IO;
    if (pt_buf_room(&up->in) == 0)
        pt_buf_compact(&up->in);
    if (pt_buf_room(&up->in) == 0)
        return PT_AGAIN; /* full: the session must consume first */
    bool drained;
    n = pt_sock_read(up->io.fd, up->ssl, up->in.base + up->in.off + up->in.len, pt_buf_room(&up->in),
                     up->peer_closed, &drained);
    up->rd_pending = !drained;
    if (n > 0) {
        struct pt_cluster_stats *cs = pt_stats_cluster(up->w->st, up->cst_idx);
        up->in.len += (uint32_t)n;
        if (cs != NULL)
            pt_stats_add(&cs->upstream_cx_rx_bytes_total, (uint64_t)n);
    }
    return (int)n;
}

/* up_read: reads and tells the owner, for as long as the socket has bytes, the owner takes
 * them (up->in has room) and still owns the connection. */
static void up_read(struct pt_upstream *up)
{
    void *owner = up->owner;

    while (owner != NULL && !up->eof) {
        int r = up_fill(up);
        if (r == 0 || r == PT_IO)
            up->eof = true; /* what was read before stays in up->in */
        else if (r < 0)
            return; /* nothing now, or up->in full until the owner takes from it */
        up->ops->on_readable(owner);
        if (up->dead || up->owner != owner || !up->rd_pending)
            return;
    }
}

void pt_up_resume(struct pt_upstream *up)
{
    struct pt_worker *w = up->w;

    if (up->queued || up->dead || !(up->in.len > 0 || up->rd_pending || up->eof))
        return;
    up->queued = true;
    up->ready_next = w->ready_ups;
    w->ready_ups = up;
}

void pt_up_run_ready(struct pt_worker *w)
{
    while (w->ready_ups != NULL) {
        struct pt_upstream *up = w->ready_ups;
        w->ready_ups = up->ready_next;
        up->queued = false;
        if (!up->dead && up->owner != NULL && (up->in.len > 0 || up->eof))
            up->ops->on_readable(up->owner); /* what it kept while its owner was slow */
        if (!up->dead && up->owner != NULL && up->rd_pending)
            up_read(up);
    }
}

static int flush_out(struct pt_upstream *up)
{
    while (up->out.len > 0) {
        struct iovec iov = { pt_buf_data(&up->out), up->out.len };
        ssize_t n = pt_sock_writev(up->io.fd, up->ssl, &iov, 1, NULL, 0);
        if (n < 0)
            return PT_IO;
        if (n == 0) {
            up->wr_blocked = true;
            return PT_AGAIN;
        }
        pt_buf_consume(&up->out, (uint32_t)n);
    }
    pt_buf_release(&up->w->bufs, &up->out);
    up->wr_blocked = false;
    return 0;
}

/* Drives the client side of a TLS handshake to the backend. Returns 0 when the session is up,
 * PT_AGAIN, or PT_IO after reporting the failure to the session (the connection is closed). */
static int up_handshake(struct pt_upstream *up)
{
    int r, err;

    ERR_clear_error();
    r = SSL_do_handshake(up->ssl);
    if (r == 1) {
        up->state = PT_UP_BUSY;
        pt_timer_cancel(&up->timer);
        up->wr_blocked = true; /* flush what was queued while connecting */
        return 0;
    }
    err = SSL_get_error(up->ssl, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
        return PT_AGAIN;
    {
        char tfr[PT_TLS_ERROR_MAX];
        bool tls_error = ERR_peek_error() != 0;
        if (tls_error)
            pt_tls_error_string(tfr, sizeof(tfr));
        if (tls_error)
            up_fail(up, "remote connection failure", tfr, "UF");
        else
            up_fail(up, "connection termination", NULL, "UC");
    }
    return PT_IO;
}

static void up_on_event(struct pt_io *io, uint32_t events)
{
    struct pt_upstream *up = pt_container_of(io, struct pt_upstream, io);
    void *owner = up->owner;

    if (up->dead)
        return;
    if (up->state == PT_UP_IDLE) {
        /* The backend closed, reset or spoke out of turn: the connection is no longer usable. */
        up_close(up);
        return;
    }
    if (up->state == PT_UP_CONNECTING) {
        int err;
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        err = pt_sock_connect_error(io->fd);
        struct pt_cluster_stats *cs = pt_stats_cluster(up->w->st, up->cst_idx);
        if (err != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
            char tfr[128];
            int n = snprintf(tfr, sizeof(tfr), "delayed connect error: %s", strerror(err ? err : ECONNREFUSED));
            if (n < 0 || (size_t)n >= sizeof(tfr)) /* no strerror text is that long; never cut */
                snprintf(tfr, sizeof(tfr), "delayed connect error: %d", err ? err : ECONNREFUSED);
            if (cs != NULL)
                pt_stats_inc(&cs->upstream_cx_connect_fail);
            up_fail(up, "remote connection failure", tfr, "UF");
            return;
        }
        if (cs != NULL)
            pt_hist_record_ms(&cs->upstream_cx_connect_ms, (double)(pt_loop_now_ms(up->w->loop) - up->connect_start_ms));
        if (up->ssl == NULL) {
            up->state = PT_UP_BUSY;
            pt_timer_cancel(&up->timer);
            up->wr_blocked = true; /* flush what was queued while connecting */
        } else {
            up->state = PT_UP_HANDSHAKE;
        }
    }
    if (up->state == PT_UP_HANDSHAKE) {
        if (up_handshake(up) != 0)
            return;
        events |= EPOLLOUT;
    }
    if ((events & EPOLLOUT) && up->wr_blocked) {
        int r = flush_out(up);
        if (r == PT_IO) {
            up->eof = true;
        } else if (r == 0 && owner != NULL) {
            up->ops->on_writable(owner);
        }
        if (up->dead || up->owner != owner)
            return;
    }
    if (events & (EPOLLRDHUP | EPOLLHUP))
        up->peer_closed = true;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        up->rd_pending = true;
        up_read(up);
    }
}

/* Prepares the TLS session of a new connection: SNI when configured, and the last session
 * with this endpoint offered for resumption (tls/ keeps them by endpoint name). */
static bool up_tls_setup(struct pt_upstream *up, struct pt_pool_entry *e, const struct pt_endpoint *ep)
{
    up->ssl = pt_tls_client_ssl_new(e->tls, ep->name);
    if (up->ssl == NULL || SSL_set_fd(up->ssl, up->io.fd) != 1)
        return false;
    if (up->state == PT_UP_BUSY)
        up->state = PT_UP_HANDSHAKE; /* connected at once (loopback): shake hands on EPOLLOUT */
    return true;
}

struct pt_upstream *pt_up_acquire(struct pt_worker *w, const struct pt_cluster *c,
                                  const struct pt_endpoint *ep, bool fresh, bool counted, bool *reused)
{
    struct pt_pool_entry *e = pool_find(w, ep, c->tls_ctx, &c->up_opts);
    struct pt_breakers *cb;
    struct pt_upstream *up;
    bool connected;
    int fd;

    if (e == NULL)
        return NULL;
    while (e->nidle > 0 && !fresh) {
        up = e->idle_head.idle_next;
        if (pt_up_pool_too_old(e, up->created_ms, pt_loop_now_ms(w->loop))) {
            up_close(up); /* grew too old while it waited in the pool */
            continue;
        }
        idle_unlink(up);
        pt_timer_cancel(&up->timer);
        up->state = PT_UP_BUSY;
        *reused = true;
        return up;
    }
    *reused = false;
    w->cx_overflow = false;
    w->cx_wait = NULL;
    cb = counted ? c->breakers : NULL;
    if (cb != NULL && !cx_take(w, c)) {
        if (e->nopen != 0) {
            w->cx_wait = e; /* one of them will be free in time */
            return NULL;
        }
        /* Envoy: a pool without any connection makes one anyway (counted as an overflow), or its
         * requests could wait for connections other workers or endpoints hold */
        w->cx_overflow = false;
        cb = NULL;
    }
    fd = pt_sock_connect(&ep->addr, ep->addrlen, &connected);
    if (fd < 0) {
        if (cb != NULL)
            cx_give_back(w, cb, c->stats_idx);
        return NULL;
    }
    if (e->opts.keepalive && /* the values were checked against the kernel's bounds */
        pt_sock_keepalive(fd, e->opts.ka_probes, e->opts.ka_idle_s, e->opts.ka_interval_s) != 0)
        pt_debug("upstream %s: keepalive refused: %s", ep->name, strerror(errno));
    if (w->free_up != NULL) {
        up = w->free_up;
        w->free_up = up->idle_next;
        memset(up, 0, sizeof(*up));
    } else if ((up = calloc(1, sizeof(*up))) == NULL) {
        pt_sock_close(fd, NULL, false);
        if (cb != NULL)
            cx_give_back(w, cb, c->stats_idx);
        return NULL;
    }
    up->io.fd = fd;
    up->io.cb = up_on_event;
    up->w = w;
    up->pool = e;
    up->timer.cb = up_on_timer;
    up->state = PT_UP_CONNECTING;
    up->cst_idx = c->stats_idx;
    up->connect_start_ms = up->created_ms = pt_loop_now_ms(w->loop);
    {
        struct pt_cluster_stats *cs = pt_stats_cluster(w->st, up->cst_idx);
        if (cs != NULL) {
            pt_stats_inc(&cs->upstream_cx_total);
            pt_gauge_inc(&cs->upstream_cx_active);
        }
    }
    if (connected)
        up->state = PT_UP_BUSY; /* else connecting; a failure is reported through EPOLLERR */
    if (pt_loop_add(w->loop, &up->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP) != 0) {
        pt_sock_close(fd, NULL, false);
        if (cb != NULL)
            cx_give_back(w, cb, c->stats_idx);
        up->idle_next = w->free_up;
        w->free_up = up;
        return NULL;
    }
    up->cb = cb; /* given back when it closes */
    e->nopen++;
    if (e->tls != NULL && !up_tls_setup(up, e, ep)) {
        up_close(up);
        return NULL;
    }
    /* The connect timeout covers the TLS handshake too. */
    if (up->state != PT_UP_BUSY && c->connect_timeout_ms > 0)
        pt_timer_arm(w->loop, &up->timer, c->connect_timeout_ms);
    return up;
}

void pt_up_release(struct pt_upstream *up, bool reusable)
{
    struct pt_worker *w = up->w;
    struct pt_pool_entry *e = up->pool;
    uint32_t idle_ms;

    up->owner = NULL;
    up->ops = NULL;
    up->requests++;
    if (!reusable || up->eof || up->peer_closed || up->in.len > 0 || up->out.len > 0 || up->state != PT_UP_BUSY ||
        e->nidle >= pt_proxy_limits.max_idle_per_endpoint || w->draining ||
        (idle_ms = pt_up_pool_idle_ms(e, up->created_ms, pt_loop_now_ms(w->loop))) == 0) {
        up_close(up); /* 0: as old as its max lifetime */
        return;
    }
    pt_buf_release(&w->bufs, &up->in);
    up->state = PT_UP_IDLE;
    up->idle_next = e->idle_head.idle_next;
    up->idle_prev = &e->idle_head;
    up->idle_next->idle_prev = up;
    e->idle_head.idle_next = up;
    e->nidle++;
    pt_timer_arm(w->loop, &up->timer, idle_ms); /* its idle timeout, or what is left of its lifetime */
    wake(e);
}

int pt_up_send(struct pt_upstream *up, const struct iovec *iov, int iovcnt)
{
    size_t total = 0, done;
    ssize_t n = 0;

    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    {
        struct pt_cluster_stats *cs = pt_stats_cluster(up->w->st, up->cst_idx);
        if (cs != NULL)
            pt_stats_add(&cs->upstream_cx_tx_bytes_total, total); /* handed to the socket */
    }
    if (total == 0)
        return 0;
    if (up->out.len == 0 && up->state == PT_UP_BUSY) {
        n = pt_sock_writev(up->io.fd, up->ssl, iov, iovcnt, up->w->tls_scratch, sizeof(up->w->tls_scratch));
        if (n < 0)
            return PT_IO;
        if ((size_t)n == total)
            return 0;
    }
    /* Keep the rest until the socket (or the connect) lets it through. */
    done = (size_t)n;
    if (pt_buf_append_iov(&up->w->bufs, &up->out, iov, iovcnt, total, done) != 0)
        return PT_IO;
    up->wr_blocked = true;
    return PT_AGAIN;
}

