/* Unit tests for src/http/h1.c: valid heads, every strictness rule, smuggling classics,
 * incremental input at every byte split, and the chunked scanner and decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "http/h1.h"

#define MAXH 64

static struct pt_header hdrs[MAXH];

static int parse_req(const char *s, struct pt_h1_request *req)
{
    return pt_h1_parse_request(s, strlen(s), req, hdrs, MAXH, NULL);
}

static int parse_res(const char *s, struct pt_h1_response *res)
{
    return pt_h1_parse_response(s, strlen(s), res, hdrs, MAXH, NULL);
}

static void assert_str(struct pt_str got, const char *want)
{
    if (got.len != strlen(want) || (got.len && memcmp(got.ptr, want, got.len) != 0))
        fail_msg("got \"%.*s\", want \"%s\"", (int)got.len, got.ptr ? got.ptr : "", want);
}

static void expect_req(const char *s, int want)
{
    struct pt_h1_request req;
    int r = parse_req(s, &req);
    if (r != want)
        fail_msg("request %d, want %d:\n%s", r, want, s);
}

static void expect_res(const char *s, int want)
{
    struct pt_h1_response res;
    int r = parse_res(s, &res);
    if (r != want)
        fail_msg("response %d, want %d:\n%s", r, want, s);
}

#define REQ_OK(s) expect_req((s), (int)strlen(s))
#define REQ_BAD(s) expect_req((s), PT_BADMSG)
#define REQ_NOTSUP(s) expect_req((s), PT_NOTSUP)
#define RES_OK(s) expect_res((s), (int)strlen(s))
#define RES_BAD(s) expect_res((s), PT_BADMSG)

/* A request head with one extra header line <h> (which must end in CRLF). */
static const char *with_header(const char *h)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf), "POST /x HTTP/1.1\r\nHost: a\r\n%s\r\n", h);
    return buf;
}

/* Every proper prefix of <s> must be PT_AGAIN, in an exactly sized copy so a sanitizer sees
 * over-reads; the whole must parse to strlen(s). */
static void assert_request_splits(const char *s)
{
    size_t len = strlen(s);
    struct pt_h1_request req;

    for (size_t k = 0; k < len; k++) {
        char *copy = malloc(k ? k : 1);
        memcpy(copy, s, k);
        int r = pt_h1_parse_request(copy, k, &req, hdrs, MAXH, NULL);
        free(copy);
        if (r != PT_AGAIN)
            fail_msg("prefix %zu of %zu gave %d", k, len, r);
    }
    assert_int_equal(parse_req(s, &req), (int)len);
}

static void assert_response_splits(const char *s)
{
    size_t len = strlen(s);
    struct pt_h1_response res;

    for (size_t k = 0; k < len; k++) {
        char *copy = malloc(k ? k : 1);
        memcpy(copy, s, k);
        int r = pt_h1_parse_response(copy, k, &res, hdrs, MAXH, NULL);
        free(copy);
        if (r != PT_AGAIN)
            fail_msg("prefix %zu of %zu gave %d", k, len, r);
    }
    assert_int_equal(parse_res(s, &res), (int)len);
}

/* ---- valid requests ---- */

static void test_get_simple(void **state)
{
    const char *s = "GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n"
                    "Accept: */*\r\n\r\n";
    struct pt_h1_request req;

    assert_int_equal(parse_req(s, &req), (int)strlen(s));
    assert_str(req.method, "GET");
    assert_int_equal(req.method_id, PT_H1_METHOD_GET);
    assert_str(req.target, "/index.html");
    assert_str(req.path, "/index.html");
    assert_null(req.query.ptr);
    assert_int_equal(req.minor_version, 1);
    assert_int_equal(req.nheaders, 3);
    assert_ptr_equal(req.headers, hdrs);
    assert_str(req.headers[2].name, "Accept");
    assert_str(req.headers[2].value, "*/*");
    assert_str(req.host, "example.com");
    assert_int_equal(req.idx_host, 0);
    assert_int_equal(req.idx_user_agent, 1);
    assert_int_equal(req.idx_connection, -1);
    assert_int_equal(req.idx_x_forwarded_for, -1);
    assert_int_equal(req.content_length, -1);
    assert_false(req.chunked);
    assert_true(req.keep_alive);
    assert_false(req.expect_continue);
    assert_false(req.upgrade);
    assert_int_equal(req.authority.len, 0);
}

static void test_query_split(void **state)
{
    struct pt_h1_request req;

    REQ_OK("GET /a/b?x=1&y=2?z HTTP/1.1\r\nHost: h\r\n\r\n");
    parse_req("GET /a/b?x=1&y=2?z HTTP/1.1\r\nHost: h\r\n\r\n", &req);
    assert_str(req.path, "/a/b");
    assert_str(req.query, "x=1&y=2?z");
    parse_req("GET /a? HTTP/1.1\r\nHost: h\r\n\r\n", &req);
    assert_str(req.path, "/a");
    assert_non_null(req.query.ptr);
    assert_int_equal(req.query.len, 0);
}

static void test_post_content_length(void **state)
{
    const char *s = "POST /submit HTTP/1.1\r\nHost: h\r\nContent-Length: 13\r\n"
                    "Content-Type: text/plain\r\n\r\nhello, world!";
    struct pt_h1_request req;

    assert_int_equal(parse_req(s, &req), (int)strlen(s) - 13);
    assert_int_equal(req.method_id, PT_H1_METHOD_POST);
    assert_int_equal(req.content_length, 13);
    assert_int_equal(req.idx_content_length, 1);
    assert_false(req.chunked);
    parse_req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n", &req);
    assert_true(req.content_length == INT64_MAX);
    parse_req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n", &req);
    assert_int_equal(req.content_length, 7);
}

static void test_post_chunked(void **state)
{
    struct pt_h1_request req;

    parse_req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", &req);
    assert_true(req.chunked);
    assert_int_equal(req.content_length, -1);
    assert_int_equal(req.idx_transfer_encoding, 1);
    REQ_OK("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: CHUNKED\r\n\r\n");
    /* Envoy: anything but exactly "chunked" is 501 */
    REQ_NOTSUP("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    REQ_NOTSUP("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n"
               "Transfer-Encoding: chunked\r\n\r\n");
    REQ_OK("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked \r\n\r\n");
}

/* Connection options come from every Connection header (RFC 9110 §7.6.1). */
static void test_connection_options_all_headers(void **state)
{
    struct pt_h1_request req;

    parse_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", &req);
    assert_false(req.conn_options);
    parse_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: x-a\r\n\r\n", &req);
    assert_true(req.conn_options);
    assert_true(req.keep_alive);
    parse_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: x-a\r\nConnection: close\r\n\r\n", &req);
    assert_true(req.conn_options);
    assert_false(req.keep_alive);
    parse_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: x\r\nUpgrade: ws\r\nConnection: upgrade\r\n\r\n", &req);
    assert_true(req.upgrade);
}

static void test_chunk_head(void **state)
{
    char b[PT_H1_CHUNK_HEAD_MAX];
    size_t n = pt_h1_chunk_head(b, 0);
    assert_int_equal(n, 3);
    assert_memory_equal(b, "0\r\n", 3);
    n = pt_h1_chunk_head(b, 500);
    assert_memory_equal(b, "1f4\r\n", n);
    n = pt_h1_chunk_head(b, UINT64_MAX);
    assert_int_equal(n, 18);
    assert_memory_equal(b, "ffffffffffffffff\r\n", n);
}

static void test_absolute_form(void **state)
{
    struct pt_h1_request req;

    REQ_OK("GET http://example.com:8080/p/q?x=1 HTTP/1.1\r\nHost: other\r\n\r\n");
    parse_req("GET http://example.com:8080/p/q?x=1 HTTP/1.1\r\nHost: other\r\n\r\n", &req);
    assert_str(req.authority, "example.com:8080");
    assert_str(req.path, "/p/q");
    assert_str(req.query, "x=1");
    assert_str(req.host, "other");
    parse_req("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", &req);
    assert_str(req.path, "/");
    assert_null(req.query.ptr);
    parse_req("GET HTTPS://[::1]?q HTTP/1.1\r\nHost: x\r\n\r\n", &req);
    assert_str(req.authority, "[::1]");
    assert_str(req.path, "/");
    assert_str(req.query, "q");
}

static void test_asterisk_and_connect(void **state)
{
    struct pt_h1_request req;

    parse_req("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &req);
    assert_int_equal(req.method_id, PT_H1_METHOD_OPTIONS);
    assert_str(req.path, "*");
    REQ_BAD("GET * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(parse_req("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                               &req),
                     (int)strlen("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"));
    assert_int_equal(req.method_id, PT_H1_METHOD_CONNECT);
    assert_str(req.authority, "example.com:443");
    assert_int_equal(req.path.len, 0);
    REQ_OK("CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("CONNECT http://example.com:443/ HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("CONNECT u@example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n");
}

static void test_methods(void **state)
{
    struct pt_h1_request req;
    static const struct {
        const char *m;
        enum pt_h1_method id;
    } cases[] = {
        { "GET", PT_H1_METHOD_GET },         { "HEAD", PT_H1_METHOD_HEAD },
        { "POST", PT_H1_METHOD_POST },       { "PUT", PT_H1_METHOD_PUT },
        { "DELETE", PT_H1_METHOD_DELETE },   { "OPTIONS", PT_H1_METHOD_OPTIONS },
        { "TRACE", PT_H1_METHOD_TRACE },     { "PATCH", PT_H1_METHOD_PATCH },
        { "PROPFIND", PT_H1_METHOD_OTHER },  { "get", PT_H1_METHOD_OTHER },
        { "M-SEARCH", PT_H1_METHOD_OTHER },
    };
    char buf[128];

    for (size_t i = 0; i < PT_ARRAY_SIZE(cases); i++) {
        snprintf(buf, sizeof(buf), "%s / HTTP/1.1\r\nHost: h\r\n\r\n", cases[i].m);
        assert_int_equal(parse_req(buf, &req), (int)strlen(buf));
        assert_int_equal(req.method_id, cases[i].id);
        assert_str(req.method, cases[i].m);
    }
}

static void test_keep_alive(void **state)
{
    struct pt_h1_request req;

    parse_req("GET / HTTP/1.0\r\n\r\n", &req);
    assert_int_equal(req.minor_version, 0);
    assert_false(req.keep_alive);
    assert_int_equal(req.host.len, 0);
    parse_req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &req);
    assert_true(req.keep_alive);
    assert_int_equal(req.idx_connection, 0);
    parse_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", &req);
    assert_false(req.keep_alive);
    parse_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, CLOSE\r\n\r\n", &req);
    assert_false(req.keep_alive);
    parse_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
              &req);
    assert_false(req.keep_alive);
    assert_int_equal(req.idx_connection, 1);
    parse_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: ,, foo ,\r\n\r\n", &req);
    assert_true(req.keep_alive);
    REQ_BAD("GET / HTTP/1.1\r\nHost: h\r\nConnection: close x\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: h\r\nConnection: \"close\"\r\n\r\n");
}

static void test_upgrade_and_expect(void **state)
{
    struct pt_h1_request req;

    parse_req("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
              "Upgrade: websocket\r\n\r\n", &req);
    assert_true(req.upgrade);
    assert_int_equal(req.idx_upgrade, 2);
    parse_req("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n", &req);
    assert_false(req.upgrade);
    parse_req("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", &req);
    assert_false(req.upgrade);
    parse_req("GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", &req);
    assert_false(req.upgrade);
    parse_req("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
              &req);
    assert_true(req.expect_continue);
    parse_req("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", &req);
    assert_false(req.expect_continue);
    parse_req("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continuex\r\n\r\n", &req);
    assert_false(req.expect_continue);
}

static void test_indexes(void **state)
{
    struct pt_h1_request req;

    parse_req("GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nhost: h\r\nx-forwarded-for: 2.2.2.2\r\n"
              "X-FORWARDED-PROTO: https\r\nX-Request-Id: abc\r\nTE: trailers\r\n"
              "Connection: TE\r\n\r\n", &req);
    assert_int_equal(req.nheaders, 7);
    assert_int_equal(req.idx_x_forwarded_for, 0);
    assert_int_equal(req.idx_host, 1);
    assert_int_equal(req.idx_x_forwarded_proto, 3);
    assert_int_equal(req.idx_x_request_id, 4);
    assert_int_equal(req.idx_te_header, 5);
    assert_int_equal(req.idx_connection, 6);
    assert_int_equal(req.idx_user_agent, -1);
    assert_int_equal(req.idx_transfer_encoding, -1);
}

static void test_values(void **state)
{
    struct pt_h1_request req;

    parse_req("GET / HTTP/1.1\r\nHost:h\r\nX-A:  \t a b \t \r\nX-B:\r\nX-C: \r\n"
              "X-D: caf\xc3\xa9 \x80\xff\r\nX-E: a\tb\r\n\r\n", &req);
    assert_str(req.host, "h");
    assert_str(req.headers[1].value, "a b");
    assert_int_equal(req.headers[2].value.len, 0);
    assert_int_equal(req.headers[3].value.len, 0);
    assert_str(req.headers[4].value, "caf\xc3\xa9 \x80\xff");
    assert_str(req.headers[5].value, "a\tb");
    REQ_OK("GET / HTTP/1.1\r\nHost: h\r\n!#$%&'*+-.^_`|~09AZaz: x\r\n\r\n");
}

static void test_host_values(void **state)
{
    REQ_OK("GET / HTTP/1.1\r\nHost:\r\n\r\n");
    REQ_OK("GET / HTTP/1.1\r\nHost: EXAMPLE.com:8080\r\n\r\n");
    REQ_OK("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n");
    REQ_OK("GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: a b\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: user@h\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: h:\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: h:65536\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: h:123456\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: h/x\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: h,g\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: []\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: :80\r\n\r\n");
}

static void test_pipelined(void **state)
{
    const char *s = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
                    "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
    struct pt_h1_request req;
    int first = (int)strlen("GET /one HTTP/1.1\r\nHost: h\r\n\r\n");

    assert_int_equal(parse_req(s, &req), first);
    assert_str(req.path, "/one");
    assert_int_equal(parse_req(s + first, &req), (int)strlen(s) - first);
    assert_str(req.path, "/two");
    assert_int_equal(req.content_length, 0);
}

static void test_leading_empty_line(void **state)
{
    struct pt_h1_request req;

    assert_int_equal(parse_req("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", &req),
                     (int)strlen("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert_str(req.method, "GET");
    REQ_BAD("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    expect_req("\r\n", PT_AGAIN);
    expect_req("\r", PT_AGAIN);
    RES_BAD("\r\nHTTP/1.1 200 OK\r\n\r\n");
}

static void test_partial_every_split(void **state)
{
    assert_request_splits("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_request_splits("\r\nGET /a?b HTTP/1.0\r\n\r\n");
    assert_request_splits("POST http://x.example:81/p?q HTTP/1.1\r\nHost: x.example\r\n"
                          "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
                          "X-Empty:\r\nUser-Agent: curl/8.0 \t\r\n\r\n");
    assert_response_splits("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: s\r\n\r\n");
    assert_response_splits("HTTP/1.0 304\r\n\r\n");
}

static void test_limits(void **state)
{
    const char *s = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    size_t len = strlen(s);
    struct pt_h1_request req;
    struct pt_h1_limits lim = { .max_head_bytes = len, .max_headers = 3 };

    assert_int_equal(pt_h1_parse_request(s, len, &req, hdrs, MAXH, &lim), (int)len);
    lim.max_headers = 2;
    assert_int_equal(pt_h1_parse_request(s, len, &req, hdrs, MAXH, &lim), PT_TOOBIG);
    lim.max_headers = 0; /* default 100, but the array holds only 2 */
    assert_int_equal(pt_h1_parse_request(s, len, &req, hdrs, 2, &lim), PT_TOOBIG);
    assert_int_equal(pt_h1_parse_request(s, len, &req, hdrs, 3, &lim), (int)len);
    lim.max_head_bytes = len - 1;
    assert_int_equal(pt_h1_parse_request(s, len, &req, hdrs, MAXH, &lim), PT_TOOBIG);
    assert_int_equal(pt_h1_parse_request(s, len - 1, &req, hdrs, MAXH, &lim), PT_TOOBIG);
    assert_int_equal(pt_h1_parse_request(s, len - 2, &req, hdrs, MAXH, &lim), PT_AGAIN);
    /* a complete head within the limit is fine even when the buffer holds more */
    lim.max_head_bytes = len;
    char big[256];
    snprintf(big, sizeof(big), "%sXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", s);
    assert_int_equal(pt_h1_parse_request(big, strlen(big), &req, hdrs, MAXH, &lim), (int)len);
    /* the default limit: 60 KiB */
    size_t n = 70 * 1024;
    char *huge = malloc(n);
    memset(huge, 'a', n);
    memcpy(huge, "GET / HTTP/1.1\r\nX: ", 19);
    assert_int_equal(pt_h1_parse_request(huge, n, &req, hdrs, MAXH, NULL), PT_TOOBIG);
    assert_int_equal(pt_h1_parse_request(huge, 1000, &req, hdrs, MAXH, NULL), PT_AGAIN);
    free(huge);
    /* response header count */
    struct pt_h1_response res;
    lim = (struct pt_h1_limits){ .max_headers = 1 };
    assert_int_equal(pt_h1_parse_response("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n", 31, &res,
                                          hdrs, MAXH, &lim),
                     PT_TOOBIG);
}

static void test_find_head_end(void **state)
{
    const char *s = "GET / HTTP/1.1\r\nHost: h\r\n\r\nNEXT";
    int want = (int)strlen(s) - 4;
    size_t scanned = 0;
    int r = PT_AGAIN;

    for (size_t k = 0; k <= strlen(s) && r == PT_AGAIN; k++) {
        r = pt_h1_find_head_end(s, k, &scanned, NULL);
        if (r == PT_AGAIN)
            assert_true(scanned <= k);
        else
            assert_int_equal(k, want);
    }
    assert_int_equal(r, want);
    scanned = 0;
    assert_int_equal(pt_h1_find_head_end(s, strlen(s), &scanned, NULL), want);
    scanned = 0;
    assert_int_equal(pt_h1_find_head_end("GET / HTTP/1.1\nHost: h\n\n", 24, &scanned, NULL),
                     PT_BADMSG);
    scanned = 0;
    assert_int_equal(pt_h1_find_head_end("GET / HTTP/1.1\r\n\n", 17, &scanned, NULL), PT_BADMSG);
    struct pt_h1_limits lim = { .max_head_bytes = 10 };
    scanned = 0;
    assert_int_equal(pt_h1_find_head_end(s, strlen(s), &scanned, &lim), PT_TOOBIG);
    scanned = 0;
    assert_int_equal(pt_h1_find_head_end(s, 9, &scanned, &lim), PT_AGAIN);
}

/* Every byte value, at every offset of an 8-byte word, in a field name, a field value and a
 * request-target: accepted exactly when the RFC grammar says so. This pins the lookup tables and
 * the 8-bytes-at-a-time scans to reference predicates written independently of them. */
static bool ref_tchar(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void test_byte_classes(void **state)
{
    struct pt_h1_request req;
    char buf[256];

    for (int c = 0; c < 256; c++) {
        for (int pos = 0; pos < 16; pos++) {
            char mid[40];
            memset(mid, 'a', 32);
            mid[pos] = (char)c;
            mid[32] = 0;
            int n, r;
            bool value_ok = c == '\t' || (c >= 0x20 && c != 0x7f);
            bool target_ok = c > 0x20 && c < 0x7f && c != '#';
            bool name_ok = ref_tchar(c) || c == ':';

            n = sprintf(buf, "GET / HTTP/1.1\r\nHost: h\r\nX: ");
            memcpy(buf + n, mid, 32), n += 32;
            n += sprintf(buf + n, "\r\n\r\n");
            r = pt_h1_parse_request(buf, (size_t)n, &req, hdrs, MAXH, NULL);
            if ((r == n) != value_ok)
                fail_msg("value byte 0x%02x at %d: %d", c, pos, r);

            n = sprintf(buf, "GET /");
            memcpy(buf + n, mid, 32), n += 32;
            n += sprintf(buf + n, " HTTP/1.1\r\nHost: h\r\n\r\n");
            r = pt_h1_parse_request(buf, (size_t)n, &req, hdrs, MAXH, NULL);
            if ((r == n) != target_ok)
                fail_msg("target byte 0x%02x at %d: %d", c, pos, r);

            n = sprintf(buf, "GET / HTTP/1.1\r\nHost: h\r\nX");
            memcpy(buf + n, mid, 32), n += 32;
            n += sprintf(buf + n, ": v\r\n\r\n");
            r = pt_h1_parse_request(buf, (size_t)n, &req, hdrs, MAXH, NULL);
            if ((r == n) != name_ok)
                fail_msg("name byte 0x%02x at %d: %d", c, pos, r);
        }
    }
}

/* ---- strictness: request line ---- */

static void test_bad_method(void **state)
{
    REQ_BAD(" GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("G(T / HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("G\"T / HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GE\x80T / HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("/ HTTP/1.1\r\nHost: h\r\n\r\n");
}

static void test_bad_separators(void **state)
{
    REQ_BAD("GET  / HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET /  HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET /\tHTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1 \r\nHost: h\r\n\r\n");
    REQ_BAD("GET /\r\nHost: h\r\n\r\n");
    REQ_BAD("GET / \r\nHost: h\r\n\r\n");
    REQ_BAD("GET\r\nHost: h\r\n\r\n");
}

static void test_bad_version(void **state)
{
    REQ_BAD("GET / HTTP/1.2\r\nHost: h\r\n\r\n");
    REQ_BAD("GET / HTTP/2.0\r\nHost: h\r\n\r\n");
    REQ_BAD("GET / HTTP/0.9\r\nHost: h\r\n\r\n");
    REQ_BAD("GET / http/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET / HTTP/1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET / HTTP/1.10\r\nHost: h\r\n\r\n");
    REQ_BAD("GET / HTTP/01.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET / HTTP/1.x\r\nHost: h\r\n\r\n");
    REQ_BAD("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
}

static void test_bad_target(void **state)
{
    REQ_BAD("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET a/b HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET http:/h/ HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET http:// HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET http://user:pw@h/ HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET http://h:x/ HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET ** HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_OK("GET /a%20b/~user/;p=1?q={x}|^&r=[1] HTTP/1.1\r\nHost: h\r\n\r\n");
}

/* ---- strictness: line endings and header syntax ---- */

static void test_bare_lf_and_cr(void **state)
{
    REQ_BAD("GET / HTTP/1.1\nHost: h\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: h\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: h\r\n\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: h\r\r\n\r\n");
    REQ_BAD("GET /\r HTTP/1.1\r\nHost: h\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\r\nHost: h\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: h\r\n\r\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nX\r: y\r\nHost: h\r\n\r\n");
    RES_BAD("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n");
    RES_BAD("HTTP/1.1 200 O\rK\r\n\r\n");
}

static void test_bad_header_syntax(void **state)
{
    REQ_BAD(with_header("Host : a\r\n"));
    REQ_BAD(with_header("X-A\t: a\r\n"));
    REQ_BAD(with_header(" X-A: a\r\n"));
    REQ_BAD(with_header("X-A: a\r\n continued\r\n"));
    REQ_BAD(with_header("X-A: a\r\n\tcontinued\r\n"));
    REQ_BAD("GET / HTTP/1.1\r\n Host: h\r\n\r\n");
    REQ_BAD(with_header(": empty-name\r\n"));
    REQ_BAD(with_header("X-A\r\n"));
    REQ_BAD(with_header("X(A): a\r\n"));
    REQ_BAD(with_header("X@A: a\r\n"));
    REQ_BAD(with_header("X\x80: a\r\n"));
    REQ_BAD(with_header("X-A: a\x7f\r\n"));
    REQ_BAD(with_header("X-A: \x01\r\n"));
    REQ_BAD(with_header("X-A: a\x0b b\r\n"));
    REQ_BAD(with_header("X-A: a\x1f\r\n"));
    expect_req("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n", PT_AGAIN); /* strlen stops */
    {
        static const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n";
        struct pt_h1_request req;
        assert_int_equal(pt_h1_parse_request(nul, sizeof(nul) - 1, &req, hdrs, MAXH, NULL),
                         PT_BADMSG);
    }
}

/* ---- strictness: framing ---- */

static void test_content_length_rules(void **state)
{
    REQ_BAD(with_header("Content-Length: +5\r\n"));
    REQ_BAD(with_header("Content-Length: -1\r\n"));
    REQ_BAD(with_header("Content-Length: 0x5\r\n"));
    REQ_BAD(with_header("Content-Length: 5 5\r\n"));
    REQ_BAD(with_header("Content-Length: 5,5\r\n"));
    REQ_BAD(with_header("Content-Length: 5, 5\r\n"));
    REQ_BAD(with_header("Content-Length: 5.0\r\n"));
    REQ_BAD(with_header("Content-Length: 1e3\r\n"));
    REQ_BAD(with_header("Content-Length:\r\n"));
    REQ_BAD(with_header("Content-Length:  \r\n"));
    REQ_BAD(with_header("Content-Length: 9223372036854775808\r\n"));
    REQ_BAD(with_header("Content-Length: 99999999999999999999999\r\n"));
    REQ_BAD(with_header("Content-Length: 5\r\nContent-Length: 5\r\n"));
    REQ_BAD(with_header("Content-Length: 5\r\ncontent-length: 6\r\n"));
}

static void test_transfer_encoding_rules(void **state)
{
    /* valid syntax, not exactly one chunked: 501 (Envoy) */
    REQ_NOTSUP(with_header("Transfer-Encoding: chunked, identity\r\n"));
    REQ_NOTSUP(with_header("Transfer-Encoding: identity, chunked\r\n"));
    REQ_NOTSUP(with_header("Transfer-Encoding: identity\r\n"));
    REQ_NOTSUP(with_header("Transfer-Encoding: gzip\r\n"));
    REQ_NOTSUP(with_header("Transfer-Encoding: xchunked\r\n"));
    REQ_NOTSUP(with_header("Transfer-Encoding: chunkedx\r\n"));
    REQ_NOTSUP(with_header("Transfer-Encoding: chunked, chunked\r\n"));
    REQ_NOTSUP(with_header("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"));
    REQ_NOTSUP(with_header("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"));
    /* malformed lists: 400 */
    REQ_BAD(with_header("Transfer-Encoding: chunked\r\nTransfer-Encoding:\r\n"));
    REQ_BAD(with_header("Transfer-Encoding:\r\n"));
    REQ_BAD(with_header("Transfer-Encoding: , chunked\r\n"));
    REQ_BAD(with_header("Transfer-Encoding: chunked,\r\n"));
    REQ_BAD(with_header("Transfer-Encoding: chunked;q=1\r\n"));
    REQ_BAD(with_header("Transfer-Encoding: \"chunked\"\r\n"));
    REQ_BAD(with_header("Transfer-Encoding: ch unked\r\n"));
    REQ_BAD(with_header("Transfer-Encoding: chunked\x0b\r\n"));
    REQ_BAD("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
    REQ_BAD("POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n");
}

static void test_host_rules(void **state)
{
    REQ_BAD("GET / HTTP/1.1\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nX-Host: h\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n");
    REQ_BAD("GET / HTTP/1.1\r\nHost: h\r\nhost: g\r\n\r\n");
    REQ_BAD("GET / HTTP/1.0\r\nHost: h\r\nHost: h\r\n\r\n");
    REQ_BAD("GET http://h/ HTTP/1.1\r\n\r\n");
    REQ_OK("GET / HTTP/1.0\r\n\r\n");
}

/* The request-smuggling classics (PortSwigger's list and friends). */
static void test_smuggling(void **state)
{
    /* CL.TE and TE.CL: both headers, either order */
    REQ_BAD("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n"
            "\r\n0\r\n\r\nSMUGGLED");
    REQ_BAD("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n"
            "\r\n8\r\nSMUGGLED\r\n0\r\n\r\n");
    /* TE obfuscation */
    REQ_NOTSUP(with_header("Transfer-Encoding: chunked, identity\r\n"));
    REQ_NOTSUP(with_header("Transfer-Encoding: xchunked\r\n"));
    REQ_BAD(with_header(" Transfer-Encoding: chunked\r\n"));
    REQ_BAD(with_header("Transfer-Encoding : chunked\r\n"));
    REQ_BAD(with_header("Transfer-Encoding:\x0b" "chunked\r\n"));
    REQ_NOTSUP(with_header("Transfer-Encoding: chunked\r\nTransfer-encoding: cow\r\n"));
    REQ_BAD(with_header("X: X\r\nTransfer-Encoding\r\n : chunked\r\n"));
    REQ_BAD(with_header("X: X\nTransfer-Encoding: chunked\r\n"));
    REQ_BAD(with_header("Transfer-Encoding: \"chunked\"\r\n"));
    REQ_NOTSUP(with_header("Transfer-Encoding: chunk\r\n"));
    REQ_BAD(with_header("Transfer-Encoding: chunked\rX: y\r\n"));
    /* CL obfuscation */
    REQ_BAD(with_header("Content-Length: +5\r\n"));
    REQ_BAD(with_header("Content-Length: 0x5\r\n"));
    REQ_BAD(with_header("Content-Length: 5\r\nContent-Length: 5\r\n"));
    REQ_BAD(with_header("Content-Length: 5\r\nContent-Length: 7\r\n"));
    REQ_BAD(with_header("Content-Length : 5\r\n"));
    REQ_BAD(with_header("Content-Length: 1_000\r\n"));
    /* a second request line hidden behind bare line endings */
    REQ_BAD("GET / HTTP/1.1\r\nHost: h\r\nX: a\n\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n");
}

/* ---- responses ---- */

static void test_response_valid(void **state)
{
    struct pt_h1_response res;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nServer: x\r\n\r\nhello world!";

    assert_int_equal(parse_res(s, &res), (int)strlen(s) - 12);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.minor_version, 1);
    assert_str(res.reason, "OK");
    assert_int_equal(res.nheaders, 2);
    assert_int_equal(res.content_length, 12);
    assert_int_equal(res.idx_content_length, 0);
    assert_int_equal(res.idx_connection, -1);
    assert_true(res.keep_alive);
    assert_false(res.chunked);
    parse_res("HTTP/1.1 204 \r\n\r\n", &res);
    assert_int_equal(res.status, 204);
    assert_int_equal(res.reason.len, 0);
    RES_OK("HTTP/1.1 204\r\n\r\n");
    parse_res("HTTP/1.0 404 Not \tFound \xe9\r\n\r\n", &res);
    assert_int_equal(res.status, 404);
    assert_str(res.reason, "Not \tFound \xe9");
    assert_false(res.keep_alive);
    assert_int_equal(res.content_length, -1);
    parse_res("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", &res);
    assert_true(res.keep_alive);
    parse_res("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", &res);
    assert_false(res.keep_alive);
    assert_int_equal(res.idx_connection, 0);
    RES_OK("HTTP/1.1 100 Continue\r\n\r\n");
    RES_OK("HTTP/1.1 599 x\r\n\r\n");
    parse_res("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &res);
    assert_true(res.chunked);
    assert_int_equal(res.idx_transfer_encoding, 0);
}

static void test_response_framing(void **state)
{
    struct pt_h1_response res;

    /* Both framings: Envoy's strict default refuses the response (a protocol error, 502). */
    RES_BAD("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    RES_BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
    RES_BAD("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n");
    RES_BAD("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    parse_res("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", &res);
    assert_int_equal(res.content_length, 5);
    RES_BAD("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
    RES_BAD("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n");
    RES_BAD("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n");
    RES_BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
    RES_BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n");
    RES_BAD("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    RES_BAD("HTTP/1.1 200 OK\r\n Folded: x\r\n\r\n");
    RES_BAD("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n");
}

static void test_response_status_line(void **state)
{
    RES_BAD("HTTP/1.1 099 x\r\n\r\n");
    RES_BAD("HTTP/1.1 600 x\r\n\r\n");
    RES_BAD("HTTP/1.1 000 x\r\n\r\n");
    RES_BAD("HTTP/1.1 2000 x\r\n\r\n");
    RES_BAD("HTTP/1.1 20 x\r\n\r\n");
    RES_BAD("HTTP/1.1 20a x\r\n\r\n");
    RES_BAD("HTTP/1.1  200 x\r\n\r\n");
    RES_BAD("HTTP/1.1 200\tx\r\n\r\n");
    RES_BAD("HTTP/1.1 200 x\x01\r\n\r\n");
    RES_BAD("HTTP/1.2 200 x\r\n\r\n");
    RES_BAD("HTTP/2 200\r\n\r\n");
    RES_BAD("http/1.1 200 x\r\n\r\n");
    RES_BAD("HTTP/1.1\r\n\r\n");
    RES_BAD("ICY 200 OK\r\n\r\n");
}

static void test_has_body(void **state)
{
    assert_true(pt_h1_response_has_body(0, 200));
    assert_true(pt_h1_response_has_body(0, 404));
    assert_false(pt_h1_response_has_body(1, 200));
    assert_false(pt_h1_response_has_body(0, 100));
    assert_false(pt_h1_response_has_body(0, 101));
    assert_false(pt_h1_response_has_body(0, 204));
    assert_false(pt_h1_response_has_body(0, 304));
}

/* ---- chunked bodies ---- */

/* chunked_all: scans <s> (<len> bytes) in pieces of <step> bytes (0: at once). Returns the
 * result and the total consumed in <*used>. */
static int chunked_all(const char *s, size_t len, size_t step, size_t *used)
{
    struct pt_h1_chunked st = { 0 };
    size_t off = 0, c;
    int r = 0;

    while (off < len) {
        size_t n = step && len - off > step ? step : len - off;
        char *copy = malloc(n);
        memcpy(copy, s + off, n);
        r = pt_h1_chunked_scan(&st, copy, n, &c);
        free(copy);
        off += c;
        if (r != 0)
            break;
        assert_int_equal(c, n);
    }
    *used = off;
    return r;
}

static void expect_chunked(const char *s, int want)
{
    size_t used;
    int r = chunked_all(s, strlen(s), 0, &used);
    if (r != want)
        fail_msg("chunked %d, want %d: %s", r, want, s);
}

static void test_chunked_basic(void **state)
{
    const char *s = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    size_t body = strlen("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), used;

    assert_int_equal(chunked_all(s, strlen(s), 0, &used), 1);
    assert_int_equal(used, body);
    expect_chunked("0\r\n\r\n", 1);
    expect_chunked("A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n", 1);
    expect_chunked("00000000000000000000001\r\nx\r\n000\r\n\r\n", 1);
    expect_chunked("5\r\nhello\r\n", 0);
    expect_chunked("5\r\nhel", 0);
    expect_chunked("0\r\n", 0);
}

static void test_chunked_every_split(void **state)
{
    const char *s = "4;ext=1\r\nWiki\r\n5 ; a=\"q\\\"\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n"
                    "0\r\nExpires: never\r\nX-T:\r\n\r\n";
    size_t len = strlen(s), used;

    for (size_t step = 1; step <= len; step++) {
        assert_int_equal(chunked_all(s, len, step, &used), 1);
        assert_int_equal(used, len);
    }
    /* every split into two pieces, each consumed fully */
    for (size_t k = 0; k <= len; k++) {
        struct pt_h1_chunked st = { 0 };
        size_t c1, c2;
        assert_int_equal(pt_h1_chunked_scan(&st, s, k, &c1), k == len ? 1 : 0);
        assert_int_equal(c1, k);
        if (k < len) {
            assert_int_equal(pt_h1_chunked_scan(&st, s + k, len - k, &c2), 1);
            assert_int_equal(c2, len - k);
        }
    }
}

static void test_chunked_extensions_trailers(void **state)
{
    expect_chunked("5;name\r\nhello\r\n0;last=\"yes, really\"\r\n\r\n", 1);
    expect_chunked("5\t;x\r\nhello\r\n0\r\n\r\n", 1);
    expect_chunked("5;\xe9\r\nhello\r\n0\r\n\r\n", PT_BADMSG);
    expect_chunked("5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n", PT_BADMSG);
    expect_chunked("5;a=\"open\r\nhello\r\n0\r\n\r\n", PT_BADMSG);
    expect_chunked("5 \r\nhello\r\n0\r\n\r\n", PT_BADMSG);
    expect_chunked("5 x\r\nhello\r\n0\r\n\r\n", PT_BADMSG);
    expect_chunked("0\r\nA: b\r\nC-D: e f\r\n\r\n", 1);
    expect_chunked("0\r\n: b\r\n\r\n", PT_BADMSG);
    expect_chunked("0\r\nA b: c\r\n\r\n", PT_BADMSG);
    expect_chunked("0\r\nA: b\r\n c\r\n\r\n", PT_BADMSG);
    expect_chunked("0\r\nA: b\x01\r\n\r\n", PT_BADMSG);
    expect_chunked("0\r\nA: b\x7f\r\n\r\n", PT_BADMSG);
    expect_chunked("0\r\nA\r\n\r\n", PT_BADMSG);
    expect_chunked("0\r\nA: b\n\r\n", PT_BADMSG);
    expect_chunked("0\r\nA: b\r\n\n", PT_BADMSG);
}

static void test_chunked_bad_framing(void **state)
{
    expect_chunked("g\r\nx\r\n0\r\n\r\n", PT_BADMSG);
    expect_chunked("\r\n", PT_BADMSG);
    expect_chunked(" 5\r\nhello\r\n0\r\n\r\n", PT_BADMSG);
    expect_chunked("-5\r\nhello\r\n0\r\n\r\n", PT_BADMSG);
    expect_chunked("+5\r\nhello\r\n0\r\n\r\n", PT_BADMSG);
    expect_chunked("0x5\r\nhello\r\n0\r\n\r\n", PT_BADMSG);
    expect_chunked("5\nhello\r\n0\r\n\r\n", PT_BADMSG);
    expect_chunked("5\r\nhello\n0\r\n\r\n", PT_BADMSG);
    expect_chunked("5\r\nhelloX\r\n0\r\n\r\n", PT_BADMSG);
    expect_chunked("5\r\nhello\rX0\r\n\r\n", PT_BADMSG);
    expect_chunked("5\rhello\r\n0\r\n\r\n", PT_BADMSG);
    expect_chunked("0\r\n\n", PT_BADMSG);
    expect_chunked("0\n\r\n", PT_BADMSG);
    expect_chunked("0\r\n\rX", PT_BADMSG);
    expect_chunked("7fffffff\r\n", 0); /* PT_H1_CHUNK_SIZE_MAX exactly */
    expect_chunked("000000000000007fffffff\r\n", 0);
    expect_chunked("80000000\r\n", PT_BADMSG); /* what a 32-bit reader would take as negative */
    expect_chunked("100000000\r\n", PT_BADMSG); /* ...or as 0 */
    expect_chunked("1000000000000000000000001\r\n", PT_BADMSG);
    expect_chunked("4000000000000000\r\n", PT_BADMSG);
    expect_chunked("10000000000000000\r\n", PT_BADMSG);
    expect_chunked("ffffffffffffffffff\r\n", PT_BADMSG);
}

static void test_chunked_limits_and_sticky(void **state)
{
    char line[PT_H1_CHUNK_LINE_MAX + 16];
    struct pt_h1_chunked st = { 0 };
    size_t c;

    memset(line, 'a', sizeof(line));
    memcpy(line, "1;", 2);
    assert_int_equal(pt_h1_chunked_scan(&st, line, sizeof(line), &c), PT_TOOBIG);
    assert_int_equal(pt_h1_chunked_scan(&st, "0\r\n\r\n", 5, &c), PT_BADMSG);
    assert_int_equal(c, 0);
    memset(&st, 0, sizeof(st));
    assert_int_equal(pt_h1_chunked_scan(&st, "x", 1, &c), PT_BADMSG);
    assert_int_equal(pt_h1_chunked_scan(&st, "0\r\n\r\n", 5, &c), PT_BADMSG);
    memset(&st, 0, sizeof(st));
    assert_int_equal(pt_h1_chunked_scan(&st, "0\r\n\r\n", 5, &c), 1);
    assert_int_equal(pt_h1_chunked_scan(&st, "0\r\n\r\n", 5, &c), 1);
    assert_int_equal(c, 0);
    /* trailer section limit */
    size_t n = PT_H1_TRAILERS_MAX + 64;
    char *t = malloc(n);
    memset(t, 'v', n);
    memcpy(t, "0\r\nX: ", 6);
    memset(&st, 0, sizeof(st));
    assert_int_equal(pt_h1_chunked_scan(&st, t, n, &c), PT_TOOBIG);
    free(t);
}

static void test_chunked_remaining_and_skip(void **state)
{
    struct pt_h1_chunked st = { 0 };
    size_t c;
    char big[10000];

    assert_int_equal(pt_h1_chunked_scan(&st, "2710\r\n", 6, &c), 0);
    assert_int_equal(pt_h1_chunked_remaining(&st), 10000);
    memset(big, 'x', sizeof(big));
    assert_int_equal(pt_h1_chunked_scan(&st, big, 4000, &c), 0);
    assert_int_equal(c, 4000);
    assert_int_equal(pt_h1_chunked_remaining(&st), 6000);
    pt_h1_chunked_skip(&st, 6000);
    assert_int_equal(pt_h1_chunked_remaining(&st), 0);
    assert_int_equal(pt_h1_chunked_scan(&st, "\r\n0\r\n\r\n", 7, &c), 1);
    assert_int_equal(c, 7);
    /* a huge chunk is skipped arithmetically */
    memset(&st, 0, sizeof(st));
    assert_int_equal(pt_h1_chunked_scan(&st, "7fffffff\r\n", 10, &c), 0);
    assert_true(pt_h1_chunked_remaining(&st) == PT_H1_CHUNK_SIZE_MAX);
    assert_int_equal(pt_h1_chunked_scan(&st, big, sizeof(big), &c), 0);
    assert_true(pt_h1_chunked_remaining(&st) == PT_H1_CHUNK_SIZE_MAX - sizeof(big));
}

/* decode_all: decodes <s> in pieces of <step> bytes, appending the data to <out>. */
static int decode_all(const char *s, size_t len, size_t step, char *out, size_t *outlen)
{
    struct pt_h1_chunked st = { 0 };
    size_t off = 0, c;
    int r = 0;

    *outlen = 0;
    while (off < len) {
        size_t end = step && len - off > step ? off + step : len, pos = off;
        while (pos < end) {
            struct pt_str d;
            r = pt_h1_chunked_decode(&st, s + pos, end - pos, &c, &d);
            pos += c;
            if (d.len) {
                assert_true(d.ptr >= s && d.ptr + d.len <= s + len);
                memcpy(out + *outlen, d.ptr, d.len);
                *outlen += d.len;
            }
            if (r != 0)
                return r;
        }
        off = end;
    }
    return r;
}

static void test_chunked_decode(void **state)
{
    const char *s = "4\r\nWiki\r\n5;x=y\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\n";
    const char *want = "Wikipedia in\r\n\r\nchunks.";
    char out[64];
    size_t n;

    for (size_t step = 0; step <= strlen(s); step++) {
        assert_int_equal(decode_all(s, strlen(s), step, out, &n), 1);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(out, want, n);
    }
    assert_int_equal(decode_all("5\r\nhelloX", 9, 0, out, &n), PT_BADMSG);
    assert_int_equal(n, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_simple),
        cmocka_unit_test(test_query_split),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_post_chunked),
        cmocka_unit_test(test_connection_options_all_headers),
        cmocka_unit_test(test_chunk_head),
        cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_asterisk_and_connect),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_upgrade_and_expect),
        cmocka_unit_test(test_indexes),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_host_values),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_leading_empty_line),
        cmocka_unit_test(test_partial_every_split),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_find_head_end),
        cmocka_unit_test(test_byte_classes),
        cmocka_unit_test(test_bad_method),
        cmocka_unit_test(test_bad_separators),
        cmocka_unit_test(test_bad_version),
        cmocka_unit_test(test_bad_target),
        cmocka_unit_test(test_bare_lf_and_cr),
        cmocka_unit_test(test_bad_header_syntax),
        cmocka_unit_test(test_content_length_rules),
        cmocka_unit_test(test_transfer_encoding_rules),
        cmocka_unit_test(test_host_rules),
        cmocka_unit_test(test_smuggling),
        cmocka_unit_test(test_response_valid),
        cmocka_unit_test(test_response_framing),
        cmocka_unit_test(test_response_status_line),
        cmocka_unit_test(test_has_body),
        cmocka_unit_test(test_chunked_basic),
        cmocka_unit_test(test_chunked_every_split),
        cmocka_unit_test(test_chunked_extensions_trailers),
        cmocka_unit_test(test_chunked_bad_framing),
        cmocka_unit_test(test_chunked_limits_and_sticky),
        cmocka_unit_test(test_chunked_remaining_and_skip),
        cmocka_unit_test(test_chunked_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
