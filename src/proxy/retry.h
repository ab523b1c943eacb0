/* A route's retry_policy and its cluster's circuit breakers on the request path (Envoy's router
 * retry state and resource manager): whether a failed try goes again, its jittered back-off,
 * the per-try timeout, the request body kept for a replay, and the requests, pending requests
 * and retries a request holds in its cluster's breakers. Called by proxy/stream.c and
 * proxy/session.c; a route without retry_policy costs a test of a pointer, and a request's
 * place among its cluster's max_requests two atomic operations. */
#ifndef PT_PROXY_RETRY_H
#define PT_PROXY_RETRY_H

#include "proxy/proxy-t.h"
#include "model/snapshot-t.h"
#include "cluster/breakers.h"
#include "observe/stats.h"

/* pt_cb_take, pt_cb_give: one of the resource <count> (limit <max>) of a cluster's breakers (its
 * requests, pending requests, retries or connections), the breaker's gauge <open> (NULL: none)
 * at 1 while all are in use. pt_cb_take is false, taking nothing, when all are. */
static inline bool pt_cb_take(_Atomic uint32_t *count, uint32_t max, int64_t *open)
{
    bool opened;

    if (!pt_breakers_take(count, max, &opened))
        return false;
    if (opened && open != NULL)
        pt_gauge_inc(open);
    return true;
}

static inline void pt_cb_give(_Atomic uint32_t *count, uint32_t max, int64_t *open)
{
    if (pt_breakers_put(count, max) && open != NULL)
        pt_gauge_dec(open);
}

/* The calls below that every request makes are inline for the common case: no retry_policy,
 * and the cluster's max_requests far from full (pt_retry__*: the rest of the work). */
void pt_retry__on_try_timer(struct pt_timer *t);
void pt_retry__stream_end(struct pt_stream *st);
bool pt_retry__admit(struct pt_stream *st);
bool pt_retry__try_started(struct pt_stream *st);
bool pt_retry__on_status(struct pt_stream *st, const struct pt_h1_response *res);
void pt_retry__keep(struct pt_stream *st, const struct iovec *data, int n);

/* pt_retry_stream_init: a new stream's retry state (stream_new). */
static inline void pt_retry_stream_init(struct pt_stream *st)
{
    st->try_timer = (struct pt_timer){ .cb = pt_retry__on_try_timer };
    st->tries = 0;
    st->cb_held = 0;
    st->retry_flag = 0;
    st->replay = NULL;
    st->replay_len = st->replay_cap = 0;
}

/* pt_retry_stream_end: the stream ends: its timer stops, its kept body is freed and what it
 * holds in its cluster's breakers is given back. */
static inline void pt_retry_stream_end(struct pt_stream *st)
{
    if (st->cb_held == PT_CB_RQ && st->replay == NULL && !pt_timer_armed(&st->try_timer)) {
        struct pt_breakers *b = st->rec.action->cluster->breakers;
        uint32_t n = atomic_load_explicit(&b->rq, memory_order_relaxed);
        /* Not from full: no gauge to close. One compare-and-swap, so that no other worker's
         * take or put falls between a look and the change (the slow path closes the gauge
         * exactly once: pt_breakers_put). */
        if (n != b->max_requests &&
            atomic_compare_exchange_weak_explicit(&b->rq, &n, n - 1, memory_order_relaxed, memory_order_relaxed)) {
            st->cb_held = 0;
            return;
        }
    }
    if (st->cb_held != 0 || st->replay != NULL || pt_timer_armed(&st->try_timer))
        pt_retry__stream_end(st);
}
/* pt_retry_admit: a routed request may go to its cluster (its max_requests, Envoy's 1024
 * unless circuit_breakers say otherwise). False after answering 503 with x-envoy-overloaded
 * (flag UO). */
static inline bool pt_retry_admit(struct pt_stream *st)
{
    struct pt_breakers *b = st->rec.action->cluster->breakers;
    uint32_t n;

    if (b == NULL)
        return true;
    n = atomic_load_explicit(&b->rq, memory_order_relaxed);
    if (n + 1 < b->max_requests && /* not the last one: no gauge to open */
        atomic_compare_exchange_weak_explicit(&b->rq, &n, n + 1, memory_order_relaxed, memory_order_relaxed)) {
        st->cb_held |= PT_CB_RQ;
        return true;
    }
    return pt_retry__admit(st);
}

/* pt_retry_try_started: a try was started on a connection (after pt_stream_connect): the
 * per-try timeout starts, and a request whose new connection is still being made is pending
 * (max_pending_requests). False after answering 503 overflow. */
static inline bool pt_retry_try_started(struct pt_stream *st)
{
    if (st->rec.action->retry == NULL && (st->hc.up == NULL || st->hc.reused))
        return true; /* no per-try timeout, and not waiting for a connection */
    return pt_retry__try_started(st);
}

/* pt_retry_wait_connection: the try was refused a connection by max_connections while the
 * worker has some to its endpoint (w->cx_wait): the request waits for one as a pending request
 * (max_pending_requests; Envoy's queue), its route timeout running, and goes again when one is
 * free (first in line when <first>). False, the caller answering 503 overflow, when no more may
 * be pending. */
struct pt_pool_entry;
bool pt_retry_wait_connection(struct pt_stream *st, struct pt_pool_entry *e, bool first);

/* pt_retry_connected: the try's connection is up (or the try is over): it is no longer
 * pending. */
void pt_retry_connected(struct pt_stream *st);

/* pt_retry_on_reset: the try failed with Envoy's reset <reason> and <flags> before any
 * response head: true when a retry is scheduled (the stream waits for it in PT_ST_RETRY);
 * false when the stream must answer the failure, with the flags pt_retry_flags gives. */
bool pt_retry_on_reset(struct pt_stream *st, const char *reason, const char *flags);

/* pt_retry_on_status: the try's response head has <status> (<res> its fields): true when
 * the response is dropped and a retry scheduled (the caller finishes the exchange); false when
 * it goes to the client. */
static inline bool pt_retry_on_status(struct pt_stream *st, const struct pt_h1_response *res)
{
    if (st->rec.action->retry == NULL && !(st->cb_held & ~PT_CB_RQ) && !pt_timer_armed(&st->try_timer))
        return false; /* nothing to give back but the request's place, at its end */
    return pt_retry__on_status(st, res);
}

/* pt_retry_flags: the response flags of a reply with <flags> (NULL: none), with URX added when
 * the retries ran out, or UO when max_retries overflowed, as Envoy joins them. */
const char *pt_retry_flags(const struct pt_stream *st, const char *flags);

/* pt_retry_keep: keeps the <n> pieces of request body at <data> for a replay, when the route
 * has a retry_policy (and gives up keeping, PT_SF_NO_REPLAY, past PT_RETRY_BODY_MAX). */
static inline void pt_retry_keep(struct pt_stream *st, const struct iovec *data, int n)
{
    if (st->rec.action != NULL && st->rec.action->retry != NULL)
        pt_retry__keep(st, data, n);
}

/* pt_retry_can_resend: the request can be sent again (its body, if any, was all kept). */
bool pt_retry_can_resend(const struct pt_stream *st);

/* pt_retry_cancel_wait: stops the try timer (a back-off, or a per-try timeout). */
void pt_retry_cancel_wait(struct pt_stream *st);

#endif
