/* Statistics storage: the append-only registries that give each cluster stats name, HTTP
 * connection manager prefix and listener address a stable index (control thread), the worker
 * blocks and their lazily allocated pages (written by one worker each), and the summing over
 * registered workers that the /metrics renderer (observe/metrics.c) does at scrape time.
 * Counting itself is inline in observe/stats.h; nothing here runs per request except the
 * first count against a new page. */
#include "observe/stats.h"
#include "observe/grpcstats.h"
#include "core/log.h"
#include "core/strmap.h"

#include <math.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

const double pt_hist__bounds[32] = {
    0.5,      1,        5,        10,       25,       50,       100,      250,
    500,      1000,     2500,     5000,     10000,    30000,    60000,    300000,
    600000,   1800000,  3600000,  INFINITY, INFINITY, INFINITY, INFINITY, INFINITY,
    INFINITY, INFINITY, INFINITY, INFINITY, INFINITY, INFINITY, INFINITY, INFINITY,
};

/* One scope's names: index -> name (index 0 unused) and name -> index. Control thread. */
struct registry {
    struct pt_strmap map; /* value: (void *)(uintptr_t)index */
    char **names;
    uint32_t n, cap, max;
    bool warned;
};

static struct registry registries[PT_STATS_NSCOPES] = {
    [PT_STATS_CLUSTER] = { .max = PT_STATS_MAX_CLUSTERS },
    [PT_STATS_HTTP] = { .max = PT_STATS_MAX_HTTP },
    [PT_STATS_LISTENER] = { .max = PT_STATS_MAX_LISTENERS },
};

static const char *const scope_names[PT_STATS_NSCOPES] = { "cluster", "HTTP prefix", "listener" };

static _Atomic(struct pt_stats_worker *) workers[PT_STATS_MAX_WORKERS];
static atomic_int workers_end; /* one past the highest slot ever registered */

static struct {
    const char *version;
    atomic_llong started;
    atomic_llong cert_expiry;
    atomic_uint_fast64_t trace_sent, trace_dropped;
    atomic_uint_fast64_t accept_pauses, admin_rejected;
} server = { .version = "unknown" };

static void note_start(void)
{
    long long zero = 0;
    atomic_compare_exchange_strong(&server.started, &zero, (long long)time(NULL));
}

static uint32_t registry_index(enum pt_stats_scope scope, const char *name)
{
    struct registry *r = &registries[scope];
    void *found;

    note_start();
    if (name == NULL)
        return PT_STATS_IDX_NONE;
    found = pt_strmap_get(&r->map, name, strlen(name));
    if (found != NULL)
        return (uint32_t)(uintptr_t)found;
    if (r->n == 0)
        r->n = 1; /* index 0 is PT_STATS_IDX_NONE */
    if (r->n >= r->max) {
        if (!r->warned)
            pt_warn("stats: more than %u %s stats names; the rest are not counted", r->max - 1,
                    scope_names[scope]);
        r->warned = true;
        return PT_STATS_IDX_NONE;
    }
    if (r->n >= r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->names = pt_xrealloc(r->names, r->cap * sizeof(*r->names));
    }
    r->names[r->n] = pt_xstrdup(name);
    pt_strmap_put(&r->map, r->names[r->n], strlen(name), (void *)(uintptr_t)r->n);
    return r->n++;
}

uint32_t pt_stats_cluster_index(const char *stats_name)
{
    return registry_index(PT_STATS_CLUSTER, stats_name);
}

uint32_t pt_stats_prefix_index(const char *hcm_prefix)
{
    return registry_index(PT_STATS_HTTP, hcm_prefix);
}

uint32_t pt_stats_listener_index(const char *address)
{
    return registry_index(PT_STATS_LISTENER, address);
}

char *pt_stats_listener_address(char *buf, size_t size, int port)
{
    snprintf(buf, size, "0.0.0.0_%d", port);
    return buf;
}

uint32_t pt_stats__count(enum pt_stats_scope scope)
{
    return registries[scope].n ? registries[scope].n : 1;
}

const char *pt_stats__name(enum pt_stats_scope scope, uint32_t idx)
{
    const struct registry *r = &registries[scope];
    return idx > 0 && idx < r->n ? r->names[idx] : NULL;
}

uint32_t pt_stats__find(enum pt_stats_scope scope, const char *name)
{
    return (uint32_t)(uintptr_t)pt_strmap_get(&registries[scope].map, name, strlen(name));
}

struct pt_stats_worker *pt_stats_worker_new(int worker_id)
{
    struct pt_stats_worker *w = calloc(1, sizeof(*w));

    note_start();
    if (w != NULL)
        w->id = worker_id;
    return w;
}

static void free_pages(void **pages, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        free(pages[i]);
}

void pt_stats_worker_free(struct pt_stats_worker *w)
{
    if (w == NULL)
        return;
    free_pages(w->_cluster_pages, PT_STATS_CLUSTER_PAGES);
    free_pages(w->_http_pages, PT_STATS_HTTP_PAGES);
    free_pages(w->_listener_pages, PT_STATS_LISTENER_PAGES);
    pt_grpcstats__free(w);
    free(w);
}

void pt_stats_register_worker(int id, struct pt_stats_worker *w)
{
    if (id < 0 || id >= PT_STATS_MAX_WORKERS) {
        pt_error("stats: worker id %d out of range", id);
        return;
    }
    atomic_store_explicit(&workers[id], w, memory_order_release);
    if (w != NULL && id >= atomic_load(&workers_end))
        atomic_store(&workers_end, id + 1);
}

/* new_page: allocates the page of <pages> that holds <idx> and publishes it for the scraper.
 * Worker thread; the page table is written by this worker only. */
static void *new_page(void **pages, uint32_t npages, size_t esize, uint32_t idx)
{
    uint32_t p = idx / PT_STATS_PAGE;
    void *page;

    if (p >= npages)
        return NULL;
    page = __atomic_load_n(&pages[p], __ATOMIC_RELAXED);
    if (page == NULL) {
        page = calloc(PT_STATS_PAGE, esize);
        if (page == NULL)
            return NULL;
        __atomic_store_n(&pages[p], page, __ATOMIC_RELEASE);
    }
    return (char *)page + (idx % PT_STATS_PAGE) * esize;
}

struct pt_cluster_stats *pt_stats__cluster_page(struct pt_stats_worker *w, uint32_t idx)
{
    return new_page(w->_cluster_pages, PT_STATS_CLUSTER_PAGES, sizeof(struct pt_cluster_stats),
                    idx);
}

struct pt_http_stats *pt_stats__http_page(struct pt_stats_worker *w, uint32_t idx)
{
    return new_page(w->_http_pages, PT_STATS_HTTP_PAGES, sizeof(struct pt_http_stats), idx);
}

struct pt_listener_stats *pt_stats__listener_page(struct pt_stats_worker *w, uint32_t idx)
{
    return new_page(w->_listener_pages, PT_STATS_LISTENER_PAGES,
                    sizeof(struct pt_listener_stats), idx);
}

/* Summing. Every field is a 64-bit word and wrapping addition is the same for signed and
 * unsigned words, so an entry sums as an array of words. */

/* worker_entry: worker <i>'s entry <idx> of the page table at byte offset <table_off>, or NULL
 * when that worker is not registered or never counted in that page. */
static const uint64_t *worker_entry(int i, size_t table_off, uint32_t npages, size_t esize,
                                    uint32_t idx)
{
    struct pt_stats_worker *w = atomic_load_explicit(&workers[i], memory_order_acquire);
    void **pages;
    void *page;

    if (w == NULL || idx / PT_STATS_PAGE >= npages)
        return NULL;
    pages = (void **)((char *)w + table_off);
    page = __atomic_load_n(&pages[idx / PT_STATS_PAGE], __ATOMIC_ACQUIRE);
    return page ? (const uint64_t *)((char *)page + (idx % PT_STATS_PAGE) * esize) : NULL;
}

static void add_words(uint64_t *dst, const uint64_t *src, size_t nwords)
{
    for (size_t k = 0; k < nwords; k++)
        dst[k] += __atomic_load_n(&src[k], __ATOMIC_RELAXED);
}

static void sum_entries(void *out, size_t table_off, uint32_t npages, size_t esize, size_t nwords,
                        uint32_t idx)
{
    int end = atomic_load(&workers_end);

    memset(out, 0, esize);
    for (int i = 0; i < end; i++) {
        const uint64_t *e = worker_entry(i, table_off, npages, esize, idx);
        if (e != NULL)
            add_words(out, e, nwords);
    }
}

/* merge_code: adds <count> responses of <code> to <out>'s code list (dropped when full). */
static void merge_code(struct pt_cluster_sum *out, uint32_t code, uint64_t count)
{
    for (uint32_t k = 0; k < out->ncodes; k++) {
        if (out->codes[k].code == code) {
            out->codes[k].count += count;
            return;
        }
    }
    if (out->ncodes < PT_STATS_CODES_MAX)
        out->codes[out->ncodes++] = (struct pt_code_total){ code, count };
}

static int code_cmp(const void *a, const void *b)
{
    const struct pt_code_total *x = a, *y = b;
    return (x->code > y->code) - (x->code < y->code);
}

void pt_stats__sum_cluster(uint32_t idx, struct pt_cluster_sum *out)
{
    const size_t off = offsetof(struct pt_stats_worker, _cluster_pages);
    const size_t esize = sizeof(struct pt_cluster_stats);
    int end = atomic_load(&workers_end);

    sum_entries(&out->s, off, PT_STATS_CLUSTER_PAGES, esize,
                offsetof(struct pt_cluster_stats, _codes) / sizeof(uint64_t), idx);
    out->ncodes = 0;
    for (int i = 0; i < end; i++) {
        const uint64_t *e = worker_entry(i, off, PT_STATS_CLUSTER_PAGES, esize, idx);
        const uint64_t *codes =
            e ? e + offsetof(struct pt_cluster_stats, _codes) / sizeof(uint64_t) : NULL;
        for (uint32_t k = 0; codes != NULL && k < PT_STATS_CODE_SLOTS; k++) {
            uint64_t v = __atomic_load_n(&codes[k], __ATOMIC_RELAXED);
            if (v != 0)
                merge_code(out, (uint32_t)(v >> PT_STATS_CODE_SHIFT),
                           v & PT_STATS_CODE_COUNT_MASK);
        }
    }
    qsort(out->codes, out->ncodes, sizeof(out->codes[0]), code_cmp);
}

void pt_stats__sum_http(uint32_t idx, struct pt_http_stats *out)
{
    sum_entries(out, offsetof(struct pt_stats_worker, _http_pages), PT_STATS_HTTP_PAGES,
                sizeof(*out), sizeof(*out) / sizeof(uint64_t), idx);
}

void pt_stats__sum_listener(uint32_t idx, struct pt_listener_stats *out)
{
    sum_entries(out, offsetof(struct pt_stats_worker, _listener_pages), PT_STATS_LISTENER_PAGES,
                sizeof(*out), sizeof(*out) / sizeof(uint64_t), idx);
}

/* Server-wide values. */

void pt_stats_server_init(const char *version)
{
    atomic_store(&server.started, (long long)time(NULL));
    if (version != NULL)
        server.version = version;
}

void pt_stats_set_cert_expiry(time_t not_after)
{
    atomic_store(&server.cert_expiry, (long long)not_after);
}

void pt_stats_trace_sent(uint64_t n)
{
    atomic_fetch_add_explicit(&server.trace_sent, n, memory_order_relaxed);
}

void pt_stats_trace_dropped(uint64_t n)
{
    atomic_fetch_add_explicit(&server.trace_dropped, n, memory_order_relaxed);
}

void pt_stats_accept_paused(void)
{
    atomic_fetch_add_explicit(&server.accept_pauses, 1, memory_order_relaxed);
}

void pt_stats_admin_rejected(void)
{
    atomic_fetch_add_explicit(&server.admin_rejected, 1, memory_order_relaxed);
}

void pt_stats__server(struct pt_stats_server *out)
{
    note_start();
    out->version = server.version;
    out->started = (time_t)atomic_load(&server.started);
    out->cert_expiry = (time_t)atomic_load(&server.cert_expiry);
    out->trace_sent = atomic_load_explicit(&server.trace_sent, memory_order_relaxed);
    out->trace_dropped = atomic_load_explicit(&server.trace_dropped, memory_order_relaxed);
    out->accept_pauses = atomic_load_explicit(&server.accept_pauses, memory_order_relaxed);
    out->admin_rejected = atomic_load_explicit(&server.admin_rejected, memory_order_relaxed);
    out->nworkers = 0;
    for (int i = 0; i < PT_STATS_MAX_WORKERS; i++)
        if (atomic_load_explicit(&workers[i], memory_order_relaxed) != NULL)
            out->nworkers++;
}

struct pt_stats_worker *pt_stats__worker(int i)
{
    return i >= 0 && i < PT_STATS_MAX_WORKERS ? atomic_load_explicit(&workers[i], memory_order_acquire) : NULL;
}

int pt_stats__workers_end(void)
{
    return atomic_load(&workers_end);
}
