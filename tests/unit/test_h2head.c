/* Unit tests for src/http/h2head.c: the HTTP/1.1 request head the proxy writes, read as the
 * fields of an HTTP/2 HEADERS block: pseudo-fields from the request line, Host and the
 * connection, connection-specific fields dropped, names lower-cased, TE: trailers kept or added,
 * and heads of the wrong form refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "http/h2head.h"

static char buf[1024];

/* conv: converts <head> (copied into buf, which the function writes) into <out>. */
static int conv(const char *head, bool tls, bool te, struct pt_header *out, size_t max)
{
    size_t len = strlen(head);
    memcpy(buf, head, len);
    return pt_h2head_from_h1(buf, len, tls, te, out, max);
}

static void assert_field(const struct pt_header *h, const char *name, const char *value)
{
    char n[128], v[256];
    snprintf(n, sizeof(n), "%.*s", (int)h->name.len, h->name.ptr);
    snprintf(v, sizeof(v), "%.*s", (int)h->value.len, h->value.ptr);
    assert_string_equal(n, name);
    assert_string_equal(v, value);
}

static void test_pseudo_fields_and_order(void **state)
{
    struct pt_header out[16];
    int n = conv("POST /pkg.Svc/Call?x=1 HTTP/1.1\r\n"
                 "Host: grpc.example:8443\r\n"
                 "Content-Type: application/grpc\r\n"
                 "X-Forwarded-For: 10.0.0.1\r\n"
                 "content-length: 12\r\n"
                 "\r\n",
                 true, false, out, 16);
    assert_int_equal(n, 7);
    assert_field(&out[0], ":method", "POST");
    assert_field(&out[1], ":scheme", "https");
    assert_field(&out[2], ":authority", "grpc.example:8443");
    assert_field(&out[3], ":path", "/pkg.Svc/Call?x=1");
    assert_field(&out[4], "content-type", "application/grpc"); /* lower-cased, in place */
    assert_field(&out[5], "x-forwarded-for", "10.0.0.1");
    assert_field(&out[6], "content-length", "12");
    assert_memory_equal(buf + strlen("POST /pkg.Svc/Call?x=1 HTTP/1.1\r\nHost: grpc.example:8443\r\n"),
                        "content-type", 12);
}

static void test_connection_specific_fields_dropped(void **state)
{
    struct pt_header out[16];
    int n = conv("GET / HTTP/1.1\r\n"
                 "connection: keep-alive\r\n"
                 "Keep-Alive: timeout=5\r\n"
                 "proxy-connection: x\r\n"
                 "transfer-encoding: chunked\r\n"
                 "upgrade: websocket\r\n"
                 "te: gzip\r\n"
                 "host: a\r\n"
                 "x-a:  spaced value \t\r\n"
                 "\r\n",
                 false, false, out, 16);
    assert_int_equal(n, 5);
    assert_field(&out[1], ":scheme", "http");
    assert_field(&out[2], ":authority", "a");
    assert_field(&out[4], "x-a", "spaced value");
}

static void test_te_trailers(void **state)
{
    struct pt_header out[16];
    int n = conv("POST /s/M HTTP/1.1\r\nhost: a\r\n\r\n", false, true, out, 16);
    assert_int_equal(n, 5);
    assert_field(&out[4], "te", "trailers"); /* added for gRPC */
    n = conv("POST /s/M HTTP/1.1\r\nhost: a\r\nTE: trailers\r\n\r\n", false, true, out, 16);
    assert_int_equal(n, 5); /* kept, not added twice */
    assert_field(&out[4], "te", "trailers");
    n = conv("POST /s/M HTTP/1.1\r\nhost: a\r\nte: trailers\r\n\r\n", false, false, out, 16);
    assert_int_equal(n, 5);
}

static void test_limits_and_malformed(void **state)
{
    struct pt_header out[16];
    assert_int_equal(conv("GET / HTTP/1.1\r\nhost: a\r\nx: 1\r\n\r\n", false, false, out, 4), PT_TOOBIG);
    assert_int_equal(conv("GET / HTTP/1.1\r\nhost: a\r\n\r\n", false, true, out, 4), PT_TOOBIG);
    assert_int_equal(conv("GET / HTTP/1.1\r\nhost: a\r\n\r\n", false, false, out, 4), 4);
    assert_int_equal(conv("GET / HTTP/1.1\r\nx: 1\r\n\r\n", false, false, out, 16), PT_BADMSG); /* no Host */
    assert_int_equal(conv("GET / HTTP/1.1\r\nhost: a\r\n", false, false, out, 16), PT_BADMSG); /* no end */
    assert_int_equal(conv("GET /\r\nhost: a\r\n\r\n", false, false, out, 16), PT_BADMSG);
    assert_int_equal(conv(" / HTTP/1.1\r\nhost: a\r\n\r\n", false, false, out, 16), PT_BADMSG);
    assert_int_equal(conv("GET / HTTP/1.1\r\nno colon\r\n\r\n", false, false, out, 16), PT_BADMSG);
    assert_int_equal(conv("GET / HTTP/1.1\r\n: v\r\nhost: a\r\n\r\n", false, false, out, 16), PT_BADMSG);
    assert_int_equal(conv("", false, false, out, 16), PT_BADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pseudo_fields_and_order),
        cmocka_unit_test(test_connection_specific_fields_dropped),
        cmocka_unit_test(test_te_trailers),
        cmocka_unit_test(test_limits_and_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
