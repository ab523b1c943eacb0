// fuzz-sources: src/http/reply.c src/http/h1write.c src/http/h1.c src/core/common.c
/* libFuzzer target for src/http/reply.c, the local-reply head builder. The input picks the
 * status, the content length, the flags, the buffer size and the reason/date/location values
 * (bytes of the input, so CR, LF and NUL come up). Checks: the result is a length within the
 * buffer, PT_TOOBIG or PT_BADMSG; nothing is written past the buffer (guard bytes); PT_TOOBIG
 * only when the head built with room to spare is longer than the buffer, and then the same
 * head otherwise; an accepted head parses with the strict response parser (src/http/h1.c) to
 * the same status, content length and Location. Any violation aborts. */
#include <stdio.h>
#include <stdlib.h>

#include "http/h1.h"
#include "http/reply.h"
#include "fuzz.h"

#define GUARD 32
#define BIG (256 * 1024)


/* take: the next <n> bytes of the input as a slice (fewer at its end). */
static struct pt_str take(const uint8_t **p, size_t *left, size_t n)
{
    struct pt_str s = pt_str_make((const char *)*p, n < *left ? n : *left);
    *p += s.len;
    *left -= s.len;
    return s;
}

static uint32_t take_u32(const uint8_t **p, size_t *left)
{
    uint32_t v = 0;
    for (int i = 0; i < 4 && *left > 0; i++, (*p)++, (*left)--)
        v = v << 8 | **p;
    return v;
}

/* trim: <s> without leading and trailing SP/HTAB (what a parser strips from a field value). */
static struct pt_str trim(struct pt_str s)
{
    while (s.len && (s.ptr[0] == ' ' || s.ptr[0] == '\t'))
        s.ptr++, s.len--;
    while (s.len && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
        s.len--;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char big[BIG], out[BIG + GUARD], joined[BIG];
    const uint8_t *p = data;
    size_t left = size;
    struct pt_http_reply r = { 0 };
    uint32_t a = take_u32(&p, &left), b = take_u32(&p, &left);

    r.status = (int)(a % 1100);
    r.content_length = (uint64_t)b * (b & 1 ? 0x10001u : 1); /* up to 2^48: any real body */
    r.text_plain = a & 0x10000;
    r.connection = (enum pt_http_reply_conn)((a >> 17) % 3);
    r.reason = take(&p, &left, (a >> 20) & 31);
    r.date = take(&p, &left, (a >> 25) & 31);
    size_t cap = take_u32(&p, &left) % 2048;
    for (int i = 0; i < 4; i++)
        r.location[i] = take(&p, &left, i == 3 ? left : (size_t)(take_u32(&p, &left) % 64));

    int full = pt_http_reply_head(&r, big, sizeof(big));
    CHECK(full > 0 || full == PT_BADMSG);
    memset(out + cap, 0xa5, GUARD);
    int n = pt_http_reply_head(&r, out, cap);
    for (size_t i = 0; i < GUARD; i++)
        CHECK((unsigned char)out[cap + i] == 0xa5);
    if (full == PT_BADMSG) {
        CHECK(n == PT_BADMSG);
        return 0;
    }
    if ((size_t)full > cap) {
        CHECK(n == PT_TOOBIG);
    } else {
        CHECK(n == full && memcmp(out, big, (size_t)n) == 0);
    }

    struct pt_header hdrs[16];
    struct pt_h1_response res;
    struct pt_h1_limits lim = { .max_head_bytes = BIG, .max_headers = 16 };
    int pr = pt_h1_parse_response(big, (size_t)full, &res, hdrs, 16, &lim);
    /* The strict parser takes only 100..599 and a version digit; the builder any 3 digits. */
    if (r.status > 599)
        return 0;
    CHECK(pr == full);
    CHECK(res.status == r.status && res.minor_version == 1);
    if (r.status == 204 || r.status == 304) /* no body, and no length said (RFC 9110 8.6) */
        CHECK(pt_header_find(res.headers, res.nheaders, PT_STR_LIT("content-length")) == NULL);
    else
        CHECK(res.content_length >= 0 && (uint64_t)res.content_length == r.content_length);
    CHECK(res.keep_alive == (r.connection != PT_HTTP_REPLY_CONN_CLOSE));
    size_t jl = 0;
    for (int i = 0; i < 4; i++) {
        memcpy(joined + jl, r.location[i].ptr, r.location[i].len);
        jl += r.location[i].len;
    }
    const struct pt_header *loc = pt_header_find(res.headers, res.nheaders, PT_STR_LIT("location"));
    CHECK((loc != NULL) == (jl != 0));
    if (loc != NULL)
        CHECK(pt_str_eq(loc->value, trim(pt_str_make(joined, jl))));
    return 0;
}
