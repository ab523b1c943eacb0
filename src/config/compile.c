/* Compiling validated resources into a snapshot: Listeners get their sockets and the Hosts they
 * bind; each Host gets a route table of the Mappings associated with it (Emissary's
 * matches_httpgroup rules); each Mapping's service becomes a cluster named as Emissary names it,
 * with endpoints from an IP literal, Endpoints/Service objects, or the DNS cache. A Mapping that
 * cannot be compiled is rejected alone and reported; the rest still applies. Runs on the control
 * thread (sources/ call it on every change). */
#include "config/compile.h"
#include "config/load.h"
#include "config/snapshot.h"
#include "cluster/service.h"
#include "core/log.h"
#include "core/loop.h"
#include "model/diag.h"
#include "route/route.h"
#include "tls/tls.h"
#include "observe/trace.h"
#include "observe/logformat.h"
#include "observe/record-t.h"

#define PT_ERROR_KEEP_MAX PT_RECORD_XHEADERS

#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct compile_ctx {
    const struct pt_resources *res;
    const struct pt_config_env *env;
    struct pt_snapshot *snap;
    struct pt_diag *diag;
    bool *mapping_bad; /* per Mapping: rejected */
    bool *route_bad;   /* per Mapping: its route was rejected (reported once) */
    struct pt_service_index services;
    struct pt_strmap clusters_by_name;
    struct pt_strmap h2_clusters_by_name; /* those of grpc Mappings */
    struct pt_strmap client_ctx; /* origination contexts by TLSContext name ("" = null context) */
    struct pt_route_action **mapping_action;
    json_t *rejected;  /* Mapping errors found here */
};

static void reject(struct compile_ctx *c, const struct pt_meta *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reject(struct compile_ctx *c, const struct pt_meta *m, const char *fmt, ...)
{
    char msg[512], obj[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(obj, sizeof(obj), "%s/%s/%s", m->kind, m->namespace, m->name);
    pt_diag_add(c->diag, PT_DIAG_ERROR, &m->origin, obj, "%s", msg);
}

static bool labels_match(const struct pt_kv *want, size_t nwant, const struct pt_meta *m)
{
    for (size_t i = 0; i < nwant; i++) {
        bool found = false;
        for (size_t j = 0; j < m->nlabels && !found; j++)
            found = strcmp(want[i].key, m->labels[j].key) == 0 && strcmp(want[i].value, m->labels[j].value) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* Emissary's IRHost.matches_httpgroup. */
static bool host_takes_mapping(const struct pt_host_res *h, const struct pt_mapping_res *m)
{
    const char *mh = m->hostname ? m->hostname : m->host;
    bool has_sel = h->nselector > 0;

    if (m->host != NULL && m->hostname == NULL && m->host_regex)
        mh = "*"; /* a host regex cannot be compared as a glob; the route checks it */
    if (has_sel && mh)
        return labels_match(h->selector, h->nselector, &m->meta) && pt_hostglob_overlap(h->hostname, mh);
    if (has_sel)
        return labels_match(h->selector, h->nselector, &m->meta);
    if (mh)
        return pt_hostglob_overlap(h->hostname, mh);
    return false;
}

static bool listener_takes_host(const struct pt_listener_res *l, const struct pt_host_res *h)
{
    if (l->bind_ns_self && strcmp(l->meta.namespace, h->meta.namespace) != 0)
        return false;
    return labels_match(l->bind_selector, l->nbind_selector, &h->meta);
}

/* Emissary's cluster name: "cluster_" + service [+ "_otls_" + ctx] + "_" + namespace, with
 * non-alphanumerics as '_', and names over 60 characters shortened with a SHA-1. */
static char *cluster_name(const char *service, const char *tls_ctx, const char *ns)
{
    char buf[1024], *p;
    /* "otls" marks TLS origination (tls_ctx "" for the null context: tls: true, https://), so a
     * TLS and a cleartext Mapping of one service never share a cluster. */
    snprintf(buf, sizeof(buf), "cluster_%s%s%s%s_%s", service, tls_ctx ? "_otls" : "", tls_ctx && tls_ctx[0] ? "_" : "",
             tls_ctx ? tls_ctx : "", ns);
    for (p = buf; *p; p++)
        if (!isalnum((unsigned char)*p))
            *p = '_';
    if (strlen(buf) > 60) {
        unsigned char md[SHA_DIGEST_LENGTH];
        char out[64];
        SHA1((const unsigned char *)buf, strlen(buf), md);
        snprintf(out, sizeof(out), "%.40s-%02X%02X%02X%02X%02X%02X%02X%02X-0", buf, md[0], md[1], md[2],
                 md[3], md[4], md[5], md[6], md[7]);
        return pt_xstrdup(out);
    }
    return pt_xstrdup(buf);
}

static char *stats_name(const char *service)
{
    const char *s = strstr(service, "://");
    char *out = pt_xstrdup(s ? s + 3 : service);
    for (char *p = out; *p; p++)
        if (!isalnum((unsigned char)*p))
            *p = '_';
    return out;
}

static struct pt_cluster *find_or_add_cluster(struct compile_ctx *c, const struct pt_mapping_res *m,
                                              const struct pt_service_ref *ref, bool *added)
{
    struct pt_snapshot *s = c->snap;
    char *name = cluster_name(ref->qualified, !ref->tls ? NULL : m->tls && strcmp(m->tls, "true") != 0 ? m->tls : "",
                              m->meta.namespace);
    /* An HTTP/2 (grpc) cluster keeps Emissary's name but is a cluster of its own: HTTP/1 and
     * HTTP/2 Mappings of one service never share one. */
    struct pt_strmap *map = m->grpc ? &c->h2_clusters_by_name : &c->clusters_by_name;
    struct pt_cluster *cl;

    *added = false;
    cl = pt_strmap_get(map, name, strlen(name));
    if (cl != NULL) {
        if (cl->connect_timeout_ms != (uint32_t)m->connect_timeout_ms) {
            char obj[512];
            snprintf(obj, sizeof(obj), "Mapping/%s/%s", m->meta.namespace, m->meta.name);
            pt_diag_add(c->diag, PT_DIAG_NOTICE, &m->meta.origin, obj,
                        "connect_timeout_ms %d differs from another Mapping of cluster %s, which uses %u",
                        m->connect_timeout_ms, name, cl->connect_timeout_ms);
        }
        free(name);
        return cl;
    }
    cl = pt_xcalloc(1, sizeof(*cl));
    cl->id = s->nclusters;
    cl->name = name;
    cl->stats_name = m->stats_name ? pt_xstrdup(m->stats_name) : stats_name(ref->qualified);
    cl->service = pt_xstrdup(m->service);
    cl->host = pt_xstrdup(ref->host);
    cl->port = ref->port;
    cl->tls = ref->tls;
    cl->http2 = m->grpc;
    cl->connect_timeout_ms = (uint32_t)m->connect_timeout_ms;
    s->clusters = pt_xrealloc(s->clusters, (s->nclusters + 1) * sizeof(*s->clusters));
    s->clusters[s->nclusters++] = cl;
    pt_strmap_put(map, cl->name, strlen(cl->name), cl);
    *added = true;
    return cl;
}

/* value_format: compiles a header value with '%' (checked in config/kinds.c); a value whose
 * only escapes are "%%" becomes its text again (written in place: it only gets shorter). */
static struct pt_logfmt *value_format(struct pt_str *value)
{
    char err[256];
    struct pt_logfmt *f;
    struct pt_str text;

    if (memchr(value->ptr, '%', value->len) == NULL)
        return NULL;
    f = pt_logfmt_compile_value(value->ptr, PT_LOGFMT_LIVE | PT_LOGFMT_OMIT_EMPTY, err, sizeof(err));
    if (f == NULL || !pt_logfmt_is_text(f, &text))
        return f;
    memcpy((char *)value->ptr, text.ptr, text.len);
    ((char *)value->ptr)[text.len] = '\0';
    value->len = text.len;
    pt_logfmt_free(f);
    return NULL;
}

/* keep_names: adds the header names <f> reads (lower case, in f's text) to the list <*keep>,
 * once each, at most PT_RECORD_XHEADERS (observe/record-t.h). */
static void keep_names(struct pt_str **keep, uint32_t *n, const struct pt_logfmt *f)
{
    for (uint8_t i = 0; f != NULL && i < f->nheaders; i++) {
        uint32_t k = 0;
        while (k < *n && !pt_str_eq((*keep)[k], f->headers[i]))
            k++;
        if (k < *n || *n >= PT_ERROR_KEEP_MAX)
            continue;
        *keep = pt_xrealloc(*keep, (*n + 1) * sizeof(**keep));
        (*keep)[(*n)++] = f->headers[i];
    }
}

/* compile_overrides: error_response_overrides rules into <out> (their formats compiled in
 * config/kinds.c already; one that fails here is left out). */
static void compile_overrides(struct pt_error_overrides *out, const struct pt_error_override_res *r, size_t n)
{
    char err[256];

    out->rules = pt_xcalloc(n + 1, sizeof(*out->rules));
    for (size_t i = 0; i < n; i++) {
        struct pt_error_override *o = &out->rules[out->n];
        if (r[i].json)
            o->body = pt_logfmt_compile_json_value(r[i].json_format, r[i].njson_format, PT_LOGFMT_LIVE, err,
                                                   sizeof(err));
        else if (r[i].text_format != NULL)
            o->body = pt_logfmt_compile_value(r[i].text_format, PT_LOGFMT_LIVE, err, sizeof(err));
        if (o->body == NULL)
            continue;
        o->status = r[i].on_status_code;
        o->content_type = pt_xstrdup(r[i].content_type ? r[i].content_type
                                     : r[i].json ? "application/json" : "text/plain");
        keep_names(&out->keep, &out->nkeep, o->body);
        out->n++;
    }
}

/* finish_actions: each Mapping's action learns which error_response_overrides it gets (its
 * own, else the Module's, none with bypass_error_response_overrides) and which request headers
 * its response side reads; run once the Module is compiled. */
static void finish_actions(struct compile_ctx *c)
{
    for (size_t i = 0; i < c->res->nmappings; i++) {
        const struct pt_mapping_res *m = &c->res->mappings[i];
        struct pt_route_action *a = c->mapping_action[i];
        if (a == NULL)
            continue;
        if (m->bypass_error_response_overrides)
            a->error_overrides = NULL;
        else if (a->own_overrides.n > 0)
            a->error_overrides = &a->own_overrides;
        else if (c->snap->error_overrides.n > 0)
            a->error_overrides = &c->snap->error_overrides;
        for (uint32_t k = 0; k < a->nadd_resp; k++)
            keep_names(&a->resp_keep, &a->nresp_keep, a->add_resp[k].fmt);
        for (uint32_t k = 0; a->error_overrides != NULL && k < a->error_overrides->n; k++)
            keep_names(&a->resp_keep, &a->nresp_keep, a->error_overrides->rules[k].body);
    }
}

/* One allocation holds the action and everything it points to. */
static struct pt_route_action *make_action(struct compile_ctx *c, const struct pt_mapping_res *m,
                                           struct pt_cluster *cl)
{
    size_t need = sizeof(struct pt_route_action), off;
    struct pt_route_action *a;
    char *mem;

#define STRSZ(s) ((s) ? strlen(s) + 1 : 0)
    need += (m->nadd_request_headers + m->nadd_response_headers) * sizeof(struct pt_hdr_op);
    need += (m->nremove_request_headers + m->nremove_response_headers) * sizeof(struct pt_str);
    for (size_t i = 0; i < m->nadd_request_headers; i++)
        need += STRSZ(m->add_request_headers[i].name) + STRSZ(m->add_request_headers[i].value);
    for (size_t i = 0; i < m->nadd_response_headers; i++)
        need += STRSZ(m->add_response_headers[i].name) + STRSZ(m->add_response_headers[i].value);
    for (size_t i = 0; i < m->nremove_request_headers; i++)
        need += STRSZ(m->remove_request_headers[i]);
    for (size_t i = 0; i < m->nremove_response_headers; i++)
        need += STRSZ(m->remove_response_headers[i]);
    need += (m->nallow_upgrade + 1) * sizeof(struct pt_str) + sizeof("websocket");
    for (size_t i = 0; i < m->nallow_upgrade; i++)
        need += STRSZ(m->allow_upgrade[i]);
    need += STRSZ(m->host_rewrite) + strlen(m->meta.namespace) + strlen(m->meta.name) + 2;
    mem = pt_xcalloc(1, need);
    a = (struct pt_route_action *)mem;
    off = sizeof(*a);
#define TAKE(n) (off += (n), mem + off - (n))
#define COPY(dst, src)                                  \
    do {                                                \
        size_t l_ = strlen(src);                        \
        char *d_ = TAKE(l_ + 1);                        \
        memcpy(d_, src, l_ + 1);                        \
        (dst) = pt_str_make(d_, l_);                    \
    } while (0)
    a->add_req = (struct pt_hdr_op *)TAKE(m->nadd_request_headers * sizeof(struct pt_hdr_op));
    a->add_resp = (struct pt_hdr_op *)TAKE(m->nadd_response_headers * sizeof(struct pt_hdr_op));
    a->remove_req = (struct pt_str *)TAKE(m->nremove_request_headers * sizeof(struct pt_str));
    a->remove_resp = (struct pt_str *)TAKE(m->nremove_response_headers * sizeof(struct pt_str));
    a->upgrades = (struct pt_str *)TAKE((m->nallow_upgrade + 1) * sizeof(struct pt_str));
    for (size_t i = 0; i < m->nadd_request_headers; i++) {
        COPY(a->add_req[i].name, m->add_request_headers[i].name);
        COPY(a->add_req[i].value, m->add_request_headers[i].value);
        a->add_req[i].append = m->add_request_headers[i].append;
        a->add_req[i].fmt = value_format(&a->add_req[i].value);
        a->dynamic_req |= a->add_req[i].fmt != NULL;
    }
    a->nadd_req = (uint32_t)m->nadd_request_headers;
    for (size_t i = 0; i < m->nadd_response_headers; i++) {
        COPY(a->add_resp[i].name, m->add_response_headers[i].name);
        COPY(a->add_resp[i].value, m->add_response_headers[i].value);
        a->add_resp[i].append = m->add_response_headers[i].append;
        a->add_resp[i].fmt = value_format(&a->add_resp[i].value);
    }
    a->nadd_resp = (uint32_t)m->nadd_response_headers;
    for (size_t i = 0; i < m->nremove_request_headers; i++)
        COPY(a->remove_req[i], m->remove_request_headers[i]);
    a->nremove_req = (uint32_t)m->nremove_request_headers;
    for (size_t i = 0; i < m->nremove_response_headers; i++)
        COPY(a->remove_resp[i], m->remove_response_headers[i]);
    a->nremove_resp = (uint32_t)m->nremove_response_headers;
    for (size_t i = 0; i < m->nallow_upgrade; i++)
        COPY(a->upgrades[a->nupgrades++], m->allow_upgrade[i]);
    if (m->use_websocket)
        COPY(a->upgrades[a->nupgrades++], "websocket");
    for (uint32_t i = 0; i < a->nupgrades; i++)
        for (size_t k = 0; k < a->upgrades[i].len; k++)
            ((char *)a->upgrades[i].ptr)[k] = pt_lower(a->upgrades[i].ptr[k]);
    if (m->host_rewrite)
        COPY(a->host_rewrite, m->host_rewrite);
    {
        char *d = TAKE(strlen(m->meta.namespace) + strlen(m->meta.name) + 2);
        sprintf(d, "%s/%s", m->meta.namespace, m->meta.name);
        a->mapping = d;
    }
#undef TAKE
#undef COPY
#undef STRSZ
    a->cluster = cl;
    a->auto_host_rewrite = m->auto_host_rewrite;
    a->bypass_auth = m->bypass_auth;
    a->timeout_ms = m->timeout_ms >= 0 ? (uint32_t)m->timeout_ms : 3000;
    a->idle_timeout_ms = m->idle_timeout_ms > 0 ? (uint32_t)m->idle_timeout_ms : 0;
    if (m->nerror_response_overrides > 0 && !m->bypass_error_response_overrides)
        compile_overrides(&a->own_overrides, m->error_response_overrides, m->nerror_response_overrides);
    c->snap->actions = pt_xrealloc(c->snap->actions, (c->snap->nactions + 1) * sizeof(*c->snap->actions));
    c->snap->actions[c->snap->nactions++] = a;
    return a;
}

static const struct pt_tlscontext_res *find_tlscontext(const struct pt_resources *r, const char *name)
{
    for (size_t i = 0; i < r->ntlscontexts; i++)
        if (strcmp(r->tlscontexts[i].meta.name, name) == 0)
            return &r->tlscontexts[i]; /* TLSContext names are global, as in Emissary */
    return NULL;
}

/* The origination context of a Mapping's `tls:` (or https:// service): one per TLSContext per
 * compile, shared by its clusters. NULL after reporting why: an unknown or unusable context is
 * an error on the Mapping, never a silent fall back to plaintext. */
static SSL_CTX *origination_ctx(struct compile_ctx *c, const struct pt_mapping_res *m)
{
    const char *name = m->tls && strcmp(m->tls, "true") != 0 ? m->tls : "";
    const struct pt_tlscontext_res *tc = NULL;
    SSL_CTX *ctx = pt_strmap_get(&c->client_ctx, name, strlen(name));
    char err[256];

    if (ctx != NULL)
        return ctx;
    if (name[0] != '\0' && (tc = find_tlscontext(c->res, name)) == NULL) {
        reject(c, &m->meta, "tls: Originate-TLS context %s is not defined", name);
        return NULL;
    }
    ctx = pt_tls_client_ctx_new(tc ? &tc->tls : NULL, c->res, tc ? tc->meta.namespace : m->meta.namespace, err,
                                sizeof(err));
    if (ctx == NULL) {
        reject(c, &m->meta, "tls: TLSContext %s: %s", name[0] ? name : "(null)", err);
        return NULL;
    }
    pt_strmap_put(&c->client_ctx, name[0] ? tc->meta.name : "", strlen(name), ctx);
    return ctx;
}

static void compile_mappings(struct compile_ctx *c)
{
    const struct pt_resources *r = c->res;
    int module_timeout = -1;

    for (size_t i = 0; i < r->nmodules; i++)
        if (strcmp(r->modules[i].meta.name, "ambassador") == 0 && r->modules[i].cluster_request_timeout_ms >= 0)
            module_timeout = r->modules[i].cluster_request_timeout_ms;
    for (size_t i = 0; i < r->nmappings; i++) {
        const struct pt_mapping_res *m = &r->mappings[i];
        struct pt_service_ref ref;
        char err[256];
        struct pt_cluster *cl;
        bool added;

        if (pt_service_parse(m->service, m->meta.namespace, c->env->namespace, m->tls != NULL, &ref, err,
                             sizeof(err)) != 0) {
            reject(c, &m->meta, "service: %s", err);
            c->mapping_bad[i] = true;
            continue;
        }
        /* A TLS context that cannot be built (unknown, or its Secret missing: Istio's
         * certificates may not be written yet) leaves the route answering 503 until it can:
         * never plaintext, and the route does not vanish meanwhile. */
        SSL_CTX *tls = ref.tls ? origination_ctx(c, m) : NULL;
        cl = find_or_add_cluster(c, m, &ref, &added);
        if (added && tls != NULL) {
            const char *sni = pt_tls_client_ctx_sni(tls);
            SSL_CTX_up_ref(tls);
            cl->tls_ctx = tls;
            cl->sni = sni ? pt_xstrdup(sni) : NULL;
        }
        if (added && !(ref.tls && cl->tls_ctx == NULL)) /* else no endpoints: "no healthy upstream" */
            pt_service_resolve_indexed(&ref, r, &c->services, cl, c->diag, &m->meta);
        c->mapping_action[i] = make_action(c, m, cl);
        if (m->timeout_ms < 0)
            c->mapping_action[i]->timeout_ms = module_timeout >= 0 ? (uint32_t)module_timeout : 3000;
    }
}

struct reject_ctx {
    struct compile_ctx *c;
    const struct pt_mapping_res **specs_mapping;
};

static void on_route_reject(void *ctx, size_t idx, const char *message)
{
    struct reject_ctx *rc = ctx;
    size_t m = (size_t)(rc->specs_mapping[idx] - rc->c->res->mappings);
    if (rc->c->route_bad[m])
        return; /* one report per Mapping, however many Hosts it is in */
    rc->c->route_bad[m] = true;
    reject(rc->c, &rc->specs_mapping[idx]->meta, "%s", message);
}

static struct pt_vhost *make_vhost(struct compile_ctx *c, const struct pt_host_res *h, bool synthesized)
{
    const struct pt_resources *r = c->res;
    struct pt_route_spec *specs = pt_xcalloc(r->nmappings + 1, sizeof(*specs));
    const struct pt_mapping_res **owners = pt_xcalloc(r->nmappings + 1, sizeof(*owners));
    struct pt_vhost *vh = pt_xcalloc(1, sizeof(*vh));
    struct reject_ctx rc = { c, owners };
    size_t n = 0;

    vh->hostname = pt_xstrdup(h ? h->hostname : "*");
    vh->insecure_action = h ? h->insecure_action : PT_INSECURE_ROUTE;
    vh->synthesized = synthesized;
    for (size_t i = 0; i < r->nmappings; i++) {
        const struct pt_mapping_res *m = &r->mappings[i];
        if (c->mapping_bad[i])
            continue;
        if (h ? !host_takes_mapping(h, m) : !(m->hostname || m->host))
            continue;
        specs[n] = (struct pt_route_spec){
            .prefix = m->prefix, .prefix_regex = m->prefix_regex, .prefix_exact = m->prefix_exact,
            .case_sensitive = m->case_sensitive, .hostname = m->hostname, .host = m->host,
            .host_regex = m->host_regex, .method = m->method, .method_regex = m->method_regex,
            .headers = m->headers, .nheaders = m->nheaders, .query_parameters = m->query_parameters,
            .nquery_parameters = m->nquery_parameters, .precedence = m->precedence, .weight = m->weight,
            .rewrite = m->rewrite, .regex_rewrite_pattern = m->regex_rewrite_pattern,
            .regex_rewrite_substitution = m->regex_rewrite_substitution, .action = c->mapping_action[i],
        };
        owners[n++] = m;
    }
    vh->routes = pt_route_table_build_partial(specs, n, on_route_reject, &rc);
    free(specs);
    free(owners);
    c->snap->vhosts = pt_xrealloc(c->snap->vhosts, (c->snap->nvhosts + 1) * sizeof(*c->snap->vhosts));
    c->snap->vhosts[c->snap->nvhosts++] = vh;
    return vh;
}

/* Envoy's virtual-host order: exact names, then suffix globs (longest first), then prefix
 * globs (longest first), then "*". */
static int vhost_rank(const char *g)
{
    size_t n = strlen(g);
    if (strcmp(g, "*") == 0)
        return 3;
    if (g[0] == '*')
        return 1;
    if (n && g[n - 1] == '*')
        return 2;
    return 0;
}

static int vhost_cmp(const void *a, const void *b)
{
    const struct pt_vhost *x = *(struct pt_vhost *const *)a, *y = *(struct pt_vhost *const *)b;
    int rx = vhost_rank(x->hostname), ry = vhost_rank(y->hostname);
    if (rx != ry)
        return rx - ry;
    return (int)strlen(y->hostname) - (int)strlen(x->hostname);
}

/* The termination context of a Host: tlsSecret, tlsContext, inline tls, or a TLSContext whose
 * `hosts` names it; the synthesised default Host gets the fallback certificate. NULL when the
 * Host has no TLS (or after reporting why its context cannot be built). */
static SSL_CTX *termination_ctx(struct compile_ctx *c, const struct pt_host_res *h, time_t *not_after)
{
    struct pt_tls_settings s = { .secret_namespacing = true };
    const struct pt_tlscontext_res *tc = NULL;
    const char *ns = h ? h->meta.namespace : c->env->namespace;
    struct pt_tls_material mat;
    char err[256];
    SSL_CTX *ctx;

    if (h == NULL) {
        /* The user's fallback-self-signed-cert Secret, else one generated at start-up. */
        s.secret = "fallback-self-signed-cert";
        s.secret_namespacing = false;
        if (pt_tls_find_secret(c->res, s.secret, false, ns) == NULL) {
            ctx = pt_tls_server_ctx_new(NULL, c->res, ns, &mat, err, sizeof(err));
            goto built;
        }
    } else {
        if (h->tls_context != NULL && (tc = find_tlscontext(c->res, h->tls_context)) == NULL) {
            reject(c, &h->meta, "tlsContext: TLSContext %s is not defined", h->tls_context);
            return NULL;
        }
        for (size_t i = 0; tc == NULL && i < c->res->ntlscontexts; i++)
            for (size_t k = 0; k < c->res->tlscontexts[i].nhosts; k++)
                if (strcmp(c->res->tlscontexts[i].hosts[k], h->hostname) == 0)
                    tc = &c->res->tlscontexts[i];
        if (tc != NULL) {
            s = tc->tls;
            ns = tc->meta.namespace;
        }
        if (h->has_tls)
            s = h->tls;
        if (h->tls_secret_name != NULL) {
            s.secret = h->tls_secret_name;
            s.secret_namespacing = false;
            ns = h->tls_secret_namespace ? h->tls_secret_namespace : h->meta.namespace;
        }
        if (s.secret == NULL && s.cert_chain_file == NULL)
            return NULL; /* a Host without TLS */
    }
    ctx = pt_tls_server_ctx_new(&s, c->res, ns, &mat, err, sizeof(err));
built:
    if (ctx == NULL) {
        if (h != NULL)
            reject(c, &h->meta, "TLS: %s", err);
        else
            pt_diag_add(c->diag, PT_DIAG_ERROR, NULL, NULL, "fallback certificate: %s", err);
        return NULL;
    }
    if (mat.not_after && (*not_after == 0 || mat.not_after < *not_after))
        *not_after = mat.not_after;
    return ctx;
}

/* An HTTPS Listener's contexts: the one every handshake starts with (the fallback
 * certificate), and the Hosts' by SNI. */
static bool listener_tls(struct compile_ctx *c, struct pt_listener *l, const struct pt_host_res **hres,
                         struct pt_vhost **vhosts, size_t nvh)
{
    l->tls_ctx = termination_ctx(c, NULL, &c->snap->cert_not_after);
    if (l->tls_ctx == NULL)
        return false;
    l->sni = pt_tls_sni_map_new();
    for (size_t k = 0; k < nvh; k++) {
        bool bound = false;
        for (uint32_t i = 0; i < l->nvhosts && !bound; i++)
            bound = l->vhosts[i] == vhosts[k];
        if (!bound)
            continue;
        if (vhosts[k]->tls_ctx == NULL && !vhosts[k]->tls_tried) {
            vhosts[k]->tls_tried = true;
            vhosts[k]->tls_ctx = termination_ctx(c, hres[k], &c->snap->cert_not_after);
        }
        if (vhosts[k]->tls_ctx != NULL)
            pt_tls_sni_map_add(l->sni, vhosts[k]->hostname, vhosts[k]->tls_ctx);
    }
    pt_tls_sni_map_attach(l->sni, l->tls_ctx);
    return true;
}

static void compile_listeners(struct compile_ctx *c, struct pt_vhost **vhosts, const struct pt_host_res **hres,
                              size_t nvh)
{
    const struct pt_resources *r = c->res;
    struct pt_snapshot *s = c->snap;

    s->listeners = pt_xcalloc(r->nlisteners + 1, sizeof(*s->listeners));
    for (size_t i = 0; i < r->nlisteners; i++) {
        const struct pt_listener_res *lr = &r->listeners[i];
        struct pt_listener *l = &s->listeners[s->nlisteners];

        if (lr->protocol != PT_PROTO_HTTP && lr->protocol != PT_PROTO_HTTPS &&
            lr->protocol != PT_PROTO_HTTPPROXY) {
            reject(c, &lr->meta, "protocol not supported by this build; the Listener is ignored");
            continue;
        }
        if (pt_snapshot_find_listener(s, lr->port) != NULL) {
            reject(c, &lr->meta, "port %d is already used by another Listener", lr->port);
            continue;
        }
        l->port = lr->port;
        l->protocol = lr->protocol;
        l->security_model = lr->security_model;
        l->l7_depth = lr->l7_depth;
        l->h2_max_streams = lr->h2_max_streams > 0 ? (uint32_t)lr->h2_max_streams : PT_H2_MAX_STREAMS_DEFAULT;
        l->stats_prefix = pt_xstrdup(lr->stats_prefix ? lr->stats_prefix
                                     : lr->protocol == PT_PROTO_HTTPS ? "ingress_https" : "ingress_http");
        {
            char nm[512];
            snprintf(nm, sizeof(nm), "%s/%s", lr->meta.namespace, lr->meta.name);
            l->name = pt_xstrdup(nm);
        }
        l->vhosts = pt_xcalloc(nvh + 1, sizeof(*l->vhosts));
        for (size_t k = 0; k < nvh; k++)
            if (hres[k] == NULL || listener_takes_host(lr, hres[k]))
                l->vhosts[l->nvhosts++] = vhosts[k];
        qsort(l->vhosts, l->nvhosts, sizeof(*l->vhosts), vhost_cmp);
        if (l->protocol == PT_PROTO_HTTPS && !listener_tls(c, l, hres, vhosts, nvh))
            reject(c, &lr->meta, "HTTPS without a usable certificate: serving cleartext only");
        s->nlisteners++;
    }
}

static json_t *diag_json(const struct pt_resources *r, const struct pt_diag *d, const struct pt_snapshot *s)
{
    json_t *root = json_object(), *res = json_array(), *errs = json_array(), *notes = json_array();

#define ADD(arr, n, field)                                                                  \
    for (size_t i = 0; i < (n); i++) {                                                      \
        const struct pt_meta *m = &(arr)[i].meta;                                           \
        char loc[600];                                                                      \
        snprintf(loc, sizeof(loc), "%s:%d", m->origin.file, m->origin.line);               \
        json_array_append_new(res, json_pack("{s:s,s:s,s:s,s:s}", "kind", m->kind, "name", \
                                             m->name, "namespace", m->namespace,            \
                                             "location", loc));                             \
    }
    ADD(r->listeners, r->nlisteners, 0)
    ADD(r->hosts, r->nhosts, 0)
    ADD(r->mappings, r->nmappings, 0)
    ADD(r->tlscontexts, r->ntlscontexts, 0)
    ADD(r->services, r->nservices, 0)
    ADD(r->endpoints, r->nendpoints, 0)
    ADD(r->endpointslices, r->nendpointslices, 0)
    ADD(r->secrets, r->nsecrets, 0)
    ADD(r->tracing, r->ntracing, 0)
    ADD(r->modules, r->nmodules, 0)
#undef ADD
    for (size_t i = 0; i < d->n; i++) {
        const struct pt_diag_entry *e = &d->entries[i];
        char loc[600];
        snprintf(loc, sizeof(loc), "%s:%d", e->origin.file ? e->origin.file : "-", e->origin.line);
        json_array_append_new(e->severity == PT_DIAG_ERROR ? errs : notes,
                              json_pack("{s:s,s:s,s:s}", "location", loc, "object", e->object ? e->object : "",
                                        "message", e->message));
    }
    json_object_set_new(root, "generation", json_integer((json_int_t)s->generation));
    json_object_set_new(root, "resources", res);
    json_object_set_new(root, "errors", errs);
    json_object_set_new(root, "notices", notes);
    json_t *cl = json_array();
    for (uint32_t i = 0; i < s->nclusters; i++) {
        json_t *eps = json_array();
        for (uint32_t k = 0; k < s->clusters[i]->nendpoints; k++)
            json_array_append_new(eps, json_string(s->clusters[i]->endpoints[k].name));
        json_array_append_new(cl, json_pack("{s:s,s:s,s:s,s:o}", "name", s->clusters[i]->name, "stats_name",
                                            s->clusters[i]->stats_name, "service", s->clusters[i]->service,
                                            "endpoints", eps));
    }
    json_object_set_new(root, "clusters", cl);
    return root;
}

/* The TracingService: its collector resolved like a Mapping's service, then the tracer's
 * configuration. Only one may exist, as in Emissary; changes apply live (Emissary needs a
 * restart). */
static void compile_tracing(struct compile_ctx *c)
{
    const struct pt_resources *r = c->res;
    const struct pt_tracing_res *t;
    struct pt_service_ref ref;
    struct pt_cluster *cl;
    char err[256], name[700];

    if (r->ntracing == 0)
        return;
    for (size_t i = 1; i < r->ntracing; i++)
        reject(c, &r->tracing[i].meta, "only one TracingService may exist; %s/%s is used",
               r->tracing[0].meta.namespace, r->tracing[0].meta.name);
    t = &r->tracing[0];
    if (pt_service_parse(t->service, t->meta.namespace, c->env->namespace, false, &ref, err, sizeof(err)) != 0) {
        reject(c, &t->meta, "service: %s", err);
        return;
    }
    cl = pt_xcalloc(1, sizeof(*cl));
    snprintf(name, sizeof(name), "cluster_tracing_%s_%s", ref.qualified, t->meta.namespace);
    for (char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p))
            *p = '_';
    cl->name = pt_xstrdup(name);
    cl->stats_name = stats_name(ref.qualified);
    cl->service = pt_xstrdup(t->service);
    cl->host = pt_xstrdup(ref.host);
    cl->connect_timeout_ms = 3000;
    pt_service_resolve_indexed(&ref, r, &c->services, cl, c->diag, &t->meta);
    c->snap->tracing_cluster = cl;
    c->snap->tracing = pt_trace_config_new(&(struct pt_trace_params){ .res = t,
                                                                      .ambassador_id = c->env->ambassador_id_raw,
                                                                      .ambassador_namespace = c->env->namespace,
                                                                      .collector = cl },
                                           err, sizeof(err));
    if (c->snap->tracing == NULL)
        reject(c, &t->meta, "%s", err);
}

/* The access-log format of the `ambassador` Module <m>: NULL for Emissary's default text line
 * (its hand-written fast path), else a compiled program. A format that does not compile is
 * reported on the Module and the default for the log type is used. */
static struct pt_logfmt *compile_log_format(struct compile_ctx *c, const struct pt_module_res *m, bool json)
{
    struct pt_logfmt *f = NULL;
    char err[256] = "", obj[512];

    if (json && m->envoy_log_format != NULL)
        reject(c, &m->meta, "envoy_log_format must be a mapping of JSON keys when envoy_log_type is "
               "%s; Emissary's default JSON keys are used", m->envoy_log_type);
    else if (!json && m->nenvoy_log_json_format > 0)
        reject(c, &m->meta, "envoy_log_format is a mapping but envoy_log_type is text (set it to json); "
               "the default format is used");
    else if (json && m->nenvoy_log_json_format > 0)
        f = pt_logfmt_compile_json(m->envoy_log_json_format, m->nenvoy_log_json_format, err, sizeof(err));
    else if (!json && m->envoy_log_format != NULL && m->envoy_log_format[0] != '\0' &&
             strcmp(m->envoy_log_format, PT_LOGFMT_EMISSARY_TEXT) != 0 &&
             strcmp(m->envoy_log_format, PT_LOGFMT_EMISSARY_TEXT "\n") != 0)
        f = pt_logfmt_compile_text(m->envoy_log_format, err, sizeof(err));
    snprintf(obj, sizeof(obj), "%s/%s/%s", m->meta.kind, m->meta.namespace, m->meta.name);
    if (f == NULL && err[0] != '\0')
        reject(c, &m->meta, "envoy_log_format: %s; the default format is used", err);
    else if (err[0] != '\0')
        pt_diag_add(c->diag, PT_DIAG_NOTICE, &m->meta.origin, obj, "envoy_log_format: %s", err);
    return f == NULL && json ? pt_logfmt_emissary_json() : f;
}

/* The `ambassador` Module's access-log settings into the snapshot: the format, and the file's
 * path (NULL for stdout: none, "", /dev/fd/1 or /dev/stdout). Nothing is opened here: the
 * control layer opens the file when it applies the snapshot (control/apply.c), so a reload
 * reopens it and `portico check` touches nothing. */
static void compile_log(struct compile_ctx *c, const struct pt_module_res *m)
{
    struct pt_log_conf *lc = &c->snap->log;
    const char *path = m->envoy_log_path;
    bool json = m->envoy_log_type && strcmp(m->envoy_log_type, "text") != 0;

    pt_logfmt_free(lc->fmt); /* a later `ambassador` Module wins */
    free(lc->format);
    free(lc->path);
    *lc = (struct pt_log_conf){ .json = json };
    lc->format = m->envoy_log_format ? pt_xstrdup(m->envoy_log_format) : NULL;
    if (path != NULL && path[0] != '\0' && strcmp(path, "/dev/fd/1") != 0 && strcmp(path, "/dev/stdout") != 0)
        lc->path = pt_xstrdup(path);
    lc->fmt = compile_log_format(c, m, json);
}

/* compile_grpc_stats: the Module's grpc_stats into <g>: its allowlist as "service/method"
 * names (config/kinds.c checked their number and lengths). */
static void compile_grpc_stats(struct pt_grpcstats_cfg *g, const struct pt_module_res *m)
{
    memset(g, 0, sizeof(*g));
    g->on = m->grpc_stats;
    g->all_methods = m->grpc_stats_all_methods;
    g->upstream_stats = m->grpc_stats_upstream;
    for (size_t i = 0; i < m->ngrpc_stats_services; i++) {
        const struct pt_grpc_stats_service *sv = &m->grpc_stats_services[i];
        for (size_t k = 0; k < sv->nmethod_names && g->n < PT_GRPCSTATS_SLOTS; k++) {
            int n = snprintf(g->m[g->n].name, sizeof(g->m[g->n].name), "%s/%s", sv->name, sv->method_names[k]);
            if (n < 0 || (size_t)n >= sizeof(g->m[g->n].name))
                continue; /* rejected by the Module's check */
            g->m[g->n++].len = (uint16_t)n;
        }
    }
}

const struct pt_module_res *pt_compile_module(const struct pt_resources *r)
{
    const struct pt_module_res *last = NULL;

    for (size_t i = 0; i < r->nmodules; i++)
        if (strcmp(r->modules[i].meta.name, "ambassador") == 0)
            last = &r->modules[i];
    return last;
}

void pt_compile_set_diag(struct pt_snapshot *s, const struct pt_resources *r, const struct pt_diag *diag)
{
    json_t *j = diag_json(r, diag, s);

    free(s->diag_json);
    s->diag_json = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    s->ninvalid = (uint32_t)diag->nerrors;
}

static void free_ctx(void *value, void *arg)
{
    SSL_CTX_free(value);
}

struct pt_snapshot *pt_compile(const struct pt_resources *r, const struct pt_config_env *env, uint64_t generation,
                               struct pt_diag *diag)
{
    struct compile_ctx c = { .res = r, .env = env, .diag = diag };
    struct pt_snapshot *s = pt_xcalloc(1, sizeof(*s));
    struct pt_vhost **vhosts;
    const struct pt_host_res **hres;
    size_t nvh = 0;
    uint64_t t0 = pt_now_ms();

    atomic_init(&s->refcnt, 1);
    s->generation = generation;
    c.snap = s;
    c.mapping_bad = pt_xcalloc(r->nmappings + 1, sizeof(bool));
    c.mapping_action = pt_xcalloc(r->nmappings + 1, sizeof(*c.mapping_action));
    c.route_bad = pt_xcalloc(r->nmappings + 1, sizeof(bool));
    if (env == NULL || env->namespace == NULL) {
        static const struct pt_config_env defaults = { .ambassador_id = "default", .namespace = "default" };
        c.env = &defaults;
    }
    pt_service_index_build(&c.services, r);
    compile_mappings(&c);
    vhosts = pt_xcalloc(r->nhosts + 1, sizeof(*vhosts));
    hres = pt_xcalloc(r->nhosts + 1, sizeof(*hres));
    for (size_t i = 0; i < r->nhosts; i++) {
        hres[nvh] = &r->hosts[i];
        vhosts[nvh++] = make_vhost(&c, &r->hosts[i], false);
    }
    if (r->nhosts == 0) {
        hres[0] = NULL;
        vhosts[nvh++] = make_vhost(&c, NULL, true);
    }
    compile_listeners(&c, vhosts, hres, nvh);
    compile_tracing(&c);
    for (size_t i = 0; i < r->nmodules; i++) {
        const struct pt_module_res *m = &r->modules[i];
        if (strcmp(m->meta.name, "ambassador") != 0)
            continue;
        compile_log(&c, m);
        s->http.enable_http10 = m->enable_http10;
        s->http.merge_slashes = m->merge_slashes;
        s->http.reject_escaped_slashes = m->reject_requests_with_escaped_slashes;
        s->http.enable_grpc_web = m->enable_grpc_web;
        compile_grpc_stats(&s->http.grpc_stats, m);
        pt_snapshot_free_overrides(&s->error_overrides); /* a later `ambassador` Module wins */
        if (m->nerror_response_overrides > 0)
            compile_overrides(&s->error_overrides, m->error_response_overrides, m->nerror_response_overrides);
        if (m->listener_idle_timeout_ms > 0)
            s->http.listener_idle_timeout_ms = (uint32_t)m->listener_idle_timeout_ms;
    }
    finish_actions(&c);
    s->http.auth_deny = r->nauthservices > 0;
    s->http.ip_deny_all = r->ip_policy;
    s->nresources[PT_RK_LISTENER] = (uint32_t)r->nlisteners;
    s->nresources[PT_RK_HOST] = (uint32_t)r->nhosts;
    s->nresources[PT_RK_MAPPING] = (uint32_t)r->nmappings;
    s->nresources[PT_RK_TLSCONTEXT] = (uint32_t)r->ntlscontexts;
    s->nresources[PT_RK_TRACINGSERVICE] = (uint32_t)r->ntracing;
    s->nresources[PT_RK_MODULE] = (uint32_t)r->nmodules;
    s->nresources[PT_RK_SERVICE] = (uint32_t)r->nservices;
    s->nresources[PT_RK_ENDPOINTS] = (uint32_t)r->nendpoints;
    s->nresources[PT_RK_ENDPOINTSLICE] = (uint32_t)r->nendpointslices;
    s->nresources[PT_RK_SECRET] = (uint32_t)r->nsecrets;
    s->compile_ms = (double)(pt_now_ms() - t0);
    pt_compile_set_diag(s, r, diag);
    free(vhosts);
    free(hres);
    free(c.mapping_bad);
    free(c.route_bad);
    free(c.mapping_action);
    pt_service_index_free(&c.services);
    pt_strmap_free(&c.clusters_by_name);
    pt_strmap_free(&c.h2_clusters_by_name);
    pt_strmap_foreach(&c.client_ctx, free_ctx, NULL);
    pt_strmap_free(&c.client_ctx);
    return s;
}
