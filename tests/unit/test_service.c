/* Unit tests for src/cluster/service.c: parsing a Mapping's `service:` (schemes, ports, IP
 * literals, Emissary's namespace qualification) and resolving it to endpoints from an IP literal,
 * Endpoints and Service objects loaded from inline YAML, or the DNS cache (without a resolver, and
 * with one answering from a temporary hosts file). References: DESIGN.md "Resolution of
 * service:", reference/emissary.md §3 "service", reference/envoy-compat.md §1.6.
 * Tests named test_fixed_* pin bugs that were found here and fixed (see their comments). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/dns.h"
#include "cluster/service.h"
#include "config/load.h"
#include "core/loop.h"

/* ---- parsing --------------------------------------------------------------------------------- */

struct parse_case {
    const char *service, *mapping_ns, *amb_ns;
    bool tls_ctx;
    const char *scheme, *host, *name, *ns, *qualified; /* qualified NULL: not checked */
    int port;
    bool is_ip, tls;
};

static const struct parse_case parse_ok[] = {
    /* service, mapping ns, ambassador ns, tls context,
     *     scheme, host, name, namespace, qualified, port, is_ip, tls */
    { "quote", "default", "default", false,
      "", "quote", "quote", "default", "quote", 0, false, false },
    { "quote", "other", "default", false,
      "", "quote", "quote", "other", "quote.other", 0, false, false },
    { "quote:80", "default", "default", false,
      "", "quote", "quote", "default", "quote:80", 80, false, false },
    { "quote:80", "other", "default", false,
      "", "quote", "quote", "other", "quote.other:80", 80, false, false },
    { "quote", "default", "emissary", false,
      "", "quote", "quote", "default", "quote.default", 0, false, false },
    { "quote", "emissary", "emissary", false,
      "", "quote", "quote", "emissary", "quote", 0, false, false },
    { "quote.other", "default", "default", false,
      "", "quote.other", "quote", "other", "quote.other", 0, false, false },
    { "quote.other", "third", "default", false,
      "", "quote.other", "quote", "other", "quote.other", 0, false, false },
    { "quote.other:8080", "default", "default", false,
      "", "quote.other", "quote", "other", "quote.other:8080", 8080, false, false },
    { "quote.other.svc.cluster.local:81", "default", "default", false,
      "", "quote.other.svc.cluster.local", "quote", "other",
      "quote.other.svc.cluster.local:81", 81, false, false },
    { "http://quote", "default", "default", false,
      "http", "quote", "quote", "default", "http://quote", 0, false, false },
    { "http://quote", "other", "default", false,
      "http", "quote", "quote", "other", "http://quote.other", 0, false, false },
    { "https://quote", "default", "default", false,
      "https", "quote", "quote", "default", "https://quote", 0, false, true },
    { "https://quote:443", "other", "default", false,
      "https", "quote", "quote", "other", "https://quote.other:443", 443, false, true },
    { "quote", "default", "default", true,
      "", "quote", "quote", "default", "quote", 0, false, true },
    { "10.0.0.1:8080", "default", "default", false,
      "", "10.0.0.1", "10.0.0.1", "default", "10.0.0.1:8080", 8080, true, false },
    { "10.0.0.1", "other", "default", false,
      "", "10.0.0.1", "10.0.0.1", "other", "10.0.0.1", 0, true, false },
    { "https://10.0.0.1", "default", "default", false,
      "https", "10.0.0.1", "10.0.0.1", "default", "https://10.0.0.1", 0, true, true },
    { "[::1]:9000", "default", "default", false,
      "", "::1", "::1", "default", NULL, 9000, true, false },
    { "[::1]", "other", "default", false,
      "", "::1", "::1", "other", NULL, 0, true, false },
    { "[fd00::5]:8443", "default", "default", false,
      "", "fd00::5", "fd00::5", "default", NULL, 8443, true, false },
    { "localhost:9000", "other", "default", false,
      "", "localhost", "localhost", "other", "localhost:9000", 9000, false, false },
    { "localhost", "other", "default", false,
      "", "localhost", "localhost", "other", "localhost", 0, false, false },
    { "quote:1", "default", "default", false,
      "", "quote", "quote", "default", "quote:1", 1, false, false },
    { "quote:65535", "default", "default", false,
      "", "quote", "quote", "default", "quote:65535", 65535, false, false },
};

static void test_parse_ok(void **state)
{
    for (size_t i = 0; i < PT_ARRAY_SIZE(parse_ok); i++) {
        const struct parse_case *c = &parse_ok[i];
        struct pt_service_ref ref;
        char err[256] = "";

        if (pt_service_parse(c->service, c->mapping_ns, c->amb_ns, c->tls_ctx, &ref, err,
                             sizeof(err)) != 0)
            fail_msg("%s: rejected: %s", c->service, err);
        assert_string_equal(ref.scheme, c->scheme);
        assert_string_equal(ref.host, c->host);
        assert_string_equal(ref.name, c->name);
        assert_string_equal(ref.namespace, c->ns);
        if (c->qualified)
            assert_string_equal(ref.qualified, c->qualified);
        assert_int_equal(ref.port, c->port);
        assert_int_equal(ref.is_ip, c->is_ip);
        assert_int_equal(ref.tls, c->tls);
    }
}

struct parse_bad {
    const char *service, *message;
};

static const struct parse_bad parse_errors[] = {
    { "ftp://x", "unknown scheme in ftp://x" },
    { "HTTP2://x", "unknown scheme" },
    { "quote:0", "invalid port in quote:0" },
    { "quote:99999", "invalid port in quote:99999" },
    { "quote:65536", "invalid port" },
    { "quote:-1", "invalid port" },
    { "quote:", "invalid port" },
    { "quote:8o", "invalid port" },
    { "quote:80/path", "invalid port" },
    { "quote/path", "extra URL components in quote/path" },
    { "quote?x=1", "extra URL components" },
    { "user@quote", "extra URL components" },
    { "quo te", "extra URL components" },
    { "", "no host" },
    { ":80", "no host" },
    { "http://", "no host" },
    { "https://:443", "no host" },
    { "[::1", "bad IPv6 address" },
    { "[::1]x", "extra characters after the address" },
    { "[::1]:0", "invalid port" },
};

static void test_parse_errors(void **state)
{
    for (size_t i = 0; i < PT_ARRAY_SIZE(parse_errors); i++) {
        const struct parse_bad *c = &parse_errors[i];
        struct pt_service_ref ref;
        char err[256] = "";

        if (pt_service_parse(c->service, "default", "default", false, &ref, err, sizeof(err)) == 0)
            fail_msg("\"%s\" accepted (host \"%s\", port %d)", c->service, ref.host, ref.port);
        if (strstr(err, c->message) == NULL)
            fail_msg("\"%s\": message \"%s\" lacks \"%s\"", c->service, err, c->message);
    }
}

/* A host longer than the buffers is an error, not a truncation. */
static void test_parse_long_host(void **state)
{
    char svc[400], err[128];
    struct pt_service_ref ref;

    memset(svc, 'a', sizeof(svc) - 1);
    svc[sizeof(svc) - 1] = '\0';
    assert_int_equal(pt_service_parse(svc, "default", "default", false, &ref, err, sizeof(err)),
                     -1);
    memset(svc, 'a', 255);
    strcpy(svc + 255, ":80");
    assert_int_equal(pt_service_parse(svc, "default", "default", false, &ref, err, sizeof(err)), 0);
    assert_int_equal(strlen(ref.host), 255);
    assert_int_equal(ref.port, 80);
}

/* BUG: src/cluster/service.c:90-91 builds `qualified` from ref->host, which for an IPv6 literal
 * has lost its brackets: "[::1]:9000" gives "::1:9000" (not a valid service string, and it does
 * not parse back to the same address and port). Emissary leaves such a service as written, so
 * the cluster is cluster____1__9000_default there and cluster___1_9000_default here (and the
 * stats name differs the same way). */
static void test_fixed_ipv6_qualified_loses_brackets(void **state)
{
    struct pt_service_ref ref, again;
    char err[128];

    assert_int_equal(pt_service_parse("[::1]:9000", "default", "default", false, &ref, err,
                                      sizeof(err)), 0);
    assert_string_equal(ref.qualified, "[::1]:9000");
    assert_int_equal(pt_service_parse(ref.qualified, "default", "default", false, &again, err,
                                      sizeof(err)), 0);
    assert_string_equal(again.host, "::1");
    assert_int_equal(again.port, 9000);
}

/* ---- resolution ------------------------------------------------------------------------------ */

static const char resolve_yaml[] =
    "apiVersion: v1\n"
    "kind: Service\n"
    "metadata: {name: quote, namespace: default}\n"
    "spec:\n"
    "  ports: [{name: http, port: 80, targetPort: 8080}]\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: Endpoints\n"
    "metadata: {name: quote, namespace: default}\n"
    "subsets:\n"
    "- addresses: [{ip: 10.1.0.5}, {ip: 10.1.0.6}, {ip: 'fd00::5'}]\n"
    "  ports: [{name: http, port: 8080}]\n"
    "---\n"
    /* two ports, one with a named targetPort; two subsets with different container ports */
    "apiVersion: v1\n"
    "kind: Service\n"
    "metadata: {name: multi}\n"
    "spec:\n"
    "  ports:\n"
    "  - {name: http, port: 80, targetPort: web}\n"
    "  - {name: admin, port: 9000, targetPort: 9090}\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: Endpoints\n"
    "metadata: {name: multi}\n"
    "subsets:\n"
    "- addresses: [{ip: 10.2.0.1}, {ip: 10.2.0.2}]\n"
    "  ports: [{name: admin, port: 9090}, {name: http, port: 3000}]\n"
    "- addresses: [{ip: 10.2.0.3}]\n"
    "  ports: [{name: http, port: 3001}, {name: admin, port: 9090}]\n"
    "---\n"
    /* the same name in another namespace */
    "apiVersion: v1\n"
    "kind: Service\n"
    "metadata: {name: quote, namespace: other}\n"
    "spec: {ports: [{port: 8081}]}\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: Endpoints\n"
    "metadata: {name: quote, namespace: other}\n"
    "subsets: [{addresses: [{ip: 10.3.0.1}], ports: [{port: 8081}]}]\n"
    "---\n"
    /* Endpoints without a Service */
    "apiVersion: v1\n"
    "kind: Endpoints\n"
    "metadata: {name: bare}\n"
    "subsets: [{addresses: [{ip: 10.4.0.1}], ports: [{port: 7000}]}]\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: Endpoints\n"
    "metadata: {name: bare2}\n"
    "subsets:\n"
    "- addresses: [{ip: 10.4.0.2}]\n"
    "  ports: [{name: a, port: 7001}, {name: b, port: 80}]\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: Endpoints\n"
    "metadata: {name: empty}\n"
    "subsets: []\n"
    "---\n"
    /* a Service without Endpoints: DNS */
    "apiVersion: v1\n"
    "kind: Service\n"
    "metadata: {name: nosvc-endpoints}\n"
    "spec: {ports: [{port: 80}]}\n"
    "---\n"
    /* named targetPort that only some pods have (subset 2 lacks it) */
    "apiVersion: v1\n"
    "kind: Service\n"
    "metadata: {name: split}\n"
    "spec:\n"
    "  ports:\n"
    "  - {name: http, port: 80, targetPort: web}\n"
    "  - {name: grpc, port: 9000, targetPort: 9090}\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: Endpoints\n"
    "metadata: {name: split}\n"
    "subsets:\n"
    "- addresses: [{ip: 10.5.0.1}]\n"
    "  ports: [{name: http, port: 8080}, {name: grpc, port: 9090}]\n"
    "- addresses: [{ip: 10.5.0.2}]\n"
    "  ports: [{name: grpc, port: 9090}]\n"
    "---\n"
    /* Service port `web` targets the container port named `http` (3000); Service port `http`
     * targets 8080. Endpoints ports carry the Service port names. */
    "apiVersion: v1\n"
    "kind: Service\n"
    "metadata: {name: cross}\n"
    "spec:\n"
    "  ports:\n"
    "  - {name: web, port: 80, targetPort: http}\n"
    "  - {name: http, port: 8080, targetPort: 8080}\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: Endpoints\n"
    "metadata: {name: cross}\n"
    "subsets:\n"
    "- addresses: [{ip: 10.6.0.1}]\n"
    "  ports: [{name: http, port: 8080}, {name: web, port: 3000}]\n";

static int setup_resources(void **state)
{
    struct pt_resources *r = pt_config_load_string(resolve_yaml, "svc.yaml", NULL);

    if (r->diag.nerrors != 0) {
        pt_diag_print(&r->diag, stderr);
        pt_resources_free(r);
        return -1;
    }
    *state = r;
    return 0;
}

static int teardown_resources(void **state)
{
    pt_resources_free(*state);
    return 0;
}

struct resolved {
    struct pt_cluster cl;
    struct pt_diag diag;
    char endpoints[1024]; /* "a,b,c" */
    int rc;
};

/* resolve: parses <service> of a Mapping "m" in <mapping_ns> (Portico in "default") and resolves
 * it against <r>. Free with resolved_free(). */
static struct resolved *resolve(const struct pt_resources *r, const char *service,
                                const char *mapping_ns, bool tls)
{
    static const struct pt_meta owner_tmpl = { .kind = "Mapping", .name = "m",
                                               .origin = { "svc.yaml", 7 } };
    struct resolved *res = calloc(1, sizeof(*res));
    struct pt_meta owner = owner_tmpl;
    struct pt_service_ref ref;
    char err[256];
    size_t off = 0;

    assert_non_null(res);
    owner.namespace = mapping_ns;
    res->rc = pt_service_parse(service, mapping_ns, "default", tls, &ref, err, sizeof(err));
    if (res->rc != 0)
        fail_msg("%s: %s", service, err);
    pt_service_resolve(&ref, r, &res->cl, &res->diag, &owner);
    for (uint32_t i = 0; i < res->cl.nendpoints; i++)
        off += (size_t)snprintf(res->endpoints + off, sizeof(res->endpoints) - off, "%s%s",
                                i ? "," : "", res->cl.endpoints[i].name);
    return res;
}

static void resolved_free(struct resolved *res)
{
    free(res->cl.endpoints);
    pt_diag_free(&res->diag);
    free(res);
}

static void expect(const struct pt_resources *r, const char *service, const char *ns, bool tls,
                   const char *endpoints, int port)
{
    struct resolved *res = resolve(r, service, ns, tls);

    if (strcmp(res->endpoints, endpoints) != 0 || res->cl.port != port || res->diag.n != 0)
        fail_msg("%s in %s%s: endpoints \"%s\" port %d (%zu diagnostics), want \"%s\" port %d",
                 service, ns, tls ? " (tls)" : "", res->endpoints, res->cl.port, res->diag.n,
                 endpoints, port);
    resolved_free(res);
}

/* expect_notice: no endpoints, and one notice naming the Mapping, its file:line and <message>. */
static void expect_notice(const struct pt_resources *r, const char *service, bool tls,
                          const char *message)
{
    struct resolved *res = resolve(r, service, "default", tls);

    assert_int_equal(res->cl.nendpoints, 0);
    assert_int_equal(res->diag.n, 1);
    assert_int_equal(res->diag.nerrors, 0);
    assert_int_equal(res->diag.entries[0].severity, PT_DIAG_NOTICE);
    assert_string_equal(res->diag.entries[0].object, "Mapping/default/m");
    assert_string_equal(res->diag.entries[0].origin.file, "svc.yaml");
    assert_int_equal(res->diag.entries[0].origin.line, 7);
    if (strstr(res->diag.entries[0].message, message) == NULL)
        fail_msg("%s: notice \"%s\" lacks \"%s\"", service, res->diag.entries[0].message, message);
    resolved_free(res);
}

static const char quote_eps[] = "10.1.0.5:8080,10.1.0.6:8080,[fd00::5]:8080";

static void test_single_port_service(void **state)
{
    const struct pt_resources *r = *state;

    expect(r, "quote", "default", false, quote_eps, 80);           /* the only port */
    expect(r, "quote:80", "default", false, quote_eps, 80);        /* named, through targetPort */
    expect(r, "http://quote:80", "default", false, quote_eps, 80);
    expect(r, "quote.default", "other", false, quote_eps, 80);     /* namespace in the name */
    /* The seed's `service: quote` with `tls: istio-upstream`: the single port, not 443. */
    expect(r, "quote", "default", true, quote_eps, 80);
}

static void test_service_without_matching_port(void **state)
{
    const struct pt_resources *r = *state;

    expect_notice(r, "quote:8080", false, "Service quote.default has no port 8080; no endpoints");
    expect_notice(r, "multi:81", false, "Service multi.default has no port 81");
    /* No port, two Service ports: the default port decides (443 with TLS). */
    expect_notice(r, "multi", true, "Service multi.default has no port 443");
}

static void test_named_target_port_and_subsets(void **state)
{
    const struct pt_resources *r = *state;

    /* targetPort `web` is resolved per subset through the Endpoints port names. */
    expect(r, "multi:80", "default", false, "10.2.0.1:3000,10.2.0.2:3000,10.2.0.3:3001", 80);
    expect(r, "multi", "default", false, "10.2.0.1:3000,10.2.0.2:3000,10.2.0.3:3001", 80);
    expect(r, "multi:9000", "default", false, "10.2.0.1:9090,10.2.0.2:9090,10.2.0.3:9090", 9000);
}

static void test_mapping_namespace_selects_objects(void **state)
{
    const struct pt_resources *r = *state;

    expect(r, "quote", "other", false, "10.3.0.1:8081", 8081);
    expect(r, "quote.other", "default", false, "10.3.0.1:8081", 8081);
    expect(r, "quote.other:8081", "elsewhere", false, "10.3.0.1:8081", 8081);
}

static void test_endpoints_without_service(void **state)
{
    const struct pt_resources *r = *state;

    expect(r, "bare", "default", false, "10.4.0.1:7000", 0);      /* the only port */
    expect(r, "bare:7000", "default", false, "10.4.0.1:7000", 0);
    expect(r, "bare2", "default", false, "10.4.0.2:80", 0);       /* the default port, by number */
    expect(r, "bare2:7001", "default", false, "10.4.0.2:7001", 0);
    expect(r, "empty", "default", false, "", 0);
}

static void test_ip_literals(void **state)
{
    const struct pt_resources *r = *state;

    expect(r, "10.0.0.1:8080", "default", false, "10.0.0.1:8080", 8080);
    expect(r, "10.0.0.1", "default", false, "10.0.0.1:80", 80);
    expect(r, "10.0.0.1", "default", true, "10.0.0.1:443", 443);
    expect(r, "https://10.0.0.1", "default", false, "10.0.0.1:443", 443);
    expect(r, "https://10.0.0.1:8443", "default", false, "10.0.0.1:8443", 8443);
    expect(r, "[::1]:9000", "default", false, "[::1]:9000", 9000);
    expect(r, "[fd00::1]", "other", false, "[fd00::1]:80", 80);
}

/* Without pt_dns_init (portico check), names that are not Endpoints resolve to nothing. */
static void test_dns_fallback_without_resolver(void **state)
{
    const struct pt_resources *r = *state;
    struct pt_dns_stats st;

    expect(r, "nosvc-endpoints", "default", false, "", 80);
    expect(r, "unknown.example.com:8080", "default", false, "", 8080);
    expect(r, "https://unknown.example.com", "default", false, "", 443);
    expect(r, "localhost:9000", "default", false, "", 9000);
    pt_dns_get_stats(&st);
    assert_int_equal(st.entries, 0);
}

/* A cluster that already has endpoints gets more appended (the caller resolves once). */
static void test_resolve_appends(void **state)
{
    const struct pt_resources *r = *state;
    struct resolved *res = resolve(r, "bare", "default", false);
    struct pt_service_ref ref;
    char err[64];

    assert_int_equal(pt_service_parse("10.9.9.9:1", "default", "default", false, &ref, err,
                                      sizeof(err)), 0);
    pt_service_resolve(&ref, r, &res->cl, &res->diag, NULL);
    assert_int_equal(res->cl.nendpoints, 2);
    assert_string_equal(res->cl.endpoints[1].name, "10.9.9.9:1");
    assert_int_equal(res->cl.port, 1);
    resolved_free(res);
}

/* BUG: src/cluster/service.c:171-172 (subset_port) falls back to a subset's only port when the
 * Service port's named targetPort is not in that subset. Service split: http 80 -> targetPort
 * `web`, grpc 9000 -> 9090; subset 2 (pods without a `web` port) lists only grpc 9090.
 * `service: split:80` should give 10.5.0.1:8080 only; it also gives 10.5.0.2:9090, so HTTP for
 * port 80 is sent to the gRPC port. */
static void test_fixed_named_target_port_missing_from_subset(void **state)
{
    expect(*state, "split:80", "default", false, "10.5.0.1:8080", 80);
}

/* BUG: src/cluster/service.c:159 (subset_port) matches the Service port's targetPort *name*
 * against Endpoints port names, but Endpoints ports carry the Service port names. Service cross:
 * `web` 80 -> targetPort `http` (a container port, 3000), `http` 8080 -> 8080; Endpoints ports
 * {http: 8080, web: 3000}. `service: cross:80` should give 10.6.0.1:3000; it gives
 * 10.6.0.1:8080 (the other Service port's backend). */
static void test_fixed_target_port_name_matched_as_port_name(void **state)
{
    expect(*state, "cross:80", "default", false, "10.6.0.1:3000", 80);
}

/* ---- DNS with a resolver: names from a temporary hosts file ---------------------------------- */

struct dns_fx {
    struct pt_loop *loop;
    int changes;
    char hosts[64];
};

static void dns_on_change(void *arg)
{
    ((struct dns_fx *)arg)->changes++;
}

static int setup_dns(void **state)
{
    struct dns_fx *fx = calloc(1, sizeof(*fx));
    static const char hosts[] = "10.7.7.7 dnsq.other\n"
                                "10.8.8.8 dnsq\n"
                                "10.9.0.1 api.example.test\n";
    FILE *f;
    int fd;

    if (fx == NULL)
        return -1;
    snprintf(fx->hosts, sizeof(fx->hosts), "/tmp/portico-svc-hosts-XXXXXX");
    fd = mkstemp(fx->hosts);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL)
        return -1;
    fputs(hosts, f);
    fclose(f);
    setenv("CARES_HOSTS", fx->hosts, 1);
    fx->loop = pt_loop_new();
    if (fx->loop == NULL || pt_dns_init(fx->loop, dns_on_change, fx) != 0)
        return -1;
    *state = fx;
    return 0;
}

static int teardown_dns(void **state)
{
    struct dns_fx *fx = *state;

    pt_dns_fini();
    pt_loop_free(fx->loop);
    unsetenv("CARES_HOSTS");
    unlink(fx->hosts);
    free(fx);
    return 0;
}

/* dns_resolve: resolves <service> of a Mapping in <ns> against no objects, waiting (up to 2 s)
 * for the lookup the first call starts. Returns the endpoints, "a,b". */
static struct resolved *dns_resolve(struct dns_fx *fx, const char *service, const char *ns)
{
    struct pt_resources empty = { 0 };
    struct resolved *res = resolve(&empty, service, ns, false);
    uint64_t t0 = pt_now_ms();
    int changes = fx->changes;

    if (res->cl.nendpoints != 0)
        return res;
    resolved_free(res);
    while (fx->changes == changes && pt_now_ms() - t0 < 2000)
        pt_loop_run_once(fx->loop, 20);
    return resolve(&empty, service, ns, false);
}

static void expect_dns(struct dns_fx *fx, const char *service, const char *ns,
                       const char *endpoints)
{
    struct resolved *res = dns_resolve(fx, service, ns);

    if (strcmp(res->endpoints, endpoints) != 0)
        fail_msg("%s in %s: endpoints \"%s\", want \"%s\"", service, ns, res->endpoints, endpoints);
    resolved_free(res);
}

static void test_dns_resolves_names(void **state)
{
    struct dns_fx *fx = *state;

    expect_dns(fx, "api.example.test:8080", "default", "10.9.0.1:8080");
    expect_dns(fx, "dnsq.other", "default", "10.7.7.7:80");
    expect_dns(fx, "localhost:9000", "default", "127.0.0.1:9000" /* IPv4 only when there is IPv4, as Emissary */);
    expect_dns(fx, "https://api.example.test", "default", "10.9.0.1:443");
}

/* BUG: src/cluster/service.c:226 looks up ref->host ("dnsq") for a bare name, but DESIGN.md
 * "Resolution of service:" step 3 says DNS tries `name.namespace` first, then `name`. A Mapping
 * in namespace `other` with `service: dnsq` should reach dnsq.other (10.7.7.7); it reaches
 * whatever `dnsq` is (10.8.8.8) — in a cluster, the Service of that name in Portico's own
 * namespace (via resolv.conf search domains). */
static void test_fixed_dns_bare_name_not_qualified(void **state)
{
    expect_dns(*state, "dnsq", "other", "10.7.7.7:80");
}

int main(void)
{
    const struct CMUnitTest parse[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_long_host),
        cmocka_unit_test(test_fixed_ipv6_qualified_loses_brackets),
    };
    const struct CMUnitTest res[] = {
        cmocka_unit_test(test_single_port_service),
        cmocka_unit_test(test_service_without_matching_port),
        cmocka_unit_test(test_named_target_port_and_subsets),
        cmocka_unit_test(test_mapping_namespace_selects_objects),
        cmocka_unit_test(test_endpoints_without_service),
        cmocka_unit_test(test_ip_literals),
        cmocka_unit_test(test_dns_fallback_without_resolver),
        cmocka_unit_test(test_resolve_appends),
        cmocka_unit_test(test_fixed_named_target_port_missing_from_subset),
        cmocka_unit_test(test_fixed_target_port_name_matched_as_port_name),
    };
    const struct CMUnitTest dns[] = {
        cmocka_unit_test(test_dns_resolves_names),
        cmocka_unit_test(test_fixed_dns_bare_name_not_qualified),
    };
    int failed = 0;

    failed += cmocka_run_group_tests_name("parse", parse, NULL, NULL);
    failed += cmocka_run_group_tests_name("resolve", res, setup_resources, teardown_resources);
    failed += cmocka_run_group_tests_name("dns", dns, setup_dns, teardown_dns);
    return failed;
}
