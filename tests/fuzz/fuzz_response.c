/* libFuzzer target for the HTTP/1 response parser (pt_h1_parse_response in src/http/h1.c), the
 * parser that reads what upstreams send. Checks what fuzz_h1.c does not: the parse against an
 * independent reading of the same bytes (status digits, reason, one header per line in order,
 * framing and keep-alive derived from the headers), the same head end whatever the read
 * boundaries, and that a chunked body after the head is framed the same by scan and decode.
 * Any violation aborts. Built and run by tests/fuzz/run.sh (corpus tests/fuzz/corpus/response/).
 */
// fuzz-sources: src/http/h1.c src/core/common.c
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "http/h1.h"
#include "fuzz.h"

#define MAXH 64


static bool name_eq(struct pt_str n, const char *lit)
{
    return n.len == strlen(lit) && strncasecmp(n.ptr, lit, n.len) == 0;
}

/* first_index: index of the first header named <lit>, -1 when none. */
static int first_index(const struct pt_h1_response *res, const char *lit)
{
    for (size_t i = 0; i < res->nheaders; i++)
        if (name_eq(res->headers[i].name, lit))
            return (int)i;
    return -1;
}

/* has_token: whether a comma-separated header value lists <tok> (case-insensitive). */
static bool has_token(struct pt_str v, const char *tok)
{
    size_t tl = strlen(tok), i = 0;

    while (i < v.len) {
        size_t s = i, e;
        while (i < v.len && v.ptr[i] != ',')
            i++;
        e = i++;
        while (s < e && (v.ptr[s] == ' ' || v.ptr[s] == '\t'))
            s++;
        while (e > s && (v.ptr[e - 1] == ' ' || v.ptr[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v.ptr + s, tok, tl) == 0)
            return true;
    }
    return false;
}

static bool all_digits(struct pt_str v, int64_t *out)
{
    int64_t n = 0;

    if (v.len == 0 || v.len > 18)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9')
            return false;
        n = n * 10 + (v.ptr[i] - '0');
    }
    *out = n;
    return true;
}

/* check_lines: the head is the status line, then exactly one header per CRLF-terminated line,
 * in order, each "name:" OWS value OWS, then the blank line. */
static void check_lines(const char *buf, size_t head, const struct pt_h1_response *res)
{
    const char *p = memchr(buf, '\n', head);

    CHECK(p != NULL && p > buf && p[-1] == '\r');
    p++;
    for (size_t i = 0; i < res->nheaders; i++) {
        const struct pt_header *h = &res->headers[i];
        const char *eol = memchr(p, '\n', (size_t)(buf + head - p));
        CHECK(eol != NULL && eol[-1] == '\r');
        CHECK(h->name.ptr == p && p[h->name.len] == ':');
        const char *v = p + h->name.len + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (h->value.len)
            CHECK(h->value.ptr == v);
        const char *ve = v + h->value.len;
        while (*ve == ' ' || *ve == '\t')
            ve++;
        CHECK(ve == eol - 1);
        p = eol + 1;
    }
    CHECK(p + 2 == buf + head && p[0] == '\r' && p[1] == '\n');
}

/* check_semantics: framing and persistence as an independent reader derives them. */
static void check_semantics(const struct pt_h1_response *res)
{
    int cl = first_index(res, "content-length");
    int te = first_index(res, "transfer-encoding");
    int conn = first_index(res, "connection");
    int64_t n;

    CHECK(res->idx_content_length == cl && res->idx_transfer_encoding == te);
    CHECK(res->idx_connection == conn);
    if (te >= 0) {
        CHECK(res->chunked && res->content_length == -1 && res->minor_version == 1);
        if (cl >= 0)
            CHECK(!res->keep_alive);
    } else {
        CHECK(!res->chunked);
        if (cl < 0)
            CHECK(res->content_length == -1);
        else if (all_digits(res->headers[cl].value, &n))
            CHECK(res->content_length == n);
    }
    /* every Content-Length header agrees with the one that was kept */
    for (size_t i = 0; te < 0 && i < res->nheaders; i++)
        if (name_eq(res->headers[i].name, "content-length") &&
            all_digits(res->headers[i].value, &n))
            CHECK(n == res->content_length);
    bool close = false, ka = false;
    for (size_t i = 0; i < res->nheaders; i++)
        if (name_eq(res->headers[i].name, "connection")) {
            close |= has_token(res->headers[i].value, "close");
            ka |= has_token(res->headers[i].value, "keep-alive");
        }
    if (close)
        CHECK(!res->keep_alive);
    else if (te < 0 || cl < 0)
        CHECK(res->keep_alive == (res->minor_version == 1 || ka));
}

/* check_split: pt_h1_find_head_end fed the bytes in pieces cut by <seed> finds the same end. */
static void check_split(const char *buf, size_t len, int whole, uint32_t seed)
{
    size_t scanned = 0, have = 0;
    int f = PT_AGAIN;

    while (have < len) {
        seed = seed * 1103515245u + 12345u;
        size_t step = 1 + (seed >> 16) % 97;
        have = have + step < len ? have + step : len;
        f = pt_h1_find_head_end(buf, have, &scanned, NULL);
        CHECK(scanned <= have);
        if (f != PT_AGAIN)
            break;
    }
    if (whole > 0)
        CHECK(f == whole);
    else if (f > 0)
        CHECK(whole < 0 && whole != PT_AGAIN);
}

static void check_body(const char *buf, size_t len)
{
    struct pt_h1_chunked a = { 0 }, b = { 0 };
    size_t ca, cb, off = 0, data = 0;
    int ra = pt_h1_chunked_scan(&a, buf, len, &ca), rb;

    do {
        struct pt_str d;
        rb = pt_h1_chunked_decode(&b, buf + off, len - off, &cb, &d);
        data += d.len;
        off += cb;
    } while (rb == 0 && off < len);
    CHECK(ra == rb && ca == off && a.data_total == b.data_total && b.data_total == data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct pt_header hdrs[MAXH];
    const char *buf = (const char *)data;
    struct pt_h1_response res;
    uint32_t seed = size ? data[0] * 2654435761u + (uint32_t)size : 1;
    int r = pt_h1_parse_response(buf, size, &res, hdrs, MAXH, NULL);

    check_split(buf, size, r, seed);
    if (r <= 0) {
        CHECK(r == PT_AGAIN || r == PT_BADMSG || r == PT_TOOBIG);
        return 0;
    }
    CHECK(size >= 13 && memcmp(buf, "HTTP/1.", 7) == 0 && buf[8] == ' ');
    CHECK(res.minor_version == buf[7] - '0');
    CHECK(res.status == (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0'));
    if (res.reason.len)
        CHECK(res.reason.ptr == buf + 13 && buf[12] == ' ');
    check_lines(buf, (size_t)r, &res);
    check_semantics(&res);

    /* the head alone, and the head with anything after it, parse the same */
    struct pt_h1_response again;
    CHECK(pt_h1_parse_response(buf, (size_t)r, &again, hdrs, MAXH, NULL) == r);
    CHECK(again.status == res.status && again.nheaders == res.nheaders);
    CHECK(pt_h1_parse_response(buf, seed % (uint32_t)r, &again, hdrs, MAXH, NULL) == PT_AGAIN);
    pt_h1_parse_response(buf, size, &res, hdrs, MAXH, NULL);
    if (res.chunked)
        check_body(buf + r, size - (size_t)r);
    return 0;
}
