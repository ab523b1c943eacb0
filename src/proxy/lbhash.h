/* A request's hash for its route's hash policy (ring_hash and maglev clusters: a cookie, a
 * header or the client's address, as Envoy's RouteAction.HashPolicy computes it), and the
 * Set-Cookie that a cookie policy with a ttl sends when the request had no cookie. Called by
 * proxy/session.c when it picks an endpoint and when the upstream's response head goes out. */
#ifndef PT_PROXY_LBHASH_H
#define PT_PROXY_LBHASH_H

#include "proxy/proxy-t.h"

/* The longest Set-Cookie value: a 128-byte name, 16 hex digits, Max-Age and a 256-byte path
 * (config/kinds.c bounds them). */
#define PT_LBHASH_COOKIE_MAX 512

/* pt_lbhash_ctx: <st>'s request hashed as <hp> says, into <ctx> (has_hash false when the
 * request has nothing to hash: no such cookie or header). A cookie policy that generates
 * (a ttl) and finds no cookie makes Envoy's value, xxHash64 of the client's and the local
 * "ip:port" in 16 hex digits, hashes that, and sets PT_SF_LB_COOKIE with the value in
 * st->lb_cookie for pt_lbhash_set_cookie. No allocation; one getsockname() only when a cookie
 * is made. */
void pt_lbhash_ctx(struct pt_stream *st, const struct pt_lb_hash *hp, struct pt_lb_ctx *ctx);

/* pt_lbhash_set_cookie: under PT_SF_LB_COOKIE, appends the Set-Cookie of <st>'s route's
 * policy to the <n> headers at <out> (room for one more is the caller's), its value written
 * into <buf> (<cap> bytes). Returns the new count (<n> when there is nothing to add or it does
 * not fit). */
size_t pt_lbhash_set_cookie(const struct pt_stream *st, struct pt_header *out, size_t n, char *buf, size_t cap);

#endif
