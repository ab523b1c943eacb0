/* Retries and circuit breakers of one request (proxy/retry.h), as Envoy's router does them: a
 * try that fails (a reset, a connect failure, a per-try timeout) or answers a status the
 * route's retry_on names goes again after a jittered exponential back-off (25 ms base, 250 ms
 * cap), at most num_retries times, while the route timeout keeps running over all tries; the
 * response of the last try goes to the client. A retry picks an endpoint again. The request
 * body is kept as it is sent (up to PT_RETRY_BODY_MAX) so that it can be sent again; a larger
 * body, or a response that already started, is not retried. Breakers: the request holds one of
 * its cluster's max_requests while it runs, one of max_pending_requests while its new
 * connection is made, one of max_retries while a retry waits or runs; connections are counted
 * by proxy/upstream.c. The transparent resend of a request whose pooled connection turned out
 * closed (proxy/stream.c) is not a retry here, as it is not one in Envoy's counters. Called by
 * proxy/stream.c and proxy/session.c. */
#include "proxy/retry.h"
#include "proxy/proxy.h"
#include "proxy/session.h"
#include "proxy/httpclient.h"
#include "cluster/breakers.h"
#include "cluster/lb.h"
#include "http/h1.h"

#include <stdlib.h>
#include <string.h>


static struct pt_breakers *stream_breakers(const struct pt_stream *st)
{
    return st->rec.action != NULL ? st->rec.action->cluster->breakers : NULL;
}

/* give_back: gives back what <st> holds of <what> (PT_CB_*) in its cluster's breakers. */
static void give_back(struct pt_stream *st, uint8_t what)
{
    struct pt_breakers *b = stream_breakers(st);
    struct pt_cluster_stats *cs;

    what &= st->cb_held;
    if (what == 0)
        return;
    st->cb_held &= (uint8_t)~what;
    cs = pt_stream_cluster_stats(st);
    if ((what & PT_CB_PENDING) && cs != NULL)
        pt_gauge_dec(&cs->upstream_rq_pending_active);
    if (b == NULL)
        return;
    if (what & PT_CB_RQ)
        pt_cb_give(&b->rq, b->max_requests, cs ? &cs->circuit_breakers_default_rq_open : NULL);
    if (what & PT_CB_PENDING)
        pt_cb_give(&b->pending, b->max_pending, cs ? &cs->circuit_breakers_default_rq_pending_open : NULL);
    if (what & PT_CB_RETRY)
        pt_cb_give(&b->retries, b->max_retries, cs ? &cs->circuit_breakers_default_rq_retry_open : NULL);
}

/* be_pending: <st> becomes one of its cluster's pending requests (max_pending_requests), given
 * back when it has a connection, goes again, or ends. False, counted as Envoy's
 * upstream_rq_pending_overflow, when no more may be pending. */
static bool be_pending(struct pt_stream *st)
{
    struct pt_breakers *b = stream_breakers(st);
    struct pt_cluster_stats *cs = pt_stream_cluster_stats(st);

    if (b != NULL &&
        !pt_cb_take(&b->pending, b->max_pending, cs ? &cs->circuit_breakers_default_rq_pending_open : NULL)) {
        if (cs != NULL)
            pt_stats_inc(&cs->upstream_rq_pending_overflow);
        return false;
    }
    if (cs != NULL)
        pt_gauge_inc(&cs->upstream_rq_pending_active);
    st->cb_held |= PT_CB_PENDING;
    return true;
}

void pt_retry_cancel_wait(struct pt_stream *st)
{
    pt_timer_cancel(&st->try_timer);
    st->flags &= ~PT_SF_RETRY_WAIT;
}

void pt_retry__stream_end(struct pt_stream *st)
{
    pt_retry_cancel_wait(st);
    give_back(st, PT_CB_RQ | PT_CB_PENDING | PT_CB_RETRY);
    free(st->replay);
    st->replay = NULL;
    st->replay_len = st->replay_cap = 0;
}

bool pt_retry__admit(struct pt_stream *st)
{
    struct pt_breakers *b = stream_breakers(st);
    struct pt_cluster_stats *cs;

    if (b == NULL)
        return true;
    cs = pt_stream_cluster_stats(st);
    if (pt_cb_take(&b->rq, b->max_requests, cs ? &cs->circuit_breakers_default_rq_open : NULL)) {
        st->cb_held |= PT_CB_RQ;
        return true;
    }
    if (cs != NULL)
        pt_stats_inc(&cs->upstream_rq_pending_overflow); /* Envoy counts max_requests here too */
    pt_reply_overflow(st);
    return false;
}

bool pt_retry__try_started(struct pt_stream *st)
{
    const struct pt_retry_policy *p = st->rec.action->retry;
    const struct pt_upstream *up = st->hc.up;

    if (p != NULL && p->per_try_timeout_ms != 0)
        pt_timer_arm(st->w->loop, &st->try_timer, p->per_try_timeout_ms);
    if (up == NULL || st->hc.reused || (up->state != PT_UP_CONNECTING && up->state != PT_UP_HANDSHAKE))
        return true; /* not waiting for a connection */
    if (!be_pending(st)) {
        pt_reply_overflow(st); /* finishes the exchange: the connection is closed */
        return false;
    }
    return true;
}

bool pt_retry_wait_connection(struct pt_stream *st, struct pt_pool_entry *e, bool first)
{
    if (!be_pending(st)) /* (its cluster has breakers: max_connections sent it here) */
        return false;
    if (!pt_stream_keep_head(st, false))
        return false;
    pt_lb_release(&st->w->lb, &st->lb_pick, PT_LB_CANCELLED); /* it picks again when it goes */
    pt_up_wait(e, st, first);
    st->state = PT_ST_RETRY;
    return true;
}

void pt_retry_connected(struct pt_stream *st)
{
    if (st->cb_held & PT_CB_PENDING)
        give_back(st, PT_CB_PENDING);
}

/* backoff_ms: Envoy's fully jittered exponential back-off before retry <n> (1-based): a random
 * time in [0, base * 2^(n-1)), the range capped at ten times the base. */
static uint32_t backoff_ms(struct pt_stream *st, uint32_t n)
{
    uint32_t range = PT_RETRY_BACKOFF_BASE_MS << (n > 5 ? 4 : n - 1);

    if (range > PT_RETRY_BACKOFF_MAX_MS)
        range = PT_RETRY_BACKOFF_MAX_MS;
    return (uint32_t)(pt_worker_rand(st->w) % range);
}

/* schedule: the try's outcome calls for a retry: one is scheduled unless the body cannot be
 * sent again, num_retries are used up (URX) or the cluster's max_retries are all in use (UO).
 * <outcome> is the try's, for load balancing. */
static bool schedule(struct pt_stream *st, enum pt_lb_outcome outcome)
{
    const struct pt_retry_policy *p = st->rec.action->retry;
    struct pt_cluster_stats *cs = pt_stream_cluster_stats(st);
    struct pt_breakers *b = stream_breakers(st);

    if (!pt_retry_can_resend(st))
        return false; /* as Envoy when its retry buffer overflowed: no retry, no count */
    if (st->tries >= p->num_retries) {
        if (cs != NULL)
            pt_stats_inc(&cs->upstream_rq_retry_limit_exceeded);
        st->retry_flag = 1;
        return false;
    }
    if (b != NULL && !pt_cb_take(&b->retries, b->max_retries, cs ? &cs->circuit_breakers_default_rq_retry_open : NULL)) {
        if (cs != NULL)
            pt_stats_inc(&cs->upstream_rq_retry_overflow);
        st->retry_flag = 2;
        return false;
    }
    if (b != NULL)
        st->cb_held |= PT_CB_RETRY;
    st->tries++;
    if (cs != NULL) {
        pt_stats_inc(&cs->upstream_rq_retry);
        pt_stats_inc(&cs->upstream_rq_retry_backoff_exponential);
    }
    pt_lb_release(&st->w->lb, &st->lb_pick, outcome); /* the retry picks again */
    st->state = PT_ST_RETRY;
    st->flags |= PT_SF_RETRY_WAIT;
    pt_timer_arm(st->w->loop, &st->try_timer, backoff_ms(st, st->tries));
    return true;
}

bool pt_retry_on_reset(struct pt_stream *st, const char *reason, const char *flags)
{
    const struct pt_retry_policy *p = st->rec.action ? st->rec.action->retry : NULL;
    bool connect = flags[0] == 'U' && flags[1] == 'F' && flags[2] == '\0';
    bool would;

    pt_retry_connected(st);
    if (p == NULL)
        return false;
    pt_timer_cancel(&st->try_timer);
    give_back(st, PT_CB_RETRY); /* the last retry has its outcome */
    would = (p->on & (PT_RETRY_5XX | PT_RETRY_GATEWAY | PT_RETRY_RESET)) || ((p->on & PT_RETRY_CONNECT) && connect) ||
            ((p->on & PT_RETRY_REFUSED) && strcmp(reason, "remote refused stream reset") == 0);
    return would && schedule(st, connect ? PT_LB_CONNECT_FAILURE : PT_LB_RESET);
}

/* retriable_status: whether <p> retries a response of <status>. */
static bool retriable_status(const struct pt_retry_policy *p, int status)
{
    if ((p->on & PT_RETRY_5XX) && status >= 500 && status <= 599)
        return true;
    if ((p->on & PT_RETRY_GATEWAY) && status >= 502 && status <= 504)
        return true;
    if ((p->on & PT_RETRY_4XX) && status == 409)
        return true;
    for (uint32_t i = 0; (p->on & PT_RETRY_STATUS_CODES) && i < p->ncodes; i++)
        if (p->codes[i] == status)
            return true;
    return false;
}

bool pt_retry__on_status(struct pt_stream *st, const struct pt_h1_response *res)
{
    const struct pt_retry_policy *p = st->rec.action->retry;
    bool would;

    pt_timer_cancel(&st->try_timer); /* the try answered: no per-try timeout any more */
    pt_retry_connected(st);
    if (p == NULL)
        return false;
    give_back(st, PT_CB_RETRY);
    /* Envoy never retries an answer that says the upstream is overloaded or rate limited. */
    would = retriable_status(p, res->status) &&
            !pt_header_find(res->headers, res->nheaders, PT_STR_LIT("x-envoy-overloaded")) &&
            !pt_header_find(res->headers, res->nheaders, PT_STR_LIT("x-envoy-ratelimited"));
    if (!would) {
        struct pt_cluster_stats *cs = pt_stream_cluster_stats(st);
        if (st->tries > 0 && cs != NULL)
            pt_stats_inc(&cs->upstream_rq_retry_success);
        return false;
    }
    return schedule(st, res->status >= 500 ? PT_LB_HTTP_5XX : PT_LB_SUCCESS);
}

const char *pt_retry_flags(const struct pt_stream *st, const char *flags)
{
    static const char *const base[] = { "UF", "UC", "UT", "UR", "LR", "UPE" };
    static const char *const urx[] = { "UF,URX", "UC,URX", "UT,URX", "UR,URX", "LR,URX", "URX,UPE" };
    static const char *const uo[] = { "UF,UO", "UC,UO", "UT,UO", "UR,UO", "LR,UO", "UO,UPE" };

    if (st->retry_flag == 0)
        return flags;
    for (size_t i = 0; flags != NULL && i < PT_ARRAY_SIZE(base); i++)
        if (strcmp(flags, base[i]) == 0)
            return st->retry_flag == 1 ? urx[i] : uo[i];
    return st->retry_flag == 1 ? "URX" : "UO";
}

void pt_retry__keep(struct pt_stream *st, const struct iovec *data, int n)
{
    size_t add = 0;

    if (st->rec.action == NULL || st->rec.action->retry == NULL || (st->flags & PT_SF_NO_REPLAY))
        return;
    for (int i = 0; i < n; i++)
        add += data[i].iov_len;
    if (add == 0)
        return;
    if (add > PT_RETRY_BODY_MAX - st->replay_len) {
        st->flags |= PT_SF_NO_REPLAY; /* larger than Envoy buffers for a retry: not retried */
        free(st->replay);
        st->replay = NULL;
        st->replay_len = st->replay_cap = 0;
        return;
    }
    if (st->replay_len + add > st->replay_cap) {
        uint32_t cap = st->replay_cap ? st->replay_cap : 4096;
        char *p;
        while (cap < st->replay_len + add)
            cap *= 2;
        if (cap > PT_RETRY_BODY_MAX)
            cap = PT_RETRY_BODY_MAX;
        if ((p = realloc(st->replay, cap)) == NULL) {
            st->flags |= PT_SF_NO_REPLAY;
            return;
        }
        st->replay = p;
        st->replay_cap = cap;
    }
    for (int i = 0; i < n; i++) {
        memcpy(st->replay + st->replay_len, data[i].iov_base, data[i].iov_len);
        st->replay_len += (uint32_t)data[i].iov_len;
    }
}

bool pt_retry_can_resend(const struct pt_stream *st)
{
    if (st->gw.kind || (st->flags & (PT_SF_NO_REPLAY | PT_SF_UPGRADE | PT_SF_RESP_HEAD)) || !pt_session_can_resend(st))
        return false;
    return true;
}

/* pt_retry__on_try_timer: the back-off is over (the retry goes now), or the try ran out of its
 * per_try_timeout before the response started: Envoy's upstream_rq_per_try_timeout, and a
 * retry when retry_on covers resets (5xx, gateway-error, reset), else 504 (UT). */
void pt_retry__on_try_timer(struct pt_timer *t)
{
    struct pt_stream *st = pt_container_of(t, struct pt_stream, try_timer);
    const struct pt_retry_policy *p;
    struct pt_cluster_stats *cs;

    if (st->flags & PT_SF_RETRY_WAIT) {
        st->flags &= ~PT_SF_RETRY_WAIT;
        st->state = PT_ST_UPSTREAM;
        if ((cs = pt_stream_cluster_stats(st)) != NULL)
            pt_stats_inc(&cs->upstream_rq_total); /* each try is an upstream request */
        pt_session_retry(st);
        return;
    }
    if (st->state != PT_ST_UPSTREAM || (st->flags & PT_SF_RESP_HEAD) || st->rec.action == NULL)
        return; /* the response started: the route timeout alone bounds it, as Envoy */
    p = st->rec.action->retry;
    if ((cs = pt_stream_cluster_stats(st)) != NULL)
        pt_stats_inc(&cs->upstream_rq_per_try_timeout);
    pt_hc_finish(&st->hc, false);
    pt_retry_connected(st);
    give_back(st, PT_CB_RETRY);
    if ((p->on & (PT_RETRY_5XX | PT_RETRY_GATEWAY | PT_RETRY_RESET)) && schedule(st, PT_LB_TIMEOUT))
        return;
    pt_reply_local(st, 504, PT_STR_LIT("upstream request timeout"), pt_retry_flags(st, "UT"));
}
