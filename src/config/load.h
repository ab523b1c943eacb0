/* Reading configuration: YAML files (or a string) into typed resources (resource-t.h), with
 * every problem collected as a diagnostic instead of aborting. A bad resource is left out alone;
 * everything else in the same file and directory still loads. sources/ calls pt_config_load_dir
 * on every change; `portico check DIR` calls pt_config_check. */
#ifndef PT_CONFIG_LOAD_H
#define PT_CONFIG_LOAD_H

#include "config/resource-t.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

/* Process environment that decides which resources apply (as Emissary). Strings are borrowed;
 * the loader copies what it keeps. An all-zero struct means the defaults. */
struct pt_config_env {
    const char *ambassador_id; /* AMBASSADOR_ID; NULL or "" = "default" */
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

/* pt_diag_add: appends one diagnostic to <d>. <o> (may be NULL) is copied, but o->file is
 * borrowed and must outlive <d> (resources keep file names in their arena). <object> is
 * "Kind/namespace/name", or NULL for a file-level problem; it is copied. The message is
 * printf-formatted. Errors are counted in d->nerrors. Aborts when memory is exhausted. */
void pt_diag_add(struct pt_diag *d, enum pt_diag_severity sev, const struct pt_origin *o,
                 const char *object, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* pt_diag_vadd: pt_diag_add with a va_list. */
void pt_diag_vadd(struct pt_diag *d, enum pt_diag_severity sev, const struct pt_origin *o,
                  const char *object, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

/* pt_diag_print: writes every entry of <d> to <out>, in the order added, one line each:
 *   errors   "FILE:LINE: Kind/namespace/name: message"
 *   notices  "FILE:LINE: Kind/namespace/name: notice: message"
 * ":LINE" is left out when the line is unknown (0) and "Kind/namespace/name: " when there is no
 * object. Messages never contain newlines (control bytes are printed as '?'). */
void pt_diag_print(const struct pt_diag *d, FILE *out);

/* pt_diag_free: frees the entries of <d> (not <d> itself); <d> is empty again. */
void pt_diag_free(struct pt_diag *d);

/* pt_config_check: `portico check DIR`. Loads <dir> with the environment's settings, prints every
 * diagnostic (errors and notices) to <out>, and returns 1 if there was any error, else 0. */
int pt_config_check(const char *dir, FILE *out);

#endif
