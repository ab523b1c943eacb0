/* Unit tests for src/route/: ordering, path kinds, constraints, host globs (with Emissary's
 * hostglob_matches table), canary weights, rewrites, port stripping, per-spec rejection, a large
 * table and concurrent matching. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "route/route.h"

#define ACT(n) ((void *)(uintptr_t)(n))

static struct pt_route_spec spec(const char *prefix, int action)
{
    return (struct pt_route_spec){ .prefix = prefix, .case_sensitive = true, .weight = -1,
                                   .action = ACT(action) };
}

static struct pt_route_req req_of(const char *method, const char *path_query, const char *host)
{
    struct pt_route_req r = { .method = pt_str_c(method), .authority = pt_str_c(host) };
    const char *q = strchr(path_query, '?');

    r.path = pt_str_make(path_query, q ? (size_t)(q - path_query) : strlen(path_query));
    if (q)
        r.query = pt_str_c(q + 1);
    return r;
}

static struct pt_route_table *build_ok(const struct pt_route_spec *specs, size_t n)
{
    char err[256] = "";
    struct pt_route_table *t = pt_route_table_build(specs, n, err, sizeof(err));

    if (t == NULL)
        fail_msg("build failed: %s", err);
    return t;
}

/* act: the action number of the route matching <r>, 0 when none. */
static int act_r(const struct pt_route_table *t, const struct pt_route_req *r, uint32_t rnd)
{
    const struct pt_route *rt = pt_route_match(t, r, rnd);

    return rt ? (int)(uintptr_t)pt_route_action(rt) : 0;
}

static int act(const struct pt_route_table *t, const char *method, const char *path,
               const char *host)
{
    struct pt_route_req r = req_of(method, path, host);

    return act_r(t, &r, 0);
}

#define GET(t, path) act((t), "GET", (path), "example.com")

static void test_longer_prefix_wins(void **state)
{
    struct pt_route_spec s[] = { spec("/", 1), spec("/foo/bar/", 3), spec("/foo/", 2),
                                 spec("/foo", 4) };
    struct pt_route_table *t = build_ok(s, 4);

    assert_int_equal(GET(t, "/foo/bar/x"), 3);
    assert_int_equal(GET(t, "/foo/bar/"), 3);
    assert_int_equal(GET(t, "/foo/bar"), 2);
    assert_int_equal(GET(t, "/foo/x"), 2);
    assert_int_equal(GET(t, "/foobar"), 4); /* plain string prefix, not segment-aware */
    assert_int_equal(GET(t, "/x"), 1);
    assert_int_equal(GET(t, "/"), 1);
    assert_int_equal(pt_route_table_size(t), 4);
    pt_route_table_free(t);
}

static void test_precedence_overrides_length(void **state)
{
    struct pt_route_spec s[] = { spec("/foo/", 1), spec("/foo/bar/", 2), spec("/", 3) };
    s[0].precedence = 1;
    s[2].precedence = -1;
    struct pt_route_table *t = build_ok(s, 3);

    assert_int_equal(GET(t, "/foo/bar/x"), 1);
    assert_int_equal(GET(t, "/other"), 3);
    pt_route_table_free(t);
}

static void test_no_route(void **state)
{
    struct pt_route_spec s[] = { spec("/api/", 1) };
    struct pt_route_table *t = build_ok(s, 1);

    assert_int_equal(GET(t, "/ap"), 0);
    assert_int_equal(GET(t, "/"), 0);
    assert_int_equal(GET(t, ""), 0);
    pt_route_table_free(t);
    t = build_ok(NULL, 0);
    assert_int_equal(GET(t, "/"), 0);
    assert_int_equal(pt_route_table_size(t), 0);
    pt_route_table_free(t);
}

static void test_header_constraint_ranks_higher(void **state)
{
    struct pt_match_kv h = { "X-Canary", "yes", false };
    struct pt_match_kv q = { "debug", NULL, false };
    struct pt_route_spec s[] = { spec("/foo/", 1), spec("/foo/", 2), spec("/foo/", 3) };
    s[1].headers = &h, s[1].nheaders = 1;
    s[2].query_parameters = &q, s[2].nquery_parameters = 1;
    struct pt_route_table *t = build_ok(s, 3);
    struct pt_header hdr = { PT_STR_LIT("x-canary"), PT_STR_LIT("yes") };
    struct pt_route_req r = req_of("GET", "/foo/a?debug", "h");

    assert_int_equal(act_r(t, &r, 0), 3);
    r.headers = &hdr, r.nheaders = 1;
    assert_int_equal(act_r(t, &r, 0), 2);
    r.query = (struct pt_str){ 0 };
    assert_int_equal(act_r(t, &r, 0), 2);
    r.nheaders = 0;
    assert_int_equal(act_r(t, &r, 0), 1);
    /* a longer prefix still beats a header constraint */
    struct pt_route_spec s2[] = { s[1], spec("/foo/a", 4) };
    pt_route_table_free(t);
    t = build_ok(s2, 2);
    r.headers = &hdr, r.nheaders = 1;
    assert_int_equal(act_r(t, &r, 0), 4);
    pt_route_table_free(t);
}

static void test_exact(void **state)
{
    struct pt_route_spec s[] = { spec("/", 1), spec("/foo", 2), spec("/foo", 3) };
    s[1].prefix_exact = true;
    struct pt_route_table *t = build_ok(s, 3);

    assert_int_equal(GET(t, "/foo"), 2); /* same prefix: exact is the more specific */
    assert_int_equal(GET(t, "/foo/"), 3);
    assert_int_equal(GET(t, "/fo"), 1);
    pt_route_table_free(t);

    struct pt_route_spec s2[] = { spec("/", 1), spec("/a/b", 2) };
    s2[1].prefix_exact = true;
    t = build_ok(s2, 2);
    assert_int_equal(GET(t, "/a/b"), 2);
    assert_int_equal(GET(t, "/a/bc"), 1);
    assert_int_equal(GET(t, "/a/b?x=1"), 2);
    pt_route_table_free(t);
}

static void test_regex(void **state)
{
    struct pt_route_spec s[] = { spec("/api/v[0-9]+/.*", 1), spec("/a|/ab", 2), spec("/", 3),
                                 spec("/api/v1/special/and/very/long/", 4) };
    s[0].prefix_regex = s[1].prefix_regex = true;
    struct pt_route_table *t = build_ok(s, 4);

    assert_int_equal(GET(t, "/api/v2/users"), 1);
    assert_int_equal(GET(t, "/api/v2/"), 1);
    assert_int_equal(GET(t, "/api/v2"), 3);      /* the regex must match the whole path */
    assert_int_equal(GET(t, "/x/api/v2/"), 3);
    assert_int_equal(GET(t, "/ab"), 2);          /* full match, not first alternative */
    assert_int_equal(GET(t, "/abc"), 3);
    assert_int_equal(GET(t, "/api/v1/special/and/very/long/x"), 4); /* longer "prefix" */
    pt_route_table_free(t);

    /* the literal-prefix prefilter must not skip regexes whose first bytes are optional */
    struct pt_route_spec s2[] = { spec("/lit/a?b", 1), spec("x{0,2}/y", 2), spec("(?i)/CASE/.*", 3),
                                  spec("^/an+c", 4), spec("\\/esc", 5), spec("/", 6) };
    for (int i = 0; i < 5; i++)
        s2[i].prefix_regex = true;
    t = build_ok(s2, 6);
    assert_int_equal(GET(t, "/lit/b"), 1);
    assert_int_equal(GET(t, "/lit/ab"), 1);
    assert_int_equal(GET(t, "/y"), 2);
    assert_int_equal(GET(t, "xx/y"), 2);
    assert_int_equal(GET(t, "/case/x"), 3);
    assert_int_equal(GET(t, "/annc"), 4);
    assert_int_equal(GET(t, "/ac"), 6);
    assert_int_equal(GET(t, "/esc"), 5);
    pt_route_table_free(t);
}

static void test_case_insensitive(void **state)
{
    struct pt_route_spec s[] = { spec("/Foo/", 1), spec("/bar/", 2), spec("/Exact", 3),
                                 spec("/Foo/Longer/", 4) };
    s[0].case_sensitive = s[2].case_sensitive = false;
    s[2].prefix_exact = true;
    struct pt_route_table *t = build_ok(s, 4);

    assert_int_equal(GET(t, "/FOO/x"), 1);
    assert_int_equal(GET(t, "/foo/x"), 1);
    assert_int_equal(GET(t, "/fOo/Longer/x"), 1);
    assert_int_equal(GET(t, "/Foo/Longer/x"), 4); /* the longer case-sensitive prefix wins */
    assert_int_equal(GET(t, "/bar/"), 2);
    assert_int_equal(GET(t, "/BAR/"), 0);
    assert_int_equal(GET(t, "/eXACT"), 3);
    assert_int_equal(GET(t, "/exact/"), 0);
    pt_route_table_free(t);
}

static void test_method(void **state)
{
    struct pt_route_spec s[] = { spec("/m/", 1), spec("/m/", 2), spec("/m/", 3) };
    s[1].method = "POST";
    s[2].method = "PUT|PATCH";
    s[2].method_regex = true;
    struct pt_route_table *t = build_ok(s, 3);

    assert_int_equal(act(t, "GET", "/m/x", "h"), 1);
    assert_int_equal(act(t, "POST", "/m/x", "h"), 2);
    assert_int_equal(act(t, "post", "/m/x", "h"), 1); /* methods are case-sensitive */
    assert_int_equal(act(t, "PATCH", "/m/x", "h"), 3);
    assert_int_equal(act(t, "PUTX", "/m/x", "h"), 1);
    pt_route_table_free(t);
}

static void test_headers(void **state)
{
    struct pt_match_kv exact = { "x-env", "prod", false };
    struct pt_match_kv regex = { "X-Version", "v[0-9]+", true };
    struct pt_match_kv present = { "x-debug", NULL, false };
    struct pt_route_spec s[] = { spec("/h/", 1), spec("/h/", 2), spec("/h/", 3), spec("/h/", 4) };
    s[1].headers = &exact, s[1].nheaders = 1;
    s[2].headers = &regex, s[2].nheaders = 1;
    s[3].headers = &present, s[3].nheaders = 1;
    struct pt_route_table *t = build_ok(s, 4);
    struct pt_route_req r = req_of("GET", "/h/", "h");
    struct pt_header hs[3];

    r.headers = hs;
    hs[0] = (struct pt_header){ PT_STR_LIT("X-ENV"), PT_STR_LIT("prod") };
    r.nheaders = 1;
    assert_int_equal(act_r(t, &r, 0), 2);
    hs[0].value = PT_STR_LIT("prod2");
    assert_int_equal(act_r(t, &r, 0), 1);
    hs[0] = (struct pt_header){ PT_STR_LIT("x-version"), PT_STR_LIT("v12") };
    assert_int_equal(act_r(t, &r, 0), 3);
    hs[0].value = PT_STR_LIT("v12-beta"); /* regex must match the whole value */
    assert_int_equal(act_r(t, &r, 0), 1);
    hs[0] = (struct pt_header){ PT_STR_LIT("x-debug"), PT_STR_LIT("") };
    assert_int_equal(act_r(t, &r, 0), 4);
    /* repeated headers are joined with ',' before matching, as in Envoy */
    hs[0] = (struct pt_header){ PT_STR_LIT("x-env"), PT_STR_LIT("prod") };
    hs[1] = (struct pt_header){ PT_STR_LIT("x-env"), PT_STR_LIT("prod") };
    r.nheaders = 2;
    assert_int_equal(act_r(t, &r, 0), 1);
    pt_route_table_free(t);

    struct pt_match_kv both[] = { { "x-a", "1", false }, { "x-b", NULL, false } };
    struct pt_route_spec s2[] = { spec("/", 1), spec("/", 2) };
    s2[1].headers = both, s2[1].nheaders = 2;
    t = build_ok(s2, 2);
    hs[0] = (struct pt_header){ PT_STR_LIT("x-a"), PT_STR_LIT("1") };
    hs[1] = (struct pt_header){ PT_STR_LIT("x-c"), PT_STR_LIT("1") };
    assert_int_equal(act_r(t, &r, 0), 1); /* every constraint must pass */
    hs[1].name = PT_STR_LIT("X-B");
    assert_int_equal(act_r(t, &r, 0), 2);
    pt_route_table_free(t);
}

static void test_query_parameters(void **state)
{
    struct pt_match_kv exact = { "v", "a%20b", false };
    struct pt_match_kv regex = { "id", "[0-9]+", true };
    struct pt_match_kv present = { "flag", NULL, false };
    struct pt_route_spec s[] = { spec("/q", 1), spec("/q", 2), spec("/q", 3), spec("/q", 4) };
    s[1].query_parameters = &exact, s[1].nquery_parameters = 1;
    s[2].query_parameters = &regex, s[2].nquery_parameters = 1;
    s[3].query_parameters = &present, s[3].nquery_parameters = 1;
    struct pt_route_table *t = build_ok(s, 4);

    assert_int_equal(GET(t, "/q?v=a%20b"), 2); /* raw, undecoded values */
    assert_int_equal(GET(t, "/q?x=1&v=a%20b&y"), 2);
    assert_int_equal(GET(t, "/q?v=a b"), 1);
    assert_int_equal(GET(t, "/q?id=42"), 3);
    assert_int_equal(GET(t, "/q?id=42x"), 1);
    assert_int_equal(GET(t, "/q?id=x&id=42"), 1); /* the first occurrence counts */
    assert_int_equal(GET(t, "/q?flag"), 4);
    assert_int_equal(GET(t, "/q?flag="), 4);
    assert_int_equal(GET(t, "/q?flags=1"), 1);
    assert_int_equal(GET(t, "/q?FLAG"), 1);    /* names are case-sensitive */
    assert_int_equal(GET(t, "/q"), 1);
    pt_route_table_free(t);
}

static void test_hostglob_match_table(void **state)
{
    static const struct {
        const char *glob, *host;
        bool want;
    } cases[] = {
        { "*", "anything.example.com", true },
        { "*", "", true },
        { "*.a.com", "b.a.com", true },
        { "*.a.com", "c.b.a.com", true },      /* Envoy: '*' may cross dots */
        { "*.a.com", "a.com", false },
        { "*.a.com", ".a.com", false },        /* '*' needs at least one byte */
        { "*a.com", "a.com", false },
        { "*a.com", "ba.com", true },
        { "*.A.COM", "b.a.com", true },        /* case-insensitive */
        { "foo.*", "foo.com", true },
        { "foo.*", "foo.", false },
        { "foo.*", "bar.com", false },
        { "foo-*", "foo-bar.example.com", true },
        { "a.example.com", "A.Example.COM", true },
        { "a.example.com", "b.example.com", false },
        { "a.*.com", "a.b.com", false },       /* '*' only at either end */
        { "*.a.*", "x.a.y", false },
        { ".a.com", ".a.com", false },         /* leading '.' never matches */
        { "", "", false },
        { "a.com", "", false },
    };

    for (size_t i = 0; i < PT_ARRAY_SIZE(cases); i++) {
        bool got = pt_hostglob_match(cases[i].glob, pt_str_c(cases[i].host));
        if (got != cases[i].want)
            fail_msg("pt_hostglob_match(\"%s\", \"%s\") = %d", cases[i].glob, cases[i].host, got);
    }
}

/* Emissary's python/tests/unit/test_hostglob_matches.py, both ways round. */
static void test_hostglob_overlap_emissary_table(void **state)
{
    static const struct {
        const char *a, *b;
        bool want;
    } cases[] = {
        { "a.example.com", "a.example.com", true },
        { "a.example.com", "b.example.com", false },
        { "*", "foo.example.com", true },
        { "*.example.com", "a.example.com", true },
        { "*example.com", "b.example.com", true },
        { "*example.com", ".example.com", false },
        { "foo.example*", "foo.example.com.", true },
        { "*example.com", "example.com", false },
        { "*ple.com", "b.example.com", true },
        { "*.example.com", "a.example.org", false },
        { "*example.com", "a.example.org", false },
        { "*ple.com", "a.example.org", false },
        { "a.example.*", "a.example.com", true },
        { "a.example*", "a.example.com", true },
        { "a.exa*", "a.example.com", true },
        { "a.example.*", "a.example.org", true },
        { "a.example.*", "b.example.com", false },
        { "a.example*", "b.example.com", false },
        { "a.exa*", "b.example.com", false },
        { "a.*.com", "a.example.com", false },
        { "*.com", "a.example.com", true },
        { "*.com", "a.example.org", false },
        { "*.example.com", "*.example.com", true },
        { "*example.com", "*.example.com", true },
        { "*.example.com", "a.example.*", true },
        { "*.example.com", "a.b.example.*", true },
        { "*.example.baz.com", "a.b.example.*", true },
        { "*.foo.bar", "baz.zing.*", true },
        { "*.local:8500", "quote.local", false },
        { "*.local:8500", "quote.local:8500", true },
        { "*", "quote.local:8500", true },
        { "quote.*", "quote.local:8500", true },
        { "quote.*", "*.local:8500", true },
        { "quote.com:8500", "quote.com:8500", true },
        /* beyond the table */
        { "*.A.com", "b.a.COM", true },
        { "*foo*", "xfooy", false },
        { "*foo*", "*foo*", true },
    };

    for (size_t i = 0; i < PT_ARRAY_SIZE(cases); i++) {
        bool ab = pt_hostglob_overlap(cases[i].a, cases[i].b);
        bool ba = pt_hostglob_overlap(cases[i].b, cases[i].a);
        if (ab != cases[i].want || ba != cases[i].want)
            fail_msg("overlap(\"%s\", \"%s\") = %d / %d", cases[i].a, cases[i].b, ab, ba);
    }
}

static void test_mapping_hostname_and_host(void **state)
{
    struct pt_match_kv auth = { ":authority", "other.com", false };
    struct pt_route_spec s[] = { spec("/", 1), spec("/", 2), spec("/", 3), spec("/", 4),
                                 spec("/", 5), spec("/", 6), spec("/", 7) };
    s[1].hostname = "*.a.com";
    s[2].hostname = "exact.a.com";
    s[3].host = "h.b.com";
    s[3].hostname = "*"; /* hostname wins over host: any host */
    s[3].precedence = -1;
    s[4].host = "[a-z]+\\.re\\.com";
    s[4].host_regex = true;
    s[5].host = "PLAIN.com";
    s[6].hostname = "*.local:8500"; /* a glob with a port compares with the full authority */
    s[1].headers = &auth, s[1].nheaders = 1; /* ignored: hostname wins */
    struct pt_route_table *t = build_ok(s, 7);

    assert_int_equal(act(t, "GET", "/x", "b.a.com"), 2);
    assert_int_equal(act(t, "GET", "/x", "b.a.com:8080"), 2);
    assert_int_equal(act(t, "GET", "/x", "exact.a.com"), 3); /* exact beats the suffix glob */
    assert_int_equal(act(t, "GET", "/x", "EXACT.A.COM:443"), 3);
    assert_int_equal(act(t, "GET", "/x", "a.com"), 1);
    assert_int_equal(act(t, "GET", "/x", "abc.re.com"), 5);
    assert_int_equal(act(t, "GET", "/x", "abc.re.com:80"), 5);
    assert_int_equal(act(t, "GET", "/x", "ab1.re.com"), 1);
    assert_int_equal(act(t, "GET", "/x", "plain.com:80"), 6);
    assert_int_equal(act(t, "GET", "/x", "q.local:8500"), 7);
    assert_int_equal(act(t, "GET", "/x", "q.local"), 1);
    pt_route_table_free(t);

    /* Without host or hostname, an :authority header constraint is an exact authority match. */
    struct pt_route_spec s2[] = { spec("/", 1), spec("/", 2) };
    s2[1].headers = &auth, s2[1].nheaders = 1;
    t = build_ok(s2, 2);
    assert_int_equal(act(t, "GET", "/x", "other.com"), 2);
    assert_int_equal(act(t, "GET", "/x", "b.com"), 1);
    pt_route_table_free(t);
}

static void test_authority_strip_port(void **state)
{
    static const char *cases[][2] = {
        { "a.com:8080", "a.com" }, { "a.com", "a.com" }, { "a.com:", "a.com" },
        { "[::1]:8443", "[::1]" }, { "[::1]", "[::1]" }, { "::1", "::1" },
        { "[fe80::1%eth0]:80", "[fe80::1%eth0]" }, { "a.com:abc", "a.com:abc" },
        { "1.2.3.4:80", "1.2.3.4" }, { "", "" }, { "[::1]x", "[::1]x" },
    };

    for (size_t i = 0; i < PT_ARRAY_SIZE(cases); i++) {
        struct pt_str got = pt_authority_strip_port(pt_str_c(cases[i][0]));
        if (!pt_str_eq(got, pt_str_c(cases[i][1])))
            fail_msg("strip(\"%s\") = \"%.*s\"", cases[i][0], (int)got.len, got.ptr);
    }
}

/* count_actions: how often each action (1..n) wins over <rounds> random numbers. */
static void count_actions(const struct pt_route_table *t, const char *path, int *counts, int n,
                          int rounds)
{
    struct pt_route_req r = req_of("GET", path, "h");
    uint32_t x = 2463534242u;

    memset(counts, 0, (size_t)(n + 1) * sizeof(*counts));
    for (int i = 0; i < rounds; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5; /* xorshift32 */
        int a = act_r(t, &r, x);
        assert_true(a >= 0 && a <= n);
        counts[a]++;
    }
}

#define assert_share(count, rounds, pct) \
    assert_in_range((count), (rounds) * ((pct) - 2) / 100, (rounds) * ((pct) + 2) / 100)

static void test_canary_weights(void **state)
{
    int c[5], rounds = 100000;
    struct pt_route_spec s[] = { spec("/c/", 1), spec("/c/", 2), spec("/c/", 3), spec("/", 4) };

    s[0].weight = 10, s[1].weight = 90;
    struct pt_route_table *t = build_ok(s, 2);
    count_actions(t, "/c/x", c, 4, rounds);
    assert_share(c[1], rounds, 10);
    assert_share(c[2], rounds, 90);
    pt_route_table_free(t);

    /* an unweighted member takes the remainder */
    s[0].weight = 30, s[1].weight = -1;
    t = build_ok(s, 2);
    count_actions(t, "/c/x", c, 4, rounds);
    assert_share(c[1], rounds, 30);
    assert_share(c[2], rounds, 70);
    pt_route_table_free(t);

    /* two unweighted members split it */
    s[0].weight = 40, s[1].weight = -1, s[2].weight = -1;
    t = build_ok(s, 3);
    count_actions(t, "/c/x", c, 4, rounds);
    assert_share(c[1], rounds, 40);
    assert_share(c[2], rounds, 30);
    assert_share(c[3], rounds, 30);
    pt_route_table_free(t);

    /* weights over 100 act as proportions; the unweighted member gets nothing */
    s[0].weight = 80, s[1].weight = 80, s[2].weight = -1;
    t = build_ok(s, 3);
    count_actions(t, "/c/x", c, 4, rounds);
    assert_share(c[1], rounds, 50);
    assert_share(c[2], rounds, 50);
    assert_int_equal(c[3], 0);
    pt_route_table_free(t);

    /* a group weighing 0 in all gets no traffic: the next route takes it */
    s[0].weight = 0, s[1].weight = 0;
    struct pt_route_spec s2[] = { s[0], s[1], s[3] };
    t = build_ok(s2, 3);
    count_actions(t, "/c/x", c, 4, 1000);
    assert_int_equal(c[4], 1000);
    pt_route_table_free(t);

    /* weight 0 next to an unweighted member */
    s[0].weight = 0, s[1].weight = -1;
    t = build_ok(s, 2);
    count_actions(t, "/c/x", c, 4, 1000);
    assert_int_equal(c[2], 1000);
    pt_route_table_free(t);

    /* members with different match keys are not a canary group */
    s[0].weight = 10, s[1].weight = 90, s[1].method = "POST";
    t = build_ok(s, 2);
    count_actions(t, "/c/x", c, 4, 1000);
    assert_int_equal(c[1], 1000);
    pt_route_table_free(t);
}

static void check_rewrite(const struct pt_route_spec *s, const char *path, const char *want,
                          bool want_changed)
{
    struct pt_route_table *t = build_ok(s, 1);
    struct pt_route_req r = req_of("GET", path, "h");
    const struct pt_route *rt = pt_route_match(t, &r, 0);
    char out[256];
    bool changed = !want_changed;

    assert_non_null(rt);
    int n = pt_route_rewrite(rt, &r, out, sizeof(out), &changed);
    if (n < 0 || strcmp(out, want) != 0 || (size_t)n != strlen(want) || changed != want_changed)
        fail_msg("rewrite %s of %s: got %d \"%s\" changed=%d, want \"%s\" changed=%d", s->prefix,
                 path, n, n >= 0 ? out : "", changed, want, want_changed);
    pt_route_table_free(t);
}

static void test_rewrite(void **state)
{
    struct pt_route_spec s = spec("/backend/", 1);

    s.rewrite = "/"; /* Emissary's default */
    check_rewrite(&s, "/backend/", "/", true);
    check_rewrite(&s, "/backend/foo?x=1", "/foo?x=1", true);
    check_rewrite(&s, "/backend/a/b", "/a/b", true);
    s.rewrite = "/v2/";
    check_rewrite(&s, "/backend/foo", "/v2/foo", true);
    s.rewrite = ""; /* rewrite: "" means no rewrite */
    check_rewrite(&s, "/backend/foo?x=1", "/backend/foo?x=1", false);
    s.rewrite = NULL;
    check_rewrite(&s, "/backend/foo", "/backend/foo", false);

    s.case_sensitive = false;
    s.rewrite = "/";
    check_rewrite(&s, "/BACKEND/Foo", "/Foo", true);

    s = spec("/exact", 1);
    s.prefix_exact = true;
    s.rewrite = "/other";
    check_rewrite(&s, "/exact?q", "/other?q", true);

    s = spec("/service/([^/]+)(/.*)", 1); /* Envoy's documented regex_rewrite example */
    s.prefix_regex = true;
    s.rewrite = "/"; /* regex_rewrite wins */
    s.regex_rewrite_pattern = "^/service/([^/]+)(/.*)$";
    s.regex_rewrite_substitution = "\\2/instance/\\1";
    check_rewrite(&s, "/service/foo/v1/api?a=b", "/v1/api/instance/foo?a=b", true);

    s = spec("/", 1);
    s.regex_rewrite_pattern = "o";
    s.regex_rewrite_substitution = "0$\\\\"; /* every match; '$' and "\\" are literal */
    check_rewrite(&s, "/foo/bo", "/f0$\\0$\\/b0$\\", true);
    s.regex_rewrite_pattern = "x";
    check_rewrite(&s, "/foo", "/foo", true); /* a rewrite applied, though nothing changed */
}

static void test_rewrite_toobig(void **state)
{
    struct pt_route_spec s = spec("/b/", 1);
    s.rewrite = "/long/";
    struct pt_route_table *t = build_ok(&s, 1);
    struct pt_route_req r = req_of("GET", "/b/x?q=1", "h");
    const struct pt_route *rt = pt_route_match(t, &r, 0);
    char out[16];
    bool changed;

    assert_int_equal(pt_route_rewrite(rt, &r, out, 11, &changed), PT_TOOBIG);
    assert_int_equal(pt_route_rewrite(rt, &r, out, 12, &changed), 11);
    assert_int_equal(pt_route_rewrite(rt, &r, out, 7, &changed), PT_TOOBIG);
    assert_int_equal(pt_route_rewrite(rt, &r, out, 16, &changed), 11);
    assert_string_equal(out, "/long/x?q=1");
    pt_route_table_free(t);

    s.rewrite = NULL;
    s.regex_rewrite_pattern = "x";
    s.regex_rewrite_substitution = "yyyyyyyyyyyyyyyyyyyyyyyyyyyy";
    t = build_ok(&s, 1);
    rt = pt_route_match(t, &r, 0);
    assert_int_equal(pt_route_rewrite(rt, &r, out, sizeof(out), &changed), PT_TOOBIG);
    pt_route_table_free(t);
}

/* rewrite_status: what pt_route_rewrite returns for <path> on a regex_rewrite route. */
static int rewrite_status(const char *pattern, const char *subst, const char *path)
{
    struct pt_route_spec s = spec("/", 1);
    s.regex_rewrite_pattern = pattern;
    s.regex_rewrite_substitution = subst;
    struct pt_route_table *t = build_ok(&s, 1);
    struct pt_route_req r = req_of("GET", path, "h");
    const struct pt_route *rt = pt_route_match(t, &r, 0);
    char out[256];
    bool changed;
    int n;

    assert_non_null(rt);
    n = pt_route_rewrite(rt, &r, out, sizeof(out), &changed);
    pt_route_table_free(t);
    return n;
}

/* A regex_rewrite result goes into the request line as is: whatever is not a request-target
 * (CR, LF, NUL, space, '#', other controls, non-ASCII, nothing at all) is PT_INVAL, which the
 * proxy answers with 400, never written upstream. */
static void test_rewrite_result_is_a_target(void **state)
{
    assert_int_equal(rewrite_status("^/a$", "/b\\\\r\\\\n", "/a"), 6); /* "\\r" is two bytes */
    assert_int_equal(rewrite_status("^/a$", "/b%0D%0AX:y", "/a"), 11);
    assert_int_equal(rewrite_status("^/a$", "/b X:y", "/a"), PT_INVAL); /* a space */
    assert_int_equal(rewrite_status("^/a$", "/b\r\nX:y", "/a"), PT_INVAL);
    assert_int_equal(rewrite_status("^/a$", "/b\nx", "/a"), PT_INVAL);
    assert_int_equal(rewrite_status("^/a$", "/b\tx", "/a"), PT_INVAL);
    assert_int_equal(rewrite_status("^/a$", "/b#x", "/a"), PT_INVAL);
    assert_int_equal(rewrite_status("^/a$", "/\xc3\xa9", "/a"), PT_INVAL);
    assert_int_equal(rewrite_status("^/a$", "/\x7f", "/a"), PT_INVAL);
    assert_int_equal(rewrite_status("^/a$", "", "/a"), PT_INVAL); /* empty request-target */
    /* bytes copied from the path through a group are checked too */
    assert_int_equal(rewrite_status("^/a(.*)$", "/b", "/a\rx"), 2);
    assert_int_equal(rewrite_status("^/a(.*)$", "/b\\1", "/a\rx"), PT_INVAL);
    assert_int_equal(rewrite_status("^/a(.*)$", "/b\\1", "/a x"), PT_INVAL);
    assert_int_equal(rewrite_status("^/a(.*)$", "/b\\1", "/a%0D%0A!$&'()*+,;=:@~"), 22);
}

struct rejects {
    size_t index[8];
    char message[8][256];
    size_t n;
};

static void on_reject(void *ctx, size_t i, const char *message)
{
    struct rejects *r = ctx;

    assert_true(r->n < 8);
    r->index[r->n] = i;
    snprintf(r->message[r->n++], 256, "%s", message);
}

/* A shadow spec is no canary member: never matched, its weight not in the split; every member
 * of its group carries its action. A second shadow of the group, and one with no member, are
 * rejected. */
static void test_shadow_spec(void **state)
{
    struct pt_route_spec s[] = {
        spec("/a/", 1), spec("/a/", 2), spec("/a/", 3), spec("/a/", 4), spec("/b/", 5), spec("/c/", 6),
    };
    s[0].shadow = true, s[0].weight = 90; /* first by input order: the group's shadow */
    s[2].shadow = true;                   /* a second one */
    s[1].weight = 50;
    s[4].shadow = true;                   /* alone in its group */
    struct rejects rj = { 0 };
    struct pt_route_table *t = pt_route_table_build_partial(s, 6, on_reject, &rj);
    int seen[5] = { 0 };

    assert_int_equal(rj.n, 2); /* reported in rank order: /b/ before /a/ */
    assert_int_equal(rj.index[0], 4);
    assert_string_equal(rj.message[0], "shadow: no Mapping with the same match keys to mirror; nothing is mirrored");
    assert_int_equal(rj.index[1], 2);
    assert_string_equal(rj.message[1], "shadow: a second shadow of the same match keys; only the first is used");
    for (uint32_t rnd = 0; rnd < 1000; rnd++) {
        struct pt_route_req r = req_of("GET", "/a/x", "h");
        const struct pt_route *rt = pt_route_match(t, &r, rnd * 2654435761u);
        assert_non_null(rt);
        assert_ptr_equal(rt->shadow, ACT(1));
        seen[(uintptr_t)pt_route_action(rt)]++;
    }
    assert_int_equal(seen[1] + seen[3], 0);
    assert_true(seen[2] > 400 && seen[4] > 400); /* 50/50: the shadow's 90 takes no share */
    assert_int_equal(GET(t, "/b/"), 0);
    assert_null(pt_route_match(t, &(struct pt_route_req){ .path = PT_STR_LIT("/c/") }, 0)->shadow);
    pt_route_table_free(t);
}

static void test_bad_spec_rejected_alone(void **state)
{
    struct pt_match_kv bad_hdr = { "x-a", "([", true };
    struct pt_match_kv no_value = { "x-b", NULL, true };
    struct pt_route_spec s[] = {
        spec("/good/", 1), spec("/bad/(", 2), spec("/also-good/", 3), spec("/h/", 4),
        spec("/host/", 5), spec("/glob/", 6), spec("/rr/", 7), spec(NULL, 8),
    };
    s[1].prefix_regex = true;
    s[3].headers = &bad_hdr, s[3].nheaders = 1;
    s[4].host = "*.a.com";
    s[5].hostname = "a.*.com";
    s[6].regex_rewrite_pattern = "/rr/(.*)";
    s[6].regex_rewrite_substitution = "/\\2";
    struct rejects rj = { 0 };
    struct pt_route_table *t = pt_route_table_build_partial(s, 8, on_reject, &rj);

    assert_int_equal(rj.n, 6);
    size_t want[] = { 1, 3, 4, 5, 6, 7 };
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(rj.index[i], want[i]);
    assert_non_null(strstr(rj.message[0], "prefix_regex"));
    assert_non_null(strstr(rj.message[1], "x-a"));
    assert_non_null(strstr(rj.message[4], "\\2"));
    assert_non_null(strstr(rj.message[5], "prefix"));
    assert_int_equal(pt_route_table_size(t), 2);
    assert_int_equal(GET(t, "/good/x"), 1);
    assert_int_equal(GET(t, "/also-good/x"), 3);
    assert_int_equal(GET(t, "/h/"), 0);
    const struct pt_route *rt = pt_route_match(t, &(struct pt_route_req){
                                                      .path = PT_STR_LIT("/also-good/") }, 0);
    assert_int_equal(pt_route_spec_index(rt), 2);
    pt_route_table_free(t);

    char err[128];
    assert_null(pt_route_table_build(s, 3, err, sizeof(err)));
    assert_non_null(strstr(err, "spec 1: prefix_regex: invalid regex"));
    s[1] = spec("/w/", 2);
    s[1].weight = 101;
    assert_null(pt_route_table_build(s, 2, err, sizeof(err)));
    s[1].weight = -1;
    s[1].headers = &no_value, s[1].nheaders = 1;
    assert_null(pt_route_table_build(s, 2, err, sizeof(err)));
    assert_non_null(strstr(err, "needs a value"));
}

/* 10,000 prefixes and 2,000 hostnames on one prefix: every one still finds its own route. */
static void test_large_table(void **state)
{
    enum { NPREFIX = 10000, NHOST = 2000 };
    struct pt_route_spec *s = calloc(NPREFIX + NHOST + 1, sizeof(*s));
    char (*names)[40] = calloc(NPREFIX + NHOST, sizeof(*names));

    for (int i = 0; i < NPREFIX; i++) {
        snprintf(names[i], 40, "/svc-%d/", i);
        s[i] = spec(names[i], i + 1);
    }
    for (int i = 0; i < NHOST; i++) {
        snprintf(names[NPREFIX + i], 40, "tenant-%d.example.com", i);
        s[NPREFIX + i] = spec("/", NPREFIX + i + 1);
        s[NPREFIX + i].hostname = names[NPREFIX + i];
    }
    s[NPREFIX + NHOST] = spec("/", 99999999);
    struct pt_route_table *t = build_ok(s, NPREFIX + NHOST + 1);
    char path[64];

    for (int i = 0; i < NPREFIX; i += 7) {
        snprintf(path, sizeof(path), "/svc-%d/x", i);
        assert_int_equal(act(t, "GET", path, "h"), i + 1);
    }
    for (int i = 0; i < NHOST; i += 3)
        assert_int_equal(act(t, "GET", "/x", names[NPREFIX + i]), NPREFIX + i + 1);
    assert_int_equal(act(t, "GET", "/x", "TENANT-5.example.com:8080"), NPREFIX + 6);
    assert_int_equal(act(t, "GET", "/x", "unknown.example.com"), 99999999);
    assert_int_equal(act(t, "GET", "/svc-", "h"), 99999999);
    pt_route_table_free(t);
    free(s);
    free(names);
}

/* Host-indexed groups (exact hostnames) and plain groups at one trie node merge by rank, for
 * prefix and exact paths, in both tries; wide nodes and long labels take the slow paths. */
static void test_host_index_merge(void **state)
{
    struct pt_match_kv hdr = { "x-a", "1", false };
    struct pt_route_spec s[] = { spec("/", 1), spec("/", 2), spec("/", 3), spec("/e", 4),
                                 spec("/E", 5), spec("/", 6) };
    s[1].hostname = "a.com";          /* host index */
    s[2].headers = &hdr, s[2].nheaders = 1; /* ranks above the hostname route */
    s[3].prefix_exact = true, s[3].hostname = "a.com";
    s[4].case_sensitive = false, s[4].hostname = "b.com";
    s[5].hostname = "b.com", s[5].precedence = 2;
    struct pt_route_table *t = build_ok(s, 6);
    struct pt_header h = { PT_STR_LIT("x-a"), PT_STR_LIT("1") };
    struct pt_route_req r = req_of("GET", "/x", "A.com:80");

    assert_int_equal(act_r(t, &r, 0), 2);
    r.headers = &h, r.nheaders = 1;
    assert_int_equal(act_r(t, &r, 0), 3);
    r.nheaders = 0;
    assert_int_equal(act(t, "GET", "/e", "a.com"), 4);
    assert_int_equal(act(t, "GET", "/e/", "a.com"), 2);
    assert_int_equal(act(t, "GET", "/e", "c.com"), 1);
    assert_int_equal(act(t, "GET", "/Ex", "b.com"), 6); /* precedence 2 beats the longer prefix */
    pt_route_table_free(t);

    /* more than KIDS_INLINE children, labels longer than 8 bytes, both tries */
    static char names[40][48];
    struct pt_route_spec w[40];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof(names[i]), "/shared-long-label/%c%d/more-than-eight/",
                 'A' + i % 26, i);
        w[i] = spec(names[i], i + 1);
        w[i].case_sensitive = i % 2;
    }
    t = build_ok(w, 40);
    for (int i = 0; i < 40; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/shared-long-label/%c%d/more-than-eight/x", 'A' + i % 26, i);
        assert_int_equal(GET(t, path), i + 1);
        for (char *p = path; *p; p++) /* flip the case: only case-insensitive routes still match */
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        assert_int_equal(GET(t, path), i % 2 ? 0 : i + 1);
    }
    assert_int_equal(GET(t, "/shared-long-label/A0/more-than-eigh"), 0);
    pt_route_table_free(t);
}

/* A brute-force model of the ranking for path-only routes. */
struct model {
    char prefix[8];
    bool exact, ci;
    int prec;
};

static bool model_matches(const struct model *m, const char *path)
{
    size_t n = strlen(m->prefix), pl = strlen(path);

    if (m->exact ? pl != n : pl < n)
        return false;
    return m->ci ? strncasecmp(m->prefix, path, n) == 0 : strncmp(m->prefix, path, n) == 0;
}

/* model_better: whether <a> (index ia) outranks <b> (index ib). */
static bool model_better(const struct model *a, int ia, const struct model *b, int ib)
{
    size_t la = strlen(a->prefix), lb = strlen(b->prefix);
    int c;

    if (a->prec != b->prec)
        return a->prec > b->prec;
    if (la != lb)
        return la > lb;
    if ((c = strcmp(a->prefix, b->prefix)) != 0)
        return c > 0;
    if (a->exact != b->exact)
        return a->exact;
    if (a->ci != b->ci)
        return !a->ci;
    return ia < ib;
}

static uint32_t xorshift32(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* Random path-only tables over a tiny alphabet, so prefixes nest and collide a lot, checked
 * against the model. */
static void test_random_against_model(void **state)
{
    static const char alphabet[] = "abAB/";
    uint32_t x = 88172645u;
#define RND() xorshift32(&x)

    for (int round = 0; round < 50; round++) {
        struct model m[150];
        struct pt_route_spec s[150];
        int n = 0;
        while (n < 150) {
            struct model c = { 0 };
            c.exact = RND() % 5 == 0;
            c.ci = RND() % 3 == 0;
            int len = (int)(RND() % 6);
            c.prec = (int)(RND() % 5) - 2;
            c.prec = c.prec < -1 ? 0 : c.prec > 1 ? 0 : c.prec;
            c.prefix[0] = '/';
            for (int i = 1; i <= len; i++)
                c.prefix[i] = alphabet[RND() % 5];
            c.prefix[len + 1] = '\0';
            bool dup = false;
            for (int i = 0; i < n && !dup; i++)
                dup = !strcmp(m[i].prefix, c.prefix) && m[i].exact == c.exact &&
                      m[i].ci == c.ci && m[i].prec == c.prec;
            if (dup)
                continue;
            m[n] = c;
            n++;
        }
        for (int i = 0; i < n; i++) {
            s[i] = spec(m[i].prefix, i + 1);
            s[i].prefix_exact = m[i].exact;
            s[i].case_sensitive = !m[i].ci;
            s[i].precedence = m[i].prec;
        }
        struct pt_route_table *t = build_ok(s, (size_t)n);
        for (int k = 0; k < 400; k++) {
            char path[12] = "/";
            int len = (int)(RND() % 9);
            for (int i = 1; i <= len; i++)
                path[i] = alphabet[RND() % 5];
            path[len + 1] = '\0';
            int want = -1;
            for (int i = 0; i < n; i++)
                if (model_matches(&m[i], path) && (want < 0 || model_better(&m[i], i, &m[want], want)))
                    want = i;
            int got = GET(t, path);
            if (got != want + 1)
                fail_msg("round %d path \"%s\": got %d want %d", round, path, got, want + 1);
        }
        pt_route_table_free(t);
    }
#undef RND
}

struct worker_arg {
    const struct pt_route_table *t;
    int failures;
};

static void *worker(void *p)
{
    struct worker_arg *w = p;

    pt_route_thread_init();
    for (int i = 0; i < 20000; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/r/%d/x", i % 100);
        struct pt_route_req r = req_of("GET", path, "h");
        if (act_r(w->t, &r, (uint32_t)i) != 1)
            w->failures++;
        r = req_of("GET", "/r/x/x", "h");
        if (act_r(w->t, &r, (uint32_t)i) != 2)
            w->failures++;
    }
    pt_route_thread_fini();
    return NULL;
}

static void test_concurrent_regex_match(void **state)
{
    struct pt_route_spec s[] = { spec("/r/[0-9]+/.*", 1), spec("/", 2) };
    s[0].prefix_regex = true;
    struct pt_route_table *t = build_ok(s, 2);
    pthread_t th[4];
    struct worker_arg args[4];

    for (int i = 0; i < 4; i++) {
        args[i] = (struct worker_arg){ .t = t };
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    pt_route_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_longer_prefix_wins),
        cmocka_unit_test(test_precedence_overrides_length),
        cmocka_unit_test(test_no_route),
        cmocka_unit_test(test_header_constraint_ranks_higher),
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_regex),
        cmocka_unit_test(test_case_insensitive),
        cmocka_unit_test(test_method),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_query_parameters),
        cmocka_unit_test(test_hostglob_match_table),
        cmocka_unit_test(test_hostglob_overlap_emissary_table),
        cmocka_unit_test(test_mapping_hostname_and_host),
        cmocka_unit_test(test_authority_strip_port),
        cmocka_unit_test(test_canary_weights),
        cmocka_unit_test(test_rewrite),
        cmocka_unit_test(test_rewrite_toobig),
        cmocka_unit_test(test_rewrite_result_is_a_target),
        cmocka_unit_test(test_bad_spec_rejected_alone),
        cmocka_unit_test(test_shadow_spec),
        cmocka_unit_test(test_large_table),
        cmocka_unit_test(test_host_index_merge),
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_concurrent_regex_match),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);

    pt_route_thread_fini();
    return rc;
}
