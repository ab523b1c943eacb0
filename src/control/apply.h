/* Applying a compiled snapshot (control/apply.c): what compiling leaves to the control layer
 * because it touches the world. Used by control/reload.c before it publishes a snapshot; never
 * by `portico check`, which has nothing to apply. */
#ifndef PT_CONTROL_APPLY_H
#define PT_CONTROL_APPLY_H

#include <stdbool.h>

#include "model/resource-t.h"
#include "model/snapshot-t.h"

struct pt_apply_opts {
    int nworkers;   /* listening sockets per port (one per worker), at least 1 */
    bool stats_off; /* PORTICO_STATS=off: register no stats names, so nothing counts on the
                     * request path (index 0); for measuring what counters cost (make bench) */
};

/* pt_apply: makes the compiled snapshot <s> (not yet published) ready to serve: binds each
 * Listener's port or reuses the sockets an earlier snapshot bound (a Listener whose port
 * cannot be bound is reported on its resource in <r> and left out), opens the access-log file
 * at s->log.path for append (one that cannot be opened is reported on the `ambassador` Module,
 * and the log goes to stdout), registers the stats names of its clusters and listeners, and
 * notes when no Listener is configured. Problems go to <diag> (the diagnostics <s> was compiled
 * with) and into s->diag_json. What it attached is released by s->on_free when the snapshot is
 * freed. <r> is the resources <s> was compiled from. Control thread only. */
void pt_apply(struct pt_snapshot *s, const struct pt_resources *r, const struct pt_apply_opts *o,
              struct pt_diag *diag);

#endif
