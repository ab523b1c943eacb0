/* A request's life, from its parsed head to its last byte: the stream is created when its
 * connection has a complete head (proxy/conn.c), routed by proxy/session.c, forwards the request
 * body up and the response down through its upstream connection's callbacks (the upstream
 * never calls into the connection), keeps its timers (route timeout, stream idle timeout), goes
 * again on a fresh upstream connection when a pooled one turns out dead (the RETRY state, run
 * from the worker's ready list, never from inside the failing call), and ends once: observed
 * (access log, spans), its upstream connection released, its snapshot left, its memory back to
 * the worker's free list. Bodies stream through the connection buffers and are never held
 * whole. Called by proxy/conn.c, proxy/session.c, proxy/reply.c and proxy/worker.c. */
#include "proxy/proxy.h"
#include "proxy/session.h"
#include "proxy/sockio.h"
#include "proxy/httpclient.h"
#include "proxy/grpcweb.h"
#include "proxy/policy.h"
#include "proxy/retry.h"
#include "proxy/shadow.h"
#include "observe/grpcstats.h"
#include "http/h1.h"
#include "http/body.h"
#include "cluster/lb.h"
#include "config/snapshot.h"
#include "observe/logformat.h"
#include "observe/trace.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

static const struct pt_hc_ops stream_hc_ops;

static void stream_on_route_timer(struct pt_timer *t);
static void stream_on_idle_timer(struct pt_timer *t);
static bool stream_up_on_error(void *owner, const char *reason, const char *tfr, const char *flags);
static void stream_unqueue(struct pt_stream *st);

/* stream_new: a stream from the worker's free list (or a new one), empty but for what every
 * request has: its connection, its snapshot, its start, the connection's facts for the log. */
static struct pt_stream *stream_new(struct pt_conn *c)
{
    struct pt_worker *w = c->w;
    struct pt_stream *st = w->free_streams;
    struct timespec ts;

    if (st != NULL) {
        w->free_streams = st->next_free;
    } else {
        if ((st = malloc(sizeof(*st))) == NULL)
            return NULL;
        st->call = st->edits[0] = st->edits[1] = NULL; /* kept empty from one request to the next */
        st->held = st->head_copy = NULL;
        st->held_len = st->held_cap = 0;
        st->held_end = false;
    }
    /* Zeroed: what every request reads before writing (the trace context is written by
     * pt_trace_start before use; the record's strings only up to what it keeps). */
    memset(st, 0, offsetof(struct pt_stream, trace_cfg));
    st->trace_cfg = NULL;
    memset(&st->rec, 0, offsetof(struct pt_req_record, local_addr));
    st->rec.local_addr[0] = st->rec.upstream_local_addr[0] = '\0';
    st->conn = c;
    st->w = w;
    st->snap = w->snap;
    st->snap->wref[w->id].inflight++;
    w->inflight++;
    st->timer.cb = stream_on_route_timer;
    st->idle_timer.cb = stream_on_idle_timer;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    st->rec.peer_ip = c->peer_ip;
    st->rec.peer_ip_len = c->peer_ip_len;
    st->rec.peer_port = c->peer_port;
    st->rec.tls = (c->flags & PT_CF_TLS) != 0;
    st->rec.sni = c->ssl ? SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
    st->rec.snap = st->snap;
    st->rec.start_ms = pt_loop_now_ms(w->loop);
    st->rec.start_realtime_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    st->rec.flags = "-";
    st->rec.upstream_ms = UINT32_MAX;
    pt_retry_stream_init(st);
    return st;
}

struct pt_stream *pt_stream_new(struct pt_conn *c)
{
    struct pt_stream *st = stream_new(c);
    struct pt_http_stats *hs;

    if (st != NULL && (hs = pt_stream_http_stats(st)) != NULL) {
        pt_stats_inc(&hs->downstream_rq_total);
        pt_stats_inc(c->h2 != NULL ? &hs->downstream_rq_http2_total : &hs->downstream_rq_http1_total);
        pt_gauge_inc(&hs->downstream_rq_active); /* until the stream ends */
        st->flags |= PT_SF_RQ_COUNTED;
    }
    return st;
}

/* lb_outcome: how the request's upstream part ended, for pt_lb_release, read from its status
 * and response flags. A response that started but did not end (client gone, or the upstream
 * reset mid-body: the flags do not tell which) counts as cancelled. */
static enum pt_lb_outcome lb_outcome(const struct pt_stream *st)
{
    const char *f = st->rec.flags;

    if (st->rec.upstream_status >= 500)
        return PT_LB_HTTP_5XX;
    if (f != NULL && f[0] == 'U') {
        switch (f[1]) {
        case 'F': return PT_LB_CONNECT_FAILURE; /* UF */
        case 'T': return PT_LB_TIMEOUT;         /* UT */
        case 'C': /* UC */
        case 'P': return PT_LB_RESET;           /* UPE */
        default: break;
        }
    }
    if (st->rec.upstream_status != 0 && (st->flags & PT_SF_RESP_DONE))
        return PT_LB_SUCCESS;
    return PT_LB_CANCELLED;
}

/* stream_request_end: the request leaves its endpoint pick, its snapshot and its gauges; an
 * old snapshot is released when its last request ends. */
static void stream_request_end(struct pt_stream *st)
{
    struct pt_worker *w = st->w;
    struct pt_snapshot *s = st->snap;
    struct pt_http_stats *hs = pt_stream_http_stats(st);
    uint64_t now = pt_loop_now_ms(w->loop);

    if (hs != NULL && (st->flags & PT_SF_RQ_COUNTED)) {
        pt_gauge_dec(&hs->downstream_rq_active);
        pt_hist_record_ms(&hs->downstream_rq_time, (double)(now - st->rec.start_ms));
    }
    if (st->flags & PT_SF_UP_ACTIVE) {
        struct pt_cluster_stats *cs = pt_stream_cluster_stats(st);
        if (cs != NULL) {
            pt_gauge_dec(&cs->upstream_rq_active);
            if (st->rec.upstream_status != 0 && (st->flags & PT_SF_RESP_DONE))
                pt_hist_record_ms(&cs->upstream_rq_time, (double)(now - st->upstream_start_ms));
        }
    }
    if (st->gs.on && st->rec.action != NULL) /* Module grpc_stats: the call is counted now */
        pt_grpcstats_end(w->st, &s->http.grpc_stats, &st->gs, st->rec.action->cluster->stats_idx, st->req.path,
                         (st->flags & PT_SF_UP_ACTIVE) && st->rec.upstream_status != 0 && (st->flags & PT_SF_RESP_DONE)
                             ? (double)(now - st->upstream_start_ms) : -1.0);
    pt_lb_release(&w->lb, &st->lb_pick, lb_outcome(st));
    w->inflight--;
    s->wref[w->id].inflight--;
    pt_worker_snapshot_done(w, s);
}

/* stream_observe: the request is over: its spans and its access-log line, once. */
static void stream_observe(struct pt_stream *st)
{
    const struct pt_logfmt *f = st->snap->log.fmt;

    if (st->flags & PT_SF_ENDED)
        return;
    st->flags |= PT_SF_ENDED;
    st->rec.end_ms = pt_loop_now_ms(st->w->loop);
    if (f != NULL && (f->needs & PT_LOGFMT_NEEDS_LOCAL_ADDR))
        pt_fd_local_addr(st->conn->io.fd, st->rec.local_addr);
    if (f != NULL && (f->needs & PT_LOGFMT_NEEDS_UPSTREAM_LOCAL_ADDR) && pt_hc_fd(&st->hc) >= 0)
        pt_fd_local_addr(pt_hc_fd(&st->hc), st->rec.upstream_local_addr);
    pt_session_observe_end(st);
}

/* stream_end: the stream is over; its connection is told <how> (struct pt_down_ops end). */
static void stream_end(struct pt_stream *st, int how, bool upstream_reusable)
{
    struct pt_worker *w = st->w;

    pt_timer_cancel(&st->timer);
    pt_timer_cancel(&st->idle_timer);
    if (st->trace_cfg != NULL)
        pt_trace_upstream_end(&st->trace);
    stream_observe(st);
    pt_hc_finish(&st->hc, upstream_reusable);
    if (st->call != NULL || st->held != NULL || pt_policy_has_edits(st))
        pt_policy_end(st);
    pt_retry_stream_end(st);
    if (st->flags & PT_SF_SHADOWED)
        pt_shadow_detach(st); /* before its snapshot may go: the mirror holds its own */
    stream_request_end(st);
    if (st->head_copy != NULL) { /* the request's head while its checks ran (proxy/policy.c) */
        free(st->head_copy);
        st->head_copy = NULL;
    }
    if (st->state == PT_ST_RETRY)
        stream_unqueue(st);
    st->conn->down->end(st, how);
    st->next_free = w->free_streams;
    w->free_streams = st;
}

/* stream_finish: the request and the response are both complete. */
static void stream_finish(struct pt_stream *st)
{
    bool reusable = (st->flags & PT_SF_REQ_DONE) && (st->flags & PT_SF_REQ_SENT);

    /* The rest of a request body cannot be skipped safely: the connection closes. */
    stream_end(st, (st->flags & PT_SF_CLOSE_AFTER) || !(st->flags & PT_SF_REQ_DONE) ? PT_DOWN_CLOSE : PT_DOWN_DONE,
               reusable);
}

void pt_stream_abort(struct pt_stream *st)
{
    if (st->rec.status == 0)
        st->rec.flags = "DC";
    stream_end(st, PT_DOWN_ABORT, false);
}

void pt_stream_release_upstream(struct pt_stream *st)
{
    pt_hc_finish(&st->hc, false);
    pt_retry_cancel_wait(st); /* answered: no per-try timeout, no retry */
    pt_retry_connected(st);
    if (st->call != NULL) { /* answered while a check runs: the check is given up */
        pt_call_cancel(st->call);
        st->call = NULL;
    }
}

/* ---- the request body: client -> upstream ------------------------------------------------- */

int pt_stream_send_request(struct pt_stream *st, struct pt_body_frame *out, bool bad_body_400, bool *goes_on)
{
    const struct pt_down_ops *down = st->conn->down;
    bool done = (st->flags & PT_SF_REQ_DONE) != 0, held = false;
    int64_t used = 0;
    int r = 0;

    *goes_on = false;
    if (!done) {
        struct iovec data[PT_BODY_RUNS];
        int k = 0;
        if (st->held != NULL) { /* what the AuthService saw goes first (proxy/policy.c) */
            held = true;
            if (st->held_len != 0)
                data[k++] = (struct iovec){ st->held, st->held_len };
            done = st->held_end;
        } else {
            used = down->body(st, data, &k, &done);
        }
        if (used == PT_BADMSG && bad_body_400) {
            pt_reply_bad_request(st);
            return -1;
        }
        if (used < 0) {
            pt_stream_abort(st); /* the client went away, or broke the body's framing */
            return -1;
        }
        if (used == 0 && !held && !done && out->n == 0)
            return 0; /* more comes with pt_stream_on_client_readable */
        if (st->gw.kind) { /* gRPC-Web: decoded on its way (with the head, if any) */
            r = pt_gw_send(st, out->n ? &out->iov[0] : NULL, data, k, done);
            if (r == PT_BADMSG) {
                pt_reply_local(st, 400, PT_STR_LIT(PT_GW_BAD_BASE64), "-"); /* or cut, after a head */
                return -1;
            }
            out->n = 0; /* sent */
        } else {
            if (st->gs.on) /* Module grpc_stats (gRPC-Web: counted decoded, proxy/grpcweb.c) */
                pt_grpcstats_feed(&st->gs, true, data, k);
            if (st->rec.action != NULL && st->rec.action->retry != NULL) /* kept for a retry */
                pt_retry_keep(st, data, k);
            pt_body_frame(out, data, k, st->req_body.kind == PT_BODY_CHUNKED && pt_hc_chunked(&st->hc), done);
            if (st->flags & PT_SF_SHADOWED) /* its mirror gets the same pieces */
                pt_shadow_body(st, data, k, done);
        }
    }
    if (r == PT_IO || (done && !st->gw.kind && pt_stream_pass_trailers(st) != 0) ||
        ((out->n > 0 || (done && !st->gw.kind)) && pt_hc_send(&st->hc, out->iov, out->n, done) == PT_IO)) {
        *goes_on = stream_up_on_error(st, "connection termination", NULL, "UC");
        return -1;
    }
    if (used > 0)
        down->body_consume(st, used);
    if (held) { /* sent: the rest comes from the client */
        free(st->held);
        st->held = NULL;
        st->held_len = st->held_cap = 0;
        st->held_end = false;
    }
    st->rec.bytes_rx = st->req_body.payload;
    if (done)
        st->flags |= PT_SF_REQ_DONE;
    if (done && !pt_hc_send_blocked(&st->hc))
        st->flags |= PT_SF_REQ_SENT;
    pt_stream_touch(st);
    return 1;
}

int pt_stream_send_replay(struct pt_stream *st, struct pt_body_frame *out, bool *goes_on)
{
    bool done = (st->flags & PT_SF_REQ_DONE) != 0;
    struct iovec kept = { st->replay, st->replay_len };

    *goes_on = false;
    pt_body_frame(out, &kept, 1, st->req_body.kind == PT_BODY_CHUNKED && pt_hc_chunked(&st->hc), done);
    if ((done && pt_stream_pass_trailers(st) != 0) || pt_hc_send(&st->hc, out->iov, out->n, done) == PT_IO) {
        *goes_on = stream_up_on_error(st, "connection termination", NULL, "UC");
        return -1;
    }
    if (done && !pt_hc_send_blocked(&st->hc))
        st->flags |= PT_SF_REQ_SENT;
    pt_stream_touch(st);
    return 1;
}

/* Sends request body bytes upstream as long as the upstream takes them. Returns false when the
 * stream ended (the client went away, or the upstream failed and it was answered). */
static bool stream_forward_request_body(struct pt_stream *st)
{
    while (!(st->flags & PT_SF_REQ_DONE) && pt_hc_active(&st->hc) && !pt_hc_send_blocked(&st->hc)) {
        struct pt_body_frame out; /* not zeroed: only its first out.n iovecs are read */
        bool goes_on;
        int r;
        out.n = 0;
        r = pt_stream_send_request(st, &out, false, &goes_on);
        if (r == 0)
            return true;
        if (r < 0)
            return goes_on;
    }
    if ((st->flags & PT_SF_REQ_DONE) && pt_hc_active(&st->hc) && !pt_hc_send_blocked(&st->hc))
        st->flags |= PT_SF_REQ_SENT;
    return true;
}

int pt_stream_pass_trailers(struct pt_stream *st)
{
    const struct pt_down_ops *down = st->conn->down;
    size_t n;

    if (down->req_trailers == NULL || (n = down->req_trailers(st, st->w->out_hdrs, PT_ARRAY_SIZE(st->w->out_hdrs))) == 0)
        return 0;
    return pt_hc_trailers(&st->hc, st->w->out_hdrs, n);
}

void pt_stream_on_client_readable(struct pt_stream *st)
{
    if (st->state == PT_ST_POLICY)
        pt_policy_on_client_readable(st); /* its checks run: the body waits (or is gathered) */
    else if (!(st->flags & PT_SF_REQ_DONE))
        stream_forward_request_body(st);
    /* else the bytes wait (RD_PENDING stays set): a pipelined request, read after this one */
}

/* ---- the response: upstream -> client ---------------------------------------------------- */

void pt_stream_on_client_writable(struct pt_stream *st)
{
    if (st->flags & PT_SF_RESP_DONE)
        stream_finish(st);
    else if (st->hc.paused)
        pt_hc_resume(&st->hc); /* the upstream's bytes may flow again */
}

void pt_stream_local_reply_done(struct pt_stream *st)
{
    st->flags |= PT_SF_RESP_HEAD | PT_SF_RESP_DONE;
    st->state = PT_ST_REPLIED;
    if (!(st->flags & PT_SF_REQ_DONE))
        st->flags |= PT_SF_CLOSE_AFTER;
    if (!st->conn->down->blocked(st)) {
        stream_finish(st);
        return;
    }
    /* The reply waits for the client (an HTTP/2 client that never opens its window, an HTTP/1
     * one that never reads): the stream idle timeout bounds the wait, also for replies given
     * before the route set one, or given by that timeout itself; then the stream is aborted. */
    if (st->idle_ms == 0)
        st->idle_ms = pt_proxy_limits.stream_idle_timeout_ms ? pt_proxy_limits.stream_idle_timeout_ms
                                                             : PT_REPLY_WAIT_MAX_MS;
    pt_stream_touch(st);
}

/* The response head: the client's is built now and leaves with the first body bytes. */
static int stream_hc_on_head(void *owner, const struct pt_h1_response *res)
{
    struct pt_stream *st = owner;

    if (pt_retry_on_status(st, res)) { /* the route's retry_policy sends it again */
        pt_hc_finish(&st->hc, false);
        return PT_CLOSED;
    }
    if (st->retry_flag)
        st->rec.flags = pt_retry_flags(st, NULL); /* URX: retries ran out (or UO) */
    if (pt_session_response_head(st, res) == 0)
        return 0;
    pt_hc_finish(&st->hc, false);
    pt_reply_upstream_reset(st, "protocol error", NULL, "UPE"); /* a head too large to pass */
    return PT_CLOSED;
}

/* Body data for the client (its connection frames it), after the head. */
static int stream_hc_on_body(void *owner, const struct iovec *data, int n, bool end)
{
    struct pt_stream *st = owner;
    const struct pt_down_ops *down = st->conn->down;
    int r;

    if (st->flags & PT_SF_BODY_REPLACED) { /* error_response_overrides sent its body already */
        r = 0;
        goto sent;
    }
    if (st->gs.on) /* Module grpc_stats: the upstream's messages, before any gRPC-Web encoding */
        pt_grpcstats_feed(&st->gs, false, data, n);
    r = st->gw.kind ? pt_gw_data(st, data, n, end) : down->data(st, data, n, end);

    st->rec.bytes_tx = st->hc.body.payload; /* %BYTES_SENT%: body bytes, as Envoy counts */
sent:
    if (r == PT_IO) {
        pt_stream_abort(st);
        return PT_CLOSED;
    }
    if (n > 0)
        pt_stream_touch(st);
    if (end) {
        st->flags |= PT_SF_RESP_DONE;
        if (r == 0 && !down->blocked(st)) {
            stream_finish(st);
            return PT_CLOSED;
        }
        return 0;
    }
    if ((st->flags & PT_SF_TUNNEL) && !(st->flags & PT_SF_REQ_DONE) && !stream_forward_request_body(st))
        return PT_CLOSED; /* the client's first bytes of the other protocol may be here already */
    if (r == PT_AGAIN)
        pt_hc_pause(&st->hc); /* until the client has taken what it was given */
    return 0;
}

/* The response's trailers (an HTTP/2 upstream): to the client when its protocol has them. */
static int stream_hc_on_trailers(void *owner, const struct pt_header *h, size_t n)
{
    struct pt_stream *st = owner;
    const struct pt_down_ops *down = st->conn->down;

    if (st->gs.on) /* Module grpc_stats */
        pt_grpcstats_status(&st->gs, h, n);
    if (st->gw.kind) { /* into the body, as gRPC-Web's trailer frame */
        if (pt_gw_trailers(st, h, n) == PT_IO) {
            pt_stream_abort(st);
            return PT_CLOSED;
        }
        return 0;
    }
    if (down->trailers != NULL && down->trailers(st, h, n) != 0) {
        pt_stream_abort(st);
        return PT_CLOSED;
    }
    return 0;
}

static void stream_hc_on_writable(void *owner)
{
    pt_retry_connected(owner); /* its connection is up: no longer pending */
    stream_forward_request_body(owner);
}

static void stream_hc_on_error(void *owner, const char *reason, const char *tfr, const char *flags)
{
    stream_up_on_error(owner, reason, tfr, flags);
}

bool pt_stream_upstream_failed(struct pt_stream *st, const char *reason, const char *tfr, const char *flags)
{
    return stream_up_on_error(st, reason, tfr, flags); /* it finishes the exchange first */
}

/* stream_up_on_error: the upstream exchange failed. Returns true when the stream goes on (a
 * retry is queued), false when it ended or answered. */
static bool stream_up_on_error(void *owner, const char *reason, const char *tfr, const char *flags)
{
    struct pt_stream *st = owner;
    /* A pooled connection that ends before any response head was most likely closed by the
     * backend as we reused it: the request may go again on a new one, once. */
    bool stale = pt_hc_reused(&st->hc) && !(st->flags & PT_SF_RESP_HEAD) && strcmp(flags, "UC") == 0 &&
                 st->retries == 0;

    pt_hc_finish(&st->hc, false);
    pt_retry_connected(st);
    if (stale && pt_session_can_retry(st)) {
        pt_lb_release(&st->w->lb, &st->lb_pick, PT_LB_RESET); /* the retry picks again */
        st->state = PT_ST_RETRY;
        st->retries++;
        st->next_free = st->w->ready_streams;
        st->w->ready_streams = st;
        return true;
    }
    if (!(st->flags & PT_SF_RESP_HEAD) && pt_retry_on_reset(st, reason, flags))
        return true; /* the route's retry_policy: after a back-off (proxy/retry.c) */
    if (st->flags & PT_SF_RESP_HEAD)
        pt_stream_abort(st);
    else
        pt_reply_upstream_reset(st, reason, tfr, pt_retry_flags(st, flags));
    return false;
}

static const struct pt_hc_ops stream_hc_ops = {
    .on_head = stream_hc_on_head,
    .on_body = stream_hc_on_body,
    .on_trailers = stream_hc_on_trailers,
    .on_writable = stream_hc_on_writable,
    .on_error = stream_hc_on_error,
};

/* slices_in: the extent [*lo, *hi) of <req>'s slices that lie in [<base>, <base> + <cap>). */
static void slices_in(const struct pt_h1_request *req, const char *base, size_t cap, const char **lo,
                      const char **hi)
{
    const struct pt_str *s[] = { &req->method, &req->target, &req->path, &req->query, &req->authority, &req->host };

    *lo = base + cap;
    *hi = base;
#define SPAN(x)                                                                      \
    do {                                                                             \
        if ((x)->ptr != NULL && (x)->ptr >= base && (x)->ptr < base + cap) {         \
            if ((x)->ptr < *lo)                                                      \
                *lo = (x)->ptr;                                                      \
            if ((x)->ptr + (x)->len > *hi)                                           \
                *hi = (x)->ptr + (x)->len;                                           \
        }                                                                            \
    } while (0)
    for (size_t i = 0; i < PT_ARRAY_SIZE(s); i++)
        SPAN(s[i]);
    for (size_t i = 0; i < req->nheaders; i++) {
        SPAN(&req->headers[i].name);
        SPAN(&req->headers[i].value);
    }
#undef SPAN
}

bool pt_stream_keep_head(struct pt_stream *st, bool conn_buffer)
{
    struct pt_h1_request *req = &st->req;
    const char *bases[2] = { st->conn->in.base, st->w->pathbuf };
    size_t caps[2] = { conn_buffer && st->conn->in.base ? st->conn->in.cap : 0, sizeof(st->w->pathbuf) };
    const char *lo[2], *hi[2];
    size_t len[2], total = 0;

    for (int i = 0; i < 2; i++) {
        slices_in(req, bases[i], caps[i], &lo[i], &hi[i]);
        len[i] = hi[i] > lo[i] ? (size_t)(hi[i] - lo[i]) : 0;
        total += len[i];
    }
    if (total == 0 || st->head_copy != NULL)
        return true; /* nothing there, or it was copied already */
    if ((st->head_copy = malloc(total)) == NULL)
        return false;
    for (int i = 0, at = 0; i < 2; at += (int)len[i], i++) {
        if (len[i] == 0)
            continue;
        memcpy(st->head_copy + at, lo[i], len[i]);
        pt_h1_request_rebase(req, lo[i], len[i], st->head_copy + at);
    }
    return true;
}

int pt_stream_connect(struct pt_stream *st, bool fresh)
{
    const struct pt_route_action *a = st->rec.action;

    return pt_hc_start(&st->hc, st->w, a->cluster, st->rec.endpoint, fresh, &stream_hc_ops, st,
                       ((st->flags & PT_SF_HEAD_METHOD) ? PT_HC_HEAD_REQUEST : 0) |
                           ((st->flags & PT_SF_UPGRADE) ? PT_HC_ALLOW_101 : 0));
}

/* ---- retries ------------------------------------------------------------------------------ */

/* stream_unqueue: takes a stream in the RETRY state off the worker's ready list. */
static void stream_unqueue(struct pt_stream *st)
{
    struct pt_stream **pp = &st->w->ready_streams;

    if (st->flags & PT_SF_RETRY_WAIT) { /* a back-off: on its timer, not on the list */
        pt_retry_cancel_wait(st);
        st->state = PT_ST_UPSTREAM;
        return;
    }
    if (st->flags & PT_SF_CX_WAIT) { /* waiting for a connection: on its pool entry's list */
        pt_up_unwait(st);
        st->state = PT_ST_UPSTREAM;
        return;
    }
    st->flags &= ~PT_SF_CX_WOKEN;
    while (*pp != NULL && *pp != st)
        pp = &(*pp)->next_free;
    if (*pp == st)
        *pp = st->next_free;
    st->state = PT_ST_UPSTREAM;
}

void pt_stream_cx_ready(struct pt_stream *st)
{
    st->flags |= PT_SF_CX_WOKEN;
    st->next_free = st->w->ready_streams;
    st->w->ready_streams = st;
}

void pt_stream_run_ready(struct pt_worker *w)
{
    while (w->ready_streams != NULL) {
        struct pt_stream *st = w->ready_streams;
        w->ready_streams = st->next_free;
        st->state = PT_ST_UPSTREAM;
        if (st->flags & PT_SF_CX_WOKEN) {
            pt_retry_connected(st); /* pending no more, until it waits again */
            pt_session_resend(st, false); /* on the connection freed for it, if still there */
        } else {
            pt_session_retry(st);
        }
    }
}

/* ---- timers -------------------------------------------------------------------------------- */

/* stream_time_out: the request ran out of time: a local reply of <status> and <body> while
 * the response has not started, else the connection closes; <flags> in the access log. */
static void stream_time_out(struct pt_stream *st, int status, struct pt_str body, const char *flags)
{
    if (st->flags & PT_SF_RESP_HEAD) {
        st->rec.flags = flags;
        pt_stream_abort(st);
        return;
    }
    if (st->state == PT_ST_RETRY)
        stream_unqueue(st);
    pt_stream_release_upstream(st);
    pt_reply_local(st, status, body, flags);
}

/* Nothing moved either way for the stream idle timeout: 504 "stream timeout" when the request
 * was all read, else 408. */
static void stream_on_idle_timer(struct pt_timer *t)
{
    struct pt_stream *st = pt_container_of(t, struct pt_stream, idle_timer);
    uint64_t idle = pt_loop_now_ms(st->w->loop) - st->active_ms;

    if (idle < st->idle_ms) { /* bytes moved since it was armed */
        pt_timer_arm(st->w->loop, &st->idle_timer, st->idle_ms - (uint32_t)idle);
        return;
    }
    if ((st->flags & PT_SF_RESP_HEAD) && st->conn->h2 == NULL)
        st->conn->flags |= PT_CF_STALLED; /* nothing moved: what the client has not taken when
                                           * its connection closes is dropped (pt_conn_close) */
    stream_time_out(st, (st->flags & PT_SF_REQ_DONE) ? 504 : 408, PT_STR_LIT("stream timeout"), "SI");
}

static void stream_on_route_timer(struct pt_timer *t)
{
    struct pt_stream *st = pt_container_of(t, struct pt_stream, timer);
    struct pt_cluster_stats *cs = pt_stream_cluster_stats(st);

    if (cs != NULL)
        pt_stats_inc(&cs->upstream_rq_timeout);
    stream_time_out(st, 504, PT_STR_LIT("upstream request timeout"), "UT");
}
