/* Compiling validated resources into a snapshot: Listeners get their sockets and the Hosts they
 * bind; each Host gets a route table of the Mappings associated with it (Emissary's
 * matches_httpgroup rules); each Mapping's service becomes a cluster named as Emissary names it,
 * with endpoints from an IP literal, Endpoints/Service objects, or the DNS cache. A Mapping that
 * cannot be compiled is rejected alone and reported; the rest still applies. Runs on the control
 * thread (sources/ call it on every change). */
#include "config/compile.h"
#include "config/load.h"
#include "config/snapshot.h"
#include "cluster/health.h"
#include "cluster/lb.h"
#include "cluster/service.h"
#include "cluster/breakers.h"
#include "cluster/dns.h"
#include "config/traffic.h"
#include "config/upconn.h"
#include "core/log.h"
#include "core/loop.h"
#include "model/diag.h"
#include "route/route.h"
#include "http/cors.h"
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
#include <strings.h>

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
    const struct pt_module_res *module;  /* the ambassador Module, or NULL */
    const char *rl_domain;               /* the RateLimitService's domain; NULL: none */
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

/* Emissary's cluster name: "cluster_" [+ marker + "_"] + service [+ "_otls_" + ctx] + "_" +
 * namespace [+ circuit breakers] [+ "_" + lb] [+ connect timeout], with non-alphanumerics as
 * '_', and names over 60 characters shortened with a SHA-1. The marker tells what uses it
 * ("extauth" for the AuthService); NULL for Mappings. <suffix>: the circuit breakers' names
 * ("_cbnr10"), or NULL; <lb>: the load balancer's key (lb_key), or NULL; <ctms>: a connect
 * timeout other than the default ("_ctms500", config/upconn.h: Portico's, not Emissary's), or
 * "". */
static char *cluster_name(const char *marker, const char *service, const char *tls_ctx, const char *ns,
                          const char *suffix, const char *lb, const char *ctms)
{
    char buf[2048], *p;
    int len;
    /* "otls" marks TLS origination (tls_ctx "" for the null context: tls: true, https://), so a
     * TLS and a cleartext Mapping of one service never share a cluster. Every part is bounded
     * (names, the service, lb_key) well below the buffer; a cut name would still be hashed. */
    len = snprintf(buf, sizeof(buf), "cluster_%s%s%s%s%s%s_%s%s%s%s%s", marker ? marker : "", marker ? "_" : "",
                   service, tls_ctx ? "_otls" : "", tls_ctx && tls_ctx[0] ? "_" : "", tls_ctx ? tls_ctx : "", ns,
                   suffix ? suffix : "", lb ? "_" : "", lb ? lb : "", ctms);
    if (len < 0)
        buf[0] = '\0';
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

/* What a resource asks of the cluster it sends to. */
struct cluster_want {
    const char *marker;          /* in the cluster's name: "extauth"; NULL for Mappings */
    const struct pt_service_ref *ref;
    const char *tls;             /* the resource's tls: a TLSContext name, "true", or NULL */
    const char *service;         /* as written */
    const char *stats_name;      /* NULL: from the service */
    const struct pt_meta *meta;  /* the resource, for messages */
    bool http2;
    int connect_timeout_ms;
    const char *breakers_name;   /* circuit breakers in the name ("_cbnr10"); NULL: none */
    const struct pt_breakers *breakers; /* their limits; NULL: Envoy's defaults */
    const struct pt_load_balancer_res *lb; /* the resource's load_balancer; NULL: the Module's */
    const struct pt_up_opts *up_opts; /* keepalive, idle timeout, lifetime; NULL: defaults */
    uint8_t dns_type;            /* enum pt_dns_type */
    bool respect_dns_ttl;
};

/* lb_key: what Emissary's IRCluster puts in the name of a cluster with load balancer <lb>
 * ("er-" policy ["-hdr-" header] ["-cookie-" name] ["-srcip"]), into <out>; NULL when <lb> is
 * NULL (no load_balancer: the name has no such part). Two Mappings of one service with other
 * load balancers thus get clusters of their own. */
static const char *lb_key(const struct pt_load_balancer_res *lb, char *out, size_t cap)
{
    int n;

    if (lb == NULL)
        return NULL;
    n = snprintf(out, cap, "er-%s%s%s%s%s%s", lb->policy, lb->header ? "-hdr-" : "", lb->header ? lb->header : "",
                 lb->cookie_name ? "-cookie-" : "", lb->cookie_name ? lb->cookie_name : "",
                 lb->has_source_ip ? "-srcip" : "");
    return n > 0 && (size_t)n < cap ? out : NULL; /* cannot be cut: each part is bounded */
}

/* cluster_conn_notice: the upstream-connection settings that <w> asks of <cl>, a cluster that
 * an earlier resource made, are not part of its name (as in Emissary, where the first Mapping's
 * cluster is used): when they differ, the resource is told which ones it does not get. */
static void cluster_conn_notice(struct compile_ctx *c, const struct cluster_want *w, const struct pt_cluster *cl)
{
    static const struct pt_up_opts none;
    const struct pt_up_opts *o = w->up_opts ? w->up_opts : &none;
    char obj[512];

    if (memcmp(o, &cl->up_opts, sizeof(*o)) == 0 && w->dns_type == cl->dns_type &&
        w->respect_dns_ttl == cl->respect_dns_ttl)
        return;
    snprintf(obj, sizeof(obj), "%s/%s/%s", w->meta->kind, w->meta->namespace, w->meta->name);
    pt_diag_add(c->diag, PT_DIAG_NOTICE, &w->meta->origin, obj,
                "cluster %s is another Mapping's, whose settings are used; this one's differ in:%s%s%s%s%s",
                cl->name,
                o->keepalive != cl->up_opts.keepalive || o->ka_probes != cl->up_opts.ka_probes ||
                        o->ka_idle_s != cl->up_opts.ka_idle_s || o->ka_interval_s != cl->up_opts.ka_interval_s
                    ? " keepalive" : "",
                o->idle_ms != cl->up_opts.idle_ms ? " cluster_idle_timeout_ms" : "",
                o->lifetime_ms != cl->up_opts.lifetime_ms ? " cluster_max_connection_lifetime_ms" : "",
                w->dns_type != cl->dns_type ? " dns_type" : "",
                w->respect_dns_ttl != cl->respect_dns_ttl ? " respect_dns_ttl" : "");
}

/* find_or_add_cluster: the cluster named for <w> (Emissary's name), made when it is new
 * (*added). An HTTP/2 (grpc) cluster keeps Emissary's name but is a cluster of its own: HTTP/1
 * and HTTP/2 users of one service never share one. */
static struct pt_cluster *find_or_add_cluster(struct compile_ctx *c, const struct cluster_want *w, bool *added)
{
    struct pt_snapshot *s = c->snap;
    const struct pt_service_ref *ref = w->ref;
    const struct pt_load_balancer_res *lb = w->lb ? w->lb : c->module ? c->module->load_balancer : NULL;
    char lbbuf[512], ctms[32];
    char *name;
    struct pt_strmap *map = w->http2 ? &c->h2_clusters_by_name : &c->clusters_by_name;
    struct pt_cluster *cl;

    pt_config__ctms_name(w->connect_timeout_ms, ctms, sizeof(ctms));
    name = cluster_name(w->marker, ref->qualified,
                        !ref->tls ? NULL : w->tls && strcmp(w->tls, "true") != 0 ? w->tls : "",
                        w->meta->namespace, w->breakers_name, lb_key(lb, lbbuf, sizeof(lbbuf)), ctms);
    *added = false;
    cl = pt_strmap_get(map, name, strlen(name));
    if (cl != NULL) {
        cluster_conn_notice(c, w, cl);
        free(name);
        return cl;
    }
    cl = pt_xcalloc(1, sizeof(*cl));
    cl->id = s->nclusters;
    cl->name = name;
    cl->stats_name = w->stats_name ? pt_xstrdup(w->stats_name) : stats_name(ref->qualified);
    cl->service = pt_xstrdup(w->service);
    cl->host = pt_xstrdup(ref->host);
    cl->port = ref->port;
    cl->tls = ref->tls;
    cl->http2 = w->http2;
    cl->connect_timeout_ms = (uint32_t)w->connect_timeout_ms;
    {
        struct pt_breakers def;
        if (w->breakers == NULL)
            pt_config__breakers_limits(NULL, 0, &def);
        cl->breakers = pt_breakers_get(cl->name, w->breakers ? w->breakers : &def);
    }
    cl->lb_policy = lb ? (uint8_t)pt_lb_policy_from_name(lb->policy) : PT_LB_ROUND_ROBIN;
    if (w->up_opts != NULL)
        cl->up_opts = *w->up_opts;
    cl->dns_type = w->dns_type;
    cl->respect_dns_ttl = w->respect_dns_ttl;
    s->clusters = pt_xrealloc(s->clusters, (s->nclusters + 1) * sizeof(*s->clusters));
    s->clusters[s->nclusters++] = cl;
    pt_strmap_put(map, cl->name, strlen(cl->name), cl);
    *added = true;
    return cl;
}

/* The labels of one rate-limit descriptor: the Module's defaults, then a group's own. */
struct rl_src {
    const struct pt_rl_group *defaults, *group;
};

static const char *default_label_domain(const struct compile_ctx *c)
{
    return c->module && c->module->default_label_domain ? c->module->default_label_domain : "ambassador";
}

static const struct pt_rl_group *default_labels(const struct compile_ctx *c, const char *domain)
{
    for (size_t i = 0; c->module && i < c->module->ndefault_labels; i++)
        if (c->module->default_labels[i].domain && strcmp(c->module->default_labels[i].domain, domain) == 0 &&
            c->module->default_labels[i].ngroups == 1)
            return &c->module->default_labels[i].groups[0];
    return NULL;
}

/* rl_sources: <m>'s rate-limit descriptors for the RateLimitService's domain, as Emissary
 * builds them (IRHTTPMappingGroup, V3RateLimitAction): each label group of that domain with
 * the Module's default labels of the domain before its own; a Mapping without labels gets the
 * defaults of the default domain alone. Into <out> (NULL: counted only). */
static size_t rl_sources(const struct compile_ctx *c, const struct pt_mapping_res *m, struct rl_src *out)
{
    const struct pt_rl_group *defaults;
    size_t n = 0;

    if (c->rl_domain == NULL)
        return 0;
    defaults = default_labels(c, c->rl_domain);
    if (m->nlabels == 0) {
        if (defaults == NULL || strcmp(c->rl_domain, default_label_domain(c)) != 0)
            return 0;
        if (out != NULL)
            out[0] = (struct rl_src){ NULL, defaults };
        return 1;
    }
    for (size_t i = 0; i < m->nlabels; i++) {
        if (m->labels[i].domain == NULL || strcmp(m->labels[i].domain, c->rl_domain) != 0)
            continue;
        for (size_t g = 0; g < m->labels[i].ngroups; g++) {
            if (out != NULL)
                out[n] = (struct rl_src){ defaults, &m->labels[i].groups[g] };
            n++;
        }
    }
    return n;
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
    size_t nrl = rl_sources(c, m, NULL);
    struct rl_src *rl = pt_xcalloc(nrl + 1, sizeof(*rl));
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
    need += m->nauth_context_extensions * sizeof(struct pt_hdr_op);
    for (size_t i = 0; i < m->nauth_context_extensions; i++)
        need += STRSZ(m->auth_context_extensions[i].key) + STRSZ(m->auth_context_extensions[i].value);
    rl_sources(c, m, rl);
    need += nrl * sizeof(struct pt_rl_descriptor);
    for (size_t i = 0; i < nrl; i++) {
        const struct pt_rl_group *gs[2] = { rl[i].defaults, rl[i].group };
        for (int k = 0; k < 2; k++)
            for (size_t j = 0; gs[k] && j < gs[k]->nlabels; j++)
                need += sizeof(struct pt_rl_entry) + STRSZ(gs[k]->labels[j].key) + STRSZ(gs[k]->labels[j].value);
    }
    need += 8 * (nrl + 3); /* alignment of the arrays that follow strings */
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
    off = (off + 7) & ~(size_t)7; /* arrays after strings */
    a->auth_ctx = (struct pt_hdr_op *)TAKE(m->nauth_context_extensions * sizeof(struct pt_hdr_op));
    for (size_t i = 0; i < m->nauth_context_extensions; i++) {
        COPY(a->auth_ctx[i].name, m->auth_context_extensions[i].key);
        COPY(a->auth_ctx[i].value, m->auth_context_extensions[i].value ? m->auth_context_extensions[i].value : "");
    }
    a->nauth_ctx = (uint32_t)m->nauth_context_extensions;
    off = (off + 7) & ~(size_t)7;
    a->rl = (struct pt_rl_descriptor *)TAKE(nrl * sizeof(struct pt_rl_descriptor));
    for (size_t i = 0; i < nrl; i++) {
        const struct pt_rl_group *gs[2] = { rl[i].defaults, rl[i].group };
        struct pt_rl_descriptor *d = &a->rl[a->nrl++];
        size_t ne = (gs[0] ? gs[0]->nlabels : 0) + gs[1]->nlabels;
        off = (off + 7) & ~(size_t)7;
        d->entries = (struct pt_rl_entry *)TAKE(ne * sizeof(struct pt_rl_entry));
        for (int k = 0; k < 2; k++)
            for (size_t j = 0; gs[k] && j < gs[k]->nlabels; j++) {
                struct pt_rl_entry *e = &d->entries[d->nentries++];
                e->kind = (uint8_t)gs[k]->labels[j].kind;
                COPY(e->key, gs[k]->labels[j].key);
                if (gs[k]->labels[j].value)
                    COPY(e->value, gs[k]->labels[j].value);
            }
    }
    free(rl);
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

/* The origination context of a `tls:` (a TLSContext name, "true", or NULL with an https://
 * service) of the resource <meta>: one per TLSContext per compile, shared by its clusters.
 * NULL after reporting why: an unknown or unusable context is an error on the resource, never
 * a silent fall back to plaintext. */
static SSL_CTX *origination_ctx(struct compile_ctx *c, const char *tls, const struct pt_meta *meta)
{
    const char *name = tls && strcmp(tls, "true") != 0 ? tls : "";
    const struct pt_tlscontext_res *tc = NULL;
    SSL_CTX *ctx = pt_strmap_get(&c->client_ctx, name, strlen(name));
    char err[256];

    if (ctx != NULL)
        return ctx;
    if (name[0] != '\0' && (tc = find_tlscontext(c->res, name)) == NULL) {
        reject(c, meta, "tls: Originate-TLS context %s is not defined", name);
        return NULL;
    }
    ctx = pt_tls_client_ctx_new(tc ? &tc->tls : NULL, c->res, tc ? tc->meta.namespace : meta->namespace, err,
                                sizeof(err));
    if (ctx == NULL) {
        reject(c, meta, "tls: TLSContext %s: %s", name[0] ? name : "(null)", err);
        return NULL;
    }
    pt_strmap_put(&c->client_ctx, name[0] ? tc->meta.name : "", strlen(name), ctx);
    return ctx;
}

/* service_cluster: the cluster for <w>, with its origination context and endpoints when it is
 * new. A TLS context that cannot be built (unknown, or its Secret missing: Istio's certificates
 * may not be written yet) leaves the cluster without endpoints until it can: never plaintext,
 * and its users do not vanish meanwhile (a route answers 503). */
static struct pt_cluster *service_cluster(struct compile_ctx *c, const struct cluster_want *w)
{
    SSL_CTX *tls = w->ref->tls ? origination_ctx(c, w->tls, w->meta) : NULL;
    bool added;
    struct pt_cluster *cl = find_or_add_cluster(c, w, &added);

    if (added && tls != NULL) {
        const char *sni = pt_tls_client_ctx_sni(tls);
        SSL_CTX_up_ref(tls);
        cl->tls_ctx = tls;
        cl->sni = sni ? pt_xstrdup(sni) : NULL;
    }
    if (added && !(w->ref->tls && cl->tls_ctx == NULL))
        pt_service_resolve_indexed(w->ref, c->res, &c->services, cl, c->diag, w->meta);
    return cl;
}

/* redirect_compile: the redirect a host_redirect Mapping answers with (Emissary's v3route.py):
 * its service is the host, an http:// or https:// in front of it the scheme. One block. */
static struct pt_redirect *redirect_compile(const struct pt_mapping_res *m)
{
    const char *host = m->service, *path = m->path_redirect;
    struct pt_str scheme = { 0 };
    size_t hl, pl = path ? strlen(path) : 0;
    struct pt_redirect *rd;
    char *p;

    if (strncasecmp(host, "https://", 8) == 0)
        scheme = PT_STR_LIT("https://"), host += 8;
    else if (strncasecmp(host, "http://", 7) == 0)
        scheme = PT_STR_LIT("http://"), host += 7;
    hl = strlen(host);
    rd = pt_xcalloc(1, sizeof(*rd) + hl + pl + 1);
    p = (char *)(rd + 1);
    rd->status = m->redirect_response_code;
    rd->scheme = scheme;
    memcpy(p, host, hl);
    rd->host = pt_str_make(p, hl);
    p += hl;
    if (pl) { /* Envoy puts a '/' in front of a path that has none */
        size_t off = path[0] != '/';
        p[0] = '/';
        memcpy(p + off, path, pl);
        rd->path = pt_str_make(p, pl + off);
        rd->path_has_query = strchr(path, '?') != NULL;
    }
    rd->rewrite = !pl && (m->prefix_redirect != NULL || m->regex_redirect_pattern != NULL);
    return rd;
}

/* health_cfg: a Mapping's health_checks as the checker runs them (kinds.c validated them),
 * with Emissary's defaults; header names to remove lowercased. */
static struct pt_health_cfg *health_cfg(const struct pt_mapping_res *m)
{
    struct pt_health_cfg *out = pt_xcalloc(m->nhealth_checks, sizeof(*out));

    for (size_t k = 0; k < m->nhealth_checks; k++) {
        const struct pt_health_check_res *hc = &m->health_checks[k];
        struct pt_health_cfg *o = &out[k];

        o->timeout_ms = PT_HEALTH_TIMEOUT_MS;
        o->interval_ms = PT_HEALTH_INTERVAL_MS;
        if (hc->timeout != NULL)
            pt_health_parse_duration(hc->timeout, &o->timeout_ms);
        if (hc->interval != NULL)
            pt_health_parse_duration(hc->interval, &o->interval_ms);
        o->healthy_threshold = hc->healthy_threshold > 0 ? (uint32_t)hc->healthy_threshold : PT_HEALTH_HEALTHY_THRESHOLD;
        o->unhealthy_threshold =
            hc->unhealthy_threshold > 0 ? (uint32_t)hc->unhealthy_threshold : PT_HEALTH_UNHEALTHY_THRESHOLD;
        o->grpc = hc->grpc;
        o->path = hc->path ? pt_xstrdup(hc->path) : NULL;
        o->host = hc->grpc ? (hc->authority ? pt_xstrdup(hc->authority) : NULL)
                           : (hc->hostname ? pt_xstrdup(hc->hostname) : NULL);
        o->service = hc->upstream_name ? pt_xstrdup(hc->upstream_name) : NULL;
        if (hc->nexpected_statuses) {
            o->ranges = pt_xcalloc(hc->nexpected_statuses, sizeof(*o->ranges));
            for (size_t i = 0; i < hc->nexpected_statuses; i++)
                o->ranges[i] = (struct pt_health_range){ (uint16_t)hc->expected_statuses[i].min,
                                                         (uint16_t)hc->expected_statuses[i].max };
            o->nranges = (uint32_t)hc->nexpected_statuses;
        }
        if (hc->nadd_request_headers) {
            o->add = pt_xcalloc(hc->nadd_request_headers, sizeof(*o->add));
            for (size_t i = 0; i < hc->nadd_request_headers; i++)
                o->add[i] = (struct pt_health_hdr){ pt_xstrdup(hc->add_request_headers[i].name),
                                                    pt_xstrdup(hc->add_request_headers[i].value) };
            o->nadd = (uint32_t)hc->nadd_request_headers;
        }
        if (hc->nremove_request_headers) {
            o->remove = pt_xcalloc(hc->nremove_request_headers, sizeof(*o->remove));
            for (size_t i = 0; i < hc->nremove_request_headers; i++) {
                o->remove[i] = pt_xstrdup(hc->remove_request_headers[i]);
                for (char *q = o->remove[i]; *q; q++)
                    *q = pt_lower(*q);
            }
            o->nremove = (uint32_t)hc->nremove_request_headers;
        }
    }
    return out;
}

/* cluster_health_checks: the first Mapping of a cluster that has health_checks gives them (the
 * cluster is shared, as in Emissary); another Mapping's different checks get a notice. */
static void cluster_health_checks(struct compile_ctx *c, const struct pt_mapping_res *m, struct pt_cluster *cl)
{
    struct pt_health_cfg *cfg;
    char obj[512];

    if (m->nhealth_checks == 0)
        return;
    cfg = health_cfg(m);
    if (cl->nchecks == 0) {
        cl->checks = cfg;
        cl->nchecks = (uint32_t)m->nhealth_checks;
        return;
    }
    if (!pt_health_cfg_equal(cl->checks, cl->nchecks, cfg, (uint32_t)m->nhealth_checks)) {
        snprintf(obj, sizeof(obj), "%s/%s/%s", m->meta.kind, m->meta.namespace, m->meta.name);
        pt_diag_add(c->diag, PT_DIAG_NOTICE, &m->meta.origin, obj,
                    "health_checks differ from another Mapping of cluster %s, whose checks are used",
                    cl->name);
    }
    pt_health_cfg_free(cfg, (uint32_t)m->nhealth_checks);
}

/* lb_hash_compile: the hash policy a route of a ring_hash or maglev load balancer <lb> gets
 * (Emissary's generate_hash_policy: its cookie, else its header, else source_ip), or NULL. The
 * Set-Cookie it may send is Envoy's: name="<16 hex>"[; Max-Age=<ttl>][; Path=<path>]; HttpOnly.
 * One block. */
static struct pt_lb_hash *lb_hash_compile(const struct pt_load_balancer_res *lb)
{
    char suffix[400], maxage[32] = "";
    const char *name;
    struct pt_lb_hash *h;
    size_t nl, sl;
    int n;
    char *p;

    if (lb == NULL || (strcmp(lb->policy, "ring_hash") != 0 && strcmp(lb->policy, "maglev") != 0))
        return NULL;
    name = lb->cookie_name ? lb->cookie_name : lb->header ? lb->header : "";
    if (lb->cookie_ttl_s > 0) { /* ttl 0 makes a session cookie: no Max-Age */
        n = snprintf(maxage, sizeof(maxage), "; Max-Age=%ld", lb->cookie_ttl_s);
        if (n < 0 || (size_t)n >= sizeof(maxage))
            maxage[0] = '\0'; /* cannot happen: a long has at most 19 digits */
    }
    n = snprintf(suffix, sizeof(suffix), "\"%s%s%s; HttpOnly", maxage, lb->cookie_path && *lb->cookie_path ? "; Path=" : "",
                 lb->cookie_path ? lb->cookie_path : "");
    if (n < 0 || (size_t)n >= sizeof(suffix))
        n = 0; /* cannot happen: a path has at most 256 bytes (config/kinds.c) */
    nl = strlen(name);
    sl = (size_t)n;
    h = pt_xcalloc(1, sizeof(*h) + 2 * nl + 2 + sl);
    p = (char *)(h + 1);
    h->kind = lb->cookie_name ? PT_LB_HASH_COOKIE : lb->header ? PT_LB_HASH_HEADER
              : lb->source_ip ? PT_LB_HASH_SOURCE_IP : PT_LB_HASH_NONE;
    h->generate = lb->cookie_name != NULL && lb->cookie_ttl_s >= 0;
    for (size_t i = 0; i < nl; i++) /* header names are matched in lower case */
        p[i] = h->kind == PT_LB_HASH_HEADER ? (char)tolower((unsigned char)name[i]) : name[i];
    h->name = pt_str_make(p, nl);
    p += nl;
    memcpy(p, name, nl);
    memcpy(p + nl, "=\"", 2);
    h->set_prefix = pt_str_make(p, nl + 2);
    p += nl + 2;
    memcpy(p, suffix, sl);
    h->set_suffix = pt_str_make(p, sl);
    return h;
}

/* build_lb_tables: the ring or Maglev table of every ring_hash and maglev cluster, once its
 * endpoints are known; workers share them. */
static void build_lb_tables(struct compile_ctx *c)
{
    for (uint32_t i = 0; i < c->snap->nclusters; i++)
        pt_lb_table_build(c->snap->clusters[i]);
}

static void compile_mappings(struct compile_ctx *c)
{
    const struct pt_resources *r = c->res;
    const struct pt_module_res *mod = pt_compile_module(r);
    int module_timeout = -1;

    for (size_t i = 0; i < r->nmodules; i++)
        if (strcmp(r->modules[i].meta.name, "ambassador") == 0 && r->modules[i].cluster_request_timeout_ms >= 0)
            module_timeout = r->modules[i].cluster_request_timeout_ms;
    for (size_t i = 0; i < r->nmappings; i++) {
        const struct pt_mapping_res *m = &r->mappings[i];
        struct pt_service_ref ref;
        char err[256];
        struct pt_cluster *cl;

        if (m->host_redirect) { /* answered with a redirect: no cluster (irhttpmappinggroup.py) */
            c->mapping_action[i] = make_action(c, m, NULL);
            c->mapping_action[i]->redirect = redirect_compile(m);
            continue;
        }
        if (pt_service_parse(m->service, m->meta.namespace, c->env->namespace, m->tls != NULL, &ref, err,
                             sizeof(err)) != 0) {
            reject(c, &m->meta, "service: %s", err);
            c->mapping_bad[i] = true;
            continue;
        }
        const struct pt_breaker_res *cbs = m->circuit_breakers ? m->circuit_breakers
                                           : mod ? mod->circuit_breakers : NULL; /* the Module's: default */
        size_t ncbs = m->circuit_breakers ? m->ncircuit_breakers : mod ? mod->ncircuit_breakers : 0;
        char cbname[256];
        struct pt_breakers limits;
        if (!pt_config__breakers_name(cbs, ncbs, cbname, sizeof(cbname))) {
            reject(c, &m->meta, "circuit_breakers: too many entries");
            c->mapping_bad[i] = true;
            continue;
        }
        pt_config__breakers_limits(cbs, ncbs, &limits);
        struct pt_up_opts up_opts;
        pt_config__up_opts(m, mod, &up_opts);
        cl = service_cluster(c, &(struct cluster_want){ .marker = m->shadow ? "shadow" : NULL,
                                                        .ref = &ref, .tls = m->tls, .service = m->service,
                                                        .stats_name = m->stats_name, .meta = &m->meta,
                                                        .http2 = m->grpc,
                                                        .connect_timeout_ms = m->connect_timeout_ms,
                                                        .breakers_name = cbname, .breakers = &limits,
                                                        .lb = m->load_balancer, .up_opts = &up_opts,
                                                        .dns_type = m->dns_type,
                                                        .respect_dns_ttl = m->respect_dns_ttl });
        c->mapping_action[i] = make_action(c, m, cl);
        if (m->shadow) { /* a mirror of its group's requests (route/route.c): only its cluster */
            c->mapping_action[i]->shadow_percent = (uint8_t)(m->weight >= 0 ? m->weight : 100);
            cluster_health_checks(c, m, cl);
            continue;
        }
        c->mapping_action[i]->lb_hash = lb_hash_compile(m->load_balancer ? m->load_balancer
                                                        : mod ? mod->load_balancer : NULL);
        cluster_health_checks(c, m, cl);
        /* retry_policy: the Mapping's, else the Module's (Emissary's v3route.py) */
        c->mapping_action[i]->retry = pt_config__retry_compile(
            m->retry_policy.retry_on ? &m->retry_policy : mod ? &mod->retry_policy : NULL);
        if (m->cors != NULL || (mod != NULL && mod->cors != NULL)) /* the Module's is the default */
            c->mapping_action[i]->cors = pt_cors_compile(m->cors ? m->cors : mod->cors);
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
    if (rc->specs_mapping[idx]->host_redirect && strncmp(message, "regex_rewrite", 13) == 0)
        reject(rc->c, &rc->specs_mapping[idx]->meta, "regex_redirect%s", message + 13);
    else /* a redirect's rewrite is its regex_redirect (make_vhost) */
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
            .shadow = m->shadow,
        };
        if (m->host_redirect) { /* the route's rewrite makes the redirect's path */
            specs[n].rewrite = m->prefix_redirect;
            specs[n].regex_rewrite_pattern = m->regex_redirect_pattern;
            specs[n].regex_rewrite_substitution = m->regex_redirect_substitution;
        }
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

/* ---- AuthService, RateLimitService ---------------------------------------------------------- */

/* Emissary's (v3httpfilter.py) headers a check always allows, before the AuthService's own. */
static const char *const auth_default_request_headers[] = {
    "authorization", "cookie", "from", "proxy-authorization", "user-agent", "x-forwarded-for",
    "x-forwarded-host", "x-forwarded-proto",
};
static const char *const auth_default_authorization_headers[] = {
    "location", "authorization", "proxy-authenticate", "set-cookie", "www-authenticate",
};

/* A list of lowercase header names without duplicates, being gathered. */
struct name_set {
    char **v;
    size_t n;
};

static void name_set_add(struct name_set *ns, const char *name)
{
    char *low = pt_xstrdup(name);
    for (char *p = low; *p; p++)
        *p = pt_lower(*p);
    for (size_t i = 0; i < ns->n; i++)
        if (strcmp(ns->v[i], low) == 0) {
            free(low);
            return;
        }
    ns->v = pt_xrealloc(ns->v, (ns->n + 1) * sizeof(*ns->v));
    ns->v[ns->n++] = low;
}

static void name_set_free(struct name_set *ns)
{
    for (size_t i = 0; i < ns->n; i++)
        free(ns->v[i]);
    free(ns->v);
}

/* Fills a one-block configuration: strings copied behind the struct, at *off in mem. */
static struct pt_str block_str(char *mem, size_t *off, const char *s)
{
    size_t n = strlen(s);
    memcpy(mem + *off, s, n + 1);
    *off += n + 1;
    return pt_str_make(mem + *off - n - 1, n);
}

/* auth_differs: the AuthService <b> asks for something <a> (the one in force) does not, on a
 * setting only one AuthService can give: its name, or NULL when they agree. */
static const char *auth_differs(const struct pt_authservice_res *a, const struct pt_authservice_res *b)
{
#define STR_DIFF(f) ((a->f == NULL) != (b->f == NULL) || (a->f && strcmp(a->f, b->f) != 0))
    if (STR_DIFF(auth_service))
        return "auth_service";
    if (STR_DIFF(path_prefix))
        return "path_prefix";
    if (STR_DIFF(proto) || STR_DIFF(protocol_version))
        return "proto";
    if (STR_DIFF(tls))
        return "tls";
    if (a->timeout_ms != b->timeout_ms)
        return "timeout_ms";
    if (a->include_body_max_bytes != b->include_body_max_bytes ||
        a->include_body_allow_partial != b->include_body_allow_partial)
        return "include_body";
    if (a->failure_mode_allow != b->failure_mode_allow)
        return "failure_mode_allow";
    if (a->status_on_error != b->status_on_error)
        return "status_on_error";
    if (a->nadd_auth_headers != b->nadd_auth_headers)
        return "add_auth_headers";
    for (size_t i = 0; i < a->nadd_auth_headers; i++)
        if (strcmp(a->add_auth_headers[i].key, b->add_auth_headers[i].key) != 0 ||
            strcmp(a->add_auth_headers[i].value, b->add_auth_headers[i].value) != 0)
            return "add_auth_headers";
    return NULL;
#undef STR_DIFF
}

/* compile_auth: the AuthServices, merged as Emissary merges them into one ext_authz filter:
 * the first (in load order) gives the service and the settings; another that asks for a
 * different one is an error and takes no part; the allowed header lists are the union of all
 * (with Emissary's defaults). An AuthService that could not be read, or whose service cannot
 * be parsed, fails closed: every request is answered 500, as Emissary's Lua stand-in does. */
static void compile_auth(struct compile_ctx *c)
{
    const struct pt_resources *r = c->res;
    const struct pt_authservice_res *a;
    struct name_set req = { 0 }, ans = { 0 };
    struct pt_service_ref ref;
    struct pt_auth_config *ac;
    struct pt_cluster *cl;
    char err[256], l5d[300] = "";
    size_t need, off, nadd;
    char *mem;

    c->snap->http.auth_broken = r->nauth_invalid > 0;
    if (r->nauthservices == 0)
        return;
    a = &r->authservices[0];
    for (size_t i = 0; i < PT_ARRAY_SIZE(auth_default_request_headers); i++)
        name_set_add(&req, auth_default_request_headers[i]);
    for (size_t i = 0; i < PT_ARRAY_SIZE(auth_default_authorization_headers); i++)
        name_set_add(&ans, auth_default_authorization_headers[i]);
    for (size_t i = 0; i < r->nauthservices; i++) {
        const struct pt_authservice_res *b = &r->authservices[i];
        const char *d = auth_differs(a, b);
        if (d != NULL) {
            reject(c, &b->meta, "AuthService cannot support multiple %s values; using AuthService %s/%s's", d,
                   a->meta.namespace, a->meta.name);
            continue;
        }
        for (size_t k = 0; k < b->nallowed_request_headers; k++)
            name_set_add(&req, b->allowed_request_headers[k]);
        for (size_t k = 0; k < b->nallowed_authorization_headers; k++)
            name_set_add(&ans, b->allowed_authorization_headers[k]);
    }
    if (pt_service_parse(a->auth_service, a->meta.namespace, c->env->namespace, a->tls != NULL, &ref, err,
                         sizeof(err)) != 0) {
        reject(c, &a->meta, "auth_service: %s; every request is answered 500 until it is fixed", err);
        c->snap->http.auth_broken = true;
        goto out;
    }
    cl = service_cluster(c, &(struct cluster_want){ .marker = "extauth", .ref = &ref, .tls = a->tls,
                                                    .service = a->auth_service, .stats_name = a->stats_name,
                                                    .meta = &a->meta, .http2 = strcmp(a->proto, "grpc") == 0,
                                                    .connect_timeout_ms = 3000 });
    if (a->add_linkerd_headers) { /* Emissary: l5d-dst-override: host:port of the service */
        int n = snprintf(l5d, sizeof(l5d), "%s:%d", ref.host, cl->port ? cl->port : ref.tls ? 443 : 80);
        if (n < 0 || (size_t)n >= sizeof(l5d))
            l5d[0] = '\0';
    }
    nadd = a->nadd_auth_headers + (l5d[0] != '\0');
    need = sizeof(*ac) + (req.n + ans.n) * sizeof(struct pt_str) + nadd * sizeof(struct pt_hdr_op);
    need += (a->path_prefix ? strlen(a->path_prefix) : 0) + 1 + strlen(l5d) + 16 + sizeof("l5d-dst-override");
    for (size_t i = 0; i < req.n; i++)
        need += strlen(req.v[i]) + 1;
    for (size_t i = 0; i < ans.n; i++)
        need += strlen(ans.v[i]) + 1;
    for (size_t i = 0; i < a->nadd_auth_headers; i++)
        need += strlen(a->add_auth_headers[i].key) + strlen(a->add_auth_headers[i].value) + 2;
    mem = pt_xcalloc(1, need);
    ac = (struct pt_auth_config *)mem;
    off = sizeof(*ac);
    ac->allowed_req = (struct pt_str *)(mem + off);
    off += req.n * sizeof(struct pt_str);
    ac->allowed_auth = (struct pt_str *)(mem + off);
    off += ans.n * sizeof(struct pt_str);
    ac->add = (struct pt_hdr_op *)(mem + off);
    off += nadd * sizeof(struct pt_hdr_op);
    for (size_t i = 0; i < req.n; i++)
        ac->allowed_req[ac->nallowed_req++] = block_str(mem, &off, req.v[i]);
    for (size_t i = 0; i < ans.n; i++)
        ac->allowed_auth[ac->nallowed_auth++] = block_str(mem, &off, ans.v[i]);
    for (size_t i = 0; i < a->nadd_auth_headers; i++) {
        ac->add[ac->nadd].name = block_str(mem, &off, a->add_auth_headers[i].key);
        ac->add[ac->nadd++].value = block_str(mem, &off, a->add_auth_headers[i].value);
    }
    if (l5d[0] != '\0') {
        ac->add[ac->nadd].name = block_str(mem, &off, "l5d-dst-override");
        ac->add[ac->nadd++].value = block_str(mem, &off, l5d);
    }
    ac->path_prefix = block_str(mem, &off, a->path_prefix ? a->path_prefix : "");
    ac->cluster = cl;
    ac->grpc = cl->http2;
    ac->failure_mode_allow = a->failure_mode_allow;
    ac->allow_partial = a->include_body_allow_partial;
    ac->status_on_error = (uint16_t)a->status_on_error;
    ac->timeout_ms = (uint32_t)a->timeout_ms;
    ac->max_body = a->include_body_max_bytes;
    c->snap->http.auth = ac;
out:
    name_set_free(&req);
    name_set_free(&ans);
}

/* compile_rls: the RateLimitService (only one may exist, as in Emissary): its gRPC cluster and
 * settings; its domain picks the Mapping labels that apply (compile_mappings runs after). */
static void compile_rls(struct compile_ctx *c)
{
    const struct pt_resources *r = c->res;
    const struct pt_ratelimitservice_res *rs;
    struct pt_service_ref ref;
    struct pt_rls_config *rc;
    const char *domain;
    char err[256], src[600];
    size_t off;

    if (r->nratelimitservices == 0)
        return;
    for (size_t i = 1; i < r->nratelimitservices; i++)
        reject(c, &r->ratelimitservices[i].meta, "only one RateLimitService is supported; %s/%s is used",
               r->ratelimitservices[0].meta.namespace, r->ratelimitservices[0].meta.name);
    rs = &r->ratelimitservices[0];
    if (pt_service_parse(rs->service, rs->meta.namespace, c->env->namespace, rs->tls != NULL, &ref, err,
                         sizeof(err)) != 0) {
        reject(c, &rs->meta, "service: %s", err);
        return;
    }
    domain = rs->domain ? rs->domain : default_label_domain(c);
    snprintf(src, sizeof(src), "%.256s-%.256s",
             c->env->ambassador_id_raw && c->env->ambassador_id_raw[0] ? c->env->ambassador_id_raw : "ambassador",
             c->env->namespace);
    rc = pt_xcalloc(1, sizeof(*rc) + strlen(domain) + strlen(src) + 2);
    off = sizeof(*rc);
    rc->domain = block_str((char *)rc, &off, domain);
    rc->source_cluster = block_str((char *)rc, &off, src);
    rc->cluster = service_cluster(c, &(struct cluster_want){ .ref = &ref, .tls = rs->tls, .service = rs->service,
                                                             .stats_name = rs->stats_name, .meta = &rs->meta,
                                                             .http2 = true, .connect_timeout_ms = 3000 });
    rc->timeout_ms = (uint32_t)rs->timeout_ms;
    rc->failure_mode_deny = rs->failure_mode_deny;
    rc->resource_exhausted = rs->use_resource_exhausted_code;
    c->snap->http.rls = rc;
    c->rl_domain = rc->domain.ptr;
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
    pt_dns_new_round(); /* the DNS refreshes that this compile's clusters ask for */
    c.module = pt_compile_module(r);
    compile_auth(&c);
    compile_rls(&c);
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
    build_lb_tables(&c);
    s->http.ip = (struct pt_ip_policy){ .action = r->ip_policy.action, .nrules = r->ip_policy.nrules };
    if (r->ip_policy.nrules > 0) {
        s->http.ip.rules = pt_xcalloc(r->ip_policy.nrules, sizeof(*s->http.ip.rules));
        memcpy(s->http.ip.rules, r->ip_policy.rules, r->ip_policy.nrules * sizeof(*s->http.ip.rules));
    }
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
