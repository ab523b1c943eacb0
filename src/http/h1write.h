/* Writing HTTP/1.1 heads, and the HTTP rules the proxy applies to headers: which headers are
 * hop-by-hop, what a Connection header may name, reason phrases, the Date value. The proxy
 * decides what a head says (proxy/session.c); the bytes are written here, bounded: a head that
 * does not fit its buffer is reported once at its end, never cut. No I/O, no allocation. */
#ifndef PT_HTTP_H1WRITE_H
#define PT_HTTP_H1WRITE_H

#include "http/h1-t.h"

#include <string.h>

/* A head being written into a caller's buffer; all-zero is unusable, see pt_h1w_init. */
struct pt_h1w {
    char *start, *p, *end;
    bool overflow; /* something did not fit: sticky, reported by pt_h1w_end */
};

/* pt_h1w_init: starts a head in <buf> (<cap> bytes). */
static inline void pt_h1w_init(struct pt_h1w *w, char *buf, size_t cap)
{
    *w = (struct pt_h1w){ buf, buf, buf + cap, false };
}

/* pt_h1w_request_line: "<method> <target> HTTP/1.1". */
void pt_h1w_request_line(struct pt_h1w *w, struct pt_str method, struct pt_str target);

/* pt_h1w_status_line: "HTTP/1.1 <status> <reason>"; an empty <reason> is the standard one. */
void pt_h1w_status_line(struct pt_h1w *w, int status, struct pt_str reason);

/* pt_h1w_header: one header line. The caller has checked name and value (they come from a
 * parsed message or a checked configuration). */
static inline void pt_h1w_header(struct pt_h1w *w, struct pt_str name, struct pt_str value);

/* pt_h1w_header_uint: a header whose value is the decimal <v>. */
static inline void pt_h1w_header_uint(struct pt_h1w *w, struct pt_str name, uint64_t v);

/* pt_h1w_header_begin / pt_h1w_value / pt_h1w_header_end: a header whose value is written in
 * pieces (a comma list, a path and its query). */
static inline void pt_h1w_header_begin(struct pt_h1w *w, struct pt_str name);
static inline void pt_h1w_value(struct pt_h1w *w, struct pt_str piece);
static inline void pt_h1w_header_end(struct pt_h1w *w);

/* pt_h1w_framing: the header that delimits the body: "transfer-encoding: chunked" when
 * <chunked>, else "content-length: <content_length>" when it is >= 0, else none. */
void pt_h1w_framing(struct pt_h1w *w, bool chunked, int64_t content_length);

/* pt_h1w_end: the blank line. Returns the head's length, or 0 when it did not fit. */
size_t pt_h1w_end(struct pt_h1w *w);

/* pt_http_hop_by_hop: a connection-specific header (RFC 9110 §7.6.1) that never crosses the
 * proxy: Connection, Keep-Alive, Proxy-Connection, TE, Transfer-Encoding, Upgrade. */
static inline bool pt_http_hop_by_hop(struct pt_str name);

/* pt_http_connection_protected: a header a Connection option can never remove, because it
 * decides how the message is framed, where it goes or whether it switches protocols: Host,
 * Content-Length, Transfer-Encoding, TE, Upgrade. */
bool pt_http_connection_protected(struct pt_str name);

/* pt_http_envoy_dropped: whether the client's x-envoy-* header <name> (the prefix checked by
 * the caller) stops at the edge, as Envoy's header sanitizing does: x-envoy-internal and the
 * headers Portico sets itself always; for an external request (<internal> false) also those
 * that would steer an Envoy behind Portico (retries, timeouts, tracing, stats names, the
 * external address). */
bool pt_http_envoy_dropped(struct pt_str name, bool internal);

/* pt_http_list_next: the next element of a comma-separated header value <v> from <*i> (empty
 * at the end), without surrounding whitespace. */
struct pt_str pt_http_list_next(struct pt_str v, size_t *i);

/* pt_h1_connection_names: whether any Connection header of <req> lists <name> (RFC 9110
 * §7.6.1: the options of every Connection header count). */
bool pt_h1_connection_names(const struct pt_h1_request *req, struct pt_str name);

/* pt_reason_phrase: the standard reason phrase of <status> ("Unknown" for others). */
const char *pt_reason_phrase(int status);

/* pt_http_date: the IMF-fixdate of now, cached per second per thread (29 bytes). */
struct pt_str pt_http_date(void);

/* ---- inline bodies: these run for every header of every request ---- */

/* pt_h1w__copy: <n> bytes from <s> to <d> (apart); see pt_memcpy_short. */
#define pt_h1w__copy pt_memcpy_short

/* pt_h1w__room: whether <n> more bytes fit; if not, the sticky overflow. */
static inline bool pt_h1w__room(struct pt_h1w *w, size_t n)
{
    if (PT_LIKELY((size_t)(w->end - w->p) >= n))
        return true;
    w->overflow = true;
    return false;
}

/* pt_h1w__put: <n> bytes at <s>, or the sticky overflow. */
static inline void pt_h1w__put(struct pt_h1w *w, const char *s, size_t n)
{
    if (!pt_h1w__room(w, n))
        return;
    pt_h1w__copy(w->p, s, n); /* an empty slice may have no pointer at all: not read */
    w->p += n;
}

/* pt_h1w__uint: the decimal digits of <v>, or the sticky overflow. */
static inline void pt_h1w__uint(struct pt_h1w *w, uint64_t v)
{
    char tmp[24], *q = tmp + sizeof(tmp);
    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    pt_h1w__put(w, q, (size_t)(tmp + sizeof(tmp) - q));
}

static inline void pt_h1w_header_begin(struct pt_h1w *w, struct pt_str name)
{
    if (!pt_h1w__room(w, name.len + 2))
        return;
    pt_h1w__copy(w->p, name.ptr, name.len);
    w->p[name.len] = ':';
    w->p[name.len + 1] = ' ';
    w->p += name.len + 2;
}

static inline void pt_h1w_value(struct pt_h1w *w, struct pt_str piece)
{
    pt_h1w__put(w, piece.ptr, piece.len);
}

static inline void pt_h1w_header_end(struct pt_h1w *w)
{
    if (!pt_h1w__room(w, 2))
        return;
    w->p[0] = '\r';
    w->p[1] = '\n';
    w->p += 2;
}

/* pt_h1w_header: one bound check for the whole line (a line that does not fit is not written;
 * the overflow discards the head anyway). */
static inline void pt_h1w_header(struct pt_h1w *w, struct pt_str name, struct pt_str value)
{
    char *p = w->p;

    if (!pt_h1w__room(w, name.len + value.len + 4))
        return;
    pt_h1w__copy(p, name.ptr, name.len);
    p += name.len;
    p[0] = ':';
    p[1] = ' ';
    pt_h1w__copy(p + 2, value.ptr, value.len);
    p += 2 + value.len;
    p[0] = '\r';
    p[1] = '\n';
    w->p = p + 2;
}

static inline void pt_h1w_header_uint(struct pt_h1w *w, struct pt_str name, uint64_t v)
{
    pt_h1w_header_begin(w, name);
    pt_h1w__uint(w, v);
    pt_h1w_header_end(w);
}

static inline bool pt_http_hop_by_hop(struct pt_str n)
{
    switch (n.len) {
    case 2:
        return pt_str_caseeq(n, PT_STR_LIT("te"));
    case 7:
        return pt_str_caseeq(n, PT_STR_LIT("upgrade"));
    case 10:
        return pt_str_caseeq(n, PT_STR_LIT("connection")) || pt_str_caseeq(n, PT_STR_LIT("keep-alive"));
    case 16:
        return pt_str_caseeq(n, PT_STR_LIT("proxy-connection"));
    case 17:
        return pt_str_caseeq(n, PT_STR_LIT("transfer-encoding"));
    }
    return false;
}

#endif
