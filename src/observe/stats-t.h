/* Per-worker statistics blocks: types only (functions and the inline fast path are in
 * observe/stats.h). Every counter is written by exactly one worker thread and summed over the
 * workers by the control thread when /metrics is scraped (observe/metrics.c). */
#ifndef PT_OBSERVE_STATS_T_H
#define PT_OBSERVE_STATS_T_H

#include <stdint.h>

/* Index 0 of every registry means "no stats name": counts made against it are kept but never
 * rendered, so an all-zero cluster or listener is safe to count against. */
#define PT_STATS_IDX_NONE 0u

/* Entries per page, and pages per worker for each scope (the page tables never move). */
#define PT_STATS_PAGE 64u
#define PT_STATS_CLUSTER_PAGES 1024u /* 65,536 cluster stats names */
#define PT_STATS_HTTP_PAGES 16u      /* 1,024 HTTP connection manager prefixes */
#define PT_STATS_LISTENER_PAGES 16u  /* 1,024 listener addresses */
#define PT_STATS_MAX_CLUSTERS (PT_STATS_PAGE * PT_STATS_CLUSTER_PAGES)
#define PT_STATS_MAX_HTTP (PT_STATS_PAGE * PT_STATS_HTTP_PAGES)
#define PT_STATS_MAX_LISTENERS (PT_STATS_PAGE * PT_STATS_LISTENER_PAGES)

/* Counters of the control layer's reload loop (control/reload.c keeps them), rendered on
 * /metrics and in diag. */
struct pt_reload_stats {
    uint64_t ok, failed;
    uint64_t generation;
    double last_ms;
};
#define PT_STATS_MAX_WORKERS 256

/* Envoy's default histogram buckets (reference/envoy-compat.md §1.2): 19 upper bounds in ms,
 * plus one bucket for everything above the last. */
#define PT_HIST_NBOUNDS 19
#define PT_HIST_NBUCKETS (PT_HIST_NBOUNDS + 1)

/* A histogram in milliseconds. bucket[i] counts samples in (bound[i-1], bound[i]] (not
 * cumulative); the sample count is the sum of the buckets, so a scrape always sees _count equal
 * to the +Inf bucket. */
struct pt_hist {
    uint64_t bucket[PT_HIST_NBUCKETS];
    uint64_t sum_us; /* sum of the samples, in microseconds */
};

/* Specific response codes per cluster: a small open-addressing table of packed words, code in
 * the top 10 bits and count in the low 54, so one 64-bit load always reads a consistent pair.
 * Codes that find the table full are still counted in their class. */
#define PT_STATS_CODE_SLOTS 16u
#define PT_STATS_CODE_SHIFT 54
#define PT_STATS_CODE_COUNT_MASK ((UINT64_C(1) << PT_STATS_CODE_SHIFT) - 1)

/* The statistics of each scope are declared once as X-macro lists: the structs below and the
 * Prometheus families in metrics.c are both generated from them, so a name cannot drift. The
 * metric name is the scope's prefix followed by the field name. */

/* Cluster (envoy_cluster_<field>{envoy_cluster_name="<stats name>"}), counters. */
#define PT_CLUSTER_COUNTERS(X)                                                                     \
    X(upstream_rq_total)          /* requests sent upstream */                                     \
    X(upstream_rq_timeout)        /* requests that hit the route timeout (504) */                  \
    X(upstream_rq_rx_reset)       /* upstream reset or closed mid-response */                      \
    X(upstream_cx_total)          /* upstream connections opened */                               \
    X(upstream_cx_http2_total)    /* ... of them HTTP/2 (grpc Mappings) */                         \
    X(upstream_cx_connect_fail)   /* connects that failed (refused, reset, timeout) */             \
    X(upstream_cx_connect_timeout) /* connects that timed out (also counted in _fail) */           \
    X(upstream_cx_none_healthy)   /* requests that found no endpoint (503) */                      \
    X(upstream_cx_destroy)        /* upstream connections closed */                                \
    X(upstream_cx_rx_bytes_total) /* bytes read from upstreams */                                  \
    X(upstream_cx_tx_bytes_total) /* bytes written to upstreams */                                 \
    X(ext_authz_ok)               /* AuthService checks of its requests: allowed */                \
    X(ext_authz_denied)           /* ... denied */                                                 \
    X(ext_authz_error)            /* ... failed (no answer, a 5xx) */                              \
    X(ext_authz_failure_mode_allowed) /* ... failed, and let through (failure_mode_allow) */       \
    X(ratelimit_ok)               /* RateLimitService calls of its requests: under the limit */    \
    X(ratelimit_over_limit)       /* ... over the limit (429) */                                   \
    X(ratelimit_error)            /* ... failed */                                                 \
    X(ratelimit_failure_mode_allowed) /* ... failed, and let through (no failure_mode_deny) */   \
    X(health_check_attempt)       /* active health checks sent (proxy/health.c) */                 \
    X(health_check_success)       /* ... that passed */                                            \
    X(health_check_failure)       /* ... that failed (an unexpected answer, or none) */           \
    X(health_check_network_failure) /* ... that got no answer (connect failure, reset, timeout) */ \
    X(upstream_rq_retry)          /* retries sent (retry_policy) */                                \
    X(upstream_rq_retry_success)  /* ... after which the request did not need another */           \
    X(upstream_rq_retry_overflow) /* retries not sent: max_retries in use (circuit breaker) */      \
    X(upstream_rq_retry_limit_exceeded) /* retries not sent: num_retries used up */                \
    X(upstream_rq_retry_backoff_exponential) /* retries that waited Envoy's jittered back-off */   \
    X(upstream_rq_per_try_timeout) /* tries that hit per_try_timeout */                            \
    X(upstream_rq_pending_overflow) /* requests refused: max_requests or max_pending_requests */   \
    X(upstream_cx_overflow)       /* connections not opened: max_connections (request refused) */ \
    X(retry_or_shadow_abandoned)  /* its requests' mirrors (Mapping shadow) dropped: the shadow \
                                   * took the body slower than the primary (proxy/shadow.c) */

/* Cluster gauges: incremented and decremented by the same worker; summed at scrape. */
#define PT_CLUSTER_GAUGES(X)                                                                       \
    X(upstream_rq_active)         /* requests waiting for or reading a response */                 \
    X(upstream_rq_pending_active) /* requests waiting for a connection */                          \
    X(upstream_cx_active)         /* open upstream connections, idle or busy */                    \
    X(circuit_breakers_default_cx_open) /* 1 while max_connections are all in use (summed over   \
                                         * workers: one opens it, maybe another closes it) */      \
    X(circuit_breakers_default_rq_pending_open) /* ... max_pending_requests */                     \
    X(circuit_breakers_default_rq_open) /* ... max_requests */                                     \
    X(circuit_breakers_default_rq_retry_open) /* ... max_retries */

/* Cluster histograms (ms). */
#define PT_CLUSTER_HISTS(X)                                                                        \
    X(upstream_rq_time)           /* request sent to last response byte */                         \
    X(upstream_cx_connect_ms)     /* connect() to connection established */

/* HTTP connection manager (envoy_http_<field>{envoy_http_conn_manager_prefix="<prefix>"}). */
#define PT_HTTP_COUNTERS(X)                                                                        \
    X(downstream_cx_total)        /* client connections accepted */                                \
    X(downstream_cx_destroy)      /* client connections closed */                                  \
    X(downstream_cx_http2_total)  /* ... that spoke HTTP/2 */                                      \
    X(downstream_cx_rx_bytes_total) /* bytes read from clients */                                  \
    X(downstream_cx_tx_bytes_total) /* bytes written to clients */                                 \
    X(downstream_rq_total)        /* requests received (every request, local replies included) */ \
    X(downstream_rq_http1_total)  /* ... over HTTP/1.x */                                          \
    X(downstream_rq_http2_total)  /* ... over HTTP/2 */                                            \
    X(downstream_rq_completed)    /* requests answered */                                          \
    X(downstream_rq_timeout)      /* requests whose headers did not arrive in time */             \
    X(no_route)                   /* requests no route matched (404) */                            \
    X(rbac_allowed)               /* requests the Module's ip_allow / ip_deny let through */       \
    X(rbac_denied)                /* ... denied (403) */                                           \
    X(ext_authz_ok)               /* AuthService checks: allowed */                                \
    X(ext_authz_denied)           /* ... denied */                                                 \
    X(ext_authz_error)            /* ... failed */                                                 \
    X(ext_authz_failure_mode_allowed) /* ... failed, and let through */

#define PT_HTTP_GAUGES(X)                                                                          \
    X(downstream_cx_active)       /* open client connections */                                    \
    X(downstream_cx_http1_active) /* ... of them HTTP/1.x */                                       \
    X(downstream_cx_http2_active) /* ... of them HTTP/2 */                                         \
    X(downstream_cx_ssl_active)   /* ... of them over TLS */                                       \
    X(downstream_cx_upgrades_active) /* upgraded (WebSocket) connections */                       \
    X(downstream_rq_active)       /* requests in progress */

#define PT_HTTP_HISTS(X)                                                                           \
    X(downstream_rq_time)         /* first request byte to last response byte */                  \
    X(downstream_cx_length_ms)    /* connection lifetime */

/* Listener (envoy_listener_<field>{envoy_listener_address="0.0.0.0_8080"}). */
#define PT_LISTENER_COUNTERS(X)                                                                    \
    X(downstream_cx_total)        /* connections accepted */                                       \
    X(downstream_cx_overflow)     /* connections refused over the connection limit */

#define PT_LISTENER_GAUGES(X)                                                                      \
    X(downstream_cx_active)       /* open connections */

#define PT_STATS_U64_FIELD(f) uint64_t f;
#define PT_STATS_I64_FIELD(f) int64_t f;
#define PT_STATS_HIST_FIELD(f) struct pt_hist f;

/* One cluster's counters in one worker. Every member is a 64-bit word, and all but _codes add
 * up word by word across workers (stats.c relies on this: keep _codes last). */
struct pt_cluster_stats {
    PT_CLUSTER_COUNTERS(PT_STATS_U64_FIELD)
    uint64_t upstream_rq_xx[5]; /* by response class: [0] is 1xx ... [4] is 5xx */
    PT_CLUSTER_GAUGES(PT_STATS_I64_FIELD)
    PT_CLUSTER_HISTS(PT_STATS_HIST_FIELD)
    uint64_t _codes[PT_STATS_CODE_SLOTS]; /* packed {code, count}; see pt_stats_upstream_code */
};

/* One HTTP connection manager prefix's counters in one worker. */
struct pt_http_stats {
    PT_HTTP_COUNTERS(PT_STATS_U64_FIELD)
    uint64_t downstream_rq_xx[5]; /* by response class: [0] is 1xx ... [4] is 5xx */
    PT_HTTP_GAUGES(PT_STATS_I64_FIELD)
    PT_HTTP_HISTS(PT_STATS_HIST_FIELD)
};

/* One listener address's counters in one worker. */
struct pt_listener_stats {
    PT_LISTENER_COUNTERS(PT_STATS_U64_FIELD)
    PT_LISTENER_GAUGES(PT_STATS_I64_FIELD)
};

/* A worker's stats block. Pages are allocated by the worker the first time it counts against
 * an index in them and published with a release store; the control thread reads them with
 * acquire loads while the worker runs. Pages never move and are freed only with the block. */
struct pt_stats_worker {
    int id;
    void *_cluster_pages[PT_STATS_CLUSTER_PAGES];   /* struct pt_cluster_stats[PT_STATS_PAGE] */
    void *_http_pages[PT_STATS_HTTP_PAGES];         /* struct pt_http_stats[PT_STATS_PAGE] */
    void *_listener_pages[PT_STATS_LISTENER_PAGES]; /* struct pt_listener_stats[PT_STATS_PAGE] */
    void *_grpc_pages[PT_STATS_CLUSTER_PAGES];      /* struct pt_grpc_table *[PT_STATS_PAGE]
                                                     * (Module grpc_stats, observe/grpcstats.c) */
};

/* The registries of stats names, one per scope (stats.c). */
enum pt_stats_scope {
    PT_STATS_CLUSTER = 0,
    PT_STATS_HTTP,
    PT_STATS_LISTENER,
    PT_STATS_NSCOPES
};

/* A cluster summed over all workers, for the renderer: <s> with _codes cleared, and the
 * specific response codes merged into <codes>, sorted by code. */
#define PT_STATS_CODES_MAX 32u
struct pt_code_total {
    uint32_t code;
    uint64_t count;
};

struct pt_cluster_sum {
    struct pt_cluster_stats s;
    uint32_t ncodes;
    struct pt_code_total codes[PT_STATS_CODES_MAX];
};

#endif
