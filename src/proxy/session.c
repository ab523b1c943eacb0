/* Routing one request and writing the heads each side sees. Dispatch parses the head, picks the
 * Host (virtual host) and route, applies the Listener's security model and the Host's insecure
 * action, chooses an endpoint round-robin, and writes the upstream request head with the
 * headers Envoy adds (x-forwarded-for/-proto, x-request-id, x-envoy-original-path,
 * x-envoy-expected-rq-timeout-ms). The response side drops hop-by-hop headers and adds
 * x-envoy-upstream-service-time and server. Called by proxy/http1.c. */
#include "proxy/session.h"
#include "proxy/proxy.h"
#include "cluster/lb.h"
#include "config/snapshot.h"
#include "http/h1.h"
#include "http/path.h"
#include "route/route.h"
#include "observe/trace.h"
#include "observe/logformat.h"
#include "tls/tls.h"

#include <stdio.h>
#include <time.h>

/* A head being written into the worker's scratch area. */
struct head_builder {
    char *p, *end;
    bool overflow;
};

static void hb_put(struct head_builder *b, const char *s, size_t n)
{
    if ((size_t)(b->end - b->p) < n) {
        b->overflow = true;
        return;
    }
    memcpy(b->p, s, n);
    b->p += n;
}

static void hb_str(struct head_builder *b, struct pt_str s)
{
    hb_put(b, s.ptr, s.len);
}

#define hb_lit(b, s) hb_put((b), (s), sizeof(s) - 1)

static void hb_header(struct head_builder *b, struct pt_str name, struct pt_str value)
{
    hb_str(b, name);
    hb_lit(b, ": ");
    hb_str(b, value);
    hb_lit(b, "\r\n");
}

static void hb_uint(struct head_builder *b, uint64_t v)
{
    char tmp[24], *q = tmp + sizeof(tmp);
    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    hb_put(b, q, (size_t)(tmp + sizeof(tmp) - q));
}

static bool name_in(struct pt_str name, const struct pt_str *list, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (pt_str_caseeq(name, list[i]))
            return true;
    return false;
}

static bool name_in_ops(struct pt_str name, const struct pt_hdr_op *ops, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (!ops[i].append && pt_str_caseeq(name, ops[i].name))
            return true;
    return false;
}

/* Connection-specific headers (RFC 9110 §7.6.1) that never cross the proxy. */
static bool hop_by_hop(struct pt_str n)
{
    switch (n.len) {
    case 2:
        return pt_str_caseeq(n, PT_STR_LIT("te"));
    case 7:
        return pt_str_caseeq(n, PT_STR_LIT("upgrade"));
    case 10:
        return pt_str_caseeq(n, PT_STR_LIT("connection")) || pt_str_caseeq(n, PT_STR_LIT("keep-alive"));
    case 16:
        return pt_str_caseeq(n, PT_STR_LIT("proxy-connection"));
    case 17:
        return pt_str_caseeq(n, PT_STR_LIT("transfer-encoding"));
    }
    return false;
}

int64_t pt_body_take(struct pt_body *b, const char *data, size_t len, bool *done, struct pt_str *send)
{
    size_t consumed;
    int r;

    *done = false;
    if (b->kind == PT_BODY_DECHUNK) {
        r = pt_h1_chunked_decode(&b->chunk, data, len, &consumed, send);
        if (r < 0)
            return PT_BADMSG;
        *done = r == 1;
        b->payload = b->chunk.data_total;
        return (int64_t)consumed;
    }
    *send = pt_str_make(data, 0);
    switch (b->kind) {
    case PT_BODY_NONE:
        *done = true;
        return 0;
    case PT_BODY_LENGTH:
        if (len >= b->remaining) {
            len = (size_t)b->remaining;
            *done = true;
        }
        b->remaining -= len;
        b->payload += len;
        send->len = len;
        return (int64_t)len;
    case PT_BODY_CHUNKED:
        r = pt_h1_chunked_scan(&b->chunk, data, len, &consumed);
        if (r < 0)
            return PT_BADMSG;
        *done = r == 1;
        b->payload = b->chunk.data_total;
        send->len = consumed;
        return (int64_t)consumed;
    case PT_BODY_UNTIL_CLOSE:
        b->payload += len;
        send->len = len;
        return (int64_t)len;
    case PT_BODY_DECHUNK:
    case PT_BODY_RECHUNK:
        break;
    }
    return 0;
}

int64_t pt_body_take_request(struct pt_body *b, const char *data, size_t len, bool *done, struct pt_body_out *o)
{
    size_t off = 0;
    int runs = 0;

    if (b->kind != PT_BODY_RECHUNK) {
        struct pt_str send;
        int64_t n = pt_body_take(b, data, len, done, &send);
        if (n > 0 && send.len > 0)
            o->iov[o->n++] = (struct iovec){ (void *)send.ptr, send.len };
        return n;
    }
    *done = false;
    while (off < len && runs < PT_BODY_RUNS) {
        struct pt_str run;
        size_t consumed;
        int r = pt_h1_chunked_decode(&b->chunk, data + off, len - off, &consumed, &run);
        if (r < 0)
            return r;
        off += consumed;
        if (run.len > 0) {
            char *h = o->heads[runs++];
            o->iov[o->n++] = (struct iovec){ h, pt_h1_chunk_head(h, run.len) };
            o->iov[o->n++] = (struct iovec){ (void *)run.ptr, run.len };
            o->iov[o->n++] = (struct iovec){ (void *)"\r\n", 2 };
        }
        if (r == 1) {
            o->iov[o->n++] = (struct iovec){ (void *)PT_H1_LAST_CHUNK, sizeof(PT_H1_LAST_CHUNK) - 1 };
            *done = true;
            break;
        }
    }
    b->payload = b->chunk.data_total;
    return (int64_t)off;
}

/* Writes a version-4 UUID from the worker's PRNG into out (36 bytes). */
static void make_request_id(struct pt_worker *w, char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = pt_worker_rand(w), c = pt_worker_rand(w);
    unsigned char bytes[16];
    int k = 0;

    memcpy(bytes, &a, 8);
    memcpy(bytes + 8, &c, 8);
    bytes[6] = (unsigned char)((bytes[6] & 0x0f) | 0x40);
    bytes[8] = (unsigned char)((bytes[8] & 0x3f) | 0x80);
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[k++] = '-';
        out[k++] = hex[bytes[i] >> 4];
        out[k++] = hex[bytes[i] & 15];
    }
}

/* The next comma-separated token of a Connection header value from *i (empty at the end). */
static struct pt_str next_token(struct pt_str v, size_t *i)
{
    size_t start, end;

    while (*i < v.len && (v.ptr[*i] == ' ' || v.ptr[*i] == '\t' || v.ptr[*i] == ','))
        (*i)++;
    start = *i;
    while (*i < v.len && v.ptr[*i] != ',')
        (*i)++;
    end = *i;
    while (end > start && (v.ptr[end - 1] == ' ' || v.ptr[end - 1] == '\t'))
        end--;
    return pt_str_make(v.ptr + start, end - start);
}

/* Headers a Connection option can never remove: they decide how the message is framed, where
 * it goes or whether it switches protocols, and Portico writes them itself. */
static bool connection_protected(struct pt_str n)
{
    switch (n.len) {
    case 2:
        return pt_str_caseeq(n, PT_STR_LIT("te"));
    case 4:
        return pt_str_caseeq(n, PT_STR_LIT("host"));
    case 7:
        return pt_str_caseeq(n, PT_STR_LIT("upgrade"));
    case 14:
        return pt_str_caseeq(n, PT_STR_LIT("content-length"));
    case 17:
        return pt_str_caseeq(n, PT_STR_LIT("transfer-encoding"));
    }
    return false;
}

/* connection_names: whether any Connection header of <req> (RFC 9110 §7.6.1: options come from
 * all of them) lists <name>. */
static bool connection_names(const struct pt_h1_request *req, struct pt_str name)
{
    for (size_t k = (size_t)req->idx_connection; k < req->nheaders; k++) {
        struct pt_str v = req->headers[k].value;
        size_t i = 0;
        if (req->headers[k].name.len != 10 || !pt_str_caseeq(req->headers[k].name, PT_STR_LIT("connection")))
            continue;
        while (i < v.len)
            if (pt_str_caseeq(next_token(v, &i), name))
                return true;
    }
    return false;
}

/* find_header: the value of the first header <name> in <h>, empty when there is none. */
static struct pt_str find_header(const struct pt_header *h, size_t n, struct pt_str name)
{
    const struct pt_header *f = pt_header_find(h, n, name);
    return f ? f->value : (struct pt_str){ 0 };
}

/* upgrade_check: whether the request asks to upgrade (Upgrade, and "upgrade" in Connection)
 * and may: 1 when the route's allow_upgrade (Emissary's upgrade_configs) names the protocol
 * offered first and the request is HTTP/1.1 without a body; -1 when it may not (Envoy answers
 * 403 then); 0 when it is not an upgrade, or an h2c one, which Envoy drops and serves as a
 * plain request. */
static int upgrade_check(const struct pt_downstream *ds)
{
    const struct pt_h1_request *req = &ds->req;
    const struct pt_route_action *a = ds->action;
    struct pt_str up, proto;
    size_t i = 0;

    if (!req->upgrade || (up = find_header(req->headers, req->nheaders, PT_STR_LIT("upgrade"))).len == 0)
        return 0;
    proto = next_token(up, &i); /* the first protocol offered: "websocket", "spdy/3.1" */
    if (pt_str_caseeq(proto, PT_STR_LIT("h2c")))
        return 0;
    for (uint32_t k = 0; k < a->nupgrades && ds->req_body.kind == PT_BODY_NONE; k++) {
        struct pt_str p = proto;
        const char *slash = memchr(p.ptr, '/', p.len);
        if (slash != NULL && memchr(a->upgrades[k].ptr, '/', a->upgrades[k].len) == NULL)
            p.len = (size_t)(slash - p.ptr); /* "websocket" allows any version */
        if (pt_str_caseeq(p, a->upgrades[k]))
            return 1;
    }
    return -1;
}

static struct pt_str header_at(const struct pt_h1_request *req, int idx)
{
    return idx >= 0 ? req->headers[idx].value : (struct pt_str){ 0 };
}

/* Appends <s> (at most 256 bytes; "-" when empty) to the log buffer at *p, bounded by end. */
static char *log_field(char *p, char *end, struct pt_str s)
{
    size_t n = s.len > 256 ? 256 : s.len;
    if (n == 0)
        s = PT_STR_LIT("-"), n = 1;
    if ((size_t)(end - p) < n + 3)
        return p;
    *p++ = '"';
    memcpy(p, s.ptr, n);
    p += n;
    *p++ = '"';
    return p;
}

/* log_field, remembering where the value landed (empty when it was absent). */
static char *log_field_at(char *p, char *end, struct pt_str v, struct pt_downstream *ds, struct pt_str_off *at)
{
    char *q = log_field(p, end, v);
    *at = (struct pt_str_off){ (uint16_t)(p + 1 - ds->log), (uint16_t)(v.len && q > p ? q - p - 2 : 0) };
    return q;
}

/* Keeps the request-side pieces of the access-log line: the line is finished after the
 * response, when the head's buffer may be gone. log = prefix '\0' suffix, then what a custom
 * format needs (observe/accesslog.c). No printf here: this runs for every request. */
static void keep_log_fields(struct pt_downstream *ds, struct pt_str path, const char *request_id)
{
    const struct pt_h1_request *req = &ds->req;
    struct pt_str rid = request_id ? pt_str_make(request_id, 36) : header_at(req, req->idx_x_request_id);
    struct pt_str auth = req->authority.len ? req->authority : req->host;
    char *p = ds->log, *q, *end = ds->log + sizeof(ds->log) - 1;
    size_t mn = req->method.len > 32 ? 32 : req->method.len, pn = path.len > 1024 ? 1024 : path.len;

    *p++ = '"';
    ds->lf_method = (struct pt_str_off){ (uint16_t)(p - ds->log), (uint16_t)mn };
    memcpy(p, req->method.ptr, mn);
    p += mn;
    *p++ = ' ';
    ds->lf_path = (struct pt_str_off){ (uint16_t)(p - ds->log), (uint16_t)pn };
    memcpy(p, path.ptr, pn);
    p += pn;
    memcpy(p, " HTTP/1.1\"", 10);
    p[8] = (char)('0' + req->minor_version);
    p += 10;
    ds->log_mid = (uint16_t)(p - ds->log);
    *p++ = '\0';
    {
        /* %REQ(X-FORWARDED-FOR)% is logged as forwarded: with the client address appended. */
        struct pt_str xff = header_at(req, req->idx_x_forwarded_for);
        char buf[320];
        size_t pl = strlen(ds->peer_ip), xl = xff.len > 256 ? 256 : xff.len;
        if (xl) {
            memcpy(buf, xff.ptr, xl);
            buf[xl++] = ',';
        }
        memcpy(buf + xl, ds->peer_ip, pl);
        q = log_field(p, end, pt_str_make(buf, xl + pl));
        ds->lf_xff = (struct pt_str_off){ (uint16_t)(p + 1 - ds->log), (uint16_t)(q > p ? q - p - 2 : 0) };
        p = q;
    }
    *p++ = ' ';
    p = log_field_at(p, end, header_at(req, req->idx_user_agent), ds, &ds->lf_ua);
    *p++ = ' ';
    p = log_field_at(p, end, rid, ds, &ds->lf_rid);
    *p++ = ' ';
    p = log_field_at(p, end, auth, ds, &ds->lf_auth);
    ds->log_len = ds->log_used = (uint16_t)(p - ds->log);
    ds->lf_tfr.len = ds->lf_ctype.len = 0;
    ds->log_nhdr = 0;
    if (ds->snap->log.fmt != NULL && ds->snap->log.fmt->nheaders != 0)
        pt_accesslog_capture(ds); /* the headers a custom format names */
}

/* normalize_target: makes the request's path what Envoy's normalize_path (always on in Emissary)
 * and the Module's merge_slashes and reject_requests_with_escaped_slashes make it (http/path.h),
 * before anything reads it: matching, rewriting, the request line, x-envoy-original-path, the
 * access log, tracing and the https redirect all see the normalized path, as with Envoy. The
 * normalized "path[?query]" replaces the old one in the head's own bytes (ds->in, which the
 * request owns until it ends), so that a retry can rebuild the request from it; only when
 * escaping made it longer does the path stay in w->pathbuf (and then the request is never
 * retried). The query is never changed. Returns 0, PT_BADMSG for a path Envoy rejects, or
 * PT_TOOBIG when the result does not fit in w->pathbuf. */
static int normalize_target(struct pt_downstream *ds)
{
    struct pt_h1_request *req = &ds->req;
    unsigned flags = (ds->snap->http.merge_slashes ? PT_PATH_MERGE_SLASHES : 0) |
                     (ds->snap->http.reject_escaped_slashes ? PT_PATH_REJECT_ESCAPED_SLASHES : 0);
    const char *end = req->target.ptr + req->target.len;
    char *buf = ds->w->pathbuf;
    int n;

    if (req->path.len == 0 || req->path.ptr[0] != '/' ||
        !pt_path_needs_normalizing(req->path, flags))
        return 0;
    n = pt_path_normalize(req->path, flags, buf, sizeof(ds->w->pathbuf));
    if (n < 0)
        return n;
    if (req->path.ptr < req->target.ptr || req->path.ptr >= end ||
        (size_t)n > req->path.len) { /* not in the head's bytes, or longer: in pathbuf */
        size_t q = req->query.ptr != NULL ? 1 + req->query.len : 0;
        if (q <= sizeof(ds->w->pathbuf) - (size_t)n) { /* "path?query" for the log */
            if (q != 0) {
                buf[n] = '?';
                memcpy(buf + n + 1, req->query.ptr, req->query.len);
            }
            req->target = pt_str_make(buf, (size_t)n + q);
        }
        req->path = pt_str_make(buf, (size_t)n);
        return 0;
    }
    char *dst = (char *)req->path.ptr; /* the head's bytes: writable, owned by this request */
    memcpy(dst, buf, (size_t)n);
    if (req->query.ptr != NULL) {
        dst[n] = '?';
        memmove(dst + n + 1, req->query.ptr, req->query.len);
        req->query.ptr = dst + n + 1;
    }
    req->path.len = (size_t)n;
    req->target.len = (size_t)(dst - req->target.ptr) + (size_t)n +
                      (req->query.ptr != NULL ? 1 + req->query.len : 0);
    return 0;
}

/* The virtual host for <host>: vhosts are sorted so the first glob that matches wins. */
static struct pt_vhost *find_vhost(const struct pt_listener *l, struct pt_str host)
{
    for (uint32_t i = 0; i < l->nvhosts; i++)
        if (pt_hostglob_match(l->vhosts[i]->hostname, host))
            return l->vhosts[i];
    return NULL;
}

/* sni_context: the termination context a handshake naming <name> (NULL: no SNI) gets on
 * listener <l>, as tls/sni.c chooses it. */
static SSL_CTX *sni_context(const struct pt_listener *l, const char *name)
{
    SSL_CTX *ctx = pt_tls_sni_map_lookup(l->sni, name);
    return ctx != NULL ? ctx : l->tls_ctx;
}

/* sni_agrees: whether the Host a TLS request names (<host>, without port) would have been
 * given the same TLS context as the SNI its connection sent. When they differ, the request
 * must not reach that Host's routes: a client could pass a Host's client-certificate check by
 * naming another Host in its handshake. Compared in the current snapshot, so a reload between
 * the handshake and the request changes nothing. */
static bool sni_agrees(const struct pt_downstream *ds, const struct pt_listener *l, struct pt_str host)
{
    char name[256];

    if (ds->ssl == NULL || l->sni == NULL)
        return true;
    if (host.len >= sizeof(name))
        return false;
    memcpy(name, host.ptr, host.len);
    name[host.len] = '\0';
    return sni_context(l, SSL_get_servername(ds->ssl, TLSEXT_NAMETYPE_host_name)) == sni_context(l, name);
}

static bool request_is_secure(const struct pt_downstream *ds, const struct pt_listener *l)
{
    struct pt_str xfp;

    switch (l->security_model) {
    case PT_SECURITY_SECURE:
        return true;
    case PT_SECURITY_INSECURE:
        return false;
    case PT_SECURITY_XFP:
        break;
    }
    /* As Envoy at the edge: X-Forwarded-Proto is only believed from trusted hops (l7Depth);
     * otherwise it is the connection's own scheme. */
    xfp = header_at(&ds->req, ds->req.idx_x_forwarded_proto);
    if (l->l7_depth > 0 && xfp.len)
        return pt_str_caseeq(xfp, PT_STR_LIT("https"));
    return (ds->flags & PT_DSF_TLS) != 0;
}

/* Writes the upstream request head into the worker's scratch area; returns its length or 0. */
static size_t build_request_head(struct pt_downstream *ds, const struct pt_route *route,
                                 const struct pt_route_req *rreq, const char *request_id)
{
    struct pt_worker *w = ds->w;
    const struct pt_h1_request *req = &ds->req;
    const struct pt_route_action *a = ds->action;
    const struct pt_listener *l = ds->listener;
    struct head_builder b = { w->scratch, w->scratch + sizeof(w->scratch), false };
    char *path = w->scratch + sizeof(w->scratch) - 8192;
    bool rewritten = false, keep_xfp = l->l7_depth > 0;
    bool own_host = a->host_rewrite.len || a->auto_host_rewrite || req->authority.len;
    int plen;

    b.end = path; /* the rewritten path lives at the end of the scratch area */
    plen = pt_route_rewrite(route, rreq, path, 8192, &rewritten);
    if (plen < 0)
        return 0;
    hb_str(&b, req->method);
    hb_lit(&b, " ");
    hb_put(&b, path, (size_t)plen);
    hb_lit(&b, " HTTP/1.1\r\n");
    for (size_t i = 0; i < req->nheaders; i++) {
        struct pt_str n = req->headers[i].name;
        /* Every copy of the forwarding headers, not only the first: a second
         * X-Forwarded-Proto must not slip past the one we set. */
        if (hop_by_hop(n) || (n.len == 15 && pt_str_caseeq(n, PT_STR_LIT("x-forwarded-for"))))
            continue;
        if (n.len == 14 && pt_str_caseeq(n, PT_STR_LIT("content-length")))
            continue; /* framing is written below from what was parsed */
        if (!keep_xfp && n.len == 17 && pt_str_caseeq(n, PT_STR_LIT("x-forwarded-proto")))
            continue;
        if ((int)i == req->idx_host && own_host)
            continue;
        if (n.len == 6 && pt_str_caseeq(n, PT_STR_LIT("expect")))
            continue; /* answered here, as Envoy does */
        if (n.len >= 21 && (pt_str_caseeq(n, PT_STR_LIT("x-envoy-original-path")) ||
                            pt_str_caseeq(n, PT_STR_LIT("x-envoy-expected-rq-timeout-ms"))))
            continue; /* ours to set, never the client's */
        if (req->conn_options && !connection_protected(n) && connection_names(req, n))
            continue;
        if (ds->trace_cfg != NULL && n.len >= 11 && pt_trace_is_b3_header(n))
            continue; /* replaced by the router span's context */
        if (name_in(n, a->remove_req, a->nremove_req) || name_in_ops(n, a->add_req, a->nadd_req))
            continue;
        hb_header(&b, n, req->headers[i].value);
    }
    if (a->host_rewrite.len)
        hb_header(&b, PT_STR_LIT("host"), a->host_rewrite);
    else if (a->auto_host_rewrite && a->cluster->host)
        hb_header(&b, PT_STR_LIT("host"), pt_str_c(a->cluster->host));
    else if (req->authority.len) /* an absolute-form target replaces Host (RFC 9112 §3.2.2) */
        hb_header(&b, PT_STR_LIT("host"), req->authority);
    else if (req->idx_host < 0) /* HTTP/1.0 without Host: the service's name */
        hb_header(&b, PT_STR_LIT("host"), pt_str_c(a->cluster->host));
    hb_lit(&b, "x-forwarded-for: ");
    for (size_t i = req->idx_x_forwarded_for >= 0 ? (size_t)req->idx_x_forwarded_for : req->nheaders;
         i < req->nheaders; i++) {
        struct pt_str n = req->headers[i].name;
        if (n.len == 15 && pt_str_caseeq(n, PT_STR_LIT("x-forwarded-for")) && req->headers[i].value.len) {
            hb_str(&b, req->headers[i].value); /* several headers are one comma list */
            hb_lit(&b, ",");
        }
    }
    hb_put(&b, ds->peer_ip, strlen(ds->peer_ip));
    hb_lit(&b, "\r\n");
    if (!keep_xfp || req->idx_x_forwarded_proto < 0)
        hb_header(&b, PT_STR_LIT("x-forwarded-proto"),
                  (ds->flags & PT_DSF_TLS) ? PT_STR_LIT("https") : PT_STR_LIT("http"));
    if (request_id)
        hb_header(&b, PT_STR_LIT("x-request-id"), pt_str_make(request_id, 36));
    if (rewritten) {
        hb_lit(&b, "x-envoy-original-path: ");
        hb_str(&b, req->path);
        if (req->query.ptr) {
            hb_lit(&b, "?");
            hb_str(&b, req->query);
        }
        hb_lit(&b, "\r\n");
    }
    if (a->timeout_ms) {
        hb_lit(&b, "x-envoy-expected-rq-timeout-ms: ");
        hb_uint(&b, a->timeout_ms);
        hb_lit(&b, "\r\n");
    }
    for (uint32_t i = 0; i < a->nadd_req; i++)
        hb_header(&b, a->add_req[i].name, a->add_req[i].value);
    if (ds->trace_cfg != NULL && b.end - b.p > PT_TRACE_INJECT_MAX)
        b.p += pt_trace_inject(&ds->trace, b.p, (size_t)(b.end - b.p));
    if (req->chunked) { /* the framing Portico parsed, never a header the client sent */
        hb_lit(&b, "transfer-encoding: chunked\r\n");
    } else if (req->content_length >= 0) {
        hb_lit(&b, "content-length: ");
        hb_uint(&b, (uint64_t)req->content_length);
        hb_lit(&b, "\r\n");
    }
    if (ds->flags & PT_DSF_UPGRADE) {
        hb_lit(&b, "connection: upgrade\r\n");
        hb_header(&b, PT_STR_LIT("upgrade"), find_header(req->headers, req->nheaders, PT_STR_LIT("upgrade")));
    }
    hb_lit(&b, "\r\n");
    return b.overflow ? 0 : (size_t)(b.p - w->scratch);
}

/* pick_endpoint: an endpoint of <c> for <ds> (cluster/lb.h). A retry picks again: the pick
 * it replaces ended with its pooled connection reset. */
static const struct pt_endpoint *pick_endpoint(struct pt_downstream *ds, const struct pt_cluster *c)
{
    pt_lb_release(&ds->w->lb, &ds->lb_pick, PT_LB_RESET);
    return pt_lb_pick(&ds->w->lb, c, NULL, &ds->lb_pick);
}

static struct pt_str log_slice(const struct pt_downstream *ds, struct pt_str_off o)
{
    return o.len ? pt_str_make(ds->log + o.off, o.len) : (struct pt_str){ 0 };
}

void pt_session_observe_end(struct pt_downstream *ds)
{
    if (ds->flags & PT_DSF_TUNNEL) {
        struct pt_http_stats *hs = pt_ds_http_stats(ds);
        if (hs != NULL)
            pt_gauge_dec(&hs->downstream_cx_upgrades_active);
    }
    if (ds->trace_cfg != NULL) {
        const struct pt_route_action *a = ds->action;
        struct pt_trace_request_info info = {
            .method = log_slice(ds, ds->lf_method),
            .authority = log_slice(ds, ds->lf_auth),
            .path = log_slice(ds, ds->lf_path),
            .scheme = (ds->flags & PT_DSF_TLS) ? PT_STR_LIT("https") : PT_STR_LIT("http"),
            .protocol = ds->req.minor_version ? PT_STR_LIT("HTTP/1.1") : PT_STR_LIT("HTTP/1.0"),
            .user_agent = log_slice(ds, ds->lf_ua),
            .request_id = log_slice(ds, ds->lf_rid),
            .peer_ip = pt_str_c(ds->peer_ip),
            .upstream_address = ds->endpoint ? pt_str_c(ds->endpoint->name) : (struct pt_str){ 0 },
            .cluster_name = a ? pt_str_c(a->cluster->name) : (struct pt_str){ 0 },
            .stats_name = a ? pt_str_c(a->cluster->stats_name) : (struct pt_str){ 0 },
            .response_flags = pt_str_c(ds->flags_str ? ds->flags_str : "-"),
            .status = ds->status,
            .upstream_status = ds->upstream_status,
            .bytes_received = ds->bytes_rx,
            .bytes_sent = ds->bytes_tx,
        };
        pt_trace_finish(ds->w->trace, ds->trace_cfg, &ds->trace, &info);
        ds->trace_cfg = NULL;
    }
    pt_accesslog_request(ds);
}

/* route_req: what route matching and rewriting see of <req> (after path normalization). */
static struct pt_route_req route_req(const struct pt_h1_request *req)
{
    return (struct pt_route_req){ .method = req->method, .path = req->path, .query = req->query,
                                  .authority = req->authority.len ? req->authority : req->host,
                                  .headers = req->headers, .nheaders = req->nheaders };
}

/* send_upstream: picks an endpoint and sends it the request head and whatever of the body is
 * here, on a pooled connection or (<fresh>) a new one. False when the request ended here (a
 * local reply, or the error path took it). */
static bool send_upstream(struct pt_downstream *ds, const struct pt_route_req *rreq, const char *rid, bool fresh)
{
    struct pt_worker *w = ds->w;
    const struct pt_h1_request *req = &ds->req;
    struct pt_upstream *up;
    bool reused;
    size_t hlen;

    ds->endpoint = pick_endpoint(ds, ds->action->cluster);
    hlen = build_request_head(ds, ds->route, rreq, rid);
    if (hlen == 0) {
        pt_reply_bad_request(ds);
        return false;
    }
    if (req->expect_continue && !(ds->flags & PT_DSF_REQ_DONE) && ds->in.len == 0) {
        struct iovec iov = { (void *)"HTTP/1.1 100 Continue\r\n\r\n", 25 };
        if (pt_ds_send(ds, &iov, 1) == PT_IO) {
            pt_ds_abort(ds);
            return false;
        }
    }
    up = pt_up_acquire(w, ds->action->cluster, ds->endpoint, fresh, &reused);
    if (up == NULL) {
        pt_reply_upstream_reset(ds, "local connection failure", NULL, "UF");
        return false;
    }
    if (reused)
        ds->flags |= PT_DSF_REUSED_UP;
    up->ds = ds;
    ds->up = up;
    if (ds->trace_cfg != NULL)
        pt_trace_upstream_begin(&ds->trace); /* once: a retry keeps the first start */
    ds->upstream_start_ms = ds->start_ms;
    {
        bool done = ds->flags & PT_DSF_REQ_DONE;
        struct pt_body_out out;
        int64_t body = 0;
        out.iov[0] = (struct iovec){ w->scratch, hlen };
        out.n = 1;
        if (!done && ds->in.len > 0) {
            body = pt_body_take_request(&ds->req_body, pt_buf_data(&ds->in), ds->in.len, &done, &out);
            if (body < 0) {
                pt_reply_bad_request(ds);
                return false;
            }
        }
        if (pt_up_send(up, out.iov, out.n) == PT_IO) {
            pt_ds_on_upstream_error(ds, "connection termination", NULL, "UC");
            return ds->up != NULL; /* retried on a new connection (pt_session_retry) */
        }
        pt_buf_consume(&ds->in, (uint32_t)body);
        ds->bytes_rx = ds->req_body.payload;
        if (done)
            ds->flags |= PT_DSF_REQ_DONE;
        if (done && up->out.len == 0)
            ds->flags |= PT_DSF_REQ_SENT;
    }
    return true;
}

bool pt_session_retry(struct pt_downstream *ds)
{
    const struct pt_h1_request *req = &ds->req;
    const struct pt_worker *w = ds->w;
    struct pt_route_req rreq;
    char rid[37];

    switch (req->method_id) {
    case PT_H1_METHOD_GET:
    case PT_H1_METHOD_HEAD:
    case PT_H1_METHOD_OPTIONS:
    case PT_H1_METHOD_DELETE:
        break;
    default:
        return false; /* only methods that may be repeated */
    }
    if (ds->req_body.kind != PT_BODY_NONE || ds->route == NULL ||
        (req->path.ptr >= w->pathbuf && req->path.ptr < w->pathbuf + sizeof(w->pathbuf)))
        return false; /* a body is not kept; a normalized path lived in a shared buffer */
    rreq = route_req(req);
    if (req->idx_x_request_id < 0) { /* the id made for this request, as the log kept it */
        if (ds->lf_rid.len != 36)
            return false;
        memcpy(rid, ds->log + ds->lf_rid.off, 36);
    }
    ds->flags &= ~(PT_DSF_REUSED_UP | PT_DSF_REQ_SENT);
    send_upstream(ds, &rreq, req->idx_x_request_id < 0 ? rid : NULL, true);
    return true;
}

void pt_session_dispatch(struct pt_downstream *ds, size_t head_len)
{
    struct pt_worker *w = ds->w;
    struct pt_h1_limits lim = { pt_proxy_limits.max_head_bytes, pt_proxy_limits.max_headers };
    struct pt_h1_request *req = &ds->req;
    const struct pt_route *route;
    struct pt_route_req rreq;
    struct pt_vhost *vh;
    struct pt_str host;
    char request_id[37];
    const char *rid = NULL;
    int r;

    ds->start_ms = pt_loop_now_ms(w->loop);
    ds->status = 0;
    ds->upstream_status = 0;
    ds->flags_str = "-";
    ds->bytes_rx = 0; /* %BYTES_RECEIVED% counts body bytes, as Envoy does */
    ds->bytes_tx = 0;
    ds->upstream_ms = UINT32_MAX;
    ds->endpoint = NULL;
    ds->idle_ms = 0;
    ds->route = NULL;
    ds->action = NULL;
    ds->state = PT_DS_FORWARD;
    ds->log_len = 0; /* nothing of this request is logged yet */
    {
        struct pt_http_stats *hs = pt_ds_http_stats(ds);
        if (hs != NULL) {
            pt_stats_inc(&hs->downstream_rq_total);
            pt_gauge_inc(&hs->downstream_rq_active); /* until pt_ds_request_end */
        }
    }
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME_COARSE, &ts);
        ds->start_realtime_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    }
    r = pt_h1_parse_request(pt_buf_data(&ds->in), head_len, req, ds->hdrs, PT_ARRAY_SIZE(ds->hdrs), &lim);
    if (r <= 0) {
        pt_reply_refuse(ds, r == PT_NOTSUP ? 501 : 400);
        return;
    }

    /* The head's slices stay valid: the buffer is not compacted while this request runs. */
    pt_buf_consume(&ds->in, (uint32_t)head_len);
    ds->snap = w->snap;
    ds->snap->wref[w->id].inflight++;
    w->inflight++;
    ds->listener = pt_snapshot_find_listener(ds->snap, ds->port);
    if (req->method_id == PT_H1_METHOD_HEAD)
        ds->flags |= PT_DSF_HEAD_METHOD;
    if (!req->keep_alive)
        ds->flags |= PT_DSF_CLOSE_AFTER;
    ds->req_body = (struct pt_body){ 0 };
    if (req->chunked)
        ds->req_body.kind = PT_BODY_RECHUNK;
    else if (req->content_length > 0)
        ds->req_body = (struct pt_body){ .kind = PT_BODY_LENGTH, .remaining = (uint64_t)req->content_length };
    else
        ds->flags |= PT_DSF_REQ_DONE;
    if (req->idx_x_request_id < 0) {
        make_request_id(w, request_id);
        rid = request_id;
    }
    int path_status = normalize_target(ds); /* first: the log and the trace see its result */
    keep_log_fields(ds, req->target, rid);
    ds->trace_cfg = NULL;
    if (ds->snap->tracing != NULL) {
        struct pt_trace_head th = { .headers = req->headers, .nheaders = req->nheaders, .method = req->method,
                                    .authority = req->authority.len ? req->authority : req->host,
                                    .path = req->target,
                                    .scheme = (ds->flags & PT_DSF_TLS) ? PT_STR_LIT("https") : PT_STR_LIT("http") };
        if (pt_trace_start(w->trace, ds->snap->tracing, &th, &ds->trace)) {
            ds->trace_cfg = ds->snap->tracing;
            if (rid != NULL) { /* Envoy packs the trace reason into the request id it makes */
                request_id[14] = pt_trace_reason_char(&ds->trace);
                if (ds->lf_rid.len == 36)
                    ds->log[ds->lf_rid.off + 14] = request_id[14];
            }
        }
    }
    if (req->minor_version == 0 && !ds->snap->http.enable_http10) {
        pt_reply_refuse(ds, 426); /* as Emissary's Envoy without enable_http10 */
        return;
    }
    if (ds->listener == NULL) { /* the listener went away with a reload */
        ds->flags |= PT_DSF_CLOSE_AFTER;
        pt_reply_local(ds, 404, (struct pt_str){ 0 }, "NR");
        return;
    }
    if (path_status == PT_BADMSG) { /* Envoy's path_normalization_failed: 400, empty body */
        pt_reply_local(ds, 400, (struct pt_str){ 0 }, "-");
        return;
    } else if (path_status < 0) { /* longer than w->pathbuf */
        pt_reply_bad_request(ds);
        return;
    }
    rreq = route_req(req);
    if (ds->snap->http.ip_deny_all) { /* Module ip_allow/ip_deny: not enforceable, fail closed */
        pt_reply_local(ds, 403, PT_STR_LIT("RBAC: access denied"), "-");
        return;
    }
    host = pt_authority_strip_port(rreq.authority);
    if (!sni_agrees(ds, ds->listener, host)) {
        pt_reply_refuse(ds, 421);
        return;
    }
    vh = find_vhost(ds->listener, host);
    if (vh == NULL) {
        pt_reply_local(ds, 404, (struct pt_str){ 0 }, "NR");
        return;
    }
    if (request_is_secure(ds, ds->listener)) {
        ds->flags |= PT_DSF_SECURE;
    } else if (req->path.len >= 28 && memcmp(req->path.ptr, "/.well-known/acme-challenge/", 28) == 0) {
        /* ACME HTTP-01 challenges are always routed in cleartext, as Emissary does */
    } else if (vh->insecure_action == PT_INSECURE_REDIRECT) {
        pt_reply_redirect_https(ds);
        return;
    } else if (vh->insecure_action == PT_INSECURE_REJECT) {
        pt_reply_local(ds, 404, (struct pt_str){ 0 }, "NR");
        return;
    }
    route = vh->routes ? pt_route_match(vh->routes, &rreq, (uint32_t)pt_worker_rand(w)) : NULL;
    if (route == NULL) {
        struct pt_http_stats *hs = pt_ds_http_stats(ds);
        if (hs != NULL)
            pt_stats_inc(&hs->no_route);
        pt_reply_local(ds, 404, (struct pt_str){ 0 }, "NR");
        return;
    }
    ds->action = pt_route_action(route);
    if (ds->snap->http.auth_deny && !ds->action->bypass_auth) { /* AuthService: fail closed */
        pt_reply_local(ds, 403, (struct pt_str){ 0 }, "UAEX");
        return;
    }
    if (req->upgrade) {
        int up = upgrade_check(ds);
        if (up < 0) {
            pt_reply_local(ds, 403, (struct pt_str){ 0 }, "-"); /* Envoy's upgrade_failed */
            return;
        }
        if (up > 0)
            ds->flags |= PT_DSF_UPGRADE;
    }
    {
        struct pt_cluster_stats *cs = pt_ds_cluster_stats(ds);
        if (cs != NULL) {
            pt_stats_inc(&cs->upstream_rq_total);
            pt_gauge_inc(&cs->upstream_rq_active);
            ds->flags |= PT_DSF_UP_ACTIVE;
            if (ds->action->cluster->nendpoints == 0)
                pt_stats_inc(&cs->upstream_cx_none_healthy);
        }
    }
    if (ds->action->cluster->nendpoints == 0) {
        pt_reply_local(ds, 503, PT_STR_LIT("no healthy upstream"), "UH");
        return;
    }
    ds->route = route;
    if (!send_upstream(ds, &rreq, rid, false))
        return;
    if (ds->action->timeout_ms)
        pt_timer_arm(w->loop, &ds->timer, ds->action->timeout_ms);
    ds->idle_ms = ds->action->idle_timeout_ms ? ds->action->idle_timeout_ms : pt_proxy_limits.stream_idle_timeout_ms;
    pt_ds_touch(ds);
    if (!(ds->flags & PT_DSF_REQ_DONE))
        pt_ds_on_upstream_writable(ds); /* more body may already be readable */
}

int pt_session_response_head(struct pt_downstream *ds)
{
    struct pt_worker *w = ds->w;
    struct pt_upstream *up = ds->up;
    struct pt_h1_limits lim = { pt_proxy_limits.max_head_bytes, pt_proxy_limits.max_headers };
    struct pt_h1_response res;
    const struct pt_route_action *a = ds->action;
    struct head_builder b = { w->scratch, w->scratch + sizeof(w->scratch), false };
    bool head_req = ds->flags & PT_DSF_HEAD_METHOD, close_after;
    int r;

    r = pt_h1_parse_response(pt_buf_data(&up->in), up->in.len, &res, w->resp_hdrs, PT_ARRAY_SIZE(w->resp_hdrs), &lim);
    if (r <= 0)
        return r == PT_AGAIN ? PT_AGAIN : PT_BADMSG;
    if (res.status < 200 && !(res.status == 101 && (ds->flags & PT_DSF_UPGRADE))) {
        /* 1xx interim responses are not forwarded (we answer Expect ourselves); 101 switches
         * protocols, which only an upgrade the route allows may ask for. */
        pt_buf_consume(&up->in, (uint32_t)r);
        return res.status == 101 ? PT_BADMSG : 1;
    }
    ds->status = res.status;
    ds->upstream_status = res.status;
    ds->upstream_ms = (uint32_t)(pt_loop_now_ms(w->loop) - ds->upstream_start_ms);
    pt_accesslog_capture_response(ds, res.headers, res.nheaders);
    if (res.keep_alive)
        ds->flags |= PT_DSF_UP_KEEPALIVE;
    ds->resp_body = (struct pt_body){ 0 };
    if (res.status == 101) { /* what follows the head is the other protocol, both ways */
        struct pt_http_stats *hs = pt_ds_http_stats(ds);
        if (hs != NULL)
            pt_gauge_inc(&hs->downstream_cx_upgrades_active); /* until observe_end */
        ds->resp_body.kind = PT_BODY_UNTIL_CLOSE;
        ds->flags |= PT_DSF_CLOSE_AFTER | PT_DSF_TUNNEL;
        ds->flags &= ~PT_DSF_UP_KEEPALIVE;
    } else if (!pt_h1_response_has_body(head_req, res.status))
        ds->resp_body.kind = PT_BODY_NONE;
    else if (res.chunked && ds->req.minor_version == 0) {
        ds->resp_body.kind = PT_BODY_DECHUNK; /* HTTP/1.0 cannot read chunks: the close ends it */
        ds->flags |= PT_DSF_CLOSE_AFTER;
    } else if (res.chunked)
        ds->resp_body.kind = PT_BODY_CHUNKED;
    else if (res.content_length >= 0)
        ds->resp_body = (struct pt_body){ .kind = res.content_length ? PT_BODY_LENGTH : PT_BODY_NONE,
                                          .remaining = (uint64_t)res.content_length };
    else {
        ds->resp_body.kind = PT_BODY_UNTIL_CLOSE;
        ds->flags |= PT_DSF_CLOSE_AFTER;
        ds->flags &= ~PT_DSF_UP_KEEPALIVE;
    }
    close_after = (ds->flags & PT_DSF_CLOSE_AFTER) || w->draining;
    if (w->draining)
        ds->flags |= PT_DSF_CLOSE_AFTER;
    hb_lit(&b, "HTTP/1.1 ");
    hb_uint(&b, (uint64_t)res.status);
    hb_lit(&b, " ");
    if (res.reason.len)
        hb_str(&b, res.reason);
    else
        hb_put(&b, pt_reason_phrase(res.status), strlen(pt_reason_phrase(res.status)));
    hb_lit(&b, "\r\n");
    for (size_t i = 0; i < res.nheaders; i++) {
        struct pt_str n = res.headers[i].name;
        if (hop_by_hop(n))
            continue;
        if (n.len == 6 && pt_str_caseeq(n, PT_STR_LIT("server")))
            continue;
        if (name_in(n, a->remove_resp, a->nremove_resp) || name_in_ops(n, a->add_resp, a->nadd_resp))
            continue;
        hb_header(&b, n, res.headers[i].value);
    }
    if (res.chunked && ds->resp_body.kind == PT_BODY_CHUNKED)
        hb_lit(&b, "transfer-encoding: chunked\r\n");
    hb_lit(&b, "x-envoy-upstream-service-time: ");
    hb_uint(&b, ds->upstream_ms);
    hb_lit(&b, "\r\nserver: envoy\r\n");
    for (uint32_t i = 0; i < a->nadd_resp; i++)
        hb_header(&b, a->add_resp[i].name, a->add_resp[i].value);
    if (ds->flags & PT_DSF_TUNNEL) {
        hb_lit(&b, "connection: upgrade\r\n");
        hb_header(&b, PT_STR_LIT("upgrade"), find_header(res.headers, res.nheaders, PT_STR_LIT("upgrade")));
    } else if (close_after)
        hb_lit(&b, "connection: close\r\n");
    else if (ds->req.minor_version == 0)
        hb_lit(&b, "connection: keep-alive\r\n");
    hb_lit(&b, "\r\n");
    if (b.overflow)
        return PT_BADMSG;
    pt_buf_consume(&up->in, (uint32_t)r);
    pt_stats_downstream_code(pt_ds_http_stats(ds), res.status);
    pt_stats_upstream_code(pt_ds_cluster_stats(ds), res.status);
    ds->flags |= PT_DSF_RESP_HEAD;
    {
        /* The head and the body bytes already here leave in one writev. */
        bool done;
        struct pt_str body;
        int64_t n = pt_body_take(&ds->resp_body, pt_buf_data(&up->in), up->in.len, &done, &body);
        struct iovec iov[2] = { { w->scratch, (size_t)(b.p - w->scratch) }, { (void *)body.ptr, 0 } };
        if (n < 0)
            return PT_BADMSG;
        iov[1].iov_len = body.len;
        if (pt_ds_send(ds, iov, body.len ? 2 : 1) == PT_IO) {
            pt_ds_abort(ds);
            return 0;
        }
        pt_buf_consume(&up->in, (uint32_t)n);
        ds->bytes_tx = ds->resp_body.payload; /* %BYTES_SENT%: body bytes, as Envoy counts */
        if (done)
            ds->flags |= PT_DSF_RESP_DONE;
    }
    if (ds->flags & PT_DSF_TUNNEL) {
        /* The client's bytes now flow upstream until either side closes; the route timeout
         * gives way to the idle timeout (the Mapping's, else the connection's). */
        ds->req_body = (struct pt_body){ .kind = PT_BODY_UNTIL_CLOSE };
        ds->flags &= ~(PT_DSF_REQ_DONE | PT_DSF_REQ_SENT);
        pt_timer_cancel(&ds->timer);
        ds->idle_ms = ds->action->idle_timeout_ms ? ds->action->idle_timeout_ms : pt_proxy_limits.idle_timeout_ms;
        pt_ds_touch(ds);
        pt_ds_on_upstream_writable(ds);
    }
    return 0;
}
