/* The Module's grpc_stats counters (observe/grpcstats.h): a call's messages and final
 * grpc-status gathered on the stream, then counted once when it ends into its worker's table
 * for the cluster (allocated the first time, published with a release store; each named slot
 * is claimed once, its name written before its length), and the sums over the workers that
 * the /metrics renderer reads. */
#include "observe/grpcstats.h"
#include "observe/stats.h"

#include <stdlib.h>
#include <string.h>

void pt_grpcstats_feed(struct pt_grpc_call *gc, bool up, const struct iovec *iov, int n)
{
    struct pt_grpc_msgs *m = up ? &gc->req : &gc->resp;

    for (int i = 0; i < n; i++)
        pt_grpc_msgs_feed(m, iov[i].iov_base, iov[i].iov_len);
}

void pt_grpcstats_status(struct pt_grpc_call *gc, const struct pt_header *h, size_t n)
{
    const struct pt_header *s = pt_header_find(h, n, PT_STR_LIT("grpc-status"));

    if (s != NULL) /* Envoy: success is the value "0", anything else a failure */
        gc->status = s->value.len == 1 && s->value.ptr[0] == '0' ? 0 : 2;
}

/* method_name: the "service/method" of gRPC :path <path> ("/service/method", one '/' inside),
 * or an empty string when it is not one or is longer than a series name may be. */
static struct pt_str method_name(struct pt_str path)
{
    const char *slash;

    if (path.len < 4 || path.ptr[0] != '/' || path.len - 1 > PT_GRPCSTATS_NAME_MAX)
        return (struct pt_str){ 0 };
    slash = memchr(path.ptr + 1, '/', path.len - 1);
    if (slash == NULL || slash == path.ptr + 1 || slash == path.ptr + path.len - 1 ||
        memchr(slash + 1, '/', (size_t)(path.ptr + path.len - slash - 1)) != NULL)
        return (struct pt_str){ 0 };
    return pt_str_make(path.ptr + 1, path.len - 1);
}

/* allowed: <name> is in the Module's allowlist. */
static bool allowed(const struct pt_grpcstats_cfg *cfg, struct pt_str name)
{
    for (unsigned i = 0; i < cfg->n; i++)
        if (cfg->m[i].len == name.len && memcmp(cfg->m[i].name, name.ptr, name.len) == 0)
            return true;
    return false;
}

/* table: worker <w>'s table for cluster stats index <idx>, allocated the first time; NULL when
 * <idx> is out of range or memory is short (the call is then not counted). */
static struct pt_grpc_table *table(struct pt_stats_worker *w, uint32_t idx)
{
    struct pt_grpc_table **page, *t;

    if (idx == PT_STATS_IDX_NONE || idx >= PT_STATS_MAX_CLUSTERS)
        return NULL;
    page = __atomic_load_n(&w->_grpc_pages[idx / PT_STATS_PAGE], __ATOMIC_RELAXED);
    if (page == NULL) {
        if ((page = calloc(PT_STATS_PAGE, sizeof(*page))) == NULL)
            return NULL;
        __atomic_store_n(&w->_grpc_pages[idx / PT_STATS_PAGE], (void *)page, __ATOMIC_RELEASE);
    }
    t = __atomic_load_n(&page[idx % PT_STATS_PAGE], __ATOMIC_RELAXED);
    if (t == NULL) {
        if ((t = calloc(1, sizeof(*t))) == NULL)
            return NULL;
        __atomic_store_n(&page[idx % PT_STATS_PAGE], t, __ATOMIC_RELEASE);
    }
    return t;
}

/* series: the counters of <name> in <t>: its slot, a free slot claimed for it, or the generic
 * series when <name> is empty or every slot is taken. */
static struct pt_grpc_counts *series(struct pt_grpc_table *t, struct pt_str name)
{
    if (name.len == 0)
        return &t->generic;
    for (unsigned i = 0; i < PT_GRPCSTATS_SLOTS; i++) {
        struct pt_grpc_slot *s = &t->slot[i];
        uint32_t len = __atomic_load_n(&s->len, __ATOMIC_RELAXED);
        if (len == 0) { /* slots fill in order: <name> is not there yet */
            memcpy(s->name, name.ptr, name.len);
            __atomic_store_n(&s->len, (uint32_t)name.len, __ATOMIC_RELEASE);
            return &s->c;
        }
        if (len == name.len && memcmp(s->name, name.ptr, len) == 0)
            return &s->c;
    }
    return &t->generic;
}

void pt_grpcstats_end(struct pt_stats_worker *w, const struct pt_grpcstats_cfg *cfg, struct pt_grpc_call *gc,
                      uint32_t cluster_idx, struct pt_str path, double upstream_ms)
{
    struct pt_grpc_table *t;
    struct pt_grpc_counts *c;
    struct pt_str name;

    if (!gc->on)
        return;
    gc->on = false; /* once */
    if (gc->status < 0 && gc->req.count == 0 && gc->resp.count == 0)
        return; /* nothing to count: no series is made for it */
    if ((t = table(w, cluster_idx)) == NULL)
        return;
    name = gc->generic ? (struct pt_str){ 0 } : method_name(path);
    if (name.len != 0 && !cfg->all_methods && !allowed(cfg, name))
        name.len = 0;
    c = series(t, name);
    pt_stats_add(&c->request_message_count, gc->req.count);
    pt_stats_add(&c->response_message_count, gc->resp.count);
    if (gc->status < 0)
        return; /* Envoy counts a call only with its grpc-status */
    pt_stats_inc(&c->total);
    pt_stats_inc(gc->status == 0 ? &c->success : &c->failure);
    if (cfg->upstream_stats && upstream_ms >= 0)
        pt_hist_record_ms(&c->upstream_rq_time, upstream_ms);
}

void pt_grpcstats__free(struct pt_stats_worker *w)
{
    for (uint32_t p = 0; p < PT_STATS_CLUSTER_PAGES; p++) {
        struct pt_grpc_table **page = w->_grpc_pages[p];
        if (page == NULL)
            continue;
        for (uint32_t i = 0; i < PT_STATS_PAGE; i++)
            free(page[i]);
        free(page);
    }
}

/* add_counts: <in> (another thread's, read word by word) added to <out>. */
static void add_counts(struct pt_grpc_counts *out, const struct pt_grpc_counts *in)
{
    uint64_t *o = (uint64_t *)out;
    const uint64_t *s = (const uint64_t *)in;

    for (size_t k = 0; k < sizeof(*out) / sizeof(uint64_t); k++)
        o[k] += __atomic_load_n(&s[k], __ATOMIC_RELAXED);
}

static int ent_cmp(const void *a, const void *b)
{
    return strcmp(((const struct pt_grpcstats_ent *)a)->name, ((const struct pt_grpcstats_ent *)b)->name);
}

struct pt_grpcstats_sum *pt_grpcstats__sum(uint32_t idx)
{
    struct pt_grpcstats_sum *sum = NULL;
    uint32_t cap = 0;
    int end = pt_stats__workers_end();

    if (idx == PT_STATS_IDX_NONE || idx >= PT_STATS_MAX_CLUSTERS)
        return NULL;
    for (int i = 0; i < end; i++) {
        struct pt_stats_worker *w = pt_stats__worker(i);
        struct pt_grpc_table **page, *t;
        if (w == NULL)
            continue;
        page = __atomic_load_n(&w->_grpc_pages[idx / PT_STATS_PAGE], __ATOMIC_ACQUIRE);
        if (page == NULL || (t = __atomic_load_n(&page[idx % PT_STATS_PAGE], __ATOMIC_ACQUIRE)) == NULL)
            continue;
        if (sum == NULL && (sum = calloc(1, sizeof(*sum))) == NULL)
            return NULL;
        add_counts(&sum->generic, &t->generic);
        for (unsigned k = 0; k < PT_GRPCSTATS_SLOTS; k++) {
            const struct pt_grpc_slot *s = &t->slot[k];
            uint32_t len = __atomic_load_n(&s->len, __ATOMIC_ACQUIRE), j;
            if (len == 0)
                break;
            for (j = 0; j < sum->n; j++)
                if (strlen(sum->ent[j].name) == len && memcmp(sum->ent[j].name, s->name, len) == 0)
                    break;
            if (j == sum->n) { /* a name no worker before had */
                if (sum->n == cap) {
                    struct pt_grpcstats_sum *more;
                    cap = cap ? cap * 2 : PT_GRPCSTATS_SLOTS;
                    more = realloc(sum, sizeof(*sum) + cap * sizeof(sum->ent[0]));
                    if (more == NULL) {
                        free(sum);
                        return NULL;
                    }
                    sum = more;
                }
                memset(&sum->ent[j], 0, sizeof(sum->ent[j]));
                memcpy(sum->ent[j].name, s->name, len);
                sum->ent[j].svc_len = (uint32_t)((const char *)memchr(s->name, '/', len) - s->name);
                sum->n++;
            }
            add_counts(&sum->ent[j].c, &s->c);
        }
    }
    if (sum != NULL)
        qsort(sum->ent, sum->n, sizeof(sum->ent[0]), ent_cmp);
    return sum;
}
