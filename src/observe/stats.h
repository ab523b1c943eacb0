/* Statistics: the registry of stats names (control thread), per-worker blocks of plain
 * counters (each written by one worker, no locks and no atomic read-modify-write on the request
 * path), and the sums the /metrics renderer reads (observe/metrics.c).
 *
 * How the pieces fit:
 *   - config compile asks the registry for a stable index per cluster stats name, HTTP
 *     connection manager prefix and listener address, and stores it in the snapshot
 *     (pt_cluster.stats_idx, pt_listener.stats_idx / stats_prefix_idx). Indexes are never
 *     reused, so counters stay cumulative across reloads.
 *   - each worker owns one struct pt_stats_worker (pt_stats_worker_new, then
 *     pt_stats_register_worker from the control thread before the worker runs) and counts with
 *     the inline accessors below:
 *
 *         struct pt_cluster_stats *cs = pt_stats_cluster(w->stats, cl->stats_idx);
 *         if (cs != NULL) {
 *             pt_stats_inc(&cs->upstream_rq_total);
 *             pt_gauge_inc(&cs->upstream_rq_active);
 *         }
 *         ...
 *         pt_stats_upstream_code(cs, status);
 *         pt_hist_record_ms(&cs->upstream_rq_time, now_ms - start_ms);
 *
 *   - the renderer sums the registered workers' blocks at scrape time. */
#ifndef PT_OBSERVE_STATS_H
#define PT_OBSERVE_STATS_H

#include <stddef.h>
#include <time.h>

#include "core/common.h"
#include "observe/stats-t.h"

struct pt_snapshot;

/* ---- Registry of stats names (control thread only) ---- */

/* pt_stats_cluster_index: the stable index of the cluster stats name <stats_name> (Emissary's
 * alt_stat_name, e.g. "quote_default_80"), registering it the first time. The same name always
 * gives the same index for the life of the process. Returns PT_STATS_IDX_NONE (0) when <name> is
 * NULL or the registry is full (PT_STATS_MAX_CLUSTERS; logged once). The name is copied. */
uint32_t pt_stats_cluster_index(const char *stats_name);

/* pt_stats_prefix_index: the same for an HTTP connection manager stats prefix ("ingress_http",
 * "ingress_https", a Listener's statsPrefix). At most PT_STATS_MAX_HTTP. */
uint32_t pt_stats_prefix_index(const char *hcm_prefix);

/* pt_stats_listener_index: the same for a listener address as Envoy tags it: "0.0.0.0_8080",
 * "[::]_8443" (pt_stats_listener_address makes one). At most PT_STATS_MAX_LISTENERS. */
uint32_t pt_stats_listener_index(const char *address);

/* pt_stats_listener_address: writes Envoy's listener address tag for a wildcard IPv4 listener on
 * <port> ("0.0.0.0_8080") into <buf> of <size> bytes; returns <buf>. */
char *pt_stats_listener_address(char *buf, size_t size, int port);

/* ---- Worker blocks ---- */

/* pt_stats_worker_new: a zeroed stats block for worker <worker_id>, or NULL when memory is
 * short. The caller owns it; it must be registered before any scrape can see it. */
struct pt_stats_worker *pt_stats_worker_new(int worker_id);

/* pt_stats_worker_free: frees <w> and its pages. <w> must not be registered any more and no
 * scrape may be running (shutdown, tests). NULL is accepted. */
void pt_stats_worker_free(struct pt_stats_worker *w);

/* pt_stats_register_worker: makes <w> visible to scrapes in slot <id> (0 <= id <
 * PT_STATS_MAX_WORKERS); NULL empties the slot. Control thread; call before the worker starts
 * counting so nothing is missed. */
void pt_stats_register_worker(int id, struct pt_stats_worker *w);

/* pt_stats__cluster_page, pt_stats__http_page, pt_stats__listener_page: the slow path of the
 * accessors below: allocates the page holding <idx> (worker thread) and returns the entry, or
 * NULL when <idx> is out of range or memory is short (the caller then skips counting). */
struct pt_cluster_stats *pt_stats__cluster_page(struct pt_stats_worker *w, uint32_t idx);
struct pt_http_stats *pt_stats__http_page(struct pt_stats_worker *w, uint32_t idx);
struct pt_listener_stats *pt_stats__listener_page(struct pt_stats_worker *w, uint32_t idx);

/* ---- Server-wide values (any thread unless noted) ---- */

/* pt_stats_server_init: records the start time (envoy_server_uptime) and <version>
 * (portico_build_info; the string must outlive the process, e.g. a literal). Call once from
 * main before anything else here; without it uptime counts from the first stats call. */
void pt_stats_server_init(const char *version);

/* pt_stats_set_cert_expiry: the notAfter time of the certificate that expires first among
 * those in use, or 0 when none is loaded (portico_certificate_expiry_seconds is then absent).
 * The TLS code calls it whenever its set of certificates changes. */
void pt_stats_set_cert_expiry(time_t not_after);

/* pt_stats_trace_sent, pt_stats_trace_dropped: add <n> spans to
 * portico_tracing_spans_total{result="sent"|"dropped"} (atomic; the Zipkin exporter). */
void pt_stats_trace_sent(uint64_t n);
void pt_stats_trace_dropped(uint64_t n);

/* pt_stats_accept_paused: one more pause of accepting (portico_accept_pauses_total): accept
 * failed for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), on a worker or the
 * admin server. Atomic; rare by nature. */
void pt_stats_accept_paused(void);

/* pt_stats_admin_rejected: one more admin connection closed at once because
 * --admin-max-connections were open (portico_admin_connections_rejected_total). */
void pt_stats_admin_rejected(void);

/* ---- For the renderer (observe/metrics.c) and tests; control thread ---- */

/* pt_stats__count: one more than the highest index registered in <scope> (index 0 is never
 * registered). */
uint32_t pt_stats__count(enum pt_stats_scope scope);

/* pt_stats__name: the name registered at <idx> in <scope>, or NULL. */
const char *pt_stats__name(enum pt_stats_scope scope, uint32_t idx);

/* pt_stats__find: the index of <name> in <scope> without registering it; 0 when absent. */
uint32_t pt_stats__find(enum pt_stats_scope scope, const char *name);

/* pt_stats__sum_cluster, pt_stats__sum_http, pt_stats__sum_listener: the entry <idx> summed
 * over every registered worker into <out> (overwritten). Reads race with the workers' writes by
 * design: each word is read whole, sums are what the workers had counted at about that time. */
void pt_stats__sum_cluster(uint32_t idx, struct pt_cluster_sum *out);
void pt_stats__sum_http(uint32_t idx, struct pt_http_stats *out);
void pt_stats__sum_listener(uint32_t idx, struct pt_listener_stats *out);

/* pt_stats__worker, pt_stats__workers_end: the block registered in slot <i> (NULL: none), and
 * one past the highest slot ever registered (observe/grpcstats.c sums its own tables). */
struct pt_stats_worker *pt_stats__worker(int i);
int pt_stats__workers_end(void);

/* pt_stats__server: the values set by the functions above. */
struct pt_stats_server {
    const char *version;
    time_t started;
    time_t cert_expiry;
    uint64_t trace_sent, trace_dropped;
    uint64_t accept_pauses, admin_rejected;
    int nworkers; /* registered worker blocks */
};
void pt_stats__server(struct pt_stats_server *out);

/* pt_metrics__render_with: the /metrics page for snapshot <s> (may be NULL), reload counters
 * <rs> (may be NULL) and wall clock <now>; malloc'ed, *len bytes, NUL-terminated; NULL when
 * memory is short. pt_metrics_render (metrics.h) calls it with the clock; tests call it with a
 * synthetic state. */
char *pt_metrics__render_with(const struct pt_snapshot *s, const struct pt_reload_stats *rs,
                              time_t now, size_t *len);

/* Upper bounds of the histogram buckets, padded with +Inf to 32 entries for the branchless
 * search in pt_hist_record_ms. */
extern const double pt_hist__bounds[32];

/* ---- Inline fast path (worker thread) ---- */

/* pt_stats_inc, pt_stats_add: add to a counter of the calling worker's own block. A relaxed
 * atomic load and store: plain mov/add instructions (no lock prefix, no fence), which also
 * keeps the compiler from tearing or caching the word that the scraper reads concurrently. */
static inline void pt_stats_add(uint64_t *c, uint64_t n)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline void pt_stats_inc(uint64_t *c)
{
    pt_stats_add(c, 1);
}

/* pt_gauge_add, pt_gauge_inc, pt_gauge_dec: move a gauge of the worker's own block. Each
 * worker's share may go below zero when one worker decrements what another incremented; the
 * sum over workers is what is reported. */
static inline void pt_gauge_add(int64_t *g, int64_t d)
{
    __atomic_store_n(g, __atomic_load_n(g, __ATOMIC_RELAXED) + d, __ATOMIC_RELAXED);
}

static inline void pt_gauge_inc(int64_t *g)
{
    pt_gauge_add(g, 1);
}

static inline void pt_gauge_dec(int64_t *g)
{
    pt_gauge_add(g, -1);
}

/* pt_stats_cluster: worker <w>'s counters for cluster stats index <idx>, or NULL (index out of
 * range, or no memory for a new page: skip counting). Two loads once the page exists. */
static inline struct pt_cluster_stats *pt_stats_cluster(struct pt_stats_worker *w, uint32_t idx)
{
    if (PT_LIKELY(idx < PT_STATS_MAX_CLUSTERS)) {
        struct pt_cluster_stats *page =
            __atomic_load_n(&w->_cluster_pages[idx / PT_STATS_PAGE], __ATOMIC_RELAXED);
        if (PT_LIKELY(page != NULL))
            return &page[idx % PT_STATS_PAGE];
    }
    return pt_stats__cluster_page(w, idx);
}

/* pt_stats_http: worker <w>'s counters for HTTP connection manager prefix index <idx>, or NULL. */
static inline struct pt_http_stats *pt_stats_http(struct pt_stats_worker *w, uint32_t idx)
{
    if (PT_LIKELY(idx < PT_STATS_MAX_HTTP)) {
        struct pt_http_stats *page =
            __atomic_load_n(&w->_http_pages[idx / PT_STATS_PAGE], __ATOMIC_RELAXED);
        if (PT_LIKELY(page != NULL))
            return &page[idx % PT_STATS_PAGE];
    }
    return pt_stats__http_page(w, idx);
}

/* pt_stats_listener: worker <w>'s counters for listener address index <idx>, or NULL. */
static inline struct pt_listener_stats *pt_stats_listener(struct pt_stats_worker *w, uint32_t idx)
{
    if (PT_LIKELY(idx < PT_STATS_MAX_LISTENERS)) {
        struct pt_listener_stats *page =
            __atomic_load_n(&w->_listener_pages[idx / PT_STATS_PAGE], __ATOMIC_RELAXED);
        if (PT_LIKELY(page != NULL))
            return &page[idx % PT_STATS_PAGE];
    }
    return pt_stats__listener_page(w, idx);
}

/* pt_hist_bucket: the bucket of a sample of <ms>: the first i with ms <= bound[i] (so 0.5 goes
 * to le="0.5"), PT_HIST_NBOUNDS above the last bound; negative and NaN go to bucket 0. A
 * five-step branchless binary search over the padded bound table. */
static inline unsigned pt_hist_bucket(double ms)
{
    const double *b = pt_hist__bounds;
    b += b[15] < ms ? 16 : 0;
    b += b[7] < ms ? 8 : 0;
    b += b[3] < ms ? 4 : 0;
    b += b[1] < ms ? 2 : 0;
    b += b[0] < ms ? 1 : 0;
    return (unsigned)(b - pt_hist__bounds);
}

/* pt_hist_record_ms: records one sample of <ms> milliseconds in <h> (worker's own block). */
static inline void pt_hist_record_ms(struct pt_hist *h, double ms)
{
    int64_t us = 0; /* signed: the cheaper conversion from double; never above 1e18 */
    if (ms > 0)
        us = ms < 1e15 ? (int64_t)(ms * 1000.0 + 0.5) : INT64_C(1000000000000000000);
    pt_stats_inc(&h->bucket[pt_hist_bucket(ms)]);
    pt_stats_add(&h->sum_us, (uint64_t)us);
}

/* pt_stats_upstream_code: counts a response of <status> for the cluster: its class in
 * upstream_rq_xx and the code itself in the code table (codes 100-999; a code that finds the
 * table full is only counted in its class). <cs> may be NULL. */
static inline void pt_stats_upstream_code(struct pt_cluster_stats *cs, int status)
{
    unsigned cls = (unsigned)(status / 100 - 1);
    if (cs == NULL || status < 100 || status > 999)
        return;
    if (cls < 5)
        pt_stats_inc(&cs->upstream_rq_xx[cls]);
    uint64_t tag = (uint64_t)status << PT_STATS_CODE_SHIFT;
    unsigned i = (unsigned)status % PT_STATS_CODE_SLOTS;
    for (unsigned n = 0; n < PT_STATS_CODE_SLOTS; n++, i = (i + 1) % PT_STATS_CODE_SLOTS) {
        uint64_t v = __atomic_load_n(&cs->_codes[i], __ATOMIC_RELAXED);
        if ((v & ~PT_STATS_CODE_COUNT_MASK) == tag || v == 0) {
            __atomic_store_n(&cs->_codes[i], (v == 0 ? tag : v) + 1, __ATOMIC_RELAXED);
            return;
        }
    }
}

/* pt_stats_downstream_code: counts a response of <status> in downstream_rq_xx and
 * downstream_rq_completed. <hs> may be NULL. */
static inline void pt_stats_downstream_code(struct pt_http_stats *hs, int status)
{
    unsigned cls = (unsigned)(status / 100 - 1);
    if (hs == NULL)
        return;
    pt_stats_inc(&hs->downstream_rq_completed);
    if (cls < 5 && status >= 100)
        pt_stats_inc(&hs->downstream_rq_xx[cls]);
}

#endif
