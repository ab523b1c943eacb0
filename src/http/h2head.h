/* An HTTP/1.1 request head, as the proxy wrote it for its upstream (proxy/session.c
 * build_request_head, the one place that decides a request's headers), read as the fields of an
 * HTTP/2 HEADERS block (RFC 9113 §8.3.1): the request line gives :method and :path, Host gives
 * :authority, the connection gives :scheme, and the connection-specific fields are dropped
 * (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, TE but "TE: trailers").
 * No I/O, no allocation: the fields are slices of the head, whose names are lower-cased in place.
 * Called by proxy/h2client.c; tested by tests/unit/test_h2head.c. */
#ifndef PT_HTTP_H2HEAD_H
#define PT_HTTP_H2HEAD_H

#include "http/h1-t.h"

#define PT_H2HEAD_PSEUDO 4 /* :method, :scheme, :authority, :path: always the first four */

/* pt_h2head_from_h1: reads the HTTP/1.1 request head at <head> (<len> bytes up to and with its
 * blank line, written by the proxy: a request line "METHOD SP target SP HTTP/1.x", then
 * "name: value" lines, each ending in CRLF) into <out> (<max> entries): the four pseudo-fields
 * first (:scheme "https" when <tls>, else "http"), then the regular fields in order, names
 * lower-cased in <head>. <te_trailers>: add "te: trailers" (gRPC needs it; the head never has
 * TE, a hop-by-hop field). Returns the number of fields, PT_TOOBIG when <out> is too small, or
 * PT_BADMSG when the head is not of that form or has no Host. */
int pt_h2head_from_h1(char *head, size_t len, bool tls, bool te_trailers, struct pt_header *out,
                      size_t max);

#endif
