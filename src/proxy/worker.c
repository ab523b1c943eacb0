/* Worker threads. Each owns an event loop, its own listening sockets (SO_REUSEPORT), buffer and
 * connection pools, upstream pools and stats; nothing on the request path is shared. New
 * snapshots arrive through a per-worker mailbox (an atomic pointer that carries a reference)
 * and are adopted between events; requests in flight finish on the snapshot they began on. */
#include "proxy/proxy.h"
#include "proxy/listen.h"
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
    .max_idle_per_endpoint = 128,
    .max_connections = 100000,
};

struct worker_slot {
    struct pt_worker *w;
    _Atomic(struct pt_snapshot *) mailbox;
    atomic_bool drain, stop;
};

static struct worker_slot slots[PT_MAX_WORKERS];
static int nworkers;

/* A registered listening socket of this worker. */
struct listen_io {
    struct pt_io io;
    struct pt_worker *w;
    struct pt_listen_sock *ls;
};

static void on_accept(struct pt_io *io, uint32_t events)
{
    struct listen_io *li = (struct listen_io *)io;
    struct pt_worker *w = li->w;

    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pt_warn("accept: %s", strerror(errno));
            return;
        }
        if (w->nconns >= pt_proxy_limits.max_connections) {
            struct pt_listener *l = w->snap ? pt_snapshot_find_listener(w->snap, li->ls->port) : NULL;
            struct pt_listener_stats *ls = l ? pt_stats_listener(w->st, l->stats_idx) : NULL;
            if (ls != NULL)
                pt_stats_inc(&ls->downstream_cx_overflow);
            close(fd);
            continue;
        }
        pt_ds_accept(w, li->ls, fd, &peer);
    }
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
                if (pt_loop_add(w->loop, &neu[n].io, EPOLLIN) == 0)
                    n++;
            }
        }
    }
    for (uint32_t j = 0; j < nold; j++)
        if (old[j].io.fd >= 0)
            pt_loop_del(w->loop, &old[j].io);
    /* The kept entries moved: re-register them with their new addresses. */
    for (uint32_t i = 0; i < n; i++)
        pt_loop_mod(w->loop, &neu[i].io, EPOLLIN);
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

void pt_ds_snapshot_done(struct pt_worker *w, struct pt_snapshot *s)
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
    uint32_t *rr = calloc(s->nclusters + 1, sizeof(*rr));
    if (rr == NULL) {
        pt_snapshot_release(s);
        return;
    }
    for (uint32_t i = 0; i < s->nclusters; i++)
        rr[i] = (uint32_t)pt_worker_rand(w);
    free(w->rr);
    w->rr = rr;
    sync_listeners(w, s);
    int log_fd = s->log.fd > 2 ? s->log.fd : STDOUT_FILENO; /* the snapshot owns its log file */
    if (log_fd != w->log_fd) {
        pt_accesslog_flush(w); /* lines so far go to the file they were meant for */
        w->log_fd = log_fd;
    }
    retire(w, w->snap);
    w->snap = s;
}

static void before_sleep(struct pt_loop *loop, void *arg)
{
    struct pt_worker *w = arg;
    struct worker_slot *slot = &slots[w->id];
    struct pt_snapshot *s;

    pt_ds_free_dead(w);
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
    pt_accesslog_flush(w);
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
        w->log_fd = STDOUT_FILENO;
        if (getrandom(w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || (w->rng[0] | w->rng[1]) == 0) {
            w->rng[0] = 0x9E3779B97F4A7C15ull ^ (uint64_t)i;
            w->rng[1] = pt_now_ms() | 1;
        }
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
