/* The downstream HTTP/1.1 session: reads request heads, routes them, forwards requests to an
 * upstream connection and streams the response back, one request at a time per connection
 * (pipelined requests wait in the input buffer). Bodies stream in both directions through the
 * connection buffers and are never held whole. Local replies (404, 503, 504, 400) are built in
 * proxy/reply.c; heads for the other side in proxy/headers.c. Called from proxy/worker.c
 * (accept) and proxy/upstream.c (upstream events). */
#include "proxy/proxy.h"
#include "proxy/session.h"
#include "model/snapshot-t.h" /* struct pt_listen_sock */
#include "proxy/sockio.h"
#include "cluster/lb.h"
#include "config/snapshot.h"
#include "core/log.h"
#include "http/h1.h"
#include "route/route.h"
#include "observe/trace.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static void ds_process(struct pt_downstream *ds);

/* Closes the connection; the struct is freed after this loop iteration. */
void pt_ds_close(struct pt_downstream *ds)
{
    struct pt_worker *w = ds->w;

    if (ds->flags & PT_DSF_DEAD)
        return;
    ds->flags |= PT_DSF_DEAD;
    pt_timer_cancel(&ds->timer);
    pt_timer_cancel(&ds->idle_timer);
    if (ds->up != NULL) {
        pt_up_release(ds->up, false);
        ds->up = NULL;
    }
    if (ds->snap != NULL)
        pt_ds_request_end(ds);
    {
        struct pt_http_stats *hs = pt_ds_http_stats(ds);
        struct pt_listener_stats *ls = pt_stats_listener(w->st, ds->lst_idx);
        if (hs != NULL) {
            pt_gauge_dec(&hs->downstream_cx_active);
            pt_gauge_dec(&hs->downstream_cx_http1_active);
            if (ds->ssl != NULL)
                pt_gauge_dec(&hs->downstream_cx_ssl_active);
            pt_stats_inc(&hs->downstream_cx_destroy);
            pt_hist_record_ms(&hs->downstream_cx_length_ms, (double)(pt_loop_now_ms(w->loop) - ds->accepted_ms));
        }
        if (ls != NULL)
            pt_gauge_dec(&ls->downstream_cx_active);
    }
    if (ds->ssl != NULL) {
        SSL_shutdown(ds->ssl);
        SSL_free(ds->ssl);
        ds->ssl = NULL;
    }
    close(ds->io.fd);
    pt_buf_release(&w->bufs, &ds->in);
    pt_buf_release(&w->bufs, &ds->out);
    w->nconns--;
    ds->dead_next = w->dead_ds;
    w->dead_ds = ds;
}

void pt_ds_free_dead(struct pt_worker *w)
{
    while (w->dead_ds != NULL) {
        struct pt_downstream *ds = w->dead_ds;
        w->dead_ds = ds->dead_next;
        ds->dead_next = w->free_ds;
        w->free_ds = ds;
    }
}

/* lb_outcome: how the request's upstream part ended, for pt_lb_release, read from its status
 * and response flags. A response that started but did not end (client gone, or the upstream
 * reset mid-body: the flags do not tell which) counts as cancelled. */
static enum pt_lb_outcome lb_outcome(const struct pt_downstream *ds)
{
    const char *f = ds->flags_str;

    if (ds->upstream_status >= 500)
        return PT_LB_HTTP_5XX;
    if (f != NULL && f[0] == 'U') {
        switch (f[1]) {
        case 'F': return PT_LB_CONNECT_FAILURE; /* UF */
        case 'T': return PT_LB_TIMEOUT;         /* UT */
        case 'C': /* UC */
        case 'P': return PT_LB_RESET;           /* UPE */
        default: break;
        }
    }
    if (ds->upstream_status != 0 && (ds->flags & PT_DSF_RESP_DONE))
        return PT_LB_SUCCESS;
    return PT_LB_CANCELLED;
}

/* The request leaves its snapshot; an old snapshot is released when its last request ends. */
void pt_ds_request_end(struct pt_downstream *ds)
{
    struct pt_snapshot *s = ds->snap;
    struct pt_http_stats *hs = pt_ds_http_stats(ds);
    uint64_t now = pt_loop_now_ms(ds->w->loop);

    if (hs != NULL) {
        pt_gauge_dec(&hs->downstream_rq_active);
        pt_hist_record_ms(&hs->downstream_rq_time, (double)(now - ds->start_ms));
    }
    if (ds->flags & PT_DSF_UP_ACTIVE) {
        struct pt_cluster_stats *cs = pt_ds_cluster_stats(ds);
        if (cs != NULL) {
            pt_gauge_dec(&cs->upstream_rq_active);
            if (ds->upstream_status != 0 && (ds->flags & PT_DSF_RESP_DONE))
                pt_hist_record_ms(&cs->upstream_rq_time, (double)(now - ds->upstream_start_ms));
        }
        ds->flags &= ~PT_DSF_UP_ACTIVE;
    }
    pt_lb_release(&ds->w->lb, &ds->lb_pick, lb_outcome(ds));
    ds->snap = NULL;
    ds->w->inflight--;
    s->wref[ds->w->id].inflight--;
    pt_ds_snapshot_done(ds->w, s);
}

/* Writes what is pending for the client. Returns 0 when all is out, PT_AGAIN, or PT_IO. */
static int ds_flush(struct pt_downstream *ds)
{
    while (ds->out.len > 0) {
        struct iovec iov = { pt_buf_data(&ds->out), ds->out.len };
        ssize_t n = pt_sock_writev(ds->io.fd, ds->ssl, &iov, 1, NULL, 0);
        if (n < 0)
            return PT_IO;
        if (n == 0) {
            ds->flags |= PT_DSF_WR_BLOCKED;
            return PT_AGAIN;
        }
        pt_buf_consume(&ds->out, (uint32_t)n);
    }
    pt_buf_release(&ds->w->bufs, &ds->out);
    ds->flags &= ~PT_DSF_WR_BLOCKED;
    return 0;
}

int pt_ds_send(struct pt_downstream *ds, const struct iovec *iov, int iovcnt)
{
    size_t total = 0, done = 0;
    ssize_t n;

    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    {
        struct pt_http_stats *hs = pt_ds_http_stats(ds);
        if (hs != NULL)
            pt_stats_add(&hs->downstream_cx_tx_bytes_total, total); /* handed to the socket */
    }
    if (total == 0)
        return 0;
    if (ds->out.len == 0) {
        n = pt_sock_writev(ds->io.fd, ds->ssl, iov, iovcnt, ds->w->tls_scratch, sizeof(ds->w->tls_scratch));
        if (n < 0)
            return PT_IO;
        if ((size_t)n == total)
            return 0;
        done = (size_t)n;
    }
    if (pt_buf_append_iov(&ds->w->bufs, &ds->out, iov, iovcnt, total, done) != 0)
        return PT_IO;
    ds->flags |= PT_DSF_WR_BLOCKED;
    return PT_AGAIN;
}

/* Reads from the client into ds->in. Returns bytes read, 0 at EOF, PT_AGAIN, PT_IO, PT_NOMEM. */
static int ds_fill(struct pt_downstream *ds)
{
    ssize_t n;
    uint32_t room;

    if (pt_buf_reserve(&ds->w->bufs, &ds->in) != 0)
        return PT_NOMEM;
    if (pt_buf_room(&ds->in) == 0)
        pt_buf_compact(&ds->in);
    room = pt_buf_room(&ds->in);
    if (room == 0)
        return PT_AGAIN;
    bool drained;
    n = pt_sock_read(ds->io.fd, ds->ssl, ds->in.base + ds->in.off + ds->in.len, room,
                     ds->flags & PT_DSF_PEER_CLOSED, &drained);
    if (drained)
        ds->flags &= ~PT_DSF_RD_PENDING;
    if (n > 0) {
        struct pt_http_stats *hs = pt_ds_http_stats(ds);
        ds->in.len += (uint32_t)n;
        if (hs != NULL)
            pt_stats_add(&hs->downstream_cx_rx_bytes_total, (uint64_t)n);
    }
    return (int)n;
}

/* Sends request body bytes upstream as long as the upstream takes them. */
static void ds_forward_request_body(struct pt_downstream *ds)
{
    while (!(ds->flags & PT_DSF_REQ_DONE) && ds->up != NULL && ds->up->out.len == 0) {
        if (ds->in.len > 0) {
            bool done;
            struct pt_body_out out = { .n = 0 };
            int64_t n = pt_body_take_request(&ds->req_body, pt_buf_data(&ds->in), ds->in.len, &done, &out);
            if (n < 0) {
                pt_ds_abort(ds);
                return;
            }
            if (pt_up_send(ds->up, out.iov, out.n) == PT_IO) {
                pt_ds_on_upstream_error(ds, "connection termination", NULL, "UC");
                return;
            }
            pt_buf_consume(&ds->in, (uint32_t)n);
            ds->bytes_rx = ds->req_body.payload;
            if (done)
                ds->flags |= PT_DSF_REQ_DONE;
            pt_ds_touch(ds);
            continue;
        }
        if (!(ds->flags & PT_DSF_RD_PENDING))
            return;
        int r = ds_fill(ds);
        if (r == 0 || r == PT_IO || r == PT_NOMEM) {
            pt_ds_abort(ds); /* the client went away mid-body */
            return;
        }
        if (r == PT_AGAIN)
            return;
    }
    if ((ds->flags & PT_DSF_REQ_DONE) && ds->up != NULL && ds->up->out.len == 0)
        ds->flags |= PT_DSF_REQ_SENT;
}

/* Closes gracefully once the last response is out: our side of the stream ends, and what the
 * client still sends is read and dropped for a moment, so that closing with unread data does
 * not reset the connection and destroy the response before the client has read it. */
static void ds_linger(struct pt_downstream *ds)
{
    char sink[4096];
    bool drained = false;
    int r = 1;

    ds->state = PT_DS_CLOSING;
    if (ds->out.len > 0)
        return; /* again when the output is flushed */
    if (ds->ssl != NULL)
        SSL_shutdown(ds->ssl);
    shutdown(ds->io.fd, SHUT_WR);
    while (!drained && (r = pt_sock_read(ds->io.fd, ds->ssl, sink, sizeof(sink),
                                         ds->flags & PT_DSF_PEER_CLOSED, &drained)) > 0)
        ;
    if (r == 0 || r == PT_IO) {
        pt_ds_close(ds);
        return;
    }
    pt_timer_arm(ds->w->loop, &ds->timer, PT_LINGER_MS);
}

/* The request and the response are both complete: log, recycle, and go on with the next. */
static void ds_finish(struct pt_downstream *ds)
{
    struct pt_worker *w = ds->w;
    bool reusable = (ds->flags & PT_DSF_REQ_DONE) && (ds->flags & PT_DSF_UP_KEEPALIVE);

    pt_timer_cancel(&ds->timer);
    pt_timer_cancel(&ds->idle_timer);
    if (ds->trace_cfg != NULL)
        pt_trace_upstream_end(&ds->trace);
    pt_session_observe_end(ds);
    if (ds->up != NULL) {
        pt_up_release(ds->up, reusable);
        ds->up = NULL;
    }
    if (ds->snap != NULL)
        pt_ds_request_end(ds);
    if (!(ds->flags & PT_DSF_REQ_DONE))
        ds->flags |= PT_DSF_CLOSE_AFTER; /* the rest of the request body cannot be skipped safely */
    /* Per-request flags go; the connection's stay. */
    ds->flags &= PT_DSF_RD_PENDING | PT_DSF_WR_BLOCKED | PT_DSF_CLOSE_AFTER | PT_DSF_PEER_CLOSED |
                 PT_DSF_IN_PROCESS | PT_DSF_TLS;
    ds->head_scanned = 0;
    if (ds->flags & PT_DSF_CLOSE_AFTER) {
        ds_linger(ds);
        return;
    }
    ds->state = PT_DS_HEAD;
    if (ds->in.len == 0)
        pt_buf_release(&w->bufs, &ds->in);
    pt_timer_arm(w->loop, &ds->timer, pt_ds_keepalive_ms(ds));
    if (!(ds->flags & PT_DSF_IN_PROCESS) && (ds->in.len > 0 || (ds->flags & PT_DSF_RD_PENDING)))
        ds_process(ds);
}

/* Sends response body bytes from up->in to the client while the client keeps up. */
static void ds_response_progress(struct pt_downstream *ds)
{
    struct pt_upstream *up = ds->up;

    while (up != NULL && !(ds->flags & PT_DSF_RESP_DONE) && ds->out.len == 0) {
        bool done = false;
        int64_t n = 0;
        if (up->in.len > 0) {
            struct pt_str send;
            n = pt_body_take(&ds->resp_body, pt_buf_data(&up->in), up->in.len, &done, &send);
            if (n < 0) {
                pt_ds_abort(ds);
                return;
            }
            struct iovec iov = { (void *)send.ptr, send.len };
            if (pt_ds_send(ds, &iov, 1) == PT_IO) {
                pt_ds_abort(ds);
                return;
            }
            pt_buf_consume(&up->in, (uint32_t)n);
            ds->bytes_tx = ds->resp_body.payload;
            pt_ds_touch(ds);
        } else if (ds->resp_body.kind == PT_BODY_NONE) {
            done = true;
        }
        if (done) {
            ds->flags |= PT_DSF_RESP_DONE;
            break;
        }
        if (up->in.len == 0 && up->eof) {
            if (ds->resp_body.kind == PT_BODY_UNTIL_CLOSE) {
                ds->flags |= PT_DSF_RESP_DONE;
                break;
            }
            pt_ds_abort(ds); /* truncated response: the client must see the connection end */
            return;
        }
        if (up->in.len == 0) {
            if (!up->rd_pending)
                return;
            pt_up_read(up); /* re-enters through pt_ds_on_upstream_readable */
            return;
        }
    }
    if ((ds->flags & PT_DSF_RESP_DONE) && ds->out.len == 0)
        ds_finish(ds); /* an early response ends the request: ds_finish closes after it */
}

void pt_ds_on_upstream_readable(struct pt_downstream *ds)
{
    struct pt_upstream *up = ds->up;

    if (ds->flags & PT_DSF_DEAD)
        return;
    while (!(ds->flags & PT_DSF_RESP_HEAD)) {
        int r = up->in.len ? pt_session_response_head(ds) : PT_AGAIN;
        if (r == PT_AGAIN) {
            if (up->eof) {
                pt_ds_on_upstream_error(ds, "connection termination", NULL, "UC");
                return;
            }
            if (up->rd_pending && pt_buf_room(&up->in) > 0) {
                pt_up_read(up);
                return;
            }
            if (pt_buf_room(&up->in) == 0 && up->in.off == 0) {
                pt_ds_on_upstream_error(ds, "protocol error", NULL, "UPE");
                return;
            }
            return;
        }
        if (r < 0) {
            pt_ds_on_upstream_error(ds, "protocol error", NULL, "UPE");
            return;
        }
        if (ds->flags & PT_DSF_DEAD)
            return;
    }
    ds_response_progress(ds);
}

void pt_ds_on_upstream_writable(struct pt_downstream *ds)
{
    if (ds->flags & PT_DSF_DEAD)
        return;
    ds_forward_request_body(ds);
}

void pt_ds_on_upstream_error(struct pt_downstream *ds, const char *reason, const char *tfr,
                             const char *flags)
{
    bool stale;

    if (ds->flags & PT_DSF_DEAD)
        return;
    /* A pooled connection that ends before any response byte was most likely closed by the
     * backend as we reused it: the request may go again on a new one. */
    stale = (ds->flags & PT_DSF_REUSED_UP) && !(ds->flags & PT_DSF_RESP_HEAD) && ds->up != NULL &&
            ds->up->in.len == 0 && strcmp(flags, "UC") == 0;
    if (ds->up != NULL) {
        pt_up_release(ds->up, false);
        ds->up = NULL;
    }
    if (stale && pt_session_retry(ds))
        return;
    if (ds->flags & PT_DSF_RESP_HEAD) {
        pt_ds_abort(ds);
        return;
    }
    pt_reply_upstream_reset(ds, reason, tfr, flags);
}

/* Something went wrong after the response started (or the client vanished): log and close. */
void pt_ds_abort(struct pt_downstream *ds)
{
    if (ds->flags & PT_DSF_DEAD)
        return;
    if (ds->state == PT_DS_FORWARD || ds->state == PT_DS_CONNECT) {
        if (ds->status == 0)
            ds->flags_str = "DC";
        pt_session_observe_end(ds);
    }
    pt_ds_close(ds);
}

/* ds_time_out: the request in progress ran out of time: a local reply of <status> and <body>
 * while the response has not started, else the connection closes; <flags> in the access log. */
static void ds_time_out(struct pt_downstream *ds, int status, struct pt_str body, const char *flags)
{
    if (ds->flags & PT_DSF_RESP_HEAD) {
        ds->flags_str = flags;
        pt_ds_abort(ds);
        return;
    }
    if (ds->up != NULL) {
        pt_up_release(ds->up, false);
        ds->up = NULL;
    }
    pt_reply_local(ds, status, body, flags);
}

/* Nothing moved either way for the request's idle timeout (Envoy's route idle_timeout): 504
 * "stream timeout" when the request was all read, else 408. */
static void ds_on_idle_timer(struct pt_timer *t)
{
    struct pt_downstream *ds = pt_container_of(t, struct pt_downstream, idle_timer);

    if (ds->state == PT_DS_FORWARD || ds->state == PT_DS_CONNECT)
        ds_time_out(ds, (ds->flags & PT_DSF_REQ_DONE) ? 504 : 408, PT_STR_LIT("stream timeout"), "SI");
}

static void ds_on_timer(struct pt_timer *t)
{
    struct pt_downstream *ds = pt_container_of(t, struct pt_downstream, timer);

    if (ds->state == PT_DS_FORWARD || ds->state == PT_DS_CONNECT) {
        struct pt_cluster_stats *cs = pt_ds_cluster_stats(ds);
        if (cs != NULL)
            pt_stats_inc(&cs->upstream_rq_timeout);
        ds_time_out(ds, 504, PT_STR_LIT("upstream request timeout"), "UT");
        return;
    }
    if (ds->state == PT_DS_HEAD && ds->in.len > 0) { /* a head that never completed */
        struct pt_http_stats *hs = pt_ds_http_stats(ds);
        if (hs != NULL)
            pt_stats_inc(&hs->downstream_rq_timeout);
    }
    pt_ds_close(ds); /* or idle */
}

void pt_ds_local_reply_done(struct pt_downstream *ds)
{
    ds->flags |= PT_DSF_RESP_HEAD | PT_DSF_RESP_DONE;
    if (!(ds->flags & PT_DSF_REQ_DONE))
        ds->flags |= PT_DSF_CLOSE_AFTER;
    if (ds->out.len == 0)
        ds_finish(ds);
}

/* Reads and dispatches request heads until one is in progress or the socket is drained. */
static void ds_process(struct pt_downstream *ds)
{
    struct pt_h1_limits lim = { pt_proxy_limits.max_head_bytes, pt_proxy_limits.max_headers };

    ds->flags |= PT_DSF_IN_PROCESS;
    while (ds->state == PT_DS_HEAD && !(ds->flags & PT_DSF_DEAD)) {
        size_t scanned = (size_t)ds->head_scanned;
        int r = PT_AGAIN;

        if (ds->in.len > 0) {
            r = pt_h1_find_head_end(pt_buf_data(&ds->in), ds->in.len, &scanned, &lim);
            ds->head_scanned = (int64_t)scanned;
        }
        if (r > 0) {
            pt_timer_cancel(&ds->timer);
            ds->flags &= ~PT_DSF_HEAD_TIMER;
            ds->head_scanned = 0;
            pt_session_dispatch(ds, (size_t)r);
            continue;
        }
        if (r != PT_AGAIN) {
            pt_reply_bad_request(ds);
            return;
        }
        if (!(ds->flags & PT_DSF_RD_PENDING))
            break;
        if (pt_buf_reserve(&ds->w->bufs, &ds->in) != 0) {
            pt_ds_close(ds);
            return;
        }
        if (pt_buf_room(&ds->in) == 0) {
            pt_buf_compact(&ds->in);
            if (pt_buf_room(&ds->in) == 0 &&
                pt_buf_grow(&ds->w->bufs, &ds->in, pt_proxy_limits.max_head_bytes + 1024) != 0) {
                pt_ds_close(ds);
                return;
            }
        }
        r = ds_fill(ds);
        if (r == 0 || r == PT_IO || r == PT_NOMEM) {
            pt_ds_close(ds);
            return;
        }
        if (r == PT_AGAIN)
            break;
    }
    ds->flags &= ~PT_DSF_IN_PROCESS;
    if (ds->state == PT_DS_HEAD && !(ds->flags & PT_DSF_DEAD)) {
        if (ds->in.len == 0) {
            pt_buf_release(&ds->w->bufs, &ds->in);
            if (!pt_timer_armed(&ds->timer))
                pt_timer_arm(ds->w->loop, &ds->timer, pt_ds_keepalive_ms(ds));
        } else if (!(ds->flags & PT_DSF_HEAD_TIMER)) {
            /* The whole head must arrive within the header timeout of its first byte. */
            ds->flags |= PT_DSF_HEAD_TIMER;
            pt_timer_arm(ds->w->loop, &ds->timer, pt_proxy_limits.header_timeout_ms);
        }
    }
}

/* Drives the server side of a TLS handshake. Returns true once the session is up. */
static bool ds_handshake(struct pt_downstream *ds)
{
    int r;

    ERR_clear_error();
    r = SSL_do_handshake(ds->ssl);
    if (r == 1) {
        ds->state = PT_DS_HEAD;
        ds->flags |= PT_DSF_RD_PENDING; /* records may already wait behind the handshake */
        return true;
    }
    switch (SSL_get_error(ds->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return false;
    default:
        pt_debug("TLS handshake from %s failed", ds->peer_ip);
        pt_ds_close(ds);
        return false;
    }
}

/* An HTTPS listener takes TLS and cleartext on one port, as Emissary does: a TLS handshake
 * starts with a handshake record (0x16). One peek per connection decides. */
static bool ds_detect_tls(struct pt_downstream *ds)
{
    struct pt_listener *l = pt_snapshot_find_listener(ds->w->snap, ds->port);
    unsigned char b;
    ssize_t n = recv(ds->io.fd, &b, 1, MSG_PEEK);

    if (n == 0 || (n < 0 && errno != EAGAIN) || l == NULL) {
        pt_ds_close(ds);
        return false;
    }
    if (n < 0)
        return false;
    if (b != 0x16 || l->tls_ctx == NULL) {
        ds->state = PT_DS_HEAD;
        return true;
    }
    ds->ssl = SSL_new(l->tls_ctx);
    if (ds->ssl == NULL || SSL_set_fd(ds->ssl, ds->io.fd) != 1) {
        pt_ds_close(ds);
        return false;
    }
    SSL_set_accept_state(ds->ssl);
    ds->flags |= PT_DSF_TLS;
    {
        struct pt_http_stats *hs = pt_ds_http_stats(ds);
        if (hs != NULL)
            pt_gauge_inc(&hs->downstream_cx_ssl_active);
    }
    ds->state = PT_DS_HANDSHAKE;
    return ds_handshake(ds);
}

static void ds_on_event(struct pt_io *io, uint32_t events)
{
    struct pt_downstream *ds = pt_container_of(io, struct pt_downstream, io);

    if (ds->flags & PT_DSF_DEAD)
        return;
    if (events & (EPOLLERR | EPOLLHUP)) {
        pt_ds_abort(ds);
        return;
    }
    if ((events & EPOLLOUT) && (ds->flags & PT_DSF_WR_BLOCKED)) {
        int r = ds_flush(ds);
        if (r == PT_IO) {
            pt_ds_abort(ds);
            return;
        }
        if (r == 0) {
            if (ds->state == PT_DS_CLOSING) {
                ds_linger(ds);
                return;
            }
            if (ds->flags & PT_DSF_RESP_DONE) {
                ds_finish(ds);
            } else if (ds->up != NULL) {
                pt_ds_on_upstream_readable(ds);
            }
            if (ds->flags & PT_DSF_DEAD)
                return;
        }
    }
    if (events & (EPOLLIN | EPOLLRDHUP))
        ds->flags |= PT_DSF_RD_PENDING;
    if (events & EPOLLRDHUP)
        ds->flags |= PT_DSF_PEER_CLOSED; /* sticky: the FIN's edge is reported once */
    if (ds->state == PT_DS_TLS_DETECT && !ds_detect_tls(ds))
        return;
    if (ds->state == PT_DS_HANDSHAKE && !ds_handshake(ds))
        return;
    if (!(ds->flags & PT_DSF_RD_PENDING))
        return;
    switch (ds->state) {
    case PT_DS_HEAD:
        ds_process(ds);
        break;
    case PT_DS_CONNECT:
    case PT_DS_FORWARD:
        ds_forward_request_body(ds);
        break;
    case PT_DS_TLS_DETECT:
    case PT_DS_HANDSHAKE:
        break;
    case PT_DS_CLOSING: {
        char sink[4096];
        bool drained = false;
        int r = 1;
        while (!drained && (r = pt_sock_read(io->fd, ds->ssl, sink, sizeof(sink),
                                             ds->flags & PT_DSF_PEER_CLOSED, &drained)) > 0)
            ;
        if (ds->out.len == 0 && (r == 0 || r == PT_IO))
            pt_ds_close(ds); /* the client is done too */
        break;
    }
    }
    if (ds->state == PT_DS_HEAD && !(ds->flags & PT_DSF_DEAD) && ds->in.len == 0 &&
        (events & EPOLLRDHUP))
        pt_ds_close(ds);
}

void pt_ds_accept(struct pt_worker *w, struct pt_listen_sock *ls, int fd,
                  const struct sockaddr_storage *peer)
{
    struct pt_downstream *ds = w->free_ds;

    if (ds != NULL)
        w->free_ds = ds->dead_next;
    else if ((ds = malloc(sizeof(*ds))) == NULL) {
        close(fd);
        return;
    }
    memset(ds, 0, offsetof(struct pt_downstream, hdrs));
    ds->trace_cfg = NULL;
    ds->io.fd = fd;
    ds->io.cb = ds_on_event;
    ds->w = w;
    ds->port = ls->port;
    ds->timer.cb = ds_on_timer;
    ds->idle_timer.cb = ds_on_idle_timer;
    if (peer->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)peer;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ds->peer_ip, sizeof(ds->peer_ip));
        else
            inet_ntop(AF_INET6, &s6->sin6_addr, ds->peer_ip, sizeof(ds->peer_ip));
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, ds->peer_ip, sizeof(ds->peer_ip));
    }
    if (pt_loop_add(w->loop, &ds->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP) != 0) {
        close(fd);
        ds->dead_next = w->free_ds;
        w->free_ds = ds;
        return;
    }
    {
        struct pt_listener *l = w->snap ? pt_snapshot_find_listener(w->snap, ls->port) : NULL;
        struct pt_listener_stats *lst;
        struct pt_http_stats *hs;
        if (l != NULL && l->tls_ctx != NULL)
            ds->state = PT_DS_TLS_DETECT;
        ds->lst_idx = l ? l->stats_idx : 0;
        ds->http_idx = l ? l->stats_prefix_idx : 0;
        if ((lst = pt_stats_listener(w->st, ds->lst_idx)) != NULL) {
            pt_stats_inc(&lst->downstream_cx_total);
            pt_gauge_inc(&lst->downstream_cx_active);
        }
        if ((hs = pt_ds_http_stats(ds)) != NULL) {
            pt_stats_inc(&hs->downstream_cx_total);
            pt_gauge_inc(&hs->downstream_cx_active);
            pt_gauge_inc(&hs->downstream_cx_http1_active);
        }
    }
    ds->accepted_ms = pt_loop_now_ms(w->loop);
    w->nconns++;
    pt_timer_arm(w->loop, &ds->timer, pt_proxy_limits.header_timeout_ms);
}
