/* Unit tests for src/http/grpcweb.c: content-type kinds; base64 decoding cut at every position
 * and across separately padded pieces, and its refusals; encoding in pieces equal to encoding
 * at once (checked against a plain reference for every length and every cut); the trailer
 * frame's exact bytes and its bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "http/grpcweb.h"

static void test_kinds(void **state)
{
    (void)state;
    assert_int_equal(pt_grpcweb_kind(PT_STR_LIT("application/grpc-web")), PT_GRPCWEB_BINARY);
    assert_int_equal(pt_grpcweb_kind(PT_STR_LIT("application/grpc-web+proto")), PT_GRPCWEB_BINARY);
    assert_int_equal(pt_grpcweb_kind(PT_STR_LIT("Application/GRPC-Web;charset=x")), PT_GRPCWEB_BINARY);
    assert_int_equal(pt_grpcweb_kind(PT_STR_LIT("application/grpc-web-text")), PT_GRPCWEB_TEXT);
    assert_int_equal(pt_grpcweb_kind(PT_STR_LIT("application/grpc-web-text+proto")), PT_GRPCWEB_TEXT);
    assert_int_equal(pt_grpcweb_kind(PT_STR_LIT("application/grpc")), PT_GRPCWEB_NONE);
    assert_int_equal(pt_grpcweb_kind(PT_STR_LIT("application/grpc+proto")), PT_GRPCWEB_NONE);
    assert_int_equal(pt_grpcweb_kind(PT_STR_LIT("application/grpc-webx")), PT_GRPCWEB_NONE);
    assert_int_equal(pt_grpcweb_kind(PT_STR_LIT("application/grpc-web-textual")), PT_GRPCWEB_NONE);
    assert_int_equal(pt_grpcweb_kind(PT_STR_LIT("")), PT_GRPCWEB_NONE);
}

/* ref_encode: base64 of <in>, padded, the obvious way. */
static size_t ref_encode(const uint8_t *in, size_t len, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t w = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
        out[o++] = abc[w >> 18];
        out[o++] = abc[(w >> 12) & 63];
        out[o++] = i + 1 < len ? abc[(w >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? abc[w & 63] : '=';
    }
    return o;
}

static void test_encode_in_pieces(void **state)
{
    uint8_t in[40];
    char want[64], got[128];

    (void)state;
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof(in); len++) {
        size_t wn = ref_encode(in, len, want);
        for (size_t cut = 0; cut <= len; cut++) {
            for (size_t cut2 = cut; cut2 <= len; cut2++) {
                struct pt_b64enc e = { 0 };
                size_t n = pt_b64enc_run(&e, in, cut, false, got);
                n += pt_b64enc_run(&e, in + cut, cut2 - cut, false, got + n);
                n += pt_b64enc_run(&e, in + cut2, len - cut2, true, got + n);
                if (n != wn || memcmp(got, want, n) != 0)
                    fail_msg("len %zu cuts %zu,%zu: \"%.*s\" want \"%.*s\"", len, cut, cut2, (int)n, got,
                             (int)wn, want);
            }
        }
    }
}

static void test_decode_cut_anywhere(void **state)
{
    uint8_t in[40], out[64];
    char enc[64];

    (void)state;
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(255 - i * 7);
    for (size_t len = 0; len <= sizeof(in); len++) {
        size_t en = ref_encode(in, len, enc);
        for (size_t cut = 0; cut <= en; cut++) {
            struct pt_b64dec d = { 0 };
            int64_t a = pt_b64dec_run(&d, enc, cut, out);
            assert_true(a >= 0);
            int64_t b = pt_b64dec_run(&d, enc + cut, en - cut, out + a);
            assert_true(b >= 0);
            assert_int_equal(a + b, len);
            assert_memory_equal(out, in, len);
            assert_true(pt_b64dec_done(&d));
        }
    }
    /* separately padded pieces, joined */
    struct pt_b64dec d = { 0 };
    int64_t n = pt_b64dec_run(&d, "YQ==YmM=ZGVm", 12, out);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "abcdef", 6);
    /* a body that stops inside a quantum */
    d = (struct pt_b64dec){ 0 };
    assert_int_equal(pt_b64dec_run(&d, "YWJ", 3, out), 0);
    assert_false(pt_b64dec_done(&d));
}

static void test_decode_refusals(void **state)
{
    static const char *const bad[] = { "=AAA", "A===", "AA=A", "AAA=A===", "YW J", "YWJj\n", "YW-j", "YW_j" };
    uint8_t out[16];

    (void)state;
    for (size_t i = 0; i < PT_ARRAY_SIZE(bad); i++) {
        struct pt_b64dec d = { 0 };
        if (pt_b64dec_run(&d, bad[i], strlen(bad[i]), out) != PT_BADMSG)
            fail_msg("\"%s\" was decoded", bad[i]);
    }
}

static void test_trailer_frame(void **state)
{
    const struct pt_header t[] = { { PT_STR_LIT("grpc-status"), PT_STR_LIT("0") },
                                   { PT_STR_LIT("Grpc-Message"), PT_STR_LIT("ok") },
                                   { PT_STR_LIT("x-empty"), PT_STR_LIT("") } };
    static const char body[] = "grpc-status:0\r\ngrpc-message:ok\r\nx-empty:\r\n";
    uint8_t out[128];
    size_t blen = sizeof(body) - 1;

    (void)state;
    assert_int_equal(pt_grpcweb_trailers(t, 3, out, sizeof(out)), 5 + blen);
    assert_int_equal(out[0], 0x80);
    assert_int_equal(out[1] << 24 | out[2] << 16 | out[3] << 8 | out[4], blen);
    assert_memory_equal(out + 5, body, blen);
    assert_int_equal(pt_grpcweb_trailers(t, 3, out, 5 + blen), 5 + blen);
    assert_int_equal(pt_grpcweb_trailers(t, 3, out, 4 + blen), PT_TOOBIG);
    assert_int_equal(pt_grpcweb_trailers(NULL, 0, out, 5), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_encode_in_pieces),
        cmocka_unit_test(test_decode_cut_anywhere),
        cmocka_unit_test(test_decode_refusals),
        cmocka_unit_test(test_trailer_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
