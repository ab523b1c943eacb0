/* Policy calls (proxy/call.h): a stream's request to its AuthService or RateLimitService, on
 * the same upstream client as proxied requests. The answer is copied into the call's own memory
 * as it comes (the client's slices live only during its callbacks), bounded by
 * PT_CALL_MAX_ANSWER; the exchange is finished (its connection back to the pool, or its HTTP/2
 * stream closed) before the caller hears of the result, so a caller that goes on to proxy the
 * request finds the connection free. The cluster's request counters and its endpoint's
 * outcome are kept as for proxied requests. */
#include "proxy/call.h"
#include "proxy/httpclient.h"
#include "proxy/pbuf.h"
#include "http/h1write.h"
#include "cluster/lb.h"
#include "observe/stats.h"
#include "observe/trace.h"

#include <stdlib.h>
#include <string.h>

static const struct pt_hc_ops call_hc_ops;

/* call_keep: copies <s> into the call's memory (PT_CALL_MAX_ANSWER bytes, taken at the first
 * use and kept with the call on the free list, so slices never move); false when the answer
 * is too large. */
static bool call_keep(struct pt_call *call, struct pt_str s, struct pt_str *out)
{
    if (s.len > PT_CALL_MAX_ANSWER - call->used)
        return false;
    if (call->mem == NULL && (call->mem = malloc(PT_CALL_MAX_ANSWER)) == NULL)
        return false;
    if (s.len != 0)
        memcpy(call->mem + call->used, s.ptr, s.len);
    *out = pt_str_make(call->mem + call->used, s.len);
    call->used += (uint32_t)s.len;
    return true;
}

/* call_keep_fields: copies the fields <h> into <out>, names lowercase. False when they do not
 * fit (more than PT_CALL_MAX_FIELDS): a field the answer relies on could be lost, so the
 * answer is refused rather than read in part. */
static bool call_keep_fields(struct pt_call *call, const struct pt_header *h, size_t n, struct pt_header *out,
                             uint32_t *nout)
{
    if (n > PT_CALL_MAX_FIELDS - *nout)
        return false;
    for (size_t i = 0; i < n; i++) {
        struct pt_header *f = &out[*nout];
        if (!call_keep(call, h[i].name, &f->name) || !call_keep(call, h[i].value, &f->value))
            return false;
        for (size_t k = 0; k < f->name.len; k++)
            ((char *)f->name.ptr)[k] = pt_lower(f->name.ptr[k]);
        (*nout)++;
    }
    return true;
}

bool pt_call_edit(struct pt_call *call, int op, struct pt_str name, struct pt_str value)
{
    struct pt_call_edit *e;

    if (call->nedits >= PT_CALL_MAX_FIELDS)
        return false;
    e = &call->edits[call->nedits];
    if (!call_keep(call, name, &e->name) || !call_keep(call, value, &e->value))
        return false;
    for (size_t k = 0; k < e->name.len; k++)
        ((char *)e->name.ptr)[k] = pt_lower(e->name.ptr[k]);
    e->op = (uint8_t)op;
    call->nedits++;
    return true;
}

static struct pt_cluster_stats *call_stats(const struct pt_call *call)
{
    return pt_stats_cluster(call->st->w->st, call->cluster->stats_idx);
}

/* call_span: the call's span goes to the worker's ring (when its request is sampled). */
static void call_span(struct pt_call *call, struct pt_worker *w, int result, bool canceled)
{
    struct pt_trace_call_info info = {
        .cluster = pt_str_c(call->cluster->name),
        .upstream_address = call->ep ? pt_str_c(call->ep->name) : (struct pt_str){ 0 },
        .stats_name = pt_str_c(call->cluster->stats_name),
        .response_flags = result == PT_CALL_TIMEOUT ? PT_STR_LIT("UT")
                          : result == PT_CALL_FAILED && call->status == 0 ? PT_STR_LIT("UF") : (struct pt_str){ 0 },
        .status = call->status,
        .kind = call->cluster->http2 ? PT_TRACE_CALL_GRPC : PT_TRACE_CALL_HTTP,
        .error = result != PT_CALL_OK && !canceled,
    };

    if (call->trace.flags == 0)
        return;
    for (uint8_t i = 0; i < call->ntags; i++) {
        info.tag_key[info.ntags] = pt_str_c(call->tag_key[i]);
        info.tag_value[info.ntags++] = call->tag_value[i];
    }
    if (canceled && info.ntags < PT_TRACE_CALL_TAGS) {
        info.tag_key[info.ntags] = PT_STR_LIT("canceled");
        info.tag_value[info.ntags++] = PT_STR_LIT("true");
    }
    pt_trace_call_end(w->trace, &call->trace, &info);
}

void pt_call_tag(struct pt_call *call, const char *key, struct pt_str value)
{
    if (call->ntags < PT_TRACE_CALL_TAGS) {
        call->tag_key[call->ntags] = key;
        call->tag_value[call->ntags++] = value;
    }
}

/* PT_CALL_FREE_KEEP: ended calls a worker keeps for reuse (each holds up to 64 KiB of answer
 * memory); past it they are freed, so the memory of a burst of checks goes back. */
#define PT_CALL_FREE_KEEP 64

static void call_release(struct pt_call *call, struct pt_worker *w)
{
    if (w->nfree_calls >= PT_CALL_FREE_KEEP) {
        free(call->req);
        free(call->mem);
        free(call);
        return;
    }
    w->nfree_calls++;
    if (call->req_cap > PT_CALL_MAX_ANSWER) { /* a large body: not kept on the free list */
        free(call->req);
        call->req = NULL;
        call->req_cap = 0;
    }
    call->next_free = w->free_calls;
    w->free_calls = call;
}

/* call_flags: how a call's exchange starts: a HEAD's answer has no body, and a new connection
 * is not held to the cluster's max_connections (a call cannot wait for one as a request does,
 * and failing would take its error path, a denial or failure_mode_allow, for want of a
 * connection). */
static unsigned call_flags(const struct pt_call *call)
{
    return PT_HC_UNCOUNTED | (call->head_request ? PT_HC_HEAD_REQUEST : 0);
}

/* call_end: the call is over with <result>: its exchange finished (the connection reused when
 * the answer was whole), its timer stopped, its endpoint told, the caller told, and its span
 * recorded. */
static void call_end(struct pt_call *call, int result)
{
    struct pt_worker *w = call->st->w; /* the stream may end in done */
    struct pt_snapshot *snap = call->st->snap;
    struct pt_cluster_stats *cs = call_stats(call);
    enum pt_lb_outcome outcome = result == PT_CALL_OK ? (call->status >= 500 ? PT_LB_HTTP_5XX : PT_LB_SUCCESS)
                                 : result == PT_CALL_TIMEOUT ? PT_LB_TIMEOUT : PT_LB_RESET;

    pt_hc_finish(&call->hc, result == PT_CALL_OK);
    pt_timer_cancel(&call->timer);
    pt_lb_release(&call->st->w->lb, &call->pick, outcome);
    if (cs != NULL) {
        pt_gauge_dec(&cs->upstream_rq_active);
        if (result == PT_CALL_OK) {
            pt_stats_upstream_code(cs, call->status);
            pt_hist_record_ms(&cs->upstream_rq_time,
                              (double)(pt_loop_now_ms(call->st->w->loop) - call->start_ms));
        } else if (result == PT_CALL_TIMEOUT) {
            pt_stats_inc(&cs->upstream_rq_timeout);
        }
    }
    call->ended = true;
    call->in_done = true;
    snap->wref[w->id].inflight++; /* its span reads the cluster after done, which may end the stream */
    call->done(call->st, call, result);
    call->in_done = false;
    call_span(call, w, result, false);
    if (call->free_pending)
        call_release(call, w);
    snap->wref[w->id].inflight--;
    pt_worker_snapshot_done(w, snap);
}

static int call_on_head(void *owner, const struct pt_h1_response *res)
{
    struct pt_call *call = owner;

    call->status = res->status;
    if (!call_keep_fields(call, res->headers, res->nheaders, call->headers, &call->nheaders)) {
        call_end(call, PT_CALL_FAILED);
        return PT_CLOSED;
    }
    return 0;
}

static int call_on_body(void *owner, const struct iovec *iov, int n, bool end)
{
    struct pt_call *call = owner;

    for (int i = 0; i < n; i++) {
        struct pt_str piece;
        if (!call_keep(call, pt_str_make(iov[i].iov_base, iov[i].iov_len), &piece)) {
            call_end(call, PT_CALL_FAILED);
            return PT_CLOSED;
        }
        if (call->body.len == 0)
            call->body.ptr = piece.ptr;
        call->body.len += piece.len; /* contiguous: nothing else is kept after the head */
    }
    if (!end)
        return 0;
    call_end(call, PT_CALL_OK);
    return PT_CLOSED;
}

static int call_on_trailers(void *owner, const struct pt_header *h, size_t n)
{
    struct pt_call *call = owner;

    if (!call_keep_fields(call, h, n, call->trailers, &call->ntrailers)) {
        call_end(call, PT_CALL_FAILED);
        return PT_CLOSED;
    }
    return 0;
}

static void call_on_writable(void *owner)
{
    (void)owner; /* the whole request was handed over at the start */
}

/* call_send: hands the kept request to the exchange; false when it failed at once. */
static bool call_send(struct pt_call *call)
{
    /* iov[0] is the head alone: an HTTP/2 exchange reads its fields from it */
    struct iovec iov[2] = { { call->req, call->req_head }, { call->req + call->req_head, call->req_len - call->req_head } };
    return pt_hc_send(&call->hc, iov, iov[1].iov_len ? 2 : 1, true) != PT_IO;
}

static void call_on_error(void *owner, const char *reason, const char *tfr, const char *flags)
{
    struct pt_call *call = owner;
    bool stale = pt_hc_reused(&call->hc) && call->status == 0 && !call->retried && strcmp(flags, "UC") == 0;

    (void)reason, (void)tfr;
    /* A pooled connection that closes before any answer was most likely closed by the service
     * as we reused it: the request goes again on a new one, once, as proxied requests do. */
    if (stale) {
        pt_hc_finish(&call->hc, false);
        call->retried = true;
        if (pt_hc_start(&call->hc, call->st->w, call->cluster, call->ep, true, &call_hc_ops, call,
                        call_flags(call)) == 0 &&
            call_send(call))
            return;
    }
    call_end(call, PT_CALL_FAILED);
}

static const struct pt_hc_ops call_hc_ops = {
    .on_head = call_on_head,
    .on_body = call_on_body,
    .on_trailers = call_on_trailers,
    .on_writable = call_on_writable,
    .on_error = call_on_error,
};

static void call_on_timer(struct pt_timer *t)
{
    struct pt_call *call = pt_container_of(t, struct pt_call, timer);

    call_end(call, call->send_failed ? PT_CALL_FAILED : PT_CALL_TIMEOUT);
}

struct pt_call *pt_call_start(struct pt_stream *st, const struct pt_cluster *c, struct pt_str head,
                              struct pt_str body, uint32_t timeout_ms, pt_call_done_fn done)
{
    struct pt_worker *w = st->w;
    struct pt_call *call = w->free_calls;
    struct pt_cluster_stats *cs;
    size_t len = head.len + body.len + PT_TRACE_INJECT_MAX;
    size_t hl = head.len;

    if (call != NULL)
        w->free_calls = call->next_free, w->nfree_calls--;
    else if ((call = calloc(1, sizeof(*call))) == NULL)
        return NULL;
    call->trace = (struct pt_trace_call){ 0 };
    call->ntags = 0;
    call->in_done = call->free_pending = false;
    call->head_request = head.len > 5 && memcmp(head.ptr, "HEAD ", 5) == 0; /* no body in its answer */
    if (len > call->req_cap) { /* kept until the answer: a stale pooled connection resends it */
        char *m = realloc(call->req, len);
        if (m == NULL) {
            call->st = st;
            pt_call_free(call);
            return NULL;
        }
        call->req = m;
        call->req_cap = (uint32_t)len;
    }
    memcpy(call->req, head.ptr, head.len);
    if (st->trace_cfg != NULL && head.len >= 2 && pt_trace_call_begin(w->trace, &st->trace, &call->trace) != 0) {
        /* the call's span context, before the head's blank line */
        hl = head.len - 2 + pt_trace_call_inject(&call->trace, call->req + head.len - 2, PT_TRACE_INJECT_MAX);
        memcpy(call->req + hl, "\r\n", 2);
        hl += 2;
    }
    if (body.len != 0)
        memcpy(call->req + hl, body.ptr, body.len);
    call->req_len = (uint32_t)(hl + body.len);
    call->req_head = (uint32_t)hl;
    call->st = st;
    call->done = done;
    call->cluster = c;
    call->ended = call->send_failed = call->retried = false;
    call->status = 0;
    call->nheaders = call->ntrailers = call->nedits = 0;
    call->body = (struct pt_str){ 0 };
    call->used = 0;
    call->hc = (struct pt_hc){ 0 };
    call->timer.cb = call_on_timer;
    call->start_ms = pt_loop_now_ms(w->loop);
    cs = pt_stats_cluster(w->st, c->stats_idx);
    if (cs != NULL) {
        pt_stats_inc(&cs->upstream_rq_total);
        if (c->nendpoints == 0)
            pt_stats_inc(&cs->upstream_cx_none_healthy);
    }
    call->ep = c->nendpoints ? pt_lb_pick(&w->lb, c, NULL, &call->pick) : NULL;
    if (call->ep == NULL ||
        pt_hc_start(&call->hc, w, c, call->ep, false, &call_hc_ops, call, call_flags(call)) != 0) {
        pt_lb_release(&w->lb, &call->pick, PT_LB_CONNECT_FAILURE);
        call->hc = (struct pt_hc){ 0 };
        pt_call_free(call);
        return NULL;
    }
    if (cs != NULL)
        pt_gauge_inc(&cs->upstream_rq_active);
    if (timeout_ms != 0)
        pt_timer_arm(w->loop, &call->timer, timeout_ms);
    call->send_failed = !call_send(call);
    if (call->send_failed) /* reported from the loop, never from inside the caller's call */
        pt_timer_arm(w->loop, &call->timer, 0);
    return call;
}

size_t pt_call_grpc_head(const struct pt_cluster *c, struct pt_str path, uint32_t timeout_ms, char *out, size_t cap)
{
    struct pt_h1w b;

    pt_h1w_init(&b, out, cap);
    pt_h1w_request_line(&b, PT_STR_LIT("POST"), path);
    pt_h1w_header(&b, PT_STR_LIT("host"), pt_str_c(c->name)); /* Envoy's gRPC client: the cluster */
    pt_h1w_header(&b, PT_STR_LIT("content-type"), PT_STR_LIT("application/grpc"));
    if (timeout_ms != 0) {
        char t[64]; /* pt_h1w_header copies in words: room to spare */
        size_t tl = pt_u64_dec(timeout_ms, t);
        t[tl++] = 'm';
        pt_h1w_header(&b, PT_STR_LIT("grpc-timeout"), pt_str_make(t, tl));
    }
    return pt_h1w_end(&b);
}

void *pt_call_grpc_unpack(struct pt_call *call, const ProtobufCMessageDescriptor *d)
{
    struct pt_str gs = pt_call_trailer(call, PT_STR_LIT("grpc-status")), msg;
    struct pt_pbuf b;
    ProtobufCAllocator alloc;
    ProtobufCMessage *m;

    if (call->status != 200 || gs.len != 1 || gs.ptr[0] != '0' || !pt_pbuf_unframe(call->body, &msg))
        return NULL;
    b = (struct pt_pbuf){ .base = call->mem + call->used, .cap = PT_CALL_MAX_ANSWER - call->used };
    alloc = pt_pbuf_allocator(&b);
    if ((m = protobuf_c_message_unpack(d, &alloc, msg.len, (const uint8_t *)msg.ptr)) != NULL)
        call->used += (uint32_t)b.used; /* the message's strings stay with the call */
    return m;
}

static struct pt_str field_find(const struct pt_header *h, uint32_t n, struct pt_str name)
{
    for (uint32_t i = 0; i < n; i++)
        if (h[i].name.len == name.len && memcmp(h[i].name.ptr, name.ptr, name.len) == 0)
            return h[i].value;
    return (struct pt_str){ 0 };
}

struct pt_str pt_call_header(const struct pt_call *call, struct pt_str name)
{
    return field_find(call->headers, call->nheaders, name);
}

struct pt_str pt_call_trailer(const struct pt_call *call, struct pt_str name)
{
    struct pt_str v = field_find(call->trailers, call->ntrailers, name);
    return v.ptr != NULL ? v : pt_call_header(call, name);
}

void pt_call_cancel(struct pt_call *call)
{
    struct pt_cluster_stats *cs = call_stats(call);

    if (!call->ended) {
        pt_hc_finish(&call->hc, false);
        pt_timer_cancel(&call->timer);
        pt_lb_release(&call->st->w->lb, &call->pick, PT_LB_CANCELLED);
        if (cs != NULL)
            pt_gauge_dec(&cs->upstream_rq_active);
        call_span(call, call->st->w, PT_CALL_FAILED, true);
    }
    pt_call_free(call);
}

void pt_call_free(struct pt_call *call)
{
    if (call->in_done)
        call->free_pending = true; /* after its span, in call_end */
    else
        call_release(call, call->st->w);
}
