/* The reload loop: load every YAML file of the directory (or ask the source), compile, apply
 * (control/apply.c), publish. A load whose files do not parse (YAML syntax errors) is refused
 * whole and the last good snapshot stays, since a half-read file would silently drop its
 * routes; invalid resources (or documents) in files that parse are rejected alone and
 * everything valid applies. Publishing hands the snapshot to the workers, lets a replaced
 * process drain after the first one (hot restart), and updates what lives outside the
 * snapshot: the Zipkin exporter's TracingService and the certificate-expiry gauge. The log line
 * "snapshot N compiled in X ms" is read by bench/. The resources come from the directory, or
 * from the source set with pt_reload_set_source (main.c sets sources/kubernetes.c's). Control
 * thread only (main.c and the callbacks it gives sources/, cluster/dns.c and tls/istio.c). */
#include "control/reload.h"
#include "control/apply.h"
#include "control/hotrestart.h"
#include "config/compile.h"
#include "config/load.h"
#include "config/snapshot.h"
#include "core/log.h"
#include "core/loop.h"
#include "proxy/proxy.h"
#include "tls/tls.h"
#include "observe/trace.h"
#include "observe/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    struct pt_loop *loop;
    const char *dir;
    pt_reload_source_cb source; /* NULL: the directory */
    const char *source_name;
    void *source_arg;
    const struct pt_config_env *env;
    struct pt_apply_opts apply;
    struct pt_timer timer;
    struct pt_reload_stats stats;
    struct pt_snapshot *current; /* the snapshot in force (a reference), NULL before the first */
} rl;

static void on_timer(struct pt_timer *t)
{
    pt_reload_now();
}

void pt_reload_init(struct pt_loop *loop, const char *dir, const struct pt_config_env *env, int nworkers)
{
    rl.loop = loop;
    rl.dir = dir;
    const char *stats = getenv("PORTICO_STATS");

    rl.env = env;
    rl.apply.nworkers = nworkers;
    rl.apply.stats_off = stats != NULL && strcmp(stats, "off") == 0;
    rl.timer.cb = on_timer;
}

void pt_reload_set_source(pt_reload_source_cb fn, const char *name, void *arg)
{
    rl.source = fn;
    rl.source_name = name;
    rl.source_arg = arg;
}

void pt_reload_request(void *unused)
{
    if (!pt_timer_armed(&rl.timer))
        pt_timer_arm(rl.loop, &rl.timer, 5);
}

static bool has_file_errors(const struct pt_diag *d)
{
    return d->nfile_errors > 0;
}

static void log_diag(const struct pt_diag *d)
{
    for (size_t i = 0; i < d->n; i++) {
        const struct pt_diag_entry *e = &d->entries[i];
        if (e->severity == PT_DIAG_ERROR)
            pt_error("%s:%d: %s%s%s", e->origin.file ? e->origin.file : "-", e->origin.line,
                     e->object ? e->object : "", e->object ? ": " : "", e->message);
        else
            pt_info("%s:%d: %s%snotice: %s", e->origin.file ? e->origin.file : "-", e->origin.line,
                    e->object ? e->object : "", e->object ? ": " : "", e->message);
    }
}

/* The first certificate to expire: served ones, origination ones, and Istio's. */
static time_t earliest_expiry(const struct pt_snapshot *s)
{
    time_t t = s->cert_not_after;
    struct pt_istio_pair p = { 0 };
    for (uint32_t i = 0; i < s->nclusters; i++) {
        time_t c = s->clusters[i]->tls_ctx ? pt_tls_ctx_not_after(s->clusters[i]->tls_ctx) : 0;
        if (c && (t == 0 || c < t))
            t = c;
    }
    if (pt_istio_certs_get(&p) && p.not_after && (t == 0 || p.not_after < t))
        t = p.not_after;
    pt_istio_pair_free(&p);
    return t;
}

/* publish: puts the applied snapshot <s> in force (taking over the caller's reference). */
static void publish(struct pt_snapshot *s)
{
    struct pt_snapshot *old = rl.current;

    pt_workers_publish(s);
    if (rl.stats.ok == 1)
        pt_hotrestart_ready(); /* a replaced process drains only once we serve */
    pt_zipkin_set_config(s->tracing); /* TracingService changes apply without a restart */
    pt_stats_set_cert_expiry(earliest_expiry(s));
    rl.current = s;
    pt_snapshot_release(old);
}

bool pt_reload_now(void)
{
    uint64_t t0 = pt_now_ms();
    struct pt_resources *r = rl.source ? rl.source(rl.env, rl.source_arg) : pt_config_load_dir(rl.dir, rl.env);
    struct pt_snapshot *s;

    pt_timer_cancel(&rl.timer);
    if (r == NULL) /* the source has nothing yet (Kubernetes before its first LIST) */
        return false;
    if (has_file_errors(&r->diag) && rl.current != NULL) {
        log_diag(&r->diag);
        pt_error("configuration in %s has errors: keeping snapshot %lu", rl.source ? rl.source_name : rl.dir,
                 (unsigned long)rl.stats.generation);
        rl.stats.failed++;
        pt_resources_free(r);
        return false;
    }
    /* Istio's certificates from AMBASSADOR_ISTIO_SECRET_DIR become the Secret istio-certs (which
     * wins over a Kubernetes Secret of the same name). */
    pt_istio_inject_secret(r, rl.env->namespace);
    s = pt_compile(r, rl.env, rl.stats.generation + 1, &r->diag);
    pt_apply(s, r, &rl.apply, &r->diag);
    log_diag(&r->diag);
    rl.stats.generation++;
    rl.stats.ok++;
    rl.stats.last_ms = (double)(pt_now_ms() - t0);
    pt_info("snapshot %lu compiled in %.1f ms (%zu mappings, %u clusters, %zu errors)",
            (unsigned long)s->generation, rl.stats.last_ms, r->nmappings, s->nclusters, r->diag.nerrors);
    publish(s);
    pt_resources_free(r);
    return true;
}

struct pt_snapshot *pt_reload_snapshot(void)
{
    return rl.current;
}

const struct pt_reload_stats *pt_reload_stats(void)
{
    return &rl.stats;
}
