/* Unit tests for observe/trace.c and observe/zipkin.c: B3 extraction (single and multi header,
 * malformed input), sampling as Envoy decides it (statistically), ids, x-b3 injection, span
 * JSON checked against zipkin2-api.yaml by parsing it back with jansson, custom tags and
 * tag_headers, the spans of calls to policy services (exact JSON, their B3 lines), the worker
 * ring, and the exporter end to end against a small HTTP collector on 127.0.0.1 driven by the
 * same pt_loop (one that answers 202, one that never answers). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/load.h"
#include "model/resource-t.h"
#include "model/snapshot-t.h"
#include "core/common.h"
#include "core/loop.h"
#include "observe/trace.h"

#define WID 0 /* the worker id the tests register */

static struct pt_trace_worker *g_tw;
static struct pt_loop *g_loop; /* the loop of the running exporter test */

/* --- helpers -------------------------------------------------------------------------------- */

static void res_defaults(struct pt_tracing_res *r)
{
    memset(r, 0, sizeof(*r));
    r->meta.kind = "TracingService";
    r->meta.name = "tracing";
    r->meta.namespace = "default";
    r->service = "zipkin:9411";
    r->driver = "zipkin";
    r->trace_id_128bit = true;
    r->shared_span_context = true;
    r->sampling_overall = r->sampling_random = r->sampling_client = 100;
}

/* make_cfg: a config for <r>, collector 127.0.0.1:<port> (none when 0). */
static struct pt_trace_config *make_cfg(const struct pt_tracing_res *r, int port)
{
    static char name[] = "cluster_tracing_zipkin_9411_default";
    struct pt_endpoint ep;
    struct pt_cluster cl;
    struct sockaddr_in *a = (struct sockaddr_in *)&ep.addr;
    struct pt_trace_params p = { .res = r, .collector = &cl, .local_ip = "10.0.0.7" };
    char err[256] = "";
    struct pt_trace_config *cfg;

    memset(&ep, 0, sizeof(ep));
    memset(&cl, 0, sizeof(cl));
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ep.addrlen = sizeof(*a);
    cl.name = name;
    cl.endpoints = &ep;
    cl.nendpoints = port ? 1 : 0;
    cfg = pt_trace_config_new(&p, err, sizeof(err));
    assert_non_null(cfg);
    return cfg;
}

/* A request head from name/value pairs. */
struct head {
    struct pt_header h[16];
    struct pt_trace_head th;
};

static struct pt_trace_head *head_v(struct head *hd, va_list ap)
{
    const char *n;

    memset(hd, 0, sizeof(*hd));
    while ((n = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        hd->h[hd->th.nheaders].name = pt_str_c(n);
        hd->h[hd->th.nheaders].value = pt_str_c(v);
        hd->th.nheaders++;
    }
    hd->th.headers = hd->h;
    hd->th.method = PT_STR_LIT("GET");
    hd->th.authority = PT_STR_LIT("example.com");
    hd->th.path = PT_STR_LIT("/foo?x=1");
    hd->th.scheme = PT_STR_LIT("https");
    return &hd->th;
}

/* start: pt_trace_start with headers given as name, value, ..., NULL. */
static bool start(const struct pt_trace_config *cfg, struct pt_trace_ctx *ctx, ...)
{
    struct head hd;
    va_list ap;
    bool rc;

    va_start(ap, ctx);
    rc = pt_trace_start(g_tw, cfg, head_v(&hd, ap), ctx);
    va_end(ap);
    return rc;
}

static void ring_clear(void)
{
    while (pt_trace__ring_peek(WID) != NULL)
        pt_trace__ring_pop(WID);
}

static void info_defaults(struct pt_trace_request_info *in)
{
    memset(in, 0, sizeof(*in));
    in->method = PT_STR_LIT("GET");
    in->authority = PT_STR_LIT("Example.com");
    in->path = PT_STR_LIT("/foo?x=1");
    in->scheme = PT_STR_LIT("https");
    in->protocol = PT_STR_LIT("HTTP/1.1");
    in->user_agent = PT_STR_LIT("curl/8.0");
    in->request_id = PT_STR_LIT("0f8b1c1e-7a4b-4c9e-9d3a-2f1e0a9b8c7d");
    in->peer_ip = PT_STR_LIT("192.0.2.10");
    in->upstream_address = PT_STR_LIT("10.1.2.3:8080");
    in->cluster_name = PT_STR_LIT("cluster_quote_default_default");
    in->stats_name = PT_STR_LIT("quote_default");
    in->status = 200;
    in->upstream_status = 200;
    in->bytes_received = 123;
    in->bytes_sent = 4567;
}

/* finish_one: one sampled request through start, upstream and finish. */
static void finish_one(const struct pt_trace_config *cfg, const struct pt_trace_request_info *in)
{
    struct pt_trace_ctx ctx;

    assert_true(start(cfg, &ctx, "user-agent", "curl/8.0", NULL));
    assert_true(ctx.flags & PT_TRACE_F_SAMPLED);
    pt_trace_upstream_begin(&ctx);
    pt_trace_upstream_end(&ctx);
    pt_trace_finish(g_tw, cfg, &ctx, in);
    assert_int_equal(ctx.flags, 0);
}

static bool is_hex(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static const char *tagv(json_t *span, const char *key)
{
    return jstr(json_object_get(span, "tags"), key);
}

/* check_span: the zipkin2-api.yaml Span schema (required fields, patterns and types). */
static void check_span(json_t *s)
{
    const char *k, *v;
    json_t *tags, *val, *le, *ann;

    assert_true(json_is_object(s));
    assert_non_null(jstr(s, "traceId"));
    assert_true(is_hex(jstr(s, "traceId"), 16, 16) || is_hex(jstr(s, "traceId"), 32, 32));
    assert_true(is_hex(jstr(s, "id"), 16, 16));
    if (json_object_get(s, "parentId") != NULL)
        assert_true(is_hex(jstr(s, "parentId"), 16, 16));
    assert_string_equal(jstr(s, "kind"), "CLIENT");
    assert_null(json_object_get(s, "shared")); /* only SERVER spans share */
    assert_true(json_is_integer(json_object_get(s, "timestamp")));
    assert_true(json_integer_value(json_object_get(s, "timestamp")) > 1500000000000000LL);
    assert_true(json_is_integer(json_object_get(s, "duration")));
    assert_true(json_integer_value(json_object_get(s, "duration")) >= 1);
    le = json_object_get(s, "localEndpoint");
    assert_true(json_is_object(le));
    assert_string_equal(jstr(le, "serviceName"), "ambassador-default");
    assert_string_equal(jstr(le, "ipv4"), "10.0.0.7");
    assert_null(json_object_get(le, "port"));
    ann = json_object_get(s, "annotations");
    assert_true(json_is_array(ann) && json_array_size(ann) == 1);
    assert_true(json_is_integer(json_object_get(json_array_get(ann, 0), "timestamp")));
    assert_string_equal(jstr(json_array_get(ann, 0), "value"), "cr");
    tags = json_object_get(s, "tags");
    assert_true(json_is_object(tags));
    json_object_foreach(tags, k, val) {
        assert_true(json_is_string(val));
        v = json_string_value(val);
        assert_true(strlen(v) > 0); /* empty values are left out */
    }
}

/* encode_ring: the spans of the oldest record as parsed JSON: [router?, hcm]. */
static json_t *encode_ring(const struct pt_trace_config *cfg, json_t **child)
{
    const struct pt_trace_record *rec = pt_trace__ring_peek(WID);
    char buf[16384];
    json_error_t e;
    json_t *hcm;
    size_t n;

    assert_non_null(rec);
    n = pt_zipkin__encode_span(cfg, rec, false, buf, sizeof(buf));
    assert_true(n > 0);
    hcm = json_loadb(buf, n, 0, &e);
    if (hcm == NULL)
        fail_msg("bad JSON: %s: %.*s", e.text, (int)n, buf);
    *child = NULL;
    n = pt_zipkin__encode_span(cfg, rec, true, buf, sizeof(buf));
    if (n > 0) {
        *child = json_loadb(buf, n, 0, &e);
        if (*child == NULL)
            fail_msg("bad JSON: %s: %.*s", e.text, (int)n, buf);
    }
    assert_int_equal(pt_zipkin__encode_span(cfg, rec, false, buf, 64), 0); /* too small */
    pt_trace__ring_pop(WID);
    return hcm;
}

/* --- B3 extraction -------------------------------------------------------------------------- */

static void test_b3_single(void **state)
{
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;
    struct pt_trace_ctx ctx;

    res_defaults(&r);
    cfg = make_cfg(&r, 0);
    assert_true(start(cfg, &ctx, "b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90", NULL));
    assert_int_equal(ctx.flags, PT_TRACE_F_ACTIVE | PT_TRACE_F_SAMPLED | PT_TRACE_F_PARENT);
    assert_true(ctx.trace_hi == 0x80f198ee56343ba8ull && ctx.trace_lo == 0x64fe8b2a57d3eff7ull);
    assert_true(ctx.parent_id == 0xe457b5a2e4d86bd1ull);
    assert_true(ctx.span_id != ctx.parent_id && ctx.child_id != ctx.span_id && ctx.span_id != 0);

    /* 64-bit, no flag: the decision (100%) stands */
    assert_true(start(cfg, &ctx, "b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1", NULL));
    assert_true(ctx.trace_hi == 0 && ctx.trace_lo == 0x64fe8b2a57d3eff7ull);
    assert_true(ctx.flags & PT_TRACE_F_SAMPLED);
    /* 0: a context that is not sampled; still active (headers go upstream with sampled 0) */
    assert_true(start(cfg, &ctx, "b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-0", NULL));
    assert_int_equal(ctx.flags, PT_TRACE_F_ACTIVE | PT_TRACE_F_PARENT);
    /* d: debug counts as sampled */
    assert_true(start(cfg, &ctx, "b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-d", NULL));
    assert_int_equal(ctx.flags, PT_TRACE_F_ACTIVE | PT_TRACE_F_PARENT | PT_TRACE_F_SAMPLED | PT_TRACE_F_DEBUG);
    /* upper-case hex and header name */
    assert_true(start(cfg, &ctx, "B3", "64FE8B2A57D3EFF7-E457B5A2E4D86BD1-1-05E3AC9A4F6E3B90", NULL));
    assert_true(ctx.trace_lo == 0x64fe8b2a57d3eff7ull && (ctx.flags & PT_TRACE_F_PARENT));
    /* a lone sampling flag: a root span with that decision */
    assert_true(start(cfg, &ctx, "b3", "0", NULL));
    assert_int_equal(ctx.flags, PT_TRACE_F_ACTIVE);
    assert_true(ctx.trace_lo == ctx.span_id && ctx.trace_hi != 0);
    assert_true(start(cfg, &ctx, "b3", "1", NULL));
    assert_int_equal(ctx.flags, PT_TRACE_F_ACTIVE | PT_TRACE_F_SAMPLED);
    /* b3 wins over x-b3-* */
    assert_true(start(cfg, &ctx, "x-b3-traceid", "1111111111111111", "x-b3-spanid", "2222222222222222",
                      "b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1", NULL));
    assert_true(ctx.trace_lo == 0x64fe8b2a57d3eff7ull && ctx.parent_id == 0xe457b5a2e4d86bd1ull);
    pt_trace_config_release(cfg);
}

static void test_b3_single_malformed(void **state)
{
    static const char *bad[] = {
        "", "2", "x", "01",
        "80f198ee56343ba8-e457b5a2e4d86bd",            /* short span id */
        "80f198ee56343ba8xe457b5a2e4d86bd1",           /* no dash */
        "80f198ee56343ba8-e457b5a2e4d86bd1-x",         /* bad flag */
        "80f198ee56343ba8-e457b5a2e4d86bd1-1-",        /* empty parent */
        "80f198ee56343ba8-e457b5a2e4d86bd1-1-zz",      /* bad parent */
        "80f198ee56343ba8-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b9", /* short parent */
        "80f198ee56343ba8-e457b5a2e4d86bd1-05e3ac9a4f6e3b90",  /* parent without a flag */
        "80f198ee56343ba8-e457b5a2e4d86bd1-",
        "80f198ee56343ba8-e457b5a2e4d86bd1+1",
        "g0f198ee56343ba8-e457b5a2e4d86bd1",           /* not hex */
        "0000000000000000-e457b5a2e4d86bd1",           /* zero trace id */
        "80f198ee56343ba8-0000000000000000",           /* zero span id */
        "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-1", /* too long */
        "80f198ee56343ba864fe8b2a57d3eff-e457b5a2e4d86bd1", /* 31-digit trace id */
    };
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;
    struct pt_trace_ctx ctx;
    char out[PT_TRACE_INJECT_MAX];

    res_defaults(&r);
    cfg = make_cfg(&r, 0);
    for (size_t i = 0; i < PT_ARRAY_SIZE(bad); i++) {
        ctx.flags = 0xff;
        if (start(cfg, &ctx, "b3", bad[i], NULL))
            fail_msg("b3 \"%s\" accepted", bad[i]);
        assert_int_equal(ctx.flags, 0);
        assert_int_equal(pt_trace_inject(&ctx, out, sizeof(out)), 0);
    }
    /* a malformed b3 is not rescued by valid x-b3-* (b3 is tried first) */
    assert_false(start(cfg, &ctx, "b3", "zz", "x-b3-traceid", "1111111111111111", "x-b3-spanid",
                       "2222222222222222", NULL));
    /* tracing off */
    assert_false(start(NULL, &ctx, "b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1", NULL));
    pt_trace_config_release(cfg);
}

static void test_b3_multi(void **state)
{
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;
    struct pt_trace_ctx ctx;

    res_defaults(&r);
    cfg = make_cfg(&r, 0);
    assert_true(start(cfg, &ctx, "X-B3-TraceId", "463ac35c9f6413ad48485a3953bb6124", "X-B3-SpanId",
                      "a2fb4a1d1a96d312", "X-B3-ParentSpanId", "0020000000000001", "X-B3-Sampled", "true", NULL));
    assert_int_equal(ctx.flags, PT_TRACE_F_ACTIVE | PT_TRACE_F_SAMPLED | PT_TRACE_F_PARENT);
    assert_true(ctx.trace_hi == 0x463ac35c9f6413adull && ctx.trace_lo == 0x48485a3953bb6124ull);
    assert_true(ctx.parent_id == 0xa2fb4a1d1a96d312ull);
    /* 64-bit trace id stays 64-bit; sampled 0 */
    assert_true(start(cfg, &ctx, "x-b3-traceid", "48485a3953bb6124", "x-b3-spanid", "a2fb4a1d1a96d312",
                      "x-b3-sampled", "0", NULL));
    assert_true(ctx.trace_hi == 0 && ctx.flags == (PT_TRACE_F_ACTIVE | PT_TRACE_F_PARENT));
    /* anything but 1/true is "not sampled"; x-b3-flags is never read */
    assert_true(start(cfg, &ctx, "x-b3-traceid", "48485a3953bb6124", "x-b3-spanid", "a2fb4a1d1a96d312",
                      "x-b3-sampled", "yes", NULL));
    assert_false(ctx.flags & PT_TRACE_F_SAMPLED);
    assert_true(start(cfg, &ctx, "x-b3-traceid", "48485a3953bb6124", "x-b3-spanid", "a2fb4a1d1a96d312",
                      "x-b3-flags", "1", "x-b3-sampled", "0", NULL));
    assert_false(ctx.flags & (PT_TRACE_F_SAMPLED | PT_TRACE_F_DEBUG));
    /* the first value counts */
    assert_true(start(cfg, &ctx, "x-b3-traceid", "48485a3953bb6124", "x-b3-spanid", "a2fb4a1d1a96d312",
                      "x-b3-sampled", "1", "x-b3-sampled", "0", NULL));
    assert_true(ctx.flags & PT_TRACE_F_SAMPLED);
    /* a trace id without a span id: no context, a new root */
    assert_true(start(cfg, &ctx, "x-b3-traceid", "48485a3953bb6124", NULL));
    assert_int_equal(ctx.flags, PT_TRACE_F_ACTIVE | PT_TRACE_F_SAMPLED);
    assert_true(ctx.trace_lo == ctx.span_id);
    /* empty parent is fine */
    assert_true(start(cfg, &ctx, "x-b3-traceid", "48485a3953bb6124", "x-b3-spanid", "a2fb4a1d1a96d312",
                      "x-b3-parentspanid", "", NULL));
    /* malformed */
    assert_false(start(cfg, &ctx, "x-b3-traceid", "48485a3953bb61240", "x-b3-spanid", "a2fb4a1d1a96d312", NULL));
    assert_false(start(cfg, &ctx, "x-b3-traceid", "48485a3953bb6124", "x-b3-spanid", "zz", NULL));
    assert_false(start(cfg, &ctx, "x-b3-traceid", "48485a3953bb6124", "x-b3-spanid", "", NULL));
    assert_false(start(cfg, &ctx, "x-b3-traceid", "48485a3953bb6124", "x-b3-spanid", "a2fb4a1d1a96d312",
                       "x-b3-parentspanid", "nothex", NULL));
    assert_false(start(cfg, &ctx, "x-b3-traceid", "0", "x-b3-spanid", "a2fb4a1d1a96d312", NULL));
    pt_trace_config_release(cfg);
}

static void test_root_ids(void **state)
{
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;
    struct pt_trace_ctx ctx;
    uint64_t prev = 0;

    res_defaults(&r);
    cfg = make_cfg(&r, 0);
    for (int i = 0; i < 1000; i++) {
        assert_true(start(cfg, &ctx, NULL));
        assert_int_equal(ctx.flags, PT_TRACE_F_ACTIVE | PT_TRACE_F_SAMPLED);
        assert_true(ctx.trace_hi != 0 && ctx.trace_lo == ctx.span_id);
        assert_true(ctx.child_id != ctx.span_id && ctx.span_id != prev);
        prev = ctx.span_id;
    }
    pt_trace_config_release(cfg);
    r.trace_id_128bit = false;
    cfg = make_cfg(&r, 0);
    assert_true(start(cfg, &ctx, NULL));
    assert_true(ctx.trace_hi == 0 && ctx.trace_lo == ctx.span_id);
    pt_trace_config_release(cfg);
}

/* --- sampling ------------------------------------------------------------------------------- */

/* sampled_share: how many of 10000 requests (with <ctid> or not) are sampled. */
static int sampled_count(double overall, double random, double client, bool ctid, int *client_reasons)
{
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;
    struct pt_trace_ctx ctx;
    int n = 0;

    res_defaults(&r);
    r.sampling_overall = overall;
    r.sampling_random = random;
    r.sampling_client = client;
    cfg = make_cfg(&r, 0);
    if (client_reasons)
        *client_reasons = 0;
    for (int i = 0; i < 10000; i++) {
        bool ok = ctid ? start(cfg, &ctx, "x-client-trace-id", "abc", NULL) : start(cfg, &ctx, NULL);
        assert_true(ok);
        n += (ctx.flags & PT_TRACE_F_SAMPLED) != 0;
        if (client_reasons && ctx.reason == PT_TRACE_REASON_CLIENT) {
            assert_int_equal(pt_trace_reason_char(&ctx), 'b');
            (*client_reasons)++;
        }
        ctx.flags = 0;
    }
    pt_trace_config_release(cfg);
    return n;
}

static void test_sampling(void **state)
{
    int n, c;

    n = sampled_count(10, 100, 100, false, NULL);
    assert_in_range(n, 800, 1200);
    n = sampled_count(100, 25, 100, false, NULL);
    assert_in_range(n, 2000, 3000);
    /* random and overall test one draw (Envoy: one x-request-id value): 50% and 10% give 10% */
    n = sampled_count(10, 50, 100, false, NULL);
    assert_in_range(n, 800, 1200);
    /* client sampling only applies with x-client-trace-id */
    n = sampled_count(100, 0, 50, true, &c);
    assert_in_range(n, 4000, 6000);
    assert_int_equal(c, n);
    assert_int_equal(sampled_count(100, 0, 100, false, NULL), 0);
    /* overall caps client sampling too */
    n = sampled_count(10, 0, 100, true, NULL);
    assert_in_range(n, 800, 1200);
    assert_int_equal(sampled_count(0, 100, 100, true, NULL), 0);
    assert_int_equal(sampled_count(100, 100, 100, false, NULL), 10000);
}

static void test_sampling_incoming_flag_wins(void **state)
{
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;
    struct pt_trace_ctx ctx;

    res_defaults(&r);
    r.sampling_overall = 0;
    cfg = make_cfg(&r, 0);
    assert_true(start(cfg, &ctx, "x-b3-sampled", "1", NULL)); /* no ids: a root, but sampled */
    assert_int_equal(ctx.flags, PT_TRACE_F_ACTIVE | PT_TRACE_F_SAMPLED);
    assert_int_equal(pt_trace_reason_char(&ctx), '4');
    assert_true(start(cfg, &ctx, "b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1", NULL));
    assert_false(ctx.flags & PT_TRACE_F_SAMPLED);
    pt_trace_config_release(cfg);
}

/* --- injection ------------------------------------------------------------------------------ */

static void test_inject(void **state)
{
    struct pt_trace_ctx ctx = { 0 };
    char out[PT_TRACE_INJECT_MAX + 1];
    size_t n;

    ctx.flags = PT_TRACE_F_ACTIVE | PT_TRACE_F_SAMPLED;
    ctx.trace_hi = 0x463ac35c9f6413adull;
    ctx.trace_lo = 0x48485a3953bb6124ull;
    ctx.span_id = 0x00f067aa0ba902b7ull;
    ctx.child_id = 0xa2fb4a1d1a96d312ull;
    n = pt_trace_inject(&ctx, out, sizeof(out));
    out[n] = '\0';
    assert_string_equal(out, "x-b3-traceid: 463ac35c9f6413ad48485a3953bb6124\r\n"
                             "x-b3-spanid: a2fb4a1d1a96d312\r\n"
                             "x-b3-parentspanid: 00f067aa0ba902b7\r\n"
                             "x-b3-sampled: 1\r\n");
    ctx.trace_hi = 0;
    ctx.flags = PT_TRACE_F_ACTIVE;
    n = pt_trace_inject(&ctx, out, sizeof(out));
    out[n] = '\0';
    assert_string_equal(out, "x-b3-traceid: 48485a3953bb6124\r\n"
                             "x-b3-spanid: a2fb4a1d1a96d312\r\n"
                             "x-b3-parentspanid: 00f067aa0ba902b7\r\n"
                             "x-b3-sampled: 0\r\n");
    assert_int_equal(pt_trace_inject(&ctx, out, PT_TRACE_INJECT_MAX - 1), 0);
    ctx.flags = 0;
    assert_int_equal(pt_trace_inject(&ctx, out, sizeof(out)), 0);

    assert_true(pt_trace_is_b3_header(PT_STR_LIT("X-B3-TraceId")));
    assert_true(pt_trace_is_b3_header(PT_STR_LIT("x-b3-spanid")));
    assert_true(pt_trace_is_b3_header(PT_STR_LIT("x-b3-parentspanid")));
    assert_true(pt_trace_is_b3_header(PT_STR_LIT("x-b3-sampled")));
    assert_false(pt_trace_is_b3_header(PT_STR_LIT("x-b3-flags")));
    assert_false(pt_trace_is_b3_header(PT_STR_LIT("b3")));
    assert_false(pt_trace_is_b3_header(PT_STR_LIT("traceparent")));
    assert_false(pt_trace_is_b3_header(PT_STR_LIT("tracestate")));
}

/* --- spans ---------------------------------------------------------------------------------- */

static void test_spans_json(void **state)
{
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;
    struct pt_trace_request_info in;
    struct pt_trace_ctx ctx;
    json_t *hcm, *child;
    char id[17];

    res_defaults(&r);
    cfg = make_cfg(&r, 0);
    ring_clear();
    info_defaults(&in);
    assert_true(start(cfg, &ctx, "b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1", "x-client-trace-id",
                      "ctid-1", NULL));
    pt_trace_upstream_begin(&ctx);
    pt_trace_upstream_end(&ctx);
    pt_trace_finish(g_tw, cfg, &ctx, &in);
    assert_int_equal(pt_trace__ring_fill(WID), 1);
    hcm = encode_ring(cfg, &child);
    assert_non_null(child);
    check_span(hcm);
    check_span(child);

    assert_string_equal(jstr(hcm, "traceId"), "80f198ee56343ba864fe8b2a57d3eff7");
    assert_string_equal(jstr(hcm, "parentId"), "e457b5a2e4d86bd1");
    assert_string_equal(jstr(hcm, "name"), "example.com"); /* the authority, lowercase */
    assert_string_equal(jstr(child, "traceId"), "80f198ee56343ba864fe8b2a57d3eff7");
    assert_string_equal(jstr(child, "parentId"), jstr(hcm, "id"));
    assert_string_equal(jstr(child, "name"), "router quote_default egress");
    snprintf(id, sizeof(id), "%016llx", (unsigned long long)ctx.child_id);
    assert_string_equal(jstr(child, "id"), id); /* the id the upstream saw */

    assert_string_equal(tagv(hcm, "node_id"), "test-id");
    assert_string_equal(tagv(hcm, "guid:x-request-id"), "0f8b1c1e-7a4b-4c9e-9d3a-2f1e0a9b8c7d");
    assert_string_equal(tagv(hcm, "guid:x-client-trace-id"), "ctid-1");
    assert_string_equal(tagv(hcm, "http.url"), "https://Example.com/foo?x=1");
    assert_string_equal(tagv(hcm, "http.method"), "GET");
    assert_string_equal(tagv(hcm, "downstream_cluster"), "-");
    assert_string_equal(tagv(hcm, "user_agent"), "curl/8.0");
    assert_string_equal(tagv(hcm, "http.protocol"), "HTTP/1.1");
    assert_string_equal(tagv(hcm, "peer.address"), "192.0.2.10");
    assert_string_equal(tagv(hcm, "request_size"), "123");
    assert_string_equal(tagv(hcm, "response_size"), "4567");
    assert_string_equal(tagv(hcm, "component"), "proxy");
    assert_string_equal(tagv(hcm, "upstream_cluster"), "cluster_quote_default_default");
    assert_string_equal(tagv(hcm, "upstream_cluster.name"), "quote_default");
    assert_string_equal(tagv(hcm, "http.status_code"), "200");
    assert_string_equal(tagv(hcm, "response_flags"), "-");
    assert_null(tagv(hcm, "error"));
    assert_null(tagv(hcm, "zone"));

    assert_string_equal(tagv(child, "upstream_address"), "10.1.2.3:8080");
    assert_string_equal(tagv(child, "peer.address"), "10.1.2.3:8080"); /* with the port, as Envoy */
    assert_string_equal(tagv(child, "http.protocol"), "HTTP/1.1");
    assert_string_equal(tagv(child, "component"), "proxy");
    assert_string_equal(tagv(child, "upstream_cluster.name"), "quote_default");
    assert_string_equal(tagv(child, "http.status_code"), "200");
    assert_null(tagv(child, "node_id"));
    /* the router span lies within the HCM span */
    assert_true(json_integer_value(json_object_get(child, "timestamp")) >=
                json_integer_value(json_object_get(hcm, "timestamp")));
    json_decref(hcm);
    json_decref(child);

    /* a local reply without an upstream: one span, 5xx marks error, root span has no parentId */
    assert_true(start(cfg, &ctx, NULL));
    in.status = 503;
    in.user_agent = pt_str_make("", 0);
    in.cluster_name = in.stats_name = pt_str_make("", 0);
    in.response_flags = PT_STR_LIT("UF");
    pt_trace_finish(g_tw, cfg, &ctx, &in);
    hcm = encode_ring(cfg, &child);
    assert_null(child);
    check_span(hcm);
    assert_null(json_object_get(hcm, "parentId"));
    assert_string_equal(tagv(hcm, "error"), "true");
    assert_string_equal(tagv(hcm, "user_agent"), "-");
    assert_string_equal(tagv(hcm, "response_flags"), "UF");
    assert_null(tagv(hcm, "upstream_cluster"));
    assert_int_equal(strlen(jstr(hcm, "traceId")), 32);
    json_decref(hcm);
    pt_trace_config_release(cfg);
}

static void test_spans_hostile_strings(void **state)
{
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;
    struct pt_trace_request_info in;
    json_t *hcm, *child;
    char longpath[600];

    res_defaults(&r);
    cfg = make_cfg(&r, 0);
    ring_clear();
    info_defaults(&in);
    memset(longpath, 'a', sizeof(longpath));
    longpath[0] = '/';
    in.path = pt_str_make(longpath, sizeof(longpath));
    in.user_agent = PT_STR_LIT("a\"b\\c\x01\n\xff\xc3\xa9\xed\xa0\x80z");
    in.upstream_status = 0; /* upstream timed out */
    in.status = 504;
    finish_one(cfg, &in);
    hcm = encode_ring(cfg, &child);
    check_span(hcm);
    check_span(child);
    /* invalid UTF-8 became U+FFFD, valid é stayed, controls escaped */
    assert_string_equal(tagv(hcm, "user_agent"), "a\"b\\c\x01\n\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz");
    assert_int_equal(strlen(tagv(hcm, "http.url")), strlen("https://Example.com") + PT_TRACE_PATH_MAX);
    assert_string_equal(tagv(child, "http.status_code"), "0");
    assert_string_equal(tagv(child, "error"), "true");
    assert_string_equal(tagv(hcm, "http.status_code"), "504");
    json_decref(hcm);
    json_decref(child);
    pt_trace_config_release(cfg);
}

/* Special bytes at every offset of a long value, so that the 8-bytes-at-a-time escaper meets
 * each at each position of its word; and every buffer size down from the exact one, so that the
 * byte-wise path near the end of the buffer writes the same bytes or reports that they do not
 * fit. */
static void test_spans_escape_positions(void **state)
{
    static const char *specials[] = { "\"", "\\", "\x01", "\x7f", "\xff", "\xc3\xa9", "\xe2\x82" };
    static const char *escaped[] = { "\"", "\\", "\x01", "\x7f", "\xef\xbf\xbd", "\xc3\xa9", "\xef\xbf\xbd\xef\xbf\xbd" };
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;
    struct pt_trace_request_info in;
    char ua[64], want[64], full[16384], part[16384];
    json_t *hcm, *child;

    res_defaults(&r);
    cfg = make_cfg(&r, 0);
    ring_clear();
    info_defaults(&in);
    for (size_t k = 0; k < PT_ARRAY_SIZE(specials); k++) {
        for (size_t pos = 0; pos < 20; pos++) {
            const struct pt_trace_record *rec;
            size_t n;
            memset(ua, 'a', 20);
            memcpy(ua + pos, specials[k], strlen(specials[k]));
            n = pos + strlen(specials[k]) > 20 ? pos + strlen(specials[k]) : 20;
            in.user_agent = pt_str_make(ua, n);
            memset(want, 'a', pos);
            snprintf(want + pos, sizeof(want) - pos, "%s%.*s", escaped[k], (int)(n - pos - strlen(specials[k])),
                     "aaaaaaaaaaaaaaaaaaaa");
            finish_one(cfg, &in);
            rec = pt_trace__ring_peek(WID);
            n = pt_zipkin__encode_span(cfg, rec, false, full, sizeof(full));
            assert_true(n > 0);
            for (size_t cap = n; cap + 40 > n; cap--) {
                size_t m = pt_zipkin__encode_span(cfg, rec, false, part, cap);
                assert_int_equal(m, cap == n ? n : 0);
                if (m > 0)
                    assert_memory_equal(part, full, n);
            }
            hcm = encode_ring(cfg, &child);
            assert_string_equal(tagv(hcm, "user_agent"), want);
            json_decref(hcm);
            json_decref(child);
        }
    }
    pt_trace_config_release(cfg);
}

static void test_custom_tags_and_tag_headers(void **state)
{
    struct pt_custom_tag tags[] = {
        { .tag = "env", .literal = "prod" },
        { .tag = "region", .env_name = "PT_TEST_REGION_UNSET", .env_default = "eu" },
        { .tag = "pod", .env_name = "PT_TEST_POD" },
        { .tag = "tenant", .header_name = "X-Tenant", .header_default = "none" },
        { .tag = "who", .header_name = "x-user" },
        { .tag = "component", .literal = "gateway" }, /* replaces the standard tag */
        { .tag = "env", .literal = "dup" },           /* a repeated name is dropped */
    };
    const char *tag_headers[] = { ":authority", ":path", "x-user", "x-missing", ":method" };
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;
    struct pt_trace_request_info in;
    struct pt_trace_ctx ctx;
    json_t *spans[2];

    setenv("PT_TEST_POD", "pod-7", 1);
    res_defaults(&r);
    r.custom_tags = tags;
    r.ncustom_tags = PT_ARRAY_SIZE(tags);
    r.tag_headers = tag_headers;
    r.ntag_headers = PT_ARRAY_SIZE(tag_headers);
    cfg = make_cfg(&r, 0);
    assert_int_equal(cfg->nfixed, 4);
    assert_int_equal(cfg->nhdr, 2 + 5);
    ring_clear();
    info_defaults(&in);
    assert_true(start(cfg, &ctx, "X-User", "alice", "x-user", "bob", NULL));
    pt_trace_upstream_begin(&ctx);
    pt_trace_finish(g_tw, cfg, &ctx, &in); /* no upstream_end: the router span ends now */
    spans[0] = encode_ring(cfg, &spans[1]);
    for (int i = 0; i < 2; i++) { /* custom tags go on both spans */
        json_t *s = spans[i];
        check_span(s);
        assert_string_equal(tagv(s, "env"), "prod");
        assert_string_equal(tagv(s, "region"), "eu");
        assert_string_equal(tagv(s, "pod"), "pod-7");
        assert_string_equal(tagv(s, "tenant"), "none");
        assert_string_equal(tagv(s, "who"), "alice");
        assert_string_equal(tagv(s, "x-user"), "alice");
        assert_string_equal(tagv(s, ":authority"), "example.com");
        assert_string_equal(tagv(s, ":path"), "/foo?x=1");
        assert_string_equal(tagv(s, ":method"), "GET");
        assert_null(tagv(s, "x-missing"));
        assert_string_equal(tagv(s, "component"), "gateway");
        json_decref(s);
    }
    /* a tag config that goes away with the ctx unsampled captures nothing */
    assert_true(start(cfg, &ctx, "x-b3-sampled", "0", "x-user", "carol", NULL));
    assert_int_equal(ctx.flags & PT_TRACE_F_SAMPLED, 0);
    pt_trace_finish(g_tw, cfg, &ctx, &in);
    assert_int_equal(pt_trace__ring_fill(WID), 0);
    pt_trace_config_release(cfg);
    unsetenv("PT_TEST_POD");
}

static void test_ring_full_drops(void **state)
{
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;
    struct pt_trace_request_info in;
    uint64_t dropped;

    res_defaults(&r);
    cfg = make_cfg(&r, 0);
    ring_clear();
    info_defaults(&in);
    for (int i = 0; i < PT_TRACE_RING_SLOTS; i++)
        finish_one(cfg, &in);
    assert_int_equal(pt_trace__ring_fill(WID), PT_TRACE_RING_SLOTS);
    dropped = pt_zipkin_spans_dropped();
    finish_one(cfg, &in);
    assert_int_equal(pt_trace__ring_fill(WID), PT_TRACE_RING_SLOTS);
    assert_int_equal(pt_zipkin_spans_dropped() - dropped, 2);
    ring_clear();
    finish_one(cfg, &in);
    assert_int_equal(pt_trace__ring_fill(WID), 1);
    ring_clear();
    pt_trace_config_release(cfg);
}

/* --- calls to policy services --------------------------------------------------------------- */

#define CALL_EPOCH 1700000000123456ull /* the request's start, epoch us (fixed for exact JSON) */
#define CALL_MONO 5000000ull           /* the same instant, monotonic */

/* call_encode: the call record at the head of the ring as JSON into <out> (NUL-terminated);
 * pops it. The HCM encoding of a call record is empty. */
static size_t call_encode(const struct pt_trace_config *cfg, char *out, size_t cap)
{
    const struct pt_trace_record *rec = pt_trace__ring_peek(WID);
    size_t n;

    assert_non_null(rec);
    assert_true(rec->flags & PT_TRACE_F_CALL);
    assert_int_equal(pt_zipkin__encode_span(cfg, rec, false, out, cap), 0);
    n = pt_zipkin__encode_span(cfg, rec, true, out, cap - 1);
    assert_true(n > 0);
    out[n] = '\0';
    for (size_t c = n - 1; c + 8 > n; c--) /* a buffer one byte short: nothing */
        assert_int_equal(pt_zipkin__encode_span(cfg, rec, true, out + n + 1, c), 0);
    pt_trace__ring_pop(WID);
    return n;
}

/* call_start: a sampled request continuing a known 128-bit context, with fixed clocks. */
static void call_start(const struct pt_trace_config *cfg, struct pt_trace_ctx *ctx)
{
    assert_true(start(cfg, ctx, "b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1", NULL));
    ctx->start_us = CALL_EPOCH;
    ctx->start_mono_us = CALL_MONO;
}

/* call_times: the call ran from +250 us to +1500 us of the request (begin read the clock; the
 * test fixes it, keeping begin's epoch arithmetic, which is checked here). */
static void call_times(struct pt_trace_call *call)
{
    assert_true(call->start_mono_us >= CALL_MONO);
    assert_int_equal(call->start_us, CALL_EPOCH + (call->start_mono_us - CALL_MONO));
    call->start_mono_us = CALL_MONO + 250;
    call->start_us = CALL_EPOCH + 250;
    call->end_mono_us = CALL_MONO + 1500;
}

static void test_call_span_grpc_json(void **state)
{
    struct pt_custom_tag tags[] = { { .tag = "env", .literal = "prod" } };
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;
    struct pt_trace_ctx ctx;
    struct pt_trace_call call;
    struct pt_trace_call_info ci = {
        .cluster = PT_STR_LIT("cluster_extauth_auth_default"),
        .upstream_address = PT_STR_LIT("127.0.0.1:3000"),
        .kind = PT_TRACE_CALL_GRPC,
        .ntags = 2,
        .tag_key = { PT_STR_LIT("grpc.status_code"), PT_STR_LIT("ext_authz_status") },
        .tag_value = { PT_STR_LIT("0"), PT_STR_LIT("ext_authz_ok") },
    };
    char out[4096], want[4096];
    uint64_t id;

    res_defaults(&r);
    r.custom_tags = tags; /* not for call spans: Envoy's async clients use no custom tags */
    r.ncustom_tags = 1;
    cfg = make_cfg(&r, 0);
    ring_clear();
    call_start(cfg, &ctx);
    id = pt_trace_call_begin(g_tw, &ctx, &call);
    assert_true(id != 0 && id != ctx.span_id && id != ctx.child_id);
    assert_int_equal(call.span_id, id);
    call_times(&call);
    pt_trace_call_end(g_tw, &call, &ci);
    assert_int_equal(call.flags, 0);
    pt_trace_call_end(g_tw, &call, &ci); /* a second end records nothing */
    assert_int_equal(pt_trace__ring_fill(WID), 1);
    call_encode(cfg, out, sizeof(out));
    snprintf(want, sizeof(want),
             "{\"traceId\":\"80f198ee56343ba864fe8b2a57d3eff7\",\"parentId\":\"%016llx\",\"id\":\"%016llx\","
             "\"kind\":\"CLIENT\",\"name\":\"async cluster_extauth_auth_default egress\","
             "\"timestamp\":1700000000123706,\"duration\":1250,"
             "\"localEndpoint\":{\"serviceName\":\"ambassador-default\",\"ipv4\":\"10.0.0.7\"},"
             "\"annotations\":[{\"timestamp\":1700000000124956,\"value\":\"cr\"}],"
             "\"tags\":{\"upstream_cluster\":\"cluster_extauth_auth_default\","
             "\"upstream_address\":\"127.0.0.1:3000\",\"component\":\"proxy\","
             "\"grpc.status_code\":\"0\",\"ext_authz_status\":\"ext_authz_ok\"}}",
             (unsigned long long)ctx.span_id, (unsigned long long)id);
    assert_string_equal(out, want);

    /* a failed rate-limit call: error=true after the caller's tags; no address, no connection */
    assert_true(pt_trace_call_begin(g_tw, &ctx, &call) != id);
    call_times(&call);
    ci = (struct pt_trace_call_info){
        .cluster = PT_STR_LIT("cluster_ratelimit_default"),
        .error = true,
        .ntags = 3,
        .tag_key = { PT_STR_LIT("grpc.status_code"), PT_STR_LIT("empty"), PT_STR_LIT("ratelimit_status") },
        .tag_value = { PT_STR_LIT("14"), PT_STR_LIT(""), PT_STR_LIT("error") },
    };
    pt_trace_call_end(g_tw, &call, &ci);
    call_encode(cfg, out, sizeof(out));
    snprintf(want, sizeof(want),
             "{\"traceId\":\"80f198ee56343ba864fe8b2a57d3eff7\",\"parentId\":\"%016llx\",\"id\":\"%016llx\","
             "\"kind\":\"CLIENT\",\"name\":\"async cluster_ratelimit_default egress\","
             "\"timestamp\":1700000000123706,\"duration\":1250,"
             "\"localEndpoint\":{\"serviceName\":\"ambassador-default\",\"ipv4\":\"10.0.0.7\"},"
             "\"annotations\":[{\"timestamp\":1700000000124956,\"value\":\"cr\"}],"
             "\"tags\":{\"upstream_cluster\":\"cluster_ratelimit_default\",\"component\":\"proxy\","
             "\"grpc.status_code\":\"14\",\"ratelimit_status\":\"error\",\"error\":\"true\"}}",
             (unsigned long long)ctx.span_id, (unsigned long long)call.span_id);
    assert_string_equal(out, want);
    pt_trace_finish(g_tw, cfg, &ctx, &(struct pt_trace_request_info){ .status = 200 });
    ring_clear();
    pt_trace_config_release(cfg);
}

static void test_call_span_http_json(void **state)
{
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;
    struct pt_trace_ctx ctx;
    struct pt_trace_call call;
    struct pt_trace_call_info ci = {
        .cluster = PT_STR_LIT("Cluster_ExtAuth_auth_default"), /* the name is lowercased */
        .upstream_address = PT_STR_LIT("10.1.2.3:8080"),
        .status = 403,
        .kind = PT_TRACE_CALL_HTTP,
        .ntags = 2,
        .tag_key = { PT_STR_LIT("ext_authz_status"), PT_STR_LIT("ext_authz_http_status") },
        .tag_value = { PT_STR_LIT("ext_authz_unauthorized"), PT_STR_LIT("403") },
    };
    char out[4096], want[4096];

    res_defaults(&r);
    cfg = make_cfg(&r, 0);
    ring_clear();
    call_start(cfg, &ctx);
    ctx.flags |= PT_TRACE_F_DEBUG; /* as b3 "-d": the call span says it too */
    pt_trace_call_begin(g_tw, &ctx, &call);
    call_times(&call);
    pt_trace_call_end(g_tw, &call, &ci);
    call_encode(cfg, out, sizeof(out));
    snprintf(want, sizeof(want),
             "{\"traceId\":\"80f198ee56343ba864fe8b2a57d3eff7\",\"parentId\":\"%016llx\",\"id\":\"%016llx\","
             "\"kind\":\"CLIENT\",\"name\":\"async cluster_extauth_auth_default egress\","
             "\"timestamp\":1700000000123706,\"duration\":1250,\"debug\":true,"
             "\"localEndpoint\":{\"serviceName\":\"ambassador-default\",\"ipv4\":\"10.0.0.7\"},"
             "\"annotations\":[{\"timestamp\":1700000000124956,\"value\":\"cr\"}],"
             "\"tags\":{\"ext_authz_status\":\"ext_authz_unauthorized\",\"ext_authz_http_status\":\"403\","
             "\"http.protocol\":\"HTTP/1.1\",\"upstream_address\":\"10.1.2.3:8080\","
             "\"peer.address\":\"10.1.2.3:8080\",\"component\":\"proxy\","
             "\"upstream_cluster\":\"Cluster_ExtAuth_auth_default\","
             "\"upstream_cluster.name\":\"Cluster_ExtAuth_auth_default\",\"http.status_code\":\"403\","
             "\"response_flags\":\"-\"}}",
             (unsigned long long)ctx.span_id, (unsigned long long)call.span_id);
    assert_string_equal(out, want);

    /* a timeout: no answer, status 0, flags, error; a caller tag replaces a standard one */
    ctx.flags &= ~PT_TRACE_F_DEBUG;
    pt_trace_call_begin(g_tw, &ctx, &call);
    call_times(&call);
    ci = (struct pt_trace_call_info){
        .cluster = PT_STR_LIT("cluster_extauth_auth_default"),
        .stats_name = PT_STR_LIT("auth"),
        .response_flags = PT_STR_LIT("UT"),
        .kind = PT_TRACE_CALL_HTTP,
        .ntags = 9, /* more than PT_TRACE_CALL_TAGS: the first 4 */
        .tag_key = { PT_STR_LIT("ext_authz_status"), PT_STR_LIT("component"), PT_STR_LIT("a"), PT_STR_LIT("b") },
        .tag_value = { PT_STR_LIT("ext_authz_error"), PT_STR_LIT("auth"), PT_STR_LIT("1"), PT_STR_LIT("2") },
    };
    pt_trace_call_end(g_tw, &call, &ci);
    call_encode(cfg, out, sizeof(out));
    snprintf(want, sizeof(want),
             "{\"traceId\":\"80f198ee56343ba864fe8b2a57d3eff7\",\"parentId\":\"%016llx\",\"id\":\"%016llx\","
             "\"kind\":\"CLIENT\",\"name\":\"async cluster_extauth_auth_default egress\","
             "\"timestamp\":1700000000123706,\"duration\":1250,"
             "\"localEndpoint\":{\"serviceName\":\"ambassador-default\",\"ipv4\":\"10.0.0.7\"},"
             "\"annotations\":[{\"timestamp\":1700000000124956,\"value\":\"cr\"}],"
             "\"tags\":{\"ext_authz_status\":\"ext_authz_error\",\"component\":\"auth\",\"a\":\"1\",\"b\":\"2\","
             "\"http.protocol\":\"HTTP/1.1\",\"upstream_cluster\":\"cluster_extauth_auth_default\","
             "\"upstream_cluster.name\":\"auth\",\"http.status_code\":\"0\",\"response_flags\":\"UT\","
             "\"error\":\"true\"}}",
             (unsigned long long)ctx.span_id, (unsigned long long)call.span_id);
    assert_string_equal(out, want);
    pt_trace_finish(g_tw, cfg, &ctx, &(struct pt_trace_request_info){ .status = 200 });
    ring_clear();
    pt_trace_config_release(cfg);
}

static void test_call_inject(void **state)
{
    struct pt_trace_call call = { 0 };
    char out[PT_TRACE_INJECT_MAX + 1];
    size_t n;

    assert_int_equal(pt_trace_call_inject(&call, out, sizeof(out)), 0); /* all-zero: not traced */
    call.flags = PT_TRACE_F_ACTIVE | PT_TRACE_F_SAMPLED;
    call.trace_hi = 0x463ac35c9f6413adull;
    call.trace_lo = 0x48485a3953bb6124ull;
    call.parent_id = 0x00f067aa0ba902b7ull;
    call.span_id = 0x5b4185666d50f68bull;
    n = pt_trace_call_inject(&call, out, sizeof(out));
    out[n] = '\0';
    assert_string_equal(out, "x-b3-traceid: 463ac35c9f6413ad48485a3953bb6124\r\n"
                             "x-b3-spanid: 5b4185666d50f68b\r\n"
                             "x-b3-parentspanid: 00f067aa0ba902b7\r\n"
                             "x-b3-sampled: 1\r\n");
    call.trace_hi = 0;
    call.flags = PT_TRACE_F_ACTIVE;
    n = pt_trace_call_inject(&call, out, sizeof(out));
    out[n] = '\0';
    assert_string_equal(out, "x-b3-traceid: 48485a3953bb6124\r\n"
                             "x-b3-spanid: 5b4185666d50f68b\r\n"
                             "x-b3-parentspanid: 00f067aa0ba902b7\r\n"
                             "x-b3-sampled: 0\r\n");
    assert_int_equal(pt_trace_call_inject(&call, out, PT_TRACE_INJECT_MAX - 1), 0);
}

/* What begin takes from a real request, and when nothing is recorded. */
static void test_call_context(void **state)
{
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;
    struct pt_trace_ctx ctx;
    struct pt_trace_call call;
    struct pt_trace_call_info ci = { .cluster = PT_STR_LIT("cluster_ratelimit_default") };
    char out[PT_TRACE_INJECT_MAX + 1], want[PT_TRACE_INJECT_MAX + 1];
    size_t n;

    res_defaults(&r);
    cfg = make_cfg(&r, 0);
    ring_clear();

    /* a sampled request: the call's B3 lines name the call span and the HCM span */
    assert_true(start(cfg, &ctx, "x-b3-traceid", "48485a3953bb6124", "x-b3-spanid", "a2fb4a1d1a96d312", NULL));
    assert_true(pt_trace_call_begin(g_tw, &ctx, &call) != 0);
    n = pt_trace_call_inject(&call, out, sizeof(out));
    out[n] = '\0';
    snprintf(want, sizeof(want),
             "x-b3-traceid: 48485a3953bb6124\r\nx-b3-spanid: %016llx\r\n"
             "x-b3-parentspanid: %016llx\r\nx-b3-sampled: 1\r\n",
             (unsigned long long)call.span_id, (unsigned long long)ctx.span_id);
    assert_string_equal(out, want);
    /* the request's spans first, the call's after: the call owns its context */
    pt_trace_finish(g_tw, cfg, &ctx, &(struct pt_trace_request_info){ .status = 200 });
    pt_trace_call_end(g_tw, &call, &ci);
    assert_int_equal(pt_trace__ring_fill(WID), 2);
    assert_false(pt_trace__ring_peek(WID)->flags & PT_TRACE_F_CALL);
    pt_trace__ring_pop(WID);
    assert_true(pt_trace__ring_peek(WID)->flags & PT_TRACE_F_CALL);
    assert_true(pt_trace__ring_peek(WID)->child_duration_us >= 1);
    ring_clear();

    /* unsampled: ids and "x-b3-sampled: 0" for the service, no span */
    assert_true(start(cfg, &ctx, "x-b3-sampled", "0", NULL));
    assert_true(pt_trace_call_begin(g_tw, &ctx, &call) != 0);
    n = pt_trace_call_inject(&call, out, sizeof(out));
    assert_true(n > 0);
    out[n] = '\0';
    assert_non_null(strstr(out, "\r\nx-b3-sampled: 0\r\n"));
    pt_trace_call_end(g_tw, &call, &ci);
    pt_trace_finish(g_tw, cfg, &ctx, &(struct pt_trace_request_info){ .status = 200 });
    assert_int_equal(pt_trace__ring_fill(WID), 0);

    /* not traced (tracing off, or a malformed incoming context): nothing at all */
    assert_false(start(NULL, &ctx, NULL));
    assert_int_equal(pt_trace_call_begin(g_tw, &ctx, &call), 0);
    assert_int_equal(pt_trace_call_inject(&call, out, sizeof(out)), 0);
    pt_trace_call_end(g_tw, &call, &ci);
    assert_false(start(cfg, &ctx, "b3", "not-a-context", NULL));
    assert_int_equal(pt_trace_call_begin(g_tw, &ctx, &call), 0);
    assert_int_equal(pt_trace_call_inject(&call, out, sizeof(out)), 0);
    pt_trace_call_end(g_tw, &call, &ci);
    assert_true(start(cfg, &ctx, NULL));
    assert_int_equal(pt_trace_call_begin(NULL, &ctx, &call), 0); /* no worker state */
    pt_trace_finish(g_tw, cfg, &ctx, &(struct pt_trace_request_info){ .status = 200 });
    ring_clear();
    pt_trace_config_release(cfg);
}

static void test_call_ring_full_drops(void **state)
{
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;
    struct pt_trace_request_info in;
    struct pt_trace_ctx ctx;
    struct pt_trace_call call;
    struct pt_trace_call_info ci = { .cluster = PT_STR_LIT("cluster_extauth_auth_default") };
    uint64_t dropped;

    res_defaults(&r);
    cfg = make_cfg(&r, 0);
    ring_clear();
    info_defaults(&in);
    for (int i = 0; i < PT_TRACE_RING_SLOTS - 1; i++)
        finish_one(cfg, &in);
    assert_true(start(cfg, &ctx, NULL));
    pt_trace_call_begin(g_tw, &ctx, &call);
    pt_trace_call_end(g_tw, &call, &ci); /* the last slot */
    assert_int_equal(pt_trace__ring_fill(WID), PT_TRACE_RING_SLOTS);
    dropped = pt_zipkin_spans_dropped();
    pt_trace_call_begin(g_tw, &ctx, &call);
    pt_trace_call_end(g_tw, &call, &ci);
    assert_int_equal(pt_zipkin_spans_dropped() - dropped, 1); /* one span */
    pt_trace_finish(g_tw, cfg, &ctx, &in);
    assert_int_equal(pt_zipkin_spans_dropped() - dropped, 2);
    assert_int_equal(pt_trace__ring_fill(WID), PT_TRACE_RING_SLOTS);
    ring_clear();
    pt_trace_config_release(cfg);
}

/* --- the ring across threads ---------------------------------------------------------------- */

#define SPSC_N 200000

struct spsc {
    struct pt_trace_worker *tw;
    const struct pt_trace_config *cfg;
    atomic_bool done;
};

/* spsc_producer: a worker finishing SPSC_N requests; record i carries i in its sizes and id. */
static void *spsc_producer(void *arg)
{
    struct spsc *x = arg;
    struct pt_trace_request_info in;
    struct pt_trace_ctx ctx;
    struct pt_trace_head head = { 0 };
    char rid[32];

    info_defaults(&in);
    for (uint64_t i = 0; i < SPSC_N; i++) {
        if (!pt_trace_start(x->tw, x->cfg, &head, &ctx))
            abort();
        in.bytes_received = i;
        in.bytes_sent = i * 3;
        in.request_id = pt_str_make(rid, (size_t)snprintf(rid, sizeof(rid), "req-%llu", (unsigned long long)i));
        pt_trace_finish(x->tw, x->cfg, &ctx, &in);
    }
    atomic_store(&x->done, true);
    return NULL;
}

static void test_ring_threads(void **state)
{
    struct pt_tracing_res r;
    struct spsc x = { .tw = pt_trace_worker_new(1) };
    uint64_t dropped0 = pt_zipkin_spans_dropped(), got = 0, next = 0;
    pthread_t th;
    char rid[32];

    assert_non_null(x.tw);
    assert_null(pt_trace_worker_new(1)); /* taken */
    res_defaults(&r);
    x.cfg = make_cfg(&r, 0);
    atomic_init(&x.done, false);
    assert_int_equal(pthread_create(&th, NULL, spsc_producer, &x), 0);
    for (;;) {
        bool done = atomic_load(&x.done);
        const struct pt_trace_record *rec;
        while ((rec = pt_trace__ring_peek(1)) != NULL) {
            struct pt_str id = pt_trace__rec_str(rec, PT_TRF_REQUEST_ID);
            assert_true(rec->bytes_received >= next); /* in order, none twice */
            assert_int_equal(rec->bytes_sent, rec->bytes_received * 3);
            snprintf(rid, sizeof(rid), "req-%llu", (unsigned long long)rec->bytes_received);
            assert_true(pt_str_eq(id, pt_str_c(rid)));
            next = rec->bytes_received + 1;
            got++;
            pt_trace__ring_pop(1);
        }
        if (done && pt_trace__ring_peek(1) == NULL)
            break;
    }
    pthread_join(th, NULL);
    /* every record was either read or counted as dropped (one span each: no upstream) */
    assert_int_equal(got + (pt_zipkin_spans_dropped() - dropped0), SPSC_N);
    pt_trace_worker_free(x.tw);
    pt_trace_config_release((struct pt_trace_config *)x.cfg);
}

/* The seed's TracingService (seed/istio-integration.md), through the YAML loader. */
static void test_seed_yaml(void **state)
{
    static const char yaml[] = "apiVersion: getambassador.io/v3alpha1\n"
                               "kind:  TracingService\n"
                               "metadata:\n"
                               "  name:  tracing\n"
                               "  namespace: default\n"
                               "spec:\n"
                               "  service: \"zipkin:9411\"\n"
                               "  driver: zipkin\n"
                               "  config: {}\n"
                               "  tag_headers:\n"
                               "    - \":authority\"\n"
                               "    - \":path\"\n";
    struct pt_resources *res = pt_config_load_string(yaml, "seed.yaml", NULL);
    struct pt_trace_config *cfg;
    struct pt_trace_request_info in;
    struct pt_trace_ctx ctx;
    json_t *hcm, *child;

    assert_int_equal(res->diag.nerrors, 0);
    assert_int_equal(res->ntracing, 1);
    cfg = make_cfg(&res->tracing[0], 9411);
    pt_resources_free(res);
    assert_int_equal(cfg->nhdr, 2);
    assert_int_equal(cfg->overall_per10k, 10000);
    assert_true(cfg->trace_id_128bit);
    assert_string_equal(cfg->collector_endpoint, "/api/v2/spans");
    ring_clear();
    info_defaults(&in);
    assert_true(start(cfg, &ctx, NULL));
    pt_trace_upstream_begin(&ctx);
    pt_trace_finish(g_tw, cfg, &ctx, &in);
    hcm = encode_ring(cfg, &child);
    assert_string_equal(tagv(hcm, ":authority"), "example.com");
    assert_string_equal(tagv(hcm, ":path"), "/foo?x=1");
    assert_string_equal(tagv(child, ":authority"), "example.com");
    assert_int_equal(strlen(jstr(hcm, "traceId")), 32);
    json_decref(hcm);
    json_decref(child);
    pt_trace_config_release(cfg);
}

static void test_config(void **state)
{
    struct pt_tracing_res r;
    struct pt_trace_params p = { .res = &r, .ambassador_id = "tracingtest", .ambassador_namespace = "" };
    struct pt_trace_config *cfg;
    char err[256] = "";

    res_defaults(&r);
    r.driver = "datadog";
    assert_null(pt_trace_config_new(&p, err, sizeof(err)));
    assert_non_null(strstr(err, "datadog"));
    res_defaults(&r);
    r.collector_endpoint_version = "HTTP_JSON_V1";
    assert_null(pt_trace_config_new(&p, err, sizeof(err)));
    assert_non_null(strstr(err, "HTTP_JSON_V1"));

    res_defaults(&r);
    r.sampling_overall = 12.5;
    r.sampling_random = 0;
    r.sampling_client = 250;
    cfg = pt_trace_config_new(&p, err, sizeof(err));
    assert_non_null(cfg);
    assert_string_equal(cfg->service_name, "tracingtest-default");
    assert_string_equal(cfg->collector_endpoint, "/api/v2/spans");
    assert_string_equal(cfg->collector_host, "zipkin:9411"); /* no cluster given */
    assert_int_equal(cfg->ncollectors, 0);
    assert_int_equal(cfg->overall_per10k, 1250);
    assert_int_equal(cfg->random_per10k, 0);
    assert_int_equal(cfg->client_per10k, 10000);
    assert_true(cfg->trace_id_128bit);
    assert_true(cfg->local_ip[0] != '\0');
    assert_ptr_equal(pt_trace_config_ref(cfg), cfg);
    pt_trace_config_release(cfg);
    pt_trace_config_release(cfg);

    res_defaults(&r);
    r.collector_hostname = "zipkin.example";
    r.collector_endpoint = "api/v2/spans";
    r.collector_endpoint_version = "HTTP_PROTO";
    cfg = make_cfg(&r, 9411);
    assert_string_equal(cfg->service_name, "ambassador-default");
    assert_string_equal(cfg->collector_host, "zipkin.example");
    assert_string_equal(cfg->collector_endpoint, "/api/v2/spans");
    assert_string_equal(cfg->cluster_name, "cluster_tracing_zipkin_9411_default");
    assert_int_equal(cfg->ncollectors, 1);
    pt_trace_config_release(cfg);
    res_defaults(&r);
    cfg = make_cfg(&r, 9411);
    assert_string_equal(cfg->collector_host, "cluster_tracing_zipkin_9411_default");
    pt_trace_config_release(cfg);
}

/* --- the exporter against a collector on the loop -------------------------------------------- */

struct coll_conn {
    struct pt_io io; /* fd -1: unused */
    struct collector *c;
    char buf[256 * 1024];
    size_t len;
};

struct collector {
    struct pt_io lio;
    bool answer;             /* false: read everything, never answer */
    int port;
    int nreq;
    char req[4][64 * 1024];  /* the first requests, head and body */
    size_t req_len[4];
    struct coll_conn conns[8];
};

static void conn_close(struct coll_conn *k)
{
    close(k->io.fd);
    k->io.fd = -1;
    k->len = 0;
}

/* conn_requests: takes every complete request out of k->buf. */
static void conn_requests(struct coll_conn *k)
{
    static const char reply[] = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
    char *end, *cl;
    size_t head, total;

    while ((end = memmem(k->buf, k->len, "\r\n\r\n", 4)) != NULL) {
        head = (size_t)(end - k->buf) + 4;
        *end = '\0';
        cl = strcasestr(k->buf, "\r\ncontent-length:");
        *end = '\r';
        total = head + (cl ? strtoul(cl + 17, NULL, 10) : 0);
        if (k->len < total)
            return;
        if (k->c->nreq < 4) {
            memcpy(k->c->req[k->c->nreq], k->buf, total);
            k->c->req_len[k->c->nreq] = total;
        }
        k->c->nreq++;
        if (k->c->answer)
            assert_int_equal(write(k->io.fd, reply, sizeof(reply) - 1), sizeof(reply) - 1);
        memmove(k->buf, k->buf + total, k->len - total);
        k->len -= total;
    }
}

static void conn_on_event(struct pt_io *io, uint32_t events)
{
    struct coll_conn *k = pt_container_of(io, struct coll_conn, io);

    for (;;) {
        ssize_t n = read(io->fd, k->buf + k->len, sizeof(k->buf) - k->len);
        if (n > 0) {
            k->len += (size_t)n;
            if (k->c->answer)
                conn_requests(k);
            else
                k->len = 0;
            continue;
        }
        if (n < 0 && errno == EAGAIN)
            return;
        conn_close(k);
        return;
    }
}

static void listen_on_event(struct pt_io *io, uint32_t events)
{
    struct collector *c = pt_container_of(io, struct collector, lio);
    int fd;

    while ((fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        struct coll_conn *k = NULL;
        for (size_t i = 0; i < PT_ARRAY_SIZE(c->conns) && k == NULL; i++)
            if (c->conns[i].io.fd < 0)
                k = &c->conns[i];
        if (k == NULL) {
            close(fd);
            continue;
        }
        k->io.fd = fd;
        k->io.cb = conn_on_event;
        k->c = c;
        k->len = 0;
        assert_int_equal(pt_loop_add(g_loop, &k->io, EPOLLIN), 0);
    }
}

static struct collector *collector_new(bool answer)
{
    struct collector *c = calloc(1, sizeof(*c));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);

    assert_non_null(c);
    c->answer = answer;
    for (size_t i = 0; i < PT_ARRAY_SIZE(c->conns); i++)
        c->conns[i].io.fd = -1;
    c->lio.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->lio.cb = listen_on_event;
    assert_int_equal(bind(c->lio.fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(c->lio.fd, 16), 0);
    assert_int_equal(getsockname(c->lio.fd, (struct sockaddr *)&a, &alen), 0);
    c->port = ntohs(a.sin_port);
    assert_int_equal(pt_loop_add(g_loop, &c->lio, EPOLLIN), 0);
    return c;
}

static void collector_free(struct collector *c)
{
    for (size_t i = 0; i < PT_ARRAY_SIZE(c->conns); i++)
        if (c->conns[i].io.fd >= 0)
            conn_close(&c->conns[i]);
    close(c->lio.fd);
    free(c);
}

/* RUN_UNTIL: runs the loop until <cond> holds or <ms> pass; evaluates to <cond>. */
#define RUN_UNTIL(cond, ms)                                                       \
    ({                                                                            \
        uint64_t end_ = pt_now_ms() + (ms);                                       \
        while (!(cond) && pt_now_ms() < end_)                                     \
            pt_loop_run_once(g_loop, 10);                                         \
        (cond);                                                                   \
    })

/* request_body: the JSON array of request <i>, checked span by span. */
static json_t *request_body(struct collector *c, int i)
{
    const char *req = c->req[i], *body = memmem(req, c->req_len[i], "\r\n\r\n", 4);
    json_error_t e;
    json_t *arr;

    assert_non_null(body);
    body += 4;
    arr = json_loadb(body, c->req_len[i] - (size_t)(body - req), 0, &e);
    if (arr == NULL)
        fail_msg("bad JSON body: %s", e.text);
    assert_true(json_is_array(arr));
    for (size_t k = 0; k < json_array_size(arr); k++)
        check_span(json_array_get(arr, k));
    return arr;
}

static void test_export_batches(void **state)
{
    struct collector *c1, *c2;
    struct pt_tracing_res r;
    struct pt_trace_config *cfg1, *cfg2;
    struct pt_trace_request_info in;
    uint64_t sent0 = pt_zipkin_spans_sent(), dropped0 = pt_zipkin_spans_dropped();
    json_t *arr;

    g_loop = pt_loop_new();
    assert_non_null(g_loop);
    c1 = collector_new(true);
    c2 = collector_new(true);
    res_defaults(&r);
    cfg1 = make_cfg(&r, c1->port);
    r.collector_hostname = "zipkin.tracing";
    cfg2 = make_cfg(&r, c2->port);
    ring_clear();
    info_defaults(&in);
    pt_zipkin__set_timing(20, 400, 2000);
    assert_int_equal(pt_zipkin_start(g_loop), 0);
    assert_int_equal(pt_zipkin_start(g_loop), PT_INVAL);
    pt_zipkin_set_config(cfg1);
    for (int i = 0; i < 3; i++) /* 6 spans: a batch of 5 goes at once, 1 waits for the timer */
        finish_one(cfg1, &in);
    assert_true(RUN_UNTIL(c1->nreq >= 1 && pt_zipkin_spans_sent() - sent0 == 5, 2000));
    assert_non_null(strstr(c1->req[0], "POST /api/v2/spans HTTP/1.1\r\n"));
    assert_non_null(strcasestr(c1->req[0], "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strcasestr(c1->req[0], "\r\nHost: cluster_tracing_zipkin_9411_default\r\n"));
    assert_null(strcasestr(c1->req[0], "\r\nExpect:"));
    arr = request_body(c1, 0);
    assert_int_equal(json_array_size(arr), 5);
    assert_string_equal(jstr(json_array_get(arr, 0), "name"), "router quote_default egress");
    assert_string_equal(jstr(json_array_get(arr, 1), "name"), "example.com");
    assert_string_equal(jstr(json_array_get(arr, 0), "parentId"), jstr(json_array_get(arr, 1), "id"));
    json_decref(arr);

    /* the TracingService changes live: the waiting span goes to the new collector */
    pt_zipkin_set_config(cfg2);
    pt_trace_config_release(cfg1);
    assert_true(RUN_UNTIL(c2->nreq >= 1 && pt_zipkin_spans_sent() - sent0 == 6, 2000));
    assert_int_equal(c1->nreq, 1);
    assert_non_null(strcasestr(c2->req[0], "\r\nHost: zipkin.tracing\r\n"));
    arr = request_body(c2, 0);
    assert_int_equal(json_array_size(arr), 1);
    json_decref(arr);
    assert_int_equal(pt_zipkin_spans_dropped() - dropped0, 0);

    /* tracing off: what the workers still hand over is dropped and counted */
    pt_zipkin_set_config(NULL);
    finish_one(cfg2, &in);
    assert_true(RUN_UNTIL(pt_trace__ring_fill(WID) == 0, 1000));
    assert_int_equal(pt_zipkin_spans_dropped() - dropped0, 2);
    pt_zipkin_stop();
    pt_trace_config_release(cfg2);
    collector_free(c1);
    collector_free(c2);
    pt_loop_free(g_loop);
}

/* export_start: a loop, a collector that answers or not, and the exporter reporting to it:
 * rings drained every 20 ms, no timed flush, POSTs time out after <timeout_ms>. */
static struct pt_trace_config *export_start(bool answer, uint32_t timeout_ms, struct collector **c,
                                            struct pt_trace_request_info *in)
{
    struct pt_tracing_res r;
    struct pt_trace_config *cfg;

    g_loop = pt_loop_new();
    *c = collector_new(answer);
    res_defaults(&r);
    cfg = make_cfg(&r, (*c)->port);
    ring_clear();
    info_defaults(in);
    pt_zipkin__set_timing(20, 60000, timeout_ms);
    assert_int_equal(pt_zipkin_start(g_loop), 0);
    pt_zipkin_set_config(cfg);
    return cfg;
}

static int g_ticks;

static void tick_on_fire(struct pt_timer *t)
{
    g_ticks++;
    pt_timer_arm(g_loop, t, 10);
}

static void test_export_stuck_collector(void **state)
{
    struct collector *c;
    struct pt_tracing_res r;
    struct pt_trace_config *cfg, *refused;
    struct pt_trace_request_info in;
    struct pt_timer tick = { .cb = tick_on_fire };
    uint64_t sent0 = pt_zipkin_spans_sent(), dropped0 = pt_zipkin_spans_dropped(), t0, longest = 0;
    int fd;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);

    cfg = export_start(false, 300, &c, &in);
    res_defaults(&r);
    g_ticks = 0;
    pt_timer_arm(g_loop, &tick, 10);
    for (int i = 0; i < 3; i++)
        finish_one(cfg, &in);
    /* the loop keeps turning while the POST hangs, and the batch is dropped at the timeout */
    t0 = pt_now_ms();
    while (pt_now_ms() - t0 < 800) {
        uint64_t b = pt_now_ms();
        pt_loop_run_once(g_loop, 10);
        if (pt_now_ms() - b > longest)
            longest = pt_now_ms() - b;
    }
    assert_true(c->nreq == 0);
    assert_int_equal(pt_zipkin_spans_dropped() - dropped0, 5);
    assert_int_equal(pt_zipkin_spans_sent() - sent0, 0);
    assert_true(g_ticks >= 20);   /* ~80 on an idle machine */
    assert_true(longest < 250);   /* no iteration waited on the collector */

    /* a collector that refuses connections: dropped as soon as the connect fails */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    refused = make_cfg(&r, ntohs(a.sin_port)); /* bound, not listening: RST */
    pt_zipkin_set_config(refused);
    for (int i = 0; i < 2; i++)
        finish_one(refused, &in); /* + the 1 waiting: 5 spans */
    assert_true(RUN_UNTIL(pt_zipkin_spans_dropped() - dropped0 == 10, 2000));
    close(fd);

    /* stopping with a POST in flight and a span queued drops (and counts) both */
    pt_zipkin_set_config(cfg);
    for (int i = 0; i < 3; i++)
        finish_one(cfg, &in);
    RUN_UNTIL(false, 100);
    pt_timer_cancel(&tick);
    pt_zipkin_stop();
    assert_int_equal(pt_zipkin_spans_dropped() - dropped0, 16);
    assert_int_equal(pt_zipkin_spans_sent() - sent0, 0);
    pt_zipkin_stop(); /* twice is fine */
    pt_trace_config_release(cfg);
    pt_trace_config_release(refused);
    collector_free(c);
    pt_loop_free(g_loop);
}

/* With every POST slot taken and the next body full (1000 spans), finished requests wait in the
 * worker's ring instead of being encoded or dropped. */
static void test_export_backpressure(void **state)
{
    struct collector *c;
    struct pt_trace_request_info in;
    struct pt_trace_config *cfg = export_start(false, 5000, &c, &in);
    uint64_t sent0 = pt_zipkin_spans_sent(), dropped0 = pt_zipkin_spans_dropped();
    uint32_t waiting;

    for (int i = 0; i < 1010; i++) /* 2020 spans: POSTs of 5, 250, 250, 250 hang, 999 wait */
        finish_one(cfg, &in);
    RUN_UNTIL(false, 200);
    waiting = pt_trace__ring_fill(WID);
    assert_int_equal(waiting, 1010 - (5 + 3 * 250 + 999) / 2); /* one more would not fit */
    RUN_UNTIL(false, 100);
    assert_int_equal(pt_trace__ring_fill(WID), waiting);
    assert_int_equal(pt_zipkin_spans_dropped() - dropped0, 0);
    pt_zipkin_stop();
    assert_int_equal(pt_zipkin_spans_dropped() - dropped0, 5 + 3 * 250 + 999);
    assert_int_equal(pt_zipkin_spans_sent() - sent0, 0);
    ring_clear();
    pt_trace_config_release(cfg);
    collector_free(c);
    pt_loop_free(g_loop);
}

/* Call spans go out with the request's, in the order they were recorded (a call ends before
 * its request), and count as one span each. */
static void test_export_call_spans(void **state)
{
    struct collector *c;
    struct pt_trace_request_info in;
    struct pt_trace_config *cfg = export_start(true, 2000, &c, &in);
    struct pt_trace_call_info ci = {
        .cluster = PT_STR_LIT("cluster_extauth_auth_default"),
        .ntags = 1,
        .tag_key = { PT_STR_LIT("ext_authz_status") },
        .tag_value = { PT_STR_LIT("ext_authz_ok") },
    };
    uint64_t sent0 = pt_zipkin_spans_sent(), dropped0 = pt_zipkin_spans_dropped();
    struct pt_trace_ctx ctx;
    struct pt_trace_call call;
    json_t *arr, *s;
    char id[17];

    assert_true(start(cfg, &ctx, NULL));
    pt_trace_call_begin(g_tw, &ctx, &call);
    pt_trace_call_end(g_tw, &call, &ci);
    pt_trace_upstream_begin(&ctx);
    pt_trace_finish(g_tw, cfg, &ctx, &in);
    finish_one(cfg, &in); /* 5 spans: one POST */
    assert_true(RUN_UNTIL(c->nreq >= 1 && pt_zipkin_spans_sent() - sent0 == 5, 2000));
    arr = request_body(c, 0);
    assert_int_equal(json_array_size(arr), 5);
    s = json_array_get(arr, 0);
    assert_string_equal(jstr(s, "name"), "async cluster_extauth_auth_default egress");
    snprintf(id, sizeof(id), "%016llx", (unsigned long long)call.span_id);
    assert_string_equal(jstr(s, "id"), id);
    assert_string_equal(jstr(s, "parentId"), jstr(json_array_get(arr, 2), "id")); /* the HCM span */
    assert_string_equal(jstr(s, "traceId"), jstr(json_array_get(arr, 2), "traceId"));
    assert_string_equal(tagv(s, "ext_authz_status"), "ext_authz_ok");
    assert_string_equal(jstr(json_array_get(arr, 1), "name"), "router quote_default egress");
    assert_string_equal(jstr(json_array_get(arr, 2), "name"), "example.com");
    json_decref(arr);

    /* tracing off: a call span still handed over is dropped and counted once */
    pt_zipkin_set_config(NULL);
    assert_true(start(cfg, &ctx, NULL));
    pt_trace_call_begin(g_tw, &ctx, &call);
    pt_trace_call_end(g_tw, &call, &ci);
    pt_trace_finish(g_tw, cfg, &ctx, &(struct pt_trace_request_info){ .status = 200 });
    assert_true(RUN_UNTIL(pt_trace__ring_fill(WID) == 0, 1000));
    assert_int_equal(pt_zipkin_spans_dropped() - dropped0, 2);
    pt_zipkin_stop();
    pt_trace_config_release(cfg);
    collector_free(c);
    pt_loop_free(g_loop);
}

static int group_setup(void **state)
{
    g_tw = pt_trace_worker_new(WID);
    return g_tw == NULL;
}

static int group_teardown(void **state)
{
    pt_trace_worker_free(g_tw);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b3_single),
        cmocka_unit_test(test_b3_single_malformed),
        cmocka_unit_test(test_b3_multi),
        cmocka_unit_test(test_root_ids),
        cmocka_unit_test(test_sampling),
        cmocka_unit_test(test_sampling_incoming_flag_wins),
        cmocka_unit_test(test_inject),
        cmocka_unit_test(test_spans_json),
        cmocka_unit_test(test_spans_hostile_strings),
        cmocka_unit_test(test_spans_escape_positions),
        cmocka_unit_test(test_custom_tags_and_tag_headers),
        cmocka_unit_test(test_ring_full_drops),
        cmocka_unit_test(test_call_span_grpc_json),
        cmocka_unit_test(test_call_span_http_json),
        cmocka_unit_test(test_call_inject),
        cmocka_unit_test(test_call_context),
        cmocka_unit_test(test_call_ring_full_drops),
        cmocka_unit_test(test_ring_threads),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_seed_yaml),
        cmocka_unit_test(test_export_batches),
        cmocka_unit_test(test_export_stuck_collector),
        cmocka_unit_test(test_export_backpressure),
        cmocka_unit_test(test_export_call_spans),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
