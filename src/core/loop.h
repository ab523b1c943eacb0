/* One event loop per thread: epoll (edge-triggered) plus a hashed timer wheel. Workers and the
 * control thread each run one. Nothing here is shared between threads except pt_loop_wake(). */
#ifndef PT_CORE_LOOP_H
#define PT_CORE_LOOP_H

#include <stdint.h>
#include <sys/epoll.h>

#include "core/common.h"

struct pt_io;
struct pt_timer;
struct pt_loop;

/* Called with the epoll event bits that fired. */
typedef void (*pt_io_cb)(struct pt_io *io, uint32_t events);
typedef void (*pt_timer_cb)(struct pt_timer *t);
/* Called once per loop iteration, before sleeping. */
typedef void (*pt_loop_hook)(struct pt_loop *loop, void *arg);

struct pt_io {
    int fd;
    pt_io_cb cb;
};

/* A timer; all-zero is a valid unarmed timer. Embed it in the object it times. */
struct pt_timer {
    struct pt_timer *_next, *_prev;
    uint64_t _expire_ms;
    pt_timer_cb cb;
};

/* pt_loop_new: an empty loop, or NULL when epoll or eventfd cannot be created. */
struct pt_loop *pt_loop_new(void);

/* pt_loop_free: closes the epoll and wake fds; the caller has removed or closed its own fds. */
void pt_loop_free(struct pt_loop *loop);

/* pt_loop_add: watch io->fd for <events> (EPOLLET is added). Returns 0 or PT_IO. */
int pt_loop_add(struct pt_loop *loop, struct pt_io *io, uint32_t events);

/* pt_loop_mod: change the events watched for io->fd. Returns 0 or PT_IO. */
int pt_loop_mod(struct pt_loop *loop, struct pt_io *io, uint32_t events);

/* pt_loop_del: stop watching io->fd (call before close when the fd may be dup'ed). */
void pt_loop_del(struct pt_loop *loop, struct pt_io *io);

/* pt_loop_run: runs until pt_loop_stop(); returns 0. */
int pt_loop_run(struct pt_loop *loop);

/* pt_loop_run_once: waits at most <max_wait_ms> (-1: until an event) and dispatches. */
void pt_loop_run_once(struct pt_loop *loop, int max_wait_ms);

/* pt_loop_stop: makes pt_loop_run() return after the current iteration (same thread). */
void pt_loop_stop(struct pt_loop *loop);

/* pt_loop_wake: wakes a loop sleeping in another thread; its before-sleep hook then runs.
 * The only call here that is safe from any thread. */
void pt_loop_wake(struct pt_loop *loop);

/* pt_loop_set_hook: <hook> runs once per iteration before the loop sleeps. */
void pt_loop_set_hook(struct pt_loop *loop, pt_loop_hook hook, void *arg);

/* pt_loop_now_ms: the loop's monotonic clock in milliseconds, refreshed every iteration. */
uint64_t pt_loop_now_ms(const struct pt_loop *loop);

/* pt_loop_update_time: refresh the cached clock (after long work inside a callback). */
void pt_loop_update_time(struct pt_loop *loop);

/* pt_timer_arm: (re)arms <t> to fire <ms> from now. O(1). */
void pt_timer_arm(struct pt_loop *loop, struct pt_timer *t, uint64_t ms);

/* pt_timer_cancel: disarms <t>; a no-op when it is not armed. O(1). */
void pt_timer_cancel(struct pt_timer *t);

static inline bool pt_timer_armed(const struct pt_timer *t)
{
    return t->_prev != NULL;
}

/* pt_now_ms: the monotonic clock, uncached. */
uint64_t pt_now_ms(void);

#endif
