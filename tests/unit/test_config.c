/* Unit tests for src/config/: the YAML loader (load.c), resource reading with defaults and
 * validation (resources.c, fields.c) and diagnostics (diag.c). YAML is written inline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/fields.h"
#include "config/load.h"
#include "control/check.h"

static char *diag_str(const struct pt_resources *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    pt_diag_print(&r->diag, f);
    fclose(f);
    return buf;
}

static void check_diag(const struct pt_resources *r, const char *needle, bool want)
{
    char *s = diag_str(r);
    bool found = strstr(s, needle) != NULL;
    if (found != want) {
        print_error("diagnostics %s \"%s\":\n%s", want ? "lack" : "contain", needle, s);
        free(s);
        fail();
    }
    free(s);
}

#define assert_diag(r, needle) check_diag((r), (needle), true)
#define assert_no_diag(r, needle) check_diag((r), (needle), false)
#define assert_errors(r, n)                                                                      \
    do {                                                                                         \
        if ((r)->diag.nerrors != (size_t)(n)) {                                                  \
            char *s_ = diag_str(r);                                                              \
            print_error("want %d errors, have %zu:\n%s", (int)(n), (r)->diag.nerrors, s_);       \
            free(s_);                                                                            \
            fail();                                                                              \
        }                                                                                        \
    } while (0)

static struct pt_resources *load(const char *yaml)
{
    return pt_config_load_string(yaml, "t.yaml", NULL);
}

static const char *kv_get(const struct pt_kv *kv, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(kv[i].key, key) == 0)
            return kv[i].value;
    return NULL;
}

/* ---- Mapping ------------------------------------------------------------------------------ */

static void test_mapping_defaults(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata:\n"
                                  "  name: quote\n"
                                  "spec:\n"
                                  "  prefix: /backend/\n"
                                  "  service: quote\n");
    assert_errors(r, 0);
    assert_int_equal(r->nmappings, 1);
    const struct pt_mapping_res *m = &r->mappings[0];
    assert_string_equal(m->meta.kind, "Mapping");
    assert_string_equal(m->meta.name, "quote");
    assert_string_equal(m->meta.namespace, "default");
    assert_string_equal(m->meta.origin.file, "t.yaml");
    assert_int_equal(m->meta.origin.line, 1);
    assert_string_equal(m->prefix, "/backend/");
    assert_string_equal(m->service, "quote");
    assert_true(m->case_sensitive);
    assert_false(m->prefix_regex);
    assert_false(m->prefix_exact);
    assert_string_equal(m->rewrite, "/");
    assert_int_equal(m->timeout_ms, -1); /* unset: compile applies the Module default or 3000 */
    assert_int_equal(m->connect_timeout_ms, 3000);
    assert_int_equal(m->idle_timeout_ms, -1);
    assert_int_equal(m->weight, -1);
    assert_int_equal(m->precedence, 0);
    assert_null(m->hostname);
    assert_null(m->host);
    assert_null(m->tls);
    assert_null(m->method);
    assert_int_equal(m->nheaders, 0);
    /* emissary.md §3: a v3alpha1 Mapping without hostname matches no Host */
    assert_diag(r, "t.yaml:1: Mapping/default/quote: notice: Mapping has no hostname; it matches "
                   "no Host (set hostname: \"*\")\n");
    pt_resources_free(r);
}

static void test_mapping_fields(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata:\n"
                                  "  name: full\n"
                                  "  namespace: shop\n"
                                  "  labels: {team: a, tier: \"1\"}\n"
                                  "spec:\n"
                                  "  hostname: \"*.example.com\"\n"
                                  "  prefix: /api/\n"
                                  "  prefix_regex: true\n"
                                  "  case_sensitive: false\n"
                                  "  service: https://api.shop:8443\n"
                                  "  rewrite: \"\"\n"
                                  "  regex_rewrite: {pattern: '^/api/(.*)', substitution: '/\\1'}\n"
                                  "  method: GET\n"
                                  "  method_regex: false\n"
                                  "  headers: {x-exact: v1, x-present: true, x-quoted: \"true\"}\n"
                                  "  regex_headers: {x-re: '^a.*'}\n"
                                  "  query_parameters: {debug: true}\n"
                                  "  regex_query_parameters: {q: '[0-9]+'}\n"
                                  "  timeout_ms: 0\n"
                                  "  connect_timeout_ms: 250\n"
                                  "  idle_timeout_ms: 60000\n"
                                  "  weight: 10\n"
                                  "  precedence: -5\n"
                                  "  add_request_headers:\n"
                                  "    x-a: one\n"
                                  "    x-b: {value: two, append: false}\n"
                                  "  add_response_headers: {x-c: 3}\n"
                                  "  remove_request_headers: [cookie, x-internal]\n"
                                  "  remove_response_headers: server\n"
                                  "  host_rewrite: api.internal\n"
                                  "  auto_host_rewrite: false\n"
                                  "  tls: true\n"
                                  "  stats_name: shop_api\n");
    assert_errors(r, 0);
    assert_int_equal(r->nmappings, 1);
    const struct pt_mapping_res *m = &r->mappings[0];
    assert_string_equal(m->meta.namespace, "shop");
    assert_int_equal(m->meta.nlabels, 2);
    assert_string_equal(kv_get(m->meta.labels, m->meta.nlabels, "tier"), "1");
    assert_string_equal(m->hostname, "*.example.com");
    assert_true(m->prefix_regex);
    assert_false(m->case_sensitive);
    assert_string_equal(m->service, "https://api.shop:8443");
    assert_null(m->rewrite);
    assert_string_equal(m->regex_rewrite_pattern, "^/api/(.*)");
    assert_string_equal(m->regex_rewrite_substitution, "/\\1");
    assert_string_equal(m->method, "GET");
    assert_int_equal(m->nheaders, 4);
    assert_string_equal(m->headers[0].name, "x-exact");
    assert_string_equal(m->headers[0].value, "v1");
    assert_false(m->headers[0].regex);
    assert_null(m->headers[1].value); /* true: must be present */
    assert_string_equal(m->headers[2].value, "true"); /* quoted: the literal string */
    assert_string_equal(m->headers[3].name, "x-re");
    assert_true(m->headers[3].regex);
    assert_int_equal(m->nquery_parameters, 2);
    assert_null(m->query_parameters[0].value);
    assert_true(m->query_parameters[1].regex);
    assert_int_equal(m->timeout_ms, 0);
    assert_int_equal(m->connect_timeout_ms, 250);
    assert_int_equal(m->idle_timeout_ms, 60000);
    assert_int_equal(m->weight, 10);
    assert_int_equal(m->precedence, -5);
    assert_int_equal(m->nadd_request_headers, 2);
    assert_string_equal(m->add_request_headers[0].value, "one");
    assert_true(m->add_request_headers[0].append);
    assert_string_equal(m->add_request_headers[1].value, "two");
    assert_false(m->add_request_headers[1].append);
    assert_string_equal(m->add_response_headers[0].value, "3");
    assert_int_equal(m->nremove_request_headers, 2);
    assert_string_equal(m->remove_request_headers[1], "x-internal");
    assert_int_equal(m->nremove_response_headers, 1);
    assert_string_equal(m->host_rewrite, "api.internal");
    assert_string_equal(m->tls, "true");
    assert_string_equal(m->stats_name, "shop_api");
    assert_no_diag(r, "notice");
    pt_resources_free(r);
}

static void test_mapping_host(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: star}\n"
                                  "spec:\n"
                                  "  prefix: /\n"
                                  "  service: s\n"
                                  "  host: \"*.example.com\"\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: regex}\n"
                                  "spec:\n"
                                  "  prefix: /\n"
                                  "  service: s\n"
                                  "  host: \".*\\\\.example\\\\.com\"\n"
                                  "  host_regex: true\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: both}\n"
                                  "spec:\n"
                                  "  prefix: /\n"
                                  "  service: s\n"
                                  "  hostname: a.example.com\n"
                                  "  host: b.example.com\n");
    assert_errors(r, 1);
    assert_diag(r, "t.yaml:7: Mapping/default/star: host: \"*\" is not allowed in an exact host; "
                   "use hostname for a glob\n");
    assert_int_equal(r->nmappings, 2);
    assert_string_equal(r->mappings[0].meta.name, "regex");
    assert_true(r->mappings[0].host_regex);
    assert_string_equal(r->mappings[0].host, ".*\\.example\\.com");
    assert_string_equal(r->mappings[1].hostname, "a.example.com");
    assert_null(r->mappings[1].host);
    assert_diag(r, "t.yaml:25: Mapping/default/both: notice: both hostname and host are set; "
                   "host is ignored\n");
    pt_resources_free(r);
}

/* One bad Mapping among good ones: only it is rejected, on the line of its bad field. */
static void test_bad_mapping_rejected_alone(void **state)
{
    struct pt_resources *r = pt_config_load_string("apiVersion: getambassador.io/v3alpha1\n"
                                                   "kind: Mapping\n"
                                                   "metadata:\n"
                                                   "  name: bad\n"
                                                   "spec:\n"
                                                   "  hostname: \"*\"\n"
                                                   "  prefix: /bad/\n"
                                                   "  service: bad\n"
                                                   "  timeout_ms: abc\n"
                                                   "---\n"
                                                   "apiVersion: getambassador.io/v3alpha1\n"
                                                   "kind: Mapping\n"
                                                   "metadata:\n"
                                                   "  name: good\n"
                                                   "spec:\n"
                                                   "  hostname: \"*\"\n"
                                                   "  prefix: /good/\n"
                                                   "  service: good\n",
                                                   "conf/mappings.yaml", NULL);
    assert_int_equal(r->nmappings, 1);
    assert_string_equal(r->mappings[0].meta.name, "good");
    assert_int_equal(r->mappings[0].meta.origin.line, 11);
    char *s = diag_str(r);
    assert_string_equal(s, "conf/mappings.yaml:9: Mapping/default/bad: timeout_ms: expected an "
                           "integer\n");
    free(s);
    pt_resources_free(r);
}

static void test_wrong_types(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: m1}\n"
                                  "spec:\n"
                                  "  hostname: \"*\"\n"
                                  "  prefix: [a]\n"
                                  "  service: s\n"
                                  "  case_sensitive: maybe\n"
                                  "  weight: 101\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: m2}\n"
                                  "spec:\n"
                                  "  hostname: \"*\"\n"
                                  "  service: s\n"
                                  "  headers: {x: false}\n"
                                  "  timeout_ms: -1\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Listener\n"
                                  "metadata: {name: l}\n"
                                  "spec:\n"
                                  "  port: 99999\n"
                                  "  protocol: HTTP\n"
                                  "  securityModel: XFP\n"
                                  "  hostBinding: {namespace: {from: ALL}}\n");
    assert_int_equal(r->nmappings, 0);
    assert_int_equal(r->nlisteners, 0);
    assert_diag(r, "t.yaml:6: Mapping/default/m1: prefix: expected a string\n");
    assert_diag(r, "t.yaml:8: Mapping/default/m1: case_sensitive: expected true or false\n");
    assert_diag(r, "t.yaml:9: Mapping/default/m1: weight: expected an integer between 0 and 100\n");
    assert_diag(r, "t.yaml:11: Mapping/default/m2: prefix: required\n");
    assert_diag(r, "t.yaml:17: Mapping/default/m2: headers.x: expected a string, or true for "
                   "presence\n");
    assert_diag(r, "t.yaml:18: Mapping/default/m2: timeout_ms: expected an integer >= 0\n");
    assert_diag(r, "t.yaml:24: Listener/default/l: port: expected an integer between 1 and "
                   "65535\n");
    assert_errors(r, 7);
    pt_resources_free(r);
}

static void test_required_fields(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: nosvc}\n"
                                  "spec: {hostname: '*', prefix: /}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {namespace: x}\n"
                                  "spec: {prefix: /, service: s}\n"
                                  "---\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: noapi}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: badspec}\n"
                                  "spec: [1, 2]\n");
    assert_int_equal(r->nmappings, 0);
    assert_diag(r, "t.yaml:1: Mapping/default/nosvc: service: required\n");
    assert_diag(r, "t.yaml:6: Mapping: metadata.name: required\n");
    assert_diag(r, "t.yaml:11: apiVersion: required\n");
    assert_diag(r, "t.yaml:17: Mapping/default/badspec: spec: expected a mapping\n");
    assert_errors(r, 4);
    pt_resources_free(r);
}

/* ---- Listener, Host, TLSContext ------------------------------------------------------------ */

static void test_listener(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Listener\n"
                                  "metadata: {name: https, namespace: ambassador}\n"
                                  "spec:\n"
                                  "  port: 8443\n"
                                  "  protocol: HTTPS\n"
                                  "  securityModel: XFP\n"
                                  "  statsPrefix: ingress_https\n"
                                  "  l7Depth: 2\n"
                                  "  hostBinding:\n"
                                  "    namespace: {from: SELF}\n"
                                  "    selector: {matchLabels: {edge: \"yes\"}}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Listener\n"
                                  "metadata: {name: http}\n"
                                  "spec: {port: 8080, protocol: HTTP, securityModel: INSECURE}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Listener\n"
                                  "metadata: {name: bad}\n"
                                  "spec:\n"
                                  "  port: 1\n"
                                  "  protocol: HTTP3\n"
                                  "  hostBinding: {}\n");
    assert_int_equal(r->nlisteners, 2);
    const struct pt_listener_res *l = &r->listeners[0];
    assert_int_equal(l->port, 8443);
    assert_int_equal(l->protocol, PT_PROTO_HTTPS);
    assert_int_equal(l->security_model, PT_SECURITY_XFP);
    assert_string_equal(l->stats_prefix, "ingress_https");
    assert_int_equal(l->l7_depth, 2);
    assert_true(l->bind_ns_self);
    assert_false(l->bind_ns_all);
    assert_int_equal(l->nbind_selector, 1);
    assert_string_equal(l->bind_selector[0].key, "edge");
    assert_string_equal(l->bind_selector[0].value, "yes");
    l = &r->listeners[1];
    assert_int_equal(l->protocol, PT_PROTO_HTTP);
    assert_int_equal(l->security_model, PT_SECURITY_INSECURE);
    assert_null(l->stats_prefix);
    assert_int_equal(l->l7_depth, 0);
    assert_true(l->bind_ns_all);
    assert_diag(r, "t.yaml:14: Listener/default/http: notice: no hostBinding; binding Hosts from "
                   "ALL namespaces\n");
    assert_diag(r, "t.yaml:24: Listener/default/bad: protocol: expected one of HTTP, HTTPS, "
                   "HTTPPROXY, HTTPSPROXY, TCP, TLS (got \"HTTP3\")\n");
    assert_diag(r, "t.yaml:19: Listener/default/bad: securityModel: required\n");
    assert_diag(r, "t.yaml:25: Listener/default/bad: hostBinding: needs namespace.from or "
                   "selector\n");
    assert_errors(r, 3);
    pt_resources_free(r);
}

static void test_host(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Host\n"
                                  "metadata: {name: plain}\n"
                                  "spec: {}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Host\n"
                                  "metadata: {name: full, namespace: web}\n"
                                  "spec:\n"
                                  "  hostname: www.example.com\n"
                                  "  acmeProvider: {authority: none}\n"
                                  "  tlsSecret: {name: www-cert, namespace: certs}\n"
                                  "  tlsContext: {name: www-ctx}\n"
                                  "  tls:\n"
                                  "    minTlsVersion: v1.2\n"
                                  "    alpn_protocols: h2,http/1.1\n"
                                  "    cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256]\n"
                                  "  requestPolicy:\n"
                                  "    insecure: {action: Route, additionalPort: 8080}\n"
                                  "  selector:\n"
                                  "    matchLabels: {host: www}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Host\n"
                                  "metadata: {name: bad}\n"
                                  "spec:\n"
                                  "  requestPolicy: {insecure: {action: redirect}}\n");
    assert_int_equal(r->nhosts, 2);
    const struct pt_host_res *h = &r->hosts[0];
    assert_string_equal(h->hostname, "*");
    assert_int_equal(h->insecure_action, PT_INSECURE_REDIRECT);
    assert_int_equal(h->insecure_additional_port, -1);
    assert_false(h->has_tls);
    assert_null(h->tls_secret_name);
    h = &r->hosts[1];
    assert_string_equal(h->hostname, "www.example.com");
    assert_string_equal(h->tls_secret_name, "www-cert");
    assert_string_equal(h->tls_secret_namespace, "certs");
    assert_string_equal(h->tls_context, "www-ctx");
    assert_true(h->has_tls);
    assert_string_equal(h->tls.min_tls_version, "v1.2");
    assert_string_equal(h->tls.alpn_protocols, "h2,http/1.1");
    assert_int_equal(h->tls.ncipher_suites, 1);
    assert_true(h->tls.secret_namespacing);
    assert_int_equal(h->insecure_action, PT_INSECURE_ROUTE);
    assert_int_equal(h->insecure_additional_port, 8080);
    assert_int_equal(h->nselector, 1);
    assert_string_equal(h->selector[0].value, "www");
    assert_diag(r, "t.yaml:20: Host/web/full: notice: selector is deprecated; use "
                   "mappingSelector\n");
    assert_diag(r, "t.yaml:27: Host/default/bad: requestPolicy.insecure.action: expected one of "
                   "Redirect, Route, Reject (got \"redirect\")\n");
    assert_errors(r, 1);
    pt_resources_free(r);
}

static void test_tlscontext(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: TLSContext\n"
                                  "metadata: {name: ctx}\n"
                                  "spec:\n"
                                  "  hosts: [a.example.com, b.example.com]\n"
                                  "  secret: cert.certs\n"
                                  "  secret_namespacing: false\n"
                                  "  ca_secret: ca\n"
                                  "  alpn_protocols: istio\n"
                                  "  sni: backend.local\n"
                                  "  min_tls_version: v1.2\n"
                                  "  max_tls_version: v1.3\n"
                                  "  cipher_suites: [a, b]\n"
                                  "  ecdh_curves: [X25519]\n"
                                  "  cert_required: true\n"
                                  "  redirect_cleartext_from: 8080\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: TLSContext\n"
                                  "metadata: {name: files}\n"
                                  "spec:\n"
                                  "  cert_chain_file: /c/cert.pem\n"
                                  "  private_key_file: /c/key.pem\n"
                                  "  cacert_chain_file: /c/ca.pem\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: TLSContext\n"
                                  "metadata: {name: both}\n"
                                  "spec: {secret: s, cert_chain_file: /c.pem}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: TLSContext\n"
                                  "metadata: {name: ver}\n"
                                  "spec: {min_tls_version: v1.4}\n");
    assert_int_equal(r->ntlscontexts, 2);
    const struct pt_tlscontext_res *t = &r->tlscontexts[0];
    assert_int_equal(t->nhosts, 2);
    assert_string_equal(t->hosts[1], "b.example.com");
    assert_string_equal(t->tls.secret, "cert.certs");
    assert_false(t->tls.secret_namespacing);
    assert_string_equal(t->tls.ca_secret, "ca");
    assert_string_equal(t->tls.alpn_protocols, "istio");
    assert_string_equal(t->tls.sni, "backend.local");
    assert_string_equal(t->tls.max_tls_version, "v1.3");
    assert_int_equal(t->tls.ncipher_suites, 2);
    assert_string_equal(t->tls.ecdh_curves[0], "X25519");
    assert_true(t->tls.cert_required);
    assert_true(t->tls.redirect_cleartext_from_set);
    assert_int_equal(t->tls.redirect_cleartext_from, 8080);
    t = &r->tlscontexts[1];
    assert_true(t->tls.secret_namespacing);
    assert_string_equal(t->tls.cert_chain_file, "/c/cert.pem");
    assert_string_equal(t->tls.private_key_file, "/c/key.pem");
    assert_string_equal(t->tls.cacert_chain_file, "/c/ca.pem");
    assert_null(t->tls.secret);
    assert_diag(r, "t.yaml:26: TLSContext/default/both: exactly one of secret and "
                   "cert_chain_file\n");
    assert_diag(r, "t.yaml:34: TLSContext/default/ver: min_tls_version: expected one of v1.0, "
                   "v1.1, v1.2, v1.3 (got \"v1.4\")\n");
    assert_errors(r, 2);
    pt_resources_free(r);
}

/* ---- TracingService, Module ----------------------------------------------------------------- */

static void test_tracing(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: TracingService\n"
                                  "metadata: {name: zipkin}\n"
                                  "spec: {service: 'zipkin:9411', driver: zipkin}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: TracingService\n"
                                  "metadata: {name: custom, namespace: obs}\n"
                                  "spec:\n"
                                  "  service: otel:4318\n"
                                  "  driver: opentelemetry\n"
                                  "  config:\n"
                                  "    collector_endpoint: /v1/traces\n"
                                  "    collector_hostname: otel.obs\n"
                                  "    trace_id_128bit: false\n"
                                  "    shared_span_context: false\n"
                                  "  sampling: {overall: 10, random: 0.5, client: 0}\n"
                                  "  custom_tags:\n"
                                  "  - {tag: env, literal: {value: prod}}\n"
                                  "  - tag: pod\n"
                                  "    environment: {name: POD_NAME, default_value: unknown}\n"
                                  "  - {tag: ua, request_header: {name: user-agent}}\n"
                                  "  tag_headers: [':authority', ':path']\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: TracingService\n"
                                  "metadata: {name: bad}\n"
                                  "spec:\n"
                                  "  service: z\n"
                                  "  driver: lightstep\n"
                                  "  config: {collector_endpoint_version: HTTP_PROTO}\n"
                                  "  sampling: {overall: 101}\n"
                                  "  custom_tags: [{tag: x}]\n");
    assert_int_equal(r->ntracing, 2);
    const struct pt_tracing_res *t = &r->tracing[0];
    assert_string_equal(t->service, "zipkin:9411");
    assert_string_equal(t->driver, "zipkin");
    assert_string_equal(t->collector_endpoint, "/api/v2/spans");
    assert_string_equal(t->collector_endpoint_version, "HTTP_JSON");
    assert_null(t->collector_hostname);
    assert_true(t->trace_id_128bit);
    assert_true(t->shared_span_context);
    assert_true(t->sampling_overall == 100 && t->sampling_random == 100 &&
                t->sampling_client == 100);
    t = &r->tracing[1];
    assert_string_equal(t->driver, "opentelemetry");
    assert_string_equal(t->collector_endpoint, "/v1/traces");
    assert_string_equal(t->collector_hostname, "otel.obs");
    assert_false(t->trace_id_128bit);
    assert_false(t->shared_span_context);
    assert_true(t->sampling_overall == 10 && t->sampling_random == 0.5 &&
                t->sampling_client == 0);
    assert_int_equal(t->ncustom_tags, 3);
    assert_string_equal(t->custom_tags[0].literal, "prod");
    assert_string_equal(t->custom_tags[1].env_name, "POD_NAME");
    assert_string_equal(t->custom_tags[1].env_default, "unknown");
    assert_string_equal(t->custom_tags[2].header_name, "user-agent");
    assert_int_equal(t->ntag_headers, 2);
    assert_string_equal(t->tag_headers[0], ":authority");
    assert_diag(r, "t.yaml:30: TracingService/default/bad: driver: lightstep not supported; use "
                   "zipkin, datadog or opentelemetry\n");
    assert_diag(r, "t.yaml:31: TracingService/default/bad: collector_endpoint_version HTTP_PROTO "
                   "not supported; use HTTP_JSON\n");
    assert_diag(r, "t.yaml:32: TracingService/default/bad: sampling.overall: expected a number "
                   "between 0 and 100\n");
    assert_diag(r, "t.yaml:33: TracingService/default/bad: custom_tags[0]: exactly one of "
                   "literal, environment and request_header\n");
    assert_errors(r, 4);
    pt_resources_free(r);
}

static void test_module(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Module\n"
                                  "metadata: {name: ambassador}\n"
                                  "spec:\n"
                                  "  config:\n"
                                  "    envoy_log_type: json\n"
                                  "    envoy_log_format: {status: '%RESPONSE_CODE%', path: "
                                  "'%REQ(:PATH)%'}\n"
                                  "    envoy_log_path: /dev/stdout\n"
                                  "    cluster_request_timeout_ms: 5000\n"
                                  "    diagnostics: {enabled: false}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Module\n"
                                  "metadata: {name: tls}\n"
                                  "spec: {}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Module\n"
                                  "metadata: {name: ambassador, namespace: other}\n"
                                  "spec:\n"
                                  "  config: {envoy_log_format: '%START_TIME% %PROTOCOL%'}\n");
    assert_errors(r, 0);
    assert_int_equal(r->nmodules, 2);
    const struct pt_module_res *m = &r->modules[0];
    assert_string_equal(m->envoy_log_type, "json");
    assert_null(m->envoy_log_format);
    assert_int_equal(m->nenvoy_log_json_format, 2);
    assert_string_equal(kv_get(m->envoy_log_json_format, 2, "status"), "%RESPONSE_CODE%");
    assert_string_equal(m->envoy_log_path, "/dev/stdout");
    assert_int_equal(m->cluster_request_timeout_ms, 5000);
    m = &r->modules[1];
    assert_null(m->envoy_log_type);
    assert_string_equal(m->envoy_log_format, "%START_TIME% %PROTOCOL%");
    assert_int_equal(m->cluster_request_timeout_ms, -1);
    assert_diag(r, "t.yaml:10: Module/default/ambassador: notice: unknown field "
                   "config.diagnostics ignored\n");
    assert_diag(r, "t.yaml:12: Module/default/tls: notice: Module tls ignored; only the Module "
                   "named ambassador is read\n");
    pt_resources_free(r);
}

/* ---- core v1 -------------------------------------------------------------------------------- */

static void test_service_endpoints(void **state)
{
    struct pt_resources *r = load("apiVersion: v1\n"
                                  "kind: Service\n"
                                  "metadata: {name: quote, namespace: default}\n"
                                  "spec:\n"
                                  "  type: ClusterIP\n"
                                  "  selector: {app: quote}\n"
                                  "  clusterIP: 10.96.0.12\n"
                                  "  ports:\n"
                                  "  - {name: http, port: 80, targetPort: 8080}\n"
                                  "  - {name: grpc, port: 9000, targetPort: grpc-port, protocol: "
                                  "TCP}\n"
                                  "  - {port: 81}\n"
                                  "status: {loadBalancer: {}}\n"
                                  "---\n"
                                  "apiVersion: v1\n"
                                  "kind: Endpoints\n"
                                  "metadata: {name: quote}\n"
                                  "subsets:\n"
                                  "- addresses: [{ip: 10.1.0.5, nodeName: n1}, {ip: 'fd00::5'}]\n"
                                  "  notReadyAddresses: [{ip: 10.1.0.6}]\n"
                                  "  ports: [{name: http, port: 8080, protocol: TCP}]\n"
                                  "---\n"
                                  "apiVersion: v1\n"
                                  "kind: Endpoints\n"
                                  "metadata: {name: broken}\n"
                                  "subsets:\n"
                                  "- addresses: [{ip: not-an-ip}]\n"
                                  "  ports: [{port: 0}]\n");
    assert_int_equal(r->nservices, 1);
    const struct pt_service_res *s = &r->services[0];
    assert_string_equal(s->cluster_ip, "10.96.0.12");
    assert_int_equal(s->nports, 3);
    assert_string_equal(s->ports[0].name, "http");
    assert_int_equal(s->ports[0].port, 80);
    assert_int_equal(s->ports[0].target_port, 8080);
    assert_string_equal(s->ports[0].protocol, "TCP");
    assert_int_equal(s->ports[1].target_port, 0);
    assert_string_equal(s->ports[1].target_port_name, "grpc-port");
    assert_null(s->ports[2].name);
    assert_int_equal(s->ports[2].target_port, 81);
    assert_int_equal(r->nendpoints, 1);
    const struct pt_endpoints_res *e = &r->endpoints[0];
    assert_int_equal(e->nsubsets, 1);
    assert_int_equal(e->subsets[0].naddresses, 2);
    assert_string_equal(e->subsets[0].addresses[1].ip, "fd00::5");
    assert_int_equal(e->subsets[0].nports, 1);
    assert_string_equal(e->subsets[0].ports[0].name, "http");
    assert_int_equal(e->subsets[0].ports[0].port, 8080);
    assert_diag(r, "t.yaml:26: Endpoints/default/broken: subsets[0].addresses[0].ip: expected an "
                   "IP address (got \"not-an-ip\")\n");
    assert_diag(r, "t.yaml:27: Endpoints/default/broken: subsets[0].ports[0].port: expected an "
                   "integer between 1 and 65535\n");
    assert_errors(r, 2);
    assert_no_diag(r, "notice");
    pt_resources_free(r);
}

/* EndpointSlices become the Endpoints of their Service (a subset per slice, ready endpoints
 * only) and replace an Endpoints object of the same Service; FQDN slices, slices without a
 * Service label and slices with an unnumbered port are left out. */
static void test_endpointslices_fold_into_endpoints(void **state)
{
    struct pt_resources *r = load("apiVersion: v1\n"
                                  "kind: Endpoints\n"
                                  "metadata: {name: quote}\n"
                                  "subsets: [{addresses: [{ip: 10.9.9.9}], ports: [{port: 1}]}]\n"
                                  "---\n"
                                  "apiVersion: discovery.k8s.io/v1\n"
                                  "kind: EndpointSlice\n"
                                  "metadata:\n"
                                  "  name: quote-abc\n"
                                  "  labels: {kubernetes.io/service-name: quote}\n"
                                  "addressType: IPv4\n"
                                  "endpoints:\n"
                                  "- addresses: [10.1.0.5]\n"
                                  "  conditions: {ready: true, serving: true}\n"
                                  "  nodeName: n1\n"
                                  "- addresses: [10.1.0.6]\n"
                                  "  conditions: {ready: false}\n"
                                  "- addresses: [10.1.0.7]\n"
                                  "ports: [{name: http, port: 8080, protocol: TCP}]\n"
                                  "---\n"
                                  "apiVersion: discovery.k8s.io/v1\n"
                                  "kind: EndpointSlice\n"
                                  "metadata: {name: quote-def, labels: {kubernetes.io/service-name: quote}}\n"
                                  "addressType: IPv6\n"
                                  "endpoints: [{addresses: ['fd00::5']}]\n"
                                  "ports: [{name: http, port: 8080}]\n"
                                  "---\n"
                                  "apiVersion: discovery.k8s.io/v1\n"
                                  "kind: EndpointSlice\n"
                                  "metadata: {name: other-1, namespace: shop, labels: {kubernetes.io/service-name: other}}\n"
                                  "addressType: IPv4\n"
                                  "endpoints: [{addresses: [10.2.0.1]}]\n"
                                  "ports: [{port: 9000}]\n"
                                  "---\n"
                                  "apiVersion: discovery.k8s.io/v1\n"
                                  "kind: EndpointSlice\n"
                                  "metadata: {name: ext, labels: {kubernetes.io/service-name: ext}}\n"
                                  "addressType: FQDN\n"
                                  "endpoints: [{addresses: [example.com]}]\n"
                                  "ports: [{port: 80}]\n"
                                  "---\n"
                                  "apiVersion: discovery.k8s.io/v1\n"
                                  "kind: EndpointSlice\n"
                                  "metadata: {name: unowned}\n"
                                  "addressType: IPv4\n"
                                  "endpoints: [{addresses: [10.3.0.1]}]\n"
                                  "---\n"
                                  "apiVersion: discovery.k8s.io/v1\n"
                                  "kind: EndpointSlice\n"
                                  "metadata: {name: allports, labels: {kubernetes.io/service-name: all}}\n"
                                  "addressType: IPv4\n"
                                  "endpoints: [{addresses: [10.4.0.1]}]\n"
                                  "ports: [{port: null}]\n"
                                  "---\n"
                                  "apiVersion: v1\n"
                                  "kind: EndpointSlice\n"
                                  "metadata: {name: wrong-api}\n"
                                  "addressType: IPv4\n");
    const struct pt_endpoints_res *e;

    assert_int_equal(r->nendpointslices, 6);
    assert_int_equal(r->nendpoints, 2);
    e = &r->endpoints[0];
    assert_string_equal(e->meta.name, "quote");
    assert_int_equal(e->nsubsets, 2); /* the written subset gave way */
    assert_int_equal(e->subsets[0].naddresses, 2);
    assert_string_equal(e->subsets[0].addresses[0].ip, "10.1.0.5");
    assert_string_equal(e->subsets[0].addresses[1].ip, "10.1.0.7");
    assert_int_equal(e->subsets[0].nports, 1);
    assert_int_equal(e->subsets[0].ports[0].port, 8080);
    assert_string_equal(e->subsets[0].ports[0].name, "http");
    assert_int_equal(e->subsets[1].naddresses, 1);
    assert_string_equal(e->subsets[1].addresses[0].ip, "fd00::5");
    e = &r->endpoints[1];
    assert_string_equal(e->meta.kind, "Endpoints");
    assert_string_equal(e->meta.name, "other");
    assert_string_equal(e->meta.namespace, "shop");
    assert_int_equal(e->nsubsets, 1);
    assert_string_equal(e->subsets[0].addresses[0].ip, "10.2.0.1");
    assert_diag(r, "apiVersion: v1 is not valid for EndpointSlice (use discovery.k8s.io/v1)");
    assert_errors(r, 1);
    pt_resources_free(r);
}

static void test_secret_base64(void **state)
{
    struct pt_resources *r = load("apiVersion: v1\n"
                                  "kind: Secret\n"
                                  "metadata: {name: cert, namespace: certs}\n"
                                  "type: kubernetes.io/tls\n"
                                  "data:\n"
                                  "  tls.crt: aGVsbG8=\n"
                                  "  tls.key: |\n"
                                  "    d29y\n"
                                  "    bGQ\n"
                                  "  bin: AP8A\n"
                                  "  empty: ''\n"
                                  "stringData:\n"
                                  "  tls.key: plain-key\n"
                                  "  extra: yes-really\n"
                                  "---\n"
                                  "apiVersion: v1\n"
                                  "kind: Secret\n"
                                  "metadata: {name: opaque}\n"
                                  "---\n"
                                  "apiVersion: v1\n"
                                  "kind: Secret\n"
                                  "metadata: {name: broken}\n"
                                  "data: {a: 'not base64!'}\n");
    assert_int_equal(r->nsecrets, 2);
    const struct pt_secret_res *s = &r->secrets[0];
    assert_string_equal(s->type, "kubernetes.io/tls");
    assert_int_equal(s->ndata, 5);
    assert_string_equal(s->data[0].key, "tls.crt");
    assert_string_equal(s->data[0].value, "hello");
    assert_int_equal(s->data_len[0], 5);
    assert_string_equal(s->data[1].key, "tls.key");
    assert_string_equal(s->data[1].value, "plain-key"); /* stringData wins */
    assert_int_equal(s->data_len[2], 3);
    assert_memory_equal(s->data[2].value, "\0\xff\0", 3);
    assert_int_equal(s->data_len[3], 0);
    assert_string_equal(s->data[4].key, "extra");
    assert_string_equal(s->data[4].value, "yes-really");
    assert_string_equal(r->secrets[1].type, "Opaque");
    assert_int_equal(r->secrets[1].ndata, 0);
    assert_diag(r, "t.yaml:23: Secret/default/broken: data.a: invalid base64\n");
    assert_errors(r, 1);
    pt_resources_free(r);
}

/* ---- the seed document's YAML (seed/istio-integration.md) ---------------------------------- */

static void test_seed_blocks(void **state)
{
    /* $productNamespace$ is written as "ambassador", Emissary's default. */
    struct pt_resources *r = load("---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: TLSContext\n"
                                  "metadata:\n"
                                  "  name: istio-upstream\n"
                                  "  namespace: ambassador\n"
                                  "spec:\n"
                                  "  secret: istio-certs     # This Secret name cannot currently "
                                  "be changed.\n"
                                  "  alpn_protocols: istio   # This is required for Istio.\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind:  TracingService\n"
                                  "metadata:\n"
                                  "  name:  tracing\n"
                                  "  namespace: ambassador\n"
                                  "spec:\n"
                                  "  service: \"zipkin:9411\"\n"
                                  "  driver: zipkin\n"
                                  "  config: {}\n"
                                  "  tag_headers:\n"
                                  "    - \":authority\"\n"
                                  "    - \":path\"\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata:\n"
                                  "  name: quote-backend\n"
                                  "spec:\n"
                                  "  hostname: \"*\"\n"
                                  "  prefix: /backend/\n"
                                  "  service: quote\n"
                                  "  tls: istio-upstream\n");
    assert_errors(r, 0);
    assert_no_diag(r, "notice");
    assert_int_equal(r->ntlscontexts, 1);
    assert_string_equal(r->tlscontexts[0].meta.namespace, "ambassador");
    assert_string_equal(r->tlscontexts[0].tls.secret, "istio-certs");
    assert_string_equal(r->tlscontexts[0].tls.alpn_protocols, "istio");
    assert_int_equal(r->ntracing, 1);
    assert_string_equal(r->tracing[0].service, "zipkin:9411");
    assert_int_equal(r->tracing[0].ntag_headers, 2);
    assert_int_equal(r->nmappings, 1);
    assert_string_equal(r->mappings[0].tls, "istio-upstream");
    assert_string_equal(r->mappings[0].hostname, "*");
    pt_resources_free(r);

    /* The plain quote-backend Mapping (no tls) parses too. */
    r = load("apiVersion: getambassador.io/v3alpha1\n"
             "kind: Mapping\n"
             "metadata:\n"
             "  name: quote-backend\n"
             "spec:\n"
             "  hostname: \"*\"\n"
             "  prefix: /backend/\n"
             "  service: quote\n");
    assert_errors(r, 0);
    assert_null(r->mappings[0].tls);
    pt_resources_free(r);

    /* The seed's mtls-mapping has no `service`, which Emissary's CRD requires
     * (crd_mapping.go: +kubebuilder:validation:Required), so it is rejected with one clear
     * error; everything else about it reads. */
    r = load("---\n"
             "apiVersion: getambassador.io/v3alpha1\n"
             "kind: Mapping\n"
             "metadata:\n"
             "  name: mtls-mapping\n"
             "spec:\n"
             "  hostname: my-secret-host.example.com   # Make sure this matches a configured "
             "Host!\n"
             "  prefix: /my-secret-mapping/\n"
             "  tls: istio-upstream\n");
    char *s = diag_str(r);
    assert_string_equal(s, "t.yaml:2: Mapping/default/mtls-mapping: service: required\n");
    free(s);
    pt_resources_free(r);
}

/* ---- YAML-level behaviour -------------------------------------------------------------------- */

static void test_yaml_syntax_error(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: before}\n"
                                  "spec: {hostname: '*', prefix: /, service: s}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: broken\n"
                                  "spec: {hostname: '*', prefix: /, service: s}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: after}\n"
                                  "spec: {hostname: '*', prefix: /, service: s}\n");
    assert_int_equal(r->nmappings, 1);
    assert_string_equal(r->mappings[0].meta.name, "before");
    assert_errors(r, 1);
    assert_diag(r, "t.yaml:9: YAML syntax error: ");
    assert_diag(r, "; rest of file skipped\n");
    pt_resources_free(r);

    r = load("a: b\n  c: d\n");
    assert_diag(r, "t.yaml:2: YAML syntax error: mapping values are not allowed in this context");
    assert_errors(r, 1);
    pt_resources_free(r);
}

static void test_unknown_fields_and_kinds(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: m}\n"
                                  "spec:\n"
                                  "  hostname: '*'\n"
                                  "  prefix: /\n"
                                  "  service: s\n"
                                  "  cors: {origins: ['*'], allow: x}\n"
                                  "  regex_rewrite: {pattern: a, substitution: b, flags: x}\n"
                                  "---\n"
                                  "apiVersion: apps/v1\n"
                                  "kind: Deployment\n"
                                  "metadata: {name: quote}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: TCPMapping\n"
                                  "metadata: {name: t, namespace: n}\n"
                                  "---\n"
                                  "apiVersion: serving.knative.dev/v1\n"
                                  "kind: Service\n"
                                  "metadata: {name: k}\n");
    assert_errors(r, 0);
    assert_int_equal(r->nmappings, 1);
    assert_int_equal(r->nservices, 0);
    assert_diag(r, "t.yaml:8: Mapping/default/m: notice: unknown field cors.allow ignored\n");
    assert_diag(r, "t.yaml:9: Mapping/default/m: notice: unknown field regex_rewrite.flags "
                   "ignored\n");
    assert_diag(r, "t.yaml:11: Deployment/default/quote: notice: unknown kind Deployment ignored "
                   "(apiVersion apps/v1)\n");
    assert_diag(r, "t.yaml:15: TCPMapping/n/t: notice: TCPMapping is not supported by this build; "
                   "ignored\n");
    assert_diag(r, "t.yaml:19: Service/default/k: notice: unknown kind Service ignored "
                   "(apiVersion serving.knative.dev/v1)\n");
    pt_resources_free(r);
}

/* ---- values written on the wire (config/wire.c) ---------------------------------------------- */

/* load_mapping_with: a Mapping "m" whose line 6 (and on) is <lines>; prefix /p/ and service s
 * unless <lines> sets them. */
static struct pt_resources *load_mapping_with(const char *lines)
{
    char yaml[2048];
    int n = snprintf(yaml, sizeof(yaml),
                     "apiVersion: getambassador.io/v3alpha1\n"
                     "kind: Mapping\n"
                     "metadata: {name: m}\n"
                     "spec:\n"
                     "  hostname: '*'\n"
                     "%s%s%s",
                     lines, strstr(lines, "prefix:") ? "" : "  prefix: /p/\n",
                     strstr(lines, "service:") ? "" : "  service: s\n");
    assert_true(n > 0 && (size_t)n < sizeof(yaml));
    return load(yaml);
}

/* Every value that reaches a head: CR, LF, NUL, non-token names, managed headers, bytes a
 * request-target or a host cannot hold are errors at their line, and the Mapping is rejected
 * alone. The value is shown escaped, so the message itself cannot inject a line either. */
static void test_mapping_wire_values(void **state)
{
    static const struct { const char *lines, *diag; } bad[] = {
        { "  add_request_headers: {\"x-a\\r\\nx-b\": v}\n",
          "t.yaml:6: Mapping/default/m: add_request_headers: header name \"x-a\\x0d\\x0ax-b\" is "
          "not a token (RFC 9110 §5.6.2)\n" },
        { "  add_request_headers: {\"x a\": v}\n",
          "t.yaml:6: Mapping/default/m: add_request_headers: header name \"x a\" is not a token "
          "(RFC 9110 §5.6.2)\n" },
        { "  add_request_headers: {\"\": v}\n",
          "t.yaml:6: Mapping/default/m: add_request_headers: header name \"\" is not a token "
          "(RFC 9110 §5.6.2)\n" },
        { "  add_request_headers: {\":authority\": v}\n",
          "t.yaml:6: Mapping/default/m: add_request_headers: header name \":authority\" is not a "
          "token (RFC 9110 §5.6.2)\n" },
        { "  add_request_headers: {x-a: \"v\\r\\nx-b: w\"}\n",
          "t.yaml:6: Mapping/default/m: add_request_headers.x-a: value \"v\\x0d\\x0ax-b: w\" has "
          "a byte not allowed in a field value (CR, LF, NUL and other controls; RFC 9110 "
          "§5.5)\n" },
        { "  add_response_headers: {x-a: {value: \"v\\nw\", append: false}}\n",
          "t.yaml:6: Mapping/default/m: add_response_headers.x-a: value \"v\\x0aw\" has a byte "
          "not allowed in a field value (CR, LF, NUL and other controls; RFC 9110 §5.5)\n" },
        { "  add_request_headers: {x-a: \"v\\x7f\"}\n",
          "t.yaml:6: Mapping/default/m: add_request_headers.x-a: value \"v\\x7f\" has a byte "
          "not allowed in a field value (CR, LF, NUL and other controls; RFC 9110 §5.5)\n" },
        { "  add_request_headers: {x-a: \" v\"}\n",
          "t.yaml:6: Mapping/default/m: add_request_headers.x-a: value \" v\" starts or ends "
          "with whitespace, which a recipient strips (RFC 9110 §5.5)\n" },
        { "  add_response_headers: {x-a: \"v\\t\"}\n",
          "t.yaml:6: Mapping/default/m: add_response_headers.x-a: value \"v\\x09\" starts or "
          "ends with whitespace, which a recipient strips (RFC 9110 §5.5)\n" },
        { "  add_request_headers: {x-a: \"a\\0b\"}\n",
          "t.yaml:6: Mapping/default/m: add_request_headers.x-a: expected a string\n" },
        { "  add_request_headers: {Content-Length: '5'}\n",
          "t.yaml:6: Mapping/default/m: add_request_headers: header Content-Length is managed by "
          "Portico and cannot be added by a Mapping\n" },
        { "  add_response_headers: {transfer-encoding: chunked}\n",
          "t.yaml:6: Mapping/default/m: add_response_headers: header transfer-encoding is "
          "managed by Portico and cannot be added by a Mapping\n" },
        { "  add_request_headers: {TE: trailers}\n",
          "t.yaml:6: Mapping/default/m: add_request_headers: header TE is managed by Portico "
          "and cannot be added by a Mapping\n" },
        { "  add_request_headers: {host: evil.example}\n",
          "t.yaml:6: Mapping/default/m: add_request_headers: header host cannot be set here; "
          "use host_rewrite\n" },
        { "  remove_request_headers: [x-ok, Connection]\n",
          "t.yaml:6: Mapping/default/m: remove_request_headers[1]: header Connection is managed "
          "by Portico and cannot be removed by a Mapping\n" },
        { "  remove_request_headers:\n  - x-ok\n  - host\n",
          "t.yaml:8: Mapping/default/m: remove_request_headers[1]: header host is managed by "
          "Portico and cannot be removed by a Mapping\n" },
        { "  remove_response_headers: [upgrade, x-ok]\n",
          "t.yaml:6: Mapping/default/m: remove_response_headers[0]: header upgrade is managed "
          "by Portico and cannot be removed by a Mapping\n" },
        { "  remove_response_headers: \"x\\r\\ny\"\n",
          "t.yaml:6: Mapping/default/m: remove_response_headers[0]: header name \"x\\x0d\\x0ay\" "
          "is not a token (RFC 9110 §5.6.2)\n" },
        { "  remove_request_headers: [keep-alive]\n",
          "t.yaml:6: Mapping/default/m: remove_request_headers[0]: header keep-alive is managed "
          "by Portico and cannot be removed by a Mapping\n" },
        { "  add_request_headers: {Proxy-Connection: close}\n",
          "t.yaml:6: Mapping/default/m: add_request_headers: header Proxy-Connection is managed "
          "by Portico and cannot be added by a Mapping\n" },
        { "  host_rewrite: \"a.example\\r\\nx-b: c\"\n",
          "t.yaml:6: Mapping/default/m: host_rewrite: \"a.example\\x0d\\x0ax-b: c\" is not a "
          "host[:port] (RFC 3986 §3.2.2)\n" },
        { "  host_rewrite: a.example/x\n",
          "t.yaml:6: Mapping/default/m: host_rewrite: \"a.example/x\" is not a host[:port] (RFC "
          "3986 §3.2.2)\n" },
        { "  host_rewrite: u@a.example\n",
          "t.yaml:6: Mapping/default/m: host_rewrite: \"u@a.example\" is not a host[:port] (RFC "
          "3986 §3.2.2)\n" },
        { "  host_rewrite: ''\n",
          "t.yaml:6: Mapping/default/m: host_rewrite: \"\" is not a host[:port] (RFC 3986 "
          "§3.2.2)\n" },
        { "  rewrite: /x y\n",
          "t.yaml:6: Mapping/default/m: rewrite: \"/x y\" has a byte not allowed in a "
          "request-target (space, '#', controls, non-ASCII; RFC 9112 §3.2)\n" },
        { "  rewrite: \"/x\\r\\nX-Injected: 1\\r\\n\"\n",
          "t.yaml:6: Mapping/default/m: rewrite: \"/x\\x0d\\x0aX-Injected: 1\\x0d\\x0a\" has a "
          "byte not allowed in a request-target (space, '#', controls, non-ASCII; RFC 9112 "
          "§3.2)\n" },
        { "  rewrite: \"/x#y\"\n",
          "t.yaml:6: Mapping/default/m: rewrite: \"/x#y\" has a byte not allowed in a "
          "request-target (space, '#', controls, non-ASCII; RFC 9112 §3.2)\n" },
        { "  service: \"quote\\r\\nx-injected: 1\"\n  auto_host_rewrite: true\n",
          "t.yaml:6: Mapping/default/m: service: \"quote\\x0d\\x0ax-injected: 1\" has a byte "
          "not allowed in [scheme://]host[:port] (RFC 3986 §3.2.2)\n" },
        { "  service: \"quote x\"\n",
          "t.yaml:6: Mapping/default/m: service: \"quote x\" has a byte not allowed in "
          "[scheme://]host[:port] (RFC 3986 §3.2.2)\n" },
        { "  prefix: \"/p\\r\\n\"\n",
          "t.yaml:6: Mapping/default/m: prefix: \"/p\\x0d\\x0a\" has a control character (CR, "
          "LF, ...), which no request path contains\n" },
        { "  regex_rewrite: {pattern: \"a\\nb\", substitution: x}\n",
          "t.yaml:6: Mapping/default/m: regex_rewrite.pattern: \"a\\x0ab\" has a control "
          "character (CR, LF, ...), which no request path contains\n" },
        { "  regex_rewrite:\n    pattern: a\n    substitution: \"/b\\r\\nX: y\"\n",
          "t.yaml:8: Mapping/default/m: regex_rewrite.substitution: \"/b\\x0d\\x0aX: y\" has a "
          "byte not allowed in a request-target (space, '#', controls, non-ASCII; RFC 9112 "
          "§3.2)\n" },
        { "  add_request_headers: {x-long: \"0123456789012345678901234567890123456789"
          "0123456789012345678901234\\n\"}\n",
          "t.yaml:6: Mapping/default/m: add_request_headers.x-long: value \"0123456789012345678"
          "901234567890123456789012345678901234567890123\"... has a byte not allowed in a field "
          "value (CR, LF, NUL and other controls; RFC 9110 §5.5)\n" },
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct pt_resources *r = load_mapping_with(bad[i].lines);
        char *s = diag_str(r);
        if (r->nmappings != 0 || strcmp(s, bad[i].diag) != 0)
            fail_msg("case %zu: %zu mappings, diagnostics:\n%swant:\n%s", i, r->nmappings, s,
                     bad[i].diag);
        free(s);
        pt_resources_free(r);
    }
}

/* What the RFCs allow stays allowed: inner whitespace and obs-text in values, an empty value,
 * tokens with odd but legal characters, IP literals with a port, percent-encoding. */
static void test_mapping_wire_values_allowed(void **state)
{
    struct pt_resources *r = load_mapping_with(
        "  add_request_headers:\n"
        "    x-a: \"v  w\\tz\"\n"
        "    x-b: ''\n"
        "    x-c: \"caf\\xe9\"\n"
        "    \"x!#$%&'*+.^_`|~\": v\n"
        "    x-content-length: '1'\n"
        "  add_response_headers: {x-d: {value: d, append: false}}\n"
        "  remove_request_headers: [x-e, cookie]\n"
        "  remove_response_headers: server\n"
        "  host_rewrite: '[::1]:8080'\n"
        "  rewrite: \"/a%20b/!$&'()*+,;=:@~\"\n"
        "  regex_rewrite: {pattern: '^/p/(.*)$', substitution: '/q/\\1?x'}\n");
    assert_errors(r, 0);
    assert_int_equal(r->nmappings, 1);
    assert_string_equal(r->mappings[0].add_request_headers[0].value, "v  w\tz");
    assert_string_equal(r->mappings[0].add_request_headers[2].value, "caf\xc3\xa9");
    assert_string_equal(r->mappings[0].host_rewrite, "[::1]:8080");
    pt_resources_free(r);

    r = load_mapping_with("  service: https://quote.shop:8443\n");
    assert_errors(r, 0);
    pt_resources_free(r);
    r = load_mapping_with("  service: '[::1]:8080'\n");
    assert_errors(r, 0);
    pt_resources_free(r);
}

/* The bad Mapping goes, its neighbour in the same file stays. */
static void test_mapping_wire_rejected_alone(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: bad}\n"
                                  "spec:\n"
                                  "  hostname: '*'\n"
                                  "  prefix: /bad/\n"
                                  "  service: s\n"
                                  "  add_request_headers: {\"x-a\\r\\nContent-Length\": '0'}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: good}\n"
                                  "spec: {hostname: '*', prefix: /good/, service: s}\n");
    assert_errors(r, 1);
    assert_int_equal(r->nmappings, 1);
    assert_string_equal(r->mappings[0].meta.name, "good");
    assert_diag(r, "t.yaml:8: Mapping/default/bad: add_request_headers: header name "
                   "\"x-a\\x0d\\x0aContent-Length\" is not a token (RFC 9110 §5.6.2)\n");
    pt_resources_free(r);
}

/* The collector request's Host and path come from the TracingService. */
static void test_tracing_wire_values(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: TracingService\n"
                                  "metadata: {name: t}\n"
                                  "spec:\n"
                                  "  service: zipkin:9411\n"
                                  "  driver: zipkin\n"
                                  "  config:\n"
                                  "    collector_hostname: \"zipkin\\r\\nx: y\"\n"
                                  "    collector_endpoint: /api/v2/spans x\n");
    assert_int_equal(r->ntracing, 0);
    assert_diag(r, "t.yaml:8: TracingService/default/t: config.collector_hostname: "
                   "\"zipkin\\x0d\\x0ax: y\" is not a host[:port] (RFC 3986 §3.2.2)\n");
    assert_diag(r, "t.yaml:9: TracingService/default/t: config.collector_endpoint: "
                   "\"/api/v2/spans x\" has a byte not allowed in a request-target (space, '#', "
                   "controls, non-ASCII; RFC 9112 §3.2)\n");
    pt_resources_free(r);
}

/* What cannot be read is an error, and counted so that the data plane fails closed:
 * AuthServices for this Portico (even broken ones), the Module's ip_allow/ip_deny (the rest of
 * the Module still applies; test_compile.c has the policy's other cases). Harmless kinds are notices naming the kind. A shadow Mapping is
 * served (proxy/shadow.c); with host_redirect too, shadow wins, as in Emissary. */
static void test_unenforceable(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: AuthService\n"
                                  "metadata: {name: a1}\n"
                                  "spec: {auth_service: x, proto: http}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v2\n"
                                  "kind: AuthService\n"
                                  "metadata: {namespace: n}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: AuthService\n"
                                  "metadata: {name: other}\n"
                                  "spec: {ambassador_id: blue, auth_service: x}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: RateLimitService\n"
                                  "metadata: {name: rl}\n"
                                  "spec: {service: x}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Module\n"
                                  "metadata: {name: ambassador}\n"
                                  "spec:\n"
                                  "  config:\n"
                                  "    enable_http10: true\n"
                                  "    ip_allow: [{peer: 127.0.0.300}]\n"
                                  "    ip_deny: ~\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: m}\n"
                                  "spec:\n"
                                  "  hostname: '*'\n"
                                  "  prefix: /\n"
                                  "  service: s\n"
                                  "  shadow: true\n"
                                  "  host_redirect: yes\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: ok}\n"
                                  "spec: {hostname: '*', prefix: /, service: s, shadow: false, "
                                  "host_redirect: false, bypass_auth: true}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: DevPortal\n"
                                  "metadata: {name: dp}\n");
    assert_int_equal(r->nauthservices, 1); /* a1; the nameless one fails closed, counted */
    assert_int_equal(r->nauth_invalid, 1);
    assert_int_equal(r->nratelimitservices, 0); /* protocol_version v2: an error, not used */
    assert_int_equal(r->ip_policy.action, PT_IP_DENY_ALL);
    assert_int_equal(r->nmodules, 1);
    assert_true(r->modules[0].enable_http10);
    assert_int_equal(r->nmappings, 2);
    assert_true(r->mappings[0].shadow);
    assert_false(r->mappings[0].host_redirect);
    assert_false(r->mappings[1].shadow);
    assert_true(r->mappings[1].bypass_auth);
    assert_errors(r, 3);
    assert_no_diag(r, "AuthService/default/a1");
    assert_diag(r, "t.yaml:6: AuthService: metadata.name: required\n");
    assert_no_diag(r, "AuthService/default/other");
    assert_diag(r, "t.yaml:15: RateLimitService/default/rl: protocol_version v2 is unsupported, "
                   "protocol_version must be \"v3\"\n");
    assert_diag(r, "t.yaml:26: Module/default/ambassador: config.ip_allow[0]: \"127.0.0.300\" is "
                   "not an IP address: every request is denied with 403 until it is fixed\n");
    assert_no_diag(r, "config.ip_deny");
    assert_diag(r, "t.yaml:37: Mapping/default/m: notice: At most one of host_redirect and shadow "
                   "may be set; ignoring host_redirect\n");
    assert_diag(r, "t.yaml:44: DevPortal/default/dp: notice: DevPortal is not supported by this "
                   "build; ignored\n");
    pt_resources_free(r);

    /* nothing of it: nothing denied */
    r = load("apiVersion: getambassador.io/v3alpha1\n"
             "kind: Module\n"
             "metadata: {name: ambassador}\n"
             "spec: {config: {ip_allow: null}}\n");
    assert_errors(r, 0);
    assert_int_equal(r->nauthservices, 0);
    assert_int_equal(r->nauth_invalid, 0);
    assert_int_equal(r->ip_policy.action, PT_IP_NONE);
    pt_resources_free(r);
}

static const char ids_yaml[] = "apiVersion: getambassador.io/v3alpha1\n"
                               "kind: Mapping\n"
                               "metadata: {name: none}\n"
                               "spec: {hostname: '*', prefix: /, service: s}\n"
                               "---\n"
                               "apiVersion: getambassador.io/v3alpha1\n"
                               "kind: Mapping\n"
                               "metadata: {name: blue}\n"
                               "spec: {ambassador_id: blue, hostname: '*', prefix: /, service: s}\n"
                               "---\n"
                               "apiVersion: getambassador.io/v3alpha1\n"
                               "kind: Mapping\n"
                               "metadata: {name: both}\n"
                               "spec:\n"
                               "  ambassador_id: [default, blue]\n"
                               "  hostname: '*'\n"
                               "  prefix: /\n"
                               "  service: s\n"
                               "---\n"
                               "apiVersion: getambassador.io/v3alpha1\n"
                               "kind: Mapping\n"
                               "metadata: {name: green}\n"
                               "spec: {ambassador_id: [green], prefix: 3, service: [bad]}\n"
                               "---\n"
                               "apiVersion: v1\n"
                               "kind: Service\n"
                               "metadata: {name: svc}\n"
                               "spec: {ports: [{port: 80}]}\n";

static void test_ambassador_id(void **state)
{
    struct pt_resources *r = load(ids_yaml);
    assert_errors(r, 0); /* green's errors are not ours to report */
    assert_int_equal(r->nmappings, 2);
    assert_string_equal(r->mappings[0].meta.name, "none");
    assert_null(r->mappings[0].meta.ambassador_id_first);
    assert_string_equal(r->mappings[1].meta.name, "both");
    assert_string_equal(r->mappings[1].meta.ambassador_id_first, "default");
    assert_int_equal(r->nservices, 1);
    pt_resources_free(r);

    struct pt_config_env env = { .ambassador_id = "blue" };
    r = pt_config_load_string(ids_yaml, "t.yaml", &env);
    assert_errors(r, 0);
    assert_int_equal(r->nmappings, 2);
    assert_string_equal(r->mappings[0].meta.name, "blue");
    assert_string_equal(r->mappings[1].meta.name, "both");
    assert_int_equal(r->nservices, 1); /* core objects have no ambassador_id */
    pt_resources_free(r);

    r = load("apiVersion: getambassador.io/v3alpha1\n"
             "kind: Host\n"
             "metadata: {name: h}\n"
             "spec: {ambassador_id: {a: b}}\n");
    assert_diag(r, "t.yaml:4: Host/default/h: ambassador_id: expected a string or a list of "
                   "strings\n");
    assert_int_equal(r->nhosts, 0);
    pt_resources_free(r);
}

static void test_single_namespace(void **state)
{
    static const char yaml[] = "apiVersion: getambassador.io/v3alpha1\n"
                               "kind: Host\n"
                               "metadata: {name: unset}\n"
                               "---\n"
                               "apiVersion: getambassador.io/v3alpha1\n"
                               "kind: Host\n"
                               "metadata: {name: mine, namespace: edge}\n"
                               "---\n"
                               "apiVersion: v1\n"
                               "kind: Secret\n"
                               "metadata: {name: other, namespace: apps}\n";
    struct pt_config_env env = { .namespace = "edge", .single_namespace = true };
    struct pt_resources *r = pt_config_load_string(yaml, "t.yaml", &env);
    assert_errors(r, 0);
    assert_int_equal(r->nhosts, 1);
    assert_string_equal(r->hosts[0].meta.name, "mine");
    assert_int_equal(r->nsecrets, 0);
    pt_resources_free(r);

    env.single_namespace = false;
    r = pt_config_load_string(yaml, "t.yaml", &env);
    assert_int_equal(r->nhosts, 2);
    assert_string_equal(r->hosts[0].meta.namespace, "default"); /* not AMBASSADOR_NAMESPACE */
    assert_int_equal(r->nsecrets, 1);
    pt_resources_free(r);
}

static void test_duplicates(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: x}\n"
                                  "spec: {hostname: '*', prefix: /first/, service: s}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: x}\n"
                                  "spec: {hostname: '*', prefix: /second/, service: s}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: x, namespace: other}\n"
                                  "spec: {hostname: '*', prefix: /other/, service: s}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Host\n"
                                  "metadata: {name: x}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: TLSContext\n"
                                  "metadata: {name: ctx, namespace: a}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: TLSContext\n"
                                  "metadata: {name: ctx, namespace: b}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: keys}\n"
                                  "spec:\n"
                                  "  hostname: '*'\n"
                                  "  prefix: /a/\n"
                                  "  service: s\n"
                                  "  prefix: /b/\n");
    assert_int_equal(r->nmappings, 2);
    assert_string_equal(r->mappings[0].prefix, "/first/");
    assert_string_equal(r->mappings[1].meta.namespace, "other");
    assert_int_equal(r->nhosts, 1);
    assert_int_equal(r->ntlscontexts, 1);
    assert_string_equal(r->tlscontexts[0].meta.namespace, "a");
    assert_diag(r, "t.yaml:6: Mapping/default/x: duplicate Mapping/default/x, first defined at "
                   "t.yaml:1\n");
    assert_diag(r, "t.yaml:24: TLSContext/b/ctx: duplicate TLSContext name ctx (names are "
                   "global), first defined at t.yaml:20 as TLSContext/a/ctx\n");
    assert_diag(r, "t.yaml:35: Mapping/default/keys: prefix: duplicate key\n");
    assert_errors(r, 3);
    pt_resources_free(r);

    /* across files: the loader keeps the first in file order */
    char dir[] = "/tmp/pt-config-dup-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char a[64], b[64];
    snprintf(a, sizeof(a), "%s/a.yaml", dir);
    snprintf(b, sizeof(b), "%s/b.yaml", dir);
    FILE *f = fopen(a, "w");
    fputs("\n\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: h}\n", f);
    fclose(f);
    f = fopen(b, "w");
    fputs("apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: h}\n", f);
    fclose(f);
    r = pt_config_load_dir(dir, NULL);
    assert_int_equal(r->nhosts, 1);
    char want[256];
    snprintf(want, sizeof(want), "%s:1: Host/default/h: duplicate Host/default/h, first defined "
                                 "at %s:3\n", b, a);
    assert_diag(r, want);
    pt_resources_free(r);
    unlink(a);
    unlink(b);
    rmdir(dir);
}

static void test_multidoc_and_list(void **state)
{
    struct pt_resources *r = load("# comment only document\n"
                                  "---\n"
                                  "---\n"
                                  "apiVersion: v1\n"
                                  "kind: List\n"
                                  "items:\n"
                                  "- apiVersion: getambassador.io/v3alpha1\n"
                                  "  kind: Mapping\n"
                                  "  metadata: {name: one}\n"
                                  "  spec: {hostname: '*', prefix: /1/, service: s}\n"
                                  "- apiVersion: getambassador.io/v3alpha1\n"
                                  "  kind: Mapping\n"
                                  "  metadata: {name: two}\n"
                                  "  spec: {hostname: '*', prefix: /2/, service: s, weight: x}\n"
                                  "- apiVersion: v1\n"
                                  "  kind: List\n"
                                  "  items: []\n"
                                  "...\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v3alpha1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: three}\n"
                                  "spec: {hostname: '*', prefix: /3/, service: s}\n"
                                  "---\n"
                                  "- just\n"
                                  "- a list\n");
    assert_int_equal(r->nmappings, 2);
    assert_string_equal(r->mappings[0].meta.name, "one");
    assert_int_equal(r->mappings[0].meta.origin.line, 7);
    assert_string_equal(r->mappings[1].meta.name, "three");
    assert_int_equal(r->mappings[1].meta.origin.line, 20);
    assert_diag(r, "t.yaml:14: Mapping/default/two: weight: expected an integer\n");
    assert_diag(r, "t.yaml:15: a List inside a List is not supported\n");
    assert_diag(r, "t.yaml:25: expected a Kubernetes object");
    assert_errors(r, 3);
    pt_resources_free(r);
}

static void test_v2_api(void **state)
{
    struct pt_resources *r = load("apiVersion: getambassador.io/v2\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: old}\n"
                                  "spec: {prefix: /, service: s}\n"
                                  "---\n"
                                  "apiVersion: getambassador.io/v4\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: future}\n"
                                  "spec: {prefix: /, service: s}\n"
                                  "---\n"
                                  "apiVersion: v1\n"
                                  "kind: Mapping\n"
                                  "metadata: {name: core}\n");
    assert_int_equal(r->nmappings, 1);
    assert_string_equal(r->mappings[0].hostname, "*"); /* as Emissary's v2 conversion */
    assert_diag(r, "t.yaml:1: Mapping/default/old: notice: apiVersion getambassador.io/v2 is read "
                   "as getambassador.io/v3alpha1\n");
    assert_diag(r, "t.yaml:6: Mapping/default/future: apiVersion: getambassador.io/v4 is not "
                   "supported (use getambassador.io/v3alpha1)\n");
    assert_diag(r, "t.yaml:11: Mapping/default/core: apiVersion: v1 is not valid for Mapping (use "
                   "getambassador.io/v3alpha1)\n");
    assert_errors(r, 2);
    pt_resources_free(r);
}

/* Hostile input: none of this may crash, hang or eat memory. */
static void test_hostile_input(void **state)
{
    /* billion laughs */
    struct pt_resources *r = load("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                                  "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                                  "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                                  "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                                  "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                                  "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                                  "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                                  "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                                  "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n"
                                  "kind: List\napiVersion: v1\nitems: *i\n");
    assert_diag(r, "t.yaml:1: aliases expand to more than 1000000 nodes; document skipped\n");
    pt_resources_free(r);

    /* an alias inside its own anchor */
    r = load("a: &x [1, *x]\n");
    assert_diag(r, "t.yaml:1: alias *x refers to no complete anchored node");
    pt_resources_free(r);

    /* small aliases are fine */
    r = load("apiVersion: getambassador.io/v3alpha1\nkind: Mapping\n"
             "metadata: {name: m, labels: &l {a: b}}\n"
             "spec: {hostname: '*', prefix: /, service: s, headers: *l}\n");
    assert_errors(r, 0);
    assert_string_equal(r->mappings[0].headers[0].value, "b");
    pt_resources_free(r);

    /* deep nesting */
    size_t depth = 100000;
    char *deep = malloc(depth * 2 + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[depth * 2] = '\0';
    r = load(deep);
    assert_diag(r, "t.yaml:1: nesting deeper than 64 levels; rest of file skipped\n");
    assert_errors(r, 1);
    pt_resources_free(r);
    free(deep);

    /* binary garbage, and a NUL-bearing string */
    static const char garbage[] = "\x01\x02\xff\xfe: \x80\x81\n\t- {[\n";
    r = load(garbage);
    assert_true(r->diag.nerrors >= 1);
    pt_resources_free(r);
    r = load("apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\n"
             "spec: {hostname: '*', prefix: \"/a\\0b\", service: s}\n");
    assert_diag(r, "t.yaml:4: Mapping/default/m: prefix: expected a string\n");
    pt_resources_free(r);

    /* a huge scalar and a wide mapping */
    size_t n = 4 << 20;
    char *big = malloc(n + 64);
    strcpy(big, "x: ");
    memset(big + 3, 'a', n);
    strcpy(big + 3 + n, "\n");
    r = load(big);
    assert_diag(r, "t.yaml:1: kind: required\n");
    pt_resources_free(r);
    free(big);

    /* odd keys and values everywhere */
    r = load("? [complex, key]\n: v\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
             "data: {? [k] : v, ok: [1]}\n");
    assert_int_equal(r->nsecrets, 0);
    assert_true(r->diag.nerrors >= 1);
    pt_resources_free(r);

    for (int i = 0; i < 256; i++) { /* every one-byte document */
        char one[2] = { (char)i, 0 };
        r = load(one);
        pt_resources_free(r);
    }
}

/* ---- files ------------------------------------------------------------------------------------ */

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_load_dir(void **state)
{
    char dir[] = "/tmp/pt-config-dir-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p[512];
    snprintf(p, sizeof(p), "%s/sub", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof(p), "%s/sub/deeper", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof(p), "%s/..data", dir);
    mkdir(p, 0700);
    static const char host[] = "apiVersion: getambassador.io/v3alpha1\nkind: Host\n"
                               "metadata: {name: %s}\n";
    char text[256];
#define HOST_FILE(file, name)                                                                    \
    do {                                                                                         \
        snprintf(text, sizeof(text), host, name);                                                \
        write_file(dir, file, text);                                                             \
    } while (0)
    HOST_FILE("b.yaml", "b");
    HOST_FILE("a.yml", "a");
    HOST_FILE("sub/c.YAML", "c");
    HOST_FILE("sub/deeper/d.yaml", "d");
    HOST_FILE("z.json", "not-yaml");
    HOST_FILE(".hidden.yaml", "hidden");
    HOST_FILE("..data/e.yaml", "e");
    write_file(dir, "broken.yaml", "kind: [\n");
    char target[512], link[512];
    snprintf(target, sizeof(target), "%s/..data/e.yaml", dir);
    snprintf(link, sizeof(link), "%s/e-link.yaml", dir);
    assert_int_equal(symlink(target, link), 0);

    struct pt_resources *r = pt_config_load_dir(dir, NULL);
    assert_int_equal(r->nhosts, 5);
    const char *order[] = { "a", "b", "e", "c", "d" }; /* a.yml b.yaml e-link.yaml sub/... */
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(r->hosts[i].meta.name, order[i]);
    snprintf(p, sizeof(p), "%s/sub/deeper/d.yaml", dir);
    assert_string_equal(r->hosts[4].meta.origin.file, p);
    assert_int_equal(r->hosts[4].meta.origin.line, 1);
    snprintf(p, sizeof(p), "%s/broken.yaml:2: YAML syntax error:", dir);
    assert_diag(r, p);
    assert_errors(r, 1);
    pt_resources_free(r);

    /* a single file, and a missing path */
    snprintf(p, sizeof(p), "%s/b.yaml", dir);
    r = pt_config_load_dir(p, NULL);
    assert_int_equal(r->nhosts, 1);
    pt_resources_free(r);
    snprintf(p, sizeof(p), "%s/missing", dir);
    r = pt_config_load_dir(p, NULL);
    assert_diag(r, "/missing: cannot read configuration: No such file or directory\n");
    assert_errors(r, 1);
    pt_resources_free(r);

    /* pt_config_check prints and returns the status */
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    assert_int_equal(pt_config_check(dir, f), 1);
    fclose(f);
    assert_non_null(strstr(out, "broken.yaml:2: YAML syntax error:"));
    free(out);
    snprintf(p, sizeof(p), "%s/sub", dir);
    f = open_memstream(&out, &outlen);
    assert_int_equal(pt_config_check(p, f), 0);
    fclose(f);
    assert_string_equal(out, "");
    free(out);

    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_env_from_environ(void **state)
{
    struct pt_config_env env;
    unsetenv("AMBASSADOR_ID");
    unsetenv("AMBASSADOR_NAMESPACE");
    unsetenv("AMBASSADOR_SINGLE_NAMESPACE");
    pt_config_env_from_environ(&env);
    assert_string_equal(env.ambassador_id, "default");
    assert_string_equal(env.namespace, "default");
    assert_false(env.single_namespace);
    setenv("AMBASSADOR_ID", "blue", 1);
    setenv("AMBASSADOR_NAMESPACE", "edge", 1);
    setenv("AMBASSADOR_SINGLE_NAMESPACE", "true", 1);
    pt_config_env_from_environ(&env);
    assert_string_equal(env.ambassador_id, "blue");
    assert_string_equal(env.namespace, "edge");
    assert_true(env.single_namespace);
    setenv("AMBASSADOR_SINGLE_NAMESPACE", "false", 1);
    pt_config_env_from_environ(&env);
    assert_false(env.single_namespace);
    unsetenv("AMBASSADOR_ID");
    unsetenv("AMBASSADOR_NAMESPACE");
    unsetenv("AMBASSADOR_SINGLE_NAMESPACE");
}

static void test_diag_print(void **state)
{
    struct pt_diag d = { 0 };
    struct pt_origin o = { "f.yaml", 3 };
    pt_diag_add(&d, PT_DIAG_ERROR, &o, "Host/ns/h", "bad %s", "thing");
    pt_diag_add(&d, PT_DIAG_NOTICE, &o, "Host/ns/h", "just so you know");
    o.line = 0;
    pt_diag_add(&d, PT_DIAG_ERROR, &o, NULL, "line\nbreak");
    pt_diag_add(&d, PT_DIAG_NOTICE, NULL, NULL, "no origin");
    assert_int_equal(d.nerrors, 2);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    pt_diag_print(&d, f);
    fclose(f);
    assert_string_equal(out, "f.yaml:3: Host/ns/h: bad thing\n"
                             "f.yaml:3: Host/ns/h: notice: just so you know\n"
                             "f.yaml: line?break\n"
                             "-: notice: no origin\n");
    free(out);
    pt_diag_free(&d);
    assert_int_equal(d.n, 0);
    pt_resources_free(NULL);
}

/* collect_names: the names and aliases accepted at the level of <tab> (an INLINE table's fields
 * are accepted there too) into <names>; nested OBJECT/OBJLIST tables are checked on their own. */
static size_t collect_names(const struct pt_config__field *tab, const char **names, size_t n,
                            const char *where);

static void check_table(const struct pt_config__field *tab, const char *where)
{
    const char *names[256];
    size_t n = collect_names(tab, names, 0, where);

    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++)
            if (strcmp(names[i], names[k]) == 0)
                fail_msg("%s: field %s is in the table twice", where, names[k]);
}

static size_t collect_names(const struct pt_config__field *tab, const char **names, size_t n,
                            const char *where)
{
    for (size_t i = 0; tab[i].type != PT_F_END; i++) {
        const struct pt_config__field *f = &tab[i];

        if (f->type == PT_F_INLINE) {
            n = collect_names(f->sub, names, n, where);
            continue;
        }
        assert_true(n + 2 <= 256);
        names[n++] = f->name;
        if (f->alias != NULL)
            names[n++] = f->alias;
        if (f->sub != NULL && f->sub != tab)
            check_table(f->sub, f->name);
    }
    return n;
}

static void test_field_tables_have_no_duplicates(void **state)
{
    static const char *const kinds[] = { "Listener", "Host", "TLSContext", "Mapping", "TracingService",
                                         "Module", "Service", "Endpoints", "EndpointSlice", "Secret",
                                         "AuthService", "RateLimitService" };

    (void)state;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        const struct pt_config__kind *k = pt_config__find_kind(kinds[i]);
        assert_non_null(k);
        check_table(k->fields, kinds[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_field_tables_have_no_duplicates),
        cmocka_unit_test(test_mapping_defaults),
        cmocka_unit_test(test_mapping_fields),
        cmocka_unit_test(test_mapping_host),
        cmocka_unit_test(test_bad_mapping_rejected_alone),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_required_fields),
        cmocka_unit_test(test_listener),
        cmocka_unit_test(test_host),
        cmocka_unit_test(test_tlscontext),
        cmocka_unit_test(test_tracing),
        cmocka_unit_test(test_module),
        cmocka_unit_test(test_service_endpoints),
        cmocka_unit_test(test_endpointslices_fold_into_endpoints),
        cmocka_unit_test(test_secret_base64),
        cmocka_unit_test(test_seed_blocks),
        cmocka_unit_test(test_yaml_syntax_error),
        cmocka_unit_test(test_unknown_fields_and_kinds),
        cmocka_unit_test(test_mapping_wire_values),
        cmocka_unit_test(test_mapping_wire_values_allowed),
        cmocka_unit_test(test_mapping_wire_rejected_alone),
        cmocka_unit_test(test_tracing_wire_values),
        cmocka_unit_test(test_unenforceable),
        cmocka_unit_test(test_ambassador_id),
        cmocka_unit_test(test_single_namespace),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_multidoc_and_list),
        cmocka_unit_test(test_v2_api),
        cmocka_unit_test(test_hostile_input),
        cmocka_unit_test(test_load_dir),
        cmocka_unit_test(test_env_from_environ),
        cmocka_unit_test(test_diag_print),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
