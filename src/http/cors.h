/* CORS as Envoy's CORS filter applies a route's CorsPolicy (source/extensions/filters/http/cors/
 * cors_filter.cc), as pure functions: compiling a `cors` resource into a policy once per
 * snapshot, deciding whether an Origin is allowed, and the response headers a preflight or an
 * allowed request gets, in Envoy's order. No I/O; only pt_cors_compile allocates. The request
 * path (proxy/cors.c) latches the Origin and writes the headers. */
#ifndef PT_HTTP_CORS_H
#define PT_HTTP_CORS_H

#include "model/resource-t.h"
#include "model/snapshot-t.h"

/* The most headers pt_cors_preflight_headers writes. */
#define PT_CORS_MAX_HEADERS 6
/* The most headers pt_cors_response_headers writes. */
#define PT_CORS_MAX_RESPONSE_HEADERS 3

/* pt_cors_compile: the policy of <r> as Emissary hands it to Envoy: origins as exact matches
 * ("*" allows any), methods, headers and exposed_headers joined with ", ", max_age as written,
 * credentials. One block (free() it); aborts when memory runs out (config time only). */
struct pt_cors *pt_cors_compile(const struct pt_cors_res *r);

/* pt_cors_origin_allowed: whether <origin> (non-empty) is one of <c>'s origins, byte for byte,
 * or <c> allows any. */
bool pt_cors_origin_allowed(const struct pt_cors *c, struct pt_str origin);

/* pt_cors_preflight_headers: the headers of the 200 that answers a preflight from the allowed
 * <origin>, into <out> (PT_CORS_MAX_HEADERS): Access-Control-Allow-Origin (<origin>), -Allow-
 * Credentials, -Allow-Methods (<req_method>, the request's Access-Control-Request-Method, when
 * the policy says "*"), -Allow-Headers (<req_headers> likewise), -Max-Age, then -Expose-Headers
 * (which Envoy's encoder half adds to every answer to an allowed Origin). Values point into <c>
 * or the arguments. Returns how many. */
size_t pt_cors_preflight_headers(const struct pt_cors *c, struct pt_str origin,
                                 struct pt_str req_method, struct pt_str req_headers,
                                 struct pt_header *out);

/* pt_cors_response_headers: what Envoy sets on any other response to a request from the
 * allowed <origin>, into <out> (PT_CORS_MAX_RESPONSE_HEADERS): Access-Control-Allow-Origin,
 * -Allow-Credentials when set, -Expose-Headers when set. Returns how many. */
size_t pt_cors_response_headers(const struct pt_cors *c, struct pt_str origin,
                                struct pt_header *out);

#endif
