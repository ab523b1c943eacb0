/* Unit tests for src/config/compile.c: resources loaded from inline YAML are compiled with
 * pt_compile() and applied as `portico run` does (control/apply.c, one worker, so each Listener
 * opens one real socket on a free port) and the snapshot is checked: listeners and the Hosts they bind, the synthesised default Host, which
 * Mappings each Host's route table takes (through pt_route_match()), virtual-host order,
 * Emissary's cluster and stats names, per-Mapping rejection with file:line, listening sockets
 * shared between snapshots, and the time to compile 10,000 Mappings. Tests named test_fixed_*
 * pin bugs that were found here and fixed (see their comments). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config/compile.h"
#include "config/load.h"
#include "config/snapshot.h"
#include "control/apply.h"
#include "control/listen.h"
#include "route/route.h"

/* ---- helpers --------------------------------------------------------------------------------- */

/* free_port: a TCP port nothing listens on right now (the kernel's pick for port 0). */
static int free_port(void)
{
    struct sockaddr_in6 a = { .sin6_family = AF_INET6 };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET6, SOCK_STREAM, 0), port;

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin6_port);
    close(fd);
    return port;
}

static struct pt_resources *load_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static struct pt_resources *load_fmt(const char *fmt, ...)
{
    struct pt_resources *r;
    char *yaml;
    va_list ap;

    va_start(ap, fmt);
    assert_true(vasprintf(&yaml, fmt, ap) >= 0);
    va_end(ap);
    r = pt_config_load_string(yaml, "t.yaml", NULL);
    free(yaml);
    return r;
}

static char *diag_str(const struct pt_diag *d)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    pt_diag_print(d, f);
    fclose(f);
    return buf;
}

static void check_diag(const struct pt_diag *d, const char *needle, bool want)
{
    char *s = diag_str(d);

    if ((strstr(s, needle) != NULL) != want) {
        print_error("diagnostics %s \"%s\":\n%s", want ? "lack" : "contain", needle, s);
        free(s);
        fail();
    }
    free(s);
}

#define assert_diag(d, needle) check_diag((d), (needle), true)
#define assert_no_diag(d, needle) check_diag((d), (needle), false)

static void assert_errors(const struct pt_diag *d, size_t n)
{
    if (d->nerrors != n) {
        char *s = diag_str(d);
        print_error("want %zu errors, have %zu:\n%s", n, d->nerrors, s);
        free(s);
        fail();
    }
}

/* compile: pt_compile with Portico in namespace <amb_ns> (NULL: "default"), then pt_apply with
 * one worker, as `portico run` does. */
static struct pt_snapshot *compile(struct pt_resources *r, const char *amb_ns)
{
    struct pt_config_env env = { .ambassador_id = "default",
                                 .namespace = amb_ns ? amb_ns : "default" };
    struct pt_snapshot *s = pt_compile(r, &env, 7, &r->diag);

    pt_apply(s, r, &(struct pt_apply_opts){ .nworkers = 1 }, &r->diag);

    assert_non_null(s);
    assert_int_equal(atomic_load(&s->refcnt), 1);
    assert_int_equal(s->generation, 7);
    return s;
}

static const struct pt_vhost *find_vhost(const struct pt_listener *l, const char *hostname)
{
    for (uint32_t i = 0; i < l->nvhosts; i++)
        if (strcmp(l->vhosts[i]->hostname, hostname) == 0)
            return l->vhosts[i];
    fail_msg("listener %s has no vhost %s", l->name, hostname);
    return NULL;
}

/* route: the action for GET <path> with Host <authority> on <vh>, or NULL (404). */
static const struct pt_route_action *route(const struct pt_vhost *vh, const char *path,
                                           const char *authority)
{
    struct pt_route_req req = { .method = PT_STR_LIT("GET"), .path = pt_str_c(path),
                                .authority = pt_str_c(authority) };
    const struct pt_route *rt = pt_route_match(vh->routes, &req, 0);

    return rt ? pt_route_action(rt) : NULL;
}

/* routed_to: the Mapping ("ns/name") that serves <path> on <vh>, or "404". */
static const char *routed_to(const struct pt_vhost *vh, const char *path, const char *authority)
{
    const struct pt_route_action *a = route(vh, path, authority);

    return a ? a->mapping : "404";
}

static const struct pt_cluster *find_cluster(const struct pt_snapshot *s, const char *name)
{
    for (uint32_t i = 0; i < s->nclusters; i++)
        if (strcmp(s->clusters[i]->name, name) == 0)
            return s->clusters[i];
    return NULL;
}

static void expect_cluster(const struct pt_snapshot *s, const char *name, const char *stats)
{
    const struct pt_cluster *c = find_cluster(s, name);

    if (c == NULL) {
        for (uint32_t i = 0; i < s->nclusters; i++)
            print_error("  have %s (stats %s)\n", s->clusters[i]->name, s->clusters[i]->stats_name);
        fail_msg("no cluster %s", name);
    }
    assert_string_equal(c->stats_name, stats);
}

/* A Listener on port %d binding Hosts from every namespace. */
#define LISTENER                                                                         \
    "apiVersion: getambassador.io/v3alpha1\nkind: Listener\nmetadata: {name: edge}\n"     \
    "spec: {port: %d, protocol: HTTP, securityModel: XFP, "                                \
    "hostBinding: {namespace: {from: ALL}}}\n"                                              \
    "---\n"

#define MAPPING(name, extra) \
    "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: " name "}\n" \
    "spec: {" extra "}\n---\n"
#define HOST(name, extra) \
    "apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: " name "}\n" \
    "spec: {" extra "}\n---\n"

/* ---- listeners and the default Host ---------------------------------------------------------- */

static void test_default_host_synthesised(void **state)
{
    int port = free_port();
    struct pt_resources *r = load_fmt(LISTENER MAPPING("quote", "hostname: '*', prefix: /backend/, "
                                                            "service: quote")
                                          MAPPING("nohost", "prefix: /nohost/, service: other"),
                                      port);
    struct pt_snapshot *s = compile(r, NULL);
    const struct pt_listener *l;
    const struct pt_vhost *vh;
    const struct pt_route_action *a;
    struct sockaddr_in6 sa;
    socklen_t len = sizeof(sa);

    assert_errors(&r->diag, 0);
    assert_int_equal(s->nlisteners, 1);
    l = &s->listeners[0];
    assert_string_equal(l->name, "default/edge");
    assert_int_equal(l->port, port);
    assert_int_equal(l->protocol, PT_PROTO_HTTP);
    assert_int_equal(l->security_model, PT_SECURITY_XFP);
    assert_string_equal(l->stats_prefix, "ingress_http");
    assert_non_null(l->sock);
    assert_int_equal(l->sock->nfds, 1);
    assert_int_equal(getsockname(l->sock->fds[0], (struct sockaddr *)&sa, &len), 0);
    assert_int_equal(ntohs(sa.sin6_port), port);
    assert_ptr_equal(pt_snapshot_find_listener(s, port), l);

    /* No Host at all: one cleartext-routing "*" Host is made up. */
    assert_int_equal(s->nvhosts, 1);
    assert_int_equal(l->nvhosts, 1);
    vh = l->vhosts[0];
    assert_string_equal(vh->hostname, "*");
    assert_true(vh->synthesized);
    assert_int_equal(vh->insecure_action, PT_INSECURE_ROUTE);

    /* It takes the Mapping with a hostname, not the one without (which matches no Host). */
    assert_int_equal(pt_route_table_size(vh->routes), 1);
    a = route(vh, "/backend/q", "anything.example.com");
    assert_non_null(a);
    assert_string_equal(a->mapping, "default/quote");
    assert_string_equal(a->cluster->name, "cluster_quote_default");
    assert_string_equal(a->cluster->stats_name, "quote");
    assert_int_equal(a->timeout_ms, 3000);
    assert_string_equal(routed_to(vh, "/nohost/", "anything.example.com"), "404");
    assert_non_null(strstr(s->diag_json, "\"cluster_quote_default\""));
    pt_snapshot_release(s);
    pt_resources_free(r);
}

static void test_no_default_host_once_a_host_exists(void **state)
{
    int port = free_port();
    struct pt_resources *r = load_fmt(LISTENER HOST("a", "hostname: a.example.com")
                                          MAPPING("any", "hostname: '*', prefix: /, service: q"),
                                      port);
    struct pt_snapshot *s = compile(r, NULL);
    const struct pt_vhost *vh;

    assert_errors(&r->diag, 0);
    assert_int_equal(s->nvhosts, 1);
    assert_int_equal(s->listeners[0].nvhosts, 1);
    vh = s->listeners[0].vhosts[0];
    assert_string_equal(vh->hostname, "a.example.com");
    assert_false(vh->synthesized);
    assert_int_equal(vh->insecure_action, PT_INSECURE_REDIRECT); /* Emissary's default */
    assert_string_equal(routed_to(vh, "/x", "a.example.com"), "default/any");
    pt_snapshot_release(s);
    pt_resources_free(r);
}

static void test_no_listener(void **state)
{
    struct pt_resources *r = load_fmt(MAPPING("m", "hostname: '*', prefix: /, service: q"));
    struct pt_snapshot *s = compile(r, NULL);

    assert_int_equal(s->nlisteners, 0);
    assert_int_equal(s->nvhosts, 1); /* the default Host still exists */
    assert_diag(&r->diag, "no Listener is configured");
    assert_errors(&r->diag, 0);
    pt_snapshot_release(s);
    pt_resources_free(r);
}

/* ---- which Mappings a Host takes ------------------------------------------------------------- */

static void test_mapping_selector(void **state)
{
    int port = free_port();
    struct pt_resources *r = load_fmt(
        LISTENER
        "apiVersion: getambassador.io/v3alpha1\n"
        "kind: Host\n"
        "metadata: {name: a}\n"
        "spec:\n"
        "  hostname: a.example.com\n"
        "  mappingSelector: {matchLabels: {team: a}}\n"
        "---\n" HOST("b", "hostname: b.example.com")
        "apiVersion: getambassador.io/v3alpha1\n"
        "kind: Mapping\n"
        "metadata: {name: one, labels: {team: a, tier: web}}\n"
        "spec: {hostname: '*', prefix: /one/, service: one}\n"
        "---\n" MAPPING("two", "hostname: '*', prefix: /two/, service: two")
        "apiVersion: getambassador.io/v3alpha1\n"
        "kind: Mapping\n"
        "metadata: {name: three, labels: {team: a}}\n"
        "spec: {prefix: /three/, service: three}\n"
        "---\n"
        "apiVersion: getambassador.io/v3alpha1\n"
        "kind: Mapping\n"
        "metadata: {name: four, labels: {team: a}}\n"
        "spec: {hostname: b.example.com, prefix: /four/, service: four}\n"
        "---\n"
        "apiVersion: getambassador.io/v3alpha1\n"
        "kind: Mapping\n"
        "metadata: {name: five, labels: {team: b}}\n"
        "spec: {hostname: a.example.com, prefix: /five/, service: five}\n"
        "---\n" MAPPING("six", "host: b.example.com, prefix: /six/, service: six")
            MAPPING("seven", "hostname: '*.example.com', prefix: /seven/, service: seven"),
        port);
    struct pt_snapshot *s = compile(r, NULL);
    const struct pt_vhost *a, *b;

    assert_errors(&r->diag, 0);
    assert_int_equal(s->nvhosts, 2);
    a = find_vhost(&s->listeners[0], "a.example.com");
    b = find_vhost(&s->listeners[0], "b.example.com");
    /* a: selector and hostname must both match; selector alone when there is no hostname. */
    assert_string_equal(routed_to(a, "/one/", "a.example.com"), "default/one");
    assert_string_equal(routed_to(a, "/two/", "a.example.com"), "404");    /* no label */
    assert_string_equal(routed_to(a, "/three/", "a.example.com"), "default/three");
    assert_string_equal(routed_to(a, "/four/", "a.example.com"), "404");   /* hostname b */
    assert_string_equal(routed_to(a, "/five/", "a.example.com"), "404");   /* label b */
    assert_string_equal(routed_to(a, "/six/", "a.example.com"), "404");
    assert_string_equal(routed_to(a, "/seven/", "a.example.com"), "404");  /* no label */
    assert_int_equal(pt_route_table_size(a->routes), 2);
    /* b: no selector, so the hostname decides; a Mapping without one matches nothing. */
    assert_string_equal(routed_to(b, "/one/", "b.example.com"), "default/one");
    assert_string_equal(routed_to(b, "/two/", "b.example.com"), "default/two");
    assert_string_equal(routed_to(b, "/three/", "b.example.com"), "404");
    assert_string_equal(routed_to(b, "/four/", "b.example.com"), "default/four");
    assert_string_equal(routed_to(b, "/five/", "b.example.com"), "404");
    assert_string_equal(routed_to(b, "/six/", "b.example.com"), "default/six");
    assert_string_equal(routed_to(b, "/seven/", "b.example.com"), "default/seven");
    pt_snapshot_release(s);
    pt_resources_free(r);
}

static void test_listener_host_binding(void **state)
{
    int p_self = free_port(), p_all = free_port(), p_sel = free_port();
    struct pt_resources *r;
    struct pt_snapshot *s;
    const struct pt_listener *self, *all, *sel;

    while (p_all == p_self)
        p_all = free_port();
    while (p_sel == p_self || p_sel == p_all)
        p_sel = free_port();
    r = load_fmt("apiVersion: getambassador.io/v3alpha1\n"
                 "kind: Listener\n"
                 "metadata: {name: self, namespace: edge}\n"
                 "spec: {port: %d, protocol: HTTP, securityModel: XFP,\n"
                 "       hostBinding: {namespace: {from: SELF}}}\n"
                 "---\n"
                 "apiVersion: getambassador.io/v3alpha1\n"
                 "kind: Listener\n"
                 "metadata: {name: all, namespace: edge}\n"
                 "spec: {port: %d, protocol: HTTPS, securityModel: XFP,\n"
                 "       hostBinding: {namespace: {from: ALL}}}\n"
                 "---\n"
                 "apiVersion: getambassador.io/v3alpha1\n"
                 "kind: Listener\n"
                 "metadata: {name: sel, namespace: edge}\n"
                 "spec: {port: %d, protocol: HTTP, securityModel: INSECURE, statsPrefix: mine,\n"
                 "       hostBinding: {selector: {matchLabels: {expose: 'yes'}}}}\n"
                 "---\n"
                 "apiVersion: getambassador.io/v3alpha1\n"
                 "kind: Host\n"
                 "metadata: {name: h-edge, namespace: edge}\n"
                 "spec: {hostname: edge.example.com}\n"
                 "---\n"
                 "apiVersion: getambassador.io/v3alpha1\n"
                 "kind: Host\n"
                 "metadata: {name: h-apps, namespace: apps, labels: {expose: 'yes'}}\n"
                 "spec: {hostname: apps.example.com}\n",
                 p_self, p_all, p_sel);
    s = compile(r, NULL);
    assert_errors(&r->diag, 0);
    assert_int_equal(s->nlisteners, 3);
    self = pt_snapshot_find_listener(s, p_self);
    all = pt_snapshot_find_listener(s, p_all);
    sel = pt_snapshot_find_listener(s, p_sel);
    assert_non_null(self);
    assert_non_null(all);
    assert_non_null(sel);
    assert_int_equal(self->nvhosts, 1);
    assert_string_equal(self->vhosts[0]->hostname, "edge.example.com");
    assert_int_equal(all->nvhosts, 2);
    assert_string_equal(all->stats_prefix, "ingress_https");
    assert_int_equal(sel->nvhosts, 1);
    assert_string_equal(sel->vhosts[0]->hostname, "apps.example.com");
    assert_string_equal(sel->stats_prefix, "mine");
    assert_int_equal(sel->security_model, PT_SECURITY_INSECURE);
    /* One vhost object per Host, shared by the Listeners that bind it. */
    assert_int_equal(s->nvhosts, 2);
    assert_ptr_equal(find_vhost(all, "edge.example.com"), self->vhosts[0]);
    pt_snapshot_release(s);
    pt_resources_free(r);
}

static void test_vhost_order(void **state)
{
    int port = free_port();
    struct pt_resources *r = load_fmt(LISTENER HOST("h1", "hostname: '*'")
                                          HOST("h2", "hostname: '*.a.com'")
                                          HOST("h3", "hostname: x.a.com")
                                          HOST("h4", "hostname: '*.b.a.com'")
                                          HOST("h5", "hostname: 'api.*'")
                                          HOST("h6", "hostname: longer.x.a.com")
                                          HOST("h7", "hostname: 'api.example.*'"),
                                      port);
    struct pt_snapshot *s = compile(r, NULL);
    static const char *const want[] = { "longer.x.a.com", "x.a.com", "*.b.a.com", "*.a.com",
                                        "api.example.*", "api.*", "*" };
    const struct pt_listener *l = &s->listeners[0];

    assert_errors(&r->diag, 0);
    assert_int_equal(l->nvhosts, PT_ARRAY_SIZE(want));
    for (size_t i = 0; i < PT_ARRAY_SIZE(want); i++)
        assert_string_equal(l->vhosts[i]->hostname, want[i]);
    pt_snapshot_release(s);
    pt_resources_free(r);
}

/* ---- clusters -------------------------------------------------------------------------------- */

static const char names_yaml[] =
    MAPPING("m1", "hostname: '*', prefix: /1/, service: quote")
    MAPPING("m2", "hostname: '*', prefix: /2/, service: 'quote:80'")
    MAPPING("m3", "hostname: '*', prefix: /3/, service: 'quote.other:8080'")
    MAPPING("m4", "hostname: '*', prefix: /4/, service: 'http://quote:8080'")
    MAPPING("m5", "hostname: '*', prefix: /5/, service: stats-svc, stats_name: my-stats")
    MAPPING("m6", "hostname: '*', prefix: /6/, service: quote")
    "apiVersion: getambassador.io/v3alpha1\n"
    "kind: Mapping\n"
    "metadata: {name: m7, namespace: shop}\n"
    "spec: {hostname: '*', prefix: /7/, service: 'quote:80'}\n"
    "---\n" MAPPING("m8", "hostname: '*', prefix: /8/, service: '10.0.0.1:8080'");

static void test_cluster_names(void **state)
{
    struct pt_resources *r = load_fmt("%s", names_yaml);
    struct pt_snapshot *s = compile(r, NULL);
    const struct pt_vhost *vh = s->vhosts[0];
    const struct pt_cluster *c;

    assert_errors(&r->diag, 0);
    /* Portico and the Mappings in `default`: nothing is qualified. */
    expect_cluster(s, "cluster_quote_default", "quote");
    expect_cluster(s, "cluster_quote_80_default", "quote_80");
    expect_cluster(s, "cluster_quote_other_8080_default", "quote_other_8080");
    expect_cluster(s, "cluster_http___quote_8080_default", "quote_8080"); /* scheme stripped */
    expect_cluster(s, "cluster_stats_svc_default", "my-stats");
    expect_cluster(s, "cluster_quote_shop_80_shop", "quote_shop_80"); /* qualified, then its ns */
    expect_cluster(s, "cluster_10_0_0_1_8080_default", "10_0_0_1_8080");
    assert_int_equal(s->nclusters, 7);
    for (uint32_t i = 0; i < s->nclusters; i++)
        assert_int_equal(s->clusters[i]->id, i);
    /* Mappings with the same service share one cluster. */
    assert_ptr_equal(route(vh, "/1/", "h")->cluster, route(vh, "/6/", "h")->cluster);
    c = route(vh, "/1/", "h")->cluster;
    assert_string_equal(c->service, "quote");
    assert_string_equal(c->host, "quote");
    assert_int_equal(c->port, 80);
    assert_false(c->tls);
    assert_int_equal(c->connect_timeout_ms, 3000);
    assert_int_equal(c->nendpoints, 0); /* DNS, and no resolver here */
    c = find_cluster(s, "cluster_10_0_0_1_8080_default");
    assert_int_equal(c->nendpoints, 1);
    assert_string_equal(c->endpoints[0].name, "10.0.0.1:8080");
    assert_ptr_equal(route(vh, "/8/", "h")->cluster, c);
    assert_string_equal(route(vh, "/7/", "h")->mapping, "shop/m7");
    pt_snapshot_release(s);
    pt_resources_free(r);
}

static void test_cluster_names_emissary_examples(void **state)
{
    struct pt_resources *r = load_fmt("%s", names_yaml);
    struct pt_snapshot *s = compile(r, "emissary");

    assert_errors(&r->diag, 0);
    /* reference/envoy-compat.md §1.6: Emissary in `emissary`, Mappings in `default`. */
    expect_cluster(s, "cluster_quote_default_default", "quote_default");
    expect_cluster(s, "cluster_quote_default_80_default", "quote_default_80");
    expect_cluster(s, "cluster_http___quote_default_8080_default", "quote_default_8080");
    expect_cluster(s, "cluster_quote_other_8080_default", "quote_other_8080"); /* has a dot */
    expect_cluster(s, "cluster_10_0_0_1_8080_default", "10_0_0_1_8080");     /* an IP */
    pt_snapshot_release(s);
    pt_resources_free(r);
}

/* expected_short: Emissary's short form of a cluster name over 60 characters. */
static void expected_short(const char *name, char *out, size_t len)
{
    unsigned char md[SHA_DIGEST_LENGTH];
    char hex[17];

    SHA1((const unsigned char *)name, strlen(name), md);
    for (int i = 0; i < 8; i++)
        sprintf(hex + 2 * i, "%02X", md[i]);
    snprintf(out, len, "%.40s-%s-0", name, hex);
}

static void test_long_cluster_names(void **state)
{
    char svc60[45], svc61[46], svc61b[46], full[128], want[128];
    struct pt_resources *r;
    struct pt_snapshot *s;
    const struct pt_vhost *vh;
    const struct pt_cluster *c;

    memset(svc60, 'x', 44);
    svc60[44] = '\0';
    memset(svc61, 'y', 45);
    svc61[45] = '\0';
    memcpy(svc61b, svc61, sizeof(svc61));
    svc61b[44] = 'z'; /* the same first 40 characters as svc61 */
    r = load_fmt(MAPPING("a", "hostname: '*', prefix: /a/, service: %s")
                     MAPPING("b", "hostname: '*', prefix: /b/, service: %s")
                         MAPPING("c", "hostname: '*', prefix: /c/, service: %s")
                             MAPPING("d", "hostname: '*', prefix: /d/, service: "
                                          "'https-is-not-a-scheme-here.my-long-namespace:8443'"),
                 svc60, svc61, svc61b);
    s = compile(r, NULL);
    vh = s->vhosts[0];
    assert_errors(&r->diag, 0);

    /* Exactly 60 characters: kept. */
    snprintf(full, sizeof(full), "cluster_%s_default", svc60);
    assert_int_equal(strlen(full), 60);
    assert_string_equal(route(vh, "/a/", "h")->cluster->name, full);

    /* 61: name[0:40] + "-" + SHA-1 (16 hex, upper case) + "-0"; the stats name is untouched. */
    snprintf(full, sizeof(full), "cluster_%s_default", svc61);
    expected_short(full, want, sizeof(want));
    c = route(vh, "/b/", "h")->cluster;
    assert_string_equal(c->name, want);
    assert_int_equal(strlen(c->name), 59);
    assert_string_equal(c->stats_name, svc61);

    snprintf(full, sizeof(full), "cluster_%s_default", svc61b);
    expected_short(full, want, sizeof(want));
    assert_string_equal(route(vh, "/c/", "h")->cluster->name, want);
    assert_string_not_equal(route(vh, "/c/", "h")->cluster->name, c->name);

    expected_short("cluster_https_is_not_a_scheme_here_my_long_namespace_8443_default", want,
                   sizeof(want));
    c = route(vh, "/d/", "h")->cluster;
    assert_string_equal(c->name, want);
    assert_string_equal(c->stats_name, "https_is_not_a_scheme_here_my_long_namespace_8443");
    for (uint32_t i = 0; i < s->nclusters; i++)
        assert_true(strlen(s->clusters[i]->name) <= 60);
    pt_snapshot_release(s);
    pt_resources_free(r);
}

/* ---- rejection: one Mapping alone, with file:line ------------------------------------------- */

static void test_bad_service_rejected_alone(void **state)
{
    int port = free_port();
    /* Each document is 5 lines: the Listener is at line 1, the Mappings at 6, 11, 16, 21. */
    struct pt_resources *r = load_fmt(LISTENER
                                      MAPPING("good", "hostname: '*', prefix: /good/, service: q")
                                      MAPPING("bad", "hostname: '*', prefix: /bad/, "
                                                     "service: 'quote:99999'")
                                      MAPPING("bad2", "hostname: '*', prefix: /bad2/, "
                                                      "service: 'ftp://x'")
                                      MAPPING("bad3", "hostname: '*', prefix: /bad3/, "
                                                       "service: 'quote/'"),
                                      port);
    struct pt_snapshot *s;
    const struct pt_vhost *vh;

    assert_errors(&r->diag, 0);
    s = compile(r, NULL);
    vh = s->listeners[0].vhosts[0];
    assert_errors(&r->diag, 3);
    assert_diag(&r->diag, "t.yaml:11: Mapping/default/bad: service: invalid port in quote:99999\n");
    assert_diag(&r->diag, "t.yaml:16: Mapping/default/bad2: service: unknown scheme in ftp://x\n");
    assert_diag(&r->diag, "t.yaml:21: Mapping/default/bad3: service: extra URL components in "
                          "quote/\n");
    assert_string_equal(routed_to(vh, "/good/", "h"), "default/good");
    assert_string_equal(routed_to(vh, "/bad/", "h"), "404");
    assert_string_equal(routed_to(vh, "/bad2/", "h"), "404");
    assert_string_equal(routed_to(vh, "/bad3/", "h"), "404");
    assert_int_equal(pt_route_table_size(vh->routes), 1);
    assert_int_equal(s->nclusters, 1);
    /* The admin's diag document carries the same errors and locations. */
    assert_non_null(strstr(s->diag_json, "\"location\":\"t.yaml:11\""));
    assert_non_null(strstr(s->diag_json, "invalid port in quote:99999"));
    pt_snapshot_release(s);
    pt_resources_free(r);
}

static void test_tls_origination(void **state)
{
    struct pt_resources *r = load_fmt(
        MAPPING("ok", "hostname: '*', prefix: /ok/, service: quote")
        MAPPING("https", "hostname: '*', prefix: /https/, service: 'https://quote'")
        MAPPING("ctx", "hostname: '*', prefix: /ctx/, service: quote, tls: upstream")
        MAPPING("nope", "hostname: '*', prefix: /nope/, service: quote, tls: nope")
        "apiVersion: getambassador.io/v3alpha1\n"
        "kind: TLSContext\n"
        "metadata: {name: upstream}\n"
        "spec: {secret: upstream-cert}\n");
    struct pt_snapshot *s;
    const struct pt_vhost *vh;

    assert_errors(&r->diag, 0);
    s = compile(r, NULL);
    vh = s->vhosts[0];
    /* An unknown or unusable context is an error on its Mapping, never plaintext. */
    assert_errors(&r->diag, 2);
    assert_diag(&r->diag, "Mapping/default/ctx: tls: TLSContext upstream: secret upstream-cert not found");
    assert_diag(&r->diag, "Mapping/default/nope: tls: Originate-TLS context nope is not defined");
    assert_string_equal(routed_to(vh, "/ok/", "h"), "default/ok");
    assert_string_equal(routed_to(vh, "/https/", "h"), "default/https");
    /* ...and its route stays, answering 503 (no endpoints) until the context can be built. */
    assert_string_equal(routed_to(vh, "/ctx/", "h"), "default/ctx");
    assert_string_equal(routed_to(vh, "/nope/", "h"), "default/nope");
    assert_int_equal(s->nclusters, 4);
    for (uint32_t i = 0; i < s->nclusters; i++) {
        const struct pt_cluster *cl = s->clusters[i];
        if (strcmp(cl->service, "https://quote") == 0) {
            assert_non_null(cl->tls_ctx); /* the null context: TLS, nothing verified */
            assert_int_equal(cl->port, 443);
        } else if (strstr(cl->name, "otls") != NULL) {
            assert_null(cl->tls_ctx);
            assert_int_equal(cl->nendpoints, 0);
        } else {
            assert_null(cl->tls_ctx);
        }
    }
    pt_snapshot_release(s);
    pt_resources_free(r);
}

static void test_listener_errors(void **state)
{
    int p1 = free_port(), p2, busy_fd, one = 1;
    struct sockaddr_in6 a = { .sin6_family = AF_INET6 };
    socklen_t len = sizeof(a);
    struct pt_resources *r;
    struct pt_snapshot *s;

    /* A port someone else listens on without SO_REUSEPORT. */
    busy_fd = socket(AF_INET6, SOCK_STREAM, 0);
    assert_true(busy_fd >= 0);
    setsockopt(busy_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    assert_int_equal(bind(busy_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(busy_fd, 1), 0);
    assert_int_equal(getsockname(busy_fd, (struct sockaddr *)&a, &len), 0);
    p2 = ntohs(a.sin6_port);
    r = load_fmt("apiVersion: getambassador.io/v3alpha1\n"
                 "kind: Listener\n"
                 "metadata: {name: first}\n"
                 "spec: {port: %d, protocol: HTTP, securityModel: XFP}\n"
                 "---\n"
                 "apiVersion: getambassador.io/v3alpha1\n"
                 "kind: Listener\n"
                 "metadata: {name: same-port}\n"
                 "spec: {port: %d, protocol: HTTPS, securityModel: XFP}\n"
                 "---\n"
                 "apiVersion: getambassador.io/v3alpha1\n"
                 "kind: Listener\n"
                 "metadata: {name: tcp}\n"
                 "spec: {port: %d, protocol: TCP, securityModel: XFP}\n"
                 "---\n"
                 "apiVersion: getambassador.io/v3alpha1\n"
                 "kind: Listener\n"
                 "metadata: {name: busy}\n"
                 "spec: {port: %d, protocol: HTTP, securityModel: XFP}\n",
                 p1, p1, p1 + 1 == p2 ? p1 + 2 : p1 + 1, p2);
    assert_errors(&r->diag, 0);
    s = compile(r, NULL);
    assert_errors(&r->diag, 3);
    assert_int_equal(s->nlisteners, 1);
    assert_string_equal(s->listeners[0].name, "default/first");
    assert_diag(&r->diag, "t.yaml:6: Listener/default/same-port: port ");
    assert_diag(&r->diag, " is already used by another Listener");
    assert_diag(&r->diag, "t.yaml:11: Listener/default/tcp: protocol not supported by this build");
    assert_diag(&r->diag, "t.yaml:16: Listener/default/busy: cannot listen on");
    pt_snapshot_release(s);
    pt_resources_free(r);
    close(busy_fd);
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

static void test_listen_sockets_shared_between_snapshots(void **state)
{
    int port = free_port();
    struct pt_resources *r = load_fmt(LISTENER, port);
    struct pt_snapshot *s1 = compile(r, NULL), *s2 = compile(r, NULL);
    struct pt_listen_sock *ls = s1->listeners[0].sock;
    int fd = ls->fds[0];

    assert_ptr_equal(s2->listeners[0].sock, ls); /* a reload keeps the bound socket */
    assert_int_equal(ls->refcnt, 2);
    pt_snapshot_ref(s1);
    assert_int_equal(atomic_load(&s1->refcnt), 2);
    pt_snapshot_release(s1);
    pt_snapshot_release(s1); /* freed: its listener reference goes */
    assert_int_equal(ls->refcnt, 1);
    assert_true(fd_open(fd));
    pt_snapshot_release(s2);
    assert_false(fd_open(fd)); /* the last snapshot closed it */
    pt_snapshot_release(NULL);
    pt_resources_free(r);
}

/* ---- 10,000 Mappings ------------------------------------------------------------------------- */

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* many_yaml: <n> Mappings /svc-<i>/ -> service svc-<i % nsvc>, with a Service and Endpoints per
 * service when <objects>, and <nhosts> Hosts h<k>.example.com. */
static char *many_yaml(int n, int nsvc, bool objects, int nhosts)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    for (int k = 0; k < nhosts; k++)
        fprintf(f, HOST("h%d", "hostname: h%d.example.com"), k, k);
    for (int i = 0; i < n; i++)
        fprintf(f, MAPPING("m%d", "hostname: '*', prefix: /svc-%d/, service: svc-%d"), i, i,
                i % nsvc);
    for (int i = 0; objects && i < nsvc; i++)
        fprintf(f, "apiVersion: v1\nkind: Service\nmetadata: {name: svc-%d}\n"
                   "spec: {ports: [{port: 80, targetPort: 8080}]}\n---\n"
                   "apiVersion: v1\nkind: Endpoints\nmetadata: {name: svc-%d}\n"
                   "subsets: [{addresses: [{ip: 10.%d.%d.1}], ports: [{port: 8080}]}]\n---\n",
                i, i, (i >> 8) & 255, i & 255);
    fclose(f);
    return buf;
}

/* compile_many: loads and compiles; returns the compile time in ms. */
static double compile_many(int n, int nsvc, bool objects, int nhosts, const char *what)
{
    char *yaml = many_yaml(n, nsvc, objects, nhosts);
    double t0 = now_ms(), t1, t2;
    struct pt_resources *r = pt_config_load_string(yaml, "many.yaml", NULL);
    struct pt_snapshot *s;
    const struct pt_vhost *vh;
    char path[32];

    t1 = now_ms();
    s = compile(r, NULL);
    t2 = now_ms();
    print_message("    %-52s load %6.0f ms, compile %6.0f ms\n", what, t1 - t0, t2 - t1);
    assert_errors(&r->diag, 0);
    assert_int_equal(r->nmappings, n);
    assert_int_equal(s->nclusters, nsvc);
    vh = s->vhosts[0];
    assert_int_equal(pt_route_table_size(vh->routes), n);
    snprintf(path, sizeof(path), "/svc-%d/x", n - 1);
    assert_non_null(route(vh, path, "h0.example.com"));
    assert_string_equal(route(vh, "/svc-0/", "h0.example.com")->mapping, "default/m0");
    if (objects)
        assert_int_equal(route(vh, "/svc-0/", "h0.example.com")->cluster->nendpoints, 1);
    pt_snapshot_release(s);
    pt_resources_free(r);
    free(yaml);
    return t2 - t1;
}

static void test_10000_mappings_compile_fast(void **state)
{
    /* Correctness at scale; the time is printed, and its budget is checked by `make bench`
     * (timing assertions do not belong in unit tests on a shared machine). */
    compile_many(10000, 10000, false, 0, "10,000 Mappings, 10,000 services");
    compile_many(10000, 1, false, 3, "10,000 Mappings, 1 service, 3 Hosts");
    compile_many(10000, 1000, true, 1, "10,000 Mappings, 1,000 Services+Endpoints");
    compile_many(10000, 10000, true, 0, "10,000 Mappings, 10,000 Services+Endpoints");
}

/* ---- found while writing these tests --------------------------------------------------------- */

static const char bad_regex_yaml[] =
    HOST("a", "hostname: a.example.com") HOST("b", "hostname: b.example.com")
    MAPPING("ok", "hostname: '*', prefix: /ok/, service: q")
    MAPPING("re", "hostname: '*', prefix: '/(', prefix_regex: true, service: q");

/* A Mapping the route builder rejects (a bad regex) is in no route table; the rest stay. */
static void test_route_rejected_mapping_left_out(void **state)
{
    struct pt_resources *r = load_fmt("%s", bad_regex_yaml);
    struct pt_snapshot *s;

    assert_errors(&r->diag, 0);
    s = compile(r, NULL);
    assert_int_equal(s->nvhosts, 2);
    for (uint32_t i = 0; i < s->nvhosts; i++) {
        assert_int_equal(pt_route_table_size(s->vhosts[i]->routes), 1);
        assert_string_equal(routed_to(s->vhosts[i], "/ok/", s->vhosts[i]->hostname), "default/ok");
    }
    assert_diag(&r->diag, "t.yaml:16: Mapping/default/re: prefix_regex: invalid regex \"/(\"");
    pt_snapshot_release(s);
    pt_resources_free(r);
}

/* BUG: src/config/compile.c:293 builds one route table per Host and its reject callback
 * (compile.c:258-261) adds an error each time, so a Mapping rejected by the route builder is
 * reported once per Host that takes it: with two Hosts, "t.yaml:16: Mapping/default/re:
 * prefix_regex: invalid regex ..." appears twice (nerrors 2 for one bad resource). Fixed. */
static void test_fixed_route_rejection_reported_per_host(void **state)
{
    struct pt_resources *r;
    struct pt_snapshot *s;

    r = load_fmt("%s", bad_regex_yaml);
    s = compile(r, NULL);
    assert_errors(&r->diag, 1);
    pt_snapshot_release(s);
    pt_resources_free(r);
}

/* BUG: src/config/compile.c:124-126 (find_or_add_cluster) keys clusters on name *and*
 * connect_timeout_ms, so two Mappings for the same service with different connect_timeout_ms
 * get two clusters with the same name (cluster_quote_default twice). Envoy needs unique names
 * and Emissary refuses the merge ("cannot merge cluster ...: mismatched attributes
 * connect_timeout_ms"); both also end up with one stats name. */
static void test_fixed_cluster_names_unique(void **state)
{
    struct pt_resources *r;
    struct pt_snapshot *s;

    r = load_fmt(MAPPING("a", "hostname: '*', prefix: /a/, service: quote")
                     MAPPING("b", "hostname: '*', prefix: /b/, service: quote, "
                                  "connect_timeout_ms: 500"));
    s = compile(r, NULL);
    for (uint32_t i = 0; i < s->nclusters; i++)
        for (uint32_t k = i + 1; k < s->nclusters; k++)
            if (strcmp(s->clusters[i]->name, s->clusters[k]->name) == 0)
                fail_msg("clusters %u and %u are both named %s", i, k, s->clusters[i]->name);
    pt_snapshot_release(s);
    pt_resources_free(r);
}

/* Fail closed on what cannot be read: an AuthService that cannot be read answers every request
 * 500. Without it, nothing is denied. */
static void test_fail_closed_switches(void **state)
{
    /* an AuthService that cannot be read: every request is answered 500 (auth_broken) */
    struct pt_resources *r = load_fmt(
        MAPPING("m", "hostname: '*', prefix: /m/, service: q")
        "apiVersion: getambassador.io/v3alpha1\nkind: AuthService\nmetadata: {name: a}\n"
        "spec: {auth_service: x, proto: grpc}\n");
    struct pt_snapshot *s = compile(r, NULL);

    assert_true(s->http.auth_broken);
    assert_null(s->http.auth);
    assert_diag(&r->diag, "t.yaml:6: AuthService/default/a: protocol_version v2 is unsupported");
    pt_snapshot_release(s);
    pt_resources_free(r);

    /* one for another Portico is not ours, broken or not */
    r = load_fmt(MAPPING("m", "hostname: '*', prefix: /m/, service: q")
                 "apiVersion: getambassador.io/v3alpha1\nkind: AuthService\nmetadata: {name: a}\n"
                 "spec: {ambassador_id: [other], auth_service: x, proto: grpc}\n");
    s = compile(r, NULL);
    assert_false(s->http.auth_broken);
    assert_null(s->http.auth);
    assert_errors(&r->diag, 0);
    pt_snapshot_release(s);
    pt_resources_free(r);
}

/* An ambassador Module whose spec.config is <config>. */
#define MODULE_CONFIG(config) \
    "apiVersion: getambassador.io/v3alpha1\nkind: Module\nmetadata: {name: ambassador}\n" \
    "spec: {config: " config "}\n"

/* The Module's ip_allow / ip_deny as Emissary reads them; anything that cannot be read denies
 * every request (an error at its line), whatever else the Module says. */
static void test_ip_policy(void **state)
{
    struct pt_resources *r = load_fmt(MAPPING("m", "hostname: '*', prefix: /m/, service: q")
        MODULE_CONFIG("{ip_allow: [{peer: 127.0.0.1}, {remote: 99.99.0.0/16}, {remote: '::1'}]}"));
    struct pt_snapshot *s = compile(r, NULL);

    assert_errors(&r->diag, 0);
    assert_int_equal(s->http.ip.action, PT_IP_ALLOW);
    assert_int_equal(s->http.ip.nrules, 3);
    assert_false(s->http.ip.rules[0].remote);
    assert_int_equal(s->http.ip.rules[0].range.prefix_len, 32);
    assert_true(s->http.ip.rules[1].remote);
    assert_int_equal(s->http.ip.rules[1].range.prefix_len, 16);
    assert_int_equal(s->http.ip.rules[2].range.base.family, 6);
    pt_snapshot_release(s);
    pt_resources_free(r);

    /* ip_deny; and it holds even when another field rejects the Module */
    r = load_fmt(MAPPING("m", "hostname: '*', prefix: /m/, service: q")
                 MODULE_CONFIG("{ip_deny: [{remote: 10.0.0.0/8}], enable_http10: maybe}"));
    s = compile(r, NULL);
    assert_errors(&r->diag, 1);
    assert_int_equal(s->http.ip.action, PT_IP_DENY);
    assert_int_equal(s->http.ip.nrules, 1);
    pt_snapshot_release(s);
    pt_resources_free(r);

    /* an empty list enforces nothing, as in Emissary (a notice says so) */
    r = load_fmt(MAPPING("m", "hostname: '*', prefix: /m/, service: q") MODULE_CONFIG("{ip_allow: []}"));
    s = compile(r, NULL);
    assert_errors(&r->diag, 0);
    assert_int_equal(s->http.ip.action, PT_IP_NONE);
    pt_snapshot_release(s);
    pt_resources_free(r);

    static const struct { const char *config, *diag; } bad[] = {
        { "{ip_allow: [{peer: 127.0.0.1}], ip_deny: [{peer: 10.0.0.1}]}",
          "t.yaml:9: Module/default/ambassador: config: ip_allow and ip_deny may not both be set" },
        { "{ip_allow: [{peer: 127.0.0.1, remote: 10.0.0.0/8}]}",
          "t.yaml:9: Module/default/ambassador: config.ip_allow[0]: expected one `peer:` or `remote:`" },
        { "{ip_deny: [{host: 127.0.0.1}]}",
          "t.yaml:9: Module/default/ambassador: config.ip_deny[0]: principal type \"host\" unknown" },
        { "{ip_deny: [{peer: 127.0.0.1}, {remote: 10.0.0.0/33}]}",
          "t.yaml:9: Module/default/ambassador: config.ip_deny[1]: \"10.0.0.0/33\": the prefix length" },
        { "{ip_allow: [{remote: not-an-address}]}",
          "t.yaml:9: Module/default/ambassador: config.ip_allow[0]: \"not-an-address\" is not an IP address" },
        { "{ip_allow: [{remote: [10.0.0.1]}]}",
          "t.yaml:9: Module/default/ambassador: config.ip_allow[0]: expected an IP address or CIDR range" },
        { "{ip_allow: [{[peer]: 10.0.0.1}]}",
          "t.yaml:9: Module/default/ambassador: config.ip_allow[0]: principal type \"\" unknown" },
        { "{ip_allow: 10.0.0.1}",
          "t.yaml:9: Module/default/ambassador: config.ip_allow: expected a list" },
    };
    for (size_t i = 0; i < PT_ARRAY_SIZE(bad); i++) {
        r = load_fmt(MAPPING("m", "hostname: '*', prefix: /m/, service: q") MODULE_CONFIG("%s"),
                     bad[i].config);
        s = compile(r, NULL);
        assert_int_equal(s->http.ip.action, PT_IP_DENY_ALL);
        assert_errors(&r->diag, 1);
        assert_diag(&r->diag, bad[i].diag);
        pt_snapshot_release(s);
        pt_resources_free(r);
    }
}

static bool has_name(const struct pt_str *list, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (pt_str_eq(list[i], pt_str_c(name)))
            return true;
    return false;
}

static void test_authservices_merge(void **state)
{
    struct pt_resources *r = load_fmt(
        MAPPING("m", "hostname: '*', prefix: /m/, service: q, auth_context_extensions: {k: v}")
        "apiVersion: getambassador.io/v3alpha1\nkind: AuthService\nmetadata: {name: a}\n"
        "spec: {auth_service: 'auth:3000', path_prefix: /ext, allowed_request_headers: [X-One],"
        " add_auth_headers: {x-add: '1'}, include_body: {max_bytes: 10, allow_partial: true}}\n---\n"
        "apiVersion: getambassador.io/v3alpha1\nkind: AuthService\nmetadata: {name: b}\n"
        "spec: {auth_service: 'auth:3000', path_prefix: /ext, allowed_request_headers: [x-two],"
        " allowed_authorization_headers: [X-User], add_auth_headers: {x-add: '1'},"
        " include_body: {max_bytes: 10, allow_partial: true}}\n---\n"
        "apiVersion: getambassador.io/v3alpha1\nkind: AuthService\nmetadata: {name: c}\n"
        "spec: {auth_service: 'other:3000'}\n");
    struct pt_snapshot *s = compile(r, NULL);
    const struct pt_auth_config *ac = s->http.auth;
    const struct pt_route_action *a = route(s->vhosts[0], "/m/", "h");

    assert_non_null(ac);
    assert_false(s->http.auth_broken);
    assert_string_equal(ac->cluster->name, "cluster_extauth_auth_3000_default");
    assert_false(ac->grpc);
    assert_true(pt_str_eq(ac->path_prefix, PT_STR_LIT("/ext")));
    assert_int_equal(ac->timeout_ms, 5000);
    assert_int_equal(ac->status_on_error, 403);
    assert_int_equal(ac->max_body, 10);
    assert_true(ac->allow_partial);
    assert_true(has_name(ac->allowed_req, ac->nallowed_req, "x-one"));
    assert_true(has_name(ac->allowed_req, ac->nallowed_req, "x-two"));
    assert_true(has_name(ac->allowed_req, ac->nallowed_req, "x-forwarded-proto"));
    assert_true(has_name(ac->allowed_auth, ac->nallowed_auth, "x-user"));
    assert_true(has_name(ac->allowed_auth, ac->nallowed_auth, "set-cookie"));
    assert_int_equal(ac->nadd, 1);
    assert_true(pt_str_eq(ac->add[0].name, PT_STR_LIT("x-add")));
    assert_errors(&r->diag, 1);
    assert_diag(&r->diag, "AuthService/default/c: AuthService cannot support multiple auth_service values");
    assert_int_equal(a->nauth_ctx, 1);
    assert_true(pt_str_eq(a->auth_ctx[0].name, PT_STR_LIT("k")) && pt_str_eq(a->auth_ctx[0].value, PT_STR_LIT("v")));
    pt_snapshot_release(s);
    pt_resources_free(r);
}

static void test_ratelimit_descriptors(void **state)
{
    struct pt_resources *r = load_fmt(
        "apiVersion: getambassador.io/v3alpha1\nkind: Module\nmetadata: {name: ambassador}\n"
        "spec: {config: {default_labels: {ambassador: {defaults: [remote_address]},"
        " other: {defaults: [{generic_key: {value: o}}]}}}}\n---\n"
        "apiVersion: getambassador.io/v3alpha1\nkind: RateLimitService\nmetadata: {name: rl}\n"
        "spec: {service: 'rl:8081', protocol_version: v3}\n---\n"
        MAPPING("a", "hostname: '*', prefix: /a/, service: q, labels: {ambassador: ["
                "{g1: [{generic_key: {value: one}}, {request_headers: {key: u, header_name: x-user}}]},"
                "{g2: [destination_cluster, {x-h: {header: X-H}}]}], nope: [{g: [lit]}]}")
        MAPPING("b", "hostname: '*', prefix: /b/, service: q")
        MAPPING("c", "hostname: '*', prefix: /c/, service: q, labels: {other: [{g: [{generic_key: {value: z}}]}]}"));
    struct pt_snapshot *s = compile(r, NULL);
    const struct pt_route_action *a = route(s->vhosts[0], "/a/", "h"), *b = route(s->vhosts[0], "/b/", "h"),
                                 *c = route(s->vhosts[0], "/c/", "h");

    assert_errors(&r->diag, 0);
    assert_non_null(s->http.rls);
    assert_true(pt_str_eq(s->http.rls->domain, PT_STR_LIT("ambassador")));
    assert_true(pt_str_eq(s->http.rls->source_cluster, PT_STR_LIT("ambassador-default")));
    assert_true(s->http.rls->cluster->http2);
    assert_string_equal(s->http.rls->cluster->name, "cluster_rl_8081_default");
    assert_int_equal(s->http.rls->timeout_ms, 20);
    /* a: two descriptors, each with the domain's default label first */
    assert_int_equal(a->nrl, 2);
    assert_int_equal(a->rl[0].nentries, 3);
    assert_int_equal(a->rl[0].entries[0].kind, PT_RL_REMOTE_ADDRESS);
    assert_int_equal(a->rl[0].entries[1].kind, PT_RL_GENERIC_KEY);
    assert_true(pt_str_eq(a->rl[0].entries[1].key, PT_STR_LIT("generic_key")));
    assert_true(pt_str_eq(a->rl[0].entries[1].value, PT_STR_LIT("one")));
    assert_int_equal(a->rl[0].entries[2].kind, PT_RL_REQUEST_HEADERS);
    assert_true(pt_str_eq(a->rl[0].entries[2].key, PT_STR_LIT("u")));
    assert_true(pt_str_eq(a->rl[0].entries[2].value, PT_STR_LIT("x-user")));
    assert_int_equal(a->rl[1].nentries, 3);
    assert_int_equal(a->rl[1].entries[1].kind, PT_RL_DESTINATION_CLUSTER);
    assert_int_equal(a->rl[1].entries[2].kind, PT_RL_REQUEST_HEADERS); /* the v2 shorthand */
    assert_true(pt_str_eq(a->rl[1].entries[2].key, PT_STR_LIT("x-h")));
    assert_true(pt_str_eq(a->rl[1].entries[2].value, PT_STR_LIT("X-H")));
    /* b: no labels: the defaults of the default domain alone */
    assert_int_equal(b->nrl, 1);
    assert_int_equal(b->rl[0].nentries, 1);
    /* c: labels of another domain only */
    assert_int_equal(c->nrl, 0);
    pt_snapshot_release(s);
    pt_resources_free(r);

    r = load_fmt("apiVersion: getambassador.io/v3alpha1\nkind: RateLimitService\nmetadata: {name: rl}\n"
                 "spec: {service: 'rl:8081'}\n---\n"
                 MAPPING("a", "hostname: '*', prefix: /a/, service: q, labels: {ambassador: [{g: [{bad: 1}]}]}"));
    s = compile(r, NULL);
    assert_null(s->http.rls);
    assert_diag(&r->diag, "RateLimitService/default/rl: protocol_version v2 is unsupported");
    assert_diag(&r->diag, "Mapping/default/a: labels.ambassador[0].g[0]: expected a mapping with one key");
    pt_snapshot_release(s);
    pt_resources_free(r);
}

/* BUG: src/config/compile.c:233 passes env->namespace straight to pt_service_parse(), which
 * strcmp()s it; load.h documents an all-zero struct pt_config_env as "the defaults" (namespace
 * NULL = "default"), but pt_compile() with one crashes (SIGSEGV) on the first bare service name.
 * Runs in a child process. */
static void test_fixed_zero_env_crashes(void **state)
{
    struct pt_resources *r;
    int status;
    pid_t pid;

    r = load_fmt(MAPPING("a", "hostname: '*', prefix: /a/, service: quote"));
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct pt_config_env env = { 0 };
        signal(SIGSEGV, SIG_DFL); /* not cmocka's handler: let the child die of it */
        pt_snapshot_release(pt_compile(r, &env, 1, &r->diag));
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    pt_resources_free(r);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("pt_compile with an all-zero env: child %s %d",
                 WIFSIGNALED(status) ? "killed by signal" : "exited with",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_host_synthesised),
        cmocka_unit_test(test_no_default_host_once_a_host_exists),
        cmocka_unit_test(test_no_listener),
        cmocka_unit_test(test_mapping_selector),
        cmocka_unit_test(test_listener_host_binding),
        cmocka_unit_test(test_vhost_order),
        cmocka_unit_test(test_cluster_names),
        cmocka_unit_test(test_cluster_names_emissary_examples),
        cmocka_unit_test(test_long_cluster_names),
        cmocka_unit_test(test_bad_service_rejected_alone),
        cmocka_unit_test(test_tls_origination),
        cmocka_unit_test(test_listener_errors),
        cmocka_unit_test(test_listen_sockets_shared_between_snapshots),
        cmocka_unit_test(test_10000_mappings_compile_fast),
        cmocka_unit_test(test_route_rejected_mapping_left_out),
        cmocka_unit_test(test_fixed_route_rejection_reported_per_host),
        cmocka_unit_test(test_fixed_cluster_names_unique),
        cmocka_unit_test(test_fixed_zero_env_crashes),
        cmocka_unit_test(test_fail_closed_switches),
        cmocka_unit_test(test_ip_policy),
        cmocka_unit_test(test_authservices_merge),
        cmocka_unit_test(test_ratelimit_descriptors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
