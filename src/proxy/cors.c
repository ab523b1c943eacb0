/* The request-path half of CORS (see proxy/cors.h): Envoy's CORS filter, decode side (is the
 * Origin allowed; is this a preflight to answer here) and encode side (the Access-Control-*
 * headers every response to an allowed Origin gets). Runs only for routes that have a policy:
 * a route without one costs nothing here. The policy's rules and header lists are http/cors.c;
 * local replies add the headers in proxy/reply.c, upstream responses in proxy/session.c. */
#include "proxy/cors.h"
#include "proxy/session.h"
#include "http/cors.h"

#include <string.h>

/* header: the value of the first field <name> of <req>, empty when it has none. */
static struct pt_str header(const struct pt_h1_request *req, struct pt_str name)
{
    const struct pt_header *f = pt_header_find(req->headers, req->nheaders, name);
    return f ? f->value : (struct pt_str){ 0 };
}

/* latch: keeps the allowed <origin> for the response: the policy's own copy when it names
 * it, else a copy in the stream. False when it is too long to copy (then it is not allowed). */
static bool latch(struct pt_stream *st, const struct pt_cors *c, struct pt_str origin)
{
    for (uint32_t i = 0; i < c->norigins; i++) {
        if (pt_str_eq(c->origins[i], origin)) {
            st->cors_origin = c->origins[i];
            return true;
        }
    }
    if (!c->any_origin || origin.len > sizeof(st->cors_buf))
        return false;
    memcpy(st->cors_buf, origin.ptr, origin.len);
    st->cors_origin = pt_str_make(st->cors_buf, origin.len);
    return true;
}

bool pt_cors_filter_request(struct pt_stream *st, const struct pt_cors *c)
{
    const struct pt_h1_request *req = &st->req;
    const struct pt_header *o = pt_header_find(req->headers, req->nheaders, PT_STR_LIT("origin"));
    struct pt_header hdrs[PT_CORS_MAX_HEADERS];
    struct pt_str acrm;
    size_t n;

    if (o == NULL || o->value.len == 0 || !pt_cors_origin_allowed(c, o->value))
        return false; /* no Origin, or not allowed: the request passes unchanged */
    /* A second Origin field would be one comma-joined value to Envoy, which no origin matches. */
    if (pt_header_find(o + 1, req->nheaders - (size_t)(o + 1 - req->headers), PT_STR_LIT("origin")) != NULL ||
        !latch(st, c, o->value))
        return false;
    if (req->method_id == PT_H1_METHOD_OPTIONS &&
        (acrm = header(req, PT_STR_LIT("access-control-request-method"))).len != 0) {
        /* a preflight: answered here, never forwarded */
        n = pt_cors_preflight_headers(c, st->cors_origin, acrm,
                                      header(req, PT_STR_LIT("access-control-request-headers")),
                                      hdrs);
        pt_reply_headers(st, 200, hdrs, n);
        return true;
    }
    st->flags |= PT_SF_CORS;
    return false;
}

size_t pt_cors_filter_headers(const struct pt_stream *st, struct pt_header *out)
{
    return pt_cors_response_headers(st->rec.action->cors, st->cors_origin, out);
}

int pt_cors_filter_response(const struct pt_stream *st, struct pt_header *h, size_t *n, size_t max)
{
    struct pt_header set[PT_CORS_MAX_RESPONSE_HEADERS];
    size_t k = pt_cors_filter_headers(st, set);

    for (size_t j = 0; j < k; j++) {
        bool done = false;
        size_t w = 0;
        for (size_t i = 0; i < *n; i++) {
            if (!pt_str_caseeq(h[i].name, set[j].name)) {
                h[w++] = h[i];
            } else if (!done) { /* the first keeps its place */
                h[w++] = (struct pt_header){ h[i].name, set[j].value };
                done = true;
            }
        }
        *n = w;
        if (!done) {
            if (*n >= max)
                return PT_BADMSG;
            h[(*n)++] = set[j];
        }
    }
    return 0;
}
