/* Unit tests for src/observe/stats.c and src/observe/metrics.c: the stats-name registry, page
 * growth of worker blocks, histogram bucket edges, response-code tables, a writer thread
 * counting while the control thread sums and renders, and the /metrics text itself (ordering,
 * escaping, dynamic series, `promtool check metrics`). The registries and the table of
 * registered workers are process-wide, so every test uses its own names and unregisters the
 * blocks it registered. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/snapshot-t.h"
#include "observe/stats.h"

/* ---- Registry ---- */

static void test_registry_stable(void **state)
{
    uint32_t a = pt_stats_cluster_index("reg_quote");
    uint32_t b = pt_stats_cluster_index("reg_quote_default_80");
    char addr[32];

    assert_int_not_equal(a, PT_STATS_IDX_NONE);
    assert_int_not_equal(b, PT_STATS_IDX_NONE);
    assert_int_not_equal(a, b);
    assert_true(b > a); /* append-only */
    for (int i = 0; i < 1000; i++)
        pt_stats_cluster_index(i % 2 ? "reg_other_a" : "reg_other_b");
    assert_int_equal(pt_stats_cluster_index("reg_quote"), a); /* stable however often asked */
    assert_int_equal(pt_stats_cluster_index("reg_quote_default_80"), b);
    assert_int_equal(pt_stats__find(PT_STATS_CLUSTER, "reg_quote"), a);
    assert_int_equal(pt_stats__find(PT_STATS_CLUSTER, "reg_never"), PT_STATS_IDX_NONE);
    assert_string_equal(pt_stats__name(PT_STATS_CLUSTER, a), "reg_quote");
    assert_null(pt_stats__name(PT_STATS_CLUSTER, 0));
    assert_null(pt_stats__name(PT_STATS_CLUSTER, pt_stats__count(PT_STATS_CLUSTER)));
    assert_int_equal(pt_stats_cluster_index(NULL), PT_STATS_IDX_NONE);

    /* Scopes are separate: the same string has its own index in each. */
    uint32_t p = pt_stats_prefix_index("reg_quote");
    assert_int_not_equal(p, PT_STATS_IDX_NONE);
    assert_int_equal(pt_stats_prefix_index("reg_quote"), p);
    assert_string_equal(pt_stats_listener_address(addr, sizeof(addr), 8080), "0.0.0.0_8080");
    uint32_t l = pt_stats_listener_index(addr);
    assert_int_equal(pt_stats_listener_index("0.0.0.0_8080"), l);
    assert_string_equal(pt_stats__name(PT_STATS_LISTENER, l), "0.0.0.0_8080");

    /* Many names: indexes keep counting up, earlier ones unchanged. */
    uint32_t prev = b;
    for (int i = 0; i < 3000; i++) {
        char nm[32];
        snprintf(nm, sizeof(nm), "reg_many_%d", i);
        uint32_t k = pt_stats_cluster_index(nm);
        assert_true(k > prev);
        prev = k;
    }
    assert_int_equal(pt_stats_cluster_index("reg_quote"), a);
}

/* ---- Pages ---- */

static void test_page_growth(void **state)
{
    struct pt_stats_worker *w = pt_stats_worker_new(7);
    struct pt_cluster_stats *first[3 * PT_STATS_PAGE];
    struct pt_cluster_sum sum;

    assert_non_null(w);
    assert_int_equal(w->id, 7);
    for (uint32_t i = 0; i < PT_STATS_CLUSTER_PAGES; i++)
        assert_null(w->_cluster_pages[i]);
    /* The first count in a page allocates it; the page then holds its 64 neighbours. */
    struct pt_cluster_stats *c = pt_stats_cluster(w, 130);
    assert_non_null(c);
    assert_non_null(w->_cluster_pages[2]);
    assert_null(w->_cluster_pages[0]);
    assert_null(w->_cluster_pages[1]);
    assert_ptr_equal(pt_stats_cluster(w, 129), c - 1);
    assert_ptr_equal(pt_stats_cluster(w, 191), c + 61);
    assert_null(w->_cluster_pages[3]);
    for (uint32_t i = 0; i < 3 * PT_STATS_PAGE; i++)
        first[i] = pt_stats_cluster(w, i);
    /* Growing never moves an entry. */
    assert_non_null(pt_stats_cluster(w, PT_STATS_MAX_CLUSTERS - 1));
    for (uint32_t i = 0; i < 3 * PT_STATS_PAGE; i++)
        assert_ptr_equal(pt_stats_cluster(w, i), first[i]);
    /* Out of range: NULL, the caller skips counting. */
    assert_null(pt_stats_cluster(w, PT_STATS_MAX_CLUSTERS));
    assert_null(pt_stats_cluster(w, UINT32_MAX));
    assert_null(pt_stats_http(w, PT_STATS_MAX_HTTP));
    assert_null(pt_stats_listener(w, PT_STATS_MAX_LISTENERS));
    assert_non_null(pt_stats_http(w, PT_STATS_MAX_HTTP - 1));
    assert_non_null(pt_stats_listener(w, 3));

    /* A block counts only once registered; unregistering hides it again. */
    pt_stats_inc(&pt_stats_cluster(w, 130)->upstream_rq_total);
    pt_stats__sum_cluster(130, &sum);
    assert_int_equal(sum.s.upstream_rq_total, 0);
    pt_stats_register_worker(7, w);
    pt_stats__sum_cluster(130, &sum);
    assert_int_equal(sum.s.upstream_rq_total, 1);
    pt_stats__sum_cluster(131, &sum);
    assert_int_equal(sum.s.upstream_rq_total, 0);
    pt_stats_register_worker(7, NULL);
    pt_stats__sum_cluster(130, &sum);
    assert_int_equal(sum.s.upstream_rq_total, 0);
    pt_stats_worker_free(w);
    pt_stats_worker_free(NULL);
}

/* Gauges are per-worker shares: one worker's share may be negative, the sum is right. */
static void test_gauges_sum(void **state)
{
    struct pt_stats_worker *a = pt_stats_worker_new(0), *b = pt_stats_worker_new(1);
    uint32_t idx = pt_stats_prefix_index("gauge_prefix");
    struct pt_http_stats sum;

    pt_stats_register_worker(0, a);
    pt_stats_register_worker(1, b);
    for (int i = 0; i < 5; i++)
        pt_gauge_inc(&pt_stats_http(a, idx)->downstream_cx_active);
    pt_gauge_dec(&pt_stats_http(b, idx)->downstream_cx_active);
    pt_gauge_add(&pt_stats_http(b, idx)->downstream_rq_active, -2);
    pt_gauge_add(&pt_stats_http(a, idx)->downstream_rq_active, 2);
    pt_stats_add(&pt_stats_http(a, idx)->downstream_cx_rx_bytes_total, 1000);
    pt_stats_add(&pt_stats_http(b, idx)->downstream_cx_rx_bytes_total, 234);
    pt_stats__sum_http(idx, &sum);
    assert_int_equal(pt_stats_http(b, idx)->downstream_cx_active, -1);
    assert_int_equal(sum.downstream_cx_active, 4);
    assert_int_equal(sum.downstream_rq_active, 0);
    assert_int_equal(sum.downstream_cx_rx_bytes_total, 1234);
    pt_stats_register_worker(0, NULL);
    pt_stats_register_worker(1, NULL);
    pt_stats_worker_free(a);
    pt_stats_worker_free(b);
}

/* ---- Histograms ---- */

static const double bounds[PT_HIST_NBOUNDS] = { 0.5,   1,      5,      10,      25,     50,  100,
                                                250,   500,    1000,   2500,    5000,   10000,
                                                30000, 60000,  300000, 600000, 1800000, 3600000 };

static void test_hist_buckets(void **state)
{
    for (int i = 0; i < PT_HIST_NBOUNDS; i++) {
        assert_true(pt_hist__bounds[i] == bounds[i]);
        /* A sample equal to a bound belongs to that bound's bucket (le is "less or equal"). */
        assert_int_equal(pt_hist_bucket(bounds[i]), i);
        assert_int_equal(pt_hist_bucket(nextafter(bounds[i], INFINITY)), i + 1);
        assert_int_equal(pt_hist_bucket(nextafter(bounds[i], 0)), i);
    }
    assert_int_equal(pt_hist_bucket(0), 0);
    assert_int_equal(pt_hist_bucket(0.25), 0);
    assert_int_equal(pt_hist_bucket(0.75), 1);
    assert_int_equal(pt_hist_bucket(7), 3);
    assert_int_equal(pt_hist_bucket(3600000.5), PT_HIST_NBOUNDS);
    assert_int_equal(pt_hist_bucket(1e300), PT_HIST_NBOUNDS);
    assert_int_equal(pt_hist_bucket(INFINITY), PT_HIST_NBOUNDS);
    assert_int_equal(pt_hist_bucket(-3), 0);
    assert_int_equal(pt_hist_bucket(NAN), 0);

    /* Against a linear scan, over a sweep of values. */
    for (double v = 0.001; v < 1e7; v *= 1.01) {
        unsigned want = PT_HIST_NBOUNDS;
        for (unsigned i = 0; i < PT_HIST_NBOUNDS; i++) {
            if (v <= bounds[i]) {
                want = i;
                break;
            }
        }
        assert_int_equal(pt_hist_bucket(v), want);
    }

    struct pt_hist h = { 0 };
    pt_hist_record_ms(&h, 0.5);
    pt_hist_record_ms(&h, 1.25);
    pt_hist_record_ms(&h, 4000000);
    pt_hist_record_ms(&h, -1);
    assert_int_equal(h.bucket[0], 2); /* 0.5 and the negative sample */
    assert_int_equal(h.bucket[2], 1);
    assert_int_equal(h.bucket[PT_HIST_NBOUNDS], 1);
    assert_int_equal(h.sum_us, 500 + 1250 + 4000000000ull);
}

/* ---- Response codes ---- */

static void test_codes(void **state)
{
    struct pt_stats_worker *a = pt_stats_worker_new(0), *b = pt_stats_worker_new(1);
    uint32_t idx = pt_stats_cluster_index("codes_cluster");
    struct pt_cluster_stats *ca = pt_stats_cluster(a, idx), *cb = pt_stats_cluster(b, idx);
    struct pt_cluster_sum sum;

    pt_stats_register_worker(0, a);
    pt_stats_register_worker(1, b);
    for (int i = 0; i < 10; i++)
        pt_stats_upstream_code(ca, 200);
    pt_stats_upstream_code(ca, 503);
    pt_stats_upstream_code(cb, 503);
    pt_stats_upstream_code(cb, 504); /* 504 % 16 == 200 % 16 in b: no collision there */
    pt_stats_upstream_code(ca, 504); /* in a, 504 probes past 200 */
    pt_stats_upstream_code(cb, 99);  /* not an HTTP status: ignored */
    pt_stats_upstream_code(cb, 1000);
    pt_stats_upstream_code(NULL, 200);
    pt_stats_upstream_code(cb, 600); /* no class, but a code */
    pt_stats__sum_cluster(idx, &sum);
    assert_int_equal(sum.s.upstream_rq_xx[1], 10);
    assert_int_equal(sum.s.upstream_rq_xx[4], 4);
    assert_int_equal(sum.s.upstream_rq_xx[0], 0);
    assert_int_equal(sum.s.upstream_rq_xx[2] + sum.s.upstream_rq_xx[3], 0);
    assert_int_equal(sum.ncodes, 4);
    assert_int_equal(sum.codes[0].code, 200);
    assert_int_equal(sum.codes[0].count, 10);
    assert_int_equal(sum.codes[1].code, 503);
    assert_int_equal(sum.codes[1].count, 2);
    assert_int_equal(sum.codes[2].code, 504);
    assert_int_equal(sum.codes[2].count, 2);
    assert_int_equal(sum.codes[3].code, 600);
    for (unsigned k = 0; k < PT_STATS_CODE_SLOTS; k++)
        assert_int_equal(sum.s._codes[k], 0);

    /* A full table: later codes still count in their class. */
    for (int code = 400; code < 400 + 2 * (int)PT_STATS_CODE_SLOTS; code++)
        pt_stats_upstream_code(ca, code);
    pt_stats__sum_cluster(idx, &sum);
    assert_int_equal(sum.s.upstream_rq_xx[3], 2 * PT_STATS_CODE_SLOTS);
    assert_int_equal(sum.ncodes, PT_STATS_CODE_SLOTS + 1); /* a's 16 slots plus 600 from b */

    struct pt_http_stats hs = { 0 };
    pt_stats_downstream_code(&hs, 404);
    pt_stats_downstream_code(&hs, 200);
    pt_stats_downstream_code(&hs, 700);
    pt_stats_downstream_code(NULL, 200);
    assert_int_equal(hs.downstream_rq_xx[3], 1);
    assert_int_equal(hs.downstream_rq_xx[1], 1);
    assert_int_equal(hs.downstream_rq_completed, 3);
    pt_stats_register_worker(0, NULL);
    pt_stats_register_worker(1, NULL);
    pt_stats_worker_free(a);
    pt_stats_worker_free(b);
}

/* ---- A worker counting while the control thread sums ---- */

#define CONC_CLUSTERS 1000u
#define CONC_ROUNDS 400u

struct conc {
    struct pt_stats_worker *w;
    uint32_t idx[CONC_CLUSTERS];
    volatile int done;
};

static void *conc_writer(void *arg)
{
    struct conc *c = arg;

    /* Each round touches every cluster once, so new pages appear while the reader runs. */
    for (uint32_t r = 0; r < CONC_ROUNDS; r++) {
        for (uint32_t i = 0; i < CONC_CLUSTERS; i++) {
            struct pt_cluster_stats *cs = pt_stats_cluster(c->w, c->idx[i]);
            pt_stats_inc(&cs->upstream_rq_total);
            pt_gauge_inc(&cs->upstream_rq_active);
            pt_stats_upstream_code(cs, r % 2 ? 200 : 503);
            pt_hist_record_ms(&cs->upstream_rq_time, (double)(r % 50));
            pt_gauge_dec(&cs->upstream_rq_active);
        }
    }
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static uint64_t hist_count(const struct pt_hist *h)
{
    uint64_t n = 0;
    for (int i = 0; i < PT_HIST_NBUCKETS; i++)
        n += h->bucket[i];
    return n;
}

static void test_concurrent_sum(void **state)
{
    static struct conc c;
    static uint64_t last[CONC_CLUSTERS];
    static struct pt_cluster_sum sum;
    pthread_t t;
    int scans = 0;

    c.w = pt_stats_worker_new(3);
    assert_non_null(c.w);
    for (uint32_t i = 0; i < CONC_CLUSTERS; i++) {
        char nm[32];
        snprintf(nm, sizeof(nm), "conc_%u", i);
        c.idx[i] = pt_stats_cluster_index(nm);
    }
    pt_stats_register_worker(3, c.w);
    assert_int_equal(pthread_create(&t, NULL, conc_writer, &c), 0);
    do {
        int finished = __atomic_load_n(&c.done, __ATOMIC_ACQUIRE);
        for (uint32_t i = 0; i < CONC_CLUSTERS; i += 7) {
            pt_stats__sum_cluster(c.idx[i], &sum);
            /* Never backwards, never more than was written, never torn. */
            assert_true(sum.s.upstream_rq_total >= last[i]);
            assert_true(sum.s.upstream_rq_total <= CONC_ROUNDS);
            assert_true(hist_count(&sum.s.upstream_rq_time) <= CONC_ROUNDS);
            assert_true(sum.s.upstream_rq_active == 0 || sum.s.upstream_rq_active == 1);
            for (uint32_t k = 0; k < sum.ncodes; k++)
                assert_true(sum.codes[k].code == 200 || sum.codes[k].code == 503);
            last[i] = sum.s.upstream_rq_total;
        }
        scans++;
        if (finished)
            break;
    } while (1);
    pthread_join(t, NULL);
    /* After the writer is done: nothing lost. */
    for (uint32_t i = 0; i < CONC_CLUSTERS; i++) {
        pt_stats__sum_cluster(c.idx[i], &sum);
        assert_int_equal(sum.s.upstream_rq_total, CONC_ROUNDS);
        assert_int_equal(hist_count(&sum.s.upstream_rq_time), CONC_ROUNDS);
        assert_int_equal(sum.s.upstream_rq_active, 0);
        assert_int_equal(sum.s.upstream_rq_xx[1] + sum.s.upstream_rq_xx[4], CONC_ROUNDS);
        assert_int_equal(sum.ncodes, 2);
        assert_int_equal(sum.codes[0].count + sum.codes[1].count, CONC_ROUNDS);
    }
    assert_true(scans >= 1);
    pt_stats_register_worker(3, NULL);
    pt_stats_worker_free(c.w);
}

/* ---- Rendering ---- */

/* A synthetic world: two workers, three clusters in the snapshot (one with a stats name that
 * needs escaping, one sharing its stats name with another), one cluster only in the registry
 * with traffic, one only in the registry without, two listeners. */
struct world {
    struct pt_stats_worker *w[2];
    struct pt_endpoint eps[3];
    struct pt_cluster cl[4];
    struct pt_cluster *clp[4];
    struct pt_listener ls[2];
    struct pt_snapshot snap;
    struct pt_reload_stats rs;
};

#define WEIRD_NAME "we\"ird\\na\nme"
#define WEIRD_ESCAPED "we\\\"ird\\\\na\\nme"

static void world_init(struct world *wd)
{
    static char *names[4] = { "quote", "quote_default_80", WEIRD_NAME, "quote" };
    static char *prefixes[2] = { "ingress_http", "ingress_https" };

    memset(wd, 0, sizeof(*wd));
    for (int i = 0; i < 4; i++) {
        wd->cl[i].stats_name = names[i];
        wd->cl[i].endpoints = wd->eps;
        wd->cl[i].nendpoints = (uint32_t)(i == 3 ? 2 : i + 1);
        /* cluster 1 has no index, as if compile had not registered it */
        wd->cl[i].stats_idx = i == 1 ? 0 : pt_stats_cluster_index(names[i]);
        wd->clp[i] = &wd->cl[i];
    }
    for (int i = 0; i < 2; i++) {
        char addr[32];
        wd->ls[i].port = 8080 + 363 * i;
        wd->ls[i].stats_prefix = prefixes[i];
        wd->ls[i].stats_prefix_idx = pt_stats_prefix_index(prefixes[i]);
        wd->ls[i].stats_idx = pt_stats_listener_index(
            pt_stats_listener_address(addr, sizeof(addr), wd->ls[i].port));
    }
    wd->snap.clusters = wd->clp;
    wd->snap.nclusters = 4;
    wd->snap.listeners = wd->ls;
    wd->snap.nlisteners = 2;
    wd->snap.nresources[PT_RK_MAPPING] = 3;
    wd->snap.nresources[PT_RK_LISTENER] = 2;
    wd->snap.ninvalid = 1;
    wd->rs.ok = 4;
    wd->rs.failed = 1;
    for (int i = 0; i < 2; i++) {
        wd->w[i] = pt_stats_worker_new(i);
        pt_stats_register_worker(i, wd->w[i]);
    }
}

static void world_traffic(struct world *wd)
{
    uint32_t quote = pt_stats_cluster_index("quote");
    uint32_t gone = pt_stats_cluster_index("render_gone_with_traffic");
    uint32_t http = pt_stats_prefix_index("ingress_http");
    uint32_t lis = wd->ls[0].stats_idx;

    pt_stats_cluster_index("render_gone_silent");
    for (int i = 0; i < 2; i++) {
        struct pt_cluster_stats *cs = pt_stats_cluster(wd->w[i], quote);
        struct pt_http_stats *hs = pt_stats_http(wd->w[i], http);
        for (int k = 0; k < 3; k++) {
            pt_stats_inc(&cs->upstream_rq_total);
            pt_stats_upstream_code(cs, k == 2 ? 503 : 200);
            pt_hist_record_ms(&cs->upstream_rq_time, k == 2 ? 0.5 : 7.25);
            pt_stats_inc(&hs->downstream_rq_total);
            pt_stats_downstream_code(hs, k == 2 ? 503 : 200);
            pt_hist_record_ms(&hs->downstream_rq_time, 8);
        }
        pt_gauge_inc(&cs->upstream_cx_active);
        pt_stats_inc(&pt_stats_listener(wd->w[i], lis)->downstream_cx_total);
    }
    pt_stats_upstream_code(pt_stats_cluster(wd->w[1], gone), 404);
    pt_stats_inc(&pt_stats_cluster(wd->w[1], gone)->upstream_rq_total);
    pt_stats_set_cert_expiry(time(NULL) + 86400);
    pt_stats_trace_sent(5);
    pt_stats_trace_dropped(2);
    for (int i = 0; i < 3; i++)
        pt_stats_accept_paused();
    pt_stats_admin_rejected();
}

static void world_free(struct world *wd)
{
    for (int i = 0; i < 2; i++) {
        pt_stats_register_worker(i, NULL);
        pt_stats_worker_free(wd->w[i]);
    }
    pt_stats_set_cert_expiry(0);
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

/* check_layout: one # TYPE per name; counters, gauges, histograms, each sorted by name; every
 * sample belongs to the TYPE above it; no HELP. */
static void check_layout(const char *text)
{
    static const char *const types[] = { "counter", "gauge", "histogram" };
    char prev_name[256] = "", fam[256] = "";
    int prev_type = 0;
    char *copy = strdup(text), *save = NULL;

    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[256], type[32];
        assert_false(strncmp(line, "# HELP", 6) == 0);
        if (sscanf(line, "# TYPE %255s %31s", name, type) == 2) {
            int t = -1;
            for (int k = 0; k < 3; k++)
                if (strcmp(type, types[k]) == 0)
                    t = k;
            assert_true(t >= prev_type);
            if (t == prev_type)
                assert_true(strcmp(name, prev_name) > 0);
            prev_type = t;
            strcpy(prev_name, name);
            strcpy(fam, name);
            continue;
        }
        size_t n = strcspn(line, "{");
        assert_true(line[n] == '{');
        assert_non_null(strstr(line, "} "));
        if (prev_type == 2) {
            size_t f = strlen(fam);
            assert_true(n > f && strncmp(line, fam, f) == 0);
            assert_true(strncmp(line + f, "_bucket{", 8) == 0 ||
                        strncmp(line + f, "_sum{", 5) == 0 || strncmp(line + f, "_count{", 7) == 0);
        } else {
            assert_int_equal(n, strlen(fam));
            assert_true(strncmp(line, fam, n) == 0);
        }
    }
    free(copy);
}

/* check_histograms: in every histogram series buckets never decrease and +Inf equals _count. */
static void check_histograms(const char *text)
{
    const char *p = text;
    uint64_t prev = 0;

    while ((p = strstr(p, "_bucket{")) != NULL) {
        const char *end = strchr(p, '\n');
        const char *val = strstr(p, "} ") + 2;
        uint64_t v = strtoull(val, NULL, 10);
        bool first = strstr(p, "le=\"0.5\"") != NULL && strstr(p, "le=\"0.5\"") < end;
        bool inf = strstr(p, "le=\"+Inf\"") != NULL && strstr(p, "le=\"+Inf\"") < end;
        if (!first)
            assert_true(v >= prev);
        prev = v;
        if (inf) {
            const char *sum = strchr(end + 1, '\n') + 1; /* _sum line, then _count */
            assert_non_null(strstr(sum, "_count{"));
            assert_int_equal(strtoull(strstr(sum, "} ") + 2, NULL, 10), v);
        }
        p = end;
    }
}

static void test_render_content(void **state)
{
    static struct world wd;
    size_t len = 0;
    char *text;

    world_init(&wd);
    world_traffic(&wd);
    text = pt_metrics__render_with(&wd.snap, &wd.rs, time(NULL), &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    check_layout(text);
    check_histograms(text);

    /* Counters summed over both workers; codes and classes once hit. */
    assert_true(has_line(text, "# TYPE envoy_cluster_upstream_rq_total counter"));
    assert_true(has_line(text, "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"quote\"} 6"));
    assert_true(has_line(text, "envoy_cluster_upstream_rq{envoy_response_code=\"200\","
                               "envoy_cluster_name=\"quote\"} 4"));
    assert_true(has_line(text, "envoy_cluster_upstream_rq{envoy_response_code=\"503\","
                               "envoy_cluster_name=\"quote\"} 2"));
    assert_true(has_line(text, "envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"5\","
                               "envoy_cluster_name=\"quote\"} 2"));
    assert_null(strstr(text, "envoy_response_code_class=\"4\",envoy_cluster_name=\"quote\""));
    assert_null(strstr(text, "envoy_response_code_class=\"1\",envoy_cluster_name"));
    /* The HTTP classes are static stats in Envoy: all five, zeros included. */
    assert_true(has_line(text, "envoy_http_downstream_rq_xx{envoy_response_code_class=\"1\","
                               "envoy_http_conn_manager_prefix=\"ingress_http\"} 0"));
    assert_true(has_line(text, "envoy_http_downstream_rq_xx{envoy_response_code_class=\"2\","
                               "envoy_http_conn_manager_prefix=\"ingress_http\"} 4"));
    assert_true(has_line(text, "envoy_http_downstream_rq_xx{envoy_response_code_class=\"5\","
                               "envoy_http_conn_manager_prefix=\"ingress_https\"} 0"));
    assert_true(has_line(text, "envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="
                               "\"ingress_http\"} 6"));
    assert_true(has_line(text, "envoy_listener_downstream_cx_total{envoy_listener_address="
                               "\"0.0.0.0_8080\"} 2"));
    assert_true(has_line(text, "envoy_listener_downstream_cx_total{envoy_listener_address="
                               "\"0.0.0.0_8443\"} 0"));
    assert_true(has_line(text, "envoy_cluster_upstream_cx_active{envoy_cluster_name=\"quote\"} 2"));

    /* Histogram: 0.5 lands in le="0.5"; cumulative buckets; sum in ms. */
    assert_true(has_line(text, "# TYPE envoy_cluster_upstream_rq_time histogram"));
    assert_true(has_line(text, "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"quote\","
                               "le=\"0.5\"} 2"));
    assert_true(has_line(text, "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"quote\","
                               "le=\"5\"} 2"));
    assert_true(has_line(text, "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"quote\","
                               "le=\"10\"} 6"));
    assert_true(has_line(text, "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"quote\","
                               "le=\"+Inf\"} 6"));
    assert_true(has_line(text, "envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"quote\"} "
                               "30"));
    assert_true(has_line(text, "envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"quote\"} "
                               "6"));

    /* Membership from the snapshot; a shared stats name shows the largest; a cluster compile
     * did not index is still found by name. */
    assert_true(has_line(text, "envoy_cluster_membership_total{envoy_cluster_name=\"quote\"} 2"));
    assert_true(has_line(text, "envoy_cluster_membership_healthy{envoy_cluster_name=\"quote\"} 2"));
    assert_true(has_line(text, "envoy_cluster_membership_total{envoy_cluster_name="
                               "\"quote_default_80\"} 2"));
    assert_true(has_line(text, "envoy_cluster_manager_active_clusters{} 4"));

    /* Escaping of label values. */
    assert_true(has_line(text, "envoy_cluster_membership_total{envoy_cluster_name=\"" WEIRD_ESCAPED
                               "\"} 3"));
    assert_null(strstr(text, "ird\\na\nme"));

    /* A stats name no longer in the snapshot: kept while it has counts, without membership;
     * one that never counted anything disappears. */
    assert_true(has_line(text, "envoy_cluster_upstream_rq{envoy_response_code=\"404\","
                               "envoy_cluster_name=\"render_gone_with_traffic\"} 1"));
    assert_null(strstr(text, "envoy_cluster_membership_total{envoy_cluster_name="
                             "\"render_gone_with_traffic\"}"));
    assert_null(strstr(text, "render_gone_silent"));

    /* Series of a name are sorted by stats name. */
#define RQ_TOTAL "envoy_cluster_upstream_rq_total{envoy_cluster_name=\""
    const char *a = strstr(text, RQ_TOTAL "quote\"}");
    const char *b = strstr(text, RQ_TOTAL "quote_default_80\"}");
    const char *c = strstr(text, RQ_TOTAL "render_gone_with_traffic\"}");
    const char *d = strstr(text, RQ_TOTAL "we");
    assert_true(a && b && c && d && a < b && b < c && c < d);
    /* Counters before gauges before histograms. */
    assert_true(strstr(text, "# TYPE portico_tracing_spans_total counter") <
                strstr(text, "# TYPE envoy_cluster_manager_active_clusters gauge"));
    assert_true(strstr(text, "# TYPE portico_resources gauge") <
                strstr(text, "# TYPE envoy_cluster_upstream_cx_connect_ms histogram"));

    /* Server and Portico series. */
    assert_true(has_line(text, "envoy_server_live{} 1"));
    assert_true(has_line(text, "envoy_server_concurrency{} 2"));
    assert_non_null(strstr(text, "\nenvoy_server_uptime{} "));
    assert_non_null(strstr(text, "\nportico_build_info{version=\""));
    assert_true(has_line(text, "portico_config_reloads_total{result=\"failed\"} 1"));
    assert_true(has_line(text, "portico_config_reloads_total{result=\"ok\"} 4"));
    assert_true(has_line(text, "portico_resources{kind=\"Mapping\"} 3"));
    assert_true(has_line(text, "portico_resources{kind=\"Listener\"} 2"));
    assert_true(has_line(text, "portico_resources{kind=\"Secret\"} 0"));
    assert_true(strstr(text, "portico_resources{kind=\"Endpoints\"}") <
                strstr(text, "portico_resources{kind=\"TracingService\"}"));
    assert_true(has_line(text, "portico_invalid_resources{} 1"));
    assert_true(has_line(text, "portico_tracing_spans_total{result=\"dropped\"} 2"));
    assert_true(has_line(text, "portico_tracing_spans_total{result=\"sent\"} 5"));
    assert_true(has_line(text, "# TYPE portico_accept_pauses_total counter"));
    assert_true(has_line(text, "portico_accept_pauses_total{} 3"));
    assert_true(has_line(text, "# TYPE portico_admin_connections_rejected_total counter"));
    assert_true(has_line(text, "portico_admin_connections_rejected_total{} 1"));
    const char *exp = strstr(text, "\nportico_certificate_expiry_seconds{} ");
    assert_non_null(exp);
    long secs = strtol(strstr(exp, "} ") + 2, NULL, 10);
    assert_true(secs > 86000 && secs <= 86400);
    free(text);

    /* Without certificates the series is absent; without a snapshot the server is not live. */
    pt_stats_set_cert_expiry(0);
    text = pt_metrics__render_with(NULL, NULL, time(NULL), &len);
    assert_non_null(text);
    check_layout(text);
    assert_null(strstr(text, "portico_certificate_expiry_seconds"));
    assert_true(has_line(text, "envoy_server_live{} 0"));
    assert_true(has_line(text, "envoy_cluster_manager_active_clusters{} 0"));
    assert_null(strstr(text, "envoy_cluster_membership_total"));
    free(text);
    world_free(&wd);
}

/* run_promtool: `promtool check metrics` on <text>; returns its exit status and leaves its
 * report in <report>. */
static int run_promtool(const char *text, char *report, size_t size)
{
    char in[] = "/tmp/pt_metrics_XXXXXX", out[] = "/tmp/pt_promtool_XXXXXX", cmd[256];
    int fd = mkstemp(in), ofd = mkstemp(out), status;
    FILE *f;

    assert_true(fd >= 0 && ofd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    close(ofd);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s > %s 2>&1", in, out);
    status = system(cmd);
    f = fopen(out, "r");
    assert_non_null(f);
    report[fread(report, 1, size - 1, f)] = '\0';
    fclose(f);
    unlink(in);
    unlink(out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* lint_is_envoys: a promtool lint that Envoy's own names and the no-HELP rule imply, and that
 * a dashboard must not be broken to avoid: missing HELP, counters not ending in _total
 * (upstream_rq_xx), the gauge membership_total, and units in names (_ms). Portico's own
 * series get only the HELP one. */
static bool lint_is_envoys(const char *line)
{
    bool envoy = strncmp(line, "envoy_", 6) == 0;
    bool ms = strstr(line, "_ms ") != NULL;

    if (strstr(line, " no help text") != NULL)
        return true;
    if (envoy && strstr(line, " counter metrics should have \"_total\" suffix") != NULL)
        return true;
    if (strncmp(line, "envoy_cluster_membership_total ", 31) == 0 &&
        strstr(line, "non-counter metrics should not have \"_total\" suffix") != NULL)
        return true;
    return envoy && ms && strstr(line, "should not contain abbreviated units") != NULL;
}

static void test_render_promtool(void **state)
{
    static struct world wd;
    static char report[1 << 16];
    size_t len;
    char *text;
    int rc;

    world_init(&wd);
    world_traffic(&wd);
    text = pt_metrics__render_with(&wd.snap, &wd.rs, time(NULL), &len);
    assert_non_null(text);
    rc = run_promtool(text, report, sizeof(report));
    if (rc == 127 || rc == -1)
        fail_msg("promtool is not installed (Debian package prometheus): %s", report);
    /* 0: clean; 3: lint problems only; 1: the text does not parse. */
    if (rc != 0 && rc != 3)
        fail_msg("promtool check metrics exited %d:\n%s", rc, report);
    for (char *save = NULL, *line = strtok_r(report, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save))
        if (!lint_is_envoys(line))
            fail_msg("unexpected promtool report: %s", line);
    /* Break the output on purpose: promtool must notice, or this test proves nothing. */
    char *broken = malloc(len + 64);
    snprintf(broken, len + 64, "%s# TYPE envoy_server_live gauge\n", text);
    assert_int_equal(run_promtool(broken, report, sizeof(report)), 1);
    free(broken);
    free(text);
    world_free(&wd);
}

/* Renders while a worker counts: every page is well formed. */
struct render_conc {
    struct pt_stats_worker *w;
    uint32_t idx[200];
    volatile int stop;
};

static void *render_writer(void *arg)
{
    struct render_conc *rc = arg;
    for (uint64_t n = 0; !__atomic_load_n(&rc->stop, __ATOMIC_ACQUIRE); n++) {
        struct pt_cluster_stats *cs = pt_stats_cluster(rc->w, rc->idx[n % 200]);
        pt_stats_inc(&cs->upstream_rq_total);
        pt_stats_upstream_code(cs, 200 + (int)(n % 7));
        pt_hist_record_ms(&cs->upstream_rq_time, (double)(n % 20000));
    }
    return NULL;
}

static void test_render_while_counting(void **state)
{
    static struct render_conc rc;
    pthread_t t;

    rc.w = pt_stats_worker_new(5);
    for (int i = 0; i < 200; i++) {
        char nm[32];
        snprintf(nm, sizeof(nm), "live_%03d", i);
        rc.idx[i] = pt_stats_cluster_index(nm);
    }
    pt_stats_register_worker(5, rc.w);
    assert_int_equal(pthread_create(&t, NULL, render_writer, &rc), 0);
    for (int i = 0; i < 20; i++) {
        size_t len;
        char *text = pt_metrics__render_with(NULL, NULL, time(NULL), &len);
        assert_non_null(text);
        check_layout(text);
        check_histograms(text);
        free(text);
    }
    __atomic_store_n(&rc.stop, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    pt_stats_register_worker(5, NULL);
    pt_stats_worker_free(rc.w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_stable),
        cmocka_unit_test(test_page_growth),
        cmocka_unit_test(test_gauges_sum),
        cmocka_unit_test(test_hist_buckets),
        cmocka_unit_test(test_codes),
        cmocka_unit_test(test_concurrent_sum),
        cmocka_unit_test(test_render_content),
        cmocka_unit_test(test_render_promtool),
        cmocka_unit_test(test_render_while_counting),
    };
    pt_stats_server_init("0.0.0-test");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
