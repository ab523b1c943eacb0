/* Applying a compiled snapshot: the side effects that config/compile.c leaves out so compiling
 * stays pure (and `portico check` is only load + compile): listening sockets (bound, or reused
 * from the snapshot in force, through control/listen.c), the access-log file, and the stats
 * names the request path counts under, and the health of checked clusters (kept from the
 * snapshot in force when a cluster did not change). Called by control/reload.c before it publishes; the
 * snapshot's on_free hook undoes it when the last holder releases the snapshot. */
#include "control/apply.h"
#include "control/listen.h"
#include "control/reload.h"
#include "cluster/health.h"
#include "config/compile.h"
#include "config/snapshot.h"
#include "model/diag.h"
#include "observe/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* on_free: releases what pt_apply attached to <s>. Any thread (the last release may be a
 * worker's): pt_listen_sock_release takes the registry lock. */
static void on_free(struct pt_snapshot *s)
{
    for (uint32_t i = 0; i < s->nlisteners; i++)
        if (s->listeners[i].sock != NULL)
            pt_listen_sock_release(s->listeners[i].sock);
    if (s->log.fd > 2)
        close(s->log.fd);
}

/* listener_meta: the resource in <r> that listener <l> ("ns/name") was compiled from. */
static const struct pt_meta *listener_meta(const struct pt_resources *r, const struct pt_listener *l)
{
    const char *slash = strchr(l->name, '/');
    size_t nslen = slash ? (size_t)(slash - l->name) : 0;

    for (size_t i = 0; slash != NULL && i < r->nlisteners; i++) {
        const struct pt_meta *m = &r->listeners[i].meta;
        if (strlen(m->namespace) == nslen && strncmp(m->namespace, l->name, nslen) == 0 &&
            strcmp(m->name, slash + 1) == 0)
            return m;
    }
    return NULL;
}

/* object: "Kind/namespace/name" of <m> in <buf>, or NULL (no object) when <m> is NULL. */
static const char *object(char *buf, size_t size, const struct pt_meta *m)
{
    if (m == NULL)
        return NULL;
    if (snprintf(buf, size, "%s/%s/%s", m->kind, m->namespace, m->name) >= (int)size)
        buf[size - 1] = '\0'; /* names are far shorter; a cut name still reads */
    return buf;
}

/* bind_listeners: a socket set for every listener of <s>; one whose port cannot be bound is
 * reported and dropped from <s>. */
static void bind_listeners(struct pt_snapshot *s, const struct pt_resources *r, int nworkers,
                           struct pt_diag *diag)
{
    uint32_t i = 0;

    while (i < s->nlisteners) {
        struct pt_listener *l = &s->listeners[i];
        char err[256], obj[512];
        const struct pt_meta *m;

        l->sock = pt_listen_sock_get(l->port, nworkers, err, sizeof(err));
        if (l->sock != NULL) {
            i++;
            continue;
        }
        m = listener_meta(r, l);
        pt_diag_add(diag, PT_DIAG_ERROR, m ? &m->origin : NULL, object(obj, sizeof(obj), m), "%s", err);
        pt_snapshot_drop_listener(s, i);
    }
}

/* open_log: s->log.path opened for append (created 0644), kept above stderr since fd 0 means
 * stdout in the snapshot. */
static void open_log(struct pt_snapshot *s, const struct pt_resources *r, struct pt_diag *diag)
{
    struct pt_log_conf *lc = &s->log;

    if (lc->path == NULL)
        return;
    lc->fd = open(lc->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (lc->fd >= 0 && lc->fd <= 2) {
        int fd = fcntl(lc->fd, F_DUPFD_CLOEXEC, 3);
        close(lc->fd);
        lc->fd = fd;
    }
    if (lc->fd < 0) {
        const struct pt_module_res *m = pt_compile_module(r);
        char obj[512];
        pt_diag_add(diag, PT_DIAG_ERROR, m ? &m->meta.origin : NULL, object(obj, sizeof(obj), m ? &m->meta : NULL),
                    "envoy_log_path %s: %s; access logs go to stdout", lc->path, strerror(errno));
        lc->fd = 0;
    }
}

/* register_stats: the stats indexes the request path counts under (0 when stats are off). */
static void register_stats(struct pt_snapshot *s, bool off)
{
    if (off)
        return;
    for (uint32_t i = 0; i < s->nclusters; i++)
        s->clusters[i]->stats_idx = pt_stats_cluster_index(s->clusters[i]->stats_name);
    for (uint32_t i = 0; i < s->nlisteners; i++) {
        struct pt_listener *l = &s->listeners[i];
        char addr[64];
        l->stats_idx = pt_stats_listener_index(pt_stats_listener_address(addr, sizeof(addr), l->port));
        l->stats_prefix_idx = pt_stats_prefix_index(l->stats_prefix);
    }
}

void pt_apply(struct pt_snapshot *s, const struct pt_resources *r, const struct pt_apply_opts *o,
              struct pt_diag *diag)
{
    size_t nbefore = diag->n;

    s->on_free = on_free;
    bind_listeners(s, r, o->nworkers > 0 ? o->nworkers : 1, diag);
    open_log(s, r, diag);
    register_stats(s, o->stats_off);
    /* health of checked clusters, kept from the snapshot in force where a cluster is the same */
    if (pt_health_attach(s, pt_reload_snapshot()) != 0)
        pt_diag_add(diag, PT_DIAG_ERROR, NULL, NULL, "out of memory: some health_checks do not run");
    if (r->nlisteners == 0) /* `portico check` of Mappings alone is fine: not said there */
        pt_diag_add(diag, PT_DIAG_NOTICE, NULL, NULL, "no Listener is configured: nothing is served");
    if (diag->n != nbefore)
        pt_compile_set_diag(s, r, diag);
}
