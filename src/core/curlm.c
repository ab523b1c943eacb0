/* libcurl's multi interface on the loop (core/curlm.h). The loop is edge-triggered: like
 * cluster/dns.c with c-ares, each event gets one curl_multi_socket_action() and the fd is then
 * re-armed with pt_loop_mod(), which reports again whatever libcurl left unread. Sockets libcurl
 * drops are marked dead and freed from a 1 ms timer, after the epoll batch that may still name
 * them. */
#include "core/curlm.h"

#include <stdlib.h>

#include "core/common.h"
#include "core/log.h"
#include "core/loop.h"

/* A socket libcurl asked us to watch. */
struct curlm_sock {
    struct pt_io io;
    struct pt_curlm *m;
    uint32_t events;
    bool dead;
    struct curlm_sock *next;
};

struct pt_curlm {
    struct pt_loop *loop;
    CURLM *multi;
    const char *name;
    pt_curlm_done_cb on_done;
    void *arg;
    struct pt_timer curl_timer, defer_timer;
    struct curlm_sock *socks;
};

static void free_socks(struct pt_curlm *m, bool all)
{
    struct curlm_sock **pp = &m->socks, *s;

    while ((s = *pp) != NULL) {
        if (s->dead || all) {
            if (!s->dead)
                pt_loop_del(m->loop, &s->io);
            *pp = s->next;
            free(s);
        } else {
            pp = &s->next;
        }
    }
}

static void defer_on_fire(struct pt_timer *t)
{
    free_socks(pt_container_of(t, struct pt_curlm, defer_timer), false);
}

/* check_done: hands every finished transfer to the owner. */
static void check_done(struct pt_curlm *m)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE)
            m->on_done(m->arg, msg->easy_handle, msg->data.result);
}

static void sock_on_event(struct pt_io *io, uint32_t events)
{
    struct curlm_sock *s = pt_container_of(io, struct curlm_sock, io);
    struct pt_curlm *m = s->m;
    int mask = 0, running;

    if (s->dead)
        return;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
        mask |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        mask |= CURL_CSELECT_OUT;
    if (events & EPOLLERR)
        mask |= CURL_CSELECT_ERR;
    curl_multi_socket_action(m->multi, io->fd, mask, &running);
    if (!s->dead) /* libcurl may have dropped it meanwhile (s is freed later, not yet) */
        pt_loop_mod(m->loop, &s->io, s->events);
    check_done(m);
}

/* on_curl_socket: CURLMOPT_SOCKETFUNCTION: watch <fd> for <what>, or stop watching it. */
static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct pt_curlm *m = userp;
    struct curlm_sock *s = socketp;
    uint32_t events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);

    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            pt_loop_del(m->loop, &s->io);
            s->dead = true;
            curl_multi_assign(m->multi, fd, NULL);
            if (!pt_timer_armed(&m->defer_timer))
                pt_timer_arm(m->loop, &m->defer_timer, 1);
        }
        return 0;
    }
    if (s != NULL) {
        s->events = events;
        if (pt_loop_mod(m->loop, &s->io, events) != 0)
            pt_warn("%s: cannot watch socket %d; its request will time out", m->name, fd);
        return 0;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return -1;
    s->io.fd = fd;
    s->io.cb = sock_on_event;
    s->m = m;
    s->events = events;
    if (pt_loop_add(m->loop, &s->io, events) != 0) {
        pt_warn("%s: cannot watch socket %d; its request fails", m->name, fd);
        free(s);
        return -1;
    }
    s->next = m->socks;
    m->socks = s;
    curl_multi_assign(m->multi, fd, s);
    return 0;
}

/* on_curl_timer: CURLMOPT_TIMERFUNCTION. Never 0 ms: see defer() in cluster/dns.c. */
static int on_curl_timer(CURLM *multi, long ms, void *userp)
{
    struct pt_curlm *m = userp;

    (void)multi;
    if (ms < 0)
        pt_timer_cancel(&m->curl_timer);
    else
        pt_timer_arm(m->loop, &m->curl_timer, ms < 1 ? 1 : (uint64_t)ms);
    return 0;
}

static void curl_timer_on_fire(struct pt_timer *t)
{
    struct pt_curlm *m = pt_container_of(t, struct pt_curlm, curl_timer);
    int running;

    curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(m);
}

struct pt_curlm *pt_curlm_new(struct pt_loop *loop, const char *name, pt_curlm_done_cb on_done,
                              void *arg)
{
    struct pt_curlm *m;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    if ((m = calloc(1, sizeof(*m))) == NULL || (m->multi = curl_multi_init()) == NULL) {
        free(m);
        curl_global_cleanup();
        return NULL;
    }
    m->loop = loop;
    m->name = name;
    m->on_done = on_done;
    m->arg = arg;
    m->curl_timer.cb = curl_timer_on_fire;
    m->defer_timer.cb = defer_on_fire;
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    return m;
}

void pt_curlm_free(struct pt_curlm *m)
{
    if (m == NULL)
        return;
    pt_timer_cancel(&m->defer_timer);
    curl_multi_cleanup(m->multi); /* may still call on_curl_socket to drop sockets */
    pt_timer_cancel(&m->curl_timer);
    free_socks(m, true);
    free(m);
    curl_global_cleanup();
}

int pt_curlm_add(struct pt_curlm *m, CURL *easy)
{
    return curl_multi_add_handle(m->multi, easy) == CURLM_OK ? 0 : PT_NOMEM;
}

void pt_curlm_remove(struct pt_curlm *m, CURL *easy)
{
    curl_multi_remove_handle(m->multi, easy);
}
