/* The upstream HTTP client: one request/response exchange (struct pt_hc, embedded in whoever
 * makes the call: a proxied request today, an auth or rate-limit call, a health check or a
 * shadow tomorrow) on a connection from the per-worker pool (proxy/upstream.c). The caller
 * sends the request's bytes; the client parses the response into the worker's response header
 * array (never the request's), removes the body's framing, and reports through the callbacks
 * the caller gave: on_head, then on_body (always at least once after on_head, in the same
 * turn, so a head can leave together with the first body bytes), or on_error. It never calls
 * anything but those callbacks, and never from inside a call the caller made. A cluster that
 * speaks HTTP/2 (a grpc Mapping) gets an HTTP/2 stream instead (proxy/h2client.c), with the
 * same calls and the same reports, and on_trailers. Types are in proxy/proxy-t.h. */
#ifndef PT_PROXY_HTTPCLIENT_H
#define PT_PROXY_HTTPCLIENT_H

#include <sys/uio.h>

#include "proxy/proxy-t.h"

/* pt_hc_start: <hc> (all-zero, or finished) sends to <ep> of <c>, on a pooled connection
 * unless <fresh>, and reports to <owner> through <ops>. <flags>: PT_HC_*. Returns 0, or PT_IO
 * when no connection could be made (no callback follows). */
#define PT_HC_HEAD_REQUEST 0x1u /* the request is HEAD: no response body */
#define PT_HC_ALLOW_101    0x2u /* a 101 may switch the connection to a byte tunnel */
#define PT_HC_UNCOUNTED    0x4u /* a new connection is not held to the cluster's max_connections:
                                 * a policy call cannot wait for one (proxy/call.c), and a health
                                 * check must not fail for want of one (proxy/health.c) */
int pt_hc_start(struct pt_hc *hc, struct pt_worker *w, const struct pt_cluster *c,
                const struct pt_endpoint *ep, bool fresh, const struct pt_hc_ops *ops, void *owner,
                unsigned flags);

/* pt_hc_send: hands request bytes (head and/or body, framed by the caller) to the connection;
 * the first call's iov[0] is the whole request head as proxy/session.c writes it (HTTP/1.1;
 * an HTTP/2 exchange reads its fields from it), and a body goes unframed to an HTTP/2
 * exchange (pt_hc_chunked). <end>: the request is complete with these bytes (HTTP/2 ends its
 * stream). Returns 0 (all written), PT_AGAIN (some kept until the socket takes them:
 * on_writable follows) or PT_IO (the connection failed; the caller decides, pt_hc_finish
 * next). */
int pt_hc_send(struct pt_hc *hc, const struct iovec *iov, int iovcnt, bool end);

/* pt_hc_trailers: the request's trailer fields <t> (<n>), given before the pt_hc_send that
 * ends the request. An HTTP/2 exchange sends them after the body; HTTP/1.1 drops them (as
 * Envoy does). 0, or PT_IO. */
int pt_hc_trailers(struct pt_hc *hc, const struct pt_header *t, size_t n);

/* pt_hc_active: <hc> has a connection (or stream) to send on. */
static inline bool pt_hc_active(const struct pt_hc *hc)
{
    return hc->up != NULL || hc->h2 != NULL;
}

/* pt_hc_chunked: a request body of unknown length is sent chunked (HTTP/1.1), or as it is
 * (HTTP/2 frames it). */
static inline bool pt_hc_chunked(const struct pt_hc *hc)
{
    return hc->h2 == NULL;
}

/* pt_hc_send_blocked: bytes handed to pt_hc_send are still waiting for the socket. */
bool pt_hc__h2_send_blocked(const struct pt_hc *hc);
static inline bool pt_hc_send_blocked(const struct pt_hc *hc)
{
    if (hc->h2 != NULL)
        return pt_hc__h2_send_blocked(hc);
    return hc->up != NULL && hc->up->out.len > 0;
}

/* pt_hc_pending: how many bytes handed to pt_hc_send still wait for the socket (or for the
 * connection to be made). */
size_t pt_hc__h2_pending(const struct pt_hc *hc);
static inline size_t pt_hc_pending(const struct pt_hc *hc)
{
    if (hc->h2 != NULL)
        return pt_hc__h2_pending(hc);
    return hc->up != NULL ? hc->up->out.len : 0;
}

/* pt_hc_fd: the socket of <hc>'s connection (for its local address), or -1. */
int pt_hc_fd(const struct pt_hc *hc);

/* pt_hc_pause / pt_hc_resume: the owner cannot take body bytes now / can again (the client it
 * forwards them to is slow). Paused, the client reads no more than its buffer holds. */
void pt_hc_pause(struct pt_hc *hc);
void pt_hc_resume(struct pt_hc *hc);

/* pt_hc_finish: the owner is done with <hc> (the response complete, or given up): the
 * connection goes back to the pool when the exchange ended cleanly, the response allows it and
 * <reusable> (the owner sent its whole request), else it closes. No callback follows. A no-op
 * when <hc> has no connection. */
void pt_hc_finish(struct pt_hc *hc, bool reusable);

/* pt_hc_reused: the connection came from the pool (a failure before any response byte may then
 * be the backend closing it as we reused it: the caller may try once more on a new one). */
static inline bool pt_hc_reused(const struct pt_hc *hc)
{
    return hc->reused;
}

/* ---- the HTTP/2 exchange (proxy/h2client.c), behind the calls above ---- */
int pt_hc__h2_start(struct pt_hc *hc, struct pt_worker *w, const struct pt_cluster *c,
                    const struct pt_endpoint *ep, bool fresh, bool counted);
int pt_hc__h2_send(struct pt_hc *hc, const struct iovec *iov, int iovcnt, bool end);
int pt_hc__h2_trailers(struct pt_hc *hc, const struct pt_header *t, size_t n);
void pt_hc__h2_resume(struct pt_hc *hc);
void pt_hc__h2_finish(struct pt_hc *hc);
int pt_hc__h2_fd(const struct pt_hc *hc);

#endif
