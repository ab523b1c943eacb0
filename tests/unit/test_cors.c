/* Unit tests for src/http/cors.c: compiling a `cors` resource as Emissary hands it to Envoy
 * (lists joined with ", ", "*" among the origins allows any), matching an Origin (exact, case-
 * sensitive), and the exact fields and order of a preflight's answer and of other responses, as
 * Envoy's CORS filter sets them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "http/cors.h"

static struct pt_str S(const char *s)
{
    return pt_str_c(s);
}

/* expect: the <n> fields <h> are exactly "name: value" lines of <want> (NULL-terminated). */
static void expect(const struct pt_header *h, size_t n, const char *const *want)
{
    size_t k = 0;
    for (; want[k] != NULL; k++) {
        char line[512];
        if (k >= n)
            fail_msg("field %zu missing, want \"%s\"", k, want[k]);
        snprintf(line, sizeof(line), "%.*s: %.*s", (int)h[k].name.len, h[k].name.ptr, (int)h[k].value.len,
                 h[k].value.ptr);
        assert_string_equal(line, want[k]);
    }
    assert_int_equal(n, k);
}

static void test_compile_joins_lists(void **state)
{
    const char *origins[] = { "http://a.example", "https://b.example:8443" };
    const char *methods[] = { "GET", "POST", "OPTIONS" };
    const char *headers[] = { "content-type" };
    const char *exposed[] = { "x-a", "x-b" };
    struct pt_cors_res r = { .origins = origins, .norigins = 2, .methods = methods, .nmethods = 3,
                             .headers = headers, .nheaders = 1, .exposed_headers = exposed,
                             .nexposed_headers = 2, .credentials = true, .max_age = "86400" };
    struct pt_cors *c = pt_cors_compile(&r);
    (void)state;
    assert_int_equal(c->norigins, 2);
    assert_false(c->any_origin);
    assert_true(pt_str_eq(c->allow_methods, S("GET, POST, OPTIONS")));
    assert_true(pt_str_eq(c->allow_headers, S("content-type")));
    assert_true(pt_str_eq(c->expose_headers, S("x-a, x-b")));
    assert_true(pt_str_eq(c->max_age, S("86400")));
    assert_true(c->credentials);
    free(c);
}

static void test_origin_match(void **state)
{
    const char *origins[] = { "http://a.example" };
    struct pt_cors_res r = { .origins = origins, .norigins = 1 };
    struct pt_cors *c = pt_cors_compile(&r);
    (void)state;
    assert_true(pt_cors_origin_allowed(c, S("http://a.example")));
    assert_false(pt_cors_origin_allowed(c, S("http://A.example"))); /* exact: case matters */
    assert_false(pt_cors_origin_allowed(c, S("http://a.example:80")));
    assert_false(pt_cors_origin_allowed(c, S("http://a.exampl")));
    assert_false(pt_cors_origin_allowed(c, S("*")));
    free(c);
    origins[0] = "*";
    c = pt_cors_compile(&r);
    assert_true(c->any_origin);
    assert_true(pt_cors_origin_allowed(c, S("https://anything.example")));
    free(c);
    c = pt_cors_compile(&(struct pt_cors_res){ 0 }); /* no origins: nothing is allowed */
    assert_false(pt_cors_origin_allowed(c, S("http://a.example")));
    free(c);
}

static void test_preflight_fields(void **state)
{
    const char *origins[] = { "http://a.example" };
    const char *methods[] = { "GET", "POST" };
    const char *headers[] = { "x-a", "x-b" };
    const char *exposed[] = { "x-e" };
    struct pt_cors_res r = { .origins = origins, .norigins = 1, .methods = methods, .nmethods = 2,
                             .headers = headers, .nheaders = 2, .exposed_headers = exposed,
                             .nexposed_headers = 1, .credentials = true, .max_age = "600" };
    struct pt_cors *c = pt_cors_compile(&r);
    struct pt_header out[PT_CORS_MAX_HEADERS];
    (void)state;
    expect(out, pt_cors_preflight_headers(c, S("http://a.example"), S("PUT"), S("x-c"), out),
           (const char *[]){ "access-control-allow-origin: http://a.example",
                             "access-control-allow-credentials: true",
                             "access-control-allow-methods: GET, POST",
                             "access-control-allow-headers: x-a, x-b", "access-control-max-age: 600",
                             "access-control-expose-headers: x-e", NULL });
    expect(out, pt_cors_response_headers(c, S("http://a.example"), out),
           (const char *[]){ "access-control-allow-origin: http://a.example",
                             "access-control-allow-credentials: true",
                             "access-control-expose-headers: x-e", NULL });
    free(c);
    /* nothing but origins: the origin alone */
    c = pt_cors_compile(&(struct pt_cors_res){ .origins = origins, .norigins = 1 });
    expect(out, pt_cors_preflight_headers(c, S("http://a.example"), S("PUT"), S(""), out),
           (const char *[]){ "access-control-allow-origin: http://a.example", NULL });
    expect(out, pt_cors_response_headers(c, S("http://a.example"), out),
           (const char *[]){ "access-control-allow-origin: http://a.example", NULL });
    free(c);
}

/* methods "*" / headers "*": the preflight's own Access-Control-Request-Method / -Headers are
 * echoed (cors_filter.cc); "*" with others in the list is just a value. */
static void test_star_echoes_request(void **state)
{
    const char *origins[] = { "*" };
    const char *star[] = { "*" };
    const char *more[] = { "*", "GET" };
    struct pt_cors *c = pt_cors_compile(&(struct pt_cors_res){ .origins = origins, .norigins = 1, .methods = star,
                                                               .nmethods = 1, .headers = star, .nheaders = 1 });
    struct pt_header out[PT_CORS_MAX_HEADERS];
    (void)state;
    expect(out, pt_cors_preflight_headers(c, S("http://z"), S("DELETE"), S("x-y, x-z"), out),
           (const char *[]){ "access-control-allow-origin: http://z", "access-control-allow-methods: DELETE",
                             "access-control-allow-headers: x-y, x-z", NULL });
    free(c);
    c = pt_cors_compile(&(struct pt_cors_res){ .origins = origins, .norigins = 1, .methods = more, .nmethods = 2 });
    expect(out, pt_cors_preflight_headers(c, S("http://z"), S("DELETE"), S(""), out),
           (const char *[]){ "access-control-allow-origin: http://z", "access-control-allow-methods: *, GET",
                             NULL });
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_joins_lists),
        cmocka_unit_test(test_origin_match),
        cmocka_unit_test(test_preflight_fields),
        cmocka_unit_test(test_star_echoes_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
