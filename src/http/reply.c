/* The head of a local reply, written into a bounded buffer: a pure function (no I/O, no
 * allocation) that says "too big" instead of truncating, so a long redirect Location can never
 * make a reply send bytes that are not its own. Called by proxy/reply.c; fuzzed by
 * tests/fuzz/fuzz_reply.c. */
#include "http/reply.h"

#include <limits.h>
#include <string.h>

/* A head being written: <p> moves forward; <overflow> once something did not fit. */
struct writer {
    char *p, *end;
    bool overflow;
};

static void put(struct writer *w, const char *s, size_t n)
{
    if (w->overflow || (size_t)(w->end - w->p) < n) {
        w->overflow = true;
        return;
    }
    if (n != 0)
        memcpy(w->p, s, n);
    w->p += n;
}

#define put_lit(w, s) put((w), (s), sizeof(s) - 1)

static void put_str(struct writer *w, struct pt_str s)
{
    put(w, s.ptr, s.len);
}

static void put_uint(struct writer *w, uint64_t v)
{
    char tmp[24], *q = tmp + sizeof(tmp);

    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(w, q, (size_t)(tmp + sizeof(tmp) - q));
}

/* field_ok: whether <s> may stand in a field value or reason phrase (RFC 9110 §5.5: visible
 * bytes, SP, HTAB and obs-text; no CR, LF, NUL or other control). */
static bool field_ok(struct pt_str s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

int pt_http_reply_head(const struct pt_http_reply *r, char *out, size_t cap)
{
    struct writer w = { out, out + (cap > INT_MAX ? INT_MAX : cap), false };
    bool location = false;

    if (r->status < 100 || r->status > 999 || !field_ok(r->reason) || !field_ok(r->date))
        return PT_BADMSG;
    for (size_t i = 0; i < PT_ARRAY_SIZE(r->location); i++) {
        if (!field_ok(r->location[i]))
            return PT_BADMSG;
        location |= r->location[i].len != 0;
    }
    put_lit(&w, "HTTP/1.1 ");
    put_uint(&w, (uint64_t)r->status);
    put_lit(&w, " ");
    put_str(&w, r->reason);
    put_lit(&w, "\r\ncontent-length: ");
    put_uint(&w, r->content_length);
    put_lit(&w, "\r\n");
    if (r->text_plain)
        put_lit(&w, "content-type: text/plain\r\n");
    if (r->date.len != 0) {
        put_lit(&w, "date: ");
        put_str(&w, r->date);
        put_lit(&w, "\r\n");
    }
    put_lit(&w, "server: envoy\r\n");
    if (location) {
        put_lit(&w, "location: ");
        for (size_t i = 0; i < PT_ARRAY_SIZE(r->location); i++)
            put_str(&w, r->location[i]);
        put_lit(&w, "\r\n");
    }
    if (r->connection == PT_HTTP_REPLY_CONN_CLOSE)
        put_lit(&w, "connection: close\r\n");
    else if (r->connection == PT_HTTP_REPLY_CONN_KEEP_ALIVE)
        put_lit(&w, "connection: keep-alive\r\n");
    put_lit(&w, "\r\n");
    return w.overflow ? PT_TOOBIG : (int)(w.p - out);
}
