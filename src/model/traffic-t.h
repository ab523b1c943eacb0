/* Types of a route's retry policy and a cluster's circuit breakers, as compiled into the
 * snapshot (config/compile.c) and read by the request path (proxy/retry.c, proxy/upstream.c).
 * Types only. */
#ifndef PT_MODEL_TRAFFIC_T_H
#define PT_MODEL_TRAFFIC_T_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* retry_on conditions, one bit each (Envoy's x-envoy-retry-on names). */
#define PT_RETRY_5XX          0x01u /* any 5xx, and any reset or connect failure */
#define PT_RETRY_GATEWAY      0x02u /* 502, 503, 504, and any reset or connect failure */
#define PT_RETRY_CONNECT      0x04u /* connect failures (UF), connect timeouts included */
#define PT_RETRY_4XX          0x08u /* retriable-4xx: 409 */
#define PT_RETRY_REFUSED      0x10u /* refused-stream: an HTTP/2 REFUSED_STREAM reset */
#define PT_RETRY_STATUS_CODES 0x20u /* retriable-status-codes: the codes listed */
#define PT_RETRY_RESET        0x40u /* reset: any reset, connect failures included */

#define PT_RETRY_CODES_MAX 16
#define PT_RETRY_BACKOFF_BASE_MS 25u  /* Envoy's upstream.base_retry_backoff_ms */
#define PT_RETRY_BACKOFF_MAX_MS 250u  /* ten times the base, as Envoy */
#define PT_RETRY_BODY_MAX (1024u * 1024u) /* request body kept for a retry: Envoy's default
                                           * per-connection buffer limit (1 MiB) */

/* A route's retry_policy (the Mapping's, else the Module's), compiled. */
struct pt_retry_policy {
    uint32_t on;                  /* PT_RETRY_* */
    uint32_t num_retries;         /* retries after the first try (default 1) */
    uint32_t per_try_timeout_ms;  /* 0: none, only the route timeout */
    uint32_t ncodes;
    uint16_t codes[PT_RETRY_CODES_MAX]; /* retriable_status_codes */
};

/* Envoy's default thresholds (priority default). */
#define PT_CB_DEFAULT_MAX 1024u
#define PT_CB_DEFAULT_MAX_RETRIES 3u

/* What a request holds in its cluster's breakers (struct pt_stream cb_held). */
#define PT_CB_RQ      0x01u /* one of max_requests */
#define PT_CB_PENDING 0x02u /* one of max_pending_requests (waiting for its new connection) */
#define PT_CB_RETRY   0x04u /* one of max_retries (a retry waits or runs) */

/* A cluster's circuit breakers (priority default): the limits and the counts of all workers.
 * One block per cluster name for the life of the process (cluster/breakers.c), so counts go on
 * across reloads as Envoy keeps an unchanged cluster, and a pooled connection may point at it
 * after its snapshot is gone. Limits never change: they are part of the cluster's name. */
struct pt_breakers {
    uint32_t max_connections, max_pending, max_requests, max_retries;
    _Atomic uint32_t cx, pending, rq, retries; /* in use now, over all workers */
};

#endif
