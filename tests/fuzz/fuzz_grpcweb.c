// fuzz-sources: src/http/grpcweb.c src/core/common.c
/* libFuzzer target for src/http/grpcweb.c. The input is a body; its first two bytes choose two
 * cut points. Checks: encoding in three pieces gives the same text as in one; decoding that
 * text in three pieces gives the body back and ends on a quantum; decoding the raw input
 * (arbitrary characters) never writes past its bound; the content-type classifier never reads
 * past the string. Any violation aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/grpcweb.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t c1 = data[0] % (size - 1), c2 = c1 + data[1] % (size - 1 - c1 + 1);
    const uint8_t *in = data + 2;
    size_t len = size - 2;
    if (c2 > len)
        c2 = len;
    if (c1 > c2)
        c1 = c2;
    size_t cap = 4 * (len / 3 + 2) + 8;
    char *one = malloc(cap), *three = malloc(cap);
    uint8_t *back = malloc(len + 8), *raw = malloc(3 * (len + 3) / 4 + 1);
    struct pt_b64enc e1 = { 0 }, e3 = { 0 };
    size_t n1 = pt_b64enc_run(&e1, in, len, true, one);
    size_t n3 = pt_b64enc_run(&e3, in, c1, false, three);
    n3 += pt_b64enc_run(&e3, in + c1, c2 - c1, false, three + n3);
    n3 += pt_b64enc_run(&e3, in + c2, len - c2, true, three + n3);
    CHECK(n1 == n3 && memcmp(one, three, n1) == 0 && n1 == 4 * ((len + 2) / 3));

    struct pt_b64dec d = { 0 };
    size_t k1 = n1 * c1 / (len ? len : 1), k2 = n1 * c2 / (len ? len : 1);
    int64_t a = pt_b64dec_run(&d, one, k1, back);
    int64_t b = pt_b64dec_run(&d, one + k1, k2 - k1, back + a);
    int64_t c = pt_b64dec_run(&d, one + k2, n1 - k2, back + a + b);
    CHECK(a >= 0 && b >= 0 && c >= 0 && (size_t)(a + b + c) == len && memcmp(back, in, len) == 0);
    CHECK(pt_b64dec_done(&d));

    struct pt_b64dec r = { 0 };
    int64_t m = pt_b64dec_run(&r, (const char *)in, len, raw);
    CHECK(m == PT_BADMSG || (m >= 0 && (size_t)m <= 3 * (len + 3) / 4));
    (void)pt_grpcweb_kind(pt_str_make((const char *)in, len));
    free(one);
    free(three);
    free(back);
    free(raw);
    return 0;
}
