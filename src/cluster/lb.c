/* Load balancing (see cluster/lb.h): a worker's per-cluster state built when it adopts a
 * snapshot, the choice of an endpoint per request, and the counts a request's end updates; and
 * the ring_hash and maglev tables that compile builds once per snapshot. It does not connect,
 * pool or retry (proxy/upstream.c does), and it runs no health checks: it only holds the health
 * that pt_lb_set_health() is told. Called by config/compile.c (tables), proxy/worker.c (adopt),
 * proxy/session.c (pick) and proxy/stream.c (release).
 *
 * The policies: pick_endpoint() switches on the cluster's policy. A policy is a function of the
 * cluster state, n, use_health (skip endpoints that are not PT_LB_HEALTHY) and the request's
 * context, that touches nothing but its cluster state:
 *  - round_robin: the cursor, from a random start per worker.
 *  - least_request: two random (healthy) endpoints, the one with fewer active requests (Envoy's
 *    default choice_count 2); active is counted by pick and release.
 *  - ring_hash / maglev: the request's hash looked up in the shared table (pt_lb_table_build),
 *    then on to the next healthy entry. Envoy rebuilds its table without the unhealthy hosts;
 *    walking on gives the same answer on a ring and moves only the unhealthy endpoint's keys
 *    with Maglev too. No hash: a random one, as Envoy does.
 * The policy comes from the cluster (pt_cluster.lb_policy), which compile fills from the
 * Mapping's (or the Module's) `load_balancer`; a changed policy resets the state. */
#include "cluster/lb.h"
#include "cluster/health.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/hash.h"
#include "model/snapshot-t.h"

#include <stdio.h>
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

static const char *const policy_names[] = { "round_robin", "least_request", "ring_hash", "maglev" };

int pt_lb_policy_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof(policy_names) / sizeof(policy_names[0]); i++)
        if (strcmp(name, policy_names[i]) == 0)
            return (int)i;
    return -1;
}

const char *pt_lb_policy_name(enum pt_lb_policy policy)
{
    return (unsigned)policy < sizeof(policy_names) / sizeof(policy_names[0]) ? policy_names[policy] : "?";
}

/* cluster_policy: the policy <c> was configured with. */
static enum pt_lb_policy cluster_policy(const struct pt_cluster *c)
{
    return c->lb_policy <= PT_LB_MAGLEV ? (enum pt_lb_policy)c->lb_policy : PT_LB_ROUND_ROBIN;
}

/* ---- tables (compile time) ------------------------------------------------------------------ */

static int ring_point_cmp(const void *a, const void *b)
{
    const struct pt_lb_ring_point *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->endpoint < y->endpoint ? -1 : x->endpoint > y->endpoint;
}

/* build_ring: Envoy's ring for <n> equally weighted endpoints: ceil(min/n) points each (so
 * at least PT_LB_RING_MIN_SIZE in all), point i of an endpoint at xxHash64("<ip:port>_<i>"). */
static struct pt_lb_table *build_ring(const struct pt_cluster *c)
{
    uint32_t n = c->nendpoints, per = (PT_LB_RING_MIN_SIZE + n - 1) / n, k = 0;
    struct pt_lb_table *t = pt_xcalloc(1, sizeof(*t) + (size_t)n * per * sizeof(*t->ring));

    t->policy = PT_LB_RING_HASH;
    t->size = n * per;
    t->ring = (struct pt_lb_ring_point *)(t + 1);
    for (uint32_t e = 0; e < n; e++) {
        for (uint32_t i = 0; i < per; i++) {
            char key[96];
            int len = snprintf(key, sizeof(key), "%s_%u", c->endpoints[e].name, i);
            if (len < 0 || (size_t)len >= sizeof(key))
                len = 0; /* cannot happen: a name is at most 63 bytes */
            t->ring[k++] = (struct pt_lb_ring_point){ pt_xxhash64(key, (size_t)len, 0), e };
        }
    }
    qsort(t->ring, t->size, sizeof(*t->ring), ring_point_cmp);
    return t;
}

/* A Maglev permutation being filled: offset + skip * next, modulo the table size. */
struct maglev_perm {
    uint64_t offset, skip, next;
    uint32_t endpoint;
    const char *name;
};

static int perm_name_cmp(const void *a, const void *b)
{
    const struct maglev_perm *x = a, *y = b;
    int d = strcmp(x->name, y->name);
    return d ? d : (x->endpoint > y->endpoint) - (x->endpoint < y->endpoint);
}

/* build_maglev: the Maglev table (Eisenbud et al., listing 1) as Envoy fills it for equally
 * weighted endpoints: in name order, each endpoint in turn takes the next free slot of its
 * permutation until every slot is taken. */
static struct pt_lb_table *build_maglev(const struct pt_cluster *c)
{
    const uint64_t m = PT_LB_MAGLEV_SIZE;
    uint32_t n = c->nendpoints, filled = 0;
    struct maglev_perm *perm = pt_xcalloc(n, sizeof(*perm));
    struct pt_lb_table *t = pt_xcalloc(1, sizeof(*t) + m * sizeof(*t->maglev));

    t->policy = PT_LB_MAGLEV;
    t->size = (uint32_t)m;
    t->maglev = (uint32_t *)(t + 1);
    for (uint32_t e = 0; e < n; e++) {
        const char *name = c->endpoints[e].name;
        size_t len = strlen(name);
        perm[e] = (struct maglev_perm){ .offset = pt_xxhash64(name, len, 0) % m,
                                        .skip = pt_xxhash64(name, len, 1) % (m - 1) + 1,
                                        .endpoint = e, .name = name };
    }
    qsort(perm, n, sizeof(*perm), perm_name_cmp);
    for (uint32_t s = 0; s < m; s++)
        t->maglev[s] = UINT32_MAX; /* free */
    while (filled < m) {
        for (uint32_t i = 0; i < n && filled < m; i++) {
            uint64_t slot = (perm[i].offset + perm[i].skip * perm[i].next) % m;
            while (t->maglev[slot] != UINT32_MAX) {
                perm[i].next++;
                slot = (perm[i].offset + perm[i].skip * perm[i].next) % m;
            }
            t->maglev[slot] = perm[i].endpoint;
            perm[i].next++;
            filled++;
        }
    }
    free(perm);
    return t;
}

void pt_lb_table_build(struct pt_cluster *c)
{
    pt_lb_table_free(c);
    if (c->nendpoints == 0)
        return;
    if (cluster_policy(c) == PT_LB_RING_HASH)
        c->lb_table = build_ring(c);
    else if (cluster_policy(c) == PT_LB_MAGLEV)
        c->lb_table = build_maglev(c);
}

void pt_lb_table_free(struct pt_cluster *c)
{
    free(c->lb_table);
    c->lb_table = NULL;
}

bool pt_lb_same_endpoints(const struct pt_cluster *a, const struct pt_cluster *b)
{
    if (a->nendpoints != b->nendpoints)
        return false;
    for (uint32_t i = 0; i < a->nendpoints; i++) {
        const struct pt_endpoint *x = &a->endpoints[i], *y = &b->endpoints[i];
        if (x->addrlen != y->addrlen || memcmp(&x->addr, &y->addr, x->addrlen) != 0)
            return false;
    }
    return true;
}

/* same_cluster: whether <b> is <a> again for load balancing: same name, policy and endpoints
 * in the same order. */
static bool same_cluster(const struct pt_cluster *a, const struct pt_cluster *b)
{
    return strcmp(a->name, b->name) == 0 && cluster_policy(a) == cluster_policy(b) && pt_lb_same_endpoints(a, b);
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
static inline uint32_t round_robin(struct pt_lb_cluster *cs, uint32_t n, bool use_health)
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

/* usable: whether endpoint <i> may be picked: healthy (as this worker knows it, and as the
 * cluster's health checks, shared by the workers, say), or health is not looked at (<cs> NULL:
 * an older snapshot's cluster, whose health is unknown). */
static inline bool usable(const struct pt_lb_cluster *cs, uint32_t i, bool use_health)
{
    const struct pt_health *h;

    if (cs == NULL || !use_health)
        return true;
    h = cs->_cluster->health;
    return cs->_endpoints[i].health == PT_LB_HEALTHY && (h == NULL || pt_health_ok(h, i));
}

/* random_endpoint: one of the <n> endpoints at random, a healthy one when <use_health> (the
 * caller saw at least half healthy: a few draws, then the next healthy one; the checking
 * worker may mark them all down meanwhile, and then the draw stands, as in panic). */
static uint32_t random_endpoint(struct pt_lb_state *lb, const struct pt_lb_cluster *cs, uint32_t n, bool use_health)
{
    uint32_t i = (uint32_t)(next_random(lb) % n);

    for (int k = 0; k < 4 && !usable(cs, i, use_health); k++)
        i = (uint32_t)(next_random(lb) % n);
    for (uint32_t k = 0; k < n && !usable(cs, i, use_health); k++)
        i = i + 1 == n ? 0 : i + 1;
    return i;
}

/* least_request: Envoy's power of two choices: two random endpoints (possibly the same), the
 * one with fewer active requests, the first on a tie. */
static uint32_t least_request(struct pt_lb_state *lb, const struct pt_lb_cluster *cs, uint32_t n, bool use_health)
{
    uint32_t a = random_endpoint(lb, cs, n, use_health), b = random_endpoint(lb, cs, n, use_health);

    return cs->_endpoints[b].active < cs->_endpoints[a].active ? b : a;
}

/* ring_lookup: the index of the first point of ring <t> whose hash is at least <h>, or 0 when
 * <h> is past the last (the ring wraps), as Envoy's ketama search. */
static uint32_t ring_lookup(const struct pt_lb_table *t, uint64_t h)
{
    uint32_t lo = 0, hi = t->size;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->ring[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == t->size ? 0 : lo;
}

/* table_pick: the endpoint that table <t> gives hash <h>, or when <cs> says it is unhealthy
 * (<use_health>), the endpoint of the next entry that is healthy (bounded: one turn). */
static uint32_t table_pick(const struct pt_lb_table *t, const struct pt_lb_cluster *cs, uint64_t h, bool use_health)
{
    uint32_t i = t->ring ? ring_lookup(t, h) : (uint32_t)(h % t->size);
    const uint32_t *slots = t->maglev;

    for (uint32_t k = 0; k < t->size; k++) {
        uint32_t e = slots ? slots[i] : t->ring[i].endpoint;
        if (usable(cs, e, use_health))
            return e;
        i = i + 1 == t->size ? 0 : i + 1;
    }
    return slots ? slots[i] : t->ring[i].endpoint;
}

/* hash_pick: ring_hash and maglev: the table's endpoint for the request's hash, or for a
 * random one when it has none (nor a table: a cluster built by hand). */
static uint32_t hash_pick(struct pt_lb_state *lb, const struct pt_cluster *c, const struct pt_lb_cluster *cs,
                          const struct pt_lb_ctx *ctx, bool use_health)
{
    if (c->lb_table == NULL)
        return random_endpoint(lb, cs, c->nendpoints, use_health);
    return table_pick(c->lb_table, cs, ctx->has_hash ? ctx->hash : next_random(lb), use_health);
}

/* pick_endpoint: the index chosen by <cs>'s policy among its <n> (> 0) endpoints. Health is
 * ignored when every endpoint is healthy (nothing to skip) or when fewer than
 * PT_LB_PANIC_PERCENT percent are (Envoy's panic: spread the load on all rather than crush the
 * few left; with no healthy endpoint this is the only choice). */
static uint32_t pick_endpoint(struct pt_lb_state *lb, struct pt_lb_cluster *cs, uint32_t n,
                              const struct pt_lb_ctx *ctx)
{
    const struct pt_health *h = cs->_cluster->health; /* health checks: shared by the workers */
    uint32_t nh;
    bool panic, use_health;

    if (h == NULL && cs->_nhealthy == n && cs->_policy == PT_LB_ROUND_ROBIN)
        return round_robin(cs, n, false); /* the common case: nothing to skip */
    nh = h != NULL && pt_health_nhealthy(h) < cs->_nhealthy ? pt_health_nhealthy(h) : cs->_nhealthy;
    panic = (uint64_t)nh * 100 < (uint64_t)n * PT_LB_PANIC_PERCENT;
    use_health = nh < n && !panic;

    switch (cs->_policy) {
    case PT_LB_LEAST_REQUEST:
        return least_request(lb, cs, n, use_health);
    case PT_LB_RING_HASH:
    case PT_LB_MAGLEV:
        return hash_pick(lb, cs->_cluster, cs, ctx, use_health);
    case PT_LB_ROUND_ROBIN:
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
    if (ctx == NULL)
        ctx = &none;
    cs = adopted(lb, c);
    if (cs == NULL) { /* an older snapshot's cluster: no state to follow */
        if (c->lb_table != NULL && ctx->has_hash)
            return &c->endpoints[table_pick(c->lb_table, NULL, ctx->hash, false)];
        return &c->endpoints[c->nendpoints == 1 ? 0 : next_random(lb) % c->nendpoints];
    }
    i = pick_endpoint(lb, cs, c->nendpoints, ctx);
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
