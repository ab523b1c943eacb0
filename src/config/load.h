/* Reading configuration: YAML files (or a string) into typed resources (resource-t.h), with
 * every problem collected as a diagnostic instead of aborting. A bad resource is left out alone;
 * everything else in the same file and directory still loads. sources/ calls pt_config_load_dir
 * on every change (through control/reload.c); `portico check DIR` (control/check.c) too. */
#ifndef PT_CONFIG_LOAD_H
#define PT_CONFIG_LOAD_H

#include "model/diag.h"
#include "model/resource-t.h"

#include <stdbool.h>
#include <stdio.h>

/* Process environment that decides which resources apply (as Emissary). Strings are borrowed;
 * the loader copies what it keeps. An all-zero struct means the defaults. */
struct pt_config_env {
    const char *ambassador_id; /* AMBASSADOR_ID; NULL or "" = "default" */
    const char *ambassador_id_raw; /* AMBASSADOR_ID as set (NULL: unset), for the tracer's service
                                    * name ("ambassador-NS" when unset) */
    const char *namespace;     /* AMBASSADOR_NAMESPACE; NULL or "" = "default" */
    bool single_namespace;     /* AMBASSADOR_SINGLE_NAMESPACE: only resources in <namespace> */
};

/* pt_config_env_from_environ: fills <env> from AMBASSADOR_ID, AMBASSADOR_NAMESPACE and
 * AMBASSADOR_SINGLE_NAMESPACE. The strings point into the process environment. Emissary treats
 * any non-empty AMBASSADOR_SINGLE_NAMESPACE as true; Portico also reads "false", "no", "0" and
 * "off" (any case) as false, which is what the user meant. */
void pt_config_env_from_environ(struct pt_config_env *env);

/* pt_config_load_dir: reads every regular file named *.yaml or *.yml under <dir>, recursively,
 * in byte-wise sorted order per directory (so results are deterministic). Names starting with '.'
 * are skipped, files and directories alike (editor temp files, kubelet's `..data` and
 * `..2024_...` ConfigMap directories, whose files are reachable through the top-level symlinks).
 * Symlinks to regular files are followed; symlinks to directories are not (no loops). <dir> may
 * also name a single file. Files larger than 32 MiB are skipped with an error. <env> may be NULL
 * (defaults). Returns a new pt_resources, never NULL; problems are in ->diag. Free it with
 * pt_resources_free. */
struct pt_resources *pt_config_load_dir(const char *dir, const struct pt_config_env *env);

/* pt_config_load_string: like pt_config_load_dir for one NUL-terminated YAML text, reported as
 * <filename> (NULL: "<string>") in diagnostics. <env> may be NULL. Never returns NULL. */
struct pt_resources *pt_config_load_string(const char *yaml, const char *filename,
                                           const struct pt_config_env *env);

/* pt_resources_free: frees <r> and everything it points to (one arena). NULL is allowed. */
void pt_resources_free(struct pt_resources *r);

#endif
