/* Compiling resources into a snapshot (config/compile.c). */
#ifndef PT_CONFIG_COMPILE_H
#define PT_CONFIG_COMPILE_H

#include "config/resource-t.h"
#include "config/snapshot-t.h"

struct pt_config_env;

/* pt_compile: builds a snapshot (reference count 1) from <r>, opening listening sockets for
 * <nworkers> workers (none when 0: validation only, as `portico check`). Problems are added to <diag>; a resource that cannot be compiled is left
 * out alone. Never NULL. Control thread only. */
struct pt_snapshot *pt_compile(const struct pt_resources *r, const struct pt_config_env *env, int nworkers,
                               uint64_t generation, struct pt_diag *diag);

#endif
