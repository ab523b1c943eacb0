/* `portico check DIR`: load and compile a configuration directory, exactly as `run` does, and
 * print every problem one per line, so it finds what `run` would reject. Nothing is applied:
 * compiling has no side effects (no socket, no file opened, no DNS without the resolver), and
 * the snapshot is dropped. Like `run`, it reads Istio's certificates from
 * AMBASSADOR_ISTIO_SECRET_DIR (once) into the Secret istio-certs. The exit status is what CI
 * pipelines use: 1 when any resource is invalid. Called by main.c. */
#include "control/check.h"
#include "config/compile.h"
#include "config/load.h"
#include "config/snapshot.h"
#include "core/loop.h"
#include "model/diag.h"
#include "tls/tls.h"

#include <stdlib.h>

/* inject_istio_certs: the istio-certs Secret from <dir> as it is now; why there is none goes to
 * <out>. */
static void inject_istio_certs(struct pt_resources *r, const char *dir, const char *ns, FILE *out)
{
    struct pt_loop *loop = pt_loop_new();
    struct pt_istio_pair pair = { 0 };

    if (loop == NULL || pt_istio_certs_start(loop, dir, NULL, NULL) != 0) {
        fprintf(out, "AMBASSADOR_ISTIO_SECRET_DIR %s: cannot be read\n", dir);
    } else if (!pt_istio_certs_get(&pair)) {
        fprintf(out, "AMBASSADOR_ISTIO_SECRET_DIR %s: %s\n", dir,
                pair.error[0] ? pair.error : "no certificates yet (Istio has not written them)");
    } else {
        pt_istio_inject_secret(r, ns);
    }
    pt_istio_pair_free(&pair);
    pt_istio_certs_stop();
    if (loop != NULL)
        pt_loop_free(loop);
}

int pt_config_check(const char *dir, FILE *out)
{
    struct pt_config_env env;
    pt_config_env_from_environ(&env);
    struct pt_resources *r = pt_config_load_dir(dir, &env);
    const char *istio = getenv("AMBASSADOR_ISTIO_SECRET_DIR");

    if (istio != NULL && istio[0] != '\0')
        inject_istio_certs(r, istio, env.namespace, out);
    pt_snapshot_release(pt_compile(r, &env, 0, &r->diag));
    pt_diag_print(&r->diag, out);
    int status = r->diag.nerrors > 0 ? 1 : 0;
    pt_resources_free(r);
    return status;
}
