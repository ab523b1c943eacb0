/* Unit tests of proxy/pbuf.h: the bump allocator protobuf-c packs and unpacks with, strings
 * copied as valid UTF-8 (a gRPC AuthService refuses a CheckRequest whose strings are not: other
 * bytes become '!', as Envoy sanitizes them), and the gRPC message frame. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "proxy/pbuf.h"

static void test_utf8_sanitized(void **state)
{
    char mem[256];
    struct pt_pbuf b = { .base = mem, .cap = sizeof(mem) };

    (void)state;
    assert_string_equal(pt_pbuf_str(&b, PT_STR_LIT("plain ASCII"), false), "plain ASCII");
    assert_string_equal(pt_pbuf_str(&b, PT_STR_LIT("X-Mixed-Case"), true), "x-mixed-case");
    /* valid two-, three- and four-byte sequences stay */
    assert_string_equal(pt_pbuf_str(&b, PT_STR_LIT("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), false),
                        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    /* a lone continuation, an overlong form, a surrogate, a cut sequence, 0xff: '!' each byte */
    assert_string_equal(pt_pbuf_str(&b, PT_STR_LIT("a\x80z"), false), "a!z");
    assert_string_equal(pt_pbuf_str(&b, PT_STR_LIT("\xc0\xaf"), false), "!!");
    assert_string_equal(pt_pbuf_str(&b, PT_STR_LIT("\xed\xa0\x80"), false), "!!!");
    assert_string_equal(pt_pbuf_str(&b, PT_STR_LIT("ok\xe2\x82"), false), "ok!!");
    assert_string_equal(pt_pbuf_str(&b, PT_STR_LIT("\xff\xfe" "A"), false), "!!A");
    assert_false(b.full);
}

static void test_allocator_bounded_and_aligned(void **state)
{
    char mem[64];
    struct pt_pbuf b = { .base = mem + 1, .cap = sizeof(mem) - 1 }; /* an odd start */
    void *p = pt_pbuf_alloc(&b, 8), *q = pt_pbuf_alloc(&b, 8);

    (void)state;
    assert_non_null(p);
    assert_non_null(q);
    assert_int_equal((uintptr_t)p % 16, 0);
    assert_int_equal((uintptr_t)q % 16, 0);
    assert_null(pt_pbuf_alloc(&b, 64)); /* no room: NULL, and said so */
    assert_true(b.full);
    assert_string_equal(pt_pbuf_str(&b, PT_STR_LIT("too long for what is left of it"), false), "");
}

static void test_frame(void **state)
{
    uint8_t f[5 + 3];
    struct pt_str msg;

    (void)state;
    pt_pbuf_frame(f, 3);
    assert_memory_equal(f, "\x00\x00\x00\x00\x03", 5);
    memcpy(f + 5, "abc", 3);
    assert_true(pt_pbuf_unframe(pt_str_make((char *)f, 8), &msg));
    assert_int_equal(msg.len, 3);
    assert_memory_equal(msg.ptr, "abc", 3);
    assert_false(pt_pbuf_unframe(pt_str_make((char *)f, 7), &msg)); /* cut */
    f[0] = 1;                                                        /* compressed */
    assert_false(pt_pbuf_unframe(pt_str_make((char *)f, 8), &msg));
    assert_false(pt_pbuf_unframe(pt_str_make((char *)f, 4), &msg));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_sanitized),
        cmocka_unit_test(test_allocator_bounded_and_aligned),
        cmocka_unit_test(test_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
