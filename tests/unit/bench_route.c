/* Route-table benchmark: compile time for 10,000 Mappings and match cost per request for tables of
 * 1 and 10,000 Mappings (plain prefixes, a realistic mix, and 10,000 hostnames on one prefix).
 * Not run by `make unit`. Build and run (an argument runs only the rows whose name contains it):
 *
 *     make build/tests/bench_route && build/tests/bench_route [10k]
 *
 * Match cost should not grow with the number of Mappings: the 10k rows should be within ~10% of
 * the 1-Mapping row (a bigger table does cost some cache misses). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "route/route.h"

#define N 10000
#define NREQ 1024
#define ROUNDS 5 /* compile: best of */

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint32_t rng(void)
{
    static uint32_t x = 2463534242u;

    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    return x;
}

static char names[N][48], hosts[N][48];
static struct pt_match_kv hdr = { "x-canary", "true", false };
static struct pt_match_kv hdr_re = { "x-version", "v[0-9]+", true };

static struct pt_route_spec spec(const char *prefix, int action)
{
    return (struct pt_route_spec){ .prefix = prefix, .case_sensitive = true, .weight = -1,
                                   .rewrite = "/", .action = (void *)(uintptr_t)action };
}

/* One /svc-N/ Mapping with N = 1000 + i, so every path has the same length. */
static struct pt_route_spec plain(int i)
{
    snprintf(names[i], sizeof(names[i]), "/svc-%d/", 1000 + i);
    return spec(names[i], i);
}

/* A mix like a real cluster: most Mappings are plain prefixes; some have a method, a header, a
 * hostname, case_sensitive: false, or are canary pairs; a few are regexes. */
static struct pt_route_spec mixed(int i)
{
    struct pt_route_spec s = plain(i);

    switch (i % 20) {
    case 1: s.method = "POST"; break;
    case 2: s.headers = &hdr, s.nheaders = 1; break;
    case 3: s.headers = &hdr_re, s.nheaders = 1; break;
    case 4: s.case_sensitive = false; break;
    case 5:
        snprintf(hosts[i], sizeof(hosts[i]), "app-%d.example.com", i);
        s.hostname = hosts[i];
        break;
    case 6: s.hostname = "*.example.com"; break;
    case 7: s.weight = 10; break;
    case 8: s.precedence = 1; break;
    }
    if (i % 1000 == 999) {
        snprintf(names[i], sizeof(names[i]), "/legacy-%d/v[0-9]+/.*", i);
        s.prefix = names[i];
        s.prefix_regex = true;
    }
    return s;
}

/* Varied prefixes: 1 to 4 segments of 2 to 12 letters drawn from a small alphabet, so that keys
 * share leading segments, lengths vary widely, and requests carry a long tail. */
static struct pt_route_spec varied(int i)
{
    int nseg = 1 + (int)(rng() % 4), len = 0;

    for (int k = 0; k < nseg; k++) {
        int seg = 2 + (int)(rng() % 11);
        names[i][len++] = '/';
        for (int c = 0; c < seg && len < 40; c++)
            names[i][len++] = (char)('a' + rng() % 6);
    }
    names[i][len++] = '/';
    names[i][len] = '\0';
    return spec(names[i], i);
}

static struct pt_route_spec by_host(int i)
{
    snprintf(hosts[i], sizeof(hosts[i]), "tenant-%d.example.com", 1000 + i);
    struct pt_route_spec s = spec("/", i);
    s.hostname = hosts[i];
    return s;
}

static struct pt_route_table *build(struct pt_route_spec *specs, int n, double *ms)
{
    double best = 1e18;
    struct pt_route_table *t = NULL;

    for (int r = 0; r < ROUNDS; r++) {
        pt_route_table_free(t);
        double t0 = now_ns();
        t = pt_route_table_build_partial(specs, (size_t)n, NULL, NULL);
        double d = now_ns() - t0;
        best = d < best ? d : best;
    }
    *ms = best / 1e6;
    return t;
}

/* One benchmark row: a table and the requests sent to it. */
struct row {
    const char *name;
    int n;
    double compile_ms, best_ns, miss_pct;
    struct pt_route_table *t;
    struct pt_route_req reqs[NREQ];
    char paths[NREQ][64], auths[NREQ][40];
};

static struct pt_header req_headers[2] = {
    { PT_STR_LIT("user-agent"), PT_STR_LIT("curl/8.0") },
    { PT_STR_LIT("accept"), PT_STR_LIT("*/*") },
};

/* make_varied_reqs: requests under the prefixes of rows made by varied(), with a long tail. */
static void make_varied_reqs(struct row *r, int n)
{
    for (int i = 0; i < NREQ; i++) {
        snprintf(r->paths[i], sizeof(r->paths[i]), "%s%s", names[rng() % (uint32_t)n],
                 "items/12345/x");
        r->reqs[i] = (struct pt_route_req){ .method = PT_STR_LIT("GET"),
                                            .path = pt_str_c(r->paths[i]),
                                            .authority = PT_STR_LIT("www.example.com") };
    }
}

/* make_reqs: requests to /svc-<N>/api/v1/items (or, with <tenant_hosts>, /api/v1/items on host
 * tenant-<N>.example.com) for N in [lo, lo + span). */
static void make_reqs(struct row *r, int lo, int span, bool tenant_hosts)
{
    for (int i = 0; i < NREQ; i++) {
        int k = lo + (int)(rng() % (uint32_t)span);
        snprintf(r->paths[i], sizeof(r->paths[i]),
                 tenant_hosts ? "/api/v1/items" : "/svc-%d/api/v1/items", k);
        snprintf(r->auths[i], sizeof(r->auths[i]),
                 tenant_hosts ? "tenant-%d.example.com:8080" : "www.example.com:8080", k);
        r->reqs[i] = (struct pt_route_req){
            .method = PT_STR_LIT("GET"), .path = pt_str_c(r->paths[i]),
            .query = PT_STR_LIT("id=7"), .authority = pt_str_c(r->auths[i]),
            .headers = req_headers, .nheaders = 2,
        };
    }
}

/* burst: one timed run of <iters> matches over the row's requests; keeps the best ns/match. */
static void burst(struct row *r, long iters)
{
    size_t sink = 0, misses = 0;
    double t0 = now_ns();

    for (long i = 0; i < iters; i++) {
        const struct pt_route *rt = pt_route_match(r->t, &r->reqs[i & (NREQ - 1)], (uint32_t)i);
        if (rt != NULL)
            sink += pt_route_spec_index(rt);
        else
            misses++;
    }
    double ns = (now_ns() - t0) / (double)iters;
    r->best_ns = ns < r->best_ns ? ns : r->best_ns;
    r->miss_pct = 100.0 * (double)misses / (double)iters;
    if (sink == 1)
        fprintf(stderr, "unlikely\n");
}

static struct row rows[16];
static int nrows;
static const char *only; /* argv[1]: run only the rows whose name contains it */

static void add_row(const char *name, struct pt_route_spec (*make)(int), int n, int req_lo,
                    int req_span, bool tenant_hosts)
{
    static struct pt_route_spec specs[N];
    struct row *r = &rows[nrows];

    if (only != NULL && strstr(name, only) == NULL)
        return;
    nrows++;
    for (int i = 0; i < n; i++)
        specs[i] = make(i);
    *r = (struct row){ .name = name, .n = n, .best_ns = 1e18 };
    r->t = build(specs, n, &r->compile_ms);
    if (make == varied)
        make_varied_reqs(r, n);
    else
        make_reqs(r, req_lo, req_span, tenant_hosts);
}

int main(int argc, char **argv)
{
    only = argc > 1 ? argv[1] : NULL;
    pt_route_thread_init();
    add_row("1 prefix", plain, 1, 1000, 1, false);
    add_row("10k prefixes /svc-N/", plain, N, 1000, N, false);
    add_row("10k prefixes, one hot path", plain, N, 1000, 1, false);
    add_row("1 prefix, mixed", mixed, 1, 1000, 1, false);
    add_row("10k mixed (method/hdr/host/re...)", mixed, N, 1000, N, false);
    add_row("1 varied prefix", varied, 1, 0, 0, false);
    add_row("10k varied prefixes", varied, N, 0, 0, false);
    add_row("1 hostname", by_host, 1, 1000, 1, true);
    add_row("10k hostnames on /", by_host, N, 1000, N, true);
    /* Interleaved short bursts, best of each: robust against other load on the machine. */
    for (int round = 0; round < 200; round++)
        for (int i = 0; i < nrows; i++)
            burst(&rows[i], 100000);
    for (int i = 0; i < nrows; i++) {
        struct row *r = &rows[i];
        printf("%-34s %6d routes  compile %7.3f ms  match %6.1f ns  (%4.1f%% 404)\n", r->name,
               r->n, r->compile_ms, r->best_ns, r->miss_pct);
        pt_route_table_free(r->t);
    }
    pt_route_thread_fini();
    return 0;
}
