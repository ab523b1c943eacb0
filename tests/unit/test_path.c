/* Unit tests for src/http/path.c: Envoy's normalize_path, merge_slashes and the escaped-slash
 * rejection, as a table of inputs and the outputs Envoy gives. Envoy cases come from
 * envoyproxy/envoy test/common/http/path_utility_test.cc: PathUtilityTest.AlreadyNormalPaths,
 * .InvalidPaths, .NormalizeValidPaths, .NormalizeCasePath and .MergeSlashes; the escaped-slash
 * cases from its path_with_escaped_slashes_action (REJECT_REQUEST, KEEP_UNCHANGED) as described
 * in http_connection_manager.proto; the rest follow the character table of the Chromium path
 * canonicalizer Envoy uses (what is decoded, kept, escaped, and the "%25" for nested escapes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "http/path.h"

#define M PT_PATH_MERGE_SLASHES
#define R PT_PATH_REJECT_ESCAPED_SLASHES
#define BAD NULL /* PT_BADMSG: Envoy answers 400 */

struct ex {
    unsigned flags;
    const char *in, *want;
};

static const struct ex table[] = {
    /* AlreadyNormalPaths, NormalizeCasePath ("not normalize to lower case") */
    { 0, "/xyz", "/xyz" },
    { 0, "/x/y/z", "/x/y/z" },
    { 0, "/A/B/C", "/A/B/C" },
    /* NormalizeValidPaths */
    { 0, "/a/b/../c", "/a/c" },
    { 0, "/a/b/./c", "/a/b/c" },
    { 0, "a/b/../c", "/a/c" },
    { 0, "/a/b/../../../../c", "/c" },
    { 0, "/a/..\\c", "/c" },
    { 0, "/%c0%af", "/%c0%af" },
    { 0, "/%5c%25", "/%5c%25" },
    { 0, "/a/b/%2E%2E/c", "/a/c" },
    { 0, "/a/b/%2E./c", "/a/c" },
    { 0, "/a/b/%2E/c", "/a/b/c" },
    { 0, "..", "/" },
    { 0, "/../a/b", "/a/b" },
    { 0, "/./a/b", "/a/b" },
    /* NormalizeCasePath */
    { 0, "/a/b/%2e%2e/c", "/a/c" },
    { 0, "/a/%2F%2f/c", "/a/%2F%2f/c" },
    /* InvalidPaths */
    { 0, "/xyz/.%00../abc", BAD },
    { 0, "/xyz/%00.%00./abc", BAD },
    { 0, "/xyz/AAAAA%%0000/abc", BAD },
    /* issue 9: a %2e%2e segment cannot leave a prefix */
    { 0, "/backend/%2e%2e/admin", "/admin" },
    { 0, "/backend/%2E%2E/admin", "/admin" },
    { 0, "/backend/.%2e/admin", "/admin" },
    { 0, "/backend/%2e./admin", "/admin" },
    { 0, "/backend/%2e%2e", "/" },
    { 0, "/backend/%2e", "/backend/" },
    { 0, "/backend/..", "/" },
    { 0, "/backend/.", "/backend/" },
    { 0, "/..", "/" },
    { 0, "/.", "/" },
    { 0, "/", "/" },
    { 0, "", "/" },
    /* dots that are names */
    { 0, "/a/.b/..c/...", "/a/.b/..c/..." },
    { 0, "/a/%2e%2e%2e/b", "/a/.../b" },
    { 0, "/a/b.%2e/c", "/a/b../c" },
    { 0, "/a/x%2e%2e/../c", "/a/c" },
    /* backslashes are slashes, also after dots */
    { 0, "/a\\b", "/a/b" },
    { 0, "\\a", "/a" },
    { 0, "/a/.\\b", "/a/b" },
    { 0, "/a/b/..\\..\\c", "/c" },
    { 0, "/a/%2e%2e\\c", "/c" },
    /* unreserved escapes are decoded, any case; the rest are kept as written */
    { 0, "/%41%42%43", "/ABC" },
    { 0, "/%7e%7Euser", "/~~user" },
    { 0, "/%2d%5f%30%39%61%7a%5A", "/-_09azZ" },
    { 0, "/a%20b", "/a%20b" },
    { 0, "/a%3a%3Ab", "/a%3a%3Ab" },
    { 0, "/%25%2541", "/%25%2541" },
    { 0, "/%ff%80", "/%ff%80" },
    /* a lone '%' is kept; it becomes %25 when decoding would make a new escape of it */
    { 0, "/%", "/%" },
    { 0, "/%4", "/%4" },
    { 0, "/%zz", "/%zz" },
    { 0, "/%%41", "/%A" },
    { 0, "/%%341", "/%2541" },
    { 0, "/%%34%31", "/%2541" },
    { 0, "/%4%31", "/%2541" },
    { 0, "/%%30%30", "/%2500" },
    { 0, "/%%7e%7e", "/%~~" },
    /* bytes Envoy percent-encodes, upper-case hex */
    { 0, "/a|b", "/a%7Cb" },
    { 0, "/{x}", "/%7Bx%7D" },
    { 0, "/\"<>^`", "/%22%3C%3E%5E%60" },
    { 0, "/a b", "/a%20b" },
    { 0, "/\x7f\x80", "/%7F%80" },
    /* merge_slashes: after normalization (MergeSlashes) */
    { 0, "/a//b/c", "/a//b/c" },
    { 0, "//a/b", "//a/b" },
    { M, "/a//b/c/", "/a/b/c/" },
    { M, "//a/b/c", "/a/b/c" },
    { M, "/a/b/c//", "/a/b/c/" },
    { M, "/a///b/c", "/a/b/c" },
    { M, "/a////b/c", "/a/b/c" },
    { M, "/a", "/a" },
    { M, "/a/b//../c", "/a/b/c" }, /* ".." takes the empty segment first, as in Envoy */
    { 0, "/a/b//../c", "/a/b/c" },
    { M, "/a\\\\b", "/a/b" },
    { M, "//", "/" },
    /* reject_requests_with_escaped_slashes: %2F or %5C in any case */
    { R, "/a%2Fb", BAD },
    { R, "/a%2fb", BAD },
    { R, "/a%5Cb", BAD },
    { R, "/a%5cb", BAD },
    { R, "/a/../%2f", BAD },
    { R, "/a%%2fb", BAD },
    { R, "/a%2", "/a%2" },
    { R, "/a%2e%2e/b%41", "/a../bA" },
    { 0, "/a%2Fb%5c", "/a%2Fb%5c" },
    { R | M, "//a%41//b", "/aA/b" },
};

static void test_table(void **state)
{
    char out[256];
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const struct ex *e = &table[i];
        int n = pt_path_normalize(pt_str_c(e->in), e->flags, out, sizeof(out));
        if (e->want == BAD) {
            if (n != PT_BADMSG)
                fail_msg("\"%s\" (flags %u): %d \"%.*s\", want PT_BADMSG", e->in, e->flags, n,
                         n > 0 ? n : 0, out);
            continue;
        }
        if (n < 0 || (size_t)n != strlen(e->want) || memcmp(out, e->want, (size_t)n) != 0)
            fail_msg("\"%s\" (flags %u): %d \"%.*s\", want \"%s\"", e->in, e->flags, n,
                     n > 0 ? n : 0, out, e->want);
    }
}

/* A second normalization changes nothing; and when the scan says "nothing to do", the
 * normalizer agrees. */
static void test_idempotent_and_scan(void **state)
{
    char a[256], b[256];
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const struct ex *e = &table[i];
        int n = pt_path_normalize(pt_str_c(e->in), e->flags, a, sizeof(a));
        if (n < 0)
            continue;
        int m = pt_path_normalize(pt_str_make(a, (size_t)n), e->flags, b, sizeof(b));
        if (m != n || memcmp(a, b, (size_t)n) != 0)
            fail_msg("\"%s\": \"%.*s\" then \"%.*s\"", e->in, n, a, m > 0 ? m : 0, b);
        if (!pt_path_needs_normalizing(pt_str_c(e->in), e->flags) && strcmp(e->in, e->want) != 0)
            fail_msg("\"%s\": the scan says unchanged", e->in);
    }
}

static void test_needs_normalizing(void **state)
{
    static const char *const clean[] = { "/", "/a", "/a/b.c/d.", "/a./b", "/a/b/", "/a//b",
                                         "/~user/x-y_z", "/a:b@c!$&'()*+,;=", "/[x]" };
    static const char *const dirty[] = { "", "a", "*", "/.", "/a/.", "/a/..", "/./a", "/a%20",
                                         "/%41", "/a\\b", "/a|b", "/a{", "/a\"", "/a b",
                                         "/a/.b" };
    for (size_t i = 0; i < sizeof(clean) / sizeof(clean[0]); i++)
        if (pt_path_needs_normalizing(pt_str_c(clean[i]), 0))
            fail_msg("\"%s\" needs nothing", clean[i]);
    for (size_t i = 0; i < sizeof(dirty) / sizeof(dirty[0]); i++)
        if (!pt_path_needs_normalizing(pt_str_c(dirty[i]), 0))
            fail_msg("\"%s\" needs normalizing", dirty[i]);
    assert_true(pt_path_needs_normalizing(pt_str_c("/a//b"), M));
    assert_true(pt_path_needs_normalizing(pt_str_c("//"), M));
    assert_false(pt_path_needs_normalizing(pt_str_c("/a/b"), M | R));
}

/* The output buffer is never overrun: every size below the result's length is PT_TOOBIG, and
 * the bound pt_path_normalize() promises is enough. */
static void test_capacity(void **state)
{
    static const char *const in[] = { "/a/b/../c", "/a|b|c", "/%%341", "x", "/%4%31", "/a%41" };
    char out[64];
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        int n = pt_path_normalize(pt_str_c(in[i]), 0, out, sizeof(out));
        assert_true(n > 0);
        for (size_t cap = 0; cap < (size_t)n; cap++) {
            char small[64];
            memset(small, 'Z', sizeof(small));
            int r = pt_path_normalize(pt_str_c(in[i]), 0, small, cap);
            if (r != PT_TOOBIG)
                fail_msg("\"%s\" in %zu bytes: %d", in[i], cap, r);
            for (size_t k = cap; k < sizeof(small); k++)
                assert_int_equal(small[k], 'Z');
        }
        /* dot segments are written before they are removed: the sure size is the bound */
        size_t bound = strlen(in[i]) + 1;
        for (const char *p = in[i]; *p; p++)
            bound += *p == '|' ? 2 : 0;
        assert_int_equal(pt_path_normalize(pt_str_c(in[i]), 0, out, bound), n);
    }
}

/* The input may hold NUL bytes and is not NUL-terminated. */
static void test_lengths(void **state)
{
    char out[16];
    assert_int_equal(pt_path_normalize(pt_str_make("/a\0b", 4), 0, out, sizeof(out)), PT_BADMSG);
    assert_int_equal(pt_path_normalize(pt_str_make("/a/..XYZ", 5), 0, out, sizeof(out)), 1);
    assert_int_equal(pt_path_normalize(pt_str_make("/%4", 2), 0, out, sizeof(out)), 2);
    assert_memory_equal(out, "/%", 2);
    assert_int_equal(pt_path_normalize(pt_str_make("/%2e", 3), 0, out, sizeof(out)), 3);
    assert_memory_equal(out, "/%2", 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_idempotent_and_scan),
        cmocka_unit_test(test_needs_normalizing),
        cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
