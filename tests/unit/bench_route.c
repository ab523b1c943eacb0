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
#define ROUNDS 5

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

static char paths[NREQ][64], auths[NREQ][64];
static struct pt_route_req reqs[NREQ];
static struct pt_header req_headers[2] = {
    { PT_STR_LIT("user-agent"), PT_STR_LIT("curl/8.0") },
    { PT_STR_LIT("accept"), PT_STR_LIT("*/*") },
};

/* make_reqs: requests to /svc-<N>/api/v1/items for N in [lo, lo + span), authority <host>-ish. */
static void make_reqs(int lo, int span, bool tenant_hosts)
{
    for (int i = 0; i < NREQ; i++) {
        int k = lo + (int)(rng() % (uint32_t)span);
        snprintf(paths[i], sizeof(paths[i]), tenant_hosts ? "/api/v1/items" : "/svc-%d/api/v1/items",
                 k);
        snprintf(auths[i], sizeof(auths[i]), tenant_hosts ? "tenant-%d.example.com:8080"
                                                          : "www.example.com:8080", k);
        reqs[i] = (struct pt_route_req){
            .method = PT_STR_LIT("GET"), .path = pt_str_c(paths[i]), .query = PT_STR_LIT("id=7"),
            .authority = pt_str_c(auths[i]), .headers = req_headers, .nheaders = 2,
        };
    }
}

static double ns_per_match(const struct pt_route_table *t, double *miss_pct)
{
    const long iters = 4000000;
    double best = 1e18;
    size_t sink = 0, misses = 0;

    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) {
            const struct pt_route *rt = pt_route_match(t, &reqs[i & (NREQ - 1)], (uint32_t)i);
            if (rt != NULL)
                sink += pt_route_spec_index(rt);
            else
                misses++;
        }
        double d = (now_ns() - t0) / (double)iters;
        best = d < best ? d : best;
    }
    *miss_pct = 100.0 * (double)misses / (double)(iters * ROUNDS);
    if (sink == 1)
        fprintf(stderr, "unlikely\n");
    return best;
}

static const char *only; /* argv[1]: run only the rows whose name contains it */

static void row(const char *name, struct pt_route_spec (*make)(int), int n, int req_lo,
                int req_span, bool tenant_hosts)
{
    static struct pt_route_spec specs[N];
    double ms, miss_pct, ns;

    if (only != NULL && strstr(name, only) == NULL)
        return;
    for (int i = 0; i < n; i++)
        specs[i] = make(i);
    struct pt_route_table *t = build(specs, n, &ms);
    make_reqs(req_lo, req_span, tenant_hosts);
    ns = ns_per_match(t, &miss_pct);
    printf("%-34s %6d routes  compile %7.3f ms  match %6.1f ns  (%4.1f%% 404)\n", name, n, ms, ns,
           miss_pct);
    pt_route_table_free(t);
}

int main(int argc, char **argv)
{
    only = argc > 1 ? argv[1] : NULL;
    pt_route_thread_init();
    row("1 prefix", plain, 1, 1000, 1, false);
    row("10k prefixes /svc-N/", plain, N, 1000, N, false);
    row("1 prefix, mixed", mixed, 1, 1000, 1, false);
    row("10k mixed (method/hdr/host/re...)", mixed, N, 1000, N, false);
    row("1 hostname", by_host, 1, 1000, 1, true);
    row("10k hostnames on /", by_host, N, 1000, N, true);
    pt_route_thread_fini();
    return 0;
}
