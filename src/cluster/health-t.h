/* Endpoint health: the types of a cluster's health checks as compiled (a Mapping's
 * `health_checks`) and of the health state every worker reads when it picks an endpoint. Types
 * only (see cluster/health.h); the checks themselves run in proxy/health.c. */
#ifndef PT_CLUSTER_HEALTH_T_H
#define PT_CLUSTER_HEALTH_T_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Emissary's defaults (irhealthchecks.py): timeout 3 s, interval 5 s, healthy after 1 success,
 * unhealthy after 2 failures. */
#define PT_HEALTH_TIMEOUT_MS 3000u
#define PT_HEALTH_INTERVAL_MS 5000u
#define PT_HEALTH_HEALTHY_THRESHOLD 1u
#define PT_HEALTH_UNHEALTHY_THRESHOLD 2u
#define PT_HEALTH_MAX_CHECKS 8u /* health checks per Mapping (one flag bit each) */

/* Passive health (Envoy's outlier detection with its defaults), on for a cluster with health
 * checks: consecutive_5xx 5 (connect failures, resets and timeouts count as 5xx, as with
 * split_external_local_origin_errors false), base_ejection_time 30 s times the ejections so
 * far, capped by max_ejection_time 300 s, max_ejection_percent 10 % but at least one host. */
#define PT_HEALTH_CONSECUTIVE_5XX 5u
#define PT_HEALTH_BASE_EJECTION_MS 30000u
#define PT_HEALTH_MAX_EJECTION_MS 300000u
#define PT_HEALTH_MAX_EJECTION_PERCENT 10u

/* Why an endpoint is out of the rotation: flag bits of struct pt_health_ep.flags. */
#define PT_HEALTH_EJECTED 0x1u        /* ejected by passive health */
#define PT_HEALTH_FAILED_CHECK(k) (0x2u << (k)) /* failed its active check k */

/* An expected status range, both ends included (Emissary's StatusRange). */
struct pt_health_range {
    uint16_t min, max;
};

/* A header the HTTP check adds (add_request_headers). */
struct pt_health_hdr {
    char *name;
    char *value;
};

/* One active health check, compiled (Emissary's HealthCheck). Strings are owned. */
struct pt_health_cfg {
    uint32_t timeout_ms;
    uint32_t interval_ms;
    uint32_t healthy_threshold;
    uint32_t unhealthy_threshold;
    bool grpc;                      /* grpc.health.v1.Health/Check; else HTTP GET */
    char *path;                     /* HTTP: the request's path */
    char *host;                     /* HTTP: the Host; grpc: the authority; NULL: the cluster's
                                     * name, as Envoy */
    char *service;                  /* grpc: upstream_name, the HealthCheckRequest's service */
    struct pt_health_range *ranges; /* HTTP expected statuses; none: 200 only */
    uint32_t nranges;
    struct pt_health_hdr *add;      /* HTTP add_request_headers */
    uint32_t nadd;
    char **remove;                  /* HTTP remove_request_headers (lowercase) */
    uint32_t nremove;
};

/* One endpoint's health, shared by all workers. */
struct pt_health_ep {
    _Atomic uint32_t flags;         /* PT_HEALTH_*: 0 is healthy */
    _Atomic uint32_t failures;      /* passive: consecutive failures of requests */
    _Atomic uint32_t nejections;    /* passive: times ejected (the ejection time's factor) */
    _Atomic uint64_t ejected_ms;    /* passive: when it was last ejected (pt_now_ms) */
};

/* The health of a cluster's endpoints (same order), shared by the workers and kept across
 * snapshots whose cluster did not change (cluster/health.h). Reference counted; its flags are
 * set by the worker that runs the cluster's checks and by any worker's passive ejection, read
 * by every worker's load balancer with relaxed loads. */
struct pt_health {
    atomic_int refcnt;
    _Atomic uint32_t nhealthy;      /* endpoints whose flags are 0 */
    _Atomic uint32_t nejected;      /* endpoints with PT_HEALTH_EJECTED */
    uint32_t n;
    struct pt_health_ep ep[];
};

#endif
