/* The upstream HTTP/1.1 client (proxy/httpclient.h): an exchange takes a connection from the
 * pool (proxy/upstream.c), passes the caller's request bytes, parses the response head into
 * the worker's response header array, takes the body's framing off (Content-Length, chunked
 * decoded, or up to the close) and hands the data to the caller in batches of up to
 * PT_BODY_RUNS pieces, pausing while the caller's own client is slow. A 101 the caller allowed
 * turns the exchange into a byte tunnel. Whether the connection may be reused is decided here,
 * from the response, and applied by pt_hc_finish. Called by proxy/stream.c and
 * proxy/session.c; will be by the auth and rate-limit calls and health checks. */
#include "proxy/httpclient.h"
#include "proxy/proxy.h"
#include "http/h1.h"
#include "http/body.h"

static const struct pt_up_ops hc_up_ops;

int pt_hc_start(struct pt_hc *hc, struct pt_worker *w, const struct pt_cluster *c,
                const struct pt_endpoint *ep, bool fresh, const struct pt_hc_ops *ops, void *owner,
                unsigned flags)
{
    bool reused = false, head_request = (flags & PT_HC_HEAD_REQUEST) != 0, counted = !(flags & PT_HC_UNCOUNTED);
    struct pt_upstream *up;

    if (c->http2) {
        *hc = (struct pt_hc){ .ops = ops, .owner = owner, .state = PT_HC_HEAD, .head_request = head_request };
        return pt_hc__h2_start(hc, w, c, ep, fresh, counted);
    }
    if ((up = pt_up_acquire(w, c, ep, fresh, counted, &reused)) == NULL)
        return PT_IO;
    *hc = (struct pt_hc){ .up = up, .ops = ops, .owner = owner, .state = PT_HC_HEAD, .head_request = head_request,
                          .allow_101 = (flags & PT_HC_ALLOW_101) != 0, .reused = reused };
    up->ops = &hc_up_ops;
    up->owner = hc;
    return 0;
}

int pt_hc_send(struct pt_hc *hc, const struct iovec *iov, int iovcnt, bool end)
{
    if (hc->h2 != NULL)
        return pt_hc__h2_send(hc, iov, iovcnt, end);
    return pt_up_send(hc->up, iov, iovcnt);
}

int pt_hc_trailers(struct pt_hc *hc, const struct pt_header *t, size_t n)
{
    return hc->h2 != NULL && n > 0 ? pt_hc__h2_trailers(hc, t, n) : 0;
}

int pt_hc_fd(const struct pt_hc *hc)
{
    if (hc->h2 != NULL)
        return pt_hc__h2_fd(hc);
    return hc->up != NULL ? hc->up->io.fd : -1;
}

void pt_hc_finish(struct pt_hc *hc, bool reusable)
{
    if (hc->h2 != NULL)
        pt_hc__h2_finish(hc); /* the stream ends; its connection stays for the others */
    if (hc->up != NULL)
        pt_up_release(hc->up, reusable && hc->state == PT_HC_DONE && hc->keepalive);
    hc->up = NULL;
    hc->state = PT_HC_IDLE;
}

void pt_hc_pause(struct pt_hc *hc)
{
    hc->paused = true;
}

void pt_hc_resume(struct pt_hc *hc)
{
    hc->paused = false;
    if (hc->h2 != NULL)
        pt_hc__h2_resume(hc);
    else if (hc->up != NULL)
        pt_up_resume(hc->up); /* from the worker's ready list, not from inside the caller */
}

/* hc_fail: the exchange failed; its connection closes and the owner hears why. */
static void hc_fail(struct pt_hc *hc, const char *reason, const char *flags)
{
    pt_up_release(hc->up, false);
    hc->up = NULL;
    hc->state = PT_HC_IDLE;
    hc->ops->on_error(hc->owner, reason, NULL, flags);
}

/* hc_framing: how the body of <res> is delimited, and whether the connection may be reused. */
static void hc_framing(struct pt_hc *hc, const struct pt_h1_response *res)
{
    hc->body = (struct pt_body){ 0 };
    hc->keepalive = res->keep_alive;
    if (res->status == 101) { /* what follows is the other protocol, both ways */
        hc->state = PT_HC_TUNNEL;
        hc->body.kind = PT_BODY_UNTIL_CLOSE;
        hc->keepalive = false;
        return;
    }
    hc->state = PT_HC_BODY;
    if (!pt_h1_response_has_body(hc->head_request, res->status)) {
        hc->body.kind = PT_BODY_NONE;
    } else if (res->chunked) {
        hc->body.kind = PT_BODY_CHUNKED;
    } else if (res->content_length >= 0) {
        hc->body.kind = res->content_length ? PT_BODY_LENGTH : PT_BODY_NONE;
        hc->body.remaining = (uint64_t)res->content_length;
    } else {
        hc->body.kind = PT_BODY_UNTIL_CLOSE;
        hc->keepalive = false;
    }
}

/* hc_head: parses the response head in up->in. Returns 1 when a final head was delivered, 2
 * when a 1xx was skipped (call again), 0 when more bytes are needed, PT_CLOSED when the owner
 * finished or the exchange failed. */
static int hc_head(struct pt_hc *hc)
{
    struct pt_upstream *up = hc->up;
    struct pt_worker *w = up->w;
    struct pt_h1_limits lim = { pt_proxy_limits.max_head_bytes, pt_proxy_limits.max_headers };
    struct pt_h1_response res;
    int r = up->in.len ? pt_h1_parse_response(pt_buf_data(&up->in), up->in.len, &res, w->resp_hdrs,
                                              PT_ARRAY_SIZE(w->resp_hdrs), &lim)
                       : PT_AGAIN;

    if (r == PT_AGAIN) {
        if (up->eof)
            hc_fail(hc, "connection termination", "UC");
        else if (pt_buf_room(&up->in) == 0 && up->in.off == 0)
            hc_fail(hc, "protocol error", "UPE"); /* a head larger than the buffer */
        else
            return 0;
        return PT_CLOSED;
    }
    if (r < 0) {
        hc_fail(hc, "protocol error", "UPE");
        return PT_CLOSED;
    }
    if (res.status < 200 && !(res.status == 101 && hc->allow_101)) {
        /* interim responses are not passed on; a 101 nobody asked for is a protocol error */
        pt_buf_consume(&up->in, (uint32_t)r);
        if (res.status == 101) {
            hc_fail(hc, "protocol error", "UPE");
            return PT_CLOSED;
        }
        return 2;
    }
    hc_framing(hc, &res);
    pt_buf_consume(&up->in, (uint32_t)r); /* res's slices stay readable: nothing overwrites them */
    return hc->ops->on_head(hc->owner, &res) == PT_CLOSED ? PT_CLOSED : 1;
}

/* hc_body: hands the body bytes in up->in to the owner. Returns false when the exchange is
 * over for this turn (finished, failed, paused, or waiting for bytes). */
static bool hc_body(struct pt_hc *hc)
{
    struct pt_upstream *up = hc->up;
    struct iovec iov[PT_BODY_RUNS];
    size_t used;
    bool end;
    int n;
    int64_t r = pt_body_take(&hc->body, pt_buf_data(&up->in), up->in.len, up->eof, iov, &n, &end);

    if (r < 0) {
        hc_fail(hc, "protocol error", "UPE");
        return false;
    }
    used = (size_t)r;
    if (!end && up->eof && used == up->in.len) { /* the connection ended inside the body */
        pt_buf_consume(&up->in, (uint32_t)used);
        if (n > 0 && hc->ops->on_body(hc->owner, iov, n, false) == PT_CLOSED)
            return false; /* what did arrive goes first */
        hc_fail(hc, "connection termination", "UC");
        return false;
    }
    if (end)
        hc->state = PT_HC_DONE;
    /* Consumed first, so that an owner that finishes the exchange in on_body finds the
     * connection clean; the bytes stay where they are until the next read. */
    pt_buf_consume(&up->in, (uint32_t)used);
    if (hc->ops->on_body(hc->owner, iov, n, end) == PT_CLOSED)
        return false;
    return !end && !hc->paused && up->in.len > 0;
}

/* The connection's bytes arrived (or it reached its end). */
static void hc_on_readable(void *owner)
{
    struct pt_hc *hc = owner;

    while (hc->state == PT_HC_HEAD) {
        int r = hc_head(hc);
        if (r == PT_CLOSED || r == 0)
            return;
        if (r == 1 && !hc_body(hc)) /* always, right after the head */
            return;
    }
    while (!hc->paused && (hc->state == PT_HC_BODY || hc->state == PT_HC_TUNNEL) &&
           (hc->up->in.len > 0 || hc->up->eof))
        if (!hc_body(hc))
            return;
}

static void hc_on_writable(void *owner)
{
    struct pt_hc *hc = owner;

    hc->ops->on_writable(hc->owner);
}

static void hc_on_error(void *owner, const char *reason, const char *tfr, const char *flags)
{
    struct pt_hc *hc = owner;

    hc->up = NULL; /* already closed */
    hc->state = PT_HC_IDLE;
    hc->ops->on_error(hc->owner, reason, tfr, flags);
}

static const struct pt_up_ops hc_up_ops = {
    .on_readable = hc_on_readable,
    .on_writable = hc_on_writable,
    .on_error = hc_on_error,
};
