/* A client connection: the socket, TLS (detected on HTTPS listeners, which take cleartext too;
 * ALPN h2 hands the connection to proxy/h2conn.c), the input and output buffers, and HTTP/1.1:
 * reading request heads (or HTTP/2's preface, which also hands it over), parsing each into a new
 * stream (proxy/stream.c), writing what the stream gives through the HTTP/1 protocol table
 * (struct pt_down_ops), keep-alive between requests and the lingering close after the last. It
 * knows nothing of routing or upstreams. One request at a time: pipelined requests wait in the
 * input buffer until the stream before them has ended. What an idle connection holds is struct
 * pt_conn alone; its buffers go back to the worker's pool as soon as they are empty. Called by
 * proxy/worker.c (accept, the ready list), by proxy/stream.c through the protocol table, and by
 * proxy/h2conn.c (fill, flush, linger, close). */
#include "proxy/proxy.h"
#include "proxy/session.h"
#include "proxy/sockio.h"
#include "model/snapshot-t.h" /* struct pt_listen_sock */
#include "config/snapshot.h"
#include "core/log.h"
#include "http/h1.h"
#include "http/h1write.h"
#include "http/body.h"
#include "http/reply.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static void conn_process(struct pt_conn *c);
static const struct pt_down_ops h1_down_ops;

/* pt_conn_close: the connection ends now. When the client stopped taking what is written
 * (PT_CF_STALLED) and some is left, the close is a reset: the kernel would otherwise keep up to a
 * socket buffer per connection (FIN_WAIT1) for as long as the client answers TCP's window
 * probes. Otherwise (a client that took everything, or is still reading) it is orderly. */
void pt_conn_close(struct pt_conn *c)
{
    struct pt_worker *w = c->w;
    struct pt_http_stats *hs = pt_conn_http_stats(c);
    struct pt_listener_stats *ls = pt_stats_listener(w->st, c->lst_idx);
    bool abort;

    if (c->flags & PT_CF_DEAD)
        return;
    c->flags |= PT_CF_DEAD;
    if (c->h2 != NULL) {
        pt_h2_close(c); /* aborts its streams */
        if (hs != NULL)
            pt_gauge_dec(&hs->downstream_cx_http2_active);
    } else {
        if (c->stream != NULL)
            pt_stream_abort(c->stream); /* its end sees DEAD */
        if (hs != NULL)
            pt_gauge_dec(&hs->downstream_cx_http1_active);
    }
    pt_timer_cancel(&c->timer);
    if (hs != NULL) {
        pt_gauge_dec(&hs->downstream_cx_active);
        if (c->ssl != NULL)
            pt_gauge_dec(&hs->downstream_cx_ssl_active);
        pt_stats_inc(&hs->downstream_cx_destroy);
        pt_hist_record_ms(&hs->downstream_cx_length_ms, (double)(pt_loop_now_ms(w->loop) - c->accepted_ms));
    }
    if (ls != NULL)
        pt_gauge_dec(&ls->downstream_cx_active);
    abort = (c->flags & PT_CF_STALLED) && (c->out.len > 0 || pt_sock_unacked(c->io.fd) > 0);
    if (abort)
        pt_sock_reset(c->io.fd);
    pt_sock_close(c->io.fd, c->ssl, !abort);
    c->ssl = NULL;
    pt_buf_release(&w->bufs, &c->in);
    pt_buf_release(&w->bufs, &c->out);
    w->nconns--;
    if (!(c->flags & PT_CF_READY)) { /* else the ready list lets it go */
        c->next = w->dead_conns;
        w->dead_conns = c;
    }
}

void pt_conn_free_dead(struct pt_worker *w)
{
    while (w->dead_conns != NULL) {
        struct pt_conn *c = w->dead_conns;
        w->dead_conns = c->next;
        c->next = w->free_conns;
        w->free_conns = c;
    }
}

int pt_conn_flush(struct pt_conn *c)
{
    while (c->out.len > 0) {
        struct iovec iov = { pt_buf_data(&c->out), c->out.len };
        ssize_t n = pt_sock_writev(c->io.fd, c->ssl, &iov, 1, NULL, 0);
        if (n < 0)
            return PT_IO;
        if (n == 0) {
            c->flags |= PT_CF_WR_BLOCKED;
            return PT_AGAIN;
        }
        pt_buf_consume(&c->out, (uint32_t)n);
    }
    pt_buf_release(&c->w->bufs, &c->out);
    c->flags &= ~PT_CF_WR_BLOCKED;
    return 0;
}

int pt_conn_send(struct pt_conn *c, const struct iovec *iov, int iovcnt)
{
    struct pt_http_stats *hs = pt_conn_http_stats(c);
    size_t total = 0, done = 0;
    ssize_t n;

    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (hs != NULL)
        pt_stats_add(&hs->downstream_cx_tx_bytes_total, total); /* handed to the socket */
    if (total == 0)
        return 0;
    if (c->out.len == 0) {
        n = pt_sock_writev(c->io.fd, c->ssl, iov, iovcnt, c->w->tls_scratch, sizeof(c->w->tls_scratch));
        if (n < 0)
            return PT_IO;
        if ((size_t)n == total)
            return 0;
        done = (size_t)n;
    }
    if (pt_buf_append_iov(&c->w->bufs, &c->out, iov, iovcnt, total, done) != 0)
        return PT_IO;
    c->flags |= PT_CF_WR_BLOCKED;
    return PT_AGAIN;
}

int pt_conn_fill(struct pt_conn *c)
{
    uint32_t room;
    bool drained;
    int n;

    if (pt_buf_reserve(&c->w->bufs, &c->in) != 0)
        return PT_NOMEM;
    if (pt_buf_room(&c->in) == 0)
        pt_buf_compact(&c->in); /* a stream reads its body only once its head was used */
    room = pt_buf_room(&c->in);
    if (room == 0)
        return PT_AGAIN;
    n = pt_sock_read(c->io.fd, c->ssl, c->in.base + c->in.off + c->in.len, room,
                     c->flags & PT_CF_PEER_CLOSED, &drained);
    if (drained)
        c->flags &= ~PT_CF_RD_PENDING;
    if (n > 0) {
        struct pt_http_stats *hs = pt_conn_http_stats(c);
        c->in.len += (uint32_t)n;
        if (hs != NULL)
            pt_stats_add(&hs->downstream_cx_rx_bytes_total, (uint64_t)n);
    }
    return n;
}

/* Reads and drops what the client still sends while the connection lingers. Returns true
 * when the client has closed its side (or the socket failed). */
static bool conn_drain(struct pt_conn *c)
{
    char sink[4096];
    bool drained = false;
    int r = 1;

    while (!drained && (r = pt_sock_read(c->io.fd, c->ssl, sink, sizeof(sink),
                                         c->flags & PT_CF_PEER_CLOSED, &drained)) > 0)
        ;
    return r == 0 || r == PT_IO;
}

/* Closes gracefully once the last response is out: our side of the stream ends, and what the
 * client still sends is read and dropped for a moment, so that closing with unread data does
 * not reset the connection and destroy the response before the client has read it. */
static void conn_linger(struct pt_conn *c)
{
    c->state = PT_CONN_CLOSING;
    if (c->out.len > 0)
        return; /* again when the output is flushed */
    pt_sock_shutdown_write(c->io.fd, c->ssl);
    if (conn_drain(c)) {
        pt_conn_close(c);
        return;
    }
    pt_timer_arm(c->w->loop, &c->timer, PT_LINGER_MS);
}

void pt_conn_linger(struct pt_conn *c)
{
    if (c->flags & PT_CF_DEAD)
        return;
    pt_timer_arm(c->w->loop, &c->timer, PT_LINGER_MS); /* bounds the wait for c->out too */
    conn_linger(c);
}

void pt_conn_ready(struct pt_conn *c)
{
    if (c->flags & PT_CF_READY)
        return;
    c->flags |= PT_CF_READY;
    c->next = c->w->ready_conns;
    c->w->ready_conns = c;
}

void pt_conn_run_ready(struct pt_worker *w)
{
    while (w->ready_conns != NULL) {
        struct pt_conn *c = w->ready_conns;
        w->ready_conns = c->next;
        c->flags &= ~PT_CF_READY;
        if (c->flags & PT_CF_DEAD) {
            c->next = w->dead_conns;
            w->dead_conns = c;
        } else if (c->state == PT_CONN_HEAD) {
            conn_process(c);
        } else if (c->state == PT_CONN_H2) {
            pt_h2_run(c);
        }
    }
}

void pt_conn_stream_end(struct pt_conn *c, bool close_after)
{
    struct pt_worker *w = c->w;

    c->stream = NULL;
    if (c->flags & PT_CF_DEAD)
        return;
    c->head_scanned = 0;
    if (close_after || w->draining)
        c->flags |= PT_CF_CLOSE_AFTER;
    if (c->flags & PT_CF_CLOSE_AFTER) {
        conn_linger(c);
        return;
    }
    c->state = PT_CONN_HEAD;
    if (c->in.len == 0)
        pt_buf_release(&w->bufs, &c->in);
    pt_timer_arm(w->loop, &c->timer, pt_conn_keepalive_ms(c));
    if (c->in.len > 0 || (c->flags & PT_CF_RD_PENDING))
        pt_conn_ready(c);
}

/* conn_start_stream: the head of <head_len> bytes at the front of c->in (<= 0: bytes that cannot
 * be a head) becomes a stream's request: parsed into the stream (its slices point into c->in,
 * which is not compacted before the stream has read its body), then routed, or refused. */
static void conn_start_stream(struct pt_conn *c, int head_len)
{
    struct pt_h1_limits lim = { pt_proxy_limits.max_head_bytes, pt_proxy_limits.max_headers };
    struct pt_stream *st = pt_stream_new(c);
    int r;

    if (st == NULL) {
        pt_conn_close(c); /* no memory for a request: shed it */
        return;
    }
    c->stream = st;
    c->state = PT_CONN_STREAM;
    if (head_len <= 0) {
        pt_reply_bad_request(st); /* a head that cannot be one */
        return;
    }
    r = pt_h1_parse_request(pt_buf_data(&c->in), (size_t)head_len, &st->req, st->hdrs,
                            PT_ARRAY_SIZE(st->hdrs), &lim);
    if (r <= 0) {
        pt_reply_refuse(st, r == PT_NOTSUP ? 501 : 400);
        return;
    }
    pt_buf_consume(&c->in, (uint32_t)head_len);
    if (!st->req.keep_alive)
        st->flags |= PT_SF_CLOSE_AFTER;
    pt_session_dispatch(st);
}

/* conn_preface: whether c->in starts with HTTP/2's client preface (RFC 9113 §3.4: prior
 * knowledge on a cleartext port, Envoy's AUTO codec): 1 when it does, -1 when it may (a part
 * of it), 0 when it is HTTP/1. */
static int conn_preface(const struct pt_conn *c)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    size_t n = c->in.len < sizeof(preface) - 1 ? c->in.len : sizeof(preface) - 1;

    if (memcmp(pt_buf_data(&c->in), preface, n) != 0)
        return 0;
    return n == sizeof(preface) - 1 ? 1 : -1;
}

/* Reads request heads and starts a stream for each, until one is in progress or the socket
 * is drained. */
static void conn_process(struct pt_conn *c)
{
    struct pt_h1_limits lim = { pt_proxy_limits.max_head_bytes, pt_proxy_limits.max_headers };

    while (c->state == PT_CONN_HEAD) {
        size_t scanned = c->head_scanned;
        int r = PT_AGAIN;

        if (c->in.len > 0 && pt_buf_data(&c->in)[0] == 'P' && c->ssl == NULL) {
            int p = conn_preface(c);
            if (p != 0) {
                if (p > 0 && pt_h2_start(c) != 0)
                    pt_conn_close(c);
                if (p > 0)
                    return;
                goto read_more; /* a part of the preface: more is needed */
            }
        }
        if (c->in.len > 0) {
            r = pt_h1_find_head_end(pt_buf_data(&c->in), c->in.len, &scanned, &lim);
            c->head_scanned = (uint32_t)scanned;
        }
        if (r != PT_AGAIN) {
            pt_timer_cancel(&c->timer);
            c->flags &= ~PT_CF_HEAD_TIMER;
            c->head_scanned = 0;
            conn_start_stream(c, r); /* the stream ends it, or it is in progress */
            return;
        }
    read_more:
        if (!(c->flags & PT_CF_RD_PENDING))
            break;
        if (pt_buf_reserve(&c->w->bufs, &c->in) != 0) {
            pt_conn_close(c);
            return;
        }
        if (pt_buf_room(&c->in) == 0) {
            pt_buf_compact(&c->in);
            if (pt_buf_room(&c->in) == 0 &&
                pt_buf_grow(&c->w->bufs, &c->in, pt_proxy_limits.max_head_bytes + 1024) != 0) {
                pt_conn_close(c);
                return;
            }
        }
        r = pt_conn_fill(c);
        if (r == 0 || r == PT_IO || r == PT_NOMEM) {
            pt_conn_close(c);
            return;
        }
        if (r == PT_AGAIN)
            break;
    }
    if (c->in.len == 0) {
        pt_buf_release(&c->w->bufs, &c->in);
        if (!pt_timer_armed(&c->timer))
            pt_timer_arm(c->w->loop, &c->timer, pt_conn_keepalive_ms(c));
    } else if (!(c->flags & PT_CF_HEAD_TIMER)) {
        /* The whole head must arrive within the header timeout of its first byte. */
        c->flags |= PT_CF_HEAD_TIMER;
        pt_timer_arm(c->w->loop, &c->timer, pt_proxy_limits.header_timeout_ms);
    }
}

/* Drives the server side of a TLS handshake. Returns true once the session is up. */
static bool conn_handshake(struct pt_conn *c)
{
    int r;

    ERR_clear_error();
    r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        const unsigned char *alpn;
        unsigned int alpn_len;
        c->state = PT_CONN_HEAD;
        c->flags |= PT_CF_RD_PENDING; /* records may already wait behind the handshake */
        SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
        if (alpn_len == 2 && memcmp(alpn, "h2", 2) == 0) {
            if (pt_h2_start(c) != 0)
                pt_conn_close(c);
            return false; /* the HTTP/2 connection reads on its own */
        }
        return true;
    }
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return false;
    default:
        pt_debug("TLS handshake from %s failed", c->peer_ip);
        pt_conn_close(c);
        return false;
    }
}

/* An HTTPS listener takes TLS and cleartext on one port, as Emissary does: a TLS handshake
 * starts with a handshake record (0x16). One peek per connection decides. */
static bool conn_detect_tls(struct pt_conn *c)
{
    struct pt_listener *l = pt_snapshot_find_listener(c->w->snap, c->port);
    struct pt_http_stats *hs;
    unsigned char b;
    int n = pt_sock_peek_byte(c->io.fd, &b);

    if (n == 0 || n == PT_IO || l == NULL) {
        pt_conn_close(c);
        return false;
    }
    if (n == PT_AGAIN)
        return false;
    if (b != 0x16 || l->tls_ctx == NULL) {
        c->state = PT_CONN_HEAD;
        return true;
    }
    c->ssl = SSL_new(l->tls_ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->io.fd) != 1) {
        pt_conn_close(c);
        return false;
    }
    SSL_set_accept_state(c->ssl);
    c->flags |= PT_CF_TLS;
    if ((hs = pt_conn_http_stats(c)) != NULL)
        pt_gauge_inc(&hs->downstream_cx_ssl_active);
    c->state = PT_CONN_HANDSHAKE;
    return conn_handshake(c);
}

/* The connection's timer: no head in time, idle too long, or the linger is over. */
/* linger_again: the linger ran out with bytes the client has not taken. The first time, one
 * more linger tells a client that reads (it closes in order: the kernel delivers the rest) from
 * one that stopped (PT_CF_STALLED). Returns true when it lingers again. */
static bool linger_again(struct pt_conn *c)
{
    uint32_t unsent = c->out.len + pt_sock_unacked(c->io.fd);

    if (unsent == 0)
        return false;
    if (!(c->flags & PT_CF_LINGER_AGAIN)) {
        c->flags |= PT_CF_LINGER_AGAIN;
        c->linger_unsent = unsent;
        pt_timer_arm(c->w->loop, &c->timer, PT_LINGER_MS);
        return true;
    }
    if (unsent >= c->linger_unsent)
        c->flags |= PT_CF_STALLED;
    return false;
}

static void conn_on_timer(struct pt_timer *t)
{
    struct pt_conn *c = pt_container_of(t, struct pt_conn, timer);

    if (c->state == PT_CONN_HEAD && c->in.len > 0) { /* a head that never completed */
        struct pt_http_stats *hs = pt_conn_http_stats(c);
        if (hs != NULL)
            pt_stats_inc(&hs->downstream_rq_timeout);
    }
    if (c->state == PT_CONN_CLOSING && linger_again(c))
        return;
    if (c->state == PT_CONN_H2)
        pt_h2_on_timer(c); /* a GOAWAY first */
    else
        pt_conn_close(c);
}

/* The output drained: a lingering connection closes, a stream may go on. */
static void conn_on_writable(struct pt_conn *c)
{
    int r = pt_conn_flush(c);

    if (r == PT_IO) {
        pt_conn_close(c);
        return;
    }
    if (r != 0)
        return;
    if (c->state == PT_CONN_CLOSING)
        conn_linger(c);
    else if (c->state == PT_CONN_H2)
        pt_h2_on_writable(c);
    else if (c->stream != NULL)
        pt_stream_on_client_writable(c->stream);
}

static void conn_on_readable(struct pt_conn *c, uint32_t events)
{
    switch (c->state) {
    case PT_CONN_HEAD:
        conn_process(c);
        if (c->state == PT_CONN_HEAD && !(c->flags & PT_CF_DEAD) && c->in.len == 0 && (events & EPOLLRDHUP))
            pt_conn_close(c); /* the client closed between requests */
        break;
    case PT_CONN_STREAM:
        pt_stream_on_client_readable(c->stream);
        break;
    case PT_CONN_H2:
        pt_h2_on_readable(c);
        break;
    case PT_CONN_CLOSING:
        if (conn_drain(c) && c->out.len == 0)
            pt_conn_close(c); /* the client is done too */
        break;
    case PT_CONN_TLS_DETECT:
    case PT_CONN_HANDSHAKE:
        break;
    }
}

static void conn_on_event(struct pt_io *io, uint32_t events)
{
    struct pt_conn *c = pt_container_of(io, struct pt_conn, io);

    if (c->flags & PT_CF_DEAD)
        return;
    if (events & (EPOLLERR | EPOLLHUP)) {
        pt_conn_close(c);
        return;
    }
    if ((events & EPOLLOUT) && (c->flags & PT_CF_WR_BLOCKED)) {
        conn_on_writable(c);
        if (c->flags & PT_CF_DEAD)
            return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP))
        c->flags |= PT_CF_RD_PENDING;
    if (events & EPOLLRDHUP)
        c->flags |= PT_CF_PEER_CLOSED; /* sticky: the FIN's edge is reported once */
    if (c->state == PT_CONN_TLS_DETECT && !conn_detect_tls(c))
        return;
    if (c->state == PT_CONN_HANDSHAKE && !conn_handshake(c))
        return;
    if (c->flags & PT_CF_RD_PENDING)
        conn_on_readable(c, events);
}

/* ---- what a stream needs from an HTTP/1 connection (struct pt_down_ops) -------------------- */

static int64_t h1_body(struct pt_stream *st, struct iovec *data, int *n, bool *done)
{
    struct pt_conn *c = st->conn;
    int64_t used;

    *n = 0;
    *done = false;
    while (c->in.len == 0) {
        int r;
        if (!(c->flags & PT_CF_RD_PENDING))
            return 0;
        r = pt_conn_fill(c);
        if (r == 0 || r == PT_IO || r == PT_NOMEM)
            return PT_IO; /* the client went away mid-body */
        if (r == PT_AGAIN)
            return 0;
    }
    used = pt_body_take(&st->req_body, pt_buf_data(&c->in), c->in.len, false, data, n, done);
    return used < 0 ? PT_BADMSG : used;
}

static void h1_body_consume(struct pt_stream *st, int64_t used)
{
    pt_buf_consume(&st->conn->in, (uint32_t)used);
}

/* The interim answer, unless the client sent its body without waiting for it. */
static int h1_expect_continue(struct pt_stream *st)
{
    struct iovec iov = { (void *)PT_H1_CONTINUE, sizeof(PT_H1_CONTINUE) - 1 };

    if (st->conn->in.len > 0)
        return 0;
    return pt_conn_send(st->conn, &iov, 1) == PT_IO ? PT_IO : 0;
}

/* The head is written into the worker's scratch area (st->resp_head_len bytes) and leaves with
 * the first body bytes, in one write. The body is framed for this client: as it came, chunked
 * again with our sizes when its length is not known, or ended by the close for HTTP/1.0 or when
 * the upstream's was. */
static int h1_head(struct pt_stream *st, const struct pt_resp_head *h)
{
    struct pt_h1w b;
    size_t len;

    st->resp_chunked = false;
    if (!h->body || h->status == 101 || h->content_length >= 0) {
        /* as it is */
    } else if (h->close_delimited || st->req.minor_version == 0) {
        st->flags |= PT_SF_CLOSE_AFTER;
    } else {
        st->resp_chunked = true;
    }
    if (st->w->draining)
        st->flags |= PT_SF_CLOSE_AFTER;
    pt_h1w_init(&b, st->w->scratch, sizeof(st->w->scratch));
    pt_h1w_status_line(&b, h->status, h->reason);
    for (size_t i = 0; i < h->nheaders; i++)
        pt_h1w_header(&b, h->headers[i].name, h->headers[i].value);
    if (st->resp_chunked)
        pt_h1w_framing(&b, true, -1);
    if (h->status == 101) {
        pt_h1w_header(&b, PT_STR_LIT("connection"), PT_STR_LIT("upgrade"));
        pt_h1w_header(&b, PT_STR_LIT("upgrade"), h->upgrade);
    } else if (st->flags & PT_SF_CLOSE_AFTER) {
        pt_h1w_header(&b, PT_STR_LIT("connection"), PT_STR_LIT("close"));
    } else if (st->req.minor_version == 0) {
        pt_h1w_header(&b, PT_STR_LIT("connection"), PT_STR_LIT("keep-alive"));
    }
    len = pt_h1w_end(&b);
    if (len == 0)
        return PT_BADMSG;
    st->resp_head_len = (uint32_t)len;
    return 0;
}

static int h1_data(struct pt_stream *st, const struct iovec *data, int n, bool end)
{
    struct pt_body_frame f; /* not zeroed: only its first f.n iovecs are read */

    f.n = 0;
    if (st->resp_head_len) {
        f.iov[f.n++] = (struct iovec){ st->w->scratch, st->resp_head_len };
        st->resp_head_len = 0;
    }
    pt_body_frame(&f, data, n, st->resp_chunked, end);
    return f.n > 0 ? pt_conn_send(st->conn, f.iov, f.n) : 0;
}

static bool h1_blocked(const struct pt_stream *st)
{
    return st->conn->out.len > 0;
}

static int h1_reply(struct pt_stream *st, struct pt_http_reply *r, struct pt_str body)
{
    struct pt_worker *w = st->w;
    int n;

    if (st->flags & PT_SF_CLOSE_AFTER)
        r->connection = PT_HTTP_REPLY_CONN_CLOSE;
    else if (st->req.minor_version == 0)
        r->connection = PT_HTTP_REPLY_CONN_KEEP_ALIVE; /* a 1.0 client that asked for it */
    else
        r->connection = PT_HTTP_REPLY_CONN_NONE;
    n = pt_http_reply_head(r, w->scratch, sizeof(w->scratch));
    if (n <= 0)
        return n == 0 ? PT_TOOBIG : n;
    struct iovec iov[2] = { { w->scratch, (size_t)n }, { (void *)body.ptr, body.len } };
    return pt_conn_send(st->conn, iov, body.len ? 2 : 1);
}

static void h1_end(struct pt_stream *st, int how)
{
    struct pt_conn *c = st->conn;

    if (how == PT_DOWN_ABORT) {
        c->stream = NULL;
        pt_conn_close(c); /* a response cut short: only the close tells the client */
    } else {
        pt_conn_stream_end(c, how == PT_DOWN_CLOSE);
    }
}

static const struct pt_down_ops h1_down_ops = {
    .body = h1_body,
    .body_consume = h1_body_consume,
    .expect_continue = h1_expect_continue,
    .head = h1_head,
    .data = h1_data,
    .blocked = h1_blocked,
    .reply = h1_reply,
    .end = h1_end,
};

/* internal_v4: Envoy's internal IPv4 addresses: RFC 1918 and 127.0.0.1 (only that one). */
static bool internal_v4(const uint8_t *a)
{
    return a[0] == 10 || (a[0] == 172 && (a[1] & 0xf0) == 16) || (a[0] == 192 && a[1] == 168) ||
           (a[0] == 127 && a[1] == 0 && a[2] == 0 && a[3] == 1);
}

/* peer_text: <peer>'s address as text into c->peer_ip, and its port; PT_CF_PEER_INTERNAL when
 * Envoy would count it internal (an IPv4-mapped address as the IPv4 one). */
static void peer_text(struct pt_conn *c, const struct sockaddr_storage *peer)
{
    bool internal;

    if (peer->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)peer;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], c->peer_ip, sizeof(c->peer_ip));
            internal = internal_v4(&s6->sin6_addr.s6_addr[12]);
        } else {
            inet_ntop(AF_INET6, &s6->sin6_addr, c->peer_ip, sizeof(c->peer_ip));
            internal = s6->sin6_addr.s6_addr[0] == 0xfd || IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
        }
        c->peer_port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)peer;
        inet_ntop(AF_INET, &s4->sin_addr, c->peer_ip, sizeof(c->peer_ip));
        internal = internal_v4((const uint8_t *)&s4->sin_addr);
        c->peer_port = ntohs(s4->sin_port);
    }
    if (internal)
        c->flags |= PT_CF_PEER_INTERNAL;
    c->peer_ip_len = (uint8_t)strlen(c->peer_ip); /* once: every request logs and forwards it */
}

void pt_conn_accept(struct pt_worker *w, struct pt_listen_sock *ls, int fd,
                    const struct sockaddr_storage *peer)
{
    struct pt_conn *c = w->free_conns;
    struct pt_listener *l = w->snap ? pt_snapshot_find_listener(w->snap, ls->port) : NULL;
    struct pt_listener_stats *lst;
    struct pt_http_stats *hs;

    if (c != NULL)
        w->free_conns = c->next;
    else if ((c = malloc(sizeof(*c))) == NULL) {
        pt_sock_close(fd, NULL, false);
        return;
    }
    *c = (struct pt_conn){ .io = { fd, conn_on_event }, .w = w, .down = &h1_down_ops, .port = (uint16_t)ls->port };
    c->timer.cb = conn_on_timer;
    peer_text(c, peer);
    if (pt_loop_add(w->loop, &c->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP) != 0) {
        pt_sock_close(fd, NULL, false);
        c->next = w->free_conns;
        w->free_conns = c;
        return;
    }
    if (l != NULL && l->tls_ctx != NULL)
        c->state = PT_CONN_TLS_DETECT;
    c->lst_idx = l ? l->stats_idx : 0;
    c->http_idx = l ? l->stats_prefix_idx : 0;
    if ((lst = pt_stats_listener(w->st, c->lst_idx)) != NULL) {
        pt_stats_inc(&lst->downstream_cx_total);
        pt_gauge_inc(&lst->downstream_cx_active);
    }
    if ((hs = pt_conn_http_stats(c)) != NULL) {
        pt_stats_inc(&hs->downstream_cx_total);
        pt_gauge_inc(&hs->downstream_cx_active);
        pt_gauge_inc(&hs->downstream_cx_http1_active);
    }
    c->accepted_ms = pt_loop_now_ms(w->loop);
    w->nconns++;
    pt_timer_arm(w->loop, &c->timer, pt_proxy_limits.header_timeout_ms);
}
