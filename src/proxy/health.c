/* Active health checks (see proxy/health.h): for each checked cluster its worker keeps one
 * struct hcheck per endpoint and check, with one timer that starts the check and then bounds
 * it (the check's timeout), an exchange of the upstream client, and the counts the thresholds
 * need. A check's request is built once per cluster and check (Envoy's: GET <path> with Host
 * <hostname or the cluster's name> and User-Agent Envoy/HC, or a gRPC
 * grpc.health.v1.Health/Check with the upstream_name) and sent as it is each time. The next
 * check starts an interval after the last one ended, as Envoy's.
 *
 * Why one worker per cluster: every worker checking every endpoint would multiply the checks by
 * the workers; Envoy checks once per cluster and shares the result, and so does this, through
 * the cluster's shared health (atomics that every worker's lb reads for nothing measurable).
 * The worker is chosen by the cluster's name, so a reload keeps a cluster on the same one.
 *
 * Lifetimes: a check in flight holds the snapshot it began on (the wref count requests use), so
 * its cluster, endpoint and TLS context stay alive when a reload comes; a reload that drops or
 * changes the cluster cancels it (pt_hc_finish without reuse: no callback follows). */
#include "proxy/health.h"
#include "proxy/httpclient.h"
#include "proxy/proxy.h"
#include "cluster/health.h"
#include "core/log.h"
#include "http/h1write.h"
#include "observe/stats.h"

#include <stdlib.h>
#include <string.h>

#define HC_BODY_KEEP 64 /* the start of a gRPC answer's body kept: a HealthCheckResponse is 2 bytes */

struct hset;

/* One endpoint's check <k> of a cluster, on its worker. */
struct hcheck {
    struct pt_hc hc;
    struct pt_timer timer;          /* idle: starts the next check; in flight: its timeout */
    struct hset *set;
    struct pt_snapshot *snap;       /* held while in flight (wref), NULL otherwise */
    struct pt_health_run run;
    uint32_t ep, k;
    int status;                     /* the answer's, 0 before */
    bool in_flight;
    bool retried;                   /* sent again on a new connection (the pooled one was stale) */
    bool grpc_ok;                   /* grpc-status 0 was seen */
    uint8_t body[HC_BODY_KEEP];
    uint32_t body_len;
};

/* A checked cluster on its worker. */
struct hset {
    struct pt_worker *w;
    const struct pt_cluster *c;     /* in the worker's adopted snapshot */
    struct pt_health *health;       /* c->health: who the set is, across reloads */
    char **req;                     /* per check: the request (head, then body) */
    uint32_t *req_len, *req_head;
    struct hcheck *checks;          /* nendpoints x nchecks, endpoint-major */
    uint32_t nchecks;
};

/* What a worker checks: its sets, for the adopted snapshot. */
struct pt_health_worker {
    struct hset **sets;
    uint32_t n;
};

static const struct pt_hc_ops check_ops;

int pt_health_owner(const struct pt_cluster *c, int nworkers)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (const char *p = c->name; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    h = (h ^ (uint32_t)c->http2) * 16777619u;
    return nworkers > 1 ? (int)(h % (uint32_t)nworkers) : 0;
}

/* removed: the check request does not carry header <name> (remove_request_headers). */
static bool removed(const struct pt_health_cfg *cfg, const char *name)
{
    for (uint32_t i = 0; i < cfg->nremove; i++)
        if (strcmp(cfg->remove[i], name) == 0)
            return true;
    return false;
}

/* build_request: check <cfg> of <c> as bytes (malloc'd, head then body); NULL when out of
 * memory or too large. */
static char *build_request(const struct pt_cluster *c, const struct pt_health_cfg *cfg, uint32_t *len,
                           uint32_t *head)
{
    size_t cap = 512 + (cfg->path ? strlen(cfg->path) : 0) + (cfg->host ? strlen(cfg->host) : strlen(c->name)) +
                 (cfg->service ? strlen(cfg->service) : 0);
    const char *host = cfg->host ? cfg->host : c->name; /* Envoy's default: the cluster's name */
    uint8_t body[600];
    size_t blen = 0, n;
    struct pt_h1w b;
    char *out;

    for (uint32_t i = 0; i < cfg->nadd; i++)
        cap += strlen(cfg->add[i].name) + strlen(cfg->add[i].value) + 4;
    if (cfg->grpc && (blen = pt_health_grpc_request(cfg->service, body, sizeof(body))) == 0)
        return NULL;
    if ((out = malloc(cap + blen)) == NULL)
        return NULL;
    pt_h1w_init(&b, out, cap);
    if (cfg->grpc) {
        pt_h1w_request_line(&b, PT_STR_LIT("POST"), PT_STR_LIT("/grpc.health.v1.Health/Check"));
        pt_h1w_header(&b, PT_STR_LIT("host"), pt_str_c(host));
        pt_h1w_header(&b, PT_STR_LIT("content-type"), PT_STR_LIT("application/grpc"));
        pt_h1w_header(&b, PT_STR_LIT("te"), PT_STR_LIT("trailers"));
        pt_h1w_header_uint(&b, PT_STR_LIT("content-length"), blen);
    } else {
        pt_h1w_request_line(&b, PT_STR_LIT("GET"), pt_str_c(cfg->path));
        pt_h1w_header(&b, PT_STR_LIT("host"), pt_str_c(host));
    }
    if (!removed(cfg, "user-agent"))
        pt_h1w_header(&b, PT_STR_LIT("user-agent"), PT_STR_LIT("Envoy/HC"));
    for (uint32_t i = 0; i < cfg->nadd; i++)
        pt_h1w_header(&b, pt_str_c(cfg->add[i].name), pt_str_c(cfg->add[i].value));
    if ((n = pt_h1w_end(&b)) == 0) {
        free(out);
        return NULL;
    }
    memcpy(out + n, body, blen);
    *head = (uint32_t)n;
    *len = (uint32_t)(n + blen);
    return out;
}

static struct pt_cluster_stats *set_stats(const struct hset *set)
{
    return pt_stats_cluster(set->w->st, set->c->stats_idx);
}

/* hold / unhold: the check keeps the worker's snapshot alive while in flight. */
static void hold(struct hcheck *chk)
{
    struct pt_worker *w = chk->set->w;

    chk->snap = w->snap;
    chk->snap->wref[w->id].inflight++;
}

static void unhold(struct hcheck *chk)
{
    struct pt_worker *w = chk->set->w;
    struct pt_snapshot *s = chk->snap;

    chk->snap = NULL;
    if (s != NULL) {
        s->wref[w->id].inflight--;
        pt_worker_snapshot_done(w, s);
    }
}

/* check_end: the check is over with <result>: the endpoint's health follows, and the next
 * check starts an interval from now. */
static void check_end(struct hcheck *chk, enum pt_health_result result)
{
    struct hset *set = chk->set;
    const struct pt_health_cfg *cfg = &set->c->checks[chk->k];
    struct pt_cluster_stats *cs = set_stats(set);

    pt_hc_finish(&chk->hc, result == PT_HEALTH_PASS);
    chk->in_flight = false;
    unhold(chk);
    if (cs != NULL) { /* Envoy counts a network failure in both failure counters */
        pt_stats_inc(result == PT_HEALTH_PASS ? &cs->health_check_success : &cs->health_check_failure);
        if (result == PT_HEALTH_NETWORK)
            pt_stats_inc(&cs->health_check_network_failure);
    }
    if (pt_health_active(set->health, chk->ep, chk->k, cfg, &chk->run, result))
        pt_info("health check: endpoint %s of %s is %s", set->c->endpoints[chk->ep].name, set->c->name,
                pt_health_ok(set->health, chk->ep) ? "healthy" : "unhealthy");
    pt_timer_arm(set->w->loop, &chk->timer, cfg->interval_ms);
}

/* check_send: hands the check's request to its exchange; false when it failed at once. */
static bool check_send(struct hcheck *chk)
{
    struct hset *set = chk->set;
    char *r = set->req[chk->k];
    struct iovec iov[2] = { { r, set->req_head[chk->k] },
                            { r + set->req_head[chk->k], set->req_len[chk->k] - set->req_head[chk->k] } };

    return pt_hc_send(&chk->hc, iov, iov[1].iov_len ? 2 : 1, true) != PT_IO;
}

/* check_start: sends check <chk> now, bounded by its timeout. */
static void check_start(struct hcheck *chk)
{
    struct hset *set = chk->set;
    const struct pt_cluster *c = set->c;
    struct pt_cluster_stats *cs = set_stats(set);

    if (pt_health_sweep(set->health, chk->ep, pt_loop_now_ms(set->w->loop)))
        pt_info("endpoint %s of %s is back from ejection", c->endpoints[chk->ep].name, c->name);
    if (cs != NULL)
        pt_stats_inc(&cs->health_check_attempt);
    chk->status = 0;
    chk->grpc_ok = chk->retried = false;
    chk->body_len = 0;
    chk->in_flight = true;
    hold(chk);
    chk->hc = (struct pt_hc){ 0 };
    pt_timer_arm(set->w->loop, &chk->timer, c->checks[chk->k].timeout_ms);
    /* Uncounted, as Envoy's health checker makes its own connections: a cluster whose
     * max_connections are all in use must not fail its checks for it. */
    if (pt_hc_start(&chk->hc, set->w, c, &c->endpoints[chk->ep], false, &check_ops, chk, PT_HC_UNCOUNTED) != 0 ||
        !check_send(chk))
        check_end(chk, PT_HEALTH_NETWORK);
}

static void check_on_timer(struct pt_timer *t)
{
    struct hcheck *chk = pt_container_of(t, struct hcheck, timer);

    if (chk->in_flight)
        check_end(chk, PT_HEALTH_NETWORK); /* the timeout */
    else
        check_start(chk);
}

/* grpc_status_zero: <fields> carry grpc-status 0. */
static bool grpc_status_zero(const struct pt_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (pt_str_caseeq(h[i].name, PT_STR_LIT("grpc-status")))
            return h[i].value.len == 1 && h[i].value.ptr[0] == '0';
    return false;
}

static int check_on_head(void *owner, const struct pt_h1_response *res)
{
    struct hcheck *chk = owner;

    chk->status = res->status;
    chk->grpc_ok = grpc_status_zero(res->headers, res->nheaders); /* a trailers-only answer */
    return 0;
}

/* check_result: what the whole answer says. */
static enum pt_health_result check_result(const struct hcheck *chk)
{
    const struct pt_health_cfg *cfg = &chk->set->c->checks[chk->k];
    uint32_t mlen;

    if (!cfg->grpc)
        return pt_health_status_expected(cfg, chk->status) ? PT_HEALTH_PASS : PT_HEALTH_FAIL;
    if (chk->status != 200 || !chk->grpc_ok || chk->body_len < 5 || chk->body[0] != 0)
        return PT_HEALTH_FAIL;
    mlen = (uint32_t)chk->body[1] << 24 | (uint32_t)chk->body[2] << 16 | (uint32_t)chk->body[3] << 8 | chk->body[4];
    if (mlen > chk->body_len - 5)
        return PT_HEALTH_FAIL;
    return pt_health_grpc_serving(chk->body + 5, mlen) ? PT_HEALTH_PASS : PT_HEALTH_FAIL;
}

static int check_on_body(void *owner, const struct iovec *iov, int n, bool end)
{
    struct hcheck *chk = owner;

    for (int i = 0; i < n; i++) { /* the rest is read and dropped */
        size_t take = iov[i].iov_len < HC_BODY_KEEP - chk->body_len ? iov[i].iov_len : HC_BODY_KEEP - chk->body_len;
        memcpy(chk->body + chk->body_len, iov[i].iov_base, take);
        chk->body_len += (uint32_t)take;
    }
    if (!end)
        return 0;
    check_end(chk, check_result(chk));
    return PT_CLOSED;
}

static int check_on_trailers(void *owner, const struct pt_header *h, size_t n)
{
    struct hcheck *chk = owner;

    chk->grpc_ok = grpc_status_zero(h, n);
    return 0;
}

static void check_on_writable(void *owner)
{
    (void)owner; /* the whole request was handed over at the start */
}

static void check_on_error(void *owner, const char *reason, const char *tfr, const char *flags)
{
    struct hcheck *chk = owner;
    struct hset *set = chk->set;

    (void)reason, (void)tfr;
    /* A pooled connection that closes before any answer was most likely closed by the backend
     * as we reused it: the check goes again on a new one, once, as proxied requests do. */
    if (pt_hc_reused(&chk->hc) && chk->status == 0 && !chk->retried && strcmp(flags, "UC") == 0) {
        pt_hc_finish(&chk->hc, false);
        chk->retried = true;
        if (pt_hc_start(&chk->hc, set->w, set->c, &set->c->endpoints[chk->ep], true, &check_ops, chk,
                        PT_HC_UNCOUNTED) == 0 &&
            check_send(chk))
            return;
    }
    check_end(chk, chk->status != 0 ? PT_HEALTH_FAIL : PT_HEALTH_NETWORK);
}

static const struct pt_hc_ops check_ops = {
    .on_head = check_on_head,
    .on_body = check_on_body,
    .on_trailers = check_on_trailers,
    .on_writable = check_on_writable,
    .on_error = check_on_error,
};

/* set_free: cancels every check of <set> (in flight: given up, no callback follows) and frees
 * it. */
static void set_free(struct hset *set)
{
    uint32_t n = set->c->nendpoints * set->nchecks;

    for (uint32_t i = 0; i < n; i++) {
        struct hcheck *chk = &set->checks[i];
        pt_timer_cancel(&chk->timer);
        if (chk->in_flight) {
            pt_hc_finish(&chk->hc, false);
            chk->in_flight = false;
            unhold(chk);
        }
    }
    for (uint32_t k = 0; k < set->nchecks; k++)
        free(set->req[k]);
    free(set->req);
    free(set->req_len);
    free(set->req_head);
    free(set->checks);
    free(set);
}

/* set_new: the checks of cluster <c> on <w>, each starting at once; NULL without memory. */
static struct hset *set_new(struct pt_worker *w, const struct pt_cluster *c)
{
    struct hset *set = calloc(1, sizeof(*set));
    uint32_t n = c->nendpoints * c->nchecks;

    if (set == NULL)
        return NULL;
    set->w = w;
    set->c = c;
    set->health = c->health;
    set->nchecks = c->nchecks;
    set->req = calloc(c->nchecks, sizeof(*set->req));
    set->req_len = calloc(c->nchecks, sizeof(*set->req_len));
    set->req_head = calloc(c->nchecks, sizeof(*set->req_head));
    set->checks = calloc(n ? n : 1, sizeof(*set->checks));
    if (set->req == NULL || set->req_len == NULL || set->req_head == NULL || set->checks == NULL)
        goto fail;
    for (uint32_t k = 0; k < c->nchecks; k++)
        if ((set->req[k] = build_request(c, &c->checks[k], &set->req_len[k], &set->req_head[k])) == NULL)
            goto fail;
    for (uint32_t i = 0; i < n; i++) {
        struct hcheck *chk = &set->checks[i];
        chk->set = set;
        chk->ep = i / c->nchecks;
        chk->k = i % c->nchecks;
        chk->timer.cb = check_on_timer;
        pt_timer_arm(w->loop, &chk->timer, 0); /* the first check now, as Envoy's */
    }
    return set;
fail:
    set->nchecks = c->nchecks; /* frees what was built */
    set->c = &(struct pt_cluster){ .nendpoints = 0 };
    set_free(set);
    return NULL;
}

int pt_health_adopt(struct pt_worker *w, struct pt_snapshot *s)
{
    struct pt_health_worker *hw = w->health;
    struct pt_health_worker neu = { 0 };
    int nworkers = pt_workers_count();
    uint32_t cap = 0;

    for (uint32_t i = 0; i < s->nclusters; i++)
        cap += s->clusters[i]->health != NULL && pt_health_owner(s->clusters[i], nworkers) == w->id;
    if (hw == NULL && cap == 0)
        return 0;
    if (hw == NULL && (hw = w->health = calloc(1, sizeof(*hw))) == NULL)
        return PT_NOMEM;
    if (cap && (neu.sets = calloc(cap, sizeof(*neu.sets))) == NULL)
        return PT_NOMEM;
    for (uint32_t i = 0; i < s->nclusters; i++) {
        const struct pt_cluster *c = s->clusters[i];
        struct hset *set = NULL;

        if (c->health == NULL || pt_health_owner(c, nworkers) != w->id)
            continue;
        for (uint32_t j = 0; j < hw->n && set == NULL; j++) {
            if (hw->sets[j] != NULL && hw->sets[j]->health == c->health) {
                set = hw->sets[j]; /* the same cluster: its checks go on */
                hw->sets[j] = NULL;
                set->c = c;
            }
        }
        if (set == NULL && (set = set_new(w, c)) == NULL) {
            pt_error("worker %d: out of memory: cluster %s is not health checked", w->id, c->name);
            continue;
        }
        neu.sets[neu.n++] = set;
    }
    for (uint32_t j = 0; j < hw->n; j++)
        if (hw->sets[j] != NULL)
            set_free(hw->sets[j]);
    free(hw->sets);
    *hw = neu;
    return 0;
}
