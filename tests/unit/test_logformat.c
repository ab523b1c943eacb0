/* Unit tests for src/observe/logformat.c and the custom-format side of src/observe/accesslog.c:
 * compiling format strings and JSON maps (steps, header slots, errors with their positions,
 * notices), START_TIME patterns, and rendering every operator for a synthetic request record
 * (a pt_req_record filled by hand as the proxy would, with the addresses of a real socket pair,
 * its log sink writing into a pipe).
 * Emissary's default line is rendered both by its hand-written path and by the compiled
 * program, and the two must agree byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/compile.h"
#include "control/apply.h"
#include "config/load.h"
#include "config/snapshot.h"
#include "observe/logformat.h"
#include "observe/record-t.h"

/* ---- compiling ------------------------------------------------------------------------------- */

static struct pt_logfmt *text_ok(const char *format)
{
    char err[256];
    struct pt_logfmt *f = pt_logfmt_compile_text(format, err, sizeof(err));
    if (f == NULL)
        fail_msg("\"%s\" did not compile: %s", format, err);
    return f;
}

/* The message compiling <format> fails with. */
static const char *text_err(const char *format)
{
    static char err[256];
    struct pt_logfmt *f = pt_logfmt_compile_text(format, err, sizeof(err));
    if (f != NULL)
        fail_msg("\"%s\" compiled", format);
    return err;
}

static void test_compile_steps(void **state)
{
    struct pt_logfmt *f = text_ok("a %% b %REQ(X-Foo?:PATH):12%%DURATION%");

    assert_false(f->json);
    assert_int_equal(f->nitems, 4);
    assert_int_equal(f->items[0].op, PT_LOGOP_TEXT); /* "a ", "%" and " b " merged */
    assert_memory_equal(f->text + f->items[0].off, "a % b ", 6);
    assert_int_equal(f->items[0].len, 6);
    assert_int_equal(f->items[1].op, PT_LOGOP_REQ);
    assert_int_equal(f->items[1].field, PT_LOGREQ_HEADER + 0);
    assert_int_equal(f->items[1].alt, PT_LOGREQ_PATH);
    assert_int_equal(f->items[1].max_len, 12);
    assert_int_equal(f->items[2].op, PT_LOGOP_DURATION);
    assert_int_equal(f->items[3].op, PT_LOGOP_TEXT); /* the newline Envoy's users expect */
    assert_memory_equal(f->text + f->items[3].off, "\n", 1);
    assert_int_equal(f->nheaders, 1);
    assert_int_equal(f->headers[0].len, 5);
    assert_memory_equal(f->headers[0].ptr, "x-foo", 5);
    assert_int_equal(f->header_max[0], 12);
    pt_logfmt_free(f);

    /* A format that ends in a newline keeps just that one. */
    f = text_ok("%PROTOCOL%\n");
    assert_int_equal(f->nitems, 2);
    assert_int_equal(f->items[1].len, 1);
    pt_logfmt_free(f);

    /* Header slots are shared by name (case-insensitive); the longest :N wins; the well-known
     * fields take no slot. */
    f = text_ok("%REQ(x-a):10% %REQ(X-A):20% %REQ(x-b)% %REQ(:AUTHORITY)% %REQ(HOST)% %REQ(User-Agent)% "
                "%REQ(X-REQUEST-ID)% %REQ(x-forwarded-for)% %REQ(:method)% %REQ(:scheme)% %RESP(SERVER)% "
                "%START_TIME(%s)% %DYNAMIC_METADATA(istio.mixer:status)%");
    assert_int_equal(f->nheaders, 2);
    assert_int_equal(f->header_max[0], 20);
    assert_int_equal(f->header_max[1], 256);
    assert_int_equal(f->items[2].field, PT_LOGREQ_HEADER + 0);
    assert_int_equal(f->items[6].field, PT_LOGREQ_AUTHORITY);
    assert_int_equal(f->items[8].field, PT_LOGREQ_AUTHORITY);
    pt_logfmt_free(f);

    /* Every operator Portico knows compiles. */
    f = text_ok("%START_TIME% %PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% "
                "%UPSTREAM_HOST% %UPSTREAM_CLUSTER% %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% "
                "%UPSTREAM_TRANSPORT_FAILURE_REASON% %DOWNSTREAM_REMOTE_ADDRESS% "
                "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_LOCAL_ADDRESS% "
                "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% %REQUESTED_SERVER_NAME%");
    pt_logfmt_free(f);
}

static void test_compile_errors(void **state)
{
    assert_string_equal(text_err("x %FOO% y"), "unknown command operator %FOO% at position 2");
    assert_string_equal(text_err("%REQ(a)% %DURATION%%BYTES%"),
                        "unknown command operator %BYTES% at position 19");
    assert_non_null(strstr(text_err("100% done"), "bad syntax at position 3"));
    assert_non_null(strstr(text_err("%DURATION"), "bad syntax at position 0"));
    assert_non_null(strstr(text_err("a %REQ(x-foo% b"), "bad syntax at position 2"));
    assert_non_null(strstr(text_err("%REQ(x):% "), "bad syntax at position 0"));
    assert_non_null(strstr(text_err("%REQ(x):99999999%"), "bad syntax at position 0"));
    assert_non_null(strstr(text_err("%%%"), "bad syntax at position 2"));
    assert_non_null(strstr(text_err("%lower%"), "bad syntax at position 0"));
    assert_string_equal(text_err("%REQ%"), "%REQ(...)% needs a parameter (position 0)");
    assert_string_equal(text_err("%REQ()%"), "%REQ(...)% needs a parameter (position 0)");
    assert_string_equal(text_err(" %DURATION(x)%"), "%DURATION% takes no parameter (position 1)");
    assert_string_equal(text_err("%REQ(a?b?c)%"), "more than one alternative header in %REQ(a?b?c)%");
    assert_non_null(strstr(text_err("%REQ(a?)%"), "a header name is empty"));
    {
        char big[1024] = "";
        for (int i = 0; i < PT_LOGFMT_MAX_HEADERS + 1; i++)
            snprintf(big + strlen(big), sizeof(big) - strlen(big), "%%REQ(x-h%d)%% ", i);
        assert_string_equal(text_err(big), "more than 16 distinct request headers in REQ()");
    }
}

static void test_compile_notice(void **state)
{
    char err[256];
    struct pt_logfmt *f = pt_logfmt_compile_text("%RESP(x-other)% %RESP(content-type)%", err, sizeof(err));

    assert_non_null(f);
    assert_non_null(strstr(err, "%RESP(x-other)% is always unset"));
    assert_int_equal(f->items[0].field, PT_LOGRESP_OTHER);
    assert_int_equal(f->items[2].field, PT_LOGRESP_CONTENT_TYPE);
    pt_logfmt_free(f);
    f = pt_logfmt_compile_text("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", err, sizeof(err));
    assert_string_equal(err, "");
    pt_logfmt_free(f);
}

static void test_compile_json(void **state)
{
    const struct pt_kv kv[] = {
        { "zeta", "%DURATION%" },
        { "a\"b", "x%%-%RESPONSE_CODE%\t" },
        { "m", "plain" },
        { "e", "" },
    };
    char err[256];
    struct pt_logfmt *f = pt_logfmt_compile_json(kv, PT_ARRAY_SIZE(kv), err, sizeof(err));

    assert_non_null(f);
    assert_true(f->json);
    /* Sorted: a"b, e, m, zeta. */
    assert_int_equal(f->items[0].op, PT_LOGOP_KEY);
    assert_int_equal(f->items[0].len, strlen("{\"a\\\"b\":"));
    assert_memory_equal(f->text + f->items[0].off, "{\"a\\\"b\":", f->items[0].len);
    assert_int_equal(f->items[0].nvalue, 3); /* "x%-", code, "\t" (stored escaped) */
    assert_memory_equal(f->text + f->items[3].off, "\\u0009", 6);
    assert_int_equal(f->items[4].op, PT_LOGOP_KEY);
    assert_int_equal(f->items[4].nvalue, 0);
    assert_int_equal(f->items[5].nvalue, 1);
    assert_int_equal(f->items[6].op, PT_LOGOP_TEXT);
    assert_int_equal(f->items[8].op, PT_LOGOP_DURATION);
    assert_memory_equal(f->text + f->items[9].off, "}\n", 2);
    assert_int_equal(f->nitems, 10);
    pt_logfmt_free(f);

    const struct pt_kv bad[] = { { "ok", "%DURATION%" }, { "oops", "%NOPE%" } };
    assert_null(pt_logfmt_compile_json(bad, 2, err, sizeof(err)));
    assert_string_equal(err, "key \"oops\": unknown command operator %NOPE% at position 0");

    f = pt_logfmt_compile_json(NULL, 0, err, sizeof(err));
    assert_int_equal(f->nitems, 1);
    assert_memory_equal(f->text + f->items[0].off, "{}\n", 3);
    pt_logfmt_free(f);

    f = pt_logfmt_emissary_json();
    assert_int_equal(f->nheaders, 0); /* every REQ() of Emissary's keys is a kept field */
    pt_logfmt_free(f);
}

/* ---- START_TIME ------------------------------------------------------------------------------ */

static const char *fmt_time(const char *pat, uint64_t ms)
{
    static char out[257];
    size_t n = pt_logfmt_time(pat, strlen(pat), ms, out, sizeof(out) - 1);
    out[n] = '\0';
    return out;
}

static void test_start_time(void **state)
{
    const uint64_t ms = 1795665990641ull; /* 2026-11-26T04:06:30.641Z */

    assert_string_equal(fmt_time("%Y-%m-%dT%H:%M:%S%z", ms), "2026-11-26T04:06:30+0000");
    assert_string_equal(fmt_time("%Y-%m-%dT%H:%M:%E3SZ", ms), "2026-11-26T04:06:30.641Z");
    assert_string_equal(fmt_time("%s.%3f", ms), "1795665990.641");
    assert_string_equal(fmt_time("%s.%6f|%f|%1f", ms), "1795665990.641000|641000000|6");
    assert_string_equal(fmt_time("%E1S %E*S %E3f %Ez 100%%", ms), "30.6 30.641 641 +00:00 100%");
    assert_string_equal(fmt_time("plain", ms), "plain");
    assert_string_equal(fmt_time("%H:%M", ms), "04:06");
    /* The cached part is per second: the next ms and the next second both come out right. */
    assert_string_equal(fmt_time("%S.%3f", ms + 1), "30.642");
    assert_string_equal(fmt_time("%S.%3f", ms + 1000), "31.641");
    assert_string_equal(fmt_time("%S.%3f", ms - 641), "30.000");
    /* The output is bounded by <cap>. */
    {
        char out[8];
        assert_int_equal(pt_logfmt_time("%s.%9f", 7, ms, out, sizeof(out)), sizeof(out));
        assert_memory_equal(out, "17956659", 8);
    }
}

/* ---- rendering ------------------------------------------------------------------------------- */

/* A log sink writing into a pipe, and a request record with the addresses of a real TCP
 * connection (as the proxy fills them). */
struct fixture {
    struct pt_logsink w;
    struct pt_snapshot snap;
    struct pt_req_record *ds;
    struct pt_cluster cluster;
    struct pt_route_action action;
    struct pt_endpoint endpoint;
    int pipe[2];
    int lfd, cfd, sfd;
    int server_port, client_port, up_port;
};

/* addr_of: "ip:port" of <fd>'s local end, as the proxy writes it into a record. */
static void addr_of(int fd, char *out)
{
    struct sockaddr_storage a;
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    pt_sockaddr_format(&a, out);
}

static int port_of(int fd, bool local)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    assert_int_equal(local ? getsockname(fd, (struct sockaddr *)&a, &len) : getpeername(fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);

    assert_int_equal(pipe(fx->pipe), 0);
    fcntl(fx->pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(fx->pipe[1], F_SETPIPE_SZ, 1 << 20); /* a few buffers' worth of lines */
    fx->w.loop = pt_loop_new();
    fx->w.fd = fx->pipe[1];
    fx->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fx->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fx->lfd, 4), 0);
    assert_int_equal(getsockname(fx->lfd, (struct sockaddr *)&a, &len), 0);
    fx->cfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fx->cfd, (struct sockaddr *)&a, sizeof(a)), 0);
    fx->ds = calloc(1, sizeof(*fx->ds));
    fx->sfd = accept(fx->lfd, NULL, NULL);
    fx->server_port = ntohs(a.sin_port);
    fx->client_port = port_of(fx->cfd, true);
    fx->up_port = fx->client_port; /* the client end stands in for an upstream connection */
    fx->ds->snap = &fx->snap;
    fx->ds->peer_ip = "127.0.0.1";
    fx->ds->peer_ip_len = 9;
    fx->ds->peer_port = (uint16_t)fx->client_port;
    fx->cluster = (struct pt_cluster){ .name = "cluster_quote_default", .stats_name = "quote" };
    fx->action = (struct pt_route_action){ .cluster = &fx->cluster };
    snprintf(fx->endpoint.name, sizeof(fx->endpoint.name), "10.0.0.7:8080");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    pt_logfmt_free(fx->snap.log.fmt);
    free(fx->w.buf.base);
    pt_loop_free(fx->w.loop);
    close(fx->sfd);
    close(fx->cfd);
    close(fx->lfd);
    close(fx->pipe[0]);
    close(fx->pipe[1]);
    free(fx->ds);
    free(fx);
    return 0;
}

/* Appends a quoted field to log[] (as proxy/session.c lays it out), noting where its value is. */
static char *quoted(struct pt_req_record *ds, char *p, const char *v, struct pt_str_off *at)
{
    size_t n = strlen(v);
    *p++ = '"';
    if (at != NULL)
        *at = (struct pt_str_off){ (uint16_t)(p - ds->log), (uint16_t)(strcmp(v, "-") ? n : 0) };
    memcpy(p, v, n);
    p += n;
    *p++ = '"';
    return p;
}

/* A request as proxy/session.c keeps it: GET /quote/ HTTP/1.1, answered 200 by the upstream. */
static void request(struct fixture *fx, const char *ua)
{
    struct pt_req_record *ds = fx->ds;
    char *p = ds->log;

    memcpy(p, "\"GET ", 5);
    p += 5;
    ds->lf_method = (struct pt_str_off){ 1, 3 };
    ds->lf_path = (struct pt_str_off){ (uint16_t)(p - ds->log), 7 };
    memcpy(p, "/quote/ HTTP/1.1\"", 17);
    p += 17;
    ds->log_mid = (uint16_t)(p - ds->log);
    *p++ = '\0';
    p = quoted(ds, p, "1.2.3.4,127.0.0.1", &ds->lf_xff);
    *p++ = ' ';
    p = quoted(ds, p, ua, &ds->lf_ua);
    *p++ = ' ';
    p = quoted(ds, p, "11111111-2222-4333-8444-555555555555", &ds->lf_rid);
    *p++ = ' ';
    p = quoted(ds, p, "quote.example", &ds->lf_auth);
    ds->log_len = ds->log_used = (uint16_t)(p - ds->log);
    ds->lf_tfr = ds->lf_ctype = (struct pt_str_off){ 0 };
    ds->log_nhdr = 0;
    ds->http_version = 11;
    ds->start_realtime_ms = 1795665990641ull;
    ds->start_ms = pt_loop_now_ms(fx->w.loop) - 7;
    ds->end_ms = ds->start_ms + 7;
    ds->status = 200;
    ds->upstream_status = 200;
    ds->flags = "-";
    ds->bytes_rx = 12;
    ds->bytes_tx = 345;
    ds->upstream_ms = 5;
    ds->endpoint = &fx->endpoint;
    ds->action = &fx->action;
    addr_of(fx->cfd, ds->upstream_local_addr);
    addr_of(fx->sfd, ds->local_addr);
    ds->tls = false;
    ds->sni = NULL;
}

/* Everything the worker wrote so far. */
static char *drain(struct fixture *fx)
{
    static char out[1 << 20];
    size_t len = 0;
    ssize_t n;

    pt_accesslog_flush(&fx->w);
    while (len < sizeof(out) - 1 && (n = read(fx->pipe[0], out + len, sizeof(out) - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    return out;
}

static const char *render_with(struct fixture *fx, struct pt_logfmt *f)
{
    pt_logfmt_free(fx->snap.log.fmt);
    fx->snap.log.fmt = f;
    if (f != NULL && f->nheaders && fx->ds->lf_method.len) {
        /* The head as dispatch sees it: capture copies the format's headers. */
        static struct pt_header h[3];
        h[0] = (struct pt_header){ PT_STR_LIT("X-Foo"), PT_STR_LIT("foo-value") };
        h[1] = (struct pt_header){ PT_STR_LIT("x-quote"), PT_STR_LIT("say \"hi\"\x01\xc3\xa9\xff") };
        h[2] = (struct pt_header){ PT_STR_LIT("x-empty"), PT_STR_LIT("") };
        pt_accesslog_capture(fx->ds, h, 3);
    }
    pt_accesslog_request(&fx->w, fx->ds);
    assert_int_equal(fx->ds->log_len, 0); /* logged once */
    return drain(fx);
}

static void test_default_line_matches_program(void **state)
{
    struct fixture *fx = *state;
    char fast[4096], program[4096];

    request(fx, "curl/8.0");
    snprintf(fast, sizeof(fast), "%s", render_with(fx, NULL));
    assert_string_equal(fast, "ACCESS [2026-11-26T04:06:30.641Z] \"GET /quote/ HTTP/1.1\" 200 - 12 345 7 5 "
                              "\"1.2.3.4,127.0.0.1\" \"curl/8.0\" \"11111111-2222-4333-8444-555555555555\" "
                              "\"quote.example\" \"10.0.0.7:8080\"\n");
    request(fx, "curl/8.0");
    snprintf(program, sizeof(program), "%s", render_with(fx, text_ok(PT_LOGFMT_EMISSARY_TEXT)));
    assert_string_equal(program, fast);

    /* A local reply with nothing upstream and no User-Agent: the same "-" both ways. */
    request(fx, "-");
    fx->ds->status = 404, fx->ds->upstream_status = 0, fx->ds->flags = "NR";
    fx->ds->endpoint = NULL, fx->ds->upstream_ms = UINT32_MAX, fx->ds->bytes_tx = 0;
    snprintf(fast, sizeof(fast), "%s", render_with(fx, NULL));
    request(fx, "-");
    fx->ds->status = 404, fx->ds->upstream_status = 0, fx->ds->flags = "NR";
    fx->ds->endpoint = NULL, fx->ds->upstream_ms = UINT32_MAX, fx->ds->bytes_tx = 0;
    snprintf(program, sizeof(program), "%s", render_with(fx, text_ok(PT_LOGFMT_EMISSARY_TEXT)));
    assert_non_null(strstr(fast, "404 NR 12 0 7 - "));
    assert_string_equal(program, fast);
}

static void test_render_every_operator_text(void **state)
{
    struct fixture *fx = *state;
    char want[1024];

    request(fx, "curl/8.0");
    fx->ds->sni = "sni.example";
    fx->ds->tls = true;
    const char *line = render_with(fx, text_ok(
        "%START_TIME%|%START_TIME(%s.%3f)%|%REQ(:METHOD)%|%REQ(:PATH)%|%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%|"
        "%REQ(:AUTHORITY)%|%REQ(:SCHEME)%|%REQ(X-FORWARDED-FOR)%|%REQ(USER-AGENT):4%|%REQ(X-REQUEST-ID)%|"
        "%REQ(X-FOO)%|%REQ(X-MISSING?X-FOO)%|%REQ(X-MISSING)%|%REQ(X-EMPTY)%|%REQ(x-quote)%|"
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%|%RESP(SERVER)%|%RESP(CONTENT-TYPE)%|%RESP(X-OTHER)%|"
        "%PROTOCOL%|%RESPONSE_CODE%|%RESPONSE_FLAGS%|%BYTES_RECEIVED%|%BYTES_SENT%|%DURATION%|"
        "%UPSTREAM_HOST%|%UPSTREAM_CLUSTER%|%UPSTREAM_CLUSTER_RAW%|%UPSTREAM_LOCAL_ADDRESS%|"
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%|%DOWNSTREAM_REMOTE_ADDRESS%|%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%|"
        "%DOWNSTREAM_LOCAL_ADDRESS%|%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%|%REQUESTED_SERVER_NAME%|"
        "%DYNAMIC_METADATA(istio.mixer:status)%|%%"));
    snprintf(want, sizeof(want),
             "2026-11-26T04:06:30.641Z|1795665990.641|GET|/quote/|/quote/|quote.example|https|1.2.3.4,127.0.0.1|"
             "curl|11111111-2222-4333-8444-555555555555|foo-value|foo-value|-|-|say \"hi\"\x01\xc3\xa9\xff|"
             "5|envoy|-|-|HTTP/1.1|200|-|12|345|7|10.0.0.7:8080|quote|cluster_quote_default|127.0.0.1:%d|-|"
             "127.0.0.1:%d|127.0.0.1|127.0.0.1:%d|127.0.0.1|sni.example|-|%%\n",
             fx->up_port, fx->client_port, fx->server_port);
    assert_string_equal(line, want);
}

/* Value formats (header values, error bodies): compiled with PT_LOGFMT_LIVE and rendered with
 * pt_logfmt_render against live headers or the kept copies. */
static struct pt_logfmt *value_ok(const char *v, unsigned flags)
{
    char err[256];
    struct pt_logfmt *f = pt_logfmt_compile_value(v, flags, err, sizeof(err));
    if (f == NULL)
        fail_msg("\"%s\" did not compile: %s", v, err);
    return f;
}

static const char *value_err(const char *v)
{
    static char err[256];
    struct pt_logfmt *f = pt_logfmt_compile_value(v, PT_LOGFMT_LIVE | PT_LOGFMT_OMIT_EMPTY, err, sizeof(err));
    if (f != NULL)
        fail_msg("\"%s\" compiled", v);
    return err;
}

static void test_value_formats(void **state)
{
    struct fixture *fx = *state;
    struct pt_header req[] = { { PT_STR_LIT("X-In"), PT_STR_LIT("in-value") } };
    struct pt_header resp[] = { { PT_STR_LIT("Content-Type"), PT_STR_LIT("text/x") } };
    struct pt_logctx rq = { .req = req, .nreq = 1, .no_upstream = true }, rs = { .resp = resp, .nresp = 1 };
    struct pt_logfmt *f;
    struct pt_str text;
    char out[512], want[256];
    bool cut;
    size_t n;

    request(fx, "curl/8.0");
    f = value_ok("%REQ(x-in)%|%REQ(x-none)%|%UPSTREAM_REMOTE_ADDRESS%|%UPSTREAM_HOST%|%DOWNSTREAM_REMOTE_PORT%|"
                 "%DOWNSTREAM_LOCAL_PORT%|%RESP(content-type)%|%%", PT_LOGFMT_LIVE | PT_LOGFMT_OMIT_EMPTY);
    /* Request side: live headers, no upstream yet, unset values empty. */
    n = pt_logfmt_render(fx->ds, f, &rq, out, sizeof(out), &cut);
    out[n] = '\0';
    assert_false(cut);
    snprintf(want, sizeof(want), "in-value||||%u|%d||%%", (unsigned)fx->ds->peer_port, fx->server_port);
    assert_string_equal(out, want);
    n = pt_logfmt_render(fx->ds, f, &rs, out, sizeof(out), &cut);
    out[n] = '\0';
    snprintf(want, sizeof(want), "||10.0.0.7:8080|10.0.0.7:8080|");
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "|text/x|%"));
    pt_logfmt_free(f);

    /* The response side's %REQ()% reads what the proxy kept. */
    f = value_ok("<%REQ(x-in)%>", PT_LOGFMT_LIVE);
    fx->ds->nx = 1;
    fx->ds->x_name[0] = PT_STR_LIT("x-in");
    pt_accesslog_keep(fx->ds, PT_STR_LIT("kept"), &fx->ds->x_val[0]);
    n = pt_logfmt_render(fx->ds, f, &rs, out, sizeof(out), &cut);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "<kept>", 6);
    fx->ds->nx = 0;
    n = pt_logfmt_render(fx->ds, f, &rs, out, sizeof(out), &cut); /* not kept: "-" in a body */
    assert_memory_equal(out, "<->", n);
    n = pt_logfmt_render(fx->ds, f, &rs, out, 2, &cut);
    assert_true(cut);
    assert_int_equal(n, 2);
    pt_logfmt_free(f);

    /* Text only, "%%" escapes, and what folds at compile time. */
    f = value_ok("50%% off", PT_LOGFMT_LIVE);
    assert_true(pt_logfmt_is_text(f, &text));
    assert_int_equal(text.len, 7);
    assert_memory_equal(text.ptr, "50% off", 7);
    pt_logfmt_free(f);
    setenv("PT_TEST_ENV_VALUE", "from-env", 1);
    f = value_ok("%ENVIRONMENT(PT_TEST_ENV_VALUE)%-%ENVIRONMENT(PT_TEST_ENV_UNSET_X)%", PT_LOGFMT_LIVE | PT_LOGFMT_OMIT_EMPTY);
    assert_true(pt_logfmt_is_text(f, &text));
    assert_int_equal(text.len, 9);
    assert_memory_equal(text.ptr, "from-env-", 9);
    pt_logfmt_free(f);
    f = value_ok("%PROTOCOL%", PT_LOGFMT_LIVE);
    assert_false(pt_logfmt_is_text(f, NULL));
    pt_logfmt_free(f);

    /* Errors: what Envoy rejects, and what Portico cannot fill. */
    assert_non_null(strstr(value_err("%BOGUS%"), "unknown command operator %BOGUS%"));
    assert_non_null(strstr(value_err("100%"), "bad syntax"));
    assert_non_null(strstr(value_err("%REQ(x"), "bad syntax"));
    assert_non_null(strstr(value_err("%UPSTREAM_METADATA([\"a\", \"b\"])%"), "not supported"));
    assert_non_null(strstr(value_err("%DYNAMIC_METADATA(a:b)%"), "not supported"));
    assert_non_null(strstr(value_err("%HOSTNAME(x)%"), "takes no parameter"));
    assert_non_null(strstr(value_err("%ENVIRONMENT%"), "needs a parameter"));
    /* The access log keeps accepting Emissary's default %DYNAMIC_METADATA(...)%. */
    pt_logfmt_free(text_ok("%DYNAMIC_METADATA(istio.mixer:status)%"));
}

static void test_render_ipv6_addresses(void **state)
{
    struct fixture *fx = *state;
    struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    socklen_t len = sizeof(a);
    int lfd = socket(AF_INET6, SOCK_STREAM, 0), cfd = socket(AF_INET6, SOCK_STREAM, 0), sfd;
    char want[256];

    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(lfd), close(cfd);
        skip(); /* no IPv6 loopback here */
    }
    assert_int_equal(listen(lfd, 1), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    assert_int_equal(connect(cfd, (struct sockaddr *)&a, sizeof(a)), 0);
    sfd = accept(lfd, NULL, NULL);
    request(fx, "curl/8.0");
    addr_of(sfd, fx->ds->local_addr);
    addr_of(cfd, fx->ds->upstream_local_addr);
    fx->ds->peer_ip = "::1";
    fx->ds->peer_ip_len = 3;
    fx->ds->peer_port = (uint16_t)port_of(cfd, true);
    snprintf(want, sizeof(want), "[::1]:%d ::1 [::1]:%d ::1 [::1]:%d\n", port_of(cfd, true), ntohs(a.sin6_port),
             port_of(cfd, true));
    assert_string_equal(render_with(fx, text_ok("%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% "
                                                "%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% "
                                                "%UPSTREAM_LOCAL_ADDRESS%")),
                        want);
    close(sfd);
    close(cfd);
    close(lfd);
}

static void test_render_failure_and_local_reply(void **state)
{
    struct fixture *fx = *state;

    /* Upstream connect failure: reply.c keeps the transport failure reason; local reply body. */
    request(fx, "curl/8.0");
    fx->ds->status = 503, fx->ds->upstream_status = 0, fx->ds->flags = "UF", fx->ds->upstream_local_addr[0] = '\0';
    fx->ds->upstream_ms = UINT32_MAX;
    fx->ds->http_version = 10;
    pt_accesslog_keep(fx->ds, PT_STR_LIT("delayed connect error: Connection refused"), &fx->ds->lf_tfr);
    assert_string_equal(render_with(fx, text_ok("%PROTOCOL% %RESPONSE_FLAGS% %UPSTREAM_TRANSPORT_FAILURE_REASON% "
                                                "%UPSTREAM_LOCAL_ADDRESS% %RESP(CONTENT-TYPE)% %REQ(:SCHEME)% "
                                                "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% %REQUESTED_SERVER_NAME%")),
                        "HTTP/1.0 UF delayed connect error: Connection refused - text/plain http - -\n");

    /* A proxied response keeps its content-type through the response hook. */
    request(fx, "curl/8.0");
    struct pt_header rh[2] = { { PT_STR_LIT("Server"), PT_STR_LIT("quote") },
                               { PT_STR_LIT("Content-Type"), PT_STR_LIT("application/json") } };
    pt_accesslog_capture_response(fx->ds, rh, 2);
    assert_string_equal(render_with(fx, text_ok("%RESP(CONTENT-TYPE)% %RESP(SERVER)%")), "application/json envoy\n");

    /* Nothing of the request was parsed (proxy/reply.c clears the fields): "-" everywhere. */
    request(fx, "curl/8.0");
    fx->ds->lf_method = fx->ds->lf_path = fx->ds->lf_ua = fx->ds->lf_rid = fx->ds->lf_auth = (struct pt_str_off){ 0 };
    fx->ds->lf_xff = (struct pt_str_off){ 0 };
    fx->ds->status = 400, fx->ds->flags = "DPE", fx->ds->endpoint = NULL, fx->ds->action = NULL;
    assert_string_equal(render_with(fx, text_ok("%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL% %REQ(:SCHEME)% %RESPONSE_CODE% "
                                                "%UPSTREAM_CLUSTER% %UPSTREAM_HOST% %REQ(X-FOO)%")),
                        "- - - - 400 - - -\n");
}

static void test_render_json(void **state)
{
    struct fixture *fx = *state;
    json_error_t jerr;
    json_t *j;
    const char *line;

    request(fx, "curl \"quoted\"\n");
    fx->ds->upstream_ms = UINT32_MAX;
    line = render_with(fx, pt_logfmt_emissary_json());
    j = json_loads(line, 0, &jerr);
    if (j == NULL)
        fail_msg("not JSON: %s (%s)", line, jerr.text);
    assert_int_equal(json_object_size(j), 22);
    assert_string_equal(json_string_value(json_object_get(j, "start_time")), "2026-11-26T04:06:30.641Z");
    assert_string_equal(json_string_value(json_object_get(j, "method")), "GET");
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/quote/");
    assert_string_equal(json_string_value(json_object_get(j, "protocol")), "HTTP/1.1");
    assert_int_equal(json_integer_value(json_object_get(j, "response_code")), 200);
    assert_string_equal(json_string_value(json_object_get(j, "response_flags")), "-");
    assert_int_equal(json_integer_value(json_object_get(j, "bytes_received")), 12);
    assert_int_equal(json_integer_value(json_object_get(j, "bytes_sent")), 345);
    assert_int_equal(json_integer_value(json_object_get(j, "duration")), 7);
    assert_true(json_is_null(json_object_get(j, "upstream_service_time")));
    assert_string_equal(json_string_value(json_object_get(j, "user_agent")), "curl \"quoted\"\n");
    assert_string_equal(json_string_value(json_object_get(j, "upstream_cluster")), "quote");
    assert_true(json_is_null(json_object_get(j, "istio_policy_status")));
    assert_true(json_is_null(json_object_get(j, "requested_server_name")));
    assert_true(json_is_null(json_object_get(j, "upstream_transport_failure_reason")));
    json_decref(j);
    /* Keys come sorted, one object per line. */
    assert_int_equal(strncmp(line, "{\"authority\":\"quote.example\",\"bytes_received\":12,", 48), 0);
    assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1);

    /* Composite values are strings with "-"; header bytes that are not UTF-8 are escaped. */
    const struct pt_kv kv[] = { { "mix", "%RESPONSE_CODE% after %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%" },
                                { "quote", "%REQ(x-quote)%" },
                                { "foo", "%REQ(X-FOO):3%" },
                                { "lit", "a\"b" } };
    char err[256];
    request(fx, "curl/8.0");
    fx->ds->upstream_ms = UINT32_MAX;
    line = render_with(fx, pt_logfmt_compile_json(kv, 4, err, sizeof(err)));
    assert_string_equal(line, "{\"foo\":\"foo\",\"lit\":\"a\\\"b\",\"mix\":\"200 after -\","
                              "\"quote\":\"say \\\"hi\\\"\\u0001\xc3\xa9\\u00ff\"}\n");
    j = json_loads(line, 0, &jerr);
    assert_non_null(j);
    json_decref(j);
}

static void test_render_long_lines(void **state)
{
    struct fixture *fx = *state;
    char big[3000];
    const char *line;

    /* Values are kept bounded: 256 bytes of a header unless :N asks for more. */
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    request(fx, "curl/8.0");
    {
        static struct pt_header h[1];
        h[0] = (struct pt_header){ PT_STR_LIT("x-big"), { big, strlen(big) } };
        pt_logfmt_free(fx->snap.log.fmt);
        fx->snap.log.fmt = text_ok("%REQ(x-big)% %REQ(x-big2):2000%");
        pt_accesslog_capture(fx->ds, h, 1);
        assert_int_equal(fx->ds->lf_hdr[0].len, 256);
        pt_accesslog_request(&fx->w, fx->ds);
        line = drain(fx);
        assert_int_equal(strlen(line), 256 + 3);
    }
    /* Many lines fill the buffer: it is written out and nothing is lost or cut. */
    {
        size_t total = 0, one;
        pt_logfmt_free(fx->snap.log.fmt);
        fx->snap.log.fmt = text_ok(PT_LOGFMT_EMISSARY_TEXT);
        request(fx, big + 2800);
        pt_accesslog_request(&fx->w, fx->ds);
        one = strlen(drain(fx));
        assert_true(one > 300);
        for (int i = 0; i < 400; i++) {
            request(fx, big + 2800);
            pt_accesslog_request(&fx->w, fx->ds);
            assert_true(fx->w.buf.len < fx->w.buf.cap);
        }
        total = strlen(drain(fx)); /* two buffers were written on the way */
        assert_int_equal(total, 400 * one);
    }
    /* A line longer than the whole buffer is cut, and still ends the line. */
    {
        char *huge = malloc(70001);
        memset(huge, 'h', 70000);
        huge[70000] = '\0';
        request(fx, "curl/8.0");
        line = render_with(fx, text_ok(huge));
        assert_int_equal(strlen(line), fx->w.buf.cap);
        assert_int_equal(line[strlen(line) - 1], '\n');
        request(fx, "curl/8.0");
        assert_string_equal(render_with(fx, text_ok("%RESPONSE_CODE%")), "200\n");
        free(huge);
    }
}

/* ---- the `ambassador` Module (config/compile.c) ---------------------------------------------- */

/* Compiles <yaml> (a Module) and applies it with one worker (control/apply.c opens the log
 * file); the diagnostics printed go to <diag> (less the notice that no Listener is
 * configured). */
static struct pt_snapshot *compile_module(const char *yaml, char *diag, size_t cap)
{
    struct pt_resources *r = pt_config_load_string(yaml, "mod.yaml", NULL);
    struct pt_snapshot *s = pt_compile(r, NULL, 1, &r->diag);

    pt_apply(s, r, &(struct pt_apply_opts){ .nworkers = 1 }, &r->diag);
    FILE *out = fmemopen(diag, cap, "w");

    pt_diag_print(&r->diag, out);
    fclose(out);
    pt_resources_free(r);
    {
        static const char listener[] = "-: notice: no Listener is configured: nothing is served\n";
        char *p = strstr(diag, listener);
        if (p != NULL)
            memmove(p, p + sizeof(listener) - 1, strlen(p + sizeof(listener) - 1) + 1);
    }
    return s;
}

#define MODULE(config)                                                                             \
    "apiVersion: getambassador.io/v3alpha1\n"                                                      \
    "kind: Module\n"                                                                               \
    "metadata: {name: ambassador}\n"                                                               \
    "spec:\n"                                                                                      \
    "  config:\n" config

static void test_module(void **state)
{
    char diag[2048], path[64], yaml[512];
    struct pt_snapshot *s;

    /* No Module settings: Emissary's default line on its own path, stdout. */
    s = compile_module(MODULE("    cluster_request_timeout_ms: 1000\n"), diag, sizeof(diag));
    assert_null(s->log.fmt);
    assert_int_equal(s->log.fd, 0);
    pt_snapshot_release(s);

    /* The default format written out in full is still the fast path. */
    s = compile_module(MODULE("    envoy_log_format: '" PT_LOGFMT_EMISSARY_TEXT "'\n"), diag, sizeof(diag));
    assert_null(s->log.fmt);
    assert_string_equal(diag, "");
    pt_snapshot_release(s);

    /* json with no format: Emissary's keys; typed_json the same. */
    s = compile_module(MODULE("    envoy_log_type: typed_json\n"), diag, sizeof(diag));
    assert_non_null(s->log.fmt);
    assert_true(s->log.fmt->json);
    assert_true(s->log.json);
    pt_snapshot_release(s);

    /* A text format and a file that is opened for append (created 0644). */
    snprintf(path, sizeof(path), "/tmp/pt-logformat-%d.log", (int)getpid());
    unlink(path);
    snprintf(yaml, sizeof(yaml), MODULE("    envoy_log_format: '%%PROTOCOL%%'\n    envoy_log_path: %s\n"), path);
    s = compile_module(yaml, diag, sizeof(diag));
    assert_non_null(s->log.fmt);
    assert_false(s->log.fmt->json);
    assert_true(s->log.fd > 2);
    assert_int_equal(write(s->log.fd, "x\n", 2), 2);
    assert_true((fcntl(s->log.fd, F_GETFL) & O_APPEND) != 0);
    assert_string_equal(s->log.path, path);
    pt_snapshot_release(s); /* closes it */
    assert_int_equal(access(path, F_OK), 0);
    unlink(path);

    /* Bad formats are errors on the Module with file:line; the default for the type is used. */
    s = compile_module(MODULE("    envoy_log_format: 'x %FOO%'\n"), diag, sizeof(diag));
    assert_null(s->log.fmt);
    assert_string_equal(diag, "mod.yaml:1: Module/default/ambassador: envoy_log_format: unknown command "
                              "operator %FOO% at position 2; the default format is used\n");
    pt_snapshot_release(s);
    s = compile_module(MODULE("    envoy_log_type: json\n    envoy_log_format: {a: '%REQ(x'}\n"), diag, sizeof(diag));
    assert_non_null(s->log.fmt);
    assert_int_equal(s->log.fmt->nheaders, 0); /* Emissary's keys */
    assert_non_null(strstr(diag, "mod.yaml:1: Module/default/ambassador: envoy_log_format: key \"a\": bad syntax"));
    pt_snapshot_release(s);
    s = compile_module(MODULE("    envoy_log_type: json\n    envoy_log_format: '%PROTOCOL%'\n"), diag, sizeof(diag));
    assert_true(s->log.fmt->json);
    assert_non_null(strstr(diag, "envoy_log_format must be a mapping of JSON keys when envoy_log_type is json"));
    pt_snapshot_release(s);
    s = compile_module(MODULE("    envoy_log_format: {a: '%PROTOCOL%'}\n"), diag, sizeof(diag));
    assert_null(s->log.fmt);
    assert_non_null(strstr(diag, "envoy_log_format is a mapping but envoy_log_type is text"));
    pt_snapshot_release(s);

    /* A notice does not reject the format. */
    s = compile_module(MODULE("    envoy_log_format: '%RESP(x-other)%'\n"), diag, sizeof(diag));
    assert_non_null(s->log.fmt);
    assert_non_null(strstr(diag, "notice: envoy_log_format: %RESP(x-other)% is always unset"));
    pt_snapshot_release(s);

    /* A path that cannot be opened: an error, and stdout. */
    s = compile_module(MODULE("    envoy_log_path: /nonexistent-dir/access.log\n"), diag, sizeof(diag));
    assert_int_equal(s->log.fd, 0);
    assert_string_equal(diag, "mod.yaml:1: Module/default/ambassador: envoy_log_path /nonexistent-dir/access.log: "
                              "No such file or directory; access logs go to stdout\n");
    pt_snapshot_release(s);
    s = compile_module(MODULE("    envoy_log_path: /dev/fd/1\n"), diag, sizeof(diag));
    assert_int_equal(s->log.fd, 0);
    assert_string_equal(diag, "");
    pt_snapshot_release(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_steps),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_compile_notice),
        cmocka_unit_test(test_compile_json),
        cmocka_unit_test(test_start_time),
        cmocka_unit_test_setup_teardown(test_default_line_matches_program, setup, teardown),
        cmocka_unit_test_setup_teardown(test_render_every_operator_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_render_ipv6_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_formats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_render_failure_and_local_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_render_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_render_long_lines, setup, teardown),
        cmocka_unit_test(test_module),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
