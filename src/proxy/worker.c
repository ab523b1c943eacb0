/* Worker threads. Each owns an event loop, its own listening sockets (SO_REUSEPORT), buffer and
 * connection pools, upstream pools and stats; nothing on the request path is shared. New
 * snapshots arrive through a per-worker mailbox (an atomic pointer that carries a reference)
 * and are adopted between events; requests in flight finish on the snapshot they began on.
 *
 * Accepting: the listening sockets are edge-triggered, so a wake-up must leave nothing in the
 * kernel's queue unless something else will wake us again. Each wake-up accepts a bounded batch
 * (so that a burst does not starve the connections already open) and, when the batch ran out
 * before EAGAIN, re-arms the socket so that the next loop iteration goes on. When accept fails
 * for want of descriptors or memory, the worker stops accepting for PT_ACCEPT_PAUSE_MS (no
 * spinning on a queue it cannot take from), counts it and warns at most every
 * PT_ACCEPT_WARN_MS. */
#include "proxy/proxy.h"
#include "proxy/health.h"
#include "proxy/sockio.h"
#include "observe/logformat.h"
#include "model/snapshot-t.h" /* struct pt_listen_sock */
#include "cluster/lb.h"
#include "config/snapshot.h"
#include "core/log.h"
#include "route/route.h"
#include "observe/trace.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

struct pt_proxy_limits pt_proxy_limits = {
    .max_head_bytes = PT_MAX_HEAD_BYTES_DEFAULT,
    .max_headers = PT_MAX_HEADERS_DEFAULT,
    .header_timeout_ms = 10000,
    .idle_timeout_ms = 300000,
    .stream_idle_timeout_ms = 300000,
    .upstream_idle_ms = 60000,
    .max_idle_per_endpoint = 1024, /* Envoy's max_connections circuit breaker */
    .max_connections = 100000,
};

#define PT_ACCEPT_BATCH 128     /* accepts per wake-up and listening socket */
#define PT_ACCEPT_PAUSE_MS 250  /* no accepting after EMFILE, ENFILE, ENOBUFS or ENOMEM */
#define PT_ACCEPT_WARN_MS 10000 /* at most one warning per worker in this time */

struct worker_slot {
    struct pt_worker *w;
    _Atomic(struct pt_snapshot *) mailbox;
    atomic_bool drain, stop;
    /* The worker thread's own: */
    struct pt_timer accept_timer; /* armed while accepting is paused */
    bool accept_paused;
    uint64_t warned_ms;           /* when the last accept or overflow warning was logged */
    uint32_t unwarned;            /* pauses and overflows since then */
};

static struct worker_slot slots[PT_MAX_WORKERS];
static int nworkers;

/* A registered listening socket of this worker. */
struct listen_io {
    struct pt_io io;
    struct pt_worker *w;
    struct pt_listen_sock *ls;
};

/* Whether the worker may log a warning now (one per PT_ACCEPT_WARN_MS); counts the events
 * that were not logged, for the next warning to say how many there were. */
static bool may_warn(struct worker_slot *slot, struct pt_worker *w, uint32_t *missed)
{
    uint64_t now = pt_loop_now_ms(w->loop);
    if (slot->warned_ms != 0 && now - slot->warned_ms < PT_ACCEPT_WARN_MS) {
        slot->unwarned++;
        return false;
    }
    *missed = slot->unwarned;
    slot->unwarned = 0;
    slot->warned_ms = now ? now : 1;
    return true;
}

/* The events a listening socket of <w> is watched for: none while accepting is paused. */
static uint32_t listen_events(const struct pt_worker *w)
{
    return slots[w->id].accept_paused ? 0 : EPOLLIN;
}

static void set_listen_events(struct pt_worker *w)
{
    struct listen_io *li = (struct listen_io *)w->listen_ios;
    for (uint32_t i = 0; i < w->nlisten; i++)
        pt_loop_mod(w->loop, &li[i].io, listen_events(w));
}

/* Accepting resumes: re-arming a socket whose queue is not empty reports it again at once. */
static void on_accept_resume(struct pt_timer *t)
{
    struct worker_slot *slot = pt_container_of(t, struct worker_slot, accept_timer);
    slot->accept_paused = false;
    set_listen_events(slot->w);
}

/* Stops accepting on every listening socket of <w> for PT_ACCEPT_PAUSE_MS after accept failed
 * with <err> (the process or the system is out of descriptors or memory). The connections stay
 * in the kernel's queue and are accepted once descriptors are free again. */
static void accept_pause(struct pt_worker *w, int err)
{
    struct worker_slot *slot = &slots[w->id];
    uint32_t missed;

    pt_stats_accept_paused();
    if (may_warn(slot, w, &missed))
        pt_warn("worker %d: accept: %s: not accepting connections for %d ms (%u more pauses or "
                "overflows since the last warning)", w->id, strerror(err), PT_ACCEPT_PAUSE_MS, missed);
    slot->accept_paused = true;
    set_listen_events(w);
    slot->accept_timer.cb = on_accept_resume;
    pt_timer_arm(w->loop, &slot->accept_timer, PT_ACCEPT_PAUSE_MS);
}

/* A connection over --max-connections: closed at once and counted, as Envoy's listener
 * connection limit (downstream_cx_overflow). */
static void accept_overflow(struct listen_io *li, int fd)
{
    struct pt_worker *w = li->w;
    struct pt_listener *l = w->snap ? pt_snapshot_find_listener(w->snap, li->ls->port) : NULL;
    struct pt_listener_stats *ls = pt_stats_listener(w->st, l ? l->stats_idx : PT_STATS_IDX_NONE);
    uint32_t missed;

    pt_sock_close(fd, NULL, false);
    if (ls != NULL)
        pt_stats_inc(&ls->downstream_cx_overflow);
    if (may_warn(&slots[w->id], w, &missed))
        pt_warn("worker %d: %u connections open (--max-connections): new connections are closed "
                "(%u more overflows or pauses since the last warning)", w->id, w->nconns, missed);
}

static void on_accept(struct pt_io *io, uint32_t events)
{
    struct listen_io *li = (struct listen_io *)io;
    struct pt_worker *w = li->w;

    if (slots[w->id].accept_paused)
        return; /* reported with the others of this wake-up, before the pause */
    for (int i = 0; i < PT_ACCEPT_BATCH; i++) {
        struct sockaddr_storage peer;
        int fd = pt_sock_accept(io->fd, &peer);
        if (fd < 0) {
            switch (errno) {
            case EMFILE: case ENFILE: case ENOBUFS: case ENOMEM:
                accept_pause(w, errno);
                return;
            case EINTR: case ECONNABORTED: case EPROTO: case EPERM: case ENETDOWN:
            case ENOPROTOOPT: case EHOSTDOWN: case ENONET: case EHOSTUNREACH:
            case EOPNOTSUPP: case ENETUNREACH:
                continue; /* that connection failed (accept(2)): take the next one */
            default:
                return; /* EAGAIN: the queue is empty; EINVAL: shut down (draining) */
            }
        }
        if (w->nconns >= pt_proxy_limits.max_connections) {
            accept_overflow(li, fd);
            continue;
        }
        pt_conn_accept(w, li->ls, fd, &peer);
    }
    /* The batch ran out before EAGAIN: edge-triggered epoll would not report the rest until
     * another connection arrives. Re-arming a socket that is still readable queues it for the
     * next loop iteration, behind the connections already waiting there. */
    pt_loop_mod(w->loop, io, listen_events(w));
}

/* Registers this worker's sockets of <s>'s listeners and drops those <s> no longer has. A
 * listener has one socket per worker, or more when inherited from a hot-restarted process with
 * more workers: worker w then takes sockets w, w + nworkers, ... */
static void sync_listeners(struct pt_worker *w, struct pt_snapshot *s)
{
    struct listen_io *old = (struct listen_io *)w->listen_ios, *neu;
    uint32_t nold = w->nlisten, n = 0, cap = 1;
    int nw = nworkers > 0 ? nworkers : 1;

    for (uint32_t i = 0; s && !w->draining && i < s->nlisteners; i++)
        if (s->listeners[i].sock != NULL)
            cap += (uint32_t)(s->listeners[i].sock->nfds / nw + 1);
    neu = calloc(cap, sizeof(*neu));
    if (neu == NULL) {
        pt_error("worker %d: out of memory adopting listeners", w->id);
        return;
    }
    for (uint32_t i = 0; s && !w->draining && i < s->nlisteners; i++) {
        struct pt_listen_sock *ls = s->listeners[i].sock;
        for (int k = w->id; ls != NULL && k < ls->nfds; k += nw) {
            bool found = false;
            for (uint32_t j = 0; j < nold && !found; j++) {
                if (old[j].ls == ls && old[j].io.fd == ls->fds[k]) {
                    neu[n++] = old[j];
                    old[j].io.fd = -1; /* kept */
                    found = true;
                }
            }
            if (!found) {
                neu[n] = (struct listen_io){ .io = { .fd = ls->fds[k], .cb = on_accept }, .w = w, .ls = ls };
                if (pt_loop_add(w->loop, &neu[n].io, listen_events(w)) == 0)
                    n++;
            }
        }
    }
    for (uint32_t j = 0; j < nold; j++)
        if (old[j].io.fd >= 0)
            pt_loop_del(w->loop, &old[j].io);
    /* The kept entries moved: re-register them with their new addresses. */
    for (uint32_t i = 0; i < n; i++)
        pt_loop_mod(w->loop, &neu[i].io, listen_events(w));
    free(old);
    w->listen_ios = (struct pt_io *)neu;
    w->nlisten = n;
}

static void retire(struct pt_worker *w, struct pt_snapshot *s)
{
    if (s == NULL)
        return;
    if (s->wref[w->id].inflight == 0) {
        pt_snapshot_release(s);
        return;
    }
    if (w->nretiring == w->retiring_cap) {
        uint32_t cap = w->retiring_cap ? w->retiring_cap * 2 : 8;
        struct pt_snapshot **r = realloc(w->retiring, cap * sizeof(*r));
        if (r == NULL) {
            pt_error("worker %d: out of memory; snapshot %lu is kept", w->id,
                     (unsigned long)s->generation);
            return; /* leaks one snapshot rather than freeing it under live requests */
        }
        w->retiring = r;
        w->retiring_cap = cap;
    }
    w->retiring[w->nretiring++] = s;
}

void pt_worker_snapshot_done(struct pt_worker *w, struct pt_snapshot *s)
{
    if (s == w->snap || s->wref[w->id].inflight != 0)
        return;
    for (uint32_t i = 0; i < w->nretiring; i++) {
        if (w->retiring[i] == s) {
            w->retiring[i] = w->retiring[--w->nretiring];
            pt_snapshot_release(s);
            return;
        }
    }
}

static void adopt(struct pt_worker *w, struct pt_snapshot *s)
{
    if (pt_lb_adopt(&w->lb, s) != 0) { /* before w->snap is retired: it reads the old state */
        pt_snapshot_release(s);
        return;
    }
    if (pt_health_adopt(w, s) != 0) /* likewise: cancelled checks run on w->snap */
        pt_error("worker %d: out of memory: health checks not updated", w->id);
    sync_listeners(w, s);
    int log_fd = s->log.fd > 2 ? s->log.fd : STDOUT_FILENO; /* the snapshot owns its log file */
    if (log_fd != w->log.fd) {
        pt_accesslog_flush(&w->log); /* lines so far go to the file they were meant for */
        w->log.fd = log_fd;
    }
    retire(w, w->snap);
    w->snap = s;
}

static void before_sleep(struct pt_loop *loop, void *arg)
{
    struct pt_worker *w = arg;
    struct worker_slot *slot = &slots[w->id];
    struct pt_snapshot *s;

    /* Work deferred so that no callback runs inside its caller: the next head of connections
     * whose request ended, streams to send again, upstream reads the consumer resumed. */
    while (w->ready_conns != NULL || w->ready_streams != NULL || w->ready_ups != NULL ||
           w->ready_h2ups != NULL) {
        pt_conn_run_ready(w);
        pt_stream_run_ready(w);
        pt_up_run_ready(w);
        pt_h2up_run_ready(w);
    }
    pt_conn_free_dead(w);
    pt_up_free_dead(w);
    s = atomic_exchange_explicit(&slot->mailbox, NULL, memory_order_acq_rel);
    if (s != NULL)
        adopt(w, s);
    if (atomic_load_explicit(&slot->drain, memory_order_relaxed) && !w->draining) {
        w->draining = true;
        sync_listeners(w, NULL);
    }
    if (atomic_load_explicit(&slot->stop, memory_order_relaxed))
        pt_loop_stop(loop);
}

static void *worker_main(void *arg)
{
    struct pt_worker *w = arg;
    pt_route_thread_init();
    pt_loop_set_hook(w->loop, before_sleep, w);
    pt_loop_run(w->loop);
    pt_accesslog_flush(&w->log);
    pt_route_thread_fini();
    return NULL;
}

int pt_workers_start(int n)
{
    if (n < 1)
        n = 1;
    if (n > PT_MAX_WORKERS)
        n = PT_MAX_WORKERS;
    for (int i = 0; i < n; i++) {
        struct pt_worker *w = calloc(1, sizeof(*w));
        if (w == NULL || (w->loop = pt_loop_new()) == NULL)
            return PT_NOMEM;
        w->id = i;
        w->bufs.max_free = 1024;
        w->trace = pt_trace_worker_new(i);
        if ((w->st = pt_stats_worker_new(i)) == NULL)
            return PT_NOMEM;
        pt_stats_register_worker(i, w->st);
        w->log.fd = STDOUT_FILENO;
        w->log.loop = w->loop;
        if (getrandom(w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || (w->rng[0] | w->rng[1]) == 0) {
            w->rng[0] = 0x9E3779B97F4A7C15ull ^ (uint64_t)i;
            w->rng[1] = pt_now_ms() | 1;
        }
        pt_lb_init(&w->lb, pt_worker_rand(w));
        slots[i].w = w;
        nworkers = i + 1;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            return PT_NOMEM;
    }
    return 0;
}

int pt_workers_count(void)
{
    return nworkers;
}

void pt_workers_publish(struct pt_snapshot *s)
{
    for (int i = 0; i < nworkers; i++) {
        struct pt_snapshot *old;
        pt_snapshot_ref(s);
        old = atomic_exchange_explicit(&slots[i].mailbox, s, memory_order_acq_rel);
        pt_snapshot_release(old);
        pt_loop_wake(slots[i].w->loop);
    }
}

void pt_workers_drain(void)
{
    for (int i = 0; i < nworkers; i++) {
        atomic_store(&slots[i].drain, true);
        pt_loop_wake(slots[i].w->loop);
    }
}

uint64_t pt_workers_active(void)
{
    uint64_t n = 0;
    for (int i = 0; i < nworkers; i++)
        n += __atomic_load_n(&slots[i].w->inflight, __ATOMIC_RELAXED);
    return n;
}

void pt_workers_stop(void)
{
    for (int i = 0; i < nworkers; i++) {
        atomic_store(&slots[i].stop, true);
        pt_loop_wake(slots[i].w->loop);
    }
    for (int i = 0; i < nworkers; i++)
        pthread_join(slots[i].w->thread, NULL);
}
