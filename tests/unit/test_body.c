/* Unit tests for src/http/body.c (taking a body's data out of its framing, framing it again)
 * and src/http/h1write.c (bounded head writing, the header rules). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "http/body.h"
#include "http/h1.h"
#include "http/h1write.h"

/* joined: the pieces of <iov> as one string (a static buffer). */
static const char *joined(const struct iovec *iov, int n)
{
    static char out[4096];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        memcpy(out + len, iov[i].iov_base, iov[i].iov_len);
        len += iov[i].iov_len;
    }
    out[len] = '\0';
    return out;
}

static void test_take_length(void **state)
{
    struct pt_body b = { .kind = PT_BODY_LENGTH, .remaining = 5 };
    struct iovec iov[PT_BODY_RUNS];
    bool end;
    int n;

    assert_int_equal(pt_body_take(&b, "hel", 3, false, iov, &n, &end), 3);
    assert_false(end);
    assert_string_equal(joined(iov, n), "hel");
    assert_int_equal(pt_body_take(&b, "loGET /", 7, false, iov, &n, &end), 2); /* the rest is not the body's */
    assert_true(end);
    assert_string_equal(joined(iov, n), "lo");
    assert_int_equal(b.payload, 5);
}

static void test_take_chunked_drops_framing(void **state)
{
    const char *body = "5;ext=\"a b\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
    struct pt_body b = { .kind = PT_BODY_CHUNKED };
    struct iovec iov[PT_BODY_RUNS];
    bool end;
    int n;
    int64_t used = pt_body_take(&b, body, strlen(body), false, iov, &n, &end);

    assert_true(end);
    assert_int_equal(used, strlen(body) - 4);
    assert_string_equal(joined(iov, n), "hello world");
    assert_int_equal(b.payload, 11);
    /* the same body a byte at a time: same data, same end */
    struct pt_body b2 = { .kind = PT_BODY_CHUNKED };
    char got[64] = "";
    size_t i = 0;
    end = false;
    while (!end) {
        int64_t r = pt_body_take(&b2, body + i, 1, false, iov, &n, &end);
        assert_true(r >= 0);
        strncat(got, joined(iov, n), sizeof(got) - strlen(got) - 1);
        i += (size_t)r;
    }
    assert_string_equal(got, "hello world");
    assert_int_equal(i, strlen(body) - 4);
    struct pt_body bad = { .kind = PT_BODY_CHUNKED };
    assert_true(pt_body_take(&bad, "zz\r\n", 4, false, iov, &n, &end) < 0);
}

static void test_take_until_close(void **state)
{
    struct pt_body b = { .kind = PT_BODY_UNTIL_CLOSE };
    struct iovec iov[PT_BODY_RUNS];
    bool end;
    int n;

    assert_int_equal(pt_body_take(&b, "abc", 3, false, iov, &n, &end), 3);
    assert_false(end);
    assert_int_equal(pt_body_take(&b, "", 0, true, iov, &n, &end), 0);
    assert_true(end);
    assert_int_equal(n, 0);
}

static void test_frame_chunked_and_plain(void **state)
{
    struct iovec data[2] = { { "hello", 5 }, { "0123456789abcdef0", 17 } };
    struct pt_body_frame f = { .n = 0 };

    pt_body_frame(&f, data, 2, true, true);
    assert_string_equal(joined(f.iov, f.n), "5\r\nhello\r\n11\r\n0123456789abcdef0\r\n0\r\n\r\n");
    f.n = 0;
    pt_body_frame(&f, data, 2, false, true);
    assert_string_equal(joined(f.iov, f.n), "hello0123456789abcdef0");
    f.n = 0;
    pt_body_frame(&f, NULL, 0, true, false);
    assert_int_equal(f.n, 0);
}

static void test_h1write_exact_and_bounded(void **state)
{
    char buf[256];
    struct pt_h1w w;

    pt_h1w_init(&w, buf, sizeof(buf));
    pt_h1w_status_line(&w, 421, (struct pt_str){ 0 });
    pt_h1w_header_uint(&w, PT_STR_LIT("content-length"), 0);
    pt_h1w_framing(&w, false, 12);
    pt_h1w_header_begin(&w, PT_STR_LIT("x-list"));
    pt_h1w_value(&w, PT_STR_LIT("a"));
    pt_h1w_value(&w, PT_STR_LIT(",b"));
    pt_h1w_header_end(&w);
    size_t n = pt_h1w_end(&w);
    assert_memory_equal(buf, "HTTP/1.1 421 Misdirected Request\r\ncontent-length: 0\r\ncontent-length: 12\r\n"
                             "x-list: a,b\r\n\r\n", n);
    /* one byte short: reported, never cut, never past the buffer */
    char small[24];
    memset(small, 'Z', sizeof(small));
    pt_h1w_init(&w, small, 20);
    pt_h1w_request_line(&w, PT_STR_LIT("GET"), PT_STR_LIT("/0123456789"));
    assert_int_equal(pt_h1w_end(&w), 0);
    assert_memory_equal(small + 20, "ZZZZ", 4);
}

/* Header lines of every name and value length from 0 to 40 (each copy path: bytes, 4-, 8- and
 * 16-byte pieces, memcpy): exact bytes; and a buffer one byte short of each line overflows
 * without writing past its end. */
static void test_h1write_every_length(void **state)
{
    char src[41], buf[128], want[128];

    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (char)('a' + i % 26);
    for (size_t nl = 1; nl <= 40; nl++) {
        for (size_t vl = 0; vl <= 40; vl++) {
            struct pt_h1w w;
            int n = snprintf(want, sizeof(want), "%.*s: %.*s\r\n", (int)nl, src, (int)vl, src + 1);
            assert_true(n > 0 && (size_t)n < sizeof(want));
            pt_h1w_init(&w, buf, sizeof(buf));
            pt_h1w_header(&w, pt_str_make(src, nl), pt_str_make(src + 1, vl));
            assert_int_equal(w.p - buf, n);
            assert_memory_equal(buf, want, (size_t)n);
            memset(buf, 'Z', sizeof(buf));
            pt_h1w_init(&w, buf, (size_t)n - 1);
            pt_h1w_header(&w, pt_str_make(src, nl), pt_str_make(src + 1, vl));
            assert_int_equal(pt_h1w_end(&w), 0);
            assert_int_equal(buf[n - 1], 'Z');
        }
    }
}

/* pt_str_caseeq agrees with a byte-wise ASCII fold for every pair of bytes at every position of
 * strings of 1 to 17 bytes (each word path), and for strings of different lengths. */
static void test_caseeq_every_byte(void **state)
{
    char a[17], b[17];

    for (size_t n = 1; n <= sizeof(a); n++) {
        for (int x = 0; x < 256; x++) {
            for (int y = 0; y < 256; y++) {
                size_t k = (size_t)(x * 7 + y) % n;
                memset(a, 'q', n);
                memset(b, 'Q', n);
                a[k] = (char)x;
                b[k] = (char)y;
                bool want = pt_lower((char)x) == pt_lower((char)y);
                if (pt_str_caseeq(pt_str_make(a, n), pt_str_make(b, n)) != want)
                    fail_msg("n %zu, byte %zu: 0x%02x vs 0x%02x", n, k, x, y);
            }
        }
    }
    assert_true(pt_str_caseeq(PT_STR_LIT(""), PT_STR_LIT("")));
    assert_false(pt_str_caseeq(PT_STR_LIT("Host"), PT_STR_LIT("hos")));
    assert_true(pt_str_caseeq(PT_STR_LIT("X-Envoy-Expected-RQ-Timeout-Ms"), PT_STR_LIT("x-envoy-expected-rq-timeout-ms")));
    assert_false(pt_str_caseeq(PT_STR_LIT("x-envoy-expected-rq-timeout-ms"), PT_STR_LIT("x-envoy-expected-rq-timeout-mt")));
}

static void test_header_rules(void **state)
{
    struct pt_header h[4] = { { PT_STR_LIT("Host"), PT_STR_LIT("a") },
                              { PT_STR_LIT("Connection"), PT_STR_LIT("keep-alive") },
                              { PT_STR_LIT("X-A"), PT_STR_LIT("1") },
                              { PT_STR_LIT("connection"), PT_STR_LIT(" x-a , close") } };
    struct pt_h1_request req = { .headers = h, .nheaders = 4, .idx_connection = 1 };

    assert_true(pt_h1_connection_names(&req, PT_STR_LIT("X-A")));
    assert_true(pt_h1_connection_names(&req, PT_STR_LIT("close")));
    assert_false(pt_h1_connection_names(&req, PT_STR_LIT("x-b")));
    assert_true(pt_http_connection_protected(PT_STR_LIT("Content-Length")));
    assert_true(pt_http_connection_protected(PT_STR_LIT("HOST")));
    assert_false(pt_http_connection_protected(PT_STR_LIT("x-a")));
    assert_true(pt_http_hop_by_hop(PT_STR_LIT("Transfer-Encoding")));
    assert_false(pt_http_hop_by_hop(PT_STR_LIT("Content-Length")));
    /* Envoy's header sanitizing: always Portico's own; the steering ones only when external */
    assert_true(pt_http_envoy_dropped(PT_STR_LIT("X-Envoy-Internal"), true));
    assert_true(pt_http_envoy_dropped(PT_STR_LIT("x-envoy-original-path"), true));
    assert_false(pt_http_envoy_dropped(PT_STR_LIT("x-envoy-retry-on"), true));
    assert_true(pt_http_envoy_dropped(PT_STR_LIT("x-envoy-retry-on"), false));
    assert_true(pt_http_envoy_dropped(PT_STR_LIT("X-ENVOY-MAX-RETRIES"), false));
    assert_true(pt_http_envoy_dropped(PT_STR_LIT("x-envoy-external-address"), false));
    assert_false(pt_http_envoy_dropped(PT_STR_LIT("x-envoy-external-address"), true));
    assert_false(pt_http_envoy_dropped(PT_STR_LIT("x-envoy-retry-onx"), false));
    assert_false(pt_http_envoy_dropped(PT_STR_LIT("x-envoy-custom"), false));
    assert_string_equal(pt_reason_phrase(426), "Upgrade Required");
    assert_int_equal(pt_http_date().len, 29);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_length),
        cmocka_unit_test(test_take_chunked_drops_framing),
        cmocka_unit_test(test_take_until_close),
        cmocka_unit_test(test_frame_chunked_and_plain),
        cmocka_unit_test(test_h1write_exact_and_bounded),
        cmocka_unit_test(test_header_rules),
        cmocka_unit_test(test_h1write_every_length),
        cmocka_unit_test(test_caseeq_every_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
