/* Load balancing (see cluster/lb.h): a worker's per-cluster state built when it adopts a
 * snapshot, the choice of an endpoint per request, and the counts a request's end updates. It
 * does not connect, pool or retry (proxy/upstream.c does), and it runs no health checks: it
 * only holds the health that pt_lb_set_health() is told. Called by proxy/worker.c (adopt),
 * proxy/session.c (pick) and proxy/stream.c (release).
 *
 * Where a policy goes: pick_endpoint() switches on the cluster's policy. A policy is a function
 * (struct pt_lb_cluster *, n, use_health, ctx) -> index that honours use_health (skip endpoints
 * that are not PT_LB_HEALTHY) and touches nothing but its cluster state:
 *  - least_request: two random healthy endpoints, the one with fewer _endpoints[i].active
 *    (Envoy's default choice_count 2); active is already counted by pick and release.
 *  - ring_hash / maglev: the ring or lookup table depends on the snapshot only, so it is built
 *    once by compile (config/compile.c, stored with struct pt_cluster) and shared by workers;
 *    the policy hashes ctx->hash_key (xxHash64, as Envoy), looks the entry up, and walks on to
 *    the next healthy entry. An empty key picks at random, as Envoy does without a hash.
 * The policy itself comes from the cluster (cluster_policy()), which compile will fill from a
 * Mapping's `load_balancer` when that is supported; a changed policy resets the state. */
#include "cluster/lb.h"
#include "cluster/health.h"
#include "core/log.h"
#include "core/loop.h"
#include "model/snapshot-t.h"

#include <stdlib.h>
#include <string.h>

/* next_random: splitmix64 (any state is a good one, zero included). */
static uint64_t next_random(struct pt_lb_state *lb)
{
    uint64_t z = (lb->_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void pt_lb_init(struct pt_lb_state *lb, uint64_t seed)
{
    *lb = (struct pt_lb_state){ ._rng = seed };
}

/* cluster_policy: the policy <c> was configured with; round robin until Mappings can say. */
static enum pt_lb_policy cluster_policy(const struct pt_cluster *c)
{
    (void)c;
    return PT_LB_ROUND_ROBIN;
}

/* same_cluster: whether <b> is <a> again for load balancing: same name, policy and endpoints
 * in the same order. */
static bool same_cluster(const struct pt_cluster *a, const struct pt_cluster *b)
{
    if (strcmp(a->name, b->name) != 0 || a->nendpoints != b->nendpoints ||
        cluster_policy(a) != cluster_policy(b))
        return false;
    for (uint32_t i = 0; i < a->nendpoints; i++) {
        const struct pt_endpoint *x = &a->endpoints[i], *y = &b->endpoints[i];
        if (x->addrlen != y->addrlen || memcmp(&x->addr, &y->addr, x->addrlen) != 0)
            return false;
    }
    return true;
}

/* reset_cluster: a fresh state for <c> in <cs>, whose _endpoints are zeroed (all healthy):
 * a new epoch, and the cursor at a random endpoint so that workers do not all start on the
 * first one. */
static void reset_cluster(struct pt_lb_state *lb, struct pt_lb_cluster *cs, const struct pt_cluster *c)
{
    if (++lb->_last_epoch == 0)
        lb->_last_epoch = 1; /* 0 means "counted nowhere" */
    cs->_cluster = c;
    cs->_epoch = lb->_last_epoch;
    cs->_next = c->nendpoints ? (uint32_t)(next_random(lb) % c->nendpoints) : 0;
    cs->_nhealthy = c->nendpoints;
    cs->_policy = cluster_policy(c);
}

int pt_lb_adopt(struct pt_lb_state *lb, const struct pt_snapshot *s)
{
    struct pt_lb_cluster *clusters;
    struct pt_lb_endpoint *endpoints;
    size_t total = 0, off = 0;

    for (uint32_t i = 0; i < s->nclusters; i++)
        total += s->clusters[i]->nendpoints;
    clusters = calloc(s->nclusters ? s->nclusters : 1, sizeof(*clusters));
    endpoints = calloc(total ? total : 1, sizeof(*endpoints));
    if (clusters == NULL || endpoints == NULL) {
        free(clusters);
        free(endpoints);
        return PT_NOMEM;
    }
    for (uint32_t i = 0; i < s->nclusters; i++) {
        const struct pt_cluster *c = s->clusters[i];
        struct pt_lb_cluster *cs = &clusters[i];
        const struct pt_lb_cluster *old = i < lb->_nclusters ? &lb->_clusters[i] : NULL;

        if (old != NULL && same_cluster(old->_cluster, c)) {
            *cs = *old; /* cursor, health, epoch: in-flight picks release into it */
            cs->_cluster = c;
            memcpy(endpoints + off, old->_endpoints, c->nendpoints * sizeof(*endpoints));
        } else {
            reset_cluster(lb, cs, c);
        }
        cs->_endpoints = endpoints + off;
        off += c->nendpoints;
    }
    free(lb->_clusters);
    free(lb->_endpoints);
    lb->_clusters = clusters;
    lb->_endpoints = endpoints;
    lb->_nclusters = s->nclusters;
    return 0;
}

void pt_lb_free(struct pt_lb_state *lb)
{
    uint64_t rng = lb->_rng;
    free(lb->_clusters);
    free(lb->_endpoints);
    pt_lb_init(lb, rng);
}

/* adopted: <c>'s state when <c> is a cluster of the adopted snapshot, else NULL. */
static struct pt_lb_cluster *adopted(const struct pt_lb_state *lb, const struct pt_cluster *c)
{
    if (c->id < lb->_nclusters && lb->_clusters[c->id]._cluster == c)
        return &lb->_clusters[c->id];
    return NULL;
}

/* round_robin: the next endpoint after the last one picked, skipping unhealthy ones when
 * <use_health> (the caller made sure one is healthy). The cursor moves past the one chosen, so
 * with every endpoint healthy the order is 0, 1, ..., n-1, 0, ... from a random start. */
static uint32_t round_robin(struct pt_lb_cluster *cs, uint32_t n, bool use_health)
{
    const struct pt_health *h = cs->_cluster->health;
    uint32_t i = cs->_next;

    /* at most n steps: the shared health may change while we look (then the cursor's is used) */
    for (uint32_t k = 0; use_health && k < n; k++, i = i + 1 == n ? 0 : i + 1)
        if (cs->_endpoints[i].health == PT_LB_HEALTHY && (h == NULL || pt_health_ok(h, i)))
            break;
    cs->_next = i + 1 == n ? 0 : i + 1;
    return i;
}

/* pick_endpoint: the index chosen by <cs>'s policy among its <n> (> 0) endpoints. Health is
 * ignored when every endpoint is healthy (nothing to skip) or when fewer than
 * PT_LB_PANIC_PERCENT percent are (Envoy's panic: spread the load on all rather than crush the
 * few left; with no healthy endpoint this is the only choice). */
static uint32_t pick_endpoint(struct pt_lb_cluster *cs, uint32_t n, const struct pt_lb_ctx *ctx)
{
    const struct pt_health *h = cs->_cluster->health; /* health checks: shared by the workers */
    uint32_t nh = h != NULL && pt_health_nhealthy(h) < cs->_nhealthy ? pt_health_nhealthy(h) : cs->_nhealthy;
    bool panic = (uint64_t)nh * 100 < (uint64_t)n * PT_LB_PANIC_PERCENT;
    bool use_health = nh < n && !panic;

    (void)ctx; /* for ring_hash and maglev */
    switch (cs->_policy) {
    case PT_LB_ROUND_ROBIN:
    case PT_LB_LEAST_REQUEST: /* not implemented: see the top of this file */
    case PT_LB_RING_HASH:
    case PT_LB_MAGLEV:
    default:
        return round_robin(cs, n, use_health);
    }
}

const struct pt_endpoint *pt_lb_pick(struct pt_lb_state *lb, const struct pt_cluster *c,
                                     const struct pt_lb_ctx *ctx, struct pt_lb_pick *pick)
{
    static const struct pt_lb_ctx none;
    struct pt_lb_cluster *cs;
    uint32_t i;

    *pick = (struct pt_lb_pick){ 0 };
    if (c->nendpoints == 0)
        return NULL;
    cs = adopted(lb, c);
    if (cs == NULL) /* an older snapshot's cluster: no state to follow */
        return &c->endpoints[c->nendpoints == 1 ? 0 : next_random(lb) % c->nendpoints];
    i = pick_endpoint(cs, c->nendpoints, ctx ? ctx : &none);
    cs->_endpoints[i].active++;
    *pick = (struct pt_lb_pick){ .cluster_id = c->id, .endpoint = i, .epoch = cs->_epoch };
    return &c->endpoints[i];
}

void pt_lb_release(struct pt_lb_state *lb, struct pt_lb_pick *pick, enum pt_lb_outcome outcome)
{
    struct pt_lb_endpoint *e;
    struct pt_lb_cluster *cs;

    if (pick->epoch == 0)
        return;
    cs = pick->cluster_id < lb->_nclusters ? &lb->_clusters[pick->cluster_id] : NULL;
    if (cs != NULL && cs->_epoch == pick->epoch && pick->endpoint < cs->_cluster->nendpoints) {
        e = &cs->_endpoints[pick->endpoint];
        if (e->active > 0)
            e->active--;
        /* Passive health (Envoy's outlier detection), for clusters with health checks: the
         * count is shared by the workers (cluster/health.h), and the worker that checks the
         * cluster brings an ejected endpoint back (proxy/health.c). */
        if (cs->_cluster->health != NULL && outcome != PT_LB_CANCELLED &&
            pt_health_passive(cs->_cluster->health, pick->endpoint, outcome != PT_LB_SUCCESS,
                              outcome != PT_LB_SUCCESS ? pt_now_ms() : 0))
            pt_info("endpoint %s of %s ejected after %u failures in a row",
                     cs->_cluster->endpoints[pick->endpoint].name, cs->_cluster->name,
                     PT_HEALTH_CONSECUTIVE_5XX);
        switch (outcome) {
        case PT_LB_SUCCESS:
            e->consecutive_failures = 0;
            break;
        case PT_LB_CANCELLED:
            break;
        default:
            if (e->consecutive_failures < UINT32_MAX)
                e->consecutive_failures++;
            break;
        }
    }
    *pick = (struct pt_lb_pick){ 0 };
}

int pt_lb_set_health(struct pt_lb_state *lb, const struct pt_cluster *c, uint32_t index,
                     enum pt_lb_health health)
{
    struct pt_lb_cluster *cs = adopted(lb, c);
    struct pt_lb_endpoint *e;

    if (cs == NULL)
        return PT_NOTFOUND;
    if (index >= c->nendpoints || (health != PT_LB_HEALTHY && health != PT_LB_UNHEALTHY))
        return PT_INVAL;
    e = &cs->_endpoints[index];
    if (e->health != health) {
        if (health == PT_LB_HEALTHY)
            cs->_nhealthy++;
        else
            cs->_nhealthy--;
        e->health = (uint8_t)health;
    }
    return 0;
}

const struct pt_lb_endpoint *pt_lb_endpoint_state(const struct pt_lb_state *lb,
                                                  const struct pt_cluster *c, uint32_t index)
{
    const struct pt_lb_cluster *cs = adopted(lb, c);

    if (cs == NULL || index >= c->nendpoints)
        return NULL;
    return &cs->_endpoints[index];
}
