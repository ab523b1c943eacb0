/* Internal interface between the parts of the downstream session: http1.c (the connection and
 * its I/O), session.c (routing a request and building the heads for each side) and reply.c
 * (local replies). Not used outside src/proxy/. */
#ifndef PT_PROXY_SESSION_H
#define PT_PROXY_SESSION_H

#include <sys/uio.h>

#include "proxy/proxy.h"

/* pt_session_dispatch: a complete head of <head_len> bytes is at the front of ds->in: parse,
 * route and start forwarding it, or answer it locally. */
void pt_session_dispatch(struct pt_downstream *ds, size_t head_len);

/* pt_session_response_head: parses the response head in ds->up->in and sends the client's
 * head. Returns 0 when done, 1 when an interim (1xx) response was skipped, PT_AGAIN for more
 * bytes, PT_BADMSG on a malformed response. */
int pt_session_response_head(struct pt_downstream *ds);

/* pt_session_retry: the pooled connection a request went out on closed before any byte of the
 * response (the backend's keep-alive timeout crossing our reuse): sends the request again on a
 * new connection, as nginx does, when that is safe: a method that may be repeated (GET, HEAD,
 * OPTIONS, DELETE) and no body. The dead connection is already released. Returns false, having
 * done nothing, when the request cannot be retried. */
bool pt_session_retry(struct pt_downstream *ds);

/* pt_ds_touch: bytes moved for the request in progress: its idle timeout starts again. */
static inline void pt_ds_touch(struct pt_downstream *ds)
{
    if (ds->idle_ms != 0)
        pt_timer_arm(ds->w->loop, &ds->idle_timer, ds->idle_ms);
}

/* pt_ds_keepalive_ms: how long an idle client connection stays open between requests. */
static inline uint32_t pt_ds_keepalive_ms(const struct pt_downstream *ds)
{
    const struct pt_snapshot *s = ds->w->snap;
    return s != NULL && s->http.listener_idle_timeout_ms ? s->http.listener_idle_timeout_ms
                                                         : pt_proxy_limits.idle_timeout_ms;
}

/* pt_ds_send: writes <iov> to the client, keeping what the socket does not take in ds->out.
 * Returns 0 (all written), PT_AGAIN (some kept) or PT_IO. */
int pt_ds_send(struct pt_downstream *ds, const struct iovec *iov, int iovcnt);

/* pt_body_take: how many of <len> bytes belong to the body <b> delimits (to consume), and in
 * <*send> the bytes to pass on from them (all of them, except when de-chunking for HTTP/1.0,
 * where one run of chunk data at a time); sets *done at the body's end. PT_BADMSG on broken
 * chunked framing. */
int64_t pt_body_take(struct pt_body *b, const char *data, size_t len, bool *done, struct pt_str *send);

/* A piece of request body for the upstream: the data runs of up to PT_BODY_RUNS chunks, each
 * framed again by Portico when the body is chunked. */
#define PT_BODY_RUNS 8
struct pt_body_out {
    struct iovec iov[1 + 3 * PT_BODY_RUNS + 1]; /* [head], (size line, data, CRLF)..., last chunk */
    int n;                                      /* iovecs used; the caller may put a head first */
    char heads[PT_BODY_RUNS][PT_H1_CHUNK_HEAD_MAX];
};

/* pt_body_take_request: as pt_body_take() for a request body, appending what goes upstream to
 * <o> (from o->n on). A chunked body (PT_BODY_RECHUNK) is decoded and framed again: chunk sizes
 * written by Portico, extensions and trailers dropped (Envoy's default), the last chunk written
 * at its end. The iovecs point into <data> and <o>. Returns the bytes of <data> consumed, or
 * PT_BADMSG / PT_TOOBIG on broken framing. */
int64_t pt_body_take_request(struct pt_body *b, const char *data, size_t len, bool *done, struct pt_body_out *o);

/* pt_session_observe_end: the request is over: its spans and its access-log line. */
void pt_session_observe_end(struct pt_downstream *ds);

void pt_ds_close(struct pt_downstream *ds);
void pt_ds_abort(struct pt_downstream *ds);
void pt_ds_request_end(struct pt_downstream *ds);
void pt_ds_local_reply_done(struct pt_downstream *ds);

/* Local replies (reply.c), each sent with Envoy's status, body and response flags. */
void pt_reply_local(struct pt_downstream *ds, int status, struct pt_str body, const char *flags);
void pt_reply_bad_request(struct pt_downstream *ds);
/* pt_reply_refuse: answers a request Portico will not serve (400, 421, 426, 501...) with the
 * reason phrase as body, flag DPE, and closes the connection after it. */
void pt_reply_refuse(struct pt_downstream *ds, int status);
void pt_reply_redirect_https(struct pt_downstream *ds);
void pt_reply_upstream_reset(struct pt_downstream *ds, const char *reason, const char *tfr,
                             const char *flags);

/* pt_http_date: the IMF-fixdate of now, cached per second per thread (29 bytes). */
struct pt_str pt_http_date(void);

/* pt_reason_phrase: the standard reason phrase of <status>. */
const char *pt_reason_phrase(int status);

#endif
