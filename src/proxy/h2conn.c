/* A client connection speaking HTTP/2 (RFC 9113), framed by nghttp2: ALPN "h2" on a TLS
 * listener, or the client preface on a cleartext one (prior knowledge, next to HTTP/1.1 on the
 * same port). It carries many streams; each is a struct pt_stream like an HTTP/1 request, and
 * sees this connection only through struct pt_down_ops, so routing, observe/ and the upstream
 * side do not know the protocol. The socket, TLS, buffers and timers are conn.c's.
 *
 * nghttp2's callbacks only record what happened (a stream's head, its body data, its end, a
 * reset) in the stream's struct pt_h2s; streams hear of it from h2_run_streams() once nghttp2
 * has returned, and what streams give (heads, data, resets) is framed by h2_send() from the
 * worker's ready list, never inside the stream's call. Request bodies are taken from the
 * client's flow-control window only as the upstream takes them (nghttp2_session_consume), so a
 * slow upstream slows its client and no one else. Called by proxy/conn.c. */
#include "proxy/proxy.h"
#include "proxy/session.h"
#include "proxy/h2fields.h"
#include "config/snapshot.h"
#include "model/snapshot-t.h"
#include "core/log.h"
#include "http/h1write.h"
#include "http/reply.h"

#include <nghttp2/nghttp2.h>
#include <stdlib.h>

#define H2_STREAM_WINDOW 65535           /* request body bytes buffered per stream at most */
#define H2_CONN_WINDOW (1024 * 1024)     /* ... and per connection */
#define H2_OUT_SOFT_MAX (64 * 1024)      /* response bytes a stream buffers before it pauses
                                          * (out_limit: less while the client's window is shut) */
#define H2_SEND_BATCH (64 * 1024)        /* framed bytes gathered before a write */
#define H2_RESETS_MAX 200                /* streams reset by the client ... */
#define H2_RESETS_WINDOW_MS 1000         /* ... within this, at most (CVE-2023-44487) */
#define H2_HEAD_BOMB 4                   /* a header block decoding to this many times the head
                                          * limit ends the connection (an HPACK bomb) */
#define H2_MAX_CONTINUATIONS 8           /* CONTINUATION frames after a HEADERS (CVE-2024-27316) */
#define H2_MAX_OUTBOUND_ACK 1000         /* SETTINGS/PING ACKs queued unsent: a flood */
#define H2_RECENT_RESETS 16              /* ids of streams we reset while the client was sending */

/* What the connection's timer is counting (struct pt_h2conn.timer). */
enum h2_timer {
    H2_T_NONE = 0, /* streams are open and no head is in progress: their own timers count */
    H2_T_HEAD,     /* a header block (or the first request) must complete: the header timeout */
    H2_T_IDLE,     /* no stream: the keep-alive idle timeout */
};

struct pt_h2conn {
    nghttp2_session *ng;
    struct pt_conn *c;
    struct pt_stream *streams;  /* open streams (st->h2.next) */
    uint32_t nstreams;
    bool in_recv;               /* inside nghttp2_session_mem_recv */
    bool head_open;             /* a header block began and its END_HEADERS has not come */
    bool served;                /* a request head was complete (the first request is in) */
    uint8_t timer;              /* enum h2_timer: what c->timer counts */
    uint32_t fail_code;         /* a callback's verdict: GOAWAY with this code (0: none) */
    uint64_t hdr_bytes;         /* decoded size of the header block in progress (RFC 9113
                                 * §6.5.2: name + value + 32 per field) */
    int32_t max_sid;            /* highest stream id a client HEADERS opened */
    uint32_t resets;            /* streams reset by the client in the window since ... */
    uint64_t resets_since_ms;
    int32_t recent_rst[H2_RECENT_RESETS]; /* streams we reset before their client's end: a
                                 * late HEADERS (trailers) on one is no error */
    uint8_t recent_pos;
};

static const struct pt_down_ops h2_down_ops;

static struct pt_stream *stream_of(struct pt_h2conn *h, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h->ng, id);
}

/* h2_unlink: <st> leaves its connection's list and nghttp2 forgets it. */
static void h2_unlink(struct pt_h2conn *h, struct pt_stream *st)
{
    struct pt_stream **pp = &h->streams;

    while (*pp != NULL && *pp != st)
        pp = &(*pp)->h2.next;
    if (*pp == st) {
        *pp = st->h2.next;
        h->nstreams--;
    }
    if (!(st->h2.flags & PT_H2S_CLOSED))
        nghttp2_session_set_stream_user_data(h->ng, st->h2.id, NULL);
    if (st->h2.in.len > 0) /* read, never passed on: the connection's window gets it back */
        nghttp2_session_consume_connection(h->ng, st->h2.in.len);
    pt_buf_release(&st->w->bufs, &st->h2.head);
    pt_buf_release(&st->w->bufs, &st->h2.in);
    pt_buf_release(&st->w->bufs, &st->h2.out);
    pt_buf_release(&st->w->bufs, &st->h2.trailers);
    pt_buf_release(&st->w->bufs, &st->h2.req_trailers);
}

/* ---- nghttp2's callbacks: record, never call into a stream -------------------------------- */

/* h2_refuse: a callback's verdict on the client: the connection ends with a GOAWAY of <code>,
 * framed by h2_fail once nghttp2 has returned. Returns what the callback returns. */
static int h2_refuse(struct pt_h2conn *h, uint32_t code)
{
    if (h->fail_code == 0)
        h->fail_code = code;
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* h2_count_reset: a stream was cut short by the client (its RST_STREAM, or a stream error it
 * caused). Rapid reset (CVE-2023-44487): more than H2_RESETS_MAX within H2_RESETS_WINDOW_MS
 * ends the connection (ENHANCE_YOUR_CALM). Returns what the callback returns. */
static int h2_count_reset(struct pt_h2conn *h)
{
    uint64_t now = pt_loop_now_ms(h->c->w->loop);

    if (now - h->resets_since_ms >= H2_RESETS_WINDOW_MS) {
        h->resets_since_ms = now;
        h->resets = 0;
    }
    if (++h->resets > H2_RESETS_MAX)
        return h2_refuse(h, NGHTTP2_ENHANCE_YOUR_CALM);
    return 0;
}

/* h2_known: whether a HEADERS on <id>, not above the highest id opened, may come: on a stream
 * nghttp2 still holds (open, or closed and remembered: it judges), or on one reset by this
 * side not long ago (the client's trailers may have crossed the RST_STREAM). */
static bool h2_known(const struct pt_h2conn *h, int32_t id)
{
    if (nghttp2_session_find_stream(h->ng, id) != NULL)
        return true;
    for (size_t i = 0; i < H2_RECENT_RESETS; i++)
        if (h->recent_rst[i] == id)
            return true;
    return false;
}

/* Every frame's header: tracks the header block in progress (head_open, hdr_bytes), and
 * refuses a HEADERS reopening a closed or skipped stream id (RFC 9113 §5.1.1: PROTOCOL_ERROR;
 * nghttp2 would ignore it). */
static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *user)
{
    struct pt_h2conn *h = user;

    if (hd->type != NGHTTP2_HEADERS && hd->type != NGHTTP2_CONTINUATION) {
        h->head_open = false;
        return 0;
    }
    h->head_open = !(hd->flags & NGHTTP2_FLAG_END_HEADERS);
    if (hd->type == NGHTTP2_CONTINUATION)
        return 0;
    h->hdr_bytes = 0;
    if (!(hd->stream_id & 1))
        return 0; /* nghttp2 refuses it */
    if (hd->stream_id <= h->max_sid && !h2_known(h, hd->stream_id))
        return h2_refuse(h, NGHTTP2_PROTOCOL_ERROR);
    if (hd->stream_id > h->max_sid)
        h->max_sid = hd->stream_id;
    return 0;
}

/* A frame nghttp2 refused: on a stream, the client made it fail (counted as a reset). */
static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *frame, int error, void *user)
{
    return frame->hd.stream_id != 0 ? h2_count_reset(user) : 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct pt_h2conn *h = user;
    struct pt_stream *st;

    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    st = pt_stream_new(h->c);
    if (st == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* no memory: the stream is refused */
    st->h2 = (struct pt_h2s){ .id = frame->hd.stream_id, .next = h->streams };
    st->h2.req.hdrs = st->hdrs;
    st->h2.req.max_hdrs = PT_ARRAY_SIZE(st->hdrs);
    st->rec.http_version = 20;
    h->streams = st;
    h->nstreams++;
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, st);
    return 0;
}

/* head_store: room for <need> more bytes of the request head, up to the head limit. */
static int head_store(struct pt_stream *st, size_t need)
{
    struct pt_buf *b = &st->h2.head;
    size_t cap;

    if (pt_buf_reserve(&st->w->bufs, b) != 0)
        return PT_NOMEM;
    if (b->cap - st->h2.req.used >= need)
        return 0;
    cap = st->h2.req.used + need + 1024;
    if (cap > pt_proxy_limits.max_head_bytes + 1024)
        return PT_TOOBIG;
    b->len = (uint32_t)st->h2.req.used; /* what pt_buf_grow keeps */
    return pt_buf_grow(&st->w->bufs, b, (uint32_t)cap);
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
    struct pt_h2conn *h = user;
    struct pt_stream *st = stream_of(h, frame->hd.stream_id);
    struct pt_str n = pt_str_make((const char *)name, namelen), v = pt_str_make((const char *)value, valuelen);
    int r;

    /* What the block decodes to, kept or not: far beyond the advertised limit (an HPACK bomb
     * references a large table entry thousands of times), the connection ends. */
    h->hdr_bytes += (uint32_t)(namelen + valuelen + 32);
    if (h->hdr_bytes > (uint64_t)H2_HEAD_BOMB * pt_proxy_limits.max_head_bytes)
        return h2_refuse(h, NGHTTP2_ENHANCE_YOUR_CALM);
    if (st == NULL || (st->h2.flags & (PT_H2S_HEAD_BAD | PT_H2S_HEAD_BIG)))
        return 0;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) { /* trailers: kept for an HTTP/2 upstream */
        if (st->h2.req_trailers.len + 8 + namelen + valuelen > pt_proxy_limits.max_head_bytes ||
            st->h2.nreq_trailers >= PT_MAX_HEADERS_DEFAULT)
            return 0; /* beyond the head limit: dropped */
        if (pt_fields_append(&st->w->bufs, &st->h2.req_trailers, n, v) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        st->h2.nreq_trailers++;
        return 0;
    }
    if ((r = head_store(st, namelen + valuelen)) == 0)
        r = pt_h2req_add(&st->h2.req, st->h2.head.base, st->h2.head.cap, n, v);
    if (r == PT_BADMSG)
        st->h2.flags |= PT_H2S_HEAD_BAD;
    else if (r != 0)
        st->h2.flags |= PT_H2S_HEAD_BIG;
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct pt_h2conn *h = user;
    struct pt_stream *st;

    if (frame->hd.type == NGHTTP2_RST_STREAM)
        return h2_count_reset(h);
    if (frame->hd.type == NGHTTP2_HEADERS) {
        h->head_open = false;
        h->served = true;
    }
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    if ((st = stream_of(user, frame->hd.stream_id)) == NULL)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        st->h2.flags |= PT_H2S_DISPATCH; /* the head; a later HEADERS is trailers */
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
            st->h2.flags |= PT_H2S_NO_BODY;
    }
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        st->h2.flags |= PT_H2S_IN_END | PT_H2S_READABLE;
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *user)
{
    struct pt_stream *st = stream_of(user, id);
    struct iovec iov = { (void *)data, len };

    if (st == NULL || (st->flags & PT_SF_REQ_DONE)) {
        nghttp2_session_consume_connection(ng, len); /* nobody reads it: not held against the window */
        if (st != NULL)
            nghttp2_session_consume_stream(ng, id, len);
        return 0;
    }
    if (pt_buf_append_iov(&st->w->bufs, &st->h2.in, &iov, 1, len, 0) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->h2.flags |= PT_H2S_READABLE;
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user)
{
    struct pt_stream *st = stream_of(user, id);

    if (st == NULL)
        return 0;
    st->h2.flags |= PT_H2S_CLOSED;
    if (!(st->h2.flags & PT_H2S_OUT_END_SENT) || error_code != NGHTTP2_NO_ERROR)
        st->h2.flags |= PT_H2S_RESET; /* the client reset it, or a protocol error did */
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct pt_h2conn *h = user;
    struct pt_stream *st;

    if (frame->hd.type == NGHTTP2_RST_STREAM) {
        h->recent_rst[h->recent_pos] = frame->hd.stream_id;
        h->recent_pos = (uint8_t)((h->recent_pos + 1) % H2_RECENT_RESETS);
    }

    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && (st = stream_of(user, frame->hd.stream_id)) != NULL)
        st->h2.flags |= PT_H2S_OUT_END_SENT;
    return 0;
}

/* The response body, framed from the stream's output buffer as the window allows. */
static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *data_flags,
                         nghttp2_data_source *source, void *user)
{
    struct pt_stream *st = stream_of(user, id);
    size_t n;

    if (st == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is gone: reset it */
    n = st->h2.out.len < len ? st->h2.out.len : len;
    if (n > 0) {
        memcpy(buf, pt_buf_data(&st->h2.out), n);
        pt_buf_consume(&st->h2.out, (uint32_t)n);
    }
    if (st->h2.out.len == 0) {
        pt_buf_release(&st->w->bufs, &st->h2.out);
        if (st->h2.flags & PT_H2S_OUT_END) {
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
            if (st->h2.ntrailers > 0 &&
                pt_h2_submit_trailer(ng, st->h2.id, &st->w->bufs, &st->h2.trailers, &st->h2.ntrailers) == 0)
                *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM; /* the trailers end it */
        }
        else if (n == 0)
            return NGHTTP2_ERR_DEFERRED; /* resumed when the stream gives more */
    }
    return (ssize_t)n;
}

/* ---- the connection's work: framing, and telling streams -------------------------------- */

/* h2_finish: the connection is over (its GOAWAY is in c->out, or sent): its streams end and
 * it closes gracefully, so that the client reads the GOAWAY before the close. */
static void h2_finish(struct pt_h2conn *h)
{
    while (h->streams != NULL)
        pt_stream_abort(h->streams); /* each unlinks itself */
    h->timer = H2_T_NONE;
    pt_conn_linger(h->c);
}

/* h2_fail: nghttp2 gave up on the connection (a flood, too many CONTINUATIONs, a callback's
 * verdict): a GOAWAY of <code> is written after what is framed already (c->out holds whole
 * frames), past the ACKs a flood left queued in nghttp2, and the connection ends. */
static void h2_fail(struct pt_h2conn *h, uint32_t code)
{
    struct pt_conn *c = h->c;
    uint32_t last = (uint32_t)nghttp2_session_get_last_proc_stream_id(h->ng);
    uint8_t f[17] = { 0, 0, 8, NGHTTP2_GOAWAY, 0, 0, 0, 0, 0,
                      (uint8_t)(last >> 24), (uint8_t)(last >> 16), (uint8_t)(last >> 8), (uint8_t)last,
                      (uint8_t)(code >> 24), (uint8_t)(code >> 16), (uint8_t)(code >> 8), (uint8_t)code };
    struct iovec iov = { f, sizeof(f) };

    if (pt_buf_append_iov(&c->w->bufs, &c->out, &iov, 1, sizeof(f), 0) != 0 || pt_conn_flush(c) == PT_IO) {
        pt_conn_close(c);
        return;
    }
    h2_finish(h);
}

/* h2_send: frames what nghttp2 has to send into c->out and writes it. False when the
 * connection closed or is closing. */
static bool h2_send(struct pt_h2conn *h)
{
    struct pt_conn *c = h->c;

    for (;;) {
        while (c->out.len < H2_SEND_BATCH) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(h->ng, &data);
            struct iovec iov;
            if (n < 0) {
                pt_conn_close(c);
                return false;
            }
            if (n == 0)
                break;
            iov = (struct iovec){ (void *)data, (size_t)n };
            if (pt_buf_append_iov(&c->w->bufs, &c->out, &iov, 1, (size_t)n, 0) != 0) {
                pt_conn_close(c);
                return false;
            }
        }
        if (c->out.len == 0)
            break;
        int r = pt_conn_flush(c);
        if (r == PT_IO) {
            pt_conn_close(c);
            return false;
        }
        if (r == PT_AGAIN)
            return true; /* again from conn.c when the socket takes more */
    }
    if (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng)) {
        h2_finish(h); /* a GOAWAY went both ways, or a connection error was sent */
        return false;
    }
    return true;
}

/* h2_dispatch: the head of <st> is complete: the stream routes it, or it is refused. */
static void h2_dispatch(struct pt_h2conn *h, struct pt_stream *st)
{
    int r = PT_BADMSG;

    st->h2.flags = (uint16_t)((st->h2.flags & ~PT_H2S_DISPATCH) | PT_H2S_ROUTED);
    if (!(st->h2.flags & (PT_H2S_HEAD_BAD | PT_H2S_HEAD_BIG))) {
        r = head_store(st, (size_t)st->h2.req.cookie_bytes + 2 * st->h2.req.ncookies);
        if (r == 0)
            r = pt_h2req_finish(&st->h2.req, st->h2.head.base, st->h2.head.cap, &st->req);
    }
    if (r != 0) {
        pt_reply_refuse(st, (st->h2.flags & PT_H2S_HEAD_BIG) || r == PT_TOOBIG ? 431 : 400);
        return;
    }
    if (st->h2.flags & PT_H2S_NO_BODY) {
        st->req.content_length = 0; /* the head was all: no body */
    } else if (st->req.content_length < 0) {
        st->req.chunked = true; /* DATA frames until END_STREAM: chunked for an HTTP/1.1 upstream */
    }
    st->h2.flags &= (uint16_t)~PT_H2S_READABLE;
    pt_session_dispatch(st);
}

/* h2_run_streams: each stream hears what happened to it since it last ran. */
static void h2_run_streams(struct pt_h2conn *h)
{
    struct pt_stream *st, *next;

    for (st = h->streams; st != NULL && !(h->c->flags & PT_CF_DEAD); st = next) {
        next = st->h2.next; /* <st> may end in its turn, never another */
        if (st->h2.flags & PT_H2S_RESET) {
            pt_stream_abort(st);
        } else if (st->h2.flags & PT_H2S_DISPATCH) {
            h2_dispatch(h, st);
        } else if ((st->h2.flags & PT_H2S_READABLE) && (st->h2.flags & PT_H2S_ROUTED)) {
            st->h2.flags &= (uint16_t)~PT_H2S_READABLE;
            pt_stream_on_client_readable(st);
        } else if ((st->h2.flags & PT_H2S_NOTIFY) && !h2_down_ops.blocked(st)) {
            st->h2.flags &= (uint16_t)~PT_H2S_NOTIFY;
            pt_stream_on_client_writable(st);
        }
    }
}

/* h2_timer_update: the connection's timer counts what matters now: a header block in
 * progress, or a first request still to come, has the header timeout (from its start); a
 * connection without streams, the keep-alive idle timeout; streams time themselves. */
static void h2_timer_update(struct pt_h2conn *h)
{
    struct pt_conn *c = h->c;
    enum h2_timer want = h->head_open || !h->served ? H2_T_HEAD : h->nstreams == 0 ? H2_T_IDLE : H2_T_NONE;

    if (want == h->timer && (want == H2_T_NONE || pt_timer_armed(&c->timer)))
        return;
    h->timer = (uint8_t)want;
    if (want == H2_T_NONE)
        pt_timer_cancel(&c->timer);
    else
        pt_timer_arm(c->w->loop, &c->timer,
                     want == H2_T_HEAD ? pt_proxy_limits.header_timeout_ms : pt_conn_keepalive_ms(c));
}

/* h2_run: frames what is pending and tells streams, until neither has anything left. */
static void h2_run(struct pt_h2conn *h)
{
    for (int round = 0; round < 8; round++) {
        if (!h2_send(h))
            return;
        h2_run_streams(h);
        if (h->c->flags & PT_CF_DEAD)
            return;
        if (!nghttp2_session_want_write(h->ng) || h->c->out.len > 0)
            break;
    }
    if (nghttp2_session_want_write(h->ng) && h->c->out.len == 0)
        pt_conn_ready(h->c); /* more to do: after the other connections' turn */
    h2_timer_update(h);
}

/* h2_kick: a stream gave something: it is framed from the worker's ready list. */
static void h2_kick(struct pt_stream *st)
{
    pt_conn_ready(st->conn);
}

void pt_h2_on_readable(struct pt_conn *c)
{
    struct pt_h2conn *h = c->h2;

    while (c->flags & PT_CF_RD_PENDING || c->in.len > 0) {
        if (c->in.len == 0) {
            int r = pt_conn_fill(c);
            if (r == 0 || r == PT_IO || r == PT_NOMEM) {
                pt_conn_close(c);
                return;
            }
            if (r == PT_AGAIN)
                break;
        }
        h->in_recv = true;
        ssize_t n = nghttp2_session_mem_recv(h->ng, (const uint8_t *)pt_buf_data(&c->in), c->in.len);
        h->in_recv = false;
        if (n < 0) {
            uint32_t code = h->fail_code;
            if (code == 0)
                code = n == NGHTTP2_ERR_FLOODED || n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS ||
                               n == NGHTTP2_ERR_TOO_MANY_SETTINGS ? NGHTTP2_ENHANCE_YOUR_CALM
                       : n == NGHTTP2_ERR_BAD_CLIENT_MAGIC ? NGHTTP2_PROTOCOL_ERROR
                                                           : NGHTTP2_INTERNAL_ERROR;
            pt_debug("HTTP/2 from %s: %s: GOAWAY %s", c->peer_ip, nghttp2_strerror((int)n),
                     nghttp2_http2_strerror(code));
            h2_fail(h, code);
            return;
        }
        pt_buf_consume(&c->in, (uint32_t)n);
        h2_run_streams(h);
        if (c->flags & PT_CF_DEAD)
            return;
    }
    pt_buf_release(&c->w->bufs, &c->in);
    h2_run(h);
}

void pt_h2_on_writable(struct pt_conn *c)
{
    h2_run(c->h2);
}

void pt_h2_run(struct pt_conn *c)
{
    h2_run(c->h2);
}

/* The header timeout (a header block, or the first request, not complete in time) or the
 * idle timeout: a GOAWAY, then a graceful close. */
void pt_h2_on_timer(struct pt_conn *c)
{
    struct pt_h2conn *h = c->h2;

    if (h->timer == H2_T_HEAD) {
        struct pt_http_stats *hs = pt_conn_http_stats(c);
        if (hs != NULL && h->head_open)
            pt_stats_inc(&hs->downstream_rq_timeout);
    }
    h->timer = H2_T_NONE;
    nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    if (h2_send(h))
        h2_finish(h);
}

void pt_h2_close(struct pt_conn *c)
{
    struct pt_h2conn *h = c->h2;

    while (h->streams != NULL)
        pt_stream_abort(h->streams); /* each unlinks itself */
    nghttp2_session_del(h->ng);
    free(h);
    c->h2 = NULL;
}

/* h2_setup: the worker's nghttp2 callbacks and options, made once and read-only after. */
static int h2_setup(struct pt_worker *w)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;

    if (w->h2cbs != NULL)
        return 0;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return PT_NOMEM;
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cbs);
        return PT_NOMEM;
    }
    nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_option_set_no_auto_window_update(opt, 1); /* consumed as the upstream takes it */
    nghttp2_option_set_max_outbound_ack(opt, H2_MAX_OUTBOUND_ACK); /* a SETTINGS/PING flood: h2_fail */
    nghttp2_option_set_max_continuations(opt, H2_MAX_CONTINUATIONS);
    w->h2cbs = cbs;
    w->h2opt = opt;
    return 0;
}

int pt_h2_start(struct pt_conn *c)
{
    struct pt_h2conn *h;
    struct pt_listener *l = pt_snapshot_find_listener(c->w->snap, c->port);
    nghttp2_settings_entry settings[] = {
        { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
          l != NULL && l->h2_max_streams ? l->h2_max_streams : PT_H2_MAX_STREAMS_DEFAULT },
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW },
        { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, pt_proxy_limits.max_head_bytes },
        { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
    };

    if (h2_setup(c->w) != 0)
        return PT_NOMEM;
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        return PT_NOMEM;
    h->c = c;
    h->resets_since_ms = pt_loop_now_ms(c->w->loop);
    if (nghttp2_session_server_new2(&h->ng, c->w->h2cbs, h, c->w->h2opt) != 0) {
        free(h);
        return PT_NOMEM;
    }
    if (nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, settings, PT_ARRAY_SIZE(settings)) != 0 ||
        nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) != 0) {
        nghttp2_session_del(h->ng);
        free(h);
        return PT_NOMEM;
    }
    c->h2 = h;
    c->down = &h2_down_ops;
    c->state = PT_CONN_H2;
    c->flags &= ~PT_CF_HEAD_TIMER;
    pt_timer_cancel(&c->timer);
    {
        struct pt_http_stats *hs = pt_conn_http_stats(c);
        if (hs != NULL) {
            pt_gauge_dec(&hs->downstream_cx_http1_active);
            pt_gauge_inc(&hs->downstream_cx_http2_active);
            pt_stats_inc(&hs->downstream_cx_http2_total);
        }
    }
    pt_h2_on_readable(c); /* the preface, and what came with it */
    return 0;
}

/* ---- what a stream needs from an HTTP/2 connection (struct pt_down_ops) -------------------- */

static int64_t h2_body(struct pt_stream *st, struct iovec *data, int *n, bool *done)
{
    *n = 0;
    *done = (st->h2.flags & PT_H2S_IN_END) != 0;
    if (st->h2.in.len == 0)
        return 0;
    data[0] = (struct iovec){ pt_buf_data(&st->h2.in), st->h2.in.len };
    *n = 1;
    st->req_body.payload += st->h2.in.len;
    return st->h2.in.len;
}

static void h2_body_consume(struct pt_stream *st, int64_t used)
{
    struct pt_h2conn *h = st->conn->h2;

    pt_buf_consume(&st->h2.in, (uint32_t)used);
    if (st->h2.in.len == 0)
        pt_buf_release(&st->w->bufs, &st->h2.in);
    nghttp2_session_consume(h->ng, st->h2.id, (size_t)used); /* the client may send more */
    h2_kick(st);
}

static int h2_expect_continue(struct pt_stream *st)
{
    static const nghttp2_nv nv[] = { { (uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE } };

    if (nghttp2_submit_headers(st->conn->h2->ng, NGHTTP2_FLAG_NONE, st->h2.id, NULL, nv, 1, NULL) != 0)
        return PT_IO;
    h2_kick(st);
    return 0;
}

/* submit_head: the response head <nv> (<n> fields), with the body read from st->h2.out. */
static int submit_head(struct pt_stream *st, const nghttp2_nv *nv, size_t n, bool body)
{
    nghttp2_data_provider prd = { .source.ptr = st, .read_callback = read_body };

    if (nghttp2_submit_response(st->conn->h2->ng, st->h2.id, nv, n, body ? &prd : NULL) != 0)
        return PT_BADMSG;
    st->h2.flags |= PT_H2S_HEAD_SUBMIT;
    if (!body)
        st->h2.flags |= PT_H2S_OUT_END;
    h2_kick(st);
    return 0;
}

/* nv_lower: a field for nghttp2, its name lower-cased into <buf> (HTTP/2 names are lower case;
 * an HTTP/1.1 upstream may send any case). Returns the bytes of <buf> used, or 0 when full. */
static size_t nv_lower(nghttp2_nv *nv, struct pt_str name, struct pt_str value, char *buf, size_t room)
{
    if (name.len > room)
        return 0;
    for (size_t i = 0; i < name.len; i++)
        buf[i] = pt_lower(name.ptr[i]);
    *nv = (nghttp2_nv){ (uint8_t *)buf, (uint8_t *)value.ptr, name.len, value.len, NGHTTP2_NV_FLAG_NONE };
    return name.len ? name.len : 1;
}

static int h2_head(struct pt_stream *st, const struct pt_resp_head *hd)
{
    struct pt_worker *w = st->w;
    nghttp2_nv nv[PT_ARRAY_SIZE(w->out_hdrs) + 1];
    char status[20], *names = w->scratch;
    size_t n = 0, used = 0;

    if (hd->status < 200 || hd->status > 999 || hd->status == 101)
        return PT_BADMSG; /* no upgrade on HTTP/2: the route never asks for one */
    nv[n++] = (nghttp2_nv){ (uint8_t *)":status", (uint8_t *)status, 7, pt_u64_dec((uint64_t)hd->status, status),
                            NGHTTP2_NV_FLAG_NONE };
    for (size_t i = 0; i < hd->nheaders; i++) {
        size_t k = nv_lower(&nv[n++], hd->headers[i].name, hd->headers[i].value, names + used,
                            sizeof(w->scratch) - used);
        if (k == 0)
            return PT_BADMSG;
        used += k;
    }
    return submit_head(st, nv, n, hd->body && hd->content_length != 0); /* a trailers-only
                                                                           * gRPC answer stays one */
}

/* give: response body bytes into the stream's output buffer. */
static int give(struct pt_stream *st, const struct iovec *iov, int n, bool end)
{
    size_t total = 0;

    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (total > 0 && pt_buf_append_iov(&st->w->bufs, &st->h2.out, iov, n, total, 0) != 0)
        return PT_IO;
    if (end)
        st->h2.flags |= PT_H2S_OUT_END;
    if ((total > 0 || end) && (st->h2.flags & PT_H2S_HEAD_SUBMIT) && !(st->h2.flags & PT_H2S_OUT_END_SENT))
        nghttp2_session_resume_data(st->conn->h2->ng, st->h2.id);
    h2_kick(st);
    return 0;
}

/* out_limit: the response bytes <st> buffers before its upstream pauses: H2_OUT_SOFT_MAX, or
 * one buffer while the client's window (the stream's or the connection's) is shut, so that a
 * client that opens streams and never reads holds a quarter of that per stream. */
static uint32_t out_limit(const struct pt_stream *st)
{
    nghttp2_session *ng = st->conn->h2->ng;

    if (nghttp2_session_get_stream_remote_window_size(ng, st->h2.id) <= 0 ||
        nghttp2_session_get_remote_window_size(ng) <= 0)
        return PT_BUF_SIZE;
    return H2_OUT_SOFT_MAX;
}

static int h2_data(struct pt_stream *st, const struct iovec *iov, int n, bool end)
{
    bool full;

    if (give(st, iov, n, end) != 0)
        return PT_IO;
    full = st->h2.out.len >= PT_BUF_SIZE && st->h2.out.len >= out_limit(st);
    if (full || end) {
        st->h2.flags |= PT_H2S_NOTIFY;
        return full ? PT_AGAIN : 0;
    }
    return 0;
}

/* h2_trailers: the response's trailers, kept until the body's end is framed (read_body). */
static int h2_trailers(struct pt_stream *st, const struct pt_header *h, size_t n)
{
    for (size_t i = 0; i < n && i < PT_MAX_HEADERS_DEFAULT; i++) {
        if (pt_fields_append(&st->w->bufs, &st->h2.trailers, h[i].name, h[i].value) != 0)
            return PT_IO;
        st->h2.ntrailers++;
    }
    return 0;
}

static size_t h2_req_trailers(struct pt_stream *st, struct pt_header *out, size_t max)
{
    return st->h2.nreq_trailers ? pt_fields_read(&st->h2.req_trailers, 0, st->h2.nreq_trailers, out, max) : 0;
}

static bool h2_blocked(const struct pt_stream *st)
{
    return st->h2.out.len > 0 || ((st->h2.flags & PT_H2S_OUT_END) && !(st->h2.flags & PT_H2S_OUT_END_SENT));
}

/* A local reply's head as HTTP/2 fields: the same fields its HTTP/1 head has (http/reply.c),
 * without Connection. */
static int h2_reply(struct pt_stream *st, struct pt_http_reply *r, struct pt_str body)
{
    char status[20], len[20], gs[20], *loc = st->w->scratch;
    size_t loclen = 0, n = 0;
    nghttp2_nv nv[8 + PT_HTTP_REPLY_EXTRA_MAX];
    struct iovec iov = { (void *)body.ptr, body.len };

    if (r->status < 200 || r->status > 999 || r->nextra > PT_HTTP_REPLY_EXTRA_MAX)
        return PT_BADMSG;
    for (size_t i = 0; i < PT_ARRAY_SIZE(r->location); i++) {
        if (loclen + r->location[i].len > sizeof(st->w->scratch))
            return PT_TOOBIG;
        if (r->location[i].len == 0)
            continue; /* an empty piece may have no base at all */
        memcpy(loc + loclen, r->location[i].ptr, r->location[i].len);
        loclen += r->location[i].len;
    }
    if (memchr(loc, '\r', loclen) != NULL || memchr(loc, '\n', loclen) != NULL || memchr(loc, '\0', loclen) != NULL)
        return PT_BADMSG;
#define NV(nm, v, vl) (nghttp2_nv){ (uint8_t *)(nm), (uint8_t *)(v), sizeof(nm) - 1, (vl), NGHTTP2_NV_FLAG_NONE }
    nv[n++] = NV(":status", status, pt_u64_dec((uint64_t)r->status, status));
    if (r->status != 204 && r->status != 304) /* no body, and no length said (RFC 9110 8.6) */
        nv[n++] = NV("content-length", len, pt_u64_dec(r->content_length, len));
    if (r->grpc) { /* trailers-only (http/reply-t.h) */
        if (r->grpc_content_type.len)
            nv[n++] = NV("content-type", r->grpc_content_type.ptr, r->grpc_content_type.len);
        else
            nv[n++] = NV("content-type", "application/grpc", 16);
        nv[n++] = NV("grpc-status", gs, pt_u64_dec((uint64_t)r->grpc_status, gs));
        if (r->grpc_message.len)
            nv[n++] = NV("grpc-message", r->grpc_message.ptr, r->grpc_message.len);
    } else if (r->content_type.len) {
        nv[n++] = NV("content-type", r->content_type.ptr, r->content_type.len);
    } else if (r->text_plain) {
        nv[n++] = NV("content-type", "text/plain", 10);
    }
    if (r->date.len)
        nv[n++] = NV("date", r->date.ptr, r->date.len);
    nv[n++] = NV("server", "envoy", 5);
    if (loclen)
        nv[n++] = NV("location", loc, loclen);
    for (size_t i = 0; i < r->nextra; i++) /* lower-case names (http/cors.h), values as parsed */
        nv[n++] = (nghttp2_nv){ (uint8_t *)r->extra[i].name.ptr, (uint8_t *)r->extra[i].value.ptr,
                                r->extra[i].name.len, r->extra[i].value.len, NGHTTP2_NV_FLAG_NONE };
#undef NV
    if (submit_head(st, nv, n, body.len > 0) != 0)
        return PT_BADMSG;
    st->h2.flags |= PT_H2S_NOTIFY;
    return body.len > 0 ? give(st, &iov, 1, true) : 0;
}

static void h2_end(struct pt_stream *st, int how)
{
    struct pt_h2conn *h = st->conn->h2;

    if (h == NULL) /* the connection is being freed */
        return;
    if (!(st->h2.flags & PT_H2S_CLOSED)) {
        if (how == PT_DOWN_ABORT)
            nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->h2.id, NGHTTP2_INTERNAL_ERROR);
        else if (!(st->h2.flags & PT_H2S_IN_END))
            nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->h2.id, NGHTTP2_NO_ERROR); /* the rest of
                                                                                                 * the body is not wanted */
    }
    h2_unlink(h, st);
    if (!(st->conn->flags & PT_CF_DEAD)) {
        if (st->w->draining && h->nstreams == 0)
            nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ng),
                                  NGHTTP2_NO_ERROR, NULL, 0);
        pt_conn_ready(st->conn);
    }
}

static const struct pt_down_ops h2_down_ops = {
    .body = h2_body,
    .body_consume = h2_body_consume,
    .expect_continue = h2_expect_continue,
    .head = h2_head,
    .data = h2_data,
    .blocked = h2_blocked,
    .trailers = h2_trailers,
    .req_trailers = h2_req_trailers,
    .reply = h2_reply,
    .end = h2_end,
};
