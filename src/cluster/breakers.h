/* Circuit breakers (Envoy's, priority default): one block of limits and counts per cluster
 * name, shared by every worker with atomic counts, kept for the life of the process. The
 * compiler (config/compile.c) gets a cluster's block; the request path takes and gives back
 * requests, pending requests and retries (proxy/retry.c), the upstream connections
 * (proxy/upstream.c). */
#ifndef PT_CLUSTER_BREAKERS_H
#define PT_CLUSTER_BREAKERS_H

#include "model/traffic-t.h"

/* pt_breakers_get: the block of the cluster named <name>, made with the limits of <want> the
 * first time the name is seen (the same name always has the same limits: Emissary puts them
 * in it). Control thread; locked. Never NULL (aborts when memory is exhausted: config code). */
struct pt_breakers *pt_breakers_get(const char *name, const struct pt_breakers *want);

/* pt_breakers_take: one more of the resource counted in <count>, whose limit is <max>. False
 * when all <max> are in use (nothing is taken: the caller overflows). <*opened> is set when this
 * take used the last one (the breaker opens: its gauge goes to 1). Lock-free; the count never
 * exceeds <max>, so that opening and closing are seen exactly once each. */
static inline bool pt_breakers_take(_Atomic uint32_t *count, uint32_t max, bool *opened)
{
    uint32_t old = atomic_load_explicit(count, memory_order_relaxed);

    do {
        if (old >= max)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(count, &old, old + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    *opened = old + 1 == max;
    return true;
}

/* pt_breakers_put: gives back one taken with pt_breakers_take. True when the breaker closes
 * (it was full: its gauge goes back to 0). */
static inline bool pt_breakers_put(_Atomic uint32_t *count, uint32_t max)
{
    return atomic_fetch_sub_explicit(count, 1, memory_order_relaxed) == max;
}

#endif
