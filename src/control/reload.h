/* The reload loop (control/reload.c): load the configuration, compile, apply, hand the snapshot
 * to the workers; again on every change, keeping the last good snapshot when a load is broken. */
#ifndef PT_CONTROL_RELOAD_H
#define PT_CONTROL_RELOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "observe/stats-t.h" /* struct pt_reload_stats */

struct pt_loop;
struct pt_config_env;
struct pt_snapshot;

/* pt_reload_init: remembers where configuration comes from and how many workers serve it;
 * reads PORTICO_STATS (off: nothing counts on the request path, for make bench). */
void pt_reload_init(struct pt_loop *loop, const char *dir, const struct pt_config_env *env, int nworkers);

struct pt_resources;

/* Where resources come from instead of the directory: a function returning a new pt_resources
 * (freed by the caller), or NULL when it has nothing to publish yet. */
typedef struct pt_resources *(*pt_reload_source_cb)(const struct pt_config_env *env, void *arg);

/* pt_reload_set_source: later loads call <fn>(env, <arg>) instead of reading the directory;
 * <name> (static) names the source in log lines. main.c installs sources/kubernetes.c here. */
void pt_reload_set_source(pt_reload_source_cb fn, const char *name, void *arg);

/* pt_reload_now: loads, compiles, applies and publishes. Returns true when a new snapshot went
 * live. */
bool pt_reload_now(void);

/* pt_reload_request: a reload soon (debounced), from any control-thread callback. */
void pt_reload_request(void *unused);

/* pt_reload_snapshot: the snapshot in force, as the control thread sees it (admin, diag,
 * /metrics); NULL until the first configuration is live. Control thread only: workers receive
 * snapshots through their mailboxes (pt_workers_publish). */
struct pt_snapshot *pt_reload_snapshot(void);

/* pt_reload_stats: counters for metrics and diag. */
const struct pt_reload_stats *pt_reload_stats(void);

#endif
