/* The event loop: epoll in edge-triggered mode, an eventfd to be woken from other threads,
 * and a hashed timer wheel (PT_WHEEL_SLOTS slots of PT_WHEEL_TICK_MS each). A timer lives in
 * slot (expire / tick) % slots; a slot's timers that are not yet due stay in it for the next
 * turn, so arming and cancelling are O(1) and long timeouts cost one look per turn. A bitmap of
 * non-empty slots tells how long epoll may sleep. Used by every worker and the control thread. */
#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define PT_WHEEL_TICK_MS 4
#define PT_WHEEL_SLOTS 1024 /* one turn = 4.096 s */
#define PT_LOOP_MAX_EVENTS 256

struct pt_loop {
    int epfd;
    struct pt_io wake_io;
    bool stop;
    uint64_t now_ms;
    uint64_t wheel_tick;       /* the next tick to process (the current one while running) */
    bool in_timers;            /* running a slot: new timers go to a later tick */
    struct pt_timer slots[PT_WHEEL_SLOTS]; /* list heads (circular) */
    uint64_t used[PT_WHEEL_SLOTS / 64];    /* bit set = slot not empty */
    pt_loop_hook hook;
    void *hook_arg;
};

uint64_t pt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void wake_on_read(struct pt_io *io, uint32_t events)
{
    uint64_t v;
    (void)!read(io->fd, &v, sizeof(v));
}

struct pt_loop *pt_loop_new(void)
{
    struct pt_loop *loop = calloc(1, sizeof(*loop));
    if (loop == NULL)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->wake_io.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    loop->wake_io.cb = wake_on_read;
    if (loop->epfd < 0 || loop->wake_io.fd < 0 || pt_loop_add(loop, &loop->wake_io, EPOLLIN) != 0) {
        pt_loop_free(loop);
        return NULL;
    }
    for (size_t i = 0; i < PT_WHEEL_SLOTS; i++)
        loop->slots[i]._next = loop->slots[i]._prev = &loop->slots[i];
    loop->now_ms = pt_now_ms();
    loop->wheel_tick = loop->now_ms / PT_WHEEL_TICK_MS;
    return loop;
}

void pt_loop_free(struct pt_loop *loop)
{
    if (loop == NULL)
        return;
    if (loop->epfd >= 0)
        close(loop->epfd);
    if (loop->wake_io.fd >= 0)
        close(loop->wake_io.fd);
    free(loop);
}

static int ctl(struct pt_loop *loop, int op, struct pt_io *io, uint32_t events)
{
    struct epoll_event ev = { .events = events | EPOLLET, .data.ptr = io };
    return epoll_ctl(loop->epfd, op, io->fd, &ev) == 0 ? 0 : PT_IO;
}

int pt_loop_add(struct pt_loop *loop, struct pt_io *io, uint32_t events)
{
    return ctl(loop, EPOLL_CTL_ADD, io, events);
}

int pt_loop_mod(struct pt_loop *loop, struct pt_io *io, uint32_t events)
{
    return ctl(loop, EPOLL_CTL_MOD, io, events);
}

void pt_loop_del(struct pt_loop *loop, struct pt_io *io)
{
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

void pt_loop_wake(struct pt_loop *loop)
{
    uint64_t one = 1;
    (void)!write(loop->wake_io.fd, &one, sizeof(one));
}

void pt_loop_set_hook(struct pt_loop *loop, pt_loop_hook hook, void *arg)
{
    loop->hook = hook;
    loop->hook_arg = arg;
}

uint64_t pt_loop_now_ms(const struct pt_loop *loop)
{
    return loop->now_ms;
}

void pt_loop_update_time(struct pt_loop *loop)
{
    loop->now_ms = pt_now_ms();
}

void pt_loop_stop(struct pt_loop *loop)
{
    loop->stop = true;
}

void pt_timer_cancel(struct pt_timer *t)
{
    if (t->_prev == NULL)
        return;
    t->_prev->_next = t->_next;
    t->_next->_prev = t->_prev;
    t->_next = t->_prev = NULL;
}

void pt_timer_arm(struct pt_loop *loop, struct pt_timer *t, uint64_t ms)
{
    uint64_t expire = loop->now_ms + ms;
    uint64_t tick = (expire + PT_WHEEL_TICK_MS - 1) / PT_WHEEL_TICK_MS;
    size_t slot;

    pt_timer_cancel(t);
    if (tick < loop->wheel_tick + loop->in_timers)
        tick = loop->wheel_tick + loop->in_timers;
    slot = tick % PT_WHEEL_SLOTS;
    t->_expire_ms = expire;
    t->_next = loop->slots[slot]._next;
    t->_prev = &loop->slots[slot];
    t->_next->_prev = t;
    loop->slots[slot]._next = t;
    loop->used[slot / 64] |= 1ull << (slot % 64);
}

/* Runs the timers of one slot that are due; keeps the others. */
static void run_slot(struct pt_loop *loop, size_t slot)
{
    struct pt_timer *head = &loop->slots[slot], due = { 0 }, *t;

    if (!(loop->used[slot / 64] & (1ull << (slot % 64))))
        return;
    due._next = due._prev = &due;
    for (t = head->_next; t != head;) {
        struct pt_timer *next = t->_next;
        if (t->_expire_ms <= loop->now_ms) {
            pt_timer_cancel(t);
            t->_next = due._next;
            t->_prev = &due;
            due._next->_prev = t;
            due._next = t;
        }
        t = next;
    }
    if (head->_next == head)
        loop->used[slot / 64] &= ~(1ull << (slot % 64));
    /* Callbacks may arm or cancel any timer, including others on the due list. */
    while (due._next != &due) {
        t = due._next;
        pt_timer_cancel(t);
        t->cb(t);
    }
}

static void run_timers(struct pt_loop *loop)
{
    uint64_t now_tick = loop->now_ms / PT_WHEEL_TICK_MS;
    uint64_t n = 0;

    /* After a stall longer than a turn, one turn visits every slot: start it so that it ends
     * at now, and timers armed meanwhile land after now. */
    if (now_tick >= loop->wheel_tick + PT_WHEEL_SLOTS)
        loop->wheel_tick = now_tick - PT_WHEEL_SLOTS + 1;
    loop->in_timers = true;
    while (loop->wheel_tick <= now_tick && n++ < PT_WHEEL_SLOTS) {
        run_slot(loop, loop->wheel_tick % PT_WHEEL_SLOTS);
        loop->wheel_tick++;
    }
    loop->in_timers = false;
}

/* Milliseconds until the next non-empty slot, or -1 when no timer is armed. The bitmap is read
 * a word at a time from the current slot on: the lowest set bit at or after it is the next
 * slot (ctz), and a turn visits at most PT_WHEEL_SLOTS / 64 + 1 words. */
static int next_timeout(const struct pt_loop *loop)
{
    size_t start = (size_t)(loop->wheel_tick % PT_WHEEL_SLOTS);
    uint64_t i = 0;

    while (i < PT_WHEEL_SLOTS) {
        size_t slot = (start + i) % PT_WHEEL_SLOTS;
        uint64_t word = loop->used[slot / 64] >> (slot % 64); /* this slot is bit 0 */
        if (word != 0) {
            i += (uint64_t)__builtin_ctzll(word);
            if (i >= PT_WHEEL_SLOTS) /* the bit is the start slot's word's, a turn ahead */
                break;
            uint64_t at = (loop->wheel_tick + i) * PT_WHEEL_TICK_MS;
            return at <= loop->now_ms ? 0 : (int)(at - loop->now_ms);
        }
        i += 64 - (slot % 64); /* the rest of this word is empty */
    }
    return -1;
}

void pt_loop_run_once(struct pt_loop *loop, int max_wait_ms)
{
    struct epoll_event evs[PT_LOOP_MAX_EVENTS];
    int timeout, n;

    if (loop->hook)
        loop->hook(loop, loop->hook_arg);
    if (loop->stop)
        return; /* the hook asked to stop: do not sleep first */
    timeout = next_timeout(loop);
    if (max_wait_ms >= 0 && (timeout < 0 || timeout > max_wait_ms))
        timeout = max_wait_ms;
    n = epoll_wait(loop->epfd, evs, PT_LOOP_MAX_EVENTS, timeout);
    loop->now_ms = pt_now_ms();
    for (int i = 0; i < n; i++) {
        struct pt_io *io = evs[i].data.ptr;
        io->cb(io, evs[i].events);
    }
    run_timers(loop);
}

int pt_loop_run(struct pt_loop *loop)
{
    while (!loop->stop)
        pt_loop_run_once(loop, -1);
    return 0;
}
