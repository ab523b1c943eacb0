/* Endpoint health shared by the workers: which endpoints of a health-checked cluster are in the
 * rotation, as active checks (proxy/health.c, on one worker per cluster) and passive ejection
 * (any worker's cluster/lb.c, when a request on the endpoint fails) decide. The state is one
 * struct pt_health per cluster: per endpoint a word of flags (0: healthy) that writers change
 * with atomic read-modify-writes and readers load relaxed, so a pick costs one load per
 * endpoint looked at. It lives as long as a cluster with the same name, endpoints and checks
 * goes on from snapshot to snapshot (pt_health_attach), so a reload that does not change the
 * cluster keeps its health. Also the pure parts of checking: thresholds, durations, the gRPC
 * health answer. */
#ifndef PT_CLUSTER_HEALTH_H
#define PT_CLUSTER_HEALTH_H

#include <stddef.h>

#include "cluster/health-t.h"

struct pt_snapshot;
struct pt_cluster;

/* How one active check of an endpoint ended. */
enum pt_health_result {
    PT_HEALTH_PASS = 0, /* the expected answer */
    PT_HEALTH_FAIL,     /* an answer, but not the expected one (Envoy's ACTIVE failure:
                         * unhealthy at once) */
    PT_HEALTH_NETWORK,  /* no answer: no connection, a reset, the timeout (Envoy's NETWORK
                         * failure: unhealthy after unhealthy_threshold in a row) */
};

/* What the checker keeps of one endpoint and check between results. All-zero: fresh. */
struct pt_health_run {
    uint32_t successes; /* in a row */
    uint32_t failures;  /* in a row */
};

/* pt_health_new: the health of <n> endpoints, all healthy, with one reference; NULL when out
 * of memory. */
struct pt_health *pt_health_new(uint32_t n);
void pt_health_ref(struct pt_health *h);
/* pt_health_release: drops a reference (NULL is fine); the last frees <h>. Any thread. */
void pt_health_release(struct pt_health *h);

/* pt_health_attach: gives every cluster of <s> that has health checks its health: the one of
 * the cluster of <prev> (NULL: none) with the same name, protocol, endpoints (addresses in
 * order) and checks, shared, or a new one where every endpoint is healthy. Control thread,
 * before <s> is published. Returns 0 or PT_NOMEM (the clusters left without run unchecked). */
int pt_health_attach(struct pt_snapshot *s, const struct pt_snapshot *prev);

/* pt_health_cfg_free: frees the strings of <n> checks and the array. */
void pt_health_cfg_free(struct pt_health_cfg *cfg, uint32_t n);

/* pt_health_cfg_equal: the checks <a> (<na>) and <b> (<nb>) ask for the same. */
bool pt_health_cfg_equal(const struct pt_health_cfg *a, uint32_t na, const struct pt_health_cfg *b,
                         uint32_t nb);

/* pt_health_active: applies <result> of check <k> of endpoint <i> with Envoy's rules: a pass
 * counts towards cfg->healthy_threshold (the endpoint's PT_HEALTH_FAILED_CHECK(k) is cleared
 * when it is reached) and takes back a passive ejection (Envoy's
 * successful_active_health_check_uneject_host); PT_HEALTH_FAIL sets the flag at once;
 * PT_HEALTH_NETWORK after cfg->unhealthy_threshold in a row. <run> is the checker's count for
 * this endpoint and check. Returns true when the endpoint's health (in or out of the rotation)
 * changed. */
bool pt_health_active(struct pt_health *h, uint32_t i, uint32_t k, const struct pt_health_cfg *cfg,
                      struct pt_health_run *run, enum pt_health_result result);

/* pt_health_passive: a request on endpoint <i> ended, <failed> (a 5xx, connect failure, reset
 * or timeout) or not. The PT_HEALTH_CONSECUTIVE_5XXth failure in a row (counted over all
 * workers) ejects the endpoint at <now_ms>, unless PT_HEALTH_MAX_EJECTION_PERCENT of the
 * endpoints (at least one) are ejected already. A success costs one relaxed load when there
 * were no failures. Returns true when this call ejected it. */
bool pt_health_passive(struct pt_health *h, uint32_t i, bool failed, uint64_t now_ms);

/* pt_health_sweep: takes endpoint <i> back when its ejection (base time times the ejections
 * so far, capped) ended by <now_ms>. Returns true when it did. */
bool pt_health_sweep(struct pt_health *h, uint32_t i, uint64_t now_ms);

/* pt_health_parse_duration: a Go duration as Emissary's HealthCheck takes them ("3s", "100ms",
 * "1.5s", "1m30s"; units ns, us, µs, ms, s, m, h) into *ms (rounded up to whole milliseconds).
 * Returns 0, or -1 when <s> is not one, is negative, or is over a day. */
int pt_health_parse_duration(const char *s, uint32_t *ms);

/* pt_health_grpc_serving: <msg> (<len> bytes, unframed) is a grpc.health.v1
 * HealthCheckResponse whose status is SERVING (1). */
bool pt_health_grpc_serving(const uint8_t *msg, size_t len);

/* pt_health_grpc_request: the framed HealthCheckRequest asking about <service> (may be empty)
 * into <out> (<cap> bytes). Returns its length, or 0 when it does not fit. */
size_t pt_health_grpc_request(const char *service, uint8_t *out, size_t cap);

/* pt_health_status_expected: <status> is one of cfg's expected statuses (200 when none). */
bool pt_health_status_expected(const struct pt_health_cfg *cfg, int status);

/* pt_health_ok: endpoint <i> is in the rotation. */
static inline bool pt_health_ok(const struct pt_health *h, uint32_t i)
{
    return atomic_load_explicit(&h->ep[i].flags, memory_order_relaxed) == 0;
}

/* pt_health_nhealthy: how many endpoints are in the rotation. */
static inline uint32_t pt_health_nhealthy(const struct pt_health *h)
{
    return atomic_load_explicit(&h->nhealthy, memory_order_relaxed);
}

/* pt_health_flags: endpoint <i>'s flags (PT_HEALTH_*), for the admin page. */
static inline uint32_t pt_health_flags(const struct pt_health *h, uint32_t i)
{
    return atomic_load_explicit(&h->ep[i].flags, memory_order_relaxed);
}

#endif
