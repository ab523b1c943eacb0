/* Unit tests for src/http/h2req.c: an HTTP/2 head read into the proxy's request: pseudo-fields
 * to method, target, path, query and authority; cookies joined; the well-known fields indexed;
 * every malformed head refused; the storage growing between fields (offsets, not pointers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "http/h2req.h"

struct fx {
    struct pt_h2req r;
    struct pt_header hdrs[8];
    char *store;
    size_t cap;
    struct pt_h1_request req;
};

static void fx_init(struct fx *f, size_t cap)
{
    memset(f, 0, sizeof(*f));
    f->r.hdrs = f->hdrs;
    f->r.max_hdrs = PT_ARRAY_SIZE(f->hdrs);
    f->cap = cap;
    f->store = malloc(cap);
}

/* add: one field, growing the storage as a caller does when PT_TOOBIG says so. */
static int add(struct fx *f, const char *name, const char *value)
{
    for (;;) {
        int r = pt_h2req_add(&f->r, f->store, f->cap, pt_str_c(name), pt_str_c(value));
        if (r != PT_TOOBIG || f->r.nhdrs >= f->r.max_hdrs)
            return r;
        char *bigger = malloc(f->cap * 2);
        memcpy(bigger, f->store, f->r.used);
        memset(f->store, 'X', f->cap); /* nothing may still point into the old storage */
        free(f->store);
        f->store = bigger;
        f->cap *= 2;
    }
}

static int finish(struct fx *f)
{
    int r = pt_h2req_finish(&f->r, f->store, f->cap, &f->req);
    if (r == PT_TOOBIG) {
        f->store = realloc(f->store, f->cap * 2);
        f->cap *= 2;
        r = pt_h2req_finish(&f->r, f->store, f->cap, &f->req);
    }
    return r;
}

static void assert_str(struct pt_str s, const char *want)
{
    if (s.len != strlen(want) || memcmp(s.ptr, want, s.len) != 0)
        fail_msg("got \"%.*s\", want \"%s\"", (int)s.len, s.ptr ? s.ptr : "", want);
}

static void base(struct fx *f, const char *method, const char *path)
{
    assert_int_equal(add(f, ":method", method), 0);
    assert_int_equal(add(f, ":scheme", "https"), 0);
    assert_int_equal(add(f, ":authority", "a.example:8443"), 0);
    assert_int_equal(add(f, ":path", path), 0);
}

static void test_request_fields(void **state)
{
    struct fx f;

    (void)state;
    fx_init(&f, 8); /* grows several times */
    base(&f, "POST", "/a/b?x=1&y=2");
    assert_int_equal(add(&f, "user-agent", "t/1"), 0);
    assert_int_equal(add(&f, "x-forwarded-for", "10.0.0.1"), 0);
    assert_int_equal(add(&f, "content-length", "42"), 0);
    assert_int_equal(add(&f, "expect", "100-Continue"), 0);
    assert_int_equal(add(&f, "te", "trailers"), 0);
    assert_int_equal(add(&f, "x-empty", ""), 0);
    assert_int_equal(finish(&f), 0);
    assert_str(f.req.method, "POST");
    assert_int_equal(f.req.method_id, PT_H1_METHOD_POST);
    assert_str(f.req.target, "/a/b?x=1&y=2");
    assert_str(f.req.path, "/a/b");
    assert_str(f.req.query, "x=1&y=2");
    assert_str(f.req.authority, "a.example:8443");
    assert_int_equal(f.req.minor_version, 1);
    assert_true(f.req.keep_alive);
    assert_false(f.req.chunked);
    assert_int_equal(f.req.content_length, 42);
    assert_true(f.req.expect_continue);
    assert_int_equal(f.req.nheaders, 6);
    assert_int_equal(f.req.idx_user_agent, 0);
    assert_int_equal(f.req.idx_x_forwarded_for, 1);
    assert_int_equal(f.req.idx_content_length, 2);
    assert_int_equal(f.req.idx_host, -1);
    assert_int_equal(f.req.idx_x_request_id, -1);
    assert_str(f.req.headers[4].name, "te");
    assert_str(f.req.headers[5].value, "");
    free(f.store);
}

static void test_cookies_are_joined(void **state)
{
    struct fx f;

    (void)state;
    fx_init(&f, 16);
    base(&f, "GET", "/");
    assert_int_equal(add(&f, "cookie", "a=1"), 0);
    assert_int_equal(add(&f, "x-one", "1"), 0);
    assert_int_equal(add(&f, "cookie", "b=2"), 0);
    assert_int_equal(add(&f, "cookie", ""), 0); /* an empty crumb is dropped */
    assert_int_equal(add(&f, "cookie", "c=3"), 0);
    assert_int_equal(add(&f, "x-two", "2"), 0);
    assert_int_equal(finish(&f), 0);
    assert_int_equal(f.req.nheaders, 3);
    assert_str(f.req.headers[0].name, "cookie");
    assert_str(f.req.headers[0].value, "a=1; b=2; c=3");
    assert_str(f.req.headers[1].name, "x-one");
    assert_str(f.req.headers[2].value, "2");
    assert_null(f.req.query.ptr);
    free(f.store);
}

static void test_host_and_options(void **state)
{
    struct fx f;

    (void)state;
    fx_init(&f, 256); /* :authority absent: Host plays its part */
    assert_int_equal(add(&f, ":method", "OPTIONS"), 0);
    assert_int_equal(add(&f, ":scheme", "http"), 0);
    assert_int_equal(add(&f, ":path", "*"), 0);
    assert_int_equal(add(&f, "host", "h.example"), 0);
    assert_int_equal(finish(&f), 0);
    assert_str(f.req.path, "*");
    assert_str(f.req.host, "h.example");
    assert_int_equal(f.req.authority.len, 0);
    free(f.store);

    fx_init(&f, 256); /* CONNECT: :authority only */
    assert_int_equal(add(&f, ":method", "CONNECT"), 0);
    assert_int_equal(add(&f, ":authority", "h.example:443"), 0);
    assert_int_equal(finish(&f), 0);
    assert_int_equal(f.req.method_id, PT_H1_METHOD_CONNECT);
    assert_int_equal(f.req.path.len, 0);
    free(f.store);
}

/* One malformed field: refused when it is added, or when the head is finished. */
static void refused(const char *name, const char *value, bool at_add)
{
    struct fx f;

    fx_init(&f, 256);
    base(&f, "GET", "/");
    int r = add(&f, name, value);
    if (at_add) {
        if (r != PT_BADMSG)
            fail_msg("\"%s: %s\" was taken", name, value);
    } else {
        assert_int_equal(r, 0);
        if (finish(&f) != PT_BADMSG)
            fail_msg("\"%s: %s\" was taken at the end", name, value);
    }
    free(f.store);
}

static void test_malformed_fields(void **state)
{
    (void)state;
    refused("X-Upper", "1", true);
    refused("bad name", "1", true);
    refused("", "1", true);
    refused("x-cr", "a\rb", true);
    refused("x-lf", "a\nb", true);
    refused("x-del", "a\x7f", true);
    refused("x-ctl", "a\x01", true);
    refused("x-lead", " a", true);
    refused("x-trail", "a\t", true);
    refused("connection", "keep-alive", true);
    refused("keep-alive", "5", true);
    refused("proxy-connection", "x", true);
    refused("transfer-encoding", "chunked", true);
    refused("upgrade", "websocket", true);
    refused("te", "gzip", true);
    refused(":method", "GET", true);     /* repeated */
    refused(":status", "200", true);     /* a response's */
    refused(":protocol", "websocket", true);
    refused("content-length", "1x", false);
    refused("content-length", "", false);
    {
        struct fx f;
        fx_init(&f, 256);
        base(&f, "GET", "/");
        assert_int_equal(pt_h2req_add(&f.r, f.store, f.cap, PT_STR_LIT("x-nul"), pt_str_make("a\0b", 3)),
                         PT_BADMSG);
        free(f.store);
    }
}

static void test_malformed_heads(void **state)
{
    static const char *const heads[][8] = {
        { ":scheme", "http", ":path", "/", NULL },                          /* no :method */
        { ":method", "GET", ":path", "/", NULL },                           /* no :scheme */
        { ":method", "GET", ":scheme", "http", NULL },                      /* no :path */
        { ":method", "GET", ":scheme", "http", ":path", "", NULL },         /* empty :path */
        { ":method", "GET", ":scheme", "http", ":path", "a/b", NULL },      /* not origin-form */
        { ":method", "GET", ":scheme", "http", ":path", "*", NULL },        /* * but not OPTIONS */
        { ":method", "GET", ":scheme", "http", ":path", "/a b", NULL },     /* no request line */
        { ":method", "GET", ":scheme", "http", ":path", "/a#b", NULL },
        { ":method", "get", ":scheme", "http", ":path", "/", NULL },        /* not a method token */
        { ":method", "CONNECT", ":authority", "h:1", ":path", "/", NULL },  /* CONNECT with :path */
        { ":method", "CONNECT", NULL },                                     /* ... without :authority */
    };

    (void)state;
    for (size_t i = 0; i < PT_ARRAY_SIZE(heads); i++) {
        struct fx f;
        fx_init(&f, 256);
        for (size_t k = 0; heads[i][k] != NULL; k += 2)
            assert_int_equal(add(&f, heads[i][k], heads[i][k + 1]), 0);
        if (finish(&f) != PT_BADMSG)
            fail_msg("head %zu was taken", i);
        free(f.store);
    }
    /* a pseudo-field after a regular one */
    struct fx f;
    fx_init(&f, 256);
    assert_int_equal(add(&f, ":method", "GET"), 0);
    assert_int_equal(add(&f, "x-a", "1"), 0);
    assert_int_equal(add(&f, ":path", "/"), PT_BADMSG);
    free(f.store);
    /* two Host fields */
    fx_init(&f, 256);
    base(&f, "GET", "/");
    assert_int_equal(add(&f, "host", "a"), 0);
    assert_int_equal(add(&f, "host", "b"), 0);
    assert_int_equal(finish(&f), PT_BADMSG);
    free(f.store);
    /* conflicting Content-Length fields */
    fx_init(&f, 256);
    base(&f, "POST", "/");
    assert_int_equal(add(&f, "content-length", "1"), 0);
    assert_int_equal(add(&f, "content-length", "2"), 0);
    assert_int_equal(finish(&f), PT_BADMSG);
    free(f.store);
}

static void test_field_limit(void **state)
{
    struct fx f;
    char name[16];

    (void)state;
    fx_init(&f, 1024);
    base(&f, "GET", "/");
    for (size_t i = 0; i < PT_ARRAY_SIZE(f.hdrs); i++) {
        snprintf(name, sizeof(name), "x-%zu", i);
        assert_int_equal(add(&f, name, "v"), 0);
    }
    assert_int_equal(pt_h2req_add(&f.r, f.store, f.cap, PT_STR_LIT("x-over"), PT_STR_LIT("v")), PT_TOOBIG);
    assert_int_equal(finish(&f), 0);
    assert_int_equal(f.req.nheaders, PT_ARRAY_SIZE(f.hdrs));
    free(f.store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_fields),   cmocka_unit_test(test_cookies_are_joined),
        cmocka_unit_test(test_host_and_options), cmocka_unit_test(test_malformed_fields),
        cmocka_unit_test(test_malformed_heads),  cmocka_unit_test(test_field_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
