/* Replies Portico makes itself, with Envoy's status codes, bodies and response flags
 * (reference/envoy-compat.md §2.1): 404 with an empty body when no route matches, 503
 * "no healthy upstream", 503 "upstream connect error or disconnect/reset before headers. ...",
 * 504 "upstream request timeout", 400 "Bad Request" for malformed requests (the connection is
 * then closed), and the 301 of a Host's insecure Redirect. This file decides what a reply says;
 * http/reply.c writes its head, bounded. Called by proxy/stream.c and proxy/session.c. */
#include "proxy/session.h"
#include "proxy/proxy.h"
#include "proxy/grpcweb.h"
#include "proxy/cors.h"
#include "http/cors.h"
#include "route/route.h"
#include "proxy/format.h"
#include "observe/grpcstats.h"
#include "observe/logformat.h"
#include "core/log.h"
#include "http/reply.h"
#include "http/h1write.h"
#include "tls/tls.h"

#include <stdio.h>
#include <time.h>

/* pt_reply_grpc_request: the request is gRPC (content-type application/grpc, +proto..., ;params), or
 * gRPC-Web translated by the Module's enable_grpc_web, so its local replies are gRPC's, as
 * Envoy sends them. Untranslated gRPC-Web is not. */
bool pt_reply_grpc_request(const struct pt_stream *st)
{
    struct pt_str ct;

    if (!(st->flags & PT_SF_PARSED) || st->req.idx_content_type < 0)
        return false;
    if (st->gw.kind) /* gRPC-Web being translated (Module enable_grpc_web) */
        return true;
    ct = st->req.headers[st->req.idx_content_type].value;
    return ct.len >= 16 && pt_str_caseeq(pt_str_make(ct.ptr, 16), PT_STR_LIT("application/grpc")) &&
           (ct.len == 16 || ct.ptr[16] == '+' || ct.ptr[16] == ';');
}

/* grpc_status: the gRPC status of a local reply of HTTP <status>, as Envoy maps it. */
static int grpc_status(int status)
{
    switch (status) {
    case 400: return 13; /* INTERNAL */
    case 401: return 16; /* UNAUTHENTICATED */
    case 403: return 7;  /* PERMISSION_DENIED */
    case 404: return 12; /* UNIMPLEMENTED */
    case 429:
    case 502:
    case 503:
    case 504: return 14; /* UNAVAILABLE */
    default: return 2;   /* UNKNOWN */
    }
}

/* grpc_message: <text> percent-encoded for grpc-message (bytes outside 0x20-0x7e, and '%'),
 * into <out> (3 * text.len bytes). */
static struct pt_str grpc_message(struct pt_str text, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    for (size_t i = 0; i < text.len; i++) {
        unsigned char c = (unsigned char)text.ptr[i];
        if (c < 0x20 || c > 0x7e || c == '%') {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        } else {
            out[n++] = (char)c;
        }
    }
    return pt_str_make(out, n);
}

/* What a local reply carries beyond its status and body. */
struct reply_extra {
    const struct pt_str *location;  /* four pieces joined: a redirect; NULL: none */
    const struct pt_header *headers; /* more fields: a policy service's, or a CORS preflight's */
    size_t nheaders;
    bool preflight;                 /* a CORS preflight: sent as is, never as gRPC (Envoy's CORS
                                     * filter writes it itself) */
    int grpc_status;                /* for a gRPC request; 0: mapped from the status */
};

/* Sends a complete local response, with <x> (NULL: nothing more). A request whose Origin a CORS
 * policy allowed gets its Access-Control-* fields too (Envoy's CORS filter sees local replies).
 * A gRPC request gets it as gRPC status and message in a trailers-only response. One that the
 * connection cannot write (a Location longer than any head can carry) becomes a 400 instead. A
 * reply to HEAD says its length and sends no body. */
static void send_reply(struct pt_stream *st, int status, struct pt_str body, const char *flags,
                       const struct reply_extra *x)
{
    struct pt_http_reply r = { .date = pt_http_date() };
    struct pt_header fields[PT_HTTP_REPLY_EXTRA_MAX];
    char msg[3 * 512], gwct[64], obody[PT_FORMAT_BODY_MAX];
    bool grpc = !(x && x->preflight) && pt_reply_grpc_request(st);
    const struct pt_error_override *eo;
    size_t nf = 0;
    int n;

    for (size_t i = 0; x != NULL && i < x->nheaders && nf < PT_ARRAY_SIZE(fields); i++)
        fields[nf++] = x->headers[i];
    if (!(x && x->preflight) && (st->flags & PT_SF_CORS) && nf + PT_CORS_MAX_RESPONSE_HEADERS <= PT_ARRAY_SIZE(fields))
        nf += pt_cors_filter_headers(st, fields + nf);
    r.extra = fields;
    r.nextra = nf;
    if (st->flags & PT_SF_RESP_HEAD) {
        pt_stream_abort(st);
        return;
    }
    pt_stream_release_upstream(st);
    if (!(st->flags & PT_SF_REQ_DONE) || st->w->draining)
        st->flags |= PT_SF_CLOSE_AFTER;
    if (x != NULL && x->location != NULL)
        memcpy(r.location, x->location, sizeof(r.location));
    if (!grpc && !(x && x->preflight) && (eo = pt_format_override(st, status)) != NULL) {
        st->rec.status = status; /* error_response_overrides */
        st->rec.flags = flags;
        body = pt_str_make(obody, pt_format_error_body(st, eo, NULL, 0, obody, sizeof(obody)));
        r.content_type = pt_str_c(eo->content_type);
    }
    if (status == 204 || status == 304)
        body = (struct pt_str){ 0 }; /* they end at their head (RFC 9110 15.3.5, 15.4.5), whatever a
                                      * policy answer or an override carried: bytes after it would be
                                      * read as the next response */
    for (;;) {
        r.status = status;
        r.reason = pt_str_c(pt_reason_phrase(status));
        r.content_length = body.len;
        r.text_plain = body.len != 0 && !pt_header_find(r.extra, r.nextra, PT_STR_LIT("content-type"));
        if (grpc) { /* HTTP 200, the outcome in grpc-status */
            r.grpc = true;
            r.grpc_status = x && x->grpc_status ? x->grpc_status : grpc_status(status);
            r.grpc_message = grpc_message(pt_str_make(body.ptr, body.len > 512 ? 512 : body.len), msg);
            if (st->gw.kind)
                r.grpc_content_type = pt_gw_response_type(st, gwct, sizeof(gwct));
            r.status = 200;
            r.reason = PT_STR_LIT("OK");
            r.content_length = 0;
            r.text_plain = false;
            body.len = 0;
        }
        st->rec.status = r.status;
        st->rec.flags = flags;
        n = st->conn->down->reply(st, &r, (st->flags & PT_SF_HEAD_METHOD) ? (struct pt_str){ 0 } : body);
        if ((n != PT_BADMSG && n != PT_TOOBIG) || status == 400)
            break;
        pt_warn("local reply %d from %s does not fit (%s): answering 400", status, st->conn->peer_ip,
                pt_strerror(n));
        status = 400;
        body = PT_STR_LIT("Bad Request");
        r.content_type = (struct pt_str){ 0 };
        flags = "DPE";
        memset(r.location, 0, sizeof(r.location));
        r.nextra = 0;
        st->flags |= PT_SF_CLOSE_AFTER;
    }
    if (n != 0 && n != PT_AGAIN) { /* the client is gone (a 400 without a location always fits) */
        pt_stream_abort(st);
        return;
    }
    pt_stats_downstream_code(pt_stream_http_stats(st), r.status);
    if (r.grpc) /* Module grpc_stats: Envoy's filter sees local replies too */
        pt_grpcstats_local(&st->gs, r.grpc_status);
    if (st->flags & PT_SF_UP_ACTIVE) /* the router's own replies count for the cluster, as Envoy */
        pt_stats_upstream_code(pt_stream_cluster_stats(st), r.status);
    st->rec.bytes_tx = (st->flags & PT_SF_HEAD_METHOD) ? 0 : body.len;
    pt_stream_local_reply_done(st);
}

void pt_reply_local(struct pt_stream *st, int status, struct pt_str body, const char *flags)
{
    send_reply(st, status, body, flags, NULL);
}

void pt_reply_policy(struct pt_stream *st, int status, const struct pt_header *h, size_t n, struct pt_str body,
                     int grpc_status, const char *flags)
{
    send_reply(st, status, body, flags,
               &(struct reply_extra){ .headers = h, .nheaders = n, .grpc_status = grpc_status });
}

void pt_reply_bad_request(struct pt_stream *st)
{
    pt_reply_refuse(st, 400);
}

void pt_reply_refuse(struct pt_stream *st, int status)
{
    const char *text = pt_reason_phrase(status);

    st->flags |= PT_SF_CLOSE_AFTER;
    st->flags &= ~PT_SF_REQ_DONE;
    if (st->rec.log_len == 0) {
        /* Nothing was parsed: log what can be said. */
        static const char prefix[] = "\"- - -\"", suffix[] = "\"-\" \"-\" \"-\" \"-\"";
        /* log = prefix '\0' suffix (session.c keep_log_fields); both fit the 3 KiB log */
        memcpy(st->rec.log, prefix, sizeof(prefix)); /* with its NUL */
        memcpy(st->rec.log + sizeof(prefix), suffix, sizeof(suffix) - 1);
        st->rec.log_mid = (uint16_t)(sizeof(prefix) - 1);
        st->rec.log_len = st->rec.log_used = (uint16_t)(sizeof(prefix) + sizeof(suffix) - 1);
    }
    send_reply(st, status, pt_str_c(text), "DPE", NULL);
}

void pt_reply_redirect_https(struct pt_stream *st)
{
    const struct pt_h1_request *req = &st->req;
    struct pt_str host = req->authority.len ? req->authority : req->host;
    /* The path and query, never an absolute-form target's "http://host": a query is always
     * preceded by its '?' in the buffer it lies in (the head, or the normalized path's). */
    struct pt_str query = req->query.ptr ? pt_str_make(req->query.ptr - 1, req->query.len + 1) : (struct pt_str){ 0 };

    /* The cleartext port means nothing on https (Envoy strips it too). */
    if (host.len > 3 && memcmp(host.ptr + host.len - 3, ":80", 3) == 0)
        host.len -= 3;
    send_reply(st, 301, (struct pt_str){ 0 }, "-",
               &(struct reply_extra){ .location = (const struct pt_str[4]){ PT_STR_LIT("https://"), host, req->path,
                                                                            query } });
}

void pt_reply_headers(struct pt_stream *st, int status, const struct pt_header *h, size_t n)
{
    send_reply(st, status, (struct pt_str){ 0 }, "-", &(struct reply_extra){ .headers = h, .nheaders = n, .preflight = true });
}

void pt_reply_route_redirect(struct pt_stream *st, const struct pt_route *route,
                             const struct pt_route_req *rreq)
{
    const struct pt_route_action *a = pt_route_action(route);
    const struct pt_redirect *rd = a->redirect;
    /* The query with its '?' (always in front of it in the buffer it lies in, as above). */
    struct pt_str query = rreq->query.ptr ? pt_str_make(rreq->query.ptr - 1, rreq->query.len + 1)
                                          : (struct pt_str){ 0 };
    struct pt_str loc[4] = { rd->scheme, rd->host, rreq->path, query };
    char buf[8192];

    if (loc[0].len == 0) /* Envoy: the request's own scheme */
        loc[0] = st->rec.tls ? PT_STR_LIT("https://") : PT_STR_LIT("http://");
    if (rd->path.len) { /* path_redirect; its own query wins over the request's */
        loc[2] = rd->path;
        if (rd->path_has_query)
            loc[3] = (struct pt_str){ 0 };
    } else if (rd->rewrite) { /* prefix_redirect / regex_redirect: "path?query" */
        bool changed;
        int len = pt_route_rewrite(route, rreq, buf + 1, sizeof(buf) - 1, &changed);
        if (len == PT_TOOBIG) {
            pt_reply_bad_request(st);
            return;
        }
        if (len >= 0) { /* else (a regex that left nothing) the path stays, as Envoy's does */
            bool slash = len > 0 && buf[1] == '/';
            buf[0] = '/'; /* Envoy puts a '/' in front of a path that has none */
            loc[2] = pt_str_make(slash ? buf + 1 : buf, (size_t)len + !slash);
            loc[3] = (struct pt_str){ 0 };
        }
    }
    send_reply(st, rd->status, (struct pt_str){ 0 }, "-", &(struct reply_extra){ .location = loc });
}

void pt_reply_upstream_reset(struct pt_stream *st, const char *reason, const char *tfr,
                             const char *flags)
{
    static const char prefix[] = "upstream connect error or disconnect/reset before headers. reset reason: ";
    static const char retried[] = "upstream connect error or disconnect/reset before headers. retried and "
                                  "the latest reset reason: ";
    char body[sizeof(retried) + 64 + PT_TLS_ERROR_MAX + 32];
    int status = strcmp(reason, "protocol error") == 0 ? 502 : 503;
    const char *pre = st->tries > 0 ? retried : prefix; /* Envoy says so after a retry */
    int n = snprintf(body, sizeof(body), "%s%s%s%s", pre, reason,
                     tfr ? ", transport failure reason: " : "", tfr ? tfr : "");

    if (n < 0 || (size_t)n >= sizeof(body)) /* never sent cut: without the detail instead */
        n = snprintf(body, sizeof(body), "%s%.64s", pre, reason);
    if (n < 0 || (size_t)n >= sizeof(body))
        n = (int)sizeof(prefix) - 1;
    if (tfr != NULL) /* %UPSTREAM_TRANSPORT_FAILURE_REASON% */
        pt_accesslog_keep(&st->rec, pt_str_c(tfr), &st->rec.lf_tfr);
    send_reply(st, status, pt_str_make(body, (size_t)n), flags, NULL);
}

void pt_reply_overflow(struct pt_stream *st)
{
    static const struct pt_header overloaded = { PT_STR_LIT("x-envoy-overloaded"), PT_STR_LIT("true") };

    send_reply(st, 503, PT_STR_LIT("upstream connect error or disconnect/reset before headers. reset reason: overflow"),
               "UO", &(struct reply_extra){ .headers = &overloaded, .nheaders = 1 });
}
