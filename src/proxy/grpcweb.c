/* gRPC-Web to gRPC and back, for one request (Module enable_grpc_web; Envoy's grpc_web
 * filter): which requests are translated, the content-types each side sees, the request body
 * decoded from base64 (-text) as it streams to the upstream, and the response body encoded
 * with the upstream's trailers appended as the trailer frame. Everything goes through the
 * worker's gwbuf in bounded pieces and is copied by the call that takes it; nothing is held
 * whole. Called by proxy/session.c, proxy/stream.c and proxy/reply.c. */
#include "proxy/grpcweb.h"
#include "proxy/proxy.h"
#include "proxy/httpclient.h"
#include "http/body.h"
#include "observe/grpcstats.h"

#define GW_SUFFIX_MAX 32 /* a longer "+format" is not kept */

void pt_gw_begin(struct pt_stream *st)
{
    const struct pt_h1_request *req = &st->req;
    const struct pt_header *accept;
    enum pt_grpcweb_kind k;

    if (!st->snap->http.enable_grpc_web || req->idx_content_type < 0)
        return;
    k = pt_grpcweb_kind(req->headers[req->idx_content_type].value);
    if (k == PT_GRPCWEB_NONE)
        return;
    st->gw.kind = (uint8_t)k;
    /* The response is base64 when the request was, or when Accept asks for it (as Envoy). */
    accept = pt_header_find(req->headers, req->nheaders, PT_STR_LIT("accept"));
    st->gw.text_resp = k == PT_GRPCWEB_TEXT || (accept != NULL && pt_grpcweb_kind(accept->value) == PT_GRPCWEB_TEXT);
}

/* gw_suffix: the "+format" of the request's content-type (with its '+'), empty when it has
 * none or a longer one than GW_SUFFIX_MAX. */
static struct pt_str gw_suffix(const struct pt_stream *st)
{
    struct pt_str ct = st->req.headers[st->req.idx_content_type].value;
    size_t at = st->gw.kind == PT_GRPCWEB_TEXT ? 25 : 20, end; /* application/grpc-web[-text] */

    if (ct.len <= at || ct.ptr[at] != '+')
        return (struct pt_str){ 0 };
    for (end = at + 1; end < ct.len && ct.ptr[end] != ';' && ct.ptr[end] != ' ' && ct.ptr[end] != '\t'; end++)
        ;
    if (end - at > GW_SUFFIX_MAX || end - at < 2)
        return (struct pt_str){ 0 };
    return pt_str_make(ct.ptr + at, end - at);
}

/* gw_type: <base> then <suffix> into <buf>. */
static struct pt_str gw_type(struct pt_str base, struct pt_str suffix, char *buf, size_t cap)
{
    if (base.len + suffix.len > cap)
        return base; /* cannot happen: callers give 64 bytes */
    memcpy(buf, base.ptr, base.len);
    if (suffix.len)
        memcpy(buf + base.len, suffix.ptr, suffix.len);
    return pt_str_make(buf, base.len + suffix.len);
}

struct pt_str pt_gw_upstream_type(const struct pt_stream *st, char *buf, size_t cap)
{
    return gw_type(PT_STR_LIT("application/grpc"), gw_suffix(st), buf, cap);
}

struct pt_str pt_gw_response_type(const struct pt_stream *st, char *buf, size_t cap)
{
    struct pt_str sfx = gw_suffix(st);

    if (sfx.len == 0)
        sfx = PT_STR_LIT("+proto"); /* Envoy's application/grpc-web[-text]+proto */
    return gw_type(st->gw.text_resp ? PT_STR_LIT("application/grpc-web-text") : PT_STR_LIT("application/grpc-web"),
                   sfx, buf, cap);
}

/* gw_up: hands <head> (or NULL) and <len> bytes at <p> upstream, framed. */
static int gw_up(struct pt_stream *st, const struct iovec *head, const void *p, size_t len, bool done)
{
    struct pt_body_frame out; /* not zeroed: only its first out.n iovecs are read */
    struct iovec data = { (void *)p, len };

    out.n = 0;
    if (head != NULL)
        out.iov[out.n++] = *head;
    if (st->gs.on && len > 0) /* Module grpc_stats: the decoded messages */
        pt_grpcstats_feed(&st->gs, true, &data, 1);
    pt_body_frame(&out, &data, len > 0 ? 1 : 0, pt_hc_chunked(&st->hc), done);
    return pt_hc_send(&st->hc, out.iov, out.n, done);
}

int pt_gw_send(struct pt_stream *st, const struct iovec *head, const struct iovec *data, int k, bool done)
{
    uint8_t *buf = st->w->gwbuf[0];
    const size_t cap = sizeof(st->w->gwbuf[0]);
    size_t used = 0;
    int r, again = 0;

    if (st->gw.kind != PT_GRPCWEB_TEXT) { /* the body as it is, but never with its length */
        struct pt_body_frame out;
        out.n = 0;
        if (head != NULL)
            out.iov[out.n++] = *head;
        if (st->gs.on) /* Module grpc_stats */
            pt_grpcstats_feed(&st->gs, true, data, k);
        pt_body_frame(&out, data, k, pt_hc_chunked(&st->hc), done);
        return pt_hc_send(&st->hc, out.iov, out.n, done);
    }
    for (int i = 0; i < k; i++) {
        const char *p = data[i].iov_base;
        size_t left = data[i].iov_len;
        while (left > 0) {
            size_t room = cap - used;
            size_t take = room > 8 ? (room - 3) / 3 * 4 : 0; /* decodes into 3 * (take + 3) / 4 */
            int64_t n;
            if (take == 0) {
                if ((r = gw_up(st, head, buf, used, false)) == PT_IO)
                    return PT_IO;
                again |= r == PT_AGAIN;
                head = NULL;
                used = 0;
                continue;
            }
            if (take > left)
                take = left;
            if ((n = pt_b64dec_run(&st->gw.dec, p, take, buf + used)) < 0)
                return PT_BADMSG;
            used += (size_t)n;
            p += take;
            left -= take;
        }
    }
    if (done && !pt_b64dec_done(&st->gw.dec))
        return PT_BADMSG; /* ends inside a quantum */
    if (head == NULL && used == 0 && !done)
        return again ? PT_AGAIN : 0;
    if ((r = gw_up(st, head, buf, used, done)) == PT_IO)
        return PT_IO;
    return (again || r == PT_AGAIN) ? PT_AGAIN : 0;
}

/* gw_emit: <n> pieces at <iov> to the client in base64, the last group padded with <pad>; the
 * connection's data call at least once, the last one with <end>. */
static int gw_emit(struct pt_stream *st, const struct iovec *iov, int n, bool pad, bool end)
{
    const struct pt_down_ops *down = st->conn->down;
    char *out = (char *)st->w->gwbuf[1];
    const size_t cap = sizeof(st->w->gwbuf[1]);
    size_t used = 0;
    int r, again = 0;

    for (int i = 0; i <= n; i++) {
        const uint8_t *p = i < n ? iov[i].iov_base : NULL;
        size_t left = i < n ? iov[i].iov_len : 0;
        bool last = i == n; /* the padding pass */
        while (left > 0 || (last && pad)) {
            size_t room = cap - used;
            size_t take = room >= 8 ? (room / 4 - 1) * 3 : 0; /* encodes into 4 * (take / 3 + 1) */
            if (take == 0) {
                struct iovec o = { out, used };
                if ((r = down->data(st, &o, 1, false)) == PT_IO)
                    return PT_IO;
                again |= r == PT_AGAIN;
                used = 0;
                continue;
            }
            if (take > left)
                take = left;
            used += pt_b64enc_run(&st->gw.enc, p, take, last, out + used);
            if (last)
                break; /* the padding: nothing was taken */
            p += take;
            left -= take;
        }
    }
    {
        struct iovec o = { out, used };
        if ((r = down->data(st, &o, used > 0 ? 1 : 0, end)) == PT_IO)
            return PT_IO;
    }
    return (again || r == PT_AGAIN) ? PT_AGAIN : 0;
}

int pt_gw_data(struct pt_stream *st, const struct iovec *iov, int n, bool end)
{
    if (!st->gw.text_resp)
        return st->conn->down->data(st, iov, n, end);
    return gw_emit(st, iov, n, end, end);
}

int pt_gw_trailers(struct pt_stream *st, const struct pt_header *h, size_t n)
{
    int64_t len = pt_grpcweb_trailers(h, n, st->w->gwbuf[0], sizeof(st->w->gwbuf[0]));
    struct iovec frame = { st->w->gwbuf[0], (size_t)len };

    if (len < 0)
        return PT_IO; /* larger than any trailer block passes: the response is cut */
    if (!st->gw.text_resp)
        return st->conn->down->data(st, &frame, 1, false);
    return gw_emit(st, &frame, 1, true, false); /* the trailer frame ends the base64 too */
}
