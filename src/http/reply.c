/* The head of a local reply, written into a bounded buffer: a pure function (no I/O, no
 * allocation, written with http/h1write.h) that says "too big" instead of truncating, so a long redirect Location can never
 * make a reply send bytes that are not its own. Called by proxy/reply.c; fuzzed by
 * tests/fuzz/fuzz_reply.c. */
#include "http/reply.h"
#include "http/h1.h"
#include "http/h1write.h"

#include <limits.h>
#include <string.h>

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
    struct pt_h1w w;
    bool location = false;
    size_t n;

    pt_h1w_init(&w, out, cap > INT_MAX ? INT_MAX : cap);

    if (r->status < 100 || r->status > 999 || !field_ok(r->reason) || !field_ok(r->date) ||
        !field_ok(r->grpc_message) || !field_ok(r->content_type) || r->grpc_status < 0 || r->grpc_status > 16)
        return PT_BADMSG;
    for (size_t i = 0; i < PT_ARRAY_SIZE(r->location); i++) {
        if (!field_ok(r->location[i]))
            return PT_BADMSG;
        location |= r->location[i].len != 0;
    }
    if (r->nextra > PT_HTTP_REPLY_EXTRA_MAX)
        return PT_BADMSG;
    for (size_t i = 0; i < r->nextra; i++)
        if (!pt_http_token(r->extra[i].name) || !field_ok(r->extra[i].value))
            return PT_BADMSG;
    pt_h1w_status_line(&w, r->status, r->reason);
    if (r->status != 204 && r->status != 304) /* no body, and no length said (RFC 9110 8.6) */
        pt_h1w_header_uint(&w, PT_STR_LIT("content-length"), r->content_length);
    if (r->grpc) {
        pt_h1w_header(&w, PT_STR_LIT("content-type"),
                      r->grpc_content_type.len ? r->grpc_content_type : PT_STR_LIT("application/grpc"));
        pt_h1w_header_uint(&w, PT_STR_LIT("grpc-status"), (uint64_t)r->grpc_status);
        if (r->grpc_message.len)
            pt_h1w_header(&w, PT_STR_LIT("grpc-message"), r->grpc_message);
    } else if (r->content_type.len) {
        pt_h1w_header(&w, PT_STR_LIT("content-type"), r->content_type);
    } else if (r->text_plain) {
        pt_h1w_header(&w, PT_STR_LIT("content-type"), PT_STR_LIT("text/plain"));
    }
    if (r->date.len != 0)
        pt_h1w_header(&w, PT_STR_LIT("date"), r->date);
    pt_h1w_header(&w, PT_STR_LIT("server"), PT_STR_LIT("envoy"));
    if (location) {
        pt_h1w_header_begin(&w, PT_STR_LIT("location"));
        for (size_t i = 0; i < PT_ARRAY_SIZE(r->location); i++)
            pt_h1w_value(&w, r->location[i]);
        pt_h1w_header_end(&w);
    }
    for (size_t i = 0; i < r->nextra; i++)
        pt_h1w_header(&w, r->extra[i].name, r->extra[i].value);
    if (r->connection == PT_HTTP_REPLY_CONN_CLOSE)
        pt_h1w_header(&w, PT_STR_LIT("connection"), PT_STR_LIT("close"));
    else if (r->connection == PT_HTTP_REPLY_CONN_KEEP_ALIVE)
        pt_h1w_header(&w, PT_STR_LIT("connection"), PT_STR_LIT("keep-alive"));
    n = pt_h1w_end(&w);
    return n == 0 ? PT_TOOBIG : (int)n;
}
