/* Compiling resources into a snapshot (config/compile.c). Compiling has no side effects: it
 * binds no socket, opens no file and reads no environment variable. What the snapshot needs
 * from the world before it can serve (listening sockets for its Listeners' ports, the access-log
 * file at log.path, stats names) the control layer provides when it applies it
 * (control/apply.c); `portico check` compiles the same way and applies nothing. */
#ifndef PT_CONFIG_COMPILE_H
#define PT_CONFIG_COMPILE_H

#include "model/resource-t.h"
#include "model/snapshot-t.h"

struct pt_config_env;

/* pt_compile: builds a snapshot (reference count 1, generation <generation>) from <r>, with
 * Portico's namespace and AMBASSADOR_ID from <env> (NULL: the defaults). Problems are added to
 * <diag>; a resource that cannot be compiled is left out alone. Listeners have no sockets yet
 * (sock NULL) and no stats indexes (0). Never NULL. Control thread only. */
struct pt_snapshot *pt_compile(const struct pt_resources *r, const struct pt_config_env *env, uint64_t generation,
                               struct pt_diag *diag);

/* pt_compile_set_diag: (re)writes <s>'s diag document and invalid count from <r> and <diag>;
 * pt_compile calls it, and the control layer again after adding problems of its own. */
void pt_compile_set_diag(struct pt_snapshot *s, const struct pt_resources *r, const struct pt_diag *diag);

/* pt_compile_module: the `ambassador` Module of <r> whose settings a snapshot takes (the last
 * one, as in Emissary), or NULL; so the control layer can report a log file it cannot open on
 * it. */
const struct pt_module_res *pt_compile_module(const struct pt_resources *r);

#endif
