/* Mirrors of routed requests (proxy/shadow.h): Envoy's request mirroring as Emissary configures
 * it from a shadow Mapping. The mirror's head is the primary's upstream head (the route's
 * rewrite, header edits and forwarding headers already in it) with "-shadow" in the Host, as
 * Envoy's shadow writer does; its body is what the primary is sent, piece by piece, framed for
 * the mirror's own connection. It is one exchange of the upstream client on a pooled connection
 * of the shadow cluster, counted in that cluster's request stats like any request.
 *
 * Lifetime: a mirror is its own object, from a per-worker free list, holding a reference on
 * the snapshot its cluster lives in. While its request is being copied it is tied to the
 * stream (st->shadow); when the stream ends, a mirror that has its whole request goes on alone
 * until its response is read (and dropped) or its timeout (the route's, as Envoy's) runs out,
 * and one that does not is cancelled, since nobody would finish its request. It never reports
 * to the stream: a failure, a timeout or a slow shadow only ends the mirror.
 *
 * Backpressure is not passed on: the primary is never slowed for the mirror. Bytes the mirror's
 * socket (or its connect) cannot take yet wait in its connection's buffer up to
 * PT_SHADOW_PENDING_MAX; past that the mirror is dropped (Envoy's retry_or_shadow_abandoned).
 * Called by proxy/session.c (start) and proxy/stream.c (body, detach). */
#include "proxy/shadow.h"
#include "proxy/httpclient.h"
#include "http/body.h"
#include "cluster/lb.h"
#include "proxy/retry.h"
#include "observe/stats.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SHADOW_HEAD_KEEP 4096 /* a head buffer larger than this is not kept on the free list */

/* How a mirror ended. */
enum shadow_result { SHADOW_OK = 0, SHADOW_FAILED, SHADOW_TIMEOUT, SHADOW_CANCELLED };

struct pt_shadow {
    struct pt_hc hc;
    struct pt_worker *w;
    struct pt_stream *st;          /* the request it copies; NULL once that ended */
    struct pt_snapshot *snap;      /* counted in (wref inflight) while the mirror runs */
    const struct pt_cluster *cluster;
    struct pt_lb_pick pick;
    struct pt_timer timer;         /* its timeout */
    uint64_t start_ms;
    int status;                    /* the shadow's response status; 0 before its head */
    bool chunked;                  /* its body is framed chunked here */
    bool req_done;                 /* its whole request was handed to the exchange */
    char *head;                    /* its request head while it is handed over (kept) */
    uint32_t head_cap;
    struct pt_shadow *next_free;
};

static const struct pt_hc_ops shadow_hc_ops;

/* host_insert_at: where "-shadow" goes in the Host value <v> (<n> bytes): before a ":port"
 * ("[v6]:port" too), else at its end (Envoy's shadowAppendedHost). */
static size_t host_insert_at(const char *v, size_t n)
{
    size_t i = n;

    while (i > 0 && v[i - 1] >= '0' && v[i - 1] <= '9')
        i--;
    if (i == n || i < 2 || v[i - 1] != ':')
        return n;
    if (v[0] == '[')
        return v[i - 2] == ']' ? i - 1 : n;
    return memchr(v, ':', i - 1) == NULL ? i - 1 : n; /* a bare IPv6 address has no port */
}

/* shadow_head: copies the head <h> (<n> bytes, "name: value" lines as http/h1write.h writes
 * them) into sh->head with "-shadow" in its Host value. Returns the length, or 0 when the head
 * has no Host or memory is short. */
static size_t shadow_head(struct pt_shadow *sh, const char *h, size_t n)
{
    static const char suffix[] = "-shadow";
    const char *end = h + n, *p = memchr(h, '\n', n), *at = NULL;

    for (p = p ? p + 1 : end; p < end && at == NULL;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL || eol - p < 2)
            break; /* the blank line: no Host */
        if (eol - p >= 7 && strncasecmp(p, "host:", 5) == 0) {
            const char *v = p + 5;
            while (v < eol && *v == ' ')
                v++;
            at = v + host_insert_at(v, (size_t)(eol - 1 - v));
        }
        p = eol + 1;
    }
    if (at == NULL)
        return 0;
    if (n + sizeof(suffix) > sh->head_cap) {
        char *m = realloc(sh->head, n + sizeof(suffix));
        if (m == NULL)
            return 0;
        sh->head = m;
        sh->head_cap = (uint32_t)(n + sizeof(suffix));
    }
    memcpy(sh->head, h, (size_t)(at - h));
    memcpy(sh->head + (at - h), suffix, sizeof(suffix) - 1);
    memcpy(sh->head + (at - h) + sizeof(suffix) - 1, at, (size_t)(end - at));
    return n + sizeof(suffix) - 1;
}

static void shadow_release(struct pt_worker *w, struct pt_shadow *sh)
{
    if (sh->head_cap > SHADOW_HEAD_KEEP) {
        free(sh->head);
        sh->head = NULL;
        sh->head_cap = 0;
    }
    sh->next_free = w->free_shadows;
    w->free_shadows = sh;
}

/* shadow_end: the mirror is over with <result>: its exchange finished (the connection pooled
 * when the exchange was whole), its endpoint told, its cluster's stats counted, its stream
 * unlinked, its snapshot left, and it goes back to the free list. */
static void shadow_end(struct pt_shadow *sh, int result)
{
    struct pt_worker *w = sh->w;
    struct pt_snapshot *snap = sh->snap;
    struct pt_cluster_stats *cs = pt_stats_cluster(w->st, sh->cluster->stats_idx);
    enum pt_lb_outcome outcome = result == SHADOW_OK ? (sh->status >= 500 ? PT_LB_HTTP_5XX : PT_LB_SUCCESS)
                                 : result == SHADOW_TIMEOUT ? PT_LB_TIMEOUT
                                 : result == SHADOW_CANCELLED ? PT_LB_CANCELLED : PT_LB_RESET;

    pt_hc_finish(&sh->hc, result == SHADOW_OK && sh->req_done && pt_hc_pending(&sh->hc) == 0);
    pt_timer_cancel(&sh->timer);
    pt_lb_release(&w->lb, &sh->pick, outcome);
    if (cs != NULL) {
        pt_gauge_dec(&cs->upstream_rq_active);
        if (result == SHADOW_OK) {
            pt_stats_upstream_code(cs, sh->status);
            pt_hist_record_ms(&cs->upstream_rq_time, (double)(pt_loop_now_ms(w->loop) - sh->start_ms));
        } else if (result == SHADOW_TIMEOUT) {
            pt_stats_inc(&cs->upstream_rq_timeout);
        } else if (result == SHADOW_FAILED && sh->status != 0) {
            pt_stats_inc(&cs->upstream_rq_rx_reset);
        }
    }
    pt_cb_give(&sh->cluster->breakers->rq, sh->cluster->breakers->max_requests,
               cs ? &cs->circuit_breakers_default_rq_open : NULL);
    if (sh->st != NULL)
        sh->st->shadow = NULL;
    sh->st = NULL;
    shadow_release(w, sh);
    snap->wref[w->id].inflight--;
    pt_worker_snapshot_done(w, snap);
}

static int shadow_on_head(void *owner, const struct pt_h1_response *res)
{
    struct pt_shadow *sh = owner;

    sh->status = res->status;
    return 0;
}

/* The shadow's response body is read and dropped; its end ends the mirror. */
static int shadow_on_body(void *owner, const struct iovec *iov, int n, bool end)
{
    (void)iov, (void)n;
    if (!end)
        return 0;
    shadow_end(owner, SHADOW_OK);
    return PT_CLOSED;
}

static int shadow_on_trailers(void *owner, const struct pt_header *h, size_t n)
{
    (void)owner, (void)h, (void)n;
    return 0;
}

static void shadow_on_writable(void *owner)
{
    (void)owner; /* the body comes as the primary takes it, never pulled for the mirror */
}

static void shadow_on_error(void *owner, const char *reason, const char *tfr, const char *flags)
{
    (void)reason, (void)tfr, (void)flags;
    shadow_end(owner, SHADOW_FAILED);
}

static const struct pt_hc_ops shadow_hc_ops = {
    .on_head = shadow_on_head,
    .on_body = shadow_on_body,
    .on_trailers = shadow_on_trailers,
    .on_writable = shadow_on_writable,
    .on_error = shadow_on_error,
};

static void shadow_on_timer(struct pt_timer *t)
{
    shadow_end(pt_container_of(t, struct pt_shadow, timer), SHADOW_TIMEOUT);
}

/* mirrored: whether <st>, routed with shadow action <sa>, gets a mirror: the draw of its
 * percentage, for a request a mirror can copy. */
static bool mirrored(struct pt_stream *st, const struct pt_route_action *sa)
{
    if (sa->shadow_percent == 0 || (sa->shadow_percent < 100 && pt_worker_rand(st->w) % 100 >= sa->shadow_percent))
        return false;
    return st->req.method_id != PT_H1_METHOD_CONNECT && !(st->flags & PT_SF_UPGRADE) && !st->gw.kind;
}

/* shadow_new: a mirror from the worker's free list (or a new one) for <st>, or NULL. */
static struct pt_shadow *shadow_new(struct pt_stream *st, const struct pt_cluster *c)
{
    struct pt_worker *w = st->w;
    struct pt_shadow *sh = w->free_shadows;

    if (sh != NULL)
        w->free_shadows = sh->next_free;
    else if ((sh = calloc(1, sizeof(*sh))) == NULL)
        return NULL;
    sh->hc = (struct pt_hc){ 0 };
    sh->w = w;
    sh->st = NULL;
    sh->snap = st->snap;
    sh->cluster = c;
    sh->pick = (struct pt_lb_pick){ 0 };
    sh->timer.cb = shadow_on_timer;
    sh->start_ms = pt_loop_now_ms(w->loop);
    sh->status = 0;
    sh->req_done = (st->flags & PT_SF_REQ_DONE) != 0;
    return sh;
}

void pt_shadow_start(struct pt_stream *st, const struct pt_route_action *sa, const char *head, size_t hlen)
{
    struct pt_worker *w = st->w;
    const struct pt_cluster *c = sa->cluster;
    struct pt_cluster_stats *cs;
    const struct pt_endpoint *ep;
    struct pt_shadow *sh;
    struct iovec iov;
    uint32_t timeout;

    st->flags |= PT_SF_SHADOWED;
    st->shadow = NULL;
    if (!mirrored(st, sa))
        return;
    cs = pt_stats_cluster(w->st, c->stats_idx);
    if (cs != NULL) {
        pt_stats_inc(&cs->upstream_rq_total);
        if (c->nendpoints == 0)
            pt_stats_inc(&cs->upstream_cx_none_healthy);
    }
    if (c->nendpoints == 0)
        return;
    /* Mirrors outlive their requests, so nothing else bounds them: they always count in their
     * cluster's max_requests (Envoy's 1024 unless circuit_breakers say otherwise). */
    if (!pt_cb_take(&c->breakers->rq, c->breakers->max_requests, cs ? &cs->circuit_breakers_default_rq_open : NULL)) {
        if (cs != NULL)
            pt_stats_inc(&cs->upstream_rq_pending_overflow);
        return;
    }
    sh = shadow_new(st, c);
    iov.iov_len = sh != NULL ? shadow_head(sh, head, hlen) : 0;
    ep = iov.iov_len ? pt_lb_pick(&w->lb, c, NULL, &sh->pick) : NULL;
    if (ep == NULL || pt_hc_start(&sh->hc, w, c, ep, false, &shadow_hc_ops, sh,
                                  (st->flags & PT_SF_HEAD_METHOD) ? PT_HC_HEAD_REQUEST : 0) != 0) {
        pt_cb_give(&c->breakers->rq, c->breakers->max_requests, cs ? &cs->circuit_breakers_default_rq_open : NULL);
        if (sh != NULL) {
            pt_lb_release(&w->lb, &sh->pick, PT_LB_CONNECT_FAILURE);
            shadow_release(w, sh);
        }
        return;
    }
    iov.iov_base = sh->head; /* after: shadow_head may move it */
    st->snap->wref[w->id].inflight++; /* its cluster lives in the snapshot */
    if (cs != NULL)
        pt_gauge_inc(&cs->upstream_rq_active);
    sh->chunked = st->req_body.kind == PT_BODY_CHUNKED && pt_hc_chunked(&sh->hc);
    timeout = st->rec.action->timeout_ms ? st->rec.action->timeout_ms : PT_SHADOW_TIMEOUT_MS;
    pt_timer_arm(w->loop, &sh->timer, timeout);
    if (pt_hc_send(&sh->hc, &iov, 1, sh->req_done) == PT_IO) {
        shadow_end(sh, SHADOW_FAILED);
        return;
    }
    sh->st = st;
    st->shadow = sh;
}

void pt_shadow_body(struct pt_stream *st, const struct iovec *data, int n, bool done)
{
    struct pt_shadow *sh = st->shadow;
    struct pt_body_frame f; /* not zeroed: only its first f.n iovecs are read */
    size_t total = 0;

    if (sh == NULL || sh->req_done)
        return;
    for (int i = 0; i < n; i++)
        total += data[i].iov_len;
    if (pt_hc_pending(&sh->hc) + total > PT_SHADOW_PENDING_MAX) {
        struct pt_cluster_stats *cs = pt_stream_cluster_stats(st);
        if (cs != NULL)
            pt_stats_inc(&cs->retry_or_shadow_abandoned);
        shadow_end(sh, SHADOW_CANCELLED);
        return;
    }
    f.n = 0;
    pt_body_frame(&f, data, n, sh->chunked, done);
    if (done)
        sh->req_done = true;
    if ((f.n > 0 || done) && pt_hc_send(&sh->hc, f.iov, f.n, done) == PT_IO)
        shadow_end(sh, SHADOW_FAILED);
}

void pt_shadow_detach(struct pt_stream *st)
{
    struct pt_shadow *sh = st->shadow;

    st->shadow = NULL;
    if (sh == NULL)
        return;
    sh->st = NULL;
    if (!sh->req_done)
        shadow_end(sh, SHADOW_CANCELLED); /* nobody would finish its request */
}
