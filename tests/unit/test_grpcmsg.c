/* Unit tests for src/http/grpcmsg.c: the messages of a body of empty, small and large (over
 * 2^24 bytes of declared length: the 4-byte length read whole) messages are counted the same
 * whatever the cuts: every single cut point, and one byte at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/grpcmsg.h"

/* put_msg: a message prefix with <flag> and <len> then <len> payload bytes at <p>. */
static size_t put_msg(uint8_t *p, uint8_t flag, uint32_t len)
{
    p[0] = flag;
    p[1] = (uint8_t)(len >> 24);
    p[2] = (uint8_t)(len >> 16);
    p[3] = (uint8_t)(len >> 8);
    p[4] = (uint8_t)len;
    memset(p + 5, 0x00, len); /* zero payload bytes that look like prefixes if misread */
    return 5 + len;
}

static void test_cut_anywhere(void **state)
{
    static uint8_t body[4096];
    size_t n = 0;
    (void)state;
    n += put_msg(body + n, 0, 0);
    n += put_msg(body + n, 1, 7);
    n += put_msg(body + n, 0, 300);
    n += put_msg(body + n, 0, 0);
    n += put_msg(body + n, 0, 1000);
    for (size_t cut = 0; cut <= n; cut++) {
        struct pt_grpc_msgs m = { 0 };
        pt_grpc_msgs_feed(&m, body, cut);
        pt_grpc_msgs_feed(&m, body + cut, n - cut);
        assert_int_equal(m.count, 5);
        assert_int_equal(m.hdr, 0);
        assert_int_equal(m.left, 0);
    }
    struct pt_grpc_msgs m = { 0 };
    for (size_t i = 0; i < n; i++)
        pt_grpc_msgs_feed(&m, body + i, 1);
    assert_int_equal(m.count, 5);
}

static void test_large_length_and_partial(void **state)
{
    uint8_t p[5] = { 0, 0x01, 0x00, 0x00, 0x05 }; /* 16,777,221 bytes declared */
    struct pt_grpc_msgs m = { 0 };
    (void)state;
    pt_grpc_msgs_feed(&m, p, 5);
    assert_int_equal(m.count, 1);
    assert_int_equal(m.left, 16777221u);
    pt_grpc_msgs_feed(&m, p, 5); /* inside the payload: not a new message */
    assert_int_equal(m.count, 1);
    assert_int_equal(m.left, 16777216u);
    struct pt_grpc_msgs c = { 0 };
    pt_grpc_msgs_feed(&c, p, 1); /* a message is counted at its flag byte, as Envoy */
    assert_int_equal(c.count, 1);
    pt_grpc_msgs_feed(&c, NULL, 0);
    assert_int_equal(c.count, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cut_anywhere),
        cmocka_unit_test(test_large_length_and_partial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
