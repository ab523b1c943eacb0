/* Zipkin tracing as Envoy + Emissary do it (reference/envoy-compat.md §3): B3 extraction and
 * injection, sampling, ids and span data on the workers (observe/trace.c), JSON v2 encoding and
 * the HTTP exporter on the control thread (observe/zipkin.c).
 *
 * Request path, per worker, with no lock and no allocation:
 *   head parsed   pt_trace_start()        decide, take ids, capture tag headers
 *   upstream head pt_trace_is_b3_header() drop the incoming x-b3-{traceid,spanid,parentspanid,
 *                                         sampled}; pt_trace_inject() appends ours
 *   upstream      pt_trace_upstream_begin() / pt_trace_upstream_end()  router span timing
 *   request end   pt_trace_finish()       copy both spans into the worker's ring
 *   policy call   pt_trace_call_begin() / pt_trace_call_inject() / pt_trace_call_end(): a
 *                 third span, child of the HCM span, for each AuthService or RateLimitService
 *                 call, in the ring on its own (before or after the request's)
 * Control thread: pt_trace_config_new() at compile time, pt_trace_worker_new() per worker,
 * pt_zipkin_start() once, pt_zipkin_set_config() after each published configuration. */
#ifndef PT_OBSERVE_TRACE_H
#define PT_OBSERVE_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"
#include "observe/trace-t.h"

/* --- configuration (control thread) ------------------------------------------------------- */

/* pt_trace_config_new: compiles a TracingService into a config with one reference. Copies
 * everything it keeps (the resources and the cluster may be freed after). Environment custom
 * tags are read now, as Envoy reads them at configuration time. Returns NULL with a message in
 * <err> when the driver is not zipkin or collector_endpoint_version is not HTTP_JSON (HTTP_PROTO
 * is accepted and sent as JSON, which every Zipkin collector also takes). Tags beyond
 * PT_TRACE_MAX_HDR_TAGS / PT_TRACE_MAX_FIXED_TAGS, and repeated tag names, are dropped with a
 * warning. Aborts on memory exhaustion (configuration code). */
struct pt_trace_config *pt_trace_config_new(const struct pt_trace_params *p, char *err, size_t errlen);

/* pt_trace_config_ref: takes one more reference on <cfg> (NULL allowed); returns <cfg>. */
struct pt_trace_config *pt_trace_config_ref(const struct pt_trace_config *cfg);

/* pt_trace_config_release: drops one reference; the last one frees. NULL allowed. Any thread. */
void pt_trace_config_release(struct pt_trace_config *cfg);

/* --- workers -------------------------------------------------------------------------------- */

/* pt_trace_worker_new: the tracing state of worker <id> (0 <= id < PT_MAX_WORKERS), registered
 * with the exporter, or NULL when out of memory or <id> is invalid or taken. Call on the control
 * thread before the worker runs. The ring's memory is only touched once tracing is used. */
struct pt_trace_worker *pt_trace_worker_new(int id);

/* pt_trace_worker_free: unregisters and frees <tw> (NULL allowed). Control thread only, after
 * the worker thread has stopped; records still in the ring are lost (not counted). */
void pt_trace_worker_free(struct pt_trace_worker *tw);

/* pt_trace_start: on a parsed request head. With <cfg> NULL (tracing off) it only clears
 * ctx->flags and returns false. Otherwise it decides sampling as Envoy (client sampling when
 * x-client-trace-id is present, else random; overall caps both; an incoming B3 sampled flag
 * overrides the decision), extracts the B3 context (the single `b3` header first, else
 * x-b3-traceid + x-b3-spanid [+ x-b3-parentspanid]; x-b3-sampled "1" or "true"; x-b3-flags is
 * never read) and takes the ids of the HCM span and of the router child span. Returns true
 * when a trace context exists, even unsampled: the caller must then inject the headers and call
 * pt_trace_finish. Returns false when tracing is off or the incoming context is malformed (not
 * traced: forward the incoming headers untouched). When sampled, the values of the configured
 * tag headers are copied into <ctx> (up to PT_TRACE_CAPTURE_BYTES), so the head buffer may go
 * away before the request ends. <cfg> must stay the same until pt_trace_finish. */
bool pt_trace_start(struct pt_trace_worker *tw, const struct pt_trace_config *cfg,
                    const struct pt_trace_head *head, struct pt_trace_ctx *ctx);

/* pt_trace_inject: writes the headers the upstream must see into <out>:
 *   "x-b3-traceid: <16|32 hex>\r\nx-b3-spanid: <router span>\r\n"
 *   "x-b3-parentspanid: <HCM span>\r\nx-b3-sampled: <1|0>\r\n"
 * Returns the bytes written (no NUL), or 0 when <ctx> is not active or <cap> is smaller than
 * PT_TRACE_INJECT_MAX. The incoming b3, x-b3-flags, traceparent and tracestate are not ours to
 * touch: the caller forwards them as received. */
size_t pt_trace_inject(const struct pt_trace_ctx *ctx, char *out, size_t cap);

/* pt_trace_is_b3_header: <name> (any case) is one of the four headers pt_trace_inject writes,
 * which the caller must not forward from the request when pt_trace_start returned true. */
bool pt_trace_is_b3_header(struct pt_str name);

/* pt_trace_upstream_begin: the router span starts (first upstream attempt). No-op unless sampled. */
void pt_trace_upstream_begin(struct pt_trace_ctx *ctx);

/* pt_trace_upstream_end: the router span ends (upstream response complete, or the attempt
 * failed). Without it the router span ends with the request. No-op unless sampled. */
void pt_trace_upstream_end(struct pt_trace_ctx *ctx);

/* pt_trace_finish: on request end. When <ctx> is sampled, copies the HCM span and (if
 * pt_trace_upstream_begin was called) the router span into <tw>'s ring for the exporter; a full
 * ring drops them and counts them in pt_zipkin_spans_dropped(). <cfg> is the one given to
 * pt_trace_start (its custom tags are applied to both spans). Always leaves ctx->flags 0.
 * Over-long strings are cut (path at PT_TRACE_PATH_MAX, as Envoy; the rest to fit a record). */
void pt_trace_finish(struct pt_trace_worker *tw, const struct pt_trace_config *cfg,
                     struct pt_trace_ctx *ctx, const struct pt_trace_request_info *info);

/* pt_trace_call_begin: a call of <ctx>'s request to a policy service starts. Fills <call>
 * (the caller's, e.g. inside its call object) with the request's trace id, a new span id from
 * <tw>'s generator whose parent is the HCM span, the request's sampling and, when sampled, the
 * start time. Returns the call's span id, or 0 (and <call> all-zero flags) when the request is
 * not traced (<ctx> not active, <tw> NULL): then pt_trace_call_inject and pt_trace_call_end do
 * nothing. May be called any number of times while <ctx> is active (one span per call); <call>
 * does not refer to <ctx> afterwards. */
uint64_t pt_trace_call_begin(struct pt_trace_worker *tw, const struct pt_trace_ctx *ctx,
                             struct pt_trace_call *call);

/* pt_trace_call_inject: writes the headers the policy service must see into <out>, in the
 * call's request head, as pt_trace_inject does for the upstream:
 *   "x-b3-traceid: <16|32 hex>\r\nx-b3-spanid: <call span>\r\n"
 *   "x-b3-parentspanid: <HCM span>\r\nx-b3-sampled: <1|0>\r\n"
 * Returns the bytes written (no NUL), or 0 when <call> is not traced or <cap> is smaller than
 * PT_TRACE_INJECT_MAX. The caller must not copy the client's x-b3-* headers into the call. */
size_t pt_trace_call_inject(const struct pt_trace_call *call, char *out, size_t cap);

/* pt_trace_call_end: the call ended (answer, failure, timeout, or given up). When <call> is
 * sampled, copies its span into <tw>'s ring: CLIENT, named "async <info->cluster> egress",
 * parent the HCM span, from the call's start to call->end_mono_us (0: now), with the tags of
 * <info> (see struct pt_trace_call_info; the TracingService's custom tags are not applied, as
 * Envoy's async clients do not). A full ring drops it and counts it in
 * pt_zipkin_spans_dropped(). Always leaves call->flags 0, so a second call records nothing.
 * No allocation, no lock. */
void pt_trace_call_end(struct pt_trace_worker *tw, struct pt_trace_call *call,
                       const struct pt_trace_call_info *info);

/* pt_trace_reason_char: Envoy's x-request-id trace-reason character for <ctx>: '9' sampling,
 * 'b' client, '4' none. For callers that pack the reason into x-request-id at position 14. */
char pt_trace_reason_char(const struct pt_trace_ctx *ctx);

/* --- exporter (control thread) ------------------------------------------------------------- */

/* pt_zipkin_start: starts the exporter on <loop> (the control thread's): drains the worker
 * rings every 100 ms (5 ms while one is a quarter full), batches spans (a POST as soon as 5 are
 * pending, 250 while another POST is in flight, and whatever is pending every 5 s, as Envoy's
 * reporter), and POSTs JSON v2 with libcurl's multi interface on the loop, 5 s timeout, at most
 * 4 POSTs in flight of up to 1000 spans. When those are taken, finished requests wait in the
 * rings, which drop (and count) what does not fit. Nothing is sent until pt_zipkin_set_config
 * gives a config. Returns 0, PT_INVAL when already started, or PT_NOMEM. */
int pt_zipkin_start(struct pt_loop *loop);

/* pt_zipkin_stop: stops the exporter, abandoning POSTs in flight and queued spans (counted as
 * dropped), and releases its config. Safe when not started. */
void pt_zipkin_stop(void);

/* pt_zipkin_set_config: the TracingService to report to from now on, or NULL (tracing off:
 * queued spans are dropped and counted). Takes its own reference. Queued spans go to the new
 * collector; POSTs in flight finish against the old one. A no-op before pt_zipkin_start.
 * Control thread. */
void pt_zipkin_set_config(const struct pt_trace_config *cfg);

/* pt_zipkin_spans_sent: spans accepted by the collector (2xx) since start. Any thread. */
uint64_t pt_zipkin_spans_sent(void);

/* pt_zipkin_spans_dropped: spans lost since start: full worker rings, a full queue, tracing
 * turned off, a failed POST or a non-2xx answer. Any thread. */
uint64_t pt_zipkin_spans_dropped(void);

/* --- internal: shared between trace.c, zipkin.c and tests ---------------------------------- */

/* pt_trace__ring_peek: the oldest unread record of worker slot <id>, or NULL. Exporter only. */
const struct pt_trace_record *pt_trace__ring_peek(int id);

/* pt_trace__ring_pop: releases the record pt_trace__ring_peek(id) returned. Exporter only. */
void pt_trace__ring_pop(int id);

/* pt_trace__ring_fill: records waiting in worker slot <id>'s ring (0 when none). */
uint32_t pt_trace__ring_fill(int id);

/* pt_trace__ring_dropped: spans dropped by every worker's full ring. Any thread. */
uint64_t pt_trace__ring_dropped(void);

/* pt_trace__rec_str: field <f> of <rec> as a slice. */
static inline struct pt_str pt_trace__rec_str(const struct pt_trace_record *rec, enum pt_trace_field f)
{
    return pt_str_make(rec->buf + rec->str_off[f], rec->str_len[f]);
}

/* pt_zipkin__encode_span: one span of <rec> as a JSON v2 object (no brackets) into <out>: the
 * HCM span when <child> is false, the router span when true; for a call record
 * (PT_TRACE_F_CALL) the call span when true, nothing when false. <cfg> gives localEndpoint.
 * Returns the length, or 0 when <cap> is too small or the span does not exist. */
size_t pt_zipkin__encode_span(const struct pt_trace_config *cfg, const struct pt_trace_record *rec,
                              bool child, char *out, size_t cap);

/* pt_zipkin__set_timing: test knobs, in milliseconds (0 keeps the current value): the worker
 * ring drain interval, the periodic flush and the POST timeout. */
void pt_zipkin__set_timing(uint32_t drain_ms, uint32_t flush_ms, uint32_t timeout_ms);

#endif
