/* The /metrics page: Prometheus text with Envoy's names, labels, types and ordering
 * (reference/envoy-compat.md §1), so Emissary users keep their dashboards, plus Portico's own
 * portico_* series. Values are the per-worker blocks of observe/stats.c summed at scrape time,
 * cluster membership from the snapshot in force and the reload counters (both passed in by
 * admin/admin.c), and control-thread counters (tracing, certificates). Control thread; it never
 * blocks a worker.
 *
 * Layout rules: one "# TYPE" line per metric name and no HELP lines; counters, then gauges,
 * then histograms, each group sorted by name; series of one name sorted by the stats name they
 * come from; `name{labels} value` with `{}` when there are none; histograms as cumulative
 * `_bucket{...,le=...}` lines up to "+Inf", then `_sum` and `_count`. Per-code and per-class
 * upstream series are dynamic in Envoy and appear only once hit. */
#include "observe/metrics.h"
#include "observe/trace.h"
#include "observe/stats.h"
#include "observe/grpcstats.h"
#include "model/snapshot-t.h"
#include "cluster/health.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum family_type { FT_COUNTER, FT_GAUGE, FT_HISTOGRAM };

static const char *const type_names[] = { "counter", "gauge", "histogram" };

/* Envoy prints le with {:.32g}; these are the bounds of pt_hist__bounds so printed. */
static const char *const le_names[PT_HIST_NBUCKETS] = {
    "0.5",   "1",     "5",      "10",     "25",     "50",      "100",
    "250",   "500",   "1000",   "2500",   "5000",   "10000",   "30000",
    "60000", "300000", "600000", "1800000", "3600000", "+Inf",
};

static const char *const resource_kind_names[PT_RK__COUNT] = {
#define KIND_NAME(id, name) [PT_RK_##id] = name,
    PT_RESOURCE_KINDS(KIND_NAME)
#undef KIND_NAME
};

/* A cluster stats name to render, with its sums over the workers. */
struct cluster_ent {
    const char *name;
    bool in_snapshot;
    uint64_t membership_total, membership_healthy;
    struct pt_cluster_sum sum;
    struct pt_grpcstats_sum *grpc; /* Module grpc_stats' series, or NULL */
};

struct http_ent {
    const char *name;
    struct pt_http_stats sum;
};

struct listener_ent {
    const char *name;
    struct pt_listener_stats sum;
};

struct family;

/* The state of one rendering. */
struct render {
    FILE *f;
    const struct pt_snapshot *snap;
    const struct pt_reload_stats *rs;
    time_t now;
    struct pt_stats_server srv;
    struct cluster_ent *clusters;
    uint32_t nclusters;
    struct http_ent *https;
    uint32_t nhttps;
    struct listener_ent *listeners;
    uint32_t nlisteners;
    const struct family *fam; /* the family being written */
    bool typed;               /* its # TYPE line is out */
    bool first_label;
};

/* A metric name and how to write its series. <off> is the field's offset in the summed
 * struct of its scope, or a small selector for the functions that need one. */
struct family {
    const char *name;
    enum family_type type;
    void (*emit)(struct render *r, const struct family *f);
    size_t off;
};

/* ---- Writing series ---- */

/* put_escaped: a label value with \, newline and " escaped, as Envoy does. */
static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else if (*s == '"')
            fputs("\\\"", f);
        else
            fputc(*s, f);
    }
}

/* open_series: "# TYPE" for the current family if not yet written, then "<name><suffix>{". */
static void open_series(struct render *r, const char *suffix)
{
    if (!r->typed) {
        fprintf(r->f, "# TYPE %s %s\n", r->fam->name, type_names[r->fam->type]);
        r->typed = true;
    }
    fprintf(r->f, "%s%s{", r->fam->name, suffix);
    r->first_label = true;
}

static void label(struct render *r, const char *key, const char *value)
{
    fprintf(r->f, "%s%s=\"", r->first_label ? "" : ",", key);
    put_escaped(r->f, value);
    fputc('"', r->f);
    r->first_label = false;
}

static void close_u64(struct render *r, uint64_t v)
{
    fprintf(r->f, "} %" PRIu64 "\n", v);
}

/* close_gauge: a gauge summed over workers; a sum below zero (a transient of per-worker
 * shares) is shown as 0. */
static void close_gauge(struct render *r, int64_t v)
{
    fprintf(r->f, "} %" PRId64 "\n", v < 0 ? 0 : v);
}

/* close_ms: a sum of microseconds, printed in milliseconds without trailing zeros. */
static void close_ms(struct render *r, uint64_t us)
{
    uint64_t frac = us % 1000;
    int digits = 3;

    if (frac == 0) {
        fprintf(r->f, "} %" PRIu64 "\n", us / 1000);
        return;
    }
    for (; frac % 10 == 0; frac /= 10)
        digits--;
    fprintf(r->f, "} %" PRIu64 ".%0*" PRIu64 "\n", us / 1000, digits, frac);
}

/* put_hist: one histogram series labelled <key>="<value>". */
static void put_hist(struct render *r, const char *key, const char *value, const struct pt_hist *h)
{
    uint64_t cum = 0;

    for (int i = 0; i < PT_HIST_NBUCKETS; i++) {
        cum += h->bucket[i];
        open_series(r, "_bucket");
        label(r, key, value);
        label(r, "le", le_names[i]);
        close_u64(r, cum);
    }
    open_series(r, "_sum");
    label(r, key, value);
    close_ms(r, h->sum_us);
    open_series(r, "_count");
    label(r, key, value);
    close_u64(r, cum);
}

/* put_word: one counter or gauge series labelled <key>="<value>" from the word at <p>. */
static void put_word(struct render *r, const char *key, const char *value, const void *p)
{
    open_series(r, "");
    label(r, key, value);
    if (r->fam->type == FT_GAUGE)
        close_gauge(r, *(const int64_t *)p);
    else
        close_u64(r, *(const uint64_t *)p);
}

/* ---- Families of the three scopes ---- */

#define CLUSTER_LABEL "envoy_cluster_name"
#define HTTP_LABEL "envoy_http_conn_manager_prefix"
#define LISTENER_LABEL "envoy_listener_address"
#define CLASS_LABEL "envoy_response_code_class"

static void emit_cluster_field(struct render *r, const struct family *f)
{
    for (uint32_t i = 0; i < r->nclusters; i++) {
        const char *p = (const char *)&r->clusters[i].sum.s + f->off;
        if (f->type == FT_HISTOGRAM)
            put_hist(r, CLUSTER_LABEL, r->clusters[i].name, (const struct pt_hist *)p);
        else
            put_word(r, CLUSTER_LABEL, r->clusters[i].name, p);
    }
}

static bool words_nonzero(const void *p, size_t size);

/* emit_grpc: Module grpc_stats (Envoy's cluster.<c>.grpc[.<service>.<method>].<stat>, tagged
 * as Envoy's tag extractor does: envoy_grpc_bridge_service and _method). The generic series has
 * the cluster label only. The service label is the whole service name, dots included (Envoy's
 * regex would cut a dotted name at its first dot). */
/* emit_grpc_one: family <f>'s series of one gRPC entry <c> of <cluster> (<svc> NULL: the
 * generic series); a histogram only once it has samples. */
static void emit_grpc_one(struct render *r, const struct family *f, const char *cluster, const char *svc,
                          const char *method, const struct pt_grpc_counts *c)
{
    const char *p = (const char *)c + f->off;
    const struct pt_hist *h = (const struct pt_hist *)p;
    uint64_t cum = 0;

    if (f->type != FT_HISTOGRAM) {
        open_series(r, "");
        label(r, CLUSTER_LABEL, cluster);
        if (svc != NULL) {
            label(r, "envoy_grpc_bridge_method", method);
            label(r, "envoy_grpc_bridge_service", svc);
        }
        close_u64(r, *(const uint64_t *)p);
        return;
    }
    for (int i = 0; i < PT_HIST_NBUCKETS; i++)
        cum += h->bucket[i];
    if (cum == 0)
        return; /* no upstream_stats, or no sample yet */
    cum = 0;
    for (int i = 0; i <= PT_HIST_NBUCKETS + 1; i++) {
        if (i < PT_HIST_NBUCKETS)
            cum += h->bucket[i];
        open_series(r, i < PT_HIST_NBUCKETS ? "_bucket" : i == PT_HIST_NBUCKETS ? "_sum" : "_count");
        label(r, CLUSTER_LABEL, cluster);
        if (svc != NULL) {
            label(r, "envoy_grpc_bridge_method", method);
            label(r, "envoy_grpc_bridge_service", svc);
        }
        if (i < PT_HIST_NBUCKETS) {
            label(r, "le", le_names[i]);
            close_u64(r, cum);
        } else if (i == PT_HIST_NBUCKETS) {
            close_ms(r, h->sum_us);
        } else {
            close_u64(r, cum);
        }
    }
}

static void emit_grpc(struct render *r, const struct family *f)
{
    for (uint32_t i = 0; i < r->nclusters; i++) {
        const struct pt_grpcstats_sum *g = r->clusters[i].grpc;
        if (g == NULL)
            continue;
        if (words_nonzero(&g->generic, sizeof(g->generic)))
            emit_grpc_one(r, f, r->clusters[i].name, NULL, NULL, &g->generic);
        for (uint32_t k = 0; k < g->n; k++) {
            char svc[PT_GRPCSTATS_NAME_MAX + 1];
            const struct pt_grpcstats_ent *e = &g->ent[k];
            memcpy(svc, e->name, e->svc_len);
            svc[e->svc_len] = '\0';
            emit_grpc_one(r, f, r->clusters[i].name, svc, e->name + e->svc_len + 1, &e->c);
        }
    }
}

static void emit_cluster_classes(struct render *r, const struct family *f)
{
    static const char *const classes[5] = { "1", "2", "3", "4", "5" };

    for (uint32_t i = 0; i < r->nclusters; i++) {
        for (int k = 0; k < 5; k++) {
            uint64_t v = r->clusters[i].sum.s.upstream_rq_xx[k];
            if (v == 0)
                continue; /* dynamic in Envoy: absent until hit */
            open_series(r, "");
            label(r, CLASS_LABEL, classes[k]);
            label(r, CLUSTER_LABEL, r->clusters[i].name);
            close_u64(r, v);
        }
    }
}

static void emit_cluster_codes(struct render *r, const struct family *f)
{
    for (uint32_t i = 0; i < r->nclusters; i++) {
        const struct pt_cluster_sum *s = &r->clusters[i].sum;
        for (uint32_t k = 0; k < s->ncodes; k++) {
            char code[16];
            snprintf(code, sizeof(code), "%u", s->codes[k].code);
            open_series(r, "");
            label(r, "envoy_response_code", code);
            label(r, CLUSTER_LABEL, r->clusters[i].name);
            close_u64(r, s->codes[k].count);
        }
    }
}

/* emit_cluster_membership: off 0 is membership_healthy, 1 membership_total; clusters of the
 * snapshot in force only. */
static void emit_cluster_membership(struct render *r, const struct family *f)
{
    for (uint32_t i = 0; i < r->nclusters; i++) {
        const struct cluster_ent *c = &r->clusters[i];
        if (!c->in_snapshot)
            continue;
        open_series(r, "");
        label(r, CLUSTER_LABEL, c->name);
        close_u64(r, f->off ? c->membership_total : c->membership_healthy);
    }
}

static void emit_http_field(struct render *r, const struct family *f)
{
    for (uint32_t i = 0; i < r->nhttps; i++) {
        const char *p = (const char *)&r->https[i].sum + f->off;
        if (f->type == FT_HISTOGRAM)
            put_hist(r, HTTP_LABEL, r->https[i].name, (const struct pt_hist *)p);
        else
            put_word(r, HTTP_LABEL, r->https[i].name, p);
    }
}

/* emit_http_classes: downstream_rq_1xx..5xx are static stats in Envoy: always present. */
static void emit_http_classes(struct render *r, const struct family *f)
{
    static const char *const classes[5] = { "1", "2", "3", "4", "5" };

    for (uint32_t i = 0; i < r->nhttps; i++) {
        for (int k = 0; k < 5; k++) {
            open_series(r, "");
            label(r, CLASS_LABEL, classes[k]);
            label(r, HTTP_LABEL, r->https[i].name);
            close_u64(r, r->https[i].sum.downstream_rq_xx[k]);
        }
    }
}

static void emit_listener_field(struct render *r, const struct family *f)
{
    for (uint32_t i = 0; i < r->nlisteners; i++)
        put_word(r, LISTENER_LABEL, r->listeners[i].name,
                 (const char *)&r->listeners[i].sum + f->off);
}

/* ---- Server-wide families ---- */

/* put_plain: a series without labels, or with one label <key>="<value>". */
static void put_plain(struct render *r, const char *key, const char *value, int64_t v)
{
    open_series(r, "");
    if (key != NULL)
        label(r, key, value);
    fprintf(r->f, "} %" PRId64 "\n", v);
}

static void emit_active_clusters(struct render *r, const struct family *f)
{
    put_plain(r, NULL, NULL, r->snap ? r->snap->nclusters : 0);
}

static void emit_server_live(struct render *r, const struct family *f)
{
    put_plain(r, NULL, NULL, r->snap != NULL);
}

static void emit_server_uptime(struct render *r, const struct family *f)
{
    put_plain(r, NULL, NULL, r->now > r->srv.started ? (int64_t)(r->now - r->srv.started) : 0);
}

static void emit_server_concurrency(struct render *r, const struct family *f)
{
    put_plain(r, NULL, NULL, r->srv.nworkers);
}

static void emit_build_info(struct render *r, const struct family *f)
{
    put_plain(r, "version", r->srv.version, 1);
}

static void emit_reloads(struct render *r, const struct family *f)
{
    put_plain(r, "result", "failed", r->rs ? (int64_t)r->rs->failed : 0);
    put_plain(r, "result", "ok", r->rs ? (int64_t)r->rs->ok : 0);
}

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void emit_resources(struct render *r, const struct family *f)
{
    const char *sorted[PT_RK__COUNT];

    memcpy(sorted, resource_kind_names, sizeof(sorted));
    qsort(sorted, PT_RK__COUNT, sizeof(sorted[0]), str_ptr_cmp);
    for (int i = 0; i < PT_RK__COUNT; i++) {
        int64_t n = 0;
        for (int k = 0; r->snap && k < PT_RK__COUNT; k++)
            if (resource_kind_names[k] == sorted[i])
                n = r->snap->nresources[k];
        put_plain(r, "kind", sorted[i], n);
    }
}

static void emit_invalid(struct render *r, const struct family *f)
{
    put_plain(r, NULL, NULL, r->snap ? r->snap->ninvalid : 0);
}

static void emit_cert_expiry(struct render *r, const struct family *f)
{
    if (r->srv.cert_expiry != 0)
        put_plain(r, NULL, NULL, (int64_t)(r->srv.cert_expiry - r->now));
}

static void emit_spans(struct render *r, const struct family *f)
{
    put_plain(r, "result", "dropped", (int64_t)r->srv.trace_dropped);
    put_plain(r, "result", "sent", (int64_t)r->srv.trace_sent);
}

static void emit_accept_pauses(struct render *r, const struct family *f)
{
    put_plain(r, NULL, NULL, (int64_t)r->srv.accept_pauses);
}

static void emit_admin_rejected(struct render *r, const struct family *f)
{
    put_plain(r, NULL, NULL, (int64_t)r->srv.admin_rejected);
}

/* ---- The family table ---- */

#define CLUSTER_FAMILY(field, type)                                                               \
    { "envoy_cluster_" #field, type, emit_cluster_field, offsetof(struct pt_cluster_stats, field) },
#define CLUSTER_COUNTER(field) CLUSTER_FAMILY(field, FT_COUNTER)
#define CLUSTER_GAUGE(field) CLUSTER_FAMILY(field, FT_GAUGE)
#define CLUSTER_HIST(field) CLUSTER_FAMILY(field, FT_HISTOGRAM)
#define HTTP_FAMILY(field, type)                                                                  \
    { "envoy_http_" #field, type, emit_http_field, offsetof(struct pt_http_stats, field) },
#define HTTP_COUNTER(field) HTTP_FAMILY(field, FT_COUNTER)
#define HTTP_GAUGE(field) HTTP_FAMILY(field, FT_GAUGE)
#define HTTP_HIST(field) HTTP_FAMILY(field, FT_HISTOGRAM)
#define LISTENER_FAMILY(field, type)                                                              \
    { "envoy_listener_" #field, type, emit_listener_field,                                        \
      offsetof(struct pt_listener_stats, field) },
#define LISTENER_COUNTER(field) LISTENER_FAMILY(field, FT_COUNTER)
#define LISTENER_GAUGE(field) LISTENER_FAMILY(field, FT_GAUGE)

#define GRPC_COUNTER(field)                                                                        \
    { "envoy_cluster_grpc_" #field, FT_COUNTER, emit_grpc, offsetof(struct pt_grpc_counts, field) },

static const struct family families[] = {
    PT_CLUSTER_COUNTERS(CLUSTER_COUNTER)
    PT_CLUSTER_GAUGES(CLUSTER_GAUGE)
    PT_CLUSTER_HISTS(CLUSTER_HIST)
    { "envoy_cluster_upstream_rq_xx", FT_COUNTER, emit_cluster_classes, 0 },
    PT_GRPC_COUNTERS(GRPC_COUNTER)
    { "envoy_cluster_grpc_upstream_rq_time", FT_HISTOGRAM, emit_grpc, offsetof(struct pt_grpc_counts, upstream_rq_time) },
    { "envoy_cluster_upstream_rq", FT_COUNTER, emit_cluster_codes, 0 },
    { "envoy_cluster_membership_healthy", FT_GAUGE, emit_cluster_membership, 0 },
    { "envoy_cluster_membership_total", FT_GAUGE, emit_cluster_membership, 1 },
    PT_HTTP_COUNTERS(HTTP_COUNTER)
    PT_HTTP_GAUGES(HTTP_GAUGE)
    PT_HTTP_HISTS(HTTP_HIST)
    { "envoy_http_downstream_rq_xx", FT_COUNTER, emit_http_classes, 0 },
    PT_LISTENER_COUNTERS(LISTENER_COUNTER)
    PT_LISTENER_GAUGES(LISTENER_GAUGE)
    { "envoy_cluster_manager_active_clusters", FT_GAUGE, emit_active_clusters, 0 },
    { "envoy_server_live", FT_GAUGE, emit_server_live, 0 },
    { "envoy_server_uptime", FT_GAUGE, emit_server_uptime, 0 },
    { "envoy_server_concurrency", FT_GAUGE, emit_server_concurrency, 0 },
    { "portico_build_info", FT_GAUGE, emit_build_info, 0 },
    { "portico_config_reloads_total", FT_COUNTER, emit_reloads, 0 },
    { "portico_resources", FT_GAUGE, emit_resources, 0 },
    { "portico_invalid_resources", FT_GAUGE, emit_invalid, 0 },
    { "portico_certificate_expiry_seconds", FT_GAUGE, emit_cert_expiry, 0 },
    { "portico_tracing_spans_total", FT_COUNTER, emit_spans, 0 },
    { "portico_accept_pauses_total", FT_COUNTER, emit_accept_pauses, 0 },
    { "portico_admin_connections_rejected_total", FT_COUNTER, emit_admin_rejected, 0 },
};

/* family_cmp: counters, gauges, histograms; by name within each. */
static int family_cmp(const void *a, const void *b)
{
    const struct family *x = *(const struct family *const *)a;
    const struct family *y = *(const struct family *const *)b;
    if (x->type != y->type)
        return (int)x->type - (int)y->type;
    return strcmp(x->name, y->name);
}

/* ---- Collecting the entities to render ---- */

static bool words_nonzero(const void *p, size_t size)
{
    const uint64_t *w = p;
    for (size_t k = 0; k < size / sizeof(uint64_t); k++)
        if (w[k] != 0)
            return true;
    return false;
}

static int cluster_cmp(const void *a, const void *b)
{
    return strcmp(((const struct cluster_ent *)a)->name, ((const struct cluster_ent *)b)->name);
}

static int http_cmp(const void *a, const void *b)
{
    return strcmp(((const struct http_ent *)a)->name, ((const struct http_ent *)b)->name);
}

static int listener_cmp(const void *a, const void *b)
{
    return strcmp(((const struct listener_ent *)a)->name, ((const struct listener_ent *)b)->name);
}

/* collect_clusters: every registered cluster stats name that the snapshot uses or that has
 * counted anything, summed, sorted by name. Clusters sharing a stats name share its series;
 * their membership is the largest (they normally resolve the same service). */
static int collect_clusters(struct render *r)
{
    const struct pt_snapshot *s = r->snap;
    uint32_t n;
    bool *used;
    uint64_t *members, *healthy;

    for (uint32_t i = 0; s && i < s->nclusters; i++)
        if (s->clusters[i]->stats_idx == PT_STATS_IDX_NONE)
            pt_stats_cluster_index(s->clusters[i]->stats_name); /* compile did not register it */
    n = pt_stats__count(PT_STATS_CLUSTER);
    used = calloc(n, sizeof(*used));
    members = calloc(n, sizeof(*members));
    healthy = calloc(n, sizeof(*healthy));
    r->clusters = calloc(n, sizeof(*r->clusters));
    if (used == NULL || members == NULL || healthy == NULL || r->clusters == NULL)
        goto fail;
    for (uint32_t i = 0; s && i < s->nclusters; i++) {
        const struct pt_cluster *c = s->clusters[i];
        uint32_t idx = c->stats_idx;
        if (idx == PT_STATS_IDX_NONE)
            idx = pt_stats__find(PT_STATS_CLUSTER, c->stats_name);
        if (idx == PT_STATS_IDX_NONE || idx >= n)
            continue;
        used[idx] = true;
        if (c->nendpoints > members[idx]) {
            members[idx] = c->nendpoints;
            /* health-checked: the endpoints in the rotation (cluster/health.h); else all */
            healthy[idx] = c->health != NULL ? pt_health_nhealthy(c->health) : c->nendpoints;
        }
    }
    for (uint32_t idx = 1; idx < n; idx++) {
        struct cluster_ent *e = &r->clusters[r->nclusters];
        pt_stats__sum_cluster(idx, &e->sum);
        if (!used[idx] && e->sum.ncodes == 0 && !words_nonzero(&e->sum.s, sizeof(e->sum.s)))
            continue;
        e->name = pt_stats__name(PT_STATS_CLUSTER, idx);
        e->grpc = pt_grpcstats__sum(idx);
        e->in_snapshot = used[idx];
        e->membership_total = members[idx];
        e->membership_healthy = healthy[idx];
        r->nclusters++;
    }
    qsort(r->clusters, r->nclusters, sizeof(*r->clusters), cluster_cmp);
    free(used);
    free(members);
    free(healthy);
    return 0;
fail:
    free(used);
    free(members);
    free(healthy);
    return PT_NOMEM;
}

/* listener_indexes: the prefix and address indexes of listener <l>, registering them when
 * compile did not. */
static void listener_indexes(const struct pt_listener *l, uint32_t *prefix, uint32_t *addr)
{
    char buf[64];

    *prefix = l->stats_prefix_idx ? l->stats_prefix_idx : pt_stats_prefix_index(l->stats_prefix);
    *addr = l->stats_idx ? l->stats_idx
                         : pt_stats_listener_index(pt_stats_listener_address(buf, sizeof(buf),
                                                                              l->port));
}

/* collect_http_listeners: the HTTP prefixes and listener addresses that the snapshot uses or
 * that have counted anything, summed, sorted by name. */
static int collect_http_listeners(struct render *r)
{
    const struct pt_snapshot *s = r->snap;
    uint32_t nh, nl;
    bool *used_h = NULL, *used_l = NULL;
    int rc = PT_NOMEM;

    for (uint32_t i = 0; s && i < s->nlisteners; i++) {
        uint32_t p, a;
        listener_indexes(&s->listeners[i], &p, &a); /* so that the counts below include them */
    }
    nh = pt_stats__count(PT_STATS_HTTP);
    nl = pt_stats__count(PT_STATS_LISTENER);
    used_h = calloc(nh, sizeof(bool));
    used_l = calloc(nl, sizeof(bool));
    r->https = calloc(nh, sizeof(*r->https));
    r->listeners = calloc(nl, sizeof(*r->listeners));
    if (used_h == NULL || used_l == NULL || r->https == NULL || r->listeners == NULL)
        goto out;
    for (uint32_t i = 0; s && i < s->nlisteners; i++) {
        uint32_t p, a;
        listener_indexes(&s->listeners[i], &p, &a);
        used_h[p < nh ? p : 0] = true;
        used_l[a < nl ? a : 0] = true;
    }
    for (uint32_t idx = 1; idx < nh; idx++) {
        struct http_ent *e = &r->https[r->nhttps];
        pt_stats__sum_http(idx, &e->sum);
        if (used_h[idx] || words_nonzero(&e->sum, sizeof(e->sum)))
            r->https[r->nhttps++].name = pt_stats__name(PT_STATS_HTTP, idx);
    }
    for (uint32_t idx = 1; idx < nl; idx++) {
        struct listener_ent *e = &r->listeners[r->nlisteners];
        pt_stats__sum_listener(idx, &e->sum);
        if (used_l[idx] || words_nonzero(&e->sum, sizeof(e->sum)))
            r->listeners[r->nlisteners++].name = pt_stats__name(PT_STATS_LISTENER, idx);
    }
    qsort(r->https, r->nhttps, sizeof(*r->https), http_cmp);
    qsort(r->listeners, r->nlisteners, sizeof(*r->listeners), listener_cmp);
    rc = 0;
out:
    free(used_h);
    free(used_l);
    return rc;
}

/* ---- Rendering ---- */

static void write_families(struct render *r)
{
    const struct family *order[PT_ARRAY_SIZE(families)];

    for (size_t i = 0; i < PT_ARRAY_SIZE(families); i++)
        order[i] = &families[i];
    qsort(order, PT_ARRAY_SIZE(order), sizeof(order[0]), family_cmp);
    for (size_t i = 0; i < PT_ARRAY_SIZE(order); i++) {
        r->fam = order[i];
        r->typed = false;
        order[i]->emit(r, order[i]);
    }
}

char *pt_metrics__render_with(const struct pt_snapshot *s, const struct pt_reload_stats *rs,
                              time_t now, size_t *len)
{
    struct render r = { .snap = s, .rs = rs, .now = now };
    char *buf = NULL;
    size_t size = 0;
    int rc;

    pt_stats__server(&r.srv);
    r.srv.trace_sent += pt_zipkin_spans_sent(); /* the exporter keeps its own counts */
    r.srv.trace_dropped += pt_zipkin_spans_dropped();
    rc = collect_clusters(&r);
    if (rc == 0)
        rc = collect_http_listeners(&r);
    if (rc == 0)
        r.f = open_memstream(&buf, &size);
    if (r.f != NULL) {
        write_families(&r);
        rc = ferror(r.f) ? PT_NOMEM : 0;
        if (fclose(r.f) != 0)
            rc = PT_NOMEM;
    }
    for (uint32_t i = 0; i < r.nclusters; i++)
        free(r.clusters[i].grpc);
    free(r.clusters);
    free(r.https);
    free(r.listeners);
    if (r.f == NULL || rc != 0) {
        free(buf);
        return NULL;
    }
    *len = size;
    return buf;
}

char *pt_metrics_render(const struct pt_snapshot *s, const struct pt_reload_stats *rs, size_t *len)
{
    return pt_metrics__render_with(s, rs, time(NULL), len);
}
