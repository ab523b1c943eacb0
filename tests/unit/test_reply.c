/* Unit tests for src/http/reply.c: the exact head of each kind of local reply, the bounds (a
 * head exactly the size of its buffer fits, one byte less is PT_TOOBIG with nothing written
 * past the buffer), and values that would break the head. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "http/h1.h"
#include "http/reply.h"

static const struct pt_str date = PT_STR_LIT("Mon, 07 Dec 2026 08:00:00 GMT");

static void expect_head(const struct pt_http_reply *r, const char *want)
{
    char out[512];
    int n = pt_http_reply_head(r, out, sizeof(out));
    if (n != (int)strlen(want) || memcmp(out, want, (size_t)n) != 0)
        fail_msg("got %d \"%.*s\", want \"%s\"", n, n > 0 ? n : 0, out, want);
}

static void test_grpc_reply(void **state)
{
    (void)state;
    expect_head(&(struct pt_http_reply){ .status = 200, .reason = PT_STR_LIT("OK"), .grpc = true, .grpc_status = 14,
                                         .grpc_message = PT_STR_LIT("no healthy upstream") },
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\ncontent-type: application/grpc\r\ngrpc-status: 14\r\n"
                "grpc-message: no healthy upstream\r\nserver: envoy\r\n\r\n");
    char out[256];
    assert_int_equal(pt_http_reply_head(&(struct pt_http_reply){ .status = 200, .grpc = true, .grpc_status = 17 },
                                        out, sizeof(out)), PT_BADMSG);
    assert_int_equal(pt_http_reply_head(&(struct pt_http_reply){ .status = 200, .grpc = true,
                                                                 .grpc_message = PT_STR_LIT("a\r\nb") },
                                        out, sizeof(out)), PT_BADMSG);
}

static void test_plain_replies(void **state)
{
    (void)state;
    expect_head(&(struct pt_http_reply){ .status = 503, .reason = PT_STR_LIT("Service Unavailable"),
                                         .content_length = 19, .text_plain = true, .date = date },
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 19\r\ncontent-type: text/plain\r\n"
                "date: Mon, 07 Dec 2026 08:00:00 GMT\r\nserver: envoy\r\n\r\n");
    expect_head(&(struct pt_http_reply){ .status = 404, .reason = PT_STR_LIT("Not Found"), .date = date,
                                         .connection = PT_HTTP_REPLY_CONN_CLOSE },
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 08:00:00 GMT\r\n"
                "server: envoy\r\nconnection: close\r\n\r\n");
    expect_head(&(struct pt_http_reply){ .status = 400, .content_length = 18446744073709551615ull,
                                         .connection = PT_HTTP_REPLY_CONN_KEEP_ALIVE },
                "HTTP/1.1 400 Bad Request\r\ncontent-length: 18446744073709551615\r\nserver: envoy\r\n"
                "connection: keep-alive\r\n\r\n");
}

static void test_redirect(void **state)
{
    (void)state;
    expect_head(&(struct pt_http_reply){ .status = 301, .reason = PT_STR_LIT("Moved Permanently"),
                                         .date = date,
                                         .location = { PT_STR_LIT("https://"), PT_STR_LIT("a.example"),
                                                       PT_STR_LIT("/p?q=1") } },
                "HTTP/1.1 301 Moved Permanently\r\ncontent-length: 0\r\n"
                "date: Mon, 07 Dec 2026 08:00:00 GMT\r\nserver: envoy\r\n"
                "location: https://a.example/p?q=1\r\n\r\n");
}

/* A redirect to a 60 KiB path: fits a buffer of exactly its size, and parses back to the same
 * Location; one byte less is PT_TOOBIG and the guard bytes after the buffer stay untouched. */
static void test_bounds(void **state)
{
    enum { PATH = 60 * 1024, GUARD = 64 };
    char *path = malloc(PATH), *out = malloc(PATH + 1024 + GUARD);
    struct pt_header hdrs[8];
    struct pt_h1_response res;
    struct pt_h1_limits lim = { .max_head_bytes = PATH + 1024 };
    (void)state;
    assert_non_null(path);
    assert_non_null(out);
    path[0] = '/';
    memset(path + 1, 'A', PATH - 1);
    struct pt_http_reply r = { .status = 301, .reason = PT_STR_LIT("Moved Permanently"), .date = date,
                               .location = { PT_STR_LIT("https://"), PT_STR_LIT("h"), pt_str_make(path, PATH) } };
    int n = pt_http_reply_head(&r, out, PATH + 1024);
    assert_true(n > PATH);
    assert_int_equal(pt_http_reply_head(&r, out, (size_t)n), n);
    assert_int_equal(pt_h1_parse_response(out, (size_t)n, &res, hdrs, 8, &lim), n);
    assert_int_equal(res.status, 301);
    assert_int_equal(res.content_length, 0);
    const struct pt_header *loc = pt_header_find(res.headers, res.nheaders, PT_STR_LIT("location"));
    assert_non_null(loc);
    assert_int_equal(loc->value.len, PATH + 9);
    assert_memory_equal(loc->value.ptr + 9, path, PATH);
    for (size_t cap = 0; cap < (size_t)n; cap += (cap < 256 || cap > (size_t)n - 256) ? 1 : 997) {
        memset(out + cap, 0x5a, GUARD);
        assert_int_equal(pt_http_reply_head(&r, out, cap), PT_TOOBIG);
        for (size_t i = 0; i < GUARD; i++)
            assert_int_equal(out[cap + i], 0x5a);
    }
    free(path);
    free(out);
}

static void test_bad_values(void **state)
{
    char out[256];
    static const char *bad[] = { "a\r\nb", "a\nb", "a\rb", "a\0b", "\x7f", "\x01" };
    (void)state;
    for (size_t i = 0; i < PT_ARRAY_SIZE(bad); i++) {
        struct pt_str v = pt_str_make(bad[i], i == 3 ? 3 : strlen(bad[i]));
        struct pt_http_reply r = { .status = 301, .location = { v } };
        assert_int_equal(pt_http_reply_head(&r, out, sizeof(out)), PT_BADMSG);
        r = (struct pt_http_reply){ .status = 200, .reason = v };
        assert_int_equal(pt_http_reply_head(&r, out, sizeof(out)), PT_BADMSG);
    }
    assert_int_equal(pt_http_reply_head(&(struct pt_http_reply){ .status = 99 }, out, sizeof(out)), PT_BADMSG);
    assert_int_equal(pt_http_reply_head(&(struct pt_http_reply){ .status = 1000 }, out, sizeof(out)), PT_BADMSG);
    assert_int_equal(pt_http_reply_head(&(struct pt_http_reply){ .status = 200, .reason = PT_STR_LIT("\tok \x80") },
                                        out, sizeof(out)), 56);
}

/* Extra fields (a CORS preflight's) come after location, in order, and are checked like the
 * rest: a name must be a non-empty name without ':', a value must not break the head. */
static void test_extra_fields(void **state)
{
    const struct pt_header two[] = { { PT_STR_LIT("access-control-allow-origin"), PT_STR_LIT("http://a") },
                                     { PT_STR_LIT("access-control-max-age"), PT_STR_LIT("60") } };
    struct pt_header bad[1];
    char out[256];
    (void)state;
    expect_head(&(struct pt_http_reply){ .status = 200, .reason = PT_STR_LIT("OK"), .date = date,
                                         .extra = two, .nextra = 2, .connection = PT_HTTP_REPLY_CONN_CLOSE },
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 08:00:00 GMT\r\n"
                "server: envoy\r\naccess-control-allow-origin: http://a\r\naccess-control-max-age: 60\r\n"
                "connection: close\r\n\r\n");
    bad[0] = (struct pt_header){ PT_STR_LIT("x"), PT_STR_LIT("a\r\nb") };
    assert_int_equal(pt_http_reply_head(&(struct pt_http_reply){ .status = 200, .extra = bad, .nextra = 1 },
                                        out, sizeof(out)), PT_BADMSG);
    bad[0] = (struct pt_header){ PT_STR_LIT("x:y"), PT_STR_LIT("v") };
    assert_int_equal(pt_http_reply_head(&(struct pt_http_reply){ .status = 200, .extra = bad, .nextra = 1 },
                                        out, sizeof(out)), PT_BADMSG);
    bad[0] = (struct pt_header){ { 0 }, PT_STR_LIT("v") };
    assert_int_equal(pt_http_reply_head(&(struct pt_http_reply){ .status = 200, .extra = bad, .nextra = 1 },
                                        out, sizeof(out)), PT_BADMSG);
    assert_int_equal(pt_http_reply_head(&(struct pt_http_reply){ .status = 200, .extra = two,
                                                                 .nextra = PT_HTTP_REPLY_EXTRA_MAX + 1 },
                                        out, sizeof(out)), PT_BADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_replies), cmocka_unit_test(test_grpc_reply),
        cmocka_unit_test(test_redirect),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_extra_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
