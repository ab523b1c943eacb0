/* libFuzzer target for src/http/h1.c. Feeds each input to the request, response, head-end and
 * chunked parsers and checks their invariants: results in range, every slice inside the buffer,
 * no bare CR/LF or untrimmed OWS in what was accepted, the same answer whatever the read
 * boundaries or limits, and agreement between the parsers that overlap. Any violation aborts.
 * Built and run by tests/fuzz/run.sh. */
// fuzz-sources: src/http/h1.c src/core/common.c
#include <stdio.h>
#include <stdlib.h>

#include "http/h1.h"
#include "fuzz.h"

#define MAXH 32


static const struct pt_h1_limits small = { .max_head_bytes = 64, .max_headers = 4 };

static bool inside(struct pt_str s, const char *buf, size_t len)
{
    return s.len == 0 || (s.ptr >= buf && s.len <= len && s.ptr + s.len <= buf + len);
}

static bool is_status(int r)
{
    return r == PT_AGAIN || r == PT_BADMSG || r == PT_TOOBIG;
}

static void check_headers(const struct pt_header *h, size_t n, const char *buf, size_t len)
{
    CHECK(n <= MAXH);
    for (size_t i = 0; i < n; i++) {
        struct pt_str v = h[i].value;
        CHECK(h[i].name.len > 0 && inside(h[i].name, buf, len) && inside(v, buf, len));
        CHECK(memchr(h[i].name.ptr, ':', h[i].name.len) == NULL);
        for (size_t j = 0; j < v.len; j++)
            CHECK(v.ptr[j] != '\r' && v.ptr[j] != '\n' && v.ptr[j] != 0 && v.ptr[j] != 0x7f);
        if (v.len)
            CHECK(v.ptr[0] != ' ' && v.ptr[0] != '\t' && v.ptr[v.len - 1] != ' ' &&
                  v.ptr[v.len - 1] != '\t');
    }
}

static bool idx_ok(int idx, size_t n)
{
    return idx == -1 || (idx >= 0 && (size_t)idx < n);
}

/* The head-end scanner must agree with a parse result <r> of the same bytes, also when fed in
 * two reads split at <k>. */
static void check_head_end(const char *buf, size_t len, size_t k, int r)
{
    size_t scanned = 0;
    int f = pt_h1_find_head_end(buf, len, &scanned, NULL);

    CHECK(f > 0 ? (size_t)f <= len : is_status(f));
    if (r > 0)
        CHECK(f == r);
    if (r == PT_AGAIN)
        CHECK(f == PT_AGAIN);
    if (f == PT_BADMSG)
        CHECK(r == PT_BADMSG || r == PT_TOOBIG);
    scanned = 0;
    int f1 = pt_h1_find_head_end(buf, k, &scanned, NULL);
    if (f1 == PT_AGAIN) {
        CHECK(scanned <= k);
        CHECK(pt_h1_find_head_end(buf, len, &scanned, NULL) == f);
    } else {
        CHECK(f1 == f);
    }
}

static void check_chunked(const char *buf, size_t len, size_t k);

static void check_request(const char *buf, size_t len, size_t k)
{
    static struct pt_header hdrs[MAXH];
    struct pt_h1_request req;
    int r = pt_h1_parse_request(buf, len, &req, hdrs, MAXH, NULL);

    check_head_end(buf, len, k, r);
    if (r <= 0) {
        CHECK(is_status(r) || r == PT_NOTSUP); /* a Transfer-Encoding other than chunked: 501 */
        return;
    }
    CHECK((size_t)r <= len && r >= 4 && memcmp(buf + r - 4, "\r\n\r\n", 4) == 0);
    CHECK(req.minor_version == 0 || req.minor_version == 1);
    CHECK(req.method.len > 0 && inside(req.method, buf, r) && inside(req.target, buf, r));
    CHECK(inside(req.path, buf, r) || (req.path.len == 1 && req.path.ptr[0] == '/'));
    CHECK(inside(req.query, buf, r) && inside(req.authority, buf, r) && inside(req.host, buf, r));
    CHECK(req.query.ptr == NULL || req.query.ptr[-1] == '?');
    CHECK(req.content_length >= -1);
    CHECK(!req.chunked || (req.content_length == -1 && req.minor_version == 1));
    CHECK(req.headers == hdrs);
    check_headers(hdrs, req.nheaders, buf, r);
    CHECK(idx_ok(req.idx_host, req.nheaders) && idx_ok(req.idx_connection, req.nheaders));
    CHECK(idx_ok(req.idx_te_header, req.nheaders) && idx_ok(req.idx_upgrade, req.nheaders));
    CHECK(idx_ok(req.idx_content_length, req.nheaders));
    CHECK(idx_ok(req.idx_transfer_encoding, req.nheaders));
    CHECK(req.minor_version == 0 || req.idx_host >= 0);

    /* the head alone parses the same; any shorter prefix is incomplete */
    size_t nh = req.nheaders;
    CHECK(pt_h1_parse_request(buf, (size_t)r, &req, hdrs, MAXH, NULL) == r);
    CHECK(pt_h1_parse_request(buf, (size_t)r - 1, &req, hdrs, MAXH, NULL) == PT_AGAIN);
    CHECK(pt_h1_parse_request(buf, k % (size_t)r, &req, hdrs, MAXH, NULL) == PT_AGAIN);
    /* tighter limits change only the verdict on size */
    int rs = pt_h1_parse_request(buf, len, &req, hdrs, MAXH, &small);
    if (r <= 64 && nh <= 4)
        CHECK(rs == r);
    else
        CHECK(rs == PT_TOOBIG);
    pt_h1_parse_request(buf, len, &req, hdrs, MAXH, NULL);
    if (req.chunked)
        check_chunked(buf + r, len - (size_t)r, k);
}

static void check_response(const char *buf, size_t len, size_t k)
{
    static struct pt_header hdrs[MAXH];
    struct pt_h1_response res;
    int r = pt_h1_parse_response(buf, len, &res, hdrs, MAXH, NULL);

    check_head_end(buf, len, k, r);
    if (r <= 0) {
        CHECK(is_status(r) || r == PT_NOTSUP); /* a Transfer-Encoding other than chunked: 501 */
        return;
    }
    CHECK((size_t)r <= len && memcmp(buf + r - 4, "\r\n\r\n", 4) == 0);
    CHECK(res.status >= 100 && res.status <= 599);
    CHECK(res.minor_version == 0 || res.minor_version == 1);
    CHECK(inside(res.reason, buf, r));
    CHECK(res.content_length >= -1 && (!res.chunked || res.content_length == -1));
    check_headers(hdrs, res.nheaders, buf, r);
    CHECK(idx_ok(res.idx_connection, res.nheaders));
    CHECK(idx_ok(res.idx_content_length, res.nheaders));
    CHECK(idx_ok(res.idx_transfer_encoding, res.nheaders));
    bool body = pt_h1_response_has_body(0, res.status);
    CHECK(body == (res.status >= 200 && res.status != 204 && res.status != 304));
    CHECK(!pt_h1_response_has_body(1, res.status));
    size_t nh = res.nheaders;
    CHECK(pt_h1_parse_response(buf, (size_t)r - 1, &res, hdrs, MAXH, NULL) == PT_AGAIN);
    int rs = pt_h1_parse_response(buf, len, &res, hdrs, MAXH, &small);
    if (r <= 64 && nh <= 4)
        CHECK(rs == r);
    else
        CHECK(rs == PT_TOOBIG);
}

static bool chunked_result_ok(int r)
{
    return r == 0 || r == 1 || r == PT_BADMSG || r == PT_TOOBIG;
}

/* The chunked scanner must give the same result and stop at the same byte whether it sees the
 * body at once, in two reads split at <k>, or through the decoder. */
static void check_chunked(const char *buf, size_t len, size_t k)
{
    struct pt_h1_chunked st = { 0 };
    size_t c, c1, c2;
    int r, r1, r2;

    r = pt_h1_chunked_scan(&st, buf, len, &c);
    CHECK(chunked_result_ok(r) && c <= len);
    CHECK(r != 0 || c == len);
    CHECK(pt_h1_chunked_remaining(&st) <= PT_H1_CHUNK_SIZE_MAX);
    if (r != 0) { /* the end and errors are sticky */
        r1 = pt_h1_chunked_scan(&st, buf, len, &c1);
        CHECK(c1 == 0 && (r == 1 ? r1 == 1 : r1 == PT_BADMSG));
    }

    k = len ? k % (len + 1) : 0;
    memset(&st, 0, sizeof(st));
    r1 = pt_h1_chunked_scan(&st, buf, k, &c1);
    CHECK(chunked_result_ok(r1) && c1 <= k);
    if (r1 != 0) {
        CHECK(r1 == r && c1 == c);
    } else {
        CHECK(c1 == k);
        r2 = pt_h1_chunked_scan(&st, buf + k, len - k, &c2);
        CHECK(r2 == r && k + c2 == c);
    }

    memset(&st, 0, sizeof(st));
    size_t off = 0, data = 0;
    do {
        struct pt_str d;
        r1 = pt_h1_chunked_decode(&st, buf + off, len - off, &c1, &d);
        CHECK(chunked_result_ok(r1) && c1 <= len - off);
        CHECK(inside(d, buf + off, c1) && (d.len == 0 || d.ptr + d.len <= buf + off + c1));
        data += d.len;
        off += c1;
        if (r1 == 0 && c1 == 0)
            CHECK(off == len);
    } while (r1 == 0 && off < len);
    CHECK(r1 == r && off == c && data <= c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    size_t k = size ? (size_t)data[size - 1] * 31 % (size + 1) : 0;

    check_request(buf, size, k);
    check_response(buf, size, k);
    check_chunked(buf, size, k);
    return 0;
}
