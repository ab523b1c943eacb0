/* The kinds Portico reads, as data: one field table per kind (Listener, Host, TLSContext,
 * Mapping, TracingService, AuthService, RateLimitService, Module, Service, Endpoints, Secret)
 * with its defaults, its custom readers (headers as maps, `tls: true`, base64 Secret data...)
 * and its cross-field checks (values written into a head go through wire.c); and the
 * getambassador.io kinds Portico knows of but does not implement. The readers of the Mapping's
 * policy fields (labels, cors, error_response_overrides, load_balancer, health_checks) are in
 * policy.c.
 * Defaults and rules follow emissary.md §2-3. The generic reading is in fields.c; the Kubernetes
 * envelope, filters and duplicates are in resources.c, which looks kinds up here. */
#include "config/fields.h"
#include "config/load.h"
#include "config/traffic.h"
#include "config/upconn.h"
#include "config/ynode.h"

#include "cluster/health.h"
#include "core/arena.h"
#include "core/common.h"
#include "core/strmap.h"
#include "observe/grpcstats-t.h"
#include "observe/logformat.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


/* ---- custom readers ------------------------------------------------------------------------ */

/* rewrite: `rewrite: ""` turns rewriting off (NULL); absent keeps the default "/". */
static void read_rewrite(struct pt_config__obj *c, const struct pt_config__field *f,
                         const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                         const char *path)
{
    struct pt_mapping_res *m = base;
    const char *s = pt_config__string(c, key, val, path);
    if (s != NULL)
        m->rewrite = *s ? s : NULL;
}

/* tls on a Mapping: a TLSContext name, or `true` for TLS without a context. */
static void read_mapping_tls(struct pt_config__obj *c, const struct pt_config__field *f,
                             const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                             const char *path)
{
    struct pt_mapping_res *m = base;
    bool b;
    if (val->plain && pt_config__scalar_bool(val, &b))
        m->tls = b ? "true" : NULL;
    else
        m->tls = pt_config__string(c, key, val, path);
}

static void append_matches(struct pt_config__obj *c, struct pt_match_kv **arr, size_t *n,
                           const struct pt_ynode *map, bool regex, const char *path)
{
    struct pt_match_kv *out = pt_arena_grow(c->arena, *arr, *n, *n + map->npairs, sizeof(*out));
    char p[PT_PATH_MAX];
    size_t k = *n;
    for (size_t i = 0; i < map->npairs; i++) {
        const struct pt_ynode *name = map->pairs[i].key, *val = map->pairs[i].value;
        bool presence = false;
        struct pt_match_kv *mk = &out[k++];
        mk->name = pt_config__string(c, name, name, path);
        pt_config__path(p, sizeof(p), path, mk->name ? mk->name : "?");
        mk->regex = regex;
        if (!regex && val->type == PT_YNODE_SCALAR && val->plain &&
            pt_config__scalar_bool(val, &presence)) {
            if (!presence)
                pt_config__err(c, name, "%s: expected a string, or true for presence", p);
            mk->value = NULL;
        } else if (pt_ynode_is_null(val)) {
            pt_config__err(c, name, "%s: expected a string%s", p, regex ? "" : " or true");
        } else {
            mk->value = pt_config__string(c, name, val, p);
        }
    }
    *arr = out;
    *n = k;
}

/* headers, regex_headers, query_parameters, regex_query_parameters: f->arg bit 0 = regex,
 * bit 1 = query parameters. */
static void read_matches(struct pt_config__obj *c, const struct pt_config__field *f,
                         const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                         const char *path)
{
    struct pt_mapping_res *m = base;
    if (val->type != PT_YNODE_MAP) {
        pt_config__err(c, key, "%s: expected a mapping of name to value", path);
        return;
    }
    if (val->dup_key != NULL)
        pt_config__err(c, val->dup_key, "%s: duplicate key \"%.64s\"", path, val->dup_key->str);
    if (f->arg & 2)
        append_matches(c, &m->query_parameters, &m->nquery_parameters, val, f->arg & 1, path);
    else
        append_matches(c, &m->headers, &m->nheaders, val, f->arg & 1, path);
}

static const struct pt_config__field added_header_fields[] = {
    F_STR_REQ("value", struct pt_add_header, value),
    F_BOOL("append", struct pt_add_header, append),
    F_IGN("v2Representation"),
    F_END,
};

/* check_header_format: a header value with '%' is an Envoy format string (Envoy's header
 * formatter): an unknown operator or a stray '%' is an error, as Envoy rejects it. */
static void check_header_format(struct pt_config__obj *c, const struct pt_ynode *at, const char *path,
                                const char *value)
{
    char err[256];
    struct pt_logfmt *f;

    if (strchr(value, '%') == NULL)
        return;
    f = pt_logfmt_compile_value(value, PT_LOGFMT_LIVE | PT_LOGFMT_OMIT_EMPTY, err, sizeof(err));
    if (f == NULL)
        pt_config__err(c, at, "%s: %s", path, err);
    pt_logfmt_free(f);
}

size_t pt_config__added_headers(struct pt_config__obj *c, const struct pt_ynode *key, const struct pt_ynode *val,
                                const char *path, bool formats, struct pt_add_header **out)
{
    struct pt_add_header *h;
    char p[PT_PATH_MAX];

    *out = NULL;
    if (val->type != PT_YNODE_MAP) {
        pt_config__err(c, key, "%s: expected a mapping of header name to value", path);
        return 0;
    }
    if (val->dup_key != NULL)
        pt_config__err(c, val->dup_key, "%s: duplicate key \"%.64s\"", path, val->dup_key->str);
    h = pt_arena_alloc_array(c->arena, val->npairs, sizeof(*h));
    for (size_t i = 0; i < val->npairs; i++) {
        const struct pt_ynode *name = val->pairs[i].key, *v = val->pairs[i].value;
        h[i].name = pt_config__string(c, name, name, path);
        h[i].append = true;
        pt_config__path(p, sizeof(p), path, h[i].name ? h[i].name : "?");
        if (v->type == PT_YNODE_MAP)
            pt_config__read_fields(c, v, added_header_fields, &h[i], p);
        else
            h[i].value = pt_ynode_is_null(v) ? "" : pt_config__string(c, name, v, p);
        if (h[i].name != NULL && pt_config__wire_name(c, name, path, h[i].name, true) &&
            h[i].value != NULL && pt_config__wire_value(c, name, p, h[i].value) && formats)
            check_header_format(c, name, p, h[i].value);
    }
    *out = h;
    return val->npairs;
}

/* add_request_headers / add_response_headers: name -> "value" or {value, append}; f->arg 1 =
 * response. append defaults to true (Envoy's default). */
static void read_added_headers(struct pt_config__obj *c, const struct pt_config__field *f,
                               const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                               const char *path)
{
    struct pt_mapping_res *m = base;

    if (f->arg)
        m->nadd_response_headers = pt_config__added_headers(c, key, val, path, true, &m->add_response_headers);
    else
        m->nadd_request_headers = pt_config__added_headers(c, key, val, path, true, &m->add_request_headers);
}

static void read_bind_from(struct pt_config__obj *c, const struct pt_config__field *f,
                           const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                           const char *path)
{
    struct pt_listener_res *li = base;
    const char *s = pt_config__is_string(val) ? val->str : "";
    li->bind_ns_all = strcmp(s, "ALL") == 0;
    li->bind_ns_self = strcmp(s, "SELF") == 0;
    if (!li->bind_ns_all && !li->bind_ns_self && strcmp(s, "SELECTOR") != 0)
        pt_config__err(c, key, "%s: expected one of SELF, ALL, SELECTOR", path);
}

static void read_port_flag(struct pt_config__obj *c, const struct pt_config__field *f,
                           const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                           const char *path)
{
    struct pt_tls_settings *t = base;
    long v;
    if (!pt_config__scalar_long(val, &v) || v < 1 || v > 65535) {
        pt_config__err(c, key, "%s: expected an integer between 1 and 65535", path);
        return;
    }
    t->redirect_cleartext_from = (int)v;
    t->redirect_cleartext_from_set = true;
}

static const char *const tls_versions[] = { "v1.0", "v1.1", "v1.2", "v1.3", NULL };

/* TLSContext spec and Host.tls: snake_case, with the camelCase spellings Host.tls also takes. */
#define T struct pt_tls_settings
static const struct pt_config__field tls_fields[] = {
    F_STR("secret", T, secret),
    { .name = "secret_namespacing", .alias = "secretNamespacing", .type = PT_F_BOOL,
      .off = OFF(T, secret_namespacing) },
    { .name = "cert_chain_file", .alias = "certChainFile", .type = PT_F_STR,
      .off = OFF(T, cert_chain_file) },
    { .name = "private_key_file", .alias = "privateKeyFile", .type = PT_F_STR,
      .off = OFF(T, private_key_file) },
    { .name = "ca_secret", .alias = "caSecret", .type = PT_F_STR, .off = OFF(T, ca_secret) },
    { .name = "cacert_chain_file", .alias = "cacertChainFile", .type = PT_F_STR,
      .off = OFF(T, cacert_chain_file) },
    { .name = "crl_secret", .alias = "crlSecret", .type = PT_F_STR, .off = OFF(T, crl_secret) },
    { .name = "crl_file", .alias = "crlFile", .type = PT_F_STR, .off = OFF(T, crl_file) },
    { .name = "alpn_protocols", .alias = "alpnProtocols", .type = PT_F_STR,
      .off = OFF(T, alpn_protocols) },
    F_STR("sni", T, sni),
    { .name = "min_tls_version", .alias = "minTlsVersion", .type = PT_F_STRENUM,
      .off = OFF(T, min_tls_version), .names = tls_versions },
    { .name = "max_tls_version", .alias = "maxTlsVersion", .type = PT_F_STRENUM,
      .off = OFF(T, max_tls_version), .names = tls_versions },
    { .name = "cipher_suites", .alias = "cipherSuites", .type = PT_F_STRLIST,
      .off = OFF(T, cipher_suites), .off_n = OFF(T, ncipher_suites) },
    { .name = "ecdh_curves", .alias = "ecdhCurves", .type = PT_F_STRLIST,
      .off = OFF(T, ecdh_curves), .off_n = OFF(T, necdh_curves) },
    { .name = "cert_required", .alias = "certRequired", .type = PT_F_BOOL,
      .off = OFF(T, cert_required) },
    { .name = "redirect_cleartext_from", .alias = "redirectCleartextFrom", .type = PT_F_CUSTOM,
      .fn = read_port_flag },
    F_END,
};
#undef T

static void read_host_tls(struct pt_config__obj *c, const struct pt_config__field *f,
                          const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                          const char *path)
{
    struct pt_host_res *h = base;
    if (val->type != PT_YNODE_MAP) {
        pt_config__err(c, key, "%s: expected a mapping", path);
        return;
    }
    h->has_tls = true;
    pt_config__read_fields(c, val, tls_fields, &h->tls, path);
}

static void read_driver(struct pt_config__obj *c, const struct pt_config__field *f,
                        const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                        const char *path)
{
    static const char *const drivers[] = { "zipkin", "datadog", "opentelemetry", NULL };
    struct pt_tracing_res *t = base;
    if (pt_config__is_string(val))
        for (size_t i = 0; drivers[i]; i++)
            if (strcmp(val->str, drivers[i]) == 0) {
                t->driver = drivers[i];
                return;
            }
    pt_config__err(c, key, "%s: %.64s not supported; use zipkin, datadog or opentelemetry", path,
                   pt_config__is_string(val) ? val->str : "this value");
}

static void read_endpoint_version(struct pt_config__obj *c, const struct pt_config__field *f,
                                  const struct pt_ynode *key, const struct pt_ynode *val,
                                  void *base, const char *path)
{
    struct pt_tracing_res *t = base;
    if (pt_config__is_string(val) && strcmp(val->str, "HTTP_JSON") == 0)
        t->collector_endpoint_version = "HTTP_JSON";
    else
        pt_config__err(c, key, "collector_endpoint_version %.64s not supported; use HTTP_JSON",
                       pt_config__is_string(val) ? val->str : "(not a string)");
}

static void read_target_port(struct pt_config__obj *c, const struct pt_config__field *f,
                             const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                             const char *path)
{
    struct pt_service_port *sp = base;
    long v;
    if (pt_config__scalar_long(val, &v)) {
        if (v < 1 || v > 65535)
            pt_config__err(c, key, "%s: expected a port (1-65535) or a port name", path);
        else
            sp->target_port = (int)v;
    } else {
        sp->target_port_name = pt_config__string(c, key, val, path);
    }
}

static void read_ip(struct pt_config__obj *c, const struct pt_config__field *f,
                    const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                    const char *path)
{
    struct pt_endpoint_addr *a = base;
    unsigned char buf[16];
    const char *s = pt_config__string(c, key, val, path);
    if (s == NULL)
        return;
    if (inet_pton(AF_INET, s, buf) != 1 && inet_pton(AF_INET6, s, buf) != 1)
        pt_config__err(c, key, "%s: expected an IP address (got \"%.64s\")", path, s);
    else
        a->ip = s;
}

static void read_log_format(struct pt_config__obj *c, const struct pt_config__field *f,
                            const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                            const char *path)
{
    struct pt_module_res *m = base;
    if (val->type == PT_YNODE_MAP)
        pt_config__kvmap(c, key, val, &m->envoy_log_json_format, &m->nenvoy_log_json_format,
                         path);
    else
        m->envoy_log_format = pt_config__string(c, key, val, path);
}

/* ---- Mapping -------------------------------------------------------------------------------- */

/* redirect_response_code: what Envoy's RedirectAction can send. Emissary logs an error and
 * sends 301 for anything else; a redirect with another status than asked is rejected here. */
static void read_redirect_code(struct pt_config__obj *c, const struct pt_config__field *f,
                               const struct pt_ynode *key, const struct pt_ynode *val,
                               void *base, const char *path)
{
    struct pt_mapping_res *m = base;
    long v;

    if (pt_config__scalar_long(val, &v) && (v == 301 || v == 302 || v == 303 || v == 307 || v == 308))
        m->redirect_response_code = (int)v;
    else if (pt_config__is_string(val))
        pt_config__err(c, key, "%s: expected one of 301, 302, 303, 307, 308 (got \"%.64s\")", path,
                       val->str);
    else
        pt_config__err(c, key, "%s: expected one of 301, 302, 303, 307, 308", path);
}

#define T struct pt_mapping_res
static const struct pt_config__field regex_rewrite_fields[] = {
    F_STR_REQ("pattern", T, regex_rewrite_pattern),
    F_STR("substitution", T, regex_rewrite_substitution),
    F_END,
};

static const struct pt_config__field regex_redirect_fields[] = {
    F_STR_REQ("pattern", T, regex_redirect_pattern),
    F_STR("substitution", T, regex_redirect_substitution),
    F_END,
};

static const struct pt_config__field mapping_fields[] = {
    F_STR_REQ("prefix", T, prefix),
    F_STR_REQ("service", T, service),
    F_IGN("ambassador_id"),
    F_BOOL("prefix_regex", T, prefix_regex),
    F_BOOL("prefix_exact", T, prefix_exact),
    F_BOOL("case_sensitive", T, case_sensitive),
    F_FN("rewrite", read_rewrite, 0),
    F_OBJ("regex_rewrite", regex_rewrite_fields),
    F_STR("hostname", T, hostname),
    F_STR("host", T, host),
    F_BOOL("host_regex", T, host_regex),
    F_STR("method", T, method),
    F_BOOL("method_regex", T, method_regex),
    F_FN("headers", read_matches, 0),
    F_FN("regex_headers", read_matches, 1),
    F_FN("query_parameters", read_matches, 2),
    F_FN("regex_query_parameters", read_matches, 3),
    F_INT("timeout_ms", T, timeout_ms, 0, INT_MAX),
    F_INT("connect_timeout_ms", T, connect_timeout_ms, 0, INT_MAX),
    F_INT("idle_timeout_ms", T, idle_timeout_ms, 0, INT_MAX),
    F_INT("precedence", T, precedence, INT_MIN, INT_MAX),
    F_INT("weight", T, weight, 0, 100),
    F_FN("add_request_headers", read_added_headers, 0),
    F_FN("add_response_headers", read_added_headers, 1),
    F_LIST("remove_request_headers", T, remove_request_headers, nremove_request_headers),
    F_LIST("remove_response_headers", T, remove_response_headers, nremove_response_headers),
    F_STR("host_rewrite", T, host_rewrite),
    F_BOOL("auto_host_rewrite", T, auto_host_rewrite),
    F_FN("tls", read_mapping_tls, 0),
    F_STR("stats_name", T, stats_name),
    F_LIST("allow_upgrade", T, allow_upgrade, nallow_upgrade),
    F_BOOL("use_websocket", T, use_websocket),
    F_BOOL("bypass_auth", T, bypass_auth),
    F_KV("auth_context_extensions", T, auth_context_extensions, nauth_context_extensions),
    F_FN("labels", pt_config__read_labels, 0),
    F_BOOL("grpc", T, grpc),
    F_BOOL("shadow", T, shadow),
    F_BOOL("host_redirect", T, host_redirect),
    F_STR("path_redirect", T, path_redirect),
    F_STR("prefix_redirect", T, prefix_redirect),
    F_OBJ("regex_redirect", regex_redirect_fields),
    F_FN("redirect_response_code", read_redirect_code, 0),
    F_FN("cors", pt_config__read_cors, 0),
    F_OBJLIST("error_response_overrides", T, error_response_overrides, nerror_response_overrides,
              struct pt_error_override_res, pt_config__error_override_fields),
    F_BOOL("bypass_error_response_overrides", T, bypass_error_response_overrides),
    F_OBJLIST("health_checks", T, health_checks, nhealth_checks, struct pt_health_check_res,
              pt_config__health_check_fields),
    F_FN("load_balancer", pt_config__read_load_balancer, 0),
    F_IGN("docs"), /* Dev Portal only; in the quickstart's quote Mapping */
    F_FN("retry_policy", pt_config__read_retry_policy, 0),
    F_FN("circuit_breakers", pt_config__read_breakers, 0),
    F_FN("keepalive", pt_config__read_keepalive, 0),
    F_INT("cluster_idle_timeout_ms", T, cluster_idle_timeout_ms, 0, INT_MAX),
    F_INT("cluster_max_connection_lifetime_ms", T, cluster_max_connection_lifetime_ms, 0, INT_MAX),
    F_FN("dns_type", pt_config__read_dns_type, 0),
    F_BOOL("respect_dns_ttl", T, respect_dns_ttl),
    F_END,
};
#undef T

static void mapping_init(void *obj)
{
    struct pt_mapping_res *m = obj;
    m->case_sensitive = true;
    m->rewrite = "/";
    m->timeout_ms = -1; /* unset: the Module's cluster_request_timeout_ms, else 3000 */
    m->connect_timeout_ms = 3000;
    m->idle_timeout_ms = -1;
    m->weight = -1;
    m->redirect_response_code = 301;
}

static bool has_authority_match(const struct pt_mapping_res *m)
{
    for (size_t i = 0; i < m->nheaders; i++)
        if (m->headers[i].name && strcasecmp(m->headers[i].name, ":authority") == 0)
            return true;
    return false;
}

/* mapping_hosts: hostname wins over host (Emissary ignores host then); `*` is only for globs;
 * a v3alpha1 Mapping that can select no Host is legal but routes nothing (emissary.md §3). */
static void mapping_hosts(struct pt_config__obj *c, struct pt_mapping_res *m,
                          const struct pt_ynode *body)
{
    if (m->hostname != NULL && m->host != NULL) {
        pt_config__notice(c, pt_ynode_get(body, "host"),
                          "both hostname and host are set; host is ignored");
        m->host = NULL;
        m->host_regex = false;
    }
    if (m->host != NULL && !m->host_regex && strchr(m->host, '*') != NULL)
        pt_config__err(c, pt_ynode_get(body, "host"),
                       "host: \"*\" is not allowed in an exact host; use hostname for a glob");
    if (m->hostname != NULL || m->host != NULL || has_authority_match(m))
        return;
    if (c->v2) {
        m->hostname = "*"; /* what Emissary's v2 -> v3alpha1 conversion does */
    } else if (m->meta.nlabels == 0) {
        pt_config__notice(c, NULL,
                          "Mapping has no hostname; it matches no Host (set hostname: \"*\")");
    }
}

/* list_item: the node of item <i> of the string list at body[<key>] (a single string is a list
 * of one), for its line. */
static const struct pt_ynode *list_item(const struct pt_ynode *body, const char *key, size_t i)
{
    const struct pt_ynode *l = pt_ynode_get(body, key);
    if (l != NULL && l->type == PT_YNODE_SEQ && i < l->nitems)
        return l->items[i];
    return l;
}

static void check_removed(struct pt_config__obj *c, const struct pt_ynode *body, const char *key,
                          const char **names, size_t n)
{
    char p[PT_PATH_MAX];
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(p, sizeof(p), "%s[%zu]", key, i);
        if (names[i] != NULL && len > 0 && (size_t)len < sizeof(p)) /* NULL: reported */
            pt_config__wire_name(c, list_item(body, key, i), p, names[i], false);
    }
}

/* mapping_wire: every value that reaches an upstream request or a response head may be written
 * there as is (config/wire.c): a Mapping must not be able to add a line to a head, or change
 * the framing of a connection that other namespaces' requests share. */
static void mapping_wire(struct pt_config__obj *c, struct pt_mapping_res *m,
                         const struct pt_ynode *body)
{
    const struct pt_ynode *rr = pt_ynode_get(body, "regex_rewrite");

    check_removed(c, body, "remove_request_headers", m->remove_request_headers,
                  m->nremove_request_headers);
    check_removed(c, body, "remove_response_headers", m->remove_response_headers,
                  m->nremove_response_headers);
    if (m->host_rewrite != NULL)
        pt_config__wire_host(c, pt_ynode_get(body, "host_rewrite"), "host_rewrite",
                             m->host_rewrite);
    if (m->service != NULL)
        pt_config__wire_service(c, pt_ynode_get(body, "service"), "service", m->service);
    if (m->rewrite != NULL)
        pt_config__wire_target(c, pt_ynode_get(body, "rewrite"), "rewrite", m->rewrite);
    if (m->prefix != NULL)
        pt_config__wire_no_ctl(c, pt_ynode_get(body, "prefix"), "prefix", m->prefix);
    if (m->regex_rewrite_pattern != NULL)
        pt_config__wire_no_ctl(c, pt_ynode_get(rr, "pattern"), "regex_rewrite.pattern",
                               m->regex_rewrite_pattern);
    if (m->regex_rewrite_substitution != NULL)
        pt_config__wire_target(c, pt_ynode_get(rr, "substitution"),
                               "regex_rewrite.substitution", m->regex_rewrite_substitution);
}

/* exclusive: Emissary's rule for two redirect paths set at once: the first named wins, and the
 * other is dropped with a message (an error in Emissary, which still serves the Mapping). */
static void exclusive(struct pt_config__obj *c, const struct pt_ynode *body, const char *keep,
                      const char *kept, const char *drop, const char **dropped)
{
    if (kept == NULL || *dropped == NULL)
        return;
    pt_config__notice(c, pt_ynode_get(body, drop),
                      "Cannot specify both %s and %s. Using %s and ignoring %s.", keep, drop, keep,
                      drop);
    *dropped = NULL;
}

/* mapping_redirect: host_redirect's fields. Without host_redirect Emissary writes no redirect,
 * so they mean nothing; with it, at most one of path_redirect, prefix_redirect and
 * regex_redirect applies, and every value that goes into the Location header must be safe
 * there. */
static void mapping_redirect(struct pt_config__obj *c, struct pt_mapping_res *m,
                             const struct pt_ynode *body)
{
    static const char *const fields[] = { "path_redirect", "prefix_redirect", "regex_redirect",
                                           "redirect_response_code" };
    const struct pt_ynode *rr = pt_ynode_get(body, "regex_redirect");

    if (!m->host_redirect) {
        for (size_t i = 0; i < PT_ARRAY_SIZE(fields); i++)
            if (pt_ynode_get(body, fields[i]) != NULL && !pt_ynode_is_null(pt_ynode_get(body, fields[i])))
                pt_config__notice(c, pt_ynode_get(body, fields[i]),
                                  "%s is ignored without host_redirect: true", fields[i]);
        m->path_redirect = m->prefix_redirect = NULL;
        m->regex_redirect_pattern = m->regex_redirect_substitution = NULL;
        return;
    }
    exclusive(c, body, "path_redirect", m->path_redirect, "prefix_redirect", &m->prefix_redirect);
    exclusive(c, body, "path_redirect", m->path_redirect, "regex_redirect",
              &m->regex_redirect_pattern);
    exclusive(c, body, "prefix_redirect", m->prefix_redirect, "regex_redirect",
              &m->regex_redirect_pattern);
    if (m->path_redirect != NULL)
        pt_config__wire_target(c, pt_ynode_get(body, "path_redirect"), "path_redirect",
                               m->path_redirect);
    if (m->prefix_redirect != NULL)
        pt_config__wire_target(c, pt_ynode_get(body, "prefix_redirect"), "prefix_redirect",
                               m->prefix_redirect);
    if (m->regex_redirect_pattern != NULL) {
        pt_config__wire_no_ctl(c, pt_ynode_get(rr, "pattern"), "regex_redirect.pattern",
                               m->regex_redirect_pattern);
        if (m->regex_redirect_substitution == NULL)
            m->regex_redirect_substitution = "";
        else
            pt_config__wire_target(c, pt_ynode_get(rr, "substitution"),
                                   "regex_redirect.substitution", m->regex_redirect_substitution);
    }
    if (m->cors != NULL)
        pt_config__notice(c, pt_ynode_get(body, "cors"),
                          "cors is ignored with host_redirect: the redirect is the answer");
}

/* mapping_shadow: Emissary's rule when a Mapping sets both: shadow wins, host_redirect and
 * its fields are dropped (with Emissary's message). */
static void mapping_shadow(struct pt_config__obj *c, struct pt_mapping_res *m, const struct pt_ynode *body)
{
    if (!m->shadow || !m->host_redirect)
        return;
    pt_config__notice(c, pt_ynode_get(body, "host_redirect"),
                      "At most one of host_redirect and shadow may be set; ignoring host_redirect");
    m->host_redirect = false;
}

static void mapping_check(struct pt_config__obj *c, void *obj, const struct pt_ynode *body)
{
    struct pt_mapping_res *m = obj;
    mapping_shadow(c, m, body);
    mapping_hosts(c, m, body);
    mapping_wire(c, m, body);
    mapping_redirect(c, m, body);
    if (m->regex_rewrite_pattern != NULL) {
        if (m->regex_rewrite_substitution == NULL)
            m->regex_rewrite_substitution = "";
        if (m->rewrite != NULL && !pt_ynode_is_null(pt_ynode_get(body, "rewrite")))
            pt_config__notice(c, pt_ynode_get(body, "regex_rewrite"),
                              "regex_rewrite overrides rewrite");
    }
    if (m->prefix_regex && m->prefix_exact)
        pt_config__notice(c, pt_ynode_get(body, "prefix_exact"),
                          "prefix_exact is ignored with prefix_regex");
    if (m->use_websocket)
        pt_config__notice(c, pt_ynode_get(body, "use_websocket"),
                          "use_websocket is deprecated; it means allow_upgrade: [websocket]");
    pt_config__check_error_overrides(c, m->error_response_overrides, m->nerror_response_overrides,
                          pt_ynode_get(body, "error_response_overrides"));
    pt_config__check_health_checks(c, m, body);
}

/* ---- Host ----------------------------------------------------------------------------------- */

static const char *const insecure_actions[] = { "Redirect", "Route", "Reject", NULL };

#define T struct pt_host_res
static const struct pt_config__field host_tls_secret_fields[] = {
    F_STR_REQ("name", T, tls_secret_name),
    F_STR("namespace", T, tls_secret_namespace),
    F_END,
};

static const struct pt_config__field host_tls_context_fields[] = {
    F_STR_REQ("name", T, tls_context),
    F_END,
};

static const struct pt_config__field host_insecure_fields[] = {
    { .name = "action", .type = PT_F_ENUM, .off = OFF(T, insecure_action),
      .names = insecure_actions },
    F_INT("additionalPort", T, insecure_additional_port, -1, 65535),
    F_END,
};

static const struct pt_config__field host_policy_fields[] = {
    F_OBJ("insecure", host_insecure_fields),
    F_END,
};

static const struct pt_config__field host_selector_fields[] = {
    F_KV("matchLabels", T, selector, nselector),
    F_END,
};

static const struct pt_config__field host_fields[] = {
    F_IGN("ambassador_id"),
    F_STR("hostname", T, hostname),
    F_OBJ("tlsSecret", host_tls_secret_fields),
    F_OBJ("tlsContext", host_tls_context_fields),
    F_FN("tls", read_host_tls, 0),
    F_OBJ("requestPolicy", host_policy_fields),
    { .name = "mappingSelector", .alias = "selector", .flags = PT_F_DEPRECATED,
      .type = PT_F_OBJECT, .sub = host_selector_fields },
    F_IGN("acmeProvider"), /* Emissary does no ACME itself either */
    F_END,
};
#undef T

static void host_init(void *obj)
{
    struct pt_host_res *h = obj;
    h->hostname = "*";
    h->insecure_action = PT_INSECURE_REDIRECT;
    h->insecure_additional_port = -1;
    h->tls.secret_namespacing = true;
}

static void tls_check(struct pt_config__obj *c, const struct pt_tls_settings *t,
                      const struct pt_ynode *at, const char *prefix)
{
    if (t->secret != NULL && t->cert_chain_file != NULL)
        pt_config__err(c, at, "%sexactly one of secret and cert_chain_file", prefix);
    if (t->min_tls_version && t->max_tls_version &&
        strcmp(t->min_tls_version, t->max_tls_version) > 0)
        pt_config__err(c, at, "%smin_tls_version %s is above max_tls_version %s", prefix,
                       t->min_tls_version, t->max_tls_version);
}

static void host_check(struct pt_config__obj *c, void *obj, const struct pt_ynode *body)
{
    struct pt_host_res *h = obj;
    if (h->has_tls)
        tls_check(c, &h->tls, pt_ynode_get(body, "tls"), "tls: ");
}

/* ---- Listener ------------------------------------------------------------------------------- */

static const char *const protocols[] = { "HTTP", "HTTPS", "HTTPPROXY", "HTTPSPROXY", "TCP", "TLS",
                                         NULL };
static const char *const security_models[] = { "XFP", "SECURE", "INSECURE", NULL };

#define T struct pt_listener_res
static const struct pt_config__field bind_ns_fields[] = {
    F_FN("from", read_bind_from, 0),
    F_END,
};

static const struct pt_config__field bind_selector_fields[] = {
    F_KV("matchLabels", T, bind_selector, nbind_selector),
    F_END,
};

static const struct pt_config__field host_binding_fields[] = {
    F_OBJ("namespace", bind_ns_fields),
    F_OBJ("selector", bind_selector_fields),
    F_END,
};

static const struct pt_config__field listener_fields[] = {
    { .name = "port", .type = PT_F_INT, .flags = PT_F_REQUIRED, .off = OFF(T, port), .min = 1,
      .max = 65535 },
    { .name = "protocol", .type = PT_F_ENUM, .flags = PT_F_REQUIRED, .off = OFF(T, protocol),
      .names = protocols },
    { .name = "securityModel", .type = PT_F_ENUM, .flags = PT_F_REQUIRED,
      .off = OFF(T, security_model), .names = security_models },
    F_IGN("ambassador_id"),
    F_STR("statsPrefix", T, stats_prefix),
    F_INT("l7Depth", T, l7_depth, 0, INT_MAX),
    F_INT("http2MaxConcurrentStreams", T, h2_max_streams, 1, INT_MAX),
    F_OBJ("hostBinding", host_binding_fields),
    F_END,
};
#undef T

static void listener_check(struct pt_config__obj *c, void *obj, const struct pt_ynode *body)
{
    struct pt_listener_res *li = obj;
    const struct pt_ynode *hb = pt_ynode_get(body, "hostBinding");
    if (pt_ynode_is_null(hb)) {
        li->bind_ns_all = true;
        pt_config__notice(c, NULL, "no hostBinding; binding Hosts from ALL namespaces");
    } else if (hb->type == PT_YNODE_MAP &&
               pt_ynode_is_null(pt_ynode_get(pt_ynode_get(hb, "namespace"), "from")) &&
               pt_ynode_is_null(pt_ynode_get(hb, "selector"))) {
        pt_config__err(c, hb, "hostBinding: needs namespace.from or selector");
    }
}

/* ---- TLSContext ----------------------------------------------------------------------------- */

#define T struct pt_tlscontext_res
static const struct pt_config__field tlscontext_fields[] = {
    F_IGN("ambassador_id"),
    F_LIST("hosts", T, hosts, nhosts),
    { .type = PT_F_INLINE, .off = OFF(T, tls), .sub = tls_fields },
    F_END,
};
#undef T

static void tlscontext_init(void *obj)
{
    struct pt_tlscontext_res *t = obj;
    t->tls.secret_namespacing = true;
}

static void tlscontext_check(struct pt_config__obj *c, void *obj, const struct pt_ynode *body)
{
    struct pt_tlscontext_res *t = obj;
    tls_check(c, &t->tls, NULL, "");
}

/* ---- TracingService ------------------------------------------------------------------------- */

#define T struct pt_tracing_res
static const struct pt_config__field trace_config_fields[] = {
    F_STR("collector_endpoint", T, collector_endpoint),
    F_FN("collector_endpoint_version", read_endpoint_version, 0),
    F_STR("collector_hostname", T, collector_hostname),
    F_BOOL("trace_id_128bit", T, trace_id_128bit),
    F_BOOL("shared_span_context", T, shared_span_context),
    F_END,
};

static const struct pt_config__field sampling_fields[] = {
    { .name = "overall", .type = PT_F_DOUBLE, .off = OFF(T, sampling_overall), .max = 100 },
    { .name = "random", .type = PT_F_DOUBLE, .off = OFF(T, sampling_random), .max = 100 },
    { .name = "client", .type = PT_F_DOUBLE, .off = OFF(T, sampling_client), .max = 100 },
    F_END,
};
#undef T

#define T struct pt_custom_tag
static const struct pt_config__field tag_literal_fields[] = {
    F_STR_REQ("value", T, literal),
    F_END,
};

static const struct pt_config__field tag_env_fields[] = {
    F_STR_REQ("name", T, env_name),
    F_STR("default_value", T, env_default),
    F_END,
};

static const struct pt_config__field tag_header_fields[] = {
    F_STR_REQ("name", T, header_name),
    F_STR("default_value", T, header_default),
    F_END,
};

static const struct pt_config__field custom_tag_fields[] = {
    F_STR_REQ("tag", T, tag),
    F_OBJ("literal", tag_literal_fields),
    F_OBJ("environment", tag_env_fields),
    F_OBJ("request_header", tag_header_fields),
    F_END,
};
#undef T

#define T struct pt_tracing_res
static const struct pt_config__field tracing_fields[] = {
    F_STR_REQ("service", T, service),
    { .name = "driver", .type = PT_F_CUSTOM, .flags = PT_F_REQUIRED, .fn = read_driver },
    F_IGN("ambassador_id"),
    F_OBJ("config", trace_config_fields),
    F_OBJ("sampling", sampling_fields),
    F_OBJLIST("custom_tags", T, custom_tags, ncustom_tags, struct pt_custom_tag,
              custom_tag_fields),
    F_LIST("tag_headers", T, tag_headers, ntag_headers),
    F_END,
};
#undef T

static void tracing_init(void *obj)
{
    struct pt_tracing_res *t = obj;
    t->collector_endpoint = "/api/v2/spans";
    t->collector_endpoint_version = "HTTP_JSON";
    t->trace_id_128bit = true;
    t->shared_span_context = true;
    t->sampling_overall = t->sampling_random = t->sampling_client = 100;
}

static void tracing_check(struct pt_config__obj *c, void *obj, const struct pt_ynode *body)
{
    struct pt_tracing_res *t = obj;
    const struct pt_ynode *list = pt_ynode_get(body, "custom_tags");
    const struct pt_ynode *cfg = pt_ynode_get(body, "config");

    /* the collector's request head (observe/zipkin.c) is built from these */
    if (t->collector_hostname != NULL && t->collector_hostname[0] != '\0')
        pt_config__wire_host(c, pt_ynode_get(cfg, "collector_hostname"),
                             "config.collector_hostname", t->collector_hostname);
    pt_config__wire_target(c, pt_ynode_get(cfg, "collector_endpoint"),
                           "config.collector_endpoint", t->collector_endpoint);
    for (size_t i = 0; i < t->ncustom_tags; i++) {
        const struct pt_custom_tag *ct = &t->custom_tags[i];
        int sources = (ct->literal != NULL) + (ct->env_name != NULL) + (ct->header_name != NULL);
        if (sources != 1 && ct->tag != NULL)
            pt_config__err(c, list && list->type == PT_YNODE_SEQ && i < list->nitems ? list->items[i] : NULL,
                           "custom_tags[%zu]: exactly one of literal, environment and "
                           "request_header", i);
    }
}

/* ---- AuthService, RateLimitService ---------------------------------------------------------- */

/* read_service_tls: `tls` of an AuthService or RateLimitService (at f->off): a TLSContext name,
 * or `true` for TLS without a context. */
static void read_service_tls(struct pt_config__obj *c, const struct pt_config__field *f,
                             const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                             const char *path)
{
    const char **dst = (const char **)((char *)base + f->off);
    bool b;
    if (val->plain && pt_config__scalar_bool(val, &b))
        *dst = b ? "true" : NULL;
    else
        *dst = pt_config__string(c, key, val, path);
}

static const char *const auth_protos[] = { "http", "grpc", NULL };
static const char *const protocol_versions[] = { "v2", "v3", NULL };

#define T struct pt_authservice_res
static const struct pt_config__field include_body_fields[] = {
    { .name = "max_bytes", .type = PT_F_INT, .flags = PT_F_REQUIRED, .off = OFF(T, include_body_max_bytes),
      .min = 0, .max = PT_AUTH_MAX_BODY },
    F_BOOL("allow_partial", T, include_body_allow_partial),
    F_END,
};

static const struct pt_config__field status_on_error_fields[] = {
    F_INT("code", T, status_on_error, 200, 599),
    F_END,
};

static const struct pt_config__field authservice_fields[] = {
    F_STR_REQ("auth_service", T, auth_service),
    F_IGN("ambassador_id"),
    F_STR("path_prefix", T, path_prefix),
    { .name = "tls", .type = PT_F_CUSTOM, .fn = read_service_tls, .off = OFF(T, tls) },
    { .name = "proto", .type = PT_F_STRENUM, .off = OFF(T, proto), .names = auth_protos },
    { .name = "protocol_version", .type = PT_F_STRENUM, .off = OFF(T, protocol_version),
      .names = protocol_versions },
    F_INT("timeout_ms", T, timeout_ms, 0, INT_MAX),
    F_LIST("allowed_request_headers", T, allowed_request_headers, nallowed_request_headers),
    F_LIST("allowed_authorization_headers", T, allowed_authorization_headers,
           nallowed_authorization_headers),
    F_KV("add_auth_headers", T, add_auth_headers, nadd_auth_headers),
    F_BOOL("allow_request_body", T, allow_request_body),
    F_OBJ("include_body", include_body_fields),
    F_BOOL("failure_mode_allow", T, failure_mode_allow),
    F_OBJ("status_on_error", status_on_error_fields),
    F_STR("stats_name", T, stats_name),
    F_BOOL("add_linkerd_headers", T, add_linkerd_headers),
    F_END,
};
#undef T

static void authservice_init(void *obj)
{
    struct pt_authservice_res *a = obj;
    a->proto = "http";
    a->protocol_version = "v2";
    a->timeout_ms = 5000;
    a->include_body_max_bytes = -1;
    a->status_on_error = 403;
}

/* authservice_check: Emissary's rules (a gRPC AuthService speaks protocol_version v3 only),
 * and every value Portico writes into the check request's head may be written there. */
static void authservice_check(struct pt_config__obj *c, void *obj, const struct pt_ynode *body)
{
    struct pt_authservice_res *a = obj;
    const struct pt_ynode *add = pt_ynode_get(body, "add_auth_headers");
    char p[PT_PATH_MAX];

    if (strcmp(a->proto, "grpc") == 0 && strcmp(a->protocol_version, "v3") != 0)
        pt_config__err(c, pt_ynode_get(body, "protocol_version"),
                       "protocol_version %s is unsupported, protocol_version must be \"v3\"", a->protocol_version);
    if (a->auth_service != NULL)
        pt_config__wire_service(c, pt_ynode_get(body, "auth_service"), "auth_service", a->auth_service);
    if (a->path_prefix != NULL && a->path_prefix[0] != '\0' &&
        pt_config__wire_target(c, pt_ynode_get(body, "path_prefix"), "path_prefix", a->path_prefix) &&
        a->path_prefix[0] != '/')
        pt_config__err(c, pt_ynode_get(body, "path_prefix"), "path_prefix: must start with \"/\"");
    for (size_t i = 0; i < a->nadd_auth_headers; i++) {
        pt_config__path(p, sizeof(p), "add_auth_headers", a->add_auth_headers[i].key);
        if (pt_config__wire_name(c, add, "add_auth_headers", a->add_auth_headers[i].key, true))
            pt_config__wire_value(c, add, p, a->add_auth_headers[i].value);
    }
    if (a->allow_request_body && a->include_body_max_bytes >= 0)
        pt_config__notice(c, pt_ynode_get(body, "allow_request_body"),
                          "allow_request_body is ignored since include_body is present");
    else if (a->allow_request_body) { /* Emissary's meaning of the old flag */
        a->include_body_max_bytes = 4096;
        a->include_body_allow_partial = true;
    }
}

#define T struct pt_ratelimitservice_res
static const struct pt_config__field rls_grpc_fields[] = {
    F_BOOL("use_resource_exhausted_code", T, use_resource_exhausted_code),
    F_END,
};

static const struct pt_config__field ratelimitservice_fields[] = {
    F_STR_REQ("service", T, service),
    F_IGN("ambassador_id"),
    F_STR("domain", T, domain),
    { .name = "tls", .type = PT_F_CUSTOM, .fn = read_service_tls, .off = OFF(T, tls) },
    { .name = "protocol_version", .type = PT_F_STRENUM, .off = OFF(T, protocol_version),
      .names = protocol_versions },
    F_INT("timeout_ms", T, timeout_ms, 0, INT_MAX),
    F_BOOL("failure_mode_deny", T, failure_mode_deny),
    F_OBJ("grpc", rls_grpc_fields),
    F_STR("stats_name", T, stats_name),
    F_END,
};
#undef T

static void ratelimitservice_init(void *obj)
{
    struct pt_ratelimitservice_res *r = obj;
    r->protocol_version = "v2";
    r->timeout_ms = 20;
}

static void ratelimitservice_check(struct pt_config__obj *c, void *obj, const struct pt_ynode *body)
{
    struct pt_ratelimitservice_res *r = obj;

    if (strcmp(r->protocol_version, "v3") != 0)
        pt_config__err(c, pt_ynode_get(body, "protocol_version"),
                       "protocol_version %s is unsupported, protocol_version must be \"v3\"", r->protocol_version);
    if (r->service != NULL)
        pt_config__wire_service(c, pt_ynode_get(body, "service"), "service", r->service);
}

/* ---- Module --------------------------------------------------------------------------------- */

static const char *const log_types[] = { "text", "json", "typed_json", NULL };

#define T struct pt_grpc_stats_service
static const struct pt_config__field grpc_stats_service_fields[] = {
    F_STR_REQ("name", T, name),
    F_LIST("method_names", T, method_names, nmethod_names),
    F_END,
};
#undef T

#define T struct pt_module_res
static const struct pt_config__field grpc_stats_fields[] = {
    F_BOOL("all_methods", T, grpc_stats_all_methods),
    F_OBJLIST("services", T, grpc_stats_services, ngrpc_stats_services, struct pt_grpc_stats_service,
              grpc_stats_service_fields),
    F_BOOL("upstream_stats", T, grpc_stats_upstream),
    F_END,
};
#undef T

/* read_grpc_stats: the Module's grpc_stats mapping (Envoy's grpc_stats filter is on when it
 * is given, even empty). */
static void read_grpc_stats(struct pt_config__obj *c, const struct pt_config__field *f,
                            const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                            const char *path)
{
    struct pt_module_res *m = base;

    (void)f;
    if (val->type != PT_YNODE_MAP) {
        pt_config__err(c, key, "%s: expected a mapping", path);
        return;
    }
    m->grpc_stats = true;
    pt_config__read_fields(c, val, grpc_stats_fields, base, path);
}

/* grpc_name_ok: a gRPC service or method name that can be part of a :path: not empty, no '/',
 * printable ASCII. */
static bool grpc_name_ok(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s; s++)
        if (*s == '/' || *s <= ' ' || *s > '~')
            return false;
    return true;
}

/* module_check: grpc_stats' services must name methods that can be counted: at most
 * PT_GRPCSTATS_SLOTS of them, each "service/method" at most PT_GRPCSTATS_NAME_MAX bytes;
 * all_methods and services exclude each other (a oneof in Envoy's filter). */
static void module_check(struct pt_config__obj *c, void *obj, const struct pt_ynode *body)
{
    const struct pt_module_res *m = obj;
    const struct pt_ynode *gs = pt_ynode_get(pt_ynode_get(body, "config"), "grpc_stats");
    const struct pt_ynode *list = pt_ynode_get(gs, "services");
    size_t total = 0;

    pt_config__check_error_overrides(c, m->error_response_overrides, m->nerror_response_overrides,
                          pt_ynode_get(pt_ynode_get(body, "config"), "error_response_overrides"));
    if (!m->grpc_stats)
        return;
    if (m->grpc_stats_all_methods && m->ngrpc_stats_services > 0)
        pt_config__err(c, list, "grpc_stats: all_methods and services exclude each other");
    for (size_t i = 0; i < m->ngrpc_stats_services; i++) {
        const struct pt_grpc_stats_service *sv = &m->grpc_stats_services[i];
        const struct pt_ynode *at = list && list->type == PT_YNODE_SEQ ? list->items[i] : NULL;
        if (sv->name == NULL)
            continue; /* reported as a missing field */
        if (!grpc_name_ok(sv->name))
            pt_config__err(c, at, "grpc_stats.services[%zu].name: \"%s\" is not a gRPC service name "
                           "(not empty, no '/', no spaces)", i, sv->name);
        for (size_t k = 0; k < sv->nmethod_names; k++) {
            const char *mn = sv->method_names[k];
            if (!grpc_name_ok(mn))
                pt_config__err(c, at, "grpc_stats.services[%zu].method_names[%zu]: \"%s\" is not a "
                               "gRPC method name (not empty, no '/', no spaces)", i, k, mn ? mn : "");
            else if (strlen(sv->name) + 1 + strlen(mn) > PT_GRPCSTATS_NAME_MAX)
                pt_config__err(c, at, "grpc_stats.services[%zu].method_names[%zu]: \"%s/%s\" is longer "
                               "than %u bytes", i, k, sv->name, mn, PT_GRPCSTATS_NAME_MAX);
            total++;
        }
    }
    if (total > PT_GRPCSTATS_SLOTS)
        pt_config__err(c, list, "grpc_stats.services: %zu methods listed, at most %u can be counted",
                       total, PT_GRPCSTATS_SLOTS);
}

#define T struct pt_module_res
static const struct pt_config__field module_config_fields[] = {
    { .name = "envoy_log_type", .type = PT_F_STRENUM, .off = OFF(T, envoy_log_type),
      .names = log_types },
    F_FN("envoy_log_format", read_log_format, 0),
    F_STR("envoy_log_path", T, envoy_log_path),
    F_INT("cluster_request_timeout_ms", T, cluster_request_timeout_ms, 0, INT_MAX),
    F_INT("listener_idle_timeout_ms", T, listener_idle_timeout_ms, 0, INT_MAX),
    F_BOOL("enable_http10", T, enable_http10),
    F_BOOL("merge_slashes", T, merge_slashes),
    F_BOOL("reject_requests_with_escaped_slashes", T, reject_requests_with_escaped_slashes),
    F_BOOL("enable_grpc_web", T, enable_grpc_web),
    F_FN("grpc_stats", read_grpc_stats, 0),
    F_STR("default_label_domain", T, default_label_domain),
    F_FN("default_labels", pt_config__read_labels, 1),
    F_FN("cors", pt_config__read_cors, 1),
    F_FN("load_balancer", pt_config__read_load_balancer, 1),
    F_OBJLIST("error_response_overrides", T, error_response_overrides, nerror_response_overrides,
              struct pt_error_override_res, pt_config__error_override_fields),
    F_IGN("ip_allow"), /* read by resources.c (read_ip_policy), even when the Module is rejected */
    F_IGN("ip_deny"),
    F_FN("retry_policy", pt_config__read_retry_policy, 1),
    F_FN("circuit_breakers", pt_config__read_breakers, 1),
    F_FN("keepalive", pt_config__read_keepalive, 1),
    F_INT("cluster_idle_timeout_ms", T, cluster_idle_timeout_ms, 0, INT_MAX),
    F_INT("cluster_max_connection_lifetime_ms", T, cluster_max_connection_lifetime_ms, 0, INT_MAX),
    F_END,
};

static const struct pt_config__field module_fields[] = {
    F_IGN("ambassador_id"),
    F_OBJ("config", module_config_fields),
    F_END,
};
#undef T

static void module_init(void *obj)
{
    struct pt_module_res *m = obj;
    m->cluster_request_timeout_ms = -1;
    m->listener_idle_timeout_ms = -1;
}

/* ---- Service, Endpoints, Secret (core v1) --------------------------------------------------- */

#define T struct pt_service_port
static const struct pt_config__field service_port_fields[] = {
    F_STR("name", T, name),
    { .name = "port", .type = PT_F_INT, .flags = PT_F_REQUIRED, .off = OFF(T, port), .min = 1,
      .max = 65535 },
    F_FN("targetPort", read_target_port, 0),
    F_STR("protocol", T, protocol),
    F_IGN("nodePort"),
    F_IGN("appProtocol"),
    F_END,
};
#undef T

#define T struct pt_service_res
static const struct pt_config__field service_fields[] = {
    F_OBJLIST("ports", T, ports, nports, struct pt_service_port, service_port_fields),
    F_STR("clusterIP", T, cluster_ip),
    /* the rest of a Service spec is for kube-proxy and cloud load balancers */
    F_IGN("selector"), F_IGN("type"), F_IGN("sessionAffinity"), F_IGN("sessionAffinityConfig"),
    F_IGN("clusterIPs"), F_IGN("ipFamilies"), F_IGN("ipFamilyPolicy"),
    F_IGN("externalTrafficPolicy"), F_IGN("internalTrafficPolicy"), F_IGN("loadBalancerIP"),
    F_IGN("loadBalancerClass"), F_IGN("loadBalancerSourceRanges"), F_IGN("externalName"),
    F_IGN("externalIPs"), F_IGN("publishNotReadyAddresses"), F_IGN("healthCheckNodePort"),
    F_IGN("allocateLoadBalancerNodePorts"), F_IGN("trafficDistribution"),
    F_END,
};
#undef T

static void service_check(struct pt_config__obj *c, void *obj, const struct pt_ynode *body)
{
    struct pt_service_res *s = obj;
    for (size_t i = 0; i < s->nports; i++) {
        struct pt_service_port *p = &s->ports[i];
        if (p->target_port == 0 && p->target_port_name == NULL)
            p->target_port = p->port; /* Kubernetes' default */
        if (p->protocol == NULL)
            p->protocol = "TCP";
    }
}

static const struct pt_config__field endpoint_addr_fields[] = {
    { .name = "ip", .type = PT_F_CUSTOM, .flags = PT_F_REQUIRED, .fn = read_ip },
    F_IGN("hostname"), F_IGN("nodeName"), F_IGN("targetRef"),
    F_END,
};

#define T struct pt_endpoint_port
static const struct pt_config__field endpoint_port_fields[] = {
    F_STR("name", T, name),
    { .name = "port", .type = PT_F_INT, .flags = PT_F_REQUIRED, .off = OFF(T, port), .min = 1,
      .max = 65535 },
    F_IGN("protocol"), F_IGN("appProtocol"),
    F_END,
};
#undef T

#define T struct pt_endpoint_subset
static const struct pt_config__field endpoint_subset_fields[] = {
    F_OBJLIST("addresses", T, addresses, naddresses, struct pt_endpoint_addr,
              endpoint_addr_fields),
    F_OBJLIST("ports", T, ports, nports, struct pt_endpoint_port, endpoint_port_fields),
    F_IGN("notReadyAddresses"),
    F_END,
};
#undef T

static const struct pt_config__field endpoints_fields[] = {
    F_IGN("apiVersion"), F_IGN("kind"), F_IGN("metadata"),
    F_OBJLIST("subsets", struct pt_endpoints_res, subsets, nsubsets, struct pt_endpoint_subset,
              endpoint_subset_fields),
    F_END,
};

/* conditions.ready: absent or null means ready (the EndpointSlice API's rule). */
static void read_conditions(struct pt_config__obj *c, const struct pt_config__field *f,
                            const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                            const char *path)
{
    struct pt_slice_endpoint *e = base;
    const struct pt_ynode *ready = pt_ynode_get(val, "ready");
    bool b;

    (void)f;
    if (ready == NULL || pt_ynode_is_null(ready))
        return;
    if (pt_config__scalar_bool(ready, &b))
        e->not_ready = !b;
    else
        pt_config__err(c, key, "%s.ready: expected true or false", path);
}

#define T struct pt_slice_endpoint
static const struct pt_config__field slice_endpoint_fields[] = {
    F_LIST("addresses", T, addresses, naddresses),
    F_FN("conditions", read_conditions, 0),
    F_IGN("hostname"), F_IGN("nodeName"), F_IGN("targetRef"), F_IGN("zone"), F_IGN("hints"),
    F_IGN("deprecatedTopology"),
    F_END,
};
#undef T

#define T struct pt_endpoint_port
static const struct pt_config__field slice_port_fields[] = {
    F_STR("name", T, name),
    F_INT("port", T, port, 1, 65535), /* null: every port (then the slice is not used) */
    F_IGN("protocol"), F_IGN("appProtocol"),
    F_END,
};
#undef T

#define T struct pt_endpointslice_res
static const struct pt_config__field endpointslice_fields[] = {
    F_IGN("apiVersion"), F_IGN("kind"), F_IGN("metadata"),
    F_STR_REQ("addressType", T, address_type),
    F_OBJLIST("endpoints", T, endpoints, nendpoints, struct pt_slice_endpoint, slice_endpoint_fields),
    F_OBJLIST("ports", T, ports, nports, struct pt_endpoint_port, slice_port_fields),
    F_END,
};
#undef T

static void endpointslice_check(struct pt_config__obj *c, void *obj, const struct pt_ynode *body)
{
    struct pt_endpointslice_res *s = obj;

    (void)c, (void)body;
    for (size_t i = 0; i < s->meta.nlabels; i++)
        if (strcmp(s->meta.labels[i].key, "kubernetes.io/service-name") == 0)
            s->service = s->meta.labels[i].value;
}

static const struct pt_config__field secret_fields[] = {
    F_IGN("apiVersion"), F_IGN("kind"), F_IGN("metadata"),
    F_STR("type", struct pt_secret_res, type),
    F_IGN("data"),       /* read by secret_check: data first, then stringData over it */
    F_IGN("stringData"),
    F_IGN("immutable"),
    F_END,
};

/* secret_put: the slot for <key> in s->data, new or the existing one (<index> maps key to
 * slot + 1, so stringData replaces data in constant time). */
static size_t secret_put(struct pt_secret_res *s, struct pt_strmap *index, const char *key)
{
    uintptr_t at = (uintptr_t)pt_strmap_get(index, key, strlen(key));
    if (at != 0)
        return at - 1;
    pt_strmap_put(index, key, strlen(key), (void *)(uintptr_t)(s->ndata + 1));
    return s->ndata++;
}

/* secret_read_map: adds <map>'s entries to <s>; base64-decoded for data, as-is for stringData. */
static void secret_read_map(struct pt_config__obj *c, struct pt_secret_res *s,
                            struct pt_strmap *index, const struct pt_ynode *key,
                            const struct pt_ynode *map, bool decode)
{
    const char *what = decode ? "data" : "stringData";
    if (map->type != PT_YNODE_MAP) {
        pt_config__err(c, key, "%s: expected a mapping", what);
        return;
    }
    if (map->dup_key != NULL)
        pt_config__err(c, map->dup_key, "%s: duplicate key \"%.64s\"", what, map->dup_key->str);
    for (size_t i = 0; i < map->npairs; i++) {
        const struct pt_ynode *k = map->pairs[i].key, *v = map->pairs[i].value;
        const char *name = pt_config__string(c, k, k, what);
        char *val = (char *)"";
        size_t vlen = 0;
        if (name == NULL)
            continue;
        if (!pt_ynode_is_null(v) && v->type != PT_YNODE_SCALAR) {
            pt_config__err(c, k, "%s.%.64s: expected a string", what, name);
            continue;
        }
        if (!pt_ynode_is_null(v) && decode) {
            val = pt_arena_alloc(c->arena, PT_B64_DECODED_MAX(v->len));
            if (!pt_b64_decode(v->str, v->len, (unsigned char *)val, &vlen)) {
                pt_config__err(c, k, "%s.%.64s: invalid base64", what, name);
                continue;
            }
        }
        if (!pt_ynode_is_null(v) && !decode) {
            val = pt_arena_strndup(c->arena, v->str, v->len);
            vlen = v->len;
        }
        size_t at = secret_put(s, index, name);
        s->data[at] = (struct pt_kv){ name, val };
        s->data_len[at] = vlen;
    }
}

static void secret_check(struct pt_config__obj *c, void *obj, const struct pt_ynode *body)
{
    struct pt_secret_res *s = obj;
    const struct pt_ynode *data = pt_ynode_get(body, "data");
    const struct pt_ynode *sdata = pt_ynode_get(body, "stringData");
    size_t cap = (pt_ynode_is_null(data) || data->type != PT_YNODE_MAP ? 0 : data->npairs) +
                 (pt_ynode_is_null(sdata) || sdata->type != PT_YNODE_MAP ? 0 : sdata->npairs);
    s->data = pt_arena_alloc_array(c->arena, cap, sizeof(*s->data));
    s->data_len = pt_arena_alloc_array(c->arena, cap, sizeof(*s->data_len));
    struct pt_strmap index = { 0 };
    if (!pt_ynode_is_null(data))
        secret_read_map(c, s, &index, data, data, true);
    if (!pt_ynode_is_null(sdata))
        secret_read_map(c, s, &index, sdata, sdata, false);
    pt_strmap_free(&index);
    if (s->type == NULL)
        s->type = "Opaque";
}

/* ---- kinds ---------------------------------------------------------------------------------- */

#define RES(arr, n) .arr_off = offsetof(struct pt_resources, arr), \
                    .n_off = offsetof(struct pt_resources, n)

static const struct pt_config__kind kinds[] = {
    { .name = "Listener", .fields = listener_fields, .size = sizeof(struct pt_listener_res),
      RES(listeners, nlisteners), .check = listener_check },
    { .name = "Host", .fields = host_fields, .size = sizeof(struct pt_host_res),
      RES(hosts, nhosts), .init = host_init, .check = host_check },
    { .name = "TLSContext", .global_names = true, .fields = tlscontext_fields,
      .size = sizeof(struct pt_tlscontext_res), RES(tlscontexts, ntlscontexts),
      .init = tlscontext_init, .check = tlscontext_check },
    { .name = "Mapping", .fields = mapping_fields, .size = sizeof(struct pt_mapping_res),
      RES(mappings, nmappings), .init = mapping_init, .check = mapping_check },
    { .name = "TracingService", .fields = tracing_fields, .size = sizeof(struct pt_tracing_res),
      RES(tracing, ntracing), .init = tracing_init, .check = tracing_check },
    { .name = "Module", .fields = module_fields, .size = sizeof(struct pt_module_res),
      RES(modules, nmodules), .init = module_init,
      .check = module_check },
    { .name = "Service", .core = true, .api = "v1", .fields = service_fields,
      .size = sizeof(struct pt_service_res), RES(services, nservices), .check = service_check },
    { .name = "Endpoints", .core = true, .api = "v1", .root_body = true, .fields = endpoints_fields,
      .size = sizeof(struct pt_endpoints_res), RES(endpoints, nendpoints) },
    { .name = "EndpointSlice", .core = true, .api = "discovery.k8s.io/v1", .root_body = true,
      .fields = endpointslice_fields, .size = sizeof(struct pt_endpointslice_res),
      RES(endpointslices, nendpointslices), .check = endpointslice_check },
    { .name = "Secret", .core = true, .api = "v1", .root_body = true, .fields = secret_fields,
      .size = sizeof(struct pt_secret_res), RES(secrets, nsecrets), .check = secret_check },
    { .name = "AuthService", .fields = authservice_fields, .size = sizeof(struct pt_authservice_res),
      RES(authservices, nauthservices), .init = authservice_init, .check = authservice_check },
    { .name = "RateLimitService", .fields = ratelimitservice_fields,
      .size = sizeof(struct pt_ratelimitservice_res), RES(ratelimitservices, nratelimitservices),
      .init = ratelimitservice_init, .check = ratelimitservice_check },
};

_Static_assert(PT_ARRAY_SIZE(kinds) == PT_CONFIG__NKINDS, "PT_CONFIG__NKINDS is wrong");
_Static_assert(sizeof(enum pt_listener_proto) == sizeof(int) &&
               sizeof(enum pt_security_model) == sizeof(int) &&
               sizeof(enum pt_insecure_action) == sizeof(int), "PT_F_ENUM stores an int");

/* getambassador.io kinds Portico does not implement: a notice each (none of them can let
 * through what Emissary would stop). */
static const char *const unimplemented[] = {
    "LogService", "TCPMapping", "KubernetesEndpointResolver", "KubernetesServiceResolver",
    "ConsulResolver", "DevPortal",
};

bool pt_config__unimplemented(const char *name)
{
    for (size_t i = 0; i < PT_ARRAY_SIZE(unimplemented); i++)
        if (strcmp(unimplemented[i], name) == 0)
            return true;
    return false;
}

const struct pt_config__kind *pt_config__find_kind(const char *name)
{
    for (size_t i = 0; i < PT_ARRAY_SIZE(kinds); i++)
        if (strcmp(kinds[i].name, name) == 0)
            return &kinds[i];
    return NULL;
}

size_t pt_config__kind_index(const struct pt_config__kind *k)
{
    return (size_t)(k - kinds);
}
