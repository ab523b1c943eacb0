/* One portico-quote worker: an epoll loop on its own SO_REUSEPORT listener, a min-heap of
 * timers (/delay/ replies, lingering closes) and an eventfd to be told to stop.
 *
 * Level-triggered epoll: a connection says what it wants (read, write, both, neither) through
 * pt_quote_worker_watch and is called when that is possible. Nothing is shared with other
 * workers. Started by quote.c; connections live in conn.c. */
#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "quote/quote.h"

#define MAX_EVENTS 256
#define ACCEPT_BATCH 64

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- timers: a binary min-heap on at_ms; t->slot is the index + 1 ---- */

static void heap_set(struct pt_quote_worker *w, size_t i, struct pt_quote_timer *t)
{
    w->heap[i] = t;
    t->slot = i + 1;
}

static void heap_up(struct pt_quote_worker *w, size_t i)
{
    struct pt_quote_timer *t = w->heap[i];
    while (i > 0 && w->heap[(i - 1) / 2]->at_ms > t->at_ms) {
        heap_set(w, i, w->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(w, i, t);
}

static void heap_down(struct pt_quote_worker *w, size_t i)
{
    struct pt_quote_timer *t = w->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= w->nheap)
            break;
        if (c + 1 < w->nheap && w->heap[c + 1]->at_ms < w->heap[c]->at_ms)
            c++;
        if (w->heap[c]->at_ms >= t->at_ms)
            break;
        heap_set(w, i, w->heap[c]);
        i = c;
    }
    heap_set(w, i, t);
}

void pt_quote_timer_cancel(struct pt_quote_worker *w, struct pt_quote_timer *t)
{
    if (t->slot == 0)
        return;
    size_t i = t->slot - 1;
    struct pt_quote_timer *last = w->heap[--w->nheap];
    t->slot = 0;
    if (last == t)
        return;
    heap_set(w, i, last);
    heap_up(w, i);
    heap_down(w, last->slot - 1);
}

int pt_quote_timer_arm(struct pt_quote_worker *w, struct pt_quote_timer *t, uint64_t ms)
{
    pt_quote_timer_cancel(w, t);
    if (w->nheap == w->heap_cap) {
        size_t cap = w->heap_cap ? 2 * w->heap_cap : 64;
        struct pt_quote_timer **h = realloc(w->heap, cap * sizeof(*h));
        if (h == NULL)
            return -1;
        w->heap = h;
        w->heap_cap = cap;
    }
    t->at_ms = monotonic_ms() + ms;
    w->heap[w->nheap] = t;
    heap_up(w, w->nheap++);
    return 0;
}

/* timers_timeout: the epoll_wait timeout until the first deadline, -1 for none. */
static int timers_timeout(struct pt_quote_worker *w)
{
    if (w->nheap == 0)
        return -1;
    uint64_t now = monotonic_ms(), at = w->heap[0]->at_ms;
    if (at <= now)
        return 0;
    return at - now > 60000 ? 60000 : (int)(at - now);
}

static void timers_run(struct pt_quote_worker *w)
{
    if (w->nheap == 0)
        return;
    uint64_t now = monotonic_ms();
    while (w->nheap > 0 && w->heap[0]->at_ms <= now) {
        struct pt_quote_timer *t = w->heap[0];
        pt_quote_timer_cancel(w, t);
        pt_quote_conn_on_timer(t);
    }
}

/* ---- listener and wake-up ---- */

static void listener_on_event(struct pt_quote_handle *h, uint32_t events)
{
    struct pt_quote_worker *w = (struct pt_quote_worker *)((char *)h -
                                 offsetof(struct pt_quote_worker, listener));
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(h->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                fprintf(stderr, "portico-quote: accept: %s\n", strerror(errno));
            return;
        }
        pt_quote_conn_open(w, fd, &ss, sl);
    }
}

static void wake_on_event(struct pt_quote_handle *h, uint32_t events)
{
    struct pt_quote_worker *w = (struct pt_quote_worker *)((char *)h -
                                 offsetof(struct pt_quote_worker, wake));
    uint64_t v;
    if (read(h->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        fprintf(stderr, "portico-quote: eventfd: %s\n", strerror(errno));
    w->stopping = true;
}

static int watch_add(struct pt_quote_worker *w, struct pt_quote_handle *h, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = h };
    return epoll_ctl(w->epfd, EPOLL_CTL_ADD, h->fd, &ev);
}

int pt_quote_worker_watch(struct pt_quote_worker *w, struct pt_quote_handle *h, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = h };
    return epoll_ctl(w->epfd, EPOLL_CTL_MOD, h->fd, &ev);
}

int pt_quote_worker_init(struct pt_quote_worker *w, int id, int listen_fd,
                         const struct pt_quote_opts *opts)
{
    *w = (struct pt_quote_worker){ .id = id, .epfd = -1 };
    w->server.opts = opts;
    w->listener = (struct pt_quote_handle){ listen_fd, listener_on_event };
    w->wake = (struct pt_quote_handle){ eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), wake_on_event };
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->wake.fd < 0 || w->epfd < 0)
        return -1;
    if (watch_add(w, &w->listener, EPOLLIN) < 0 || watch_add(w, &w->wake, EPOLLIN) < 0)
        return -1;
    return 0;
}

void pt_quote_worker_stop(struct pt_quote_worker *w)
{
    uint64_t one = 1;
    if (write(w->wake.fd, &one, sizeof(one)) < 0)
        fprintf(stderr, "portico-quote: eventfd: %s\n", strerror(errno));
}

void *pt_quote_worker_run(void *arg)
{
    struct pt_quote_worker *w = arg;
    struct epoll_event evs[MAX_EVENTS];

    while (!w->stopping) {
        int n = epoll_wait(w->epfd, evs, MAX_EVENTS, timers_timeout(w));
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "portico-quote: epoll_wait: %s\n", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            struct pt_quote_handle *h = evs[i].data.ptr;
            h->on_event(h, evs[i].events);
        }
        timers_run(w);
    }
    pt_quote_conn_close_all(w);
    close(w->listener.fd);
    close(w->wake.fd);
    close(w->epfd);
    free(w->heap);
    pt_quote_buf_free(&w->server.scratch);
    return NULL;
}
