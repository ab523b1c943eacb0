/* Internal interface between the parts of the request path: conn.c (the client connection and
 * its I/O), stream.c (a request's life), session.c (routing a request and building the heads
 * for each side), reply.c (local replies) and upstream.c (upstream connections). Calls go one
 * way: conn -> stream -> session/reply -> upstream; upstream reports through the callbacks a
 * stream gives it (struct pt_up_ops), conn is told a stream ended by pt_conn_stream_end. Not
 * used outside src/proxy/. */
#ifndef PT_PROXY_SESSION_H
#define PT_PROXY_SESSION_H

#include <sys/uio.h>

#include "proxy/proxy.h"
#include "route/route-t.h"

/* ---- the client connection (conn.c) ---- */

/* pt_conn_send: writes <iov> to the client, keeping what the socket does not take in c->out.
 * Returns 0 (all written), PT_AGAIN (some kept; the stream hears pt_stream_on_client_writable
 * once it is out) or PT_IO. */
int pt_conn_send(struct pt_conn *c, const struct iovec *iov, int iovcnt);

/* pt_conn_fill: reads from the client into c->in. Returns bytes read, 0 at EOF, PT_AGAIN,
 * PT_IO or PT_NOMEM. */
int pt_conn_fill(struct pt_conn *c);

/* pt_conn_flush: writes what c->out holds. 0 when all is out, PT_AGAIN (the connection hears
 * EPOLLOUT), or PT_IO. */
int pt_conn_flush(struct pt_conn *c);

/* pt_conn_ready: <c> runs from the worker's ready list (before the loop sleeps), after the
 * event at hand has unwound: for HTTP/1, its next head; for HTTP/2, framing what its streams
 * gave. No call goes back into a stream's caller. */
void pt_conn_ready(struct pt_conn *c);

/* pt_conn_stream_end: c's stream ended (it is freed); the connection reads the next head, or
 * closes after its output when <close_after>. A no-op on a closed connection. */
void pt_conn_stream_end(struct pt_conn *c, bool close_after);

/* pt_conn_linger: closes the client connection gracefully: once c->out is written (within
 * PT_LINGER_MS), our side ends and what the client still sends is read and dropped for a
 * moment, so that its last frames (an HTTP/2 GOAWAY) are not destroyed by a reset. The caller
 * has ended the connection's streams. */
void pt_conn_linger(struct pt_conn *c);

/* pt_conn_close: closes the client connection now (aborting its streams); it is freed after
 * this loop iteration. */
void pt_conn_close(struct pt_conn *c);

/* ---- HTTP/2 client connections (h2conn.c) ---- */

/* pt_h2_start: <c> speaks HTTP/2 from now on (ALPN h2, or the preface at the front of c->in).
 * 0, or PT_NOMEM. */
int pt_h2_start(struct pt_conn *c);
void pt_h2_on_readable(struct pt_conn *c);
void pt_h2_on_writable(struct pt_conn *c); /* c->out is written */
void pt_h2_run(struct pt_conn *c);         /* from the ready list */
void pt_h2_on_timer(struct pt_conn *c);    /* idle: GOAWAY and close */
void pt_h2_close(struct pt_conn *c);       /* the connection closes: its streams are aborted */

/* pt_conn_keepalive_ms: how long an idle client connection stays open between requests. */
static inline uint32_t pt_conn_keepalive_ms(const struct pt_conn *c)
{
    const struct pt_snapshot *s = c->w->snap;
    return s != NULL && s->http.listener_idle_timeout_ms ? s->http.listener_idle_timeout_ms
                                                         : pt_proxy_limits.idle_timeout_ms;
}

/* ---- a request (stream.c) ---- */

/* pt_stream_new: a new stream on <c> (counted as a request), for its connection to fill
 * st->req (and st->hdrs) and hand to pt_session_dispatch; NULL when there is no memory. */
struct pt_stream *pt_stream_new(struct pt_conn *c);

/* pt_stream_on_client_readable / _writable: the client connection has bytes for the stream
 * (its body), or has written all the stream gave it. */
void pt_stream_on_client_readable(struct pt_stream *st);
void pt_stream_on_client_writable(struct pt_stream *st);

/* pt_stream_keep_head: what others may overwrite of the request's head while the stream
 * waits is copied into memory of its own (st->head_copy, freed when it ends): w->pathbuf,
 * where a normalized path may be, is every request's; <conn_buffer>: also what lies in the
 * connection's buffer (an HTTP/1 connection that will read the body into it). False without
 * memory. */
bool pt_stream_keep_head(struct pt_stream *st, bool conn_buffer);

/* pt_stream_connect: starts <st>'s upstream exchange with its chosen endpoint, on a pooled
 * connection unless <fresh>; the exchange reports to the stream. 0, or PT_IO when no
 * connection could be made. */
int pt_stream_connect(struct pt_stream *st, bool fresh);

/* pt_stream_send_request: one step of the request's way up: what <out> holds already (the
 * request head, or nothing), then the body data the client's connection has now (framed for
 * the exchange, or decoded from gRPC-Web), and at the body's end its trailers. Returns 1 when
 * something went, 0 when nothing is here yet (and <out> was empty), -1 when the stream
 * stopped: a body the client broke is answered 400 when <bad_body_400> (else cut), a failed
 * send is the exchange's error and <*goes_on> tells whether a retry was queued. */
struct pt_body_frame;
int pt_stream_send_request(struct pt_stream *st, struct pt_body_frame *out, bool bad_body_400, bool *goes_on);

/* pt_stream_send_replay: a retry's first step up: the head in <out>, then the request body kept
 * so far (proxy/retry.h), framed, ending the request when the client's body has ended. 1, or -1
 * as pt_stream_send_request (*<goes_on> when a retry was scheduled instead). */
int pt_stream_send_replay(struct pt_stream *st, struct pt_body_frame *out, bool *goes_on);

/* pt_stream_pass_trailers: the request's body is done: its trailers (an HTTP/2 client's) go to
 * its exchange, before the send that ends it. 0, or PT_IO. */
int pt_stream_pass_trailers(struct pt_stream *st);

/* pt_stream_release_upstream: <st> lets its upstream connection go (closed: its exchange is
 * not finished). */
void pt_stream_release_upstream(struct pt_stream *st);

/* pt_stream_upstream_failed: sending on the upstream connection failed in a call the stream
 * made: as the connection's on_error (a retry, a local reply, or the end). True when the stream
 * goes on (a retry is queued); false when it has answered or ended. */
bool pt_stream_upstream_failed(struct pt_stream *st, const char *reason, const char *tfr,
                               const char *flags);

/* pt_stream_local_reply_done: a local reply was handed to the connection: the stream ends
 * once it is out. */
void pt_stream_local_reply_done(struct pt_stream *st);

/* pt_stream_abort: the stream ends now, logged (flag DC when no status was set), and its
 * connection closes. */
void pt_stream_abort(struct pt_stream *st);

/* pt_stream_touch: bytes moved for the request: its idle timeout starts again. The timer is
 * not moved for each touch: when it fires, it looks at the last one (stream.c). */
static inline void pt_stream_touch(struct pt_stream *st)
{
    if (st->idle_ms != 0) {
        st->active_ms = pt_loop_now_ms(st->w->loop);
        if (!pt_timer_armed(&st->idle_timer))
            pt_timer_arm(st->w->loop, &st->idle_timer, st->idle_ms);
    }
}

/* ---- routing and heads (session.c) ---- */

/* pt_session_dispatch: st->req is a parsed request head (its slices owned by the connection
 * until the stream ends): route it and start forwarding it, or answer it locally. */
void pt_session_dispatch(struct pt_stream *st);

/* pt_session_proceed: the request's checks (proxy/policy.h) let it go on: it is sent upstream
 * (or answered 503 when its cluster has no endpoint). */
void pt_session_proceed(struct pt_stream *st);

/* pt_session_internal: the request is internal as Envoy's connection manager (with Emissary's
 * use_remote_address) decides: it came without X-Forwarded-For from an internal address
 * (PT_CF_PEER_INTERNAL). An internal request keeps the client's x-envoy-* headers and goes up
 * with x-envoy-internal: true; an external one loses those that steer Envoy
 * (pt_http_envoy_dropped) and goes up with x-envoy-external-address. */
static inline bool pt_session_internal(const struct pt_stream *st)
{
    return (st->conn->flags & PT_CF_PEER_INTERNAL) && st->req.idx_x_forwarded_for < 0;
}

/* pt_session_client_address: the client's address as the connection manager trusts it: the
 * peer's, or with the Listener's l7Depth N > 0 the Nth address from the right of
 * X-Forwarded-For (what the trusted proxies in front saw), when there are that many and it is
 * an IP address. A slice of the request head or of the connection. */
struct pt_str pt_session_client_address(const struct pt_stream *st);

/* pt_session_write_forwarded: x-forwarded-for (<xff>: the client's list with its address
 * appended) and x-forwarded-proto (<xfp>: the connection's scheme) as the upstream sees them,
 * into <b>. */
struct pt_h1w;
void pt_session_write_forwarded(const struct pt_stream *st, struct pt_h1w *b, bool xff, bool xfp);

/* pt_session_response_head: the upstream's final response head <res> arrived: decides the
 * head the client gets (struct pt_resp_head) and gives it to the client's connection. Returns
 * 0, or PT_BADMSG when it cannot be sent (too large). */
int pt_session_response_head(struct pt_stream *st, const struct pt_h1_response *res);

/* pt_session_can_retry / pt_session_retry: the pooled connection a request went out on closed
 * before any byte of the response (the backend's keep-alive timeout crossing our reuse): the
 * request may go again on a new connection, as nginx does, when that is safe: a method that may
 * be repeated (GET, HEAD, OPTIONS, DELETE) and no body. pt_session_retry sends it again; the
 * stream's RETRY state runs it from the worker's ready list. */
bool pt_session_can_retry(const struct pt_stream *st);
void pt_session_retry(struct pt_stream *st);

/* pt_session_can_resend / pt_session_resend: what any sending again needs (the request's
 * head can be rebuilt: a path not in the worker's buffer, a request id kept), whatever the
 * method and body; pt_session_resend sends it again, with the body kept for a retry, on a
 * pooled connection or (<fresh>) a new one (a retry_policy's retry: proxy/retry.c). */
bool pt_session_can_resend(const struct pt_stream *st);
void pt_session_resend(struct pt_stream *st, bool fresh);

/* pt_session_observe_end: the request is over: its spans and its access-log line. */
void pt_session_observe_end(struct pt_stream *st);

/* Local replies (reply.c), each sent with Envoy's status, body and response flags. */
void pt_reply_local(struct pt_stream *st, int status, struct pt_str body, const char *flags);
/* pt_reply_overflow: a circuit breaker of the request's cluster is full: 503 "... reset reason:
 * overflow" with x-envoy-overloaded: true, flag UO (Envoy's router). */
void pt_reply_overflow(struct pt_stream *st);

/* pt_reply_policy: the answer of a policy service (an AuthService's denial or error, a
 * RateLimitService's 429): <status>, the headers <h> (<n>, at most PT_HTTP_REPLY_EXTRA_MAX,
 * checked with pt_policy_header_ok) and <body>; a gRPC request gets <grpc_status> (0: mapped
 * from <status>). */
void pt_reply_policy(struct pt_stream *st, int status, const struct pt_header *h, size_t n, struct pt_str body,
                     int grpc_status, const char *flags);

/* pt_reply_grpc_request: the request is gRPC (content-type application/grpc[+...][;...]), or
 * gRPC-Web being translated: its local replies are gRPC's (proxy/reply.c). */
bool pt_reply_grpc_request(const struct pt_stream *st);
void pt_reply_bad_request(struct pt_stream *st);
/* pt_reply_refuse: answers a request Portico will not serve (400, 421, 426, 501...) with the
 * reason phrase as body, flag DPE, and closes the connection after it. */
void pt_reply_refuse(struct pt_stream *st, int status);
void pt_reply_redirect_https(struct pt_stream *st);
/* pt_reply_headers: a local reply of <status> with an empty body and the fields <h> (<n>, at
 * most PT_HTTP_REPLY_EXTRA_MAX) after the usual ones, never as gRPC (a CORS preflight's). */
void pt_reply_headers(struct pt_stream *st, int status, const struct pt_header *h, size_t n);
/* pt_reply_route_redirect: answers with the redirect of <route> (a host_redirect Mapping's
 * action): Location is its scheme (else the request's) and host, then path_redirect, or the
 * path <rreq> has after the route's rewrite (prefix_redirect, regex_redirect), or the request's
 * path, and the request's query unless path_redirect has its own. Empty body, flag "-". */
void pt_reply_route_redirect(struct pt_stream *st, const struct pt_route *route,
                             const struct pt_route_req *rreq);
void pt_reply_upstream_reset(struct pt_stream *st, const char *reason, const char *tfr,
                             const char *flags);

#endif
