/* Heads of local replies (404, 503, 504, 400, the 301 of an HTTPS redirect): written whole, in
 * bounds, with no I/O. The proxy decides what to say (proxy/reply.c); this file only writes it. */
#ifndef PT_HTTP_REPLY_H
#define PT_HTTP_REPLY_H

#include "http/reply-t.h"

/* pt_http_reply_head: writes the head <r> describes, through its blank line, into <out> (<cap>
 * bytes; no NUL is added). Returns the head's length (> 0), PT_TOOBIG when it does not fit in
 * <cap> (or in INT_MAX), or PT_BADMSG when a status is outside 100..999 or a value holds a
 * control byte (CR, LF, NUL...) that would break the head. On an error nothing in <out> may be
 * used, though bytes within <cap> may have been written. Header order: content-length,
 * content-type, date, server: envoy, location, the extra fields, connection (as Envoy's local
 * replies). */
int pt_http_reply_head(const struct pt_http_reply *r, char *out, size_t cap);

#endif
