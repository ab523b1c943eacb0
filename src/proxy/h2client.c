/* The upstream HTTP/2 client (RFC 9113), framed by nghttp2: what a cluster of a grpc Mapping
 * speaks. An exchange (struct pt_hc) is a stream (struct pt_h2x) on one of the worker's HTTP/2
 * connections to its endpoint (struct pt_h2up, kept in the endpoint's pool entry); a connection
 * carries streams up to the peer's SETTINGS_MAX_CONCURRENT_STREAMS, and the next exchange opens
 * another one when all are full. The socket, TLS, connect and its timeout are upstream.c's (the
 * connection is the owner of one struct pt_upstream for its whole life); h2c is prior knowledge,
 * TLS must negotiate ALPN "h2" (checked when the handshake ends: a connection failure, UF,
 * otherwise).
 *
 * As in proxy/h2conn.c, nghttp2's callbacks only record what happened to a stream (its head,
 * data, trailers, end, a reset), copying the field bytes into the stream's own storage; owners
 * hear of it from h2up_run(), after nghttp2 returned, and frames are written from the worker's
 * ready list, never inside an owner's call. The request head is the HTTP/1.1 head the proxy
 * wrote, read as HTTP/2 fields (http/h2head.h). Response data is taken from the flow-control
 * window only as the owner takes it, so a slow client slows its stream and no other. Idle
 * connections close after the upstream idle timeout, too old ones once their last stream ends,
 * and no more idle ones are kept per endpoint than the pool allows. Called through
 * proxy/httpclient.c (pt_hc_start and the calls after it) and by the worker's ready list. */
#include "proxy/httpclient.h"
#include "proxy/proxy.h"
#include "core/log.h"
#include "http/h2head.h"
#include "proxy/h2fields.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H2UP_MAX_STREAMS 1000            /* streams per connection, whatever the peer allows */
#define H2UP_STREAM_WINDOW 65535         /* response bytes buffered per stream at most */
#define H2UP_CONN_WINDOW (1024 * 1024)   /* ... and per connection */
#define H2UP_OUT_SOFT_MAX (64 * 1024)    /* request bytes a stream holds before PT_AGAIN */

/* Connection flags. */
#define H2U_ESTABLISHED 0x01 /* connected (TLS: ALPN h2 checked): frames may go */
#define H2U_QUEUED      0x02 /* on the worker's ready list */
#define H2U_DEAD        0x04 /* closed: freed from the ready list */
#define H2U_NO_NEW      0x08 /* takes no new stream (GOAWAY, too old): closes when idle */
#define H2U_RUNNING     0x10 /* inside h2up_run_streams */

/* Stream flags. */
#define H2X_SUBMITTED   0x0001 /* the request HEADERS were submitted (id set) */
#define H2X_OUT_END     0x0002 /* the request body ended (the owner said so) */
#define H2X_DEFERRED    0x0004 /* nghttp2 waits for request data (resume it) */
#define H2X_DRAINED     0x0008 /* the request data the owner gave is framed: tell it */
#define H2X_HEAD        0x0010 /* a final response head arrived, not yet reported */
#define H2X_HEAD_DONE   0x0020 /* ... reported (on_head) */
#define H2X_TRAILERS    0x0040 /* trailers arrived */
#define H2X_IN_END      0x0080 /* END_STREAM arrived */
#define H2X_CLOSED      0x0100 /* nghttp2 closed the stream (error_code says how) */
#define H2X_BAD         0x0200 /* the response head was malformed or too large */
#define H2X_END_GIVEN   0x0400 /* the owner heard the end (on_body end) */

struct pt_h2up {
    struct pt_upstream *up;      /* socket, TLS, connect timer (upstream.c); NULL once closed */
    struct pt_worker *w;
    struct pt_pool_entry *pool;  /* its endpoint's entry (pool->h2_conns) */
    nghttp2_session *ng;
    struct pt_h2x *xs;           /* its streams */
    struct pt_h2x *run_next;     /* the stream h2up_run_streams visits next */
    struct pt_h2up *pool_next;   /* the endpoint's connections */
    struct pt_h2up *ready_next;  /* the worker's ready list */
    struct pt_timer timer;       /* idle */
    uint64_t created_ms;
    uint32_t nstreams;
    uint32_t cst_idx;            /* stats: the cluster it was opened for */
    uint32_t flags;              /* H2U_* */
    bool tls;
};

struct pt_h2x {
    struct pt_hc *hc;            /* its owner's exchange */
    struct pt_h2up *conn;        /* NULL once its connection is gone */
    struct pt_worker *w;
    struct pt_h2x *next;         /* the connection's streams */
    int32_t id;
    uint32_t flags;              /* H2X_* */
    uint32_t error_code;         /* how nghttp2 closed it */
    int status;
    uint32_t nfields, head_nfields, head_bytes; /* fields stored; of them, the head's */
    struct pt_buf fields;        /* copies of the response head's then the trailers' fields:
                                  * [u32 name length][u32 value length][name][value]... */
    struct pt_buf in;            /* response data not yet given to the owner */
    struct pt_buf out;           /* request body not yet framed */
    struct pt_buf trailers;      /* the request's trailers (core/buf.h fields), sent at its end */
    uint32_t ntrailers;
};

static const struct pt_up_ops h2up_up_ops;
static void h2up_queue(struct pt_h2up *h);

/* ---- streams ----------------------------------------------------------------------------- */

/* x_free: the stream's buffers go back to the pool, the stream to the worker's free list
 * (a stream per proxied gRPC request, auth check or rate-limit call: none is malloc'd in the
 * steady state). */
static void x_free(struct pt_worker *w, struct pt_h2x *x)
{
    x->w = NULL;
    pt_buf_release(&w->bufs, &x->fields);
    pt_buf_release(&w->bufs, &x->in);
    pt_buf_release(&w->bufs, &x->out);
    pt_buf_release(&w->bufs, &x->trailers);
    x->next = w->free_h2x;
    w->free_h2x = x;
}

/* x_unlink: <x> leaves its connection (nghttp2 forgets it too). */
static void x_unlink(struct pt_h2up *h, struct pt_h2x *x)
{
    struct pt_h2x **pp = &h->xs;

    while (*pp != NULL && *pp != x)
        pp = &(*pp)->next;
    if (*pp == x)
        *pp = x->next;
    if (h->run_next == x)
        h->run_next = x->next;
    h->nstreams--;
    if (x->id > 0 && !(x->flags & H2X_CLOSED))
        nghttp2_session_set_stream_user_data(h->ng, x->id, NULL);
    x->conn = NULL;
}

/* ---- nghttp2's callbacks: record, never call an owner ------------------------------------ */

static struct pt_h2x *x_of(struct pt_h2up *h, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h->ng, id);
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
    struct pt_h2up *h = user;
    struct pt_h2x *x = x_of(h, frame->hd.stream_id);

    if (x == NULL || (x->flags & H2X_BAD))
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        x->status = 0;
        for (size_t i = 0; i < valuelen && i < 4; i++)
            x->status = x->status * 10 + (value[i] - '0');
        if (valuelen != 3 || x->status < 100 || x->status > 999)
            x->flags |= H2X_BAD;
        return 0;
    }
    if (namelen > 0 && name[0] == ':')
        return 0; /* nghttp2 let it through: no other pseudo-field goes on */
    if (x->fields.len + 8 + namelen + valuelen > pt_proxy_limits.max_head_bytes ||
        x->nfields - x->head_nfields >= PT_MAX_HEADERS_DEFAULT ||
        pt_fields_append(&h->w->bufs, &x->fields, pt_str_make((const char *)name, namelen),
                         pt_str_make((const char *)value, valuelen)) != 0) {
        x->flags |= H2X_BAD;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
    }
    x->nfields++;
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct pt_h2up *h = user;
    struct pt_h2x *x;

    if (frame->hd.type == NGHTTP2_GOAWAY) {
        h->flags |= H2U_NO_NEW; /* the streams it did not take are closed (REFUSED_STREAM) */
        return 0;
    }
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        (x = x_of(h, frame->hd.stream_id)) == NULL)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS) {
        if (x->flags & (H2X_HEAD | H2X_HEAD_DONE)) {
            x->flags |= H2X_TRAILERS;
        } else if (x->status >= 200) {
            x->flags |= H2X_HEAD;
            x->head_nfields = x->nfields;
            x->head_bytes = x->fields.len;
        } else if (!(x->flags & H2X_BAD)) { /* 1xx: not passed on */
            x->fields.len = 0;
            x->nfields = 0;
            x->status = 0;
        }
    }
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        x->flags |= H2X_IN_END;
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *user)
{
    struct pt_h2up *h = user;
    struct pt_h2x *x = x_of(h, id);
    struct iovec iov = { (void *)data, len };

    if (x == NULL) {
        nghttp2_session_consume(ng, id, len); /* nobody reads it: not held against the window */
        return 0;
    }
    if (pt_buf_append_iov(&h->w->bufs, &x->in, &iov, 1, len, 0) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user)
{
    struct pt_h2x *x = x_of(user, id);

    if (x != NULL) {
        x->flags |= H2X_CLOSED;
        x->error_code = error_code;
        nghttp2_session_set_stream_user_data(ng, id, NULL);
    }
    return 0;
}

/* The request body, framed from the stream's buffer as the window allows. */
static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *data_flags,
                         nghttp2_data_source *source, void *user)
{
    struct pt_h2up *h = user;
    struct pt_h2x *x = x_of(h, id);
    size_t n;

    if (x == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* its owner is gone: reset it */
    n = x->out.len < len ? x->out.len : len;
    if (n > 0) {
        memcpy(buf, pt_buf_data(&x->out), n);
        pt_buf_consume(&x->out, (uint32_t)n);
    }
    if (x->out.len == 0) {
        pt_buf_release(&h->w->bufs, &x->out);
        x->flags |= H2X_DRAINED;
        if (x->flags & H2X_OUT_END) {
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
            if (x->ntrailers > 0 && pt_h2_submit_trailer(h->ng, x->id, &h->w->bufs, &x->trailers, &x->ntrailers) == 0)
                *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM; /* the trailers end it */
        } else if (n == 0) {
            x->flags |= H2X_DEFERRED;
            return NGHTTP2_ERR_DEFERRED; /* resumed when the owner gives more */
        }
    }
    return (ssize_t)n;
}

/* ---- the connection ------------------------------------------------------------------------ */

static bool h2up_idle_open(const struct pt_h2up *h)
{
    return h->nstreams == 0 && !(h->flags & (H2U_DEAD | H2U_NO_NEW));
}

static void h2up_pool_unlink(struct pt_h2up *h)
{
    struct pt_h2up **pp = &h->pool->h2_conns;

    while (*pp != NULL && *pp != h)
        pp = &(*pp)->pool_next;
    if (*pp == h)
        *pp = h->pool_next;
}

/* h2up_close: the connection closes (its socket now, its memory from the ready list); its
 * streams hear <reason>, <tfr>, <flags> through their owners' on_error. */
static void h2up_close(struct pt_h2up *h, const char *reason, const char *tfr, const char *flags)
{
    struct pt_h2x *x = h->xs, *next;

    if (h->flags & H2U_DEAD)
        return;
    h->flags |= H2U_DEAD;
    h2up_pool_unlink(h);
    pt_timer_cancel(&h->timer);
    if (h->up != NULL)
        pt_up_release(h->up, false);
    h->up = NULL;
    h->xs = h->run_next = NULL;
    h->nstreams = 0;
    for (; x != NULL; x = next) { /* each owner finishes its exchange (x_free) */
        struct pt_hc *hc = x->hc;
        next = x->next;
        x->conn = NULL;
        hc->state = PT_HC_IDLE;
        hc->ops->on_error(hc->owner, reason, tfr, flags);
    }
    h2up_queue(h); /* freed from there */
}

/* h2up_send: frames what nghttp2 has to send and writes it. False when the connection closed. */
static bool h2up_send(struct pt_h2up *h)
{
    struct pt_worker *w = h->w;

    if (!(h->flags & H2U_ESTABLISHED))
        return true;
    while (h->up->out.len == 0 && nghttp2_session_want_write(h->ng)) {
        size_t used = 0;
        for (;;) { /* frames gathered into one write */
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(h->ng, &data);
            if (n < 0) {
                h2up_close(h, "protocol error", NULL, "UPE");
                return false;
            }
            if (n == 0)
                break;
            if ((size_t)n > sizeof(w->scratch) - used) {
                struct iovec iov[2] = { { w->scratch, used }, { (void *)data, (size_t)n } };
                if (pt_up_send(h->up, iov, 2) == PT_IO) {
                    h2up_close(h, "connection termination", NULL, "UC");
                    return false;
                }
                used = 0;
                if (h->up->out.len > 0)
                    break;
                continue;
            }
            memcpy(w->scratch + used, data, (size_t)n);
            used += (size_t)n;
        }
        if (used > 0) {
            struct iovec iov = { w->scratch, used };
            if (pt_up_send(h->up, &iov, 1) == PT_IO) {
                h2up_close(h, "connection termination", NULL, "UC");
                return false;
            }
        } else if (h->up->out.len == 0) {
            break; /* nothing more now */
        }
    }
    return true;
}

/* x_report_head: the response head of <x> goes to its owner. Returns PT_CLOSED when the owner
 * finished the exchange, else 0. */
static int x_report_head(struct pt_h2up *h, struct pt_h2x *x)
{
    struct pt_worker *w = h->w;
    struct pt_h1_response res = { .status = x->status, .minor_version = 1, .headers = w->resp_hdrs,
                                  .content_length = -1, .keep_alive = true, .idx_connection = -1,
                                  .idx_content_length = -1, .idx_transfer_encoding = -1 };

    x->flags = (x->flags & ~H2X_HEAD) | H2X_HEAD_DONE;
    res.nheaders = pt_fields_read(&x->fields, 0, x->head_nfields, w->resp_hdrs, PT_ARRAY_SIZE(w->resp_hdrs));
    for (size_t i = 0; i < res.nheaders; i++) {
        struct pt_str n = res.headers[i].name, v = res.headers[i].value;
        if (n.len == 14 && memcmp(n.ptr, "content-length", 14) == 0 && v.len > 0 && v.len < 19) {
            int64_t cl = 0;
            for (size_t k = 0; k < v.len && cl >= 0; k++)
                cl = (v.ptr[k] >= '0' && v.ptr[k] <= '9') ? cl * 10 + (v.ptr[k] - '0') : -1;
            res.content_length = cl;
            res.idx_content_length = (int)i;
        }
    }
    if (res.content_length < 0 && (x->flags & H2X_IN_END) && x->in.len == 0 && !(x->flags & H2X_TRAILERS))
        res.content_length = 0; /* the head was all (a trailers-only gRPC answer) */
    res.chunked = res.content_length < 0; /* delimited by the frames: chunked for HTTP/1.1 */
    x->hc->state = PT_HC_BODY;
    return x->hc->ops->on_head(x->hc->owner, &res) == PT_CLOSED ? PT_CLOSED : 0;
}

/* x_deliver: the response data, trailers and end that arrived go to the owner, as far as it
 * takes them. Returns PT_CLOSED when the owner finished the exchange, else 0. */
static int x_deliver(struct pt_h2up *h, struct pt_h2x *x, bool always)
{
    struct pt_hc *hc = x->hc;
    bool end = (x->flags & H2X_IN_END) != 0;
    bool trailers = end && (x->flags & H2X_TRAILERS);
    uint32_t n = x->in.len;
    struct iovec iov = { n > 0 ? pt_buf_data(&x->in) : NULL, n };

    if (x->flags & H2X_END_GIVEN)
        return 0;
    if (!always && (hc->paused || (n == 0 && !end)))
        return 0;
    pt_buf_consume(&x->in, n); /* the bytes stay where they are until the next append */
    if (n > 0 && x->id > 0)
        nghttp2_session_consume(h->ng, x->id, n); /* the upstream may send more */
    hc->body.payload += n;
    if (end && !trailers) {
        x->flags |= H2X_END_GIVEN;
        hc->state = PT_HC_DONE;
    }
    if ((n > 0 || !trailers) && hc->ops->on_body(hc->owner, &iov, n > 0 ? 1 : 0, end && !trailers) == PT_CLOSED)
        return PT_CLOSED;
    if (!trailers || hc->paused)
        return 0;
    {
        struct pt_worker *w = h->w;
        size_t nt = pt_fields_read(&x->fields, x->head_bytes, x->nfields - x->head_nfields, w->resp_hdrs,
                              PT_ARRAY_SIZE(w->resp_hdrs));
        x->flags |= H2X_END_GIVEN;
        hc->state = PT_HC_DONE;
        if (hc->ops->on_trailers != NULL && hc->ops->on_trailers(hc->owner, w->resp_hdrs, nt) == PT_CLOSED)
            return PT_CLOSED;
    }
    return hc->ops->on_body(hc->owner, NULL, 0, true) == PT_CLOSED ? PT_CLOSED : 0;
}

/* x_run: <x>'s owner hears what happened to it. */
static void x_run(struct pt_h2up *h, struct pt_h2x *x)
{
    struct pt_hc *hc = x->hc;

    if (x->flags & H2X_HEAD) {
        if (x_report_head(h, x) == PT_CLOSED || x_deliver(h, x, true) == PT_CLOSED)
            return;
    } else if ((x->flags & H2X_HEAD_DONE) && x_deliver(h, x, false) == PT_CLOSED) {
        return;
    }
    if ((x->flags & H2X_DRAINED) && x->out.len == 0) {
        x->flags &= ~H2X_DRAINED;
        h2up_queue(h); /* the rest on the next turn: the owner may have finished */
        hc->ops->on_writable(hc->owner);
        return;
    }
    /* A stream that ended cleanly (END_STREAM, closed without error) is no reset: what its
     * owner has not taken yet (it was paused) waits for it. */
    if ((x->flags & H2X_CLOSED) && !(x->flags & H2X_END_GIVEN) && !(x->flags & H2X_HEAD) &&
        !((x->flags & H2X_IN_END) && x->error_code == NGHTTP2_NO_ERROR)) {
        const char *reason = "remote reset", *flags = "UR";
        if (x->flags & H2X_BAD)
            reason = "protocol error", flags = "UPE";
        else if (x->error_code == NGHTTP2_REFUSED_STREAM)
            reason = "connection termination", flags = "UC"; /* not taken: it may go again */
        else if (x->error_code == NGHTTP2_PROTOCOL_ERROR)
            reason = "protocol error", flags = "UPE";
        x_unlink(h, x);
        hc->state = PT_HC_IDLE;
        hc->ops->on_error(hc->owner, reason, NULL, flags); /* the owner finishes it (x_free) */
    }
}

/* h2up_run_streams: each stream's owner hears what happened to it since it last ran. */
static void h2up_run_streams(struct pt_h2up *h)
{
    h->flags |= H2U_RUNNING;
    for (struct pt_h2x *x = h->xs; x != NULL && !(h->flags & H2U_DEAD); x = h->run_next) {
        h->run_next = x->next; /* moved on when that one leaves meanwhile (x_unlink) */
        x_run(h, x);
    }
    h->flags &= ~H2U_RUNNING;
}

/* h2up_keep: whether an idle connection may wait for the next streams: not too old, not
 * draining, and no more idle ones on its endpoint than the pool keeps. */
static bool h2up_keep(struct pt_h2up *h)
{
    uint32_t idle = 0;

    if ((h->flags & H2U_NO_NEW) || h->w->draining || pt_up_pool_too_old(h->pool, h->created_ms, pt_loop_now_ms(h->w->loop)))
        return false;
    for (struct pt_h2up *o = h->pool->h2_conns; o != NULL; o = o->pool_next)
        if (o != h && h2up_idle_open(o))
            idle++;
    return idle < pt_proxy_limits.max_idle_per_endpoint;
}

/* h2up_run: frames what is pending and tells owners, until neither has anything left; an idle
 * connection then waits for its idle timeout, or closes. */
static void h2up_run(struct pt_h2up *h)
{
    for (int round = 0; round < 8 && !(h->flags & H2U_DEAD); round++) {
        if (!h2up_send(h))
            return;
        h2up_run_streams(h);
        if ((h->flags & H2U_DEAD) || !(h->flags & H2U_ESTABLISHED) || !nghttp2_session_want_write(h->ng) ||
            h->up->out.len > 0)
            break;
    }
    if (h->flags & H2U_DEAD)
        return;
    if (h->nstreams > 0) {
        pt_timer_cancel(&h->timer);
    } else if (!h2up_keep(h) || (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng))) {
        h2up_close(h, "connection termination", NULL, "UC"); /* no stream is left to hear it */
    } else if (!pt_timer_armed(&h->timer)) { /* its idle timeout, or what is left of its lifetime */
        pt_timer_arm(h->w->loop, &h->timer, pt_up_pool_idle_ms(h->pool, h->created_ms, pt_loop_now_ms(h->w->loop)));
    }
}

static void h2up_queue(struct pt_h2up *h)
{
    if (h->flags & H2U_QUEUED)
        return;
    h->flags |= H2U_QUEUED;
    h->ready_next = h->w->ready_h2ups;
    h->w->ready_h2ups = h;
}

void pt_h2up_run_ready(struct pt_worker *w)
{
    while (w->ready_h2ups != NULL) {
        struct pt_h2up *h = w->ready_h2ups;
        w->ready_h2ups = h->ready_next;
        h->flags &= ~H2U_QUEUED;
        if (!(h->flags & H2U_DEAD))
            h2up_run(h);
        if ((h->flags & H2U_DEAD) && !(h->flags & H2U_QUEUED)) {
            nghttp2_session_del(h->ng);
            free(h);
        }
    }
}

static void h2up_on_timer(struct pt_timer *t)
{
    struct pt_h2up *h = pt_container_of(t, struct pt_h2up, timer);

    if (h->nstreams == 0) {
        nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
        if (h2up_send(h)) /* the GOAWAY, as far as the socket takes it */
            h2up_close(h, "connection termination", NULL, "UC");
    }
}

/* ---- what upstream.c reports (struct pt_up_ops) ------------------------------------------- */

static void h2up_on_readable(void *owner)
{
    struct pt_h2up *h = owner;
    struct pt_upstream *up = h->up;

    if (up->in.len > 0) {
        ssize_t n = nghttp2_session_mem_recv(h->ng, (const uint8_t *)pt_buf_data(&up->in), up->in.len);
        if (n < 0) {
            pt_debug("HTTP/2 upstream: %s", nghttp2_strerror((int)n));
            nghttp2_session_terminate_session(h->ng, NGHTTP2_PROTOCOL_ERROR);
            h2up_send(h);
            h2up_close(h, "protocol error", NULL, "UPE");
            return;
        }
        pt_buf_consume(&up->in, (uint32_t)n);
    }
    if (up->eof) {
        h2up_run_streams(h); /* what did arrive goes first */
        h2up_close(h, "connection termination", NULL, "UC");
        return;
    }
    h2up_run(h);
}

/* alpn_failed: <tfr> says which protocol a TLS upstream selected instead of h2; true when it
 * did not select h2. */
static bool alpn_failed(SSL *ssl, char *tfr, size_t len)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    int k;

    SSL_get0_alpn_selected(ssl, &p, &n);
    if (n == 2 && memcmp(p, "h2", 2) == 0)
        return false;
    if (n == 0)
        k = snprintf(tfr, len, "ALPN: the upstream selected no protocol; h2 is required");
    else
        k = snprintf(tfr, len, "ALPN: the upstream selected \"%.*s\"; h2 is required", (int)(n > 64 ? 64 : n), p);
    if (k < 0 || (size_t)k >= len)
        snprintf(tfr, len, "ALPN: h2 is required");
    return true;
}

static void h2up_on_writable(void *owner)
{
    struct pt_h2up *h = owner;

    if (!(h->flags & H2U_ESTABLISHED)) {
        char tfr[160];
        if (h->up->ssl != NULL && alpn_failed(h->up->ssl, tfr, sizeof(tfr))) {
            struct pt_cluster_stats *cs = pt_stats_cluster(h->w->st, h->cst_idx);
            if (cs != NULL)
                pt_stats_inc(&cs->upstream_cx_connect_fail);
            h2up_close(h, "remote connection failure", tfr, "UF");
            return;
        }
        h->flags |= H2U_ESTABLISHED;
    }
    h2up_run(h);
}

static void h2up_on_error(void *owner, const char *reason, const char *tfr, const char *flags)
{
    struct pt_h2up *h = owner;

    h->up = NULL; /* already closed */
    h2up_close(h, reason, tfr, flags);
}

static const struct pt_up_ops h2up_up_ops = {
    .on_readable = h2up_on_readable,
    .on_writable = h2up_on_writable,
    .on_error = h2up_on_error,
};

/* h2_callbacks: the worker's nghttp2 client callbacks and options, made once and read-only
 * after. NULL without memory. */
static nghttp2_session_callbacks *h2_callbacks(struct pt_worker *w)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_option *o;

    if (w->h2up_cbs != NULL)
        return w->h2up_cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return NULL;
    if (nghttp2_option_new(&o) != 0) {
        nghttp2_session_callbacks_del(cbs);
        return NULL;
    }
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option_set_no_auto_window_update(o, 1); /* consumed as the owner takes it */
    nghttp2_option_set_max_outbound_ack(o, 1000);   /* a SETTINGS/PING flood ends it */
    w->h2up_opt = o;
    return w->h2up_cbs = cbs;
}

/* h2up_new: a new connection to <ep> of <c>. NULL when it cannot be made. */
static struct pt_h2up *h2up_new(struct pt_worker *w, const struct pt_cluster *c, const struct pt_endpoint *ep,
                                bool counted)
{
    nghttp2_settings_entry settings[] = {
        { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2UP_STREAM_WINDOW },
        { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, pt_proxy_limits.max_head_bytes },
    };
    nghttp2_session_callbacks *cbs = h2_callbacks(w);
    struct pt_h2up *h = cbs ? calloc(1, sizeof(*h)) : NULL;
    bool reused;

    if (h == NULL)
        return NULL;
    if (nghttp2_session_client_new2(&h->ng, cbs, h, w->h2up_opt) != 0) {
        free(h);
        return NULL;
    }
    if (nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, settings, PT_ARRAY_SIZE(settings)) != 0 ||
        nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, H2UP_CONN_WINDOW) != 0 ||
        (h->up = pt_up_acquire(w, c, ep, true, counted, &reused)) == NULL) {
        nghttp2_session_del(h->ng);
        free(h);
        return NULL;
    }
    /* TLS offers h2 alone (the handshake starts on the first EPOLLOUT, after this). */
    if (h->up->ssl != NULL && SSL_set_alpn_protos(h->up->ssl, (const unsigned char *)"\x02h2", 3) != 0) {
        pt_up_release(h->up, false);
        nghttp2_session_del(h->ng);
        free(h);
        return NULL;
    }
    h->up->ops = &h2up_up_ops;
    h->up->owner = h;
    h->w = w;
    h->pool = h->up->pool;
    h->tls = h->up->ssl != NULL;
    h->timer.cb = h2up_on_timer;
    h->created_ms = pt_loop_now_ms(w->loop);
    h->cst_idx = c->stats_idx;
    if (h->up->state == PT_UP_BUSY && h->up->ssl == NULL)
        h->flags |= H2U_ESTABLISHED; /* connected at once (loopback) */
    h->pool_next = h->pool->h2_conns;
    h->pool->h2_conns = h;
    {
        struct pt_cluster_stats *cs = pt_stats_cluster(w->st, h->cst_idx);
        if (cs != NULL)
            pt_stats_inc(&cs->upstream_cx_http2_total);
    }
    return h;
}

/* h2up_has_room: <h> takes another stream: open, young enough, below the peer's limit. */
static bool h2up_has_room(const struct pt_h2up *h)
{
    uint32_t max = nghttp2_session_get_remote_settings(h->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);

    if (h->flags & (H2U_DEAD | H2U_NO_NEW))
        return false;
    if (pt_up_pool_too_old(h->pool, h->created_ms, pt_loop_now_ms(h->w->loop)))
        return false;
    return h->nstreams < (max < H2UP_MAX_STREAMS ? max : H2UP_MAX_STREAMS);
}

/* ---- the exchange (proxy/httpclient.h) ---------------------------------------------------- */

int pt_hc__h2_start(struct pt_hc *hc, struct pt_worker *w, const struct pt_cluster *c,
                    const struct pt_endpoint *ep, bool fresh, bool counted)
{
    struct pt_pool_entry *e = pt_up_pool(w, c, ep);
    struct pt_h2up *h = NULL;
    struct pt_h2x *x;

    if (e == NULL)
        return PT_IO;
    for (struct pt_h2up *o = e->h2_conns; o != NULL && !fresh; o = o->pool_next) {
        if (h2up_has_room(o)) {
            h = o;
            break;
        }
    }
    hc->reused = h != NULL;
    if ((x = w->free_h2x) != NULL) {
        w->free_h2x = x->next;
        memset(x, 0, sizeof(*x));
    } else if ((x = calloc(1, sizeof(*x))) == NULL) {
        return PT_IO;
    }
    if (h == NULL && (h = h2up_new(w, c, ep, counted)) == NULL) {
        x->next = w->free_h2x;
        w->free_h2x = x;
        return PT_IO;
    }
    x->hc = hc;
    x->w = w;
    x->conn = h;
    x->next = h->xs;
    h->xs = x;
    h->nstreams++;
    pt_timer_cancel(&h->timer);
    hc->h2 = x;
    return 0;
}

/* x_submit: the request head in <head> (the HTTP/1.1 head the proxy wrote) as HEADERS. */
static int x_submit(struct pt_h2up *h, struct pt_h2x *x, const struct iovec *head)
{
    struct pt_header f[PT_MAX_HEADERS_DEFAULT + 64];
    nghttp2_nv nv[PT_ARRAY_SIZE(f)];
    nghttp2_data_provider prd = { .source.ptr = x, .read_callback = read_body };
    int n = pt_h2head_from_h1(head->iov_base, head->iov_len, h->tls, true, f, PT_ARRAY_SIZE(f));
    int32_t id;

    if (n < 0)
        return PT_IO;
    pt_h2_nv(nv, f, (size_t)n);
    id = nghttp2_submit_request(h->ng, NULL, nv, (size_t)n,
                                (x->flags & H2X_OUT_END) && x->out.len == 0 && x->ntrailers == 0 ? NULL : &prd, x);
    if (id < 0) {
        h->flags |= H2U_NO_NEW; /* stream ids ran out, or no memory: the next goes elsewhere */
        return PT_IO;
    }
    x->id = id;
    x->flags |= H2X_SUBMITTED;
    return 0;
}

int pt_hc__h2_send(struct pt_hc *hc, const struct iovec *iov, int iovcnt, bool end)
{
    struct pt_h2x *x = hc->h2;
    struct pt_h2up *h = x->conn;
    size_t total = 0;
    int first = 0;

    if (h == NULL)
        return PT_IO;
    if (!(x->flags & H2X_SUBMITTED))
        first = 1; /* iov[0]: the head */
    for (int i = first; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (total > 0 && pt_buf_append_iov(&h->w->bufs, &x->out, iov + first, iovcnt - first, total, 0) != 0)
        return PT_IO;
    if (end)
        x->flags |= H2X_OUT_END;
    if (first && (iovcnt < 1 || x_submit(h, x, &iov[0]) != 0))
        return PT_IO;
    if (!first && (x->flags & H2X_DEFERRED) && (total > 0 || end)) {
        x->flags &= ~H2X_DEFERRED;
        nghttp2_session_resume_data(h->ng, x->id);
    }
    h2up_queue(h);
    return x->out.len > 0 ? PT_AGAIN : 0;
}

int pt_hc__h2_trailers(struct pt_hc *hc, const struct pt_header *t, size_t n)
{
    struct pt_h2x *x = hc->h2;

    for (size_t i = 0; i < n && i < PT_MAX_HEADERS_DEFAULT; i++) {
        if (pt_fields_append(&x->w->bufs, &x->trailers, t[i].name, t[i].value) != 0)
            return PT_IO;
        x->ntrailers++;
    }
    return 0;
}

bool pt_hc__h2_send_blocked(const struct pt_hc *hc)
{
    return hc->h2->out.len > 0;
}

size_t pt_hc__h2_pending(const struct pt_hc *hc)
{
    return hc->h2->out.len;
}

void pt_hc__h2_resume(struct pt_hc *hc)
{
    if (hc->h2->conn != NULL)
        h2up_queue(hc->h2->conn);
}

int pt_hc__h2_fd(const struct pt_hc *hc)
{
    const struct pt_h2up *h = hc->h2->conn;
    return h != NULL && h->up != NULL ? h->up->io.fd : -1;
}

void pt_hc__h2_finish(struct pt_hc *hc)
{
    struct pt_h2x *x = hc->h2;
    struct pt_h2up *h = x->conn;

    hc->h2 = NULL;
    if (h != NULL) {
        if (x->id > 0 && !(x->flags & H2X_CLOSED))
            nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, x->id, NGHTTP2_CANCEL); /* cut short */
        x_unlink(h, x);
        h2up_queue(h); /* the reset goes, and an idle connection waits or closes */
    }
    x_free(x->w, x);
}
