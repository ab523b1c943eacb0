/* Envoy's CORS filter on the request path, for routes with a CORS policy (a Mapping's `cors`, or
 * the Module's): a preflight from an allowed Origin is answered here with 200, an allowed Origin
 * is latched and echoed on whatever response the request gets (the upstream's or a local
 * reply), a disallowed one changes nothing. The policy and its headers are http/cors.h; this
 * file holds the per-request part. Called by proxy/session.c and proxy/reply.c. */
#ifndef PT_PROXY_CORS_H
#define PT_PROXY_CORS_H

#include "proxy/proxy-t.h"

/* pt_cors_filter_request: runs route policy <c> on <st>'s request once it is routed. True
 * when the request was a preflight from an allowed Origin and has been answered (the stream is
 * done with); false when it goes on, with PT_SF_CORS set when its Origin is allowed. */
bool pt_cors_filter_request(struct pt_stream *st, const struct pt_cors *c);

/* pt_cors_filter_headers: the headers a response to a PT_SF_CORS request gets, into <out>
 * (PT_CORS_MAX_RESPONSE_HEADERS). Returns how many. */
size_t pt_cors_filter_headers(const struct pt_stream *st, struct pt_header *out);

/* pt_cors_filter_response: sets those headers in the response head <h> (<*n> of at most <max>):
 * each replaces the first field of its name, later ones of that name are dropped, and one
 * that is absent is appended, as Envoy's setInline does. PT_BADMSG when they do not fit. */
int pt_cors_filter_response(const struct pt_stream *st, struct pt_header *h, size_t *n, size_t max);

#endif
