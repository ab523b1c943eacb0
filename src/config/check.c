/* `portico check DIR`: load and compile a configuration directory without serving it (no
 * sockets, no DNS) and print every problem one per line, so it finds what `run` would reject.
 * The exit status is what CI pipelines use: 1 when any resource is invalid. Called by main.c. */
#include "config/compile.h"
#include "config/load.h"
#include "config/snapshot.h"

int pt_config_check(const char *dir, FILE *out)
{
    struct pt_config_env env;
    pt_config_env_from_environ(&env);
    struct pt_resources *r = pt_config_load_dir(dir, &env);
    pt_snapshot_release(pt_compile(r, &env, 0, 0, &r->diag));
    pt_diag_print(&r->diag, out);
    int status = r->diag.nerrors > 0 ? 1 : 0;
    pt_resources_free(r);
    return status;
}
