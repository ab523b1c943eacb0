/* Internal interface between the parts of the downstream session: http1.c (the connection and
 * its I/O), session.c (routing a request and building the heads for each side) and reply.c
 * (local replies). Not used outside src/proxy/. */
#ifndef PT_PROXY_SESSION_H
#define PT_PROXY_SESSION_H

#include <sys/uio.h>

#include "proxy/proxy-t.h"

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

/* pt_ds_send: writes <iov> to the client, keeping what the socket does not take in ds->out.
 * Returns 0 (all written), PT_AGAIN (some kept) or PT_IO. */
int pt_ds_send(struct pt_downstream *ds, const struct iovec *iov, int iovcnt);

/* pt_body_take: how many of <len> bytes belong to the body <b> delimits (to consume), and in
 * <*send> the bytes to pass on from them (all of them, except when de-chunking for HTTP/1.0,
 * where one run of chunk data at a time); sets *done at the body's end. PT_BADMSG on broken
 * chunked framing. */
int64_t pt_body_take(struct pt_body *b, const char *data, size_t len, bool *done, struct pt_str *send);

/* pt_session_observe_end: the request is over: its spans and its access-log line. */
void pt_session_observe_end(struct pt_downstream *ds);

void pt_ds_close(struct pt_downstream *ds);
void pt_ds_abort(struct pt_downstream *ds);
void pt_ds_request_end(struct pt_downstream *ds);
void pt_ds_local_reply_done(struct pt_downstream *ds);

/* Local replies (reply.c), each sent with Envoy's status, body and response flags. */
void pt_reply_local(struct pt_downstream *ds, int status, struct pt_str body, const char *flags);
void pt_reply_bad_request(struct pt_downstream *ds);
void pt_reply_redirect_https(struct pt_downstream *ds);
void pt_reply_upstream_reset(struct pt_downstream *ds, const char *reason, const char *tfr,
                             const char *flags);

/* pt_http_date: the IMF-fixdate of now, cached per second per thread (29 bytes). */
struct pt_str pt_http_date(void);

/* pt_reason_phrase: the standard reason phrase of <status>. */
const char *pt_reason_phrase(int status);

#endif
