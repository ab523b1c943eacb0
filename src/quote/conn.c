/* One portico-quote connection: read, parse, reply, write, close.
 *
 * The input buffer holds the request being served from offset 0: its head stays there until the
 * reply is built (the parser's spans point into it), body bytes are counted and dropped as they
 * arrive, and pipelined requests wait behind it. Replies are appended to the output buffer, so
 * several pipelined replies leave in one write. Parsing stops while more than OUT_HIGH bytes wait
 * to be written (backpressure), while a /delay/ timer runs, and after the last response of a
 * closing connection. A closing connection shuts its write side and drops input until the peer
 * closes (at most LINGER_MS), so the peer reads the last response instead of a reset.
 * Called by worker.c (accept, events, timers). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "quote/quote.h"

#define IN_INITIAL 4096
#define IN_BODY_ROOM 4096                       /* free input room while reading a body */
#define IN_MAX (PT_QUOTE_MAX_HEAD + 16 * 1024)
#define OUT_HIGH (64 * 1024) /* stop parsing requests while this much waits to be written */
#define LINGER_MS 2000

enum conn_state {
    CONN_HEAD = 0, /* reading a request head */
    CONN_BODY,     /* reading (counting, dropping) a request body */
    CONN_DELAY,    /* a /delay/ reply waits for its timer; input is not read meanwhile */
    CONN_CLOSING,  /* the last response is queued: close once it is written */
    CONN_LINGER,   /* written, write side shut: drop input until EOF or the timer */
};

struct pt_quote_conn {
    struct pt_quote_handle h; /* first member: what epoll hands back */
    struct pt_quote_worker *w;
    struct pt_quote_conn *prev, *next; /* the worker's live connections */
    enum conn_state state;
    uint32_t events;    /* epoll interest currently registered */
    bool peer_eof;      /* the peer will send nothing more */
    bool write_blocked; /* the socket took less than offered: wait for EPOLLOUT */
    char *in;
    uint32_t in_len, in_cap;
    uint32_t head_len;  /* head bytes of the request being served (BODY, DELAY) */
    uint64_t body_left; /* content-length bytes still to read */
    struct pt_quote_buf out;
    struct pt_quote_stream stream;
    struct pt_quote_timer timer;
    struct pt_quote_body body;
    struct pt_quote_chunked chunked;
    struct pt_quote_route route;
    char client[INET6_ADDRSTRLEN + 8];
    struct pt_quote_req req; /* last: it is large */
};

static struct pt_quote_conn *conn_of_timer(struct pt_quote_timer *t)
{
    return (struct pt_quote_conn *)((char *)t - offsetof(struct pt_quote_conn, timer));
}

static void conn_destroy(struct pt_quote_conn *c)
{
    struct pt_quote_worker *w = c->w;
    pt_quote_timer_cancel(w, &c->timer);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    close(c->h.fd); /* also leaves the epoll set */
    free(c->in);
    pt_quote_buf_free(&c->out);
    free(c);
}

/* grow_in: makes the input buffer at least <need> bytes. Returns 0 or -1. */
static int grow_in(struct pt_quote_conn *c, uint32_t need)
{
    uint32_t cap = c->in_cap;
    if (cap >= need)
        return 0;
    while (cap < need)
        cap *= 2;
    if (cap > IN_MAX)
        cap = IN_MAX;
    char *p = cap >= need ? realloc(c->in, cap) : NULL;
    if (p == NULL)
        return -1;
    c->in = p;
    c->in_cap = cap;
    return 0;
}

static bool backlogged(const struct pt_quote_conn *c)
{
    return c->stream.active || pt_quote_buf_pending(&c->out) >= OUT_HIGH;
}

/* ---- requests ---- */

/* fail: answers <status> and closes after it. Returns 0, or -1 when even that is impossible. */
static int fail(struct pt_quote_conn *c, int status)
{
    c->state = CONN_CLOSING;
    return pt_quote_reply_error(&c->w->server, status, &c->out);
}

/* respond: builds the reply, then drops the request from the input buffer. Returns 1 (go on)
 * or -1. */
static int respond(struct pt_quote_conn *c)
{
    bool close = c->w->server.opts->close_always || !c->req.keep_alive;
    struct pt_quote_exchange x = {
        .in = c->in, .req = &c->req, .body = &c->body, .route = &c->route,
        .client = c->client, .close = close,
    };

    if (pt_quote_reply(&c->w->server, &x, &c->out, &c->stream) < 0)
        return -1;
    c->in_len -= c->head_len;
    memmove(c->in, c->in + c->head_len, c->in_len);
    c->head_len = 0;
    memset(&c->req, 0, offsetof(struct pt_quote_req, headers));
    c->state = close ? CONN_CLOSING : CONN_HEAD;
    return 1;
}

/* begin_request: the head of <head_len> bytes is parsed; decide the route and the body. */
static int begin_request(struct pt_quote_conn *c, uint32_t head_len)
{
    c->head_len = head_len;
    c->body = (struct pt_quote_body){ 0 };
    c->chunked = (struct pt_quote_chunked){ 0 };
    c->body_left = c->req.chunked ? 0 : c->req.content_length;
    if (pt_quote_route_parse(c->in, &c->req, c->w->server.opts->echo_all, &c->route) < 0)
        return fail(c, 400);
    if (grow_in(c, head_len + IN_BODY_ROOM) < 0)
        return -1;
    bool has_body = c->req.chunked || c->body_left > 0;
    if (c->req.expect_continue && has_body && c->in_len == head_len &&
        pt_quote_reply_continue(&c->out) < 0)
        return -1;
    c->state = CONN_BODY;
    return 1;
}

/* on_head: returns 1 when a head was parsed, 0 to wait, -1 on failure. */
static int on_head(struct pt_quote_conn *c)
{
    int rc = c->in_len ? pt_quote_head_parse(&c->req, c->in, c->in_len) : PT_QUOTE_AGAIN;
    if (rc == PT_QUOTE_AGAIN) {
        if (c->peer_eof) /* an incomplete request will stay incomplete */
            c->state = CONN_CLOSING;
        return 0;
    }
    if (rc < 0)
        return fail(c, -rc);
    return begin_request(c, (uint32_t)rc);
}

/* on_body: counts the body bytes at hand. Returns 1 when the reply was built, 0 to wait. */
static int on_body(struct pt_quote_conn *c)
{
    char *p = c->in + c->head_len;
    size_t avail = c->in_len - c->head_len, used;
    bool done;

    if (c->req.chunked) {
        long rc = pt_quote_chunked_decode(&c->chunked, p, avail, &c->body);
        if (rc < 0)
            return fail(c, 400);
        used = (size_t)rc;
        done = c->chunked.state == PT_QUOTE_CHUNK_DONE;
    } else {
        used = avail < c->body_left ? avail : (size_t)c->body_left;
        pt_quote_body_add(&c->body, p, used);
        c->body_left -= used;
        done = c->body_left == 0;
    }
    memmove(p, p + used, avail - used); /* keep the head and what follows the body */
    c->in_len -= (uint32_t)used;
    if (!done) {
        if (c->peer_eof)
            c->state = CONN_CLOSING;
        return 0;
    }
    if (c->route.kind == PT_QUOTE_KIND_DELAY && c->route.arg > 0) {
        c->state = CONN_DELAY;
        return pt_quote_timer_arm(c->w, &c->timer, c->route.arg);
    }
    return respond(c);
}

/* process: serves the requests at hand. Returns 0, or -1 when the connection must die. */
static int process(struct pt_quote_conn *c)
{
    while (!backlogged(c)) {
        int rc;
        if (c->state == CONN_HEAD)
            rc = on_head(c);
        else if (c->state == CONN_BODY)
            rc = on_body(c);
        else
            return 0;
        if (rc <= 0)
            return rc;
    }
    return 0;
}

/* ---- I/O ---- */

/* flush: writes the output buffer, generating stream bodies as room frees up. Returns 1 when
 * everything is written, 0 when the socket is full, -1 on error. */
static int flush(struct pt_quote_conn *c)
{
    for (;;) {
        if (c->stream.active && pt_quote_buf_pending(&c->out) < OUT_HIGH &&
            pt_quote_stream_fill(&c->stream, &c->out, OUT_HIGH) < 0)
            return -1;
        size_t n = pt_quote_buf_pending(&c->out);
        if (n == 0) {
            c->write_blocked = false;
            return 1;
        }
        ssize_t k = send(c->h.fd, c->out.ptr + c->out.off, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            k = 0;
        }
        c->out.off += (size_t)k;
        if ((size_t)k < n) {
            c->write_blocked = true;
            return 0;
        }
    }
}

/* read_in: one read into the input buffer. Returns 0, or -1 on a socket error. */
static int read_in(struct pt_quote_conn *c)
{
    if (c->in_len == c->in_cap && grow_in(c, c->in_cap + 1) < 0)
        return -1;
    ssize_t n = read(c->h.fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n > 0)
        c->in_len += (uint32_t)n;
    else if (n == 0)
        c->peer_eof = true;
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return -1;
    return 0;
}

/* linger_read: drops input after the last response. Returns -1 once the peer has closed. */
static int linger_read(struct pt_quote_conn *c)
{
    char drop[4096];
    ssize_t n = read(c->h.fd, drop, sizeof(drop));
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)))
        return 0;
    return -1;
}

static int begin_linger(struct pt_quote_conn *c)
{
    c->state = CONN_LINGER;
    shutdown(c->h.fd, SHUT_WR);
    return pt_quote_timer_arm(c->w, &c->timer, LINGER_MS);
}

static uint32_t wanted_events(const struct pt_quote_conn *c)
{
    uint32_t ev = c->write_blocked ? EPOLLOUT : 0;
    if (c->peer_eof || backlogged(c))
        return ev;
    if (c->state == CONN_HEAD || c->state == CONN_BODY || c->state == CONN_LINGER)
        ev |= EPOLLIN;
    return ev;
}

/* run: after any event, serve and write until nothing more can happen now. */
static void run(struct pt_quote_conn *c)
{
    for (;;) {
        if (process(c) < 0)
            goto dead;
        bool held = backlogged(c);
        int rc = flush(c);
        if (rc < 0)
            goto dead;
        if (rc == 0)
            break;
        if (c->state == CONN_CLOSING) {
            if (c->peer_eof || begin_linger(c) < 0)
                goto dead;
            break;
        }
        if (!held) /* parsing stopped for want of input, not of output room */
            break;
    }
    uint32_t ev = wanted_events(c);
    if (ev != c->events) {
        if (pt_quote_worker_watch(c->w, &c->h, ev) < 0)
            goto dead;
        c->events = ev;
    }
    return;
dead:
    conn_destroy(c);
}

static void conn_on_event(struct pt_quote_handle *h, uint32_t events)
{
    struct pt_quote_conn *c = (struct pt_quote_conn *)h;

    if (events & (EPOLLERR | EPOLLHUP)) { /* reset, or both directions closed */
        conn_destroy(c);
        return;
    }
    if (events & EPOLLIN) {
        if (c->state == CONN_LINGER) {
            if (linger_read(c) < 0)
                conn_destroy(c);
            return;
        }
        if (read_in(c) < 0) {
            conn_destroy(c);
            return;
        }
    }
    run(c);
}

void pt_quote_conn_on_timer(struct pt_quote_timer *t)
{
    struct pt_quote_conn *c = conn_of_timer(t);

    if (c->state != CONN_DELAY) { /* the linger deadline */
        conn_destroy(c);
        return;
    }
    if (respond(c) < 0) {
        conn_destroy(c);
        return;
    }
    run(c);
}

static void format_client(char *dst, size_t n, const void *addr)
{
    const struct sockaddr *sa = addr;
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = addr;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(dst, n, "%s:%u", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(dst, n, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        snprintf(dst, n, "unknown");
    }
}

void pt_quote_conn_open(struct pt_quote_worker *w, int fd, const void *addr, unsigned addrlen)
{
    struct pt_quote_conn *c = calloc(1, sizeof(*c));
    int one = 1;

    if (c == NULL || (c->in = malloc(IN_INITIAL)) == NULL) {
        free(c);
        close(fd);
        return;
    }
    c->h = (struct pt_quote_handle){ fd, conn_on_event };
    c->w = w;
    c->in_cap = IN_INITIAL;
    c->events = EPOLLIN;
    if (addrlen > 0)
        format_client(c->client, sizeof(c->client), addr);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &c->h };
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        free(c->in);
        free(c);
        close(fd);
        return;
    }
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
}

void pt_quote_conn_close_all(struct pt_quote_worker *w)
{
    while (w->conns)
        conn_destroy(w->conns);
}
