/* The data plane: worker threads, client connections and their requests, upstream connections. */
#ifndef PT_PROXY_PROXY_H
#define PT_PROXY_PROXY_H

#include "proxy/proxy-t.h"
#include "observe/stats.h"

extern struct pt_proxy_limits pt_proxy_limits;

/* pt_workers_start: starts <n> worker threads (each with its own loop). Returns 0 or PT_NOMEM. */
int pt_workers_start(int n);

/* pt_workers_count: how many workers run. */
int pt_workers_count(void);

/* pt_workers_publish: hands <s> to every worker (each gets its own reference through its
 * mailbox and adopts it between events). The caller keeps its own reference. */
void pt_workers_publish(struct pt_snapshot *s);

/* pt_workers_drain: stop accepting; workers finish in-flight requests and close idle
 * connections. */
void pt_workers_drain(void);

/* pt_workers_active: requests in flight across workers (approximate, for draining; idle
 * keep-alive connections do not count). */
uint64_t pt_workers_active(void);

/* pt_workers_stop: stops and joins every worker. */
void pt_workers_stop(void);

/* Client connections (proxy/conn.c) and their requests (proxy/stream.c), run by the worker. */
void pt_conn_accept(struct pt_worker *w, struct pt_listen_sock *ls, int fd,
                    const struct sockaddr_storage *peer);
void pt_conn_free_dead(struct pt_worker *w);
void pt_conn_run_ready(struct pt_worker *w);   /* connections whose next head is waiting */
void pt_stream_run_ready(struct pt_worker *w); /* streams to send again (RETRY) */
void pt_stream_cx_ready(struct pt_stream *st); /* a connection it waited for was freed */
void pt_worker_snapshot_done(struct pt_worker *w, struct pt_snapshot *s); /* a request left s */

/* Upstream connections (proxy/upstream.c). pt_up_acquire returns a connection of <ep> (pooled
 * unless <fresh>; a new one held to <c>'s max_connections when <counted>) that the caller then
 * owns (up->ops, up->owner); pt_up_release gives it back
 * (<reusable>: its exchange finished cleanly) and the callbacks stop. pt_up_resume: the owner
 * took what up->in held; reading goes on from the worker's ready list. */
struct pt_upstream *pt_up_acquire(struct pt_worker *w, const struct pt_cluster *c,
                                  const struct pt_endpoint *ep, bool fresh, bool counted, bool *reused);
void pt_up_release(struct pt_upstream *up, bool reusable);
/* pt_up_wait: <st> waits for a connection of <e> (w->cx_wait of a refused pt_up_acquire): the
 * first one released to the pool, or closed (which frees a place), puts it on the worker's
 * ready list (pt_stream_cx_ready). <first>: it was woken and refused again (another request
 * took the connection first): it waits first in line. pt_up_unwait: it leaves the list (it
 * ended, or timed out). */
void pt_up_wait(struct pt_pool_entry *e, struct pt_stream *st, bool first);
void pt_up_unwait(struct pt_stream *st);
/* pt_up_pool: the pool entry of <ep> for <c>'s TLS context (its HTTP/2 connections live there
 * too), or NULL without memory. */
struct pt_pool_entry *pt_up_pool(struct pt_worker *w, const struct pt_cluster *c,
                                 const struct pt_endpoint *ep);
/* pt_up_pool_idle_ms: how long a connection of pool entry <e> opened at <created_ms> may wait
 * idle from <now_ms>: its cluster's idle timeout (cluster_idle_timeout_ms, else
 * --upstream-idle-ms), cut to what is left of its max lifetime; 0 when that has passed. */
uint32_t pt_up_pool_idle_ms(const struct pt_pool_entry *e, uint64_t created_ms, uint64_t now_ms);
/* HTTP/2 upstream connections (proxy/h2client.c): their work from the worker's ready list,
 * and the dead ones freed. */
void pt_h2up_run_ready(struct pt_worker *w);
int pt_up_send(struct pt_upstream *up, const struct iovec *iov, int iovcnt);
void pt_up_resume(struct pt_upstream *up);
void pt_up_run_ready(struct pt_worker *w);
void pt_up_free_dead(struct pt_worker *w);

/* Stats blocks of a connection's HTTP prefix, and of a request's cluster once routed (NULL:
 * not counted). */
static inline struct pt_http_stats *pt_conn_http_stats(struct pt_conn *c)
{
    return pt_stats_http(c->w->st, c->http_idx);
}

static inline struct pt_http_stats *pt_stream_http_stats(struct pt_stream *st)
{
    return pt_conn_http_stats(st->conn);
}

static inline struct pt_cluster_stats *pt_stream_cluster_stats(struct pt_stream *st)
{
    return st->rec.action ? pt_stats_cluster(st->w->st, st->rec.action->cluster->stats_idx) : NULL;
}

/* pt_worker_rand: the worker's fast PRNG (xorshift128+). */
static inline uint64_t pt_worker_rand(struct pt_worker *w)
{
    uint64_t s1 = w->rng[0];
    const uint64_t s0 = w->rng[1];
    w->rng[0] = s0;
    s1 ^= s1 << 23;
    w->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return w->rng[1] + s0;
}

/* pt_up_pool_lifetime_ms: the max lifetime of the connections of pool entry <e>: its
 * cluster's cluster_max_connection_lifetime_ms, else --upstream-max-lifetime-ms; 0: none. */
static inline uint32_t pt_up_pool_lifetime_ms(const struct pt_pool_entry *e)
{
    return e->opts.lifetime_ms ? e->opts.lifetime_ms : pt_proxy_limits.upstream_max_lifetime_ms;
}

/* pt_up_pool_too_old: a connection of <e> opened at <created_ms> has reached its max lifetime
 * at <now_ms>: it takes no new request. */
static inline bool pt_up_pool_too_old(const struct pt_pool_entry *e, uint64_t created_ms, uint64_t now_ms)
{
    uint32_t life = pt_up_pool_lifetime_ms(e);
    return life != 0 && now_ms - created_ms >= life;
}

#endif
