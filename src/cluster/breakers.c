/* The registry of circuit-breaker blocks (cluster/breakers.h), by cluster name. Blocks are never
 * freed: a pooled upstream connection counts against its cluster's block after the snapshot
 * that made it is gone, and a cluster that stays across a reload keeps its counts, as Envoy
 * keeps an unchanged cluster. There is one block per distinct cluster name ever configured
 * (about 80 bytes each). Called by config/compile.c. */
#include "cluster/breakers.h"
#include "core/common.h"
#include "core/strmap.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pt_strmap registry; /* name -> struct pt_breakers, keys owned by the entries */

struct entry {
    struct pt_breakers b;
    char name[];
};

struct pt_breakers *pt_breakers_get(const char *name, const struct pt_breakers *want)
{
    size_t len = strlen(name);
    struct entry *e;

    pthread_mutex_lock(&registry_lock);
    e = pt_strmap_get(&registry, name, len);
    if (e == NULL) {
        e = pt_xcalloc(1, sizeof(*e) + len + 1);
        memcpy(e->name, name, len + 1);
        e->b.max_connections = want->max_connections;
        e->b.max_pending = want->max_pending;
        e->b.max_requests = want->max_requests;
        e->b.max_retries = want->max_retries;
        pt_strmap_put(&registry, e->name, len, e);
    }
    pthread_mutex_unlock(&registry_lock);
    return &e->b;
}
