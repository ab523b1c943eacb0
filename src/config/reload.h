/* The control side of configuration: load the directory, compile, hand the snapshot to the
 * workers; again on every change, keeping the last good snapshot when a load is broken. */
#ifndef PT_CONFIG_RELOAD_H
#define PT_CONFIG_RELOAD_H

#include <stdbool.h>
#include <stdint.h>

struct pt_loop;
struct pt_config_env;

/* pt_reload_init: remembers where configuration comes from. */
void pt_reload_init(struct pt_loop *loop, const char *dir, const struct pt_config_env *env, int nworkers);

struct pt_resources;

/* Where resources come from instead of the directory: a function returning a new pt_resources
 * (freed by the caller), or NULL when it has nothing to publish yet. */
typedef struct pt_resources *(*pt_reload_source_cb)(const struct pt_config_env *env, void *arg);

/* pt_reload_set_source: later loads call <fn>(env, <arg>) instead of reading the directory;
 * <name> (static) names the source in log lines. sources/kubernetes.c installs itself here. */
void pt_reload_set_source(pt_reload_source_cb fn, const char *name, void *arg);

/* pt_reload_now: loads, compiles and publishes. Returns true when a new snapshot went live. */
bool pt_reload_now(void);

/* pt_reload_request: a reload soon (debounced), from any control-thread callback. */
void pt_reload_request(void *unused);

/* Counters for metrics and diag. */
struct pt_reload_stats {
    uint64_t ok, failed;
    uint64_t generation;
    double last_ms;
};
const struct pt_reload_stats *pt_reload_stats(void);

#endif
