/* Snapshot lifetime: reference counts and freeing. Compilation is in config/compile.c; the
 * control layer applies and publishes snapshots (control/); workers adopt them in
 * proxy/worker.c. */
#include "config/snapshot.h"
#include "cluster/health.h"
#include "cluster/lb.h"
#include "route/route.h"
#include "tls/tls.h"
#include "observe/trace.h"
#include "observe/logformat.h"

#include <stdlib.h>
#include <string.h>

static void listener_free(struct pt_listener *l)
{
    SSL_CTX_free(l->tls_ctx);
    pt_tls_sni_map_free(l->sni);
    free(l->name);
    free(l->stats_prefix);
    free(l->vhosts);
}

static void snapshot_free(struct pt_snapshot *s)
{
    if (s->on_free != NULL)
        s->on_free(s);
    for (uint32_t i = 0; i < s->nlisteners; i++)
        listener_free(&s->listeners[i]);
    free(s->listeners);
    free(s->http.ip.rules);
    for (uint32_t i = 0; i < s->nvhosts; i++) {
        if (s->vhosts[i]->routes)
            pt_route_table_free(s->vhosts[i]->routes);
        SSL_CTX_free(s->vhosts[i]->tls_ctx);
        free((char *)s->vhosts[i]->hostname);
        free(s->vhosts[i]);
    }
    free(s->vhosts);
    for (uint32_t i = 0; i < s->nclusters; i++) {
        struct pt_cluster *c = s->clusters[i];
        free(c->name);
        free(c->stats_name);
        free(c->service);
        free(c->host);
        free(c->endpoints);
        SSL_CTX_free(c->tls_ctx);
        free(c->sni);
        pt_health_cfg_free(c->checks, c->nchecks);
        pt_health_release(c->health);
        pt_lb_table_free(c);
        free(c);
    }
    free(s->clusters);
    pt_trace_config_release(s->tracing);
    if (s->tracing_cluster != NULL) {
        free(s->tracing_cluster->name);
        free(s->tracing_cluster->stats_name);
        free(s->tracing_cluster->service);
        free(s->tracing_cluster->host);
        free(s->tracing_cluster->endpoints);
        free(s->tracing_cluster);
    }
    for (uint32_t i = 0; i < s->nactions; i++) {
        struct pt_route_action *a = s->actions[i];
        for (uint32_t k = 0; k < a->nadd_req; k++)
            pt_logfmt_free(a->add_req[k].fmt);
        for (uint32_t k = 0; k < a->nadd_resp; k++)
            pt_logfmt_free(a->add_resp[k].fmt);
        pt_snapshot_free_overrides(&a->own_overrides);
        free(a->resp_keep);
        free(a->cors);
        free(a->redirect);
        free(a->retry);
        free(a->lb_hash);
        free(a); /* one block: header ops and strings live behind the struct */
    }
    pt_snapshot_free_overrides(&s->error_overrides);
    free(s->http.auth);      /* one block each, too; their clusters are in s->clusters */
    free(s->http.rls);
    free(s->actions);
    free(s->log.format);
    free(s->log.path);
    pt_logfmt_free(s->log.fmt);
    free(s->diag_json);
    free(s);
}

void pt_snapshot_ref(struct pt_snapshot *s)
{
    atomic_fetch_add_explicit(&s->refcnt, 1, memory_order_relaxed);
}

void pt_snapshot_free_overrides(struct pt_error_overrides *o)
{
    for (uint32_t i = 0; i < o->n; i++) {
        pt_logfmt_free(o->rules[i].body);
        free(o->rules[i].content_type);
    }
    free(o->rules);
    free(o->keep);
    *o = (struct pt_error_overrides){ 0 };
}

void pt_snapshot_release(struct pt_snapshot *s)
{
    if (s != NULL && atomic_fetch_sub_explicit(&s->refcnt, 1, memory_order_acq_rel) == 1)
        snapshot_free(s);
}

struct pt_listener *pt_snapshot_find_listener(struct pt_snapshot *s, int port)
{
    for (uint32_t i = 0; i < s->nlisteners; i++)
        if (s->listeners[i].port == port)
            return &s->listeners[i];
    return NULL;
}

void pt_snapshot_drop_listener(struct pt_snapshot *s, uint32_t i)
{
    listener_free(&s->listeners[i]);
    memmove(&s->listeners[i], &s->listeners[i + 1], (s->nlisteners - i - 1) * sizeof(*s->listeners));
    s->nlisteners--;
}
