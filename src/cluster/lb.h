/* Load balancing: which endpoint of a cluster a request goes to, with each endpoint's health,
 * its active requests and its recent failures, kept per worker (no locks, no atomics, nothing
 * allocated per request). The proxy picks with pt_lb_pick() and reports the end with
 * pt_lb_release(); later users (ext_authz, rate limiting, shadowing) do the same. A cluster with
 * health checks also has a health shared by all workers (cluster/health.h): pick skips the
 * endpoints it says are out, and release reports each outcome to it (passive ejection).
 * Policies: round_robin, least_request (power of two choices), ring_hash and maglev
 * (consistent hashing of the request's pt_lb_ctx.hash through a table that compile builds once
 * per snapshot with pt_lb_table_build, shared by workers).
 *
 * Snapshot changes: the state is built for the snapshot the worker adopts (pt_lb_adopt), one
 * entry per cluster id. A cluster whose id, name and endpoints (same addresses, same order) are
 * those of the previous snapshot keeps its state: round-robin cursor, health, active counts.
 * Any other cluster starts afresh: cursor at a random endpoint, every endpoint healthy, counts
 * at zero; a request still running on the old state is then forgotten by its release. A request
 * that runs on an older snapshot than the adopted one picks at random among all endpoints and
 * counts nowhere. */
#ifndef PT_CLUSTER_LB_H
#define PT_CLUSTER_LB_H

#include "cluster/lb-t.h"

struct pt_snapshot;
struct pt_cluster;

/* pt_lb_policy_from_name: the policy Emissary's load_balancer.policy <name> names
 * ("round_robin", "least_request", "ring_hash", "maglev"; exact), or -1. */
int pt_lb_policy_from_name(const char *name);

/* pt_lb_policy_name: <policy>'s name as Emissary writes it. */
const char *pt_lb_policy_name(enum pt_lb_policy policy);

/* pt_lb_table_build: builds the lookup table of <c> for its policy (c->lb_policy) into
 * c->lb_table, as Envoy builds it from the endpoints' "ip:port" names: ring_hash gets
 * ceil(PT_LB_RING_MIN_SIZE / n) points per endpoint, each the xxHash64 of "<name>_<i>", sorted;
 * maglev a PT_LB_MAGLEV_SIZE-slot table filled with each endpoint's permutation (offset
 * xxHash64(name) and skip xxHash64(name, seed 1), endpoints in name order). The table depends
 * on the endpoints' names only (not their order), so the same endpoints give the same table in
 * every snapshot. Other policies, or no endpoints: c->lb_table stays NULL. Config code: aborts
 * when memory is exhausted. */
void pt_lb_table_build(struct pt_cluster *c);

/* pt_lb_table_free: frees c->lb_table (NULL is fine) and sets it to NULL. */
void pt_lb_table_free(struct pt_cluster *c);

/* pt_lb_init: makes <lb> an empty state (nothing adopted) whose random choices come from
 * <seed>. Frees nothing: call it on zeroed or freed memory only. */
void pt_lb_init(struct pt_lb_state *lb, uint64_t seed);

/* pt_lb_adopt: rebuilds <lb> for snapshot <s>, keeping the state of every cluster that did not
 * change (see the top of this file). The snapshot adopted before must still be alive (the
 * worker retires it after this call), and <s> must stay alive until the next pt_lb_adopt or
 * pt_lb_free: <lb> points into it without a reference. Allocates; not for the request path.
 * Returns 0, or PT_NOMEM with <lb> unchanged. */
int pt_lb_adopt(struct pt_lb_state *lb, const struct pt_snapshot *s);

/* pt_lb_free: frees what <lb> owns and leaves it empty, as pt_lb_init does (its random
 * sequence goes on); the picks not yet released are then forgotten. */
void pt_lb_free(struct pt_lb_state *lb);

/* pt_lb_pick: chooses an endpoint of <c> for one request and records the choice in <pick>,
 * which the caller keeps until pt_lb_release (it must not hold an unreleased pick: release it
 * first). <ctx> says what a policy may need of the request; NULL is no context. When <c>
 * belongs to the adopted snapshot, its policy chooses among the healthy endpoints, or among all
 * of them when fewer than PT_LB_PANIC_PERCENT percent are healthy (panic, as Envoy), and the
 * endpoint's active count goes up. A hash policy with a hash takes the table's endpoint for it,
 * or, when that one is unhealthy, the next healthy one after it on the ring (or in the Maglev
 * table): only the keys of an unhealthy endpoint move. Without a hash it picks at random.
 * Otherwise (an older snapshot's cluster) a hash still goes through the cluster's table (health
 * unknown there), and any other choice is random; <pick> then counts nowhere. Returns the endpoint, which lives as long as <c>, or NULL when <c>
 * has no endpoints (then <pick> is zeroed). No allocation, no system call. */
const struct pt_endpoint *pt_lb_pick(struct pt_lb_state *lb, const struct pt_cluster *c,
                                     const struct pt_lb_ctx *ctx, struct pt_lb_pick *pick);

/* pt_lb_release: the request of <pick> is done with its endpoint, with <outcome>: the active
 * count goes down, and the endpoint's consecutive failures go back to 0 on PT_LB_SUCCESS, up on
 * a connect failure, 5xx, reset or timeout, and stay on PT_LB_CANCELLED. Then <pick> is zeroed,
 * so releasing twice, or releasing a zeroed pick, does nothing. A pick whose cluster state was
 * reset since (a snapshot change) is forgotten. */
void pt_lb_release(struct pt_lb_state *lb, struct pt_lb_pick *pick, enum pt_lb_outcome outcome);

/* pt_lb_set_health: sets the health of endpoint <index> of <c>, a cluster of the adopted
 * snapshot. The health lasts until it is set again, or until the cluster's state is reset by a
 * snapshot that changes the cluster. Returns 0; PT_NOTFOUND when <c> is not a cluster of the
 * adopted snapshot; PT_INVAL when <index> or <health> is out of range. */
int pt_lb_set_health(struct pt_lb_state *lb, const struct pt_cluster *c, uint32_t index,
                     enum pt_lb_health health);

/* pt_lb_endpoint_state: what <lb> knows of endpoint <index> of <c> (for tests, the admin API and
 * health checks), or NULL when <c> is not a cluster of the adopted snapshot or <index> is out of
 * range. The pointer is valid until the next pt_lb_adopt or pt_lb_free. */
const struct pt_lb_endpoint *pt_lb_endpoint_state(const struct pt_lb_state *lb,
                                                  const struct pt_cluster *c, uint32_t index);

/* pt_lb_same_endpoints: <a> and <b> have the same addresses in the same order (a reload kept
 * the cluster's endpoints). */
bool pt_lb_same_endpoints(const struct pt_cluster *a, const struct pt_cluster *b);

#endif
