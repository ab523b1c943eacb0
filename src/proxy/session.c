/* Routing one request and deciding the heads each side sees. Dispatch parses the head,
 * normalizes the path, checks SNI against Host, picks the Host (virtual host) and route,
 * applies the Listener's security model, the Host's insecure action and what fails closed,
 * chooses an endpoint (cluster/lb.c), and has the upstream request head written (http/h1write.h)
 * with the headers Envoy adds (x-forwarded-for/-proto, x-request-id, x-envoy-original-path,
 * x-envoy-expected-rq-timeout-ms) and the framing Portico parsed. The response side drops
 * hop-by-hop headers and adds x-envoy-upstream-service-time and server. Called by
 * proxy/stream.c. */
#include "proxy/session.h"
#include "proxy/proxy.h"
#include "proxy/httpclient.h"
#include "proxy/grpcweb.h"
#include "proxy/policy.h"
#include "proxy/retry.h"
#include "proxy/cors.h"
#include "proxy/format.h"
#include "proxy/lbhash.h"
#include "proxy/shadow.h"
#include "observe/grpcstats.h"
#include "cluster/lb.h"
#include "core/cidr.h"
#include "config/snapshot.h"
#include "http/h1.h"
#include "http/h1write.h"
#include "http/body.h"
#include "http/path.h"
#include "route/route.h"
#include "observe/trace.h"
#include "observe/logformat.h"
#include "tls/tls.h"

#include <stdio.h>
#include <time.h>

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

/* Writes a version-4 UUID from the worker's PRNG into out (36 bytes): two hex digits per byte
 * from a table, in the 8-4-4-4-12 layout. */
static void make_request_id(struct pt_worker *w, char *out)
{
    static const uint8_t at[16] = { 0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34 };
    uint64_t a = pt_worker_rand(w), c = pt_worker_rand(w);
    unsigned char bytes[16];

    memcpy(bytes, &a, 8);
    memcpy(bytes + 8, &c, 8);
    bytes[6] = (unsigned char)((bytes[6] & 0x0f) | 0x40);
    bytes[8] = (unsigned char)((bytes[8] & 0x3f) | 0x80);
    for (int i = 0; i < 16; i++)
        memcpy(out + at[i], pt_hex_pairs + 2 * bytes[i], 2);
    out[8] = out[13] = out[18] = out[23] = '-';
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
static int upgrade_check(const struct pt_stream *st)
{
    const struct pt_h1_request *req = &st->req;
    const struct pt_route_action *a = st->rec.action;
    struct pt_str up, proto;
    size_t i = 0;

    if (!req->upgrade || (up = find_header(req->headers, req->nheaders, PT_STR_LIT("upgrade"))).len == 0)
        return 0;
    proto = pt_http_list_next(up, &i); /* the first protocol offered: "websocket", "spdy/3.1" */
    if (pt_str_caseeq(proto, PT_STR_LIT("h2c")))
        return 0;
    for (uint32_t k = 0; k < a->nupgrades && st->req_body.kind == PT_BODY_NONE; k++) {
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
    pt_memcpy_short(p, s.ptr, n);
    p += n;
    *p++ = '"';
    return p;
}

/* log_field, remembering where the value landed (empty when it was absent). */
static char *log_field_at(char *p, char *end, struct pt_str v, struct pt_stream *st, struct pt_str_off *at)
{
    char *q = log_field(p, end, v);
    *at = (struct pt_str_off){ (uint16_t)(p + 1 - st->rec.log), (uint16_t)(v.len && q > p ? q - p - 2 : 0) };
    return q;
}

/* Keeps the request-side pieces of the access-log line: the line is finished after the
 * response, when the head's buffer may be gone. log = prefix '\0' suffix, then what a custom
 * format needs (observe/accesslog.c). No printf here: this runs for every request. */
static void keep_log_fields(struct pt_stream *st, struct pt_str path, const char *request_id)
{
    const struct pt_h1_request *req = &st->req;
    struct pt_str rid = request_id ? pt_str_make(request_id, 36) : header_at(req, req->idx_x_request_id);
    struct pt_str auth = req->authority.len ? req->authority : req->host;
    char *p = st->rec.log, *q, *end = st->rec.log + sizeof(st->rec.log) - 1;
    size_t mn = req->method.len > 32 ? 32 : req->method.len, pn = path.len > 1024 ? 1024 : path.len;

    *p++ = '"';
    st->rec.lf_method = (struct pt_str_off){ (uint16_t)(p - st->rec.log), (uint16_t)mn };
    memcpy(p, req->method.ptr, mn);
    p += mn;
    *p++ = ' ';
    st->rec.lf_path = (struct pt_str_off){ (uint16_t)(p - st->rec.log), (uint16_t)pn };
    memcpy(p, path.ptr, pn);
    p += pn;
    {
        struct pt_str proto = pt_record_protocol(&st->rec);
        *p++ = ' ';
        memcpy(p, proto.ptr, proto.len);
        p += proto.len;
        *p++ = '"';
    }
    st->rec.log_mid = (uint16_t)(p - st->rec.log);
    *p++ = '\0';
    {
        /* %REQ(X-FORWARDED-FOR)% is logged as forwarded: with the client address appended. */
        struct pt_str xff = header_at(req, req->idx_x_forwarded_for);
        char buf[320];
        size_t pl = st->conn->peer_ip_len, xl = xff.len > 256 ? 256 : xff.len;
        if (xl) {
            memcpy(buf, xff.ptr, xl);
            buf[xl++] = ',';
        }
        memcpy(buf + xl, st->conn->peer_ip, pl);
        q = log_field(p, end, pt_str_make(buf, xl + pl));
        st->rec.lf_xff = (struct pt_str_off){ (uint16_t)(p + 1 - st->rec.log), (uint16_t)(q > p ? q - p - 2 : 0) };
        p = q;
    }
    *p++ = ' ';
    p = log_field_at(p, end, header_at(req, req->idx_user_agent), st, &st->rec.lf_ua);
    *p++ = ' ';
    p = log_field_at(p, end, rid, st, &st->rec.lf_rid);
    *p++ = ' ';
    p = log_field_at(p, end, auth, st, &st->rec.lf_auth);
    st->rec.log_len = st->rec.log_used = (uint16_t)(p - st->rec.log);
    st->rec.lf_tfr.len = st->rec.lf_ctype.len = 0;
    st->rec.log_nhdr = 0;
    if (st->snap->log.fmt != NULL && st->snap->log.fmt->nheaders != 0)
        pt_accesslog_capture(&st->rec, req->headers, req->nheaders); /* a custom format's headers */
}

/* normalize_target: makes the request's path what Envoy's normalize_path (always on in Emissary)
 * and the Module's merge_slashes and reject_requests_with_escaped_slashes make it (http/path.h),
 * before anything reads it: matching, rewriting, the request line, x-envoy-original-path, the
 * access log, tracing and the https redirect all see the normalized path, as with Envoy. The
 * normalized "path[?query]" replaces the old one in the head's own bytes (st->conn->in, which the
 * request owns until it ends), so that a retry can rebuild the request from it; only when
 * escaping made it longer does the path stay in w->pathbuf (and then the request is never
 * retried). The query is never changed. Returns 0, PT_BADMSG for a path Envoy rejects, or
 * PT_TOOBIG when the result does not fit in w->pathbuf. */
static int normalize_target(struct pt_stream *st)
{
    struct pt_h1_request *req = &st->req;
    unsigned flags = (st->snap->http.merge_slashes ? PT_PATH_MERGE_SLASHES : 0) |
                     (st->snap->http.reject_escaped_slashes ? PT_PATH_REJECT_ESCAPED_SLASHES : 0);
    const char *end = req->target.ptr + req->target.len;
    char *buf = st->w->pathbuf;
    int n;

    if (req->path.len == 0 || req->path.ptr[0] != '/' ||
        !pt_path_needs_normalizing(req->path, flags))
        return 0;
    n = pt_path_normalize(req->path, flags, buf, sizeof(st->w->pathbuf));
    if (n < 0)
        return n;
    if (req->path.ptr < req->target.ptr || req->path.ptr >= end ||
        (size_t)n > req->path.len) { /* not in the head's bytes, or longer: in pathbuf */
        size_t q = req->query.ptr != NULL ? 1 + req->query.len : 0;
        if (q <= sizeof(st->w->pathbuf) - (size_t)n) { /* "path?query" for the log */
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
static bool sni_agrees(const struct pt_stream *st, const struct pt_listener *l, struct pt_str host)
{
    char name[256];

    if (st->conn->ssl == NULL || l->sni == NULL)
        return true;
    if (host.len >= sizeof(name))
        return false;
    memcpy(name, host.ptr, host.len);
    name[host.len] = '\0';
    return sni_context(l, SSL_get_servername(st->conn->ssl, TLSEXT_NAMETYPE_host_name)) == sni_context(l, name);
}

static bool request_is_secure(const struct pt_stream *st, const struct pt_listener *l)
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
    xfp = header_at(&st->req, st->req.idx_x_forwarded_proto);
    if (l->l7_depth > 0 && xfp.len)
        return pt_str_caseeq(xfp, PT_STR_LIT("https"));
    return st->rec.tls != 0;
}

/* write_forwarded: pt_session_write_forwarded, inline for the upstream head. */
static inline __attribute__((always_inline)) void write_forwarded(const struct pt_stream *st, struct pt_h1w *b,
                                                                  bool xff, bool xfp)
{
    const struct pt_h1_request *req = &st->req;

    if (xff) {
        pt_h1w_header_begin(b, PT_STR_LIT("x-forwarded-for"));
        for (size_t i = req->idx_x_forwarded_for >= 0 ? (size_t)req->idx_x_forwarded_for : req->nheaders;
             i < req->nheaders; i++) {
            struct pt_str n = req->headers[i].name;
            if (n.len == 15 && pt_str_caseeq(n, PT_STR_LIT("x-forwarded-for")) && req->headers[i].value.len) {
                pt_h1w_value(b, req->headers[i].value); /* several headers are one comma list */
                pt_h1w_value(b, PT_STR_LIT(","));
            }
        }
        pt_h1w_value(b, pt_str_make(st->conn->peer_ip, st->conn->peer_ip_len));
        pt_h1w_header_end(b);
    }
    if (xfp)
        pt_h1w_header(b, PT_STR_LIT("x-forwarded-proto"), st->rec.tls ? PT_STR_LIT("https") : PT_STR_LIT("http"));
}

void pt_session_write_forwarded(const struct pt_stream *st, struct pt_h1w *b, bool xff, bool xfp)
{
    write_forwarded(st, b, xff, xfp);
}

/* is_envoy_header: the name starts with "x-envoy-" (and has more). */
static inline bool is_envoy_header(struct pt_str n)
{
    return n.len > 8 && (n.ptr[0] | 0x20) == 'x' && n.ptr[1] == '-' && pt_str_caseeq(pt_str_make(n.ptr, 8), PT_STR_LIT("x-envoy-"));
}

struct pt_str pt_session_client_address(const struct pt_stream *st)
{
    const struct pt_h1_request *req = &st->req;
    uint32_t skip = (uint32_t)st->listener->l7_depth;

    if (skip == 0 || req->idx_x_forwarded_for < 0)
        return pt_str_make(st->conn->peer_ip, st->conn->peer_ip_len);
    skip--; /* the l7Depth-th address from the right: the last proxy's client */
    for (size_t i = req->nheaders; i-- > (size_t)req->idx_x_forwarded_for;) {
        struct pt_str n = req->headers[i].name, v = req->headers[i].value;
        size_t end = v.len;

        if (n.len != 15 || !pt_str_caseeq(n, PT_STR_LIT("x-forwarded-for")))
            continue;
        for (;;) {
            size_t start = end;
            while (start > 0 && v.ptr[start - 1] != ',')
                start--;
            if (skip-- == 0) {
                size_t j = 0;
                struct pt_str a = pt_http_list_next(pt_str_make(v.ptr + start, end - start), &j);
                struct pt_ip ip;
                if (!pt_ip_parse(a.ptr, a.len, &ip))
                    goto peer;
                return a;
            }
            if (start == 0)
                break;
            end = start - 1;
        }
    }
peer: /* too few addresses, or not an address: the peer's, as Envoy */
    return pt_str_make(st->conn->peer_ip, st->conn->peer_ip_len);
}

/* ip_policy_allows: the ambassador Module's ip_allow / ip_deny for this request, as Envoy's RBAC
 * filter that Emissary writes for them: a `peer:` rule matches the connection's peer, a
 * `remote:` rule the client address after l7Depth. Counts envoy_http_rbac_allowed / _denied. */
static bool ip_policy_allows(struct pt_stream *st)
{
    const struct pt_ip_policy *pol = &st->snap->http.ip;
    struct pt_http_stats *hs = pt_conn_http_stats(st->conn);
    struct pt_ip peer = { 0 }, remote = { 0 };
    bool match = false, allowed;

    for (size_t i = 0; i < pol->nrules && !match; i++) {
        const struct pt_ip_rule *r = &pol->rules[i];
        struct pt_ip *ip = r->remote ? &remote : &peer;
        if (ip->family == 0) { /* parsed at first use: most policies name one kind */
            struct pt_str a = r->remote ? pt_session_client_address(st)
                                        : pt_str_make(st->conn->peer_ip, st->conn->peer_ip_len);
            if (!pt_ip_parse(a.ptr, a.len, ip))
                ip->family = 0xff; /* matches nothing */
        }
        match = pt_cidr_match(&r->range, ip);
    }
    allowed = pol->action == PT_IP_ALLOW ? match : pol->action == PT_IP_DENY ? !match : false;
    if (hs != NULL)
        pt_stats_inc(allowed ? &hs->rbac_allowed : &hs->rbac_denied);
    return allowed;
}

/* add_formatted_headers: the route's add_request_headers when some value has %...% operators
 * (proxy/format.h): those are rendered for this request; one that comes out empty, too long or
 * with CR/LF/NUL is left out. */
static void add_formatted_headers(struct pt_stream *st, struct pt_h1w *b)
{
    const struct pt_route_action *a = st->rec.action;
    char buf[PT_FORMAT_VALUE_MAX];

    for (uint32_t i = 0; i < a->nadd_req; i++) {
        struct pt_str v = a->add_req[i].value;
        if (a->add_req[i].fmt != NULL && !pt_format_header(st, &a->add_req[i], NULL, 0, buf, sizeof(buf), &v))
            continue;
        pt_h1w_header(b, a->add_req[i].name, v);
    }
}

/* Writes the upstream request head into the worker's scratch area; returns its length or 0. */
static size_t build_request_head(struct pt_stream *st, const struct pt_route *route,
                                 const struct pt_route_req *rreq, const char *request_id)
{
    struct pt_worker *w = st->w;
    const struct pt_h1_request *req = &st->req;
    const struct pt_route_action *a = st->rec.action;
    const struct pt_listener *l = st->listener;
    struct pt_h1w b;
    char *path = w->scratch + sizeof(w->scratch) - 8192;
    bool rewritten = false, keep_xfp = l->l7_depth > 0;
    bool own_host = a->host_rewrite.len || a->auto_host_rewrite || req->authority.len;
    bool edits = pt_policy_has_edits(st);
    bool internal = pt_session_internal(st);
    int plen;

    pt_h1w_init(&b, w->scratch, sizeof(w->scratch) - 8192); /* the rewritten path after it */
    plen = pt_route_rewrite(route, rreq, path, 8192, &rewritten);
    if (plen < 0)
        return 0;
    pt_h1w_request_line(&b, req->method, pt_str_make(path, (size_t)plen));
    for (size_t i = 0; i < req->nheaders; i++) {
        struct pt_str n = req->headers[i].name;
        /* Every copy of the forwarding headers, not only the first: a second
         * X-Forwarded-Proto must not slip past the one we set. */
        if (pt_http_hop_by_hop(n) || (n.len == 15 && pt_str_caseeq(n, PT_STR_LIT("x-forwarded-for"))))
            continue;
        if (n.len == 14 && pt_str_caseeq(n, PT_STR_LIT("content-length")))
            continue; /* framing is written below from what was parsed */
        if (!keep_xfp && n.len == 17 && pt_str_caseeq(n, PT_STR_LIT("x-forwarded-proto")))
            continue;
        if ((int)i == req->idx_host && own_host)
            continue;
        if (n.len == 6 && pt_str_caseeq(n, PT_STR_LIT("expect")))
            continue; /* answered here, as Envoy does */
        if (is_envoy_header(n) && pt_http_envoy_dropped(n, internal))
            continue; /* ours to set, or an external client's attempt to steer an Envoy behind */
        if (req->conn_options && !pt_http_connection_protected(n) && pt_h1_connection_names(req, n))
            continue;
        if (st->trace_cfg != NULL && n.len >= 11 && pt_trace_is_b3_header(n))
            continue; /* replaced by the router span's context */
        if (name_in(n, a->remove_req, a->nremove_req) || name_in_ops(n, a->add_req, a->nadd_req))
            continue;
        if (edits && pt_policy_replaces(st, n))
            continue; /* the AuthService's (or RateLimitService's) value instead */
        if (st->gw.kind && (int)i == req->idx_content_type)
            continue; /* gRPC-Web goes up as gRPC: written below */
        pt_h1w_header(&b, n, req->headers[i].value);
    }
    if (st->gw.kind) {
        char ct[64];
        pt_h1w_header(&b, PT_STR_LIT("content-type"), pt_gw_upstream_type(st, ct, sizeof(ct)));
        pt_h1w_header(&b, PT_STR_LIT("te"), PT_STR_LIT("trailers"));
    }
    if (a->host_rewrite.len)
        pt_h1w_header(&b, PT_STR_LIT("host"), a->host_rewrite);
    else if (a->auto_host_rewrite && a->cluster->host)
        pt_h1w_header(&b, PT_STR_LIT("host"), pt_str_c(a->cluster->host));
    else if (req->authority.len) /* an absolute-form target replaces Host (RFC 9112 §3.2.2) */
        pt_h1w_header(&b, PT_STR_LIT("host"), req->authority);
    else if (req->idx_host < 0) /* HTTP/1.0 without Host: the service's name */
        pt_h1w_header(&b, PT_STR_LIT("host"), pt_str_c(a->cluster->host));
    write_forwarded(st, &b, true, !keep_xfp || req->idx_x_forwarded_proto < 0);
    if (internal)
        pt_h1w_header(&b, PT_STR_LIT("x-envoy-internal"), PT_STR_LIT("true"));
    else
        pt_h1w_header(&b, PT_STR_LIT("x-envoy-external-address"), pt_session_client_address(st));
    if (request_id)
        pt_h1w_header(&b, PT_STR_LIT("x-request-id"), pt_str_make(request_id, 36));
    if (rewritten) {
        pt_h1w_header_begin(&b, PT_STR_LIT("x-envoy-original-path"));
        pt_h1w_value(&b, req->path);
        if (req->query.ptr) {
            pt_h1w_value(&b, PT_STR_LIT("?"));
            pt_h1w_value(&b, req->query);
        }
        pt_h1w_header_end(&b);
    }
    if (a->timeout_ms)
        pt_h1w_header_uint(&b, PT_STR_LIT("x-envoy-expected-rq-timeout-ms"), a->timeout_ms);
    if (edits)
        pt_policy_write_request_headers(st, &b);
    if (a->dynamic_req)
        add_formatted_headers(st, &b);
    else
        for (uint32_t i = 0; i < a->nadd_req; i++)
            pt_h1w_header(&b, a->add_req[i].name, a->add_req[i].value);
    if (st->trace_cfg != NULL && b.end - b.p > PT_TRACE_INJECT_MAX)
        b.p += pt_trace_inject(&st->trace, b.p, (size_t)(b.end - b.p));
    /* the framing Portico parsed, never a header the client sent */
    if (st->gw.kind) /* no length: a -text body shrinks as it is decoded */
        pt_h1w_framing(&b, st->req_body.kind != PT_BODY_NONE, -1);
    else
        pt_h1w_framing(&b, req->chunked, req->content_length);
    if (st->flags & PT_SF_UPGRADE) {
        pt_h1w_header(&b, PT_STR_LIT("connection"), PT_STR_LIT("upgrade"));
        pt_h1w_header(&b, PT_STR_LIT("upgrade"), find_header(req->headers, req->nheaders, PT_STR_LIT("upgrade")));
    }
    return pt_h1w_end(&b);
}

/* grpc_timeout_ms: the request's grpc-timeout ("1-8 digits" and a unit: H, M, S, m, u, n) in
 * milliseconds, rounded up; 0 when it has none or it is malformed (ignored, as gRPC servers
 * do). */
static uint32_t grpc_timeout_ms(const struct pt_h1_request *req)
{
    struct pt_str v = find_header(req->headers, req->nheaders, PT_STR_LIT("grpc-timeout"));
    uint64_t n = 0, ms;

    if (v.len < 2 || v.len > 9)
        return 0;
    for (size_t i = 0; i + 1 < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9')
            return 0;
        n = n * 10 + (uint64_t)(v.ptr[i] - '0');
    }
    switch (v.ptr[v.len - 1]) {
    case 'H': ms = n * 3600000; break;
    case 'M': ms = n * 60000; break;
    case 'S': ms = n * 1000; break;
    case 'm': ms = n; break;
    case 'u': ms = (n + 999) / 1000; break;
    case 'n': ms = (n + 999999) / 1000000; break;
    default: return 0;
    }
    if (ms == 0)
        ms = 1; /* "0m" is a deadline already past: at once */
    return ms > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)ms;
}

/* pick_endpoint: an endpoint of <c> for <st> (cluster/lb.h); its pick is released when the
 * stream ends, or before a retry picks again. Only a route with a hash policy (ring_hash,
 * maglev) looks at the request for it (proxy/lbhash.c). */
static const struct pt_endpoint *pick_endpoint(struct pt_stream *st, const struct pt_cluster *c)
{
    const struct pt_lb_hash *hp = st->rec.action->lb_hash;
    struct pt_lb_ctx ctx;

    if (hp == NULL)
        return pt_lb_pick(&st->w->lb, c, NULL, &st->lb_pick);
    pt_lbhash_ctx(st, hp, &ctx);
    return pt_lb_pick(&st->w->lb, c, &ctx, &st->lb_pick);
}

static struct pt_str log_slice(const struct pt_stream *st, struct pt_str_off o)
{
    return o.len ? pt_str_make(st->rec.log + o.off, o.len) : (struct pt_str){ 0 };
}

void pt_session_observe_end(struct pt_stream *st)
{
    if (st->flags & PT_SF_TUNNEL) {
        struct pt_http_stats *hs = pt_stream_http_stats(st);
        if (hs != NULL)
            pt_gauge_dec(&hs->downstream_cx_upgrades_active);
    }
    if (st->trace_cfg != NULL) {
        const struct pt_route_action *a = st->rec.action;
        struct pt_trace_request_info info = {
            .method = log_slice(st, st->rec.lf_method),
            .authority = log_slice(st, st->rec.lf_auth),
            .path = log_slice(st, st->rec.lf_path),
            .scheme = st->rec.tls ? PT_STR_LIT("https") : PT_STR_LIT("http"),
            .protocol = pt_record_protocol(&st->rec),
            .user_agent = log_slice(st, st->rec.lf_ua),
            .request_id = log_slice(st, st->rec.lf_rid),
            .peer_ip = pt_str_make(st->conn->peer_ip, st->conn->peer_ip_len),
            .upstream_address = st->rec.endpoint ? pt_str_c(st->rec.endpoint->name) : (struct pt_str){ 0 },
            .cluster_name = a ? pt_str_c(a->cluster->name) : (struct pt_str){ 0 },
            .stats_name = a ? pt_str_c(a->cluster->stats_name) : (struct pt_str){ 0 },
            .response_flags = pt_str_c(st->rec.flags ? st->rec.flags : "-"),
            .status = st->rec.status,
            .upstream_status = st->rec.upstream_status,
            .bytes_received = st->rec.bytes_rx,
            .bytes_sent = st->rec.bytes_tx,
        };
        pt_trace_finish(st->w->trace, st->trace_cfg, &st->trace, &info);
        st->trace_cfg = NULL;
    }
    pt_accesslog_request(&st->w->log, &st->rec);
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
static bool send_upstream(struct pt_stream *st, const struct pt_route_req *rreq, const char *rid, bool fresh)
{
    struct pt_worker *w = st->w;
    const struct pt_h1_request *req = &st->req;
    size_t hlen;
    bool woken;

    st->rec.endpoint = pick_endpoint(st, st->rec.action->cluster);
    hlen = build_request_head(st, st->route, rreq, rid);
    if (hlen == 0) {
        pt_reply_bad_request(st);
        return false;
    }
    if (req->expect_continue && !(st->flags & (PT_SF_REQ_DONE | PT_SF_CONTINUED)) &&
        st->conn->down->expect_continue(st) != 0) {
        pt_stream_abort(st);
        return false;
    }
    w->cx_overflow = false;
    woken = (st->flags & PT_SF_CX_WOKEN) != 0;
    st->flags &= ~PT_SF_CX_WOKEN;
    if (pt_stream_connect(st, fresh) != 0) {
        if (w->cx_overflow && w->cx_wait != NULL && !st->rec.action->cluster->http2 &&
            pt_retry_wait_connection(st, w->cx_wait, woken))
            return true; /* it waits for one of the cluster's connections (pending) */
        if (w->cx_overflow) /* the cluster's max_connections, and no waiting */
            pt_reply_overflow(st);
        else
            pt_reply_upstream_reset(st, "local connection failure", NULL, "UF");
        return false;
    }
    if (!pt_retry_try_started(st))
        return false; /* max_pending_requests: answered */
    if (st->trace_cfg != NULL)
        pt_trace_upstream_begin(&st->trace); /* once: a retry keeps the first start */
    st->upstream_start_ms = st->rec.start_ms;
    if (st->route->shadow != NULL && !(st->flags & PT_SF_SHADOWED)) /* Mapping shadow: once */
        pt_shadow_start(st, st->route->shadow, w->scratch, hlen);
    {
        struct pt_body_frame out; /* the head, then what of the body is here */
        bool goes_on;
        out.iov[0] = (struct iovec){ w->scratch, hlen };
        out.n = 1;
        if (st->replay_len != 0 ? pt_stream_send_replay(st, &out, &goes_on) < 0
                                : pt_stream_send_request(st, &out, true, &goes_on) < 0)
            return goes_on;
    }
    return true;
}

bool pt_session_can_resend(const struct pt_stream *st)
{
    const struct pt_h1_request *req = &st->req;
    const struct pt_worker *w = st->w;

    if (st->route == NULL || (req->path.ptr >= w->pathbuf && req->path.ptr < w->pathbuf + sizeof(w->pathbuf)))
        return false; /* a normalized path lived in a shared buffer */
    return req->idx_x_request_id >= 0 || st->rec.lf_rid.len == 36;
}

bool pt_session_can_retry(const struct pt_stream *st)
{
    const struct pt_h1_request *req = &st->req;
    const struct pt_worker *w = st->w;

    switch (req->method_id) {
    case PT_H1_METHOD_GET:
    case PT_H1_METHOD_HEAD:
    case PT_H1_METHOD_OPTIONS:
    case PT_H1_METHOD_DELETE:
        break;
    default:
        return false; /* only methods that may be repeated */
    }
    if (st->req_body.kind != PT_BODY_NONE || st->route == NULL ||
        (req->path.ptr >= w->pathbuf && req->path.ptr < w->pathbuf + sizeof(w->pathbuf)))
        return false; /* a body is not kept; a normalized path lived in a shared buffer */
    return req->idx_x_request_id >= 0 || st->rec.lf_rid.len == 36;
}

/* made_request_id: the x-request-id Portico made for the request (the client sent none), as
 * the log kept it, into <rid> (37 bytes); NULL when the client sent one. */
static const char *made_request_id(const struct pt_stream *st, char *rid)
{
    if (st->req.idx_x_request_id >= 0)
        return NULL;
    memcpy(rid, st->rec.log + st->rec.lf_rid.off, 36);
    rid[36] = '\0';
    return rid;
}

void pt_session_retry(struct pt_stream *st)
{
    pt_session_resend(st, true);
}

void pt_session_resend(struct pt_stream *st, bool fresh)
{
    struct pt_route_req rreq = route_req(&st->req);
    char rid[37];

    st->flags &= ~PT_SF_REQ_SENT;
    if (send_upstream(st, &rreq, made_request_id(st, rid), fresh) && !(st->flags & PT_SF_REQ_DONE) &&
        st->state == PT_ST_UPSTREAM)
        pt_stream_on_client_readable(st); /* the rest of the body, from the client */
}

/* forward: the routed request goes to its cluster: counted, sent upstream with what of its body
 * is here, its route timeout (or gRPC deadline) and idle timeout started. */
static inline __attribute__((always_inline)) void forward(struct pt_stream *st, const struct pt_route_req *rreq,
                                                          const char *rid)
{
    struct pt_worker *w = st->w;
    struct pt_cluster_stats *cs = pt_stream_cluster_stats(st);

    if (cs != NULL) {
        pt_stats_inc(&cs->upstream_rq_total);
        pt_gauge_inc(&cs->upstream_rq_active);
        st->flags |= PT_SF_UP_ACTIVE;
        if (st->rec.action->cluster->nendpoints == 0)
            pt_stats_inc(&cs->upstream_cx_none_healthy);
    }
    if (st->rec.action->cluster->nendpoints == 0) {
        pt_reply_local(st, 503, PT_STR_LIT("no healthy upstream"), "UH");
        return;
    }
    if (!pt_retry_admit(st))
        return; /* max_requests: answered 503 (UO) */
    if (!send_upstream(st, rreq, rid, false))
        return;
    {
        uint32_t t = st->rec.action->timeout_ms, g;
        if (st->rec.action->cluster->http2 && (g = grpc_timeout_ms(&st->req)) != 0 && (t == 0 || g < t)) {
            t = g; /* the client's deadline comes first */
            st->flags |= PT_SF_GRPC_DEADLINE;
        }
        if (t)
            pt_timer_arm(w->loop, &st->timer, t);
    }
    st->idle_ms = st->rec.action->idle_timeout_ms ? st->rec.action->idle_timeout_ms : pt_proxy_limits.stream_idle_timeout_ms;
    pt_stream_touch(st);
    if (st->flags & PT_SF_CX_WAIT)
        return; /* pending: it goes when a connection is free (its body waits) */
    st->state = PT_ST_UPSTREAM;
    if (!(st->flags & PT_SF_REQ_DONE))
        pt_stream_on_client_readable(st); /* more body may already be here */
}

void pt_session_dispatch(struct pt_stream *st)
{
    struct pt_worker *w = st->w;
    struct pt_h1_request *req = &st->req;
    const struct pt_route *route;
    struct pt_route_req rreq;
    struct pt_vhost *vh;
    struct pt_str host;
    char request_id[37];
    const char *rid = NULL;

    st->flags |= PT_SF_PARSED;
    if (st->rec.http_version == 0) /* HTTP/2 set it */
        st->rec.http_version = (uint8_t)(10 + req->minor_version);
    st->listener = pt_snapshot_find_listener(st->snap, st->conn->port);
    if (req->method_id == PT_H1_METHOD_HEAD)
        st->flags |= PT_SF_HEAD_METHOD;
    st->req_body = (struct pt_body){ 0 };
    if (req->chunked)
        st->req_body.kind = PT_BODY_CHUNKED; /* decoded, framed again for the upstream */
    else if (req->content_length > 0)
        st->req_body = (struct pt_body){ .kind = PT_BODY_LENGTH, .remaining = (uint64_t)req->content_length };
    else
        st->flags |= PT_SF_REQ_DONE;
    if (req->idx_x_request_id < 0) {
        make_request_id(w, request_id);
        rid = request_id;
    }
    int path_status = normalize_target(st); /* first: the log and the trace see its result */
    keep_log_fields(st, req->target, rid);
    if (st->snap->error_overrides.nkeep) /* the Module's error bodies read request headers */
        pt_format_keep(st, st->snap->error_overrides.keep, st->snap->error_overrides.nkeep);
    st->trace_cfg = NULL;
    if (st->snap->tracing != NULL) {
        struct pt_trace_head th = { .headers = req->headers, .nheaders = req->nheaders, .method = req->method,
                                    .authority = req->authority.len ? req->authority : req->host,
                                    .path = req->target,
                                    .scheme = st->rec.tls ? PT_STR_LIT("https") : PT_STR_LIT("http") };
        if (pt_trace_start(w->trace, st->snap->tracing, &th, &st->trace)) {
            st->trace_cfg = st->snap->tracing;
            if (rid != NULL) { /* Envoy packs the trace reason into the request id it makes */
                request_id[14] = pt_trace_reason_char(&st->trace);
                if (st->rec.lf_rid.len == 36)
                    st->rec.log[st->rec.lf_rid.off + 14] = request_id[14];
            }
        }
    }
    if (req->minor_version == 0 && !st->snap->http.enable_http10) {
        pt_reply_refuse(st, 426); /* as Emissary's Envoy without enable_http10 */
        return;
    }
    if (st->listener == NULL) { /* the listener went away with a reload */
        st->flags |= PT_SF_CLOSE_AFTER;
        pt_reply_local(st, 404, (struct pt_str){ 0 }, "NR");
        return;
    }
    if (path_status == PT_BADMSG) { /* Envoy's path_normalization_failed: 400, empty body */
        pt_reply_local(st, 400, (struct pt_str){ 0 }, "-");
        return;
    } else if (path_status < 0) { /* longer than w->pathbuf */
        pt_reply_bad_request(st);
        return;
    }
    pt_gw_begin(st); /* Module enable_grpc_web: its replies from here on are gRPC-Web's */
    if (st->snap->http.grpc_stats.on) /* Module grpc_stats (the gRPC check costs a call: only then) */
        pt_grpcstats_begin(&st->gs, &st->snap->http.grpc_stats, pt_reply_grpc_request(st),
                           !(req->path.ptr >= st->w->pathbuf && req->path.ptr < st->w->pathbuf + sizeof(st->w->pathbuf)));
    rreq = route_req(req);
    if (st->snap->http.ip.action != PT_IP_NONE && !ip_policy_allows(st)) {
        pt_reply_local(st, 403, PT_STR_LIT("RBAC: access denied"), "-");
        return;
    }
    host = pt_authority_strip_port(rreq.authority);
    if (!sni_agrees(st, st->listener, host)) {
        pt_reply_refuse(st, 421);
        return;
    }
    vh = find_vhost(st->listener, host);
    if (vh == NULL) {
        pt_reply_local(st, 404, (struct pt_str){ 0 }, "NR");
        return;
    }
    if (request_is_secure(st, st->listener)) {
        st->flags |= PT_SF_SECURE;
    } else if (req->path.len >= 28 && memcmp(req->path.ptr, "/.well-known/acme-challenge/", 28) == 0) {
        /* ACME HTTP-01 challenges are always routed in cleartext, as Emissary does */
    } else if (vh->insecure_action == PT_INSECURE_REDIRECT) {
        pt_reply_redirect_https(st);
        return;
    } else if (vh->insecure_action == PT_INSECURE_REJECT) {
        pt_reply_local(st, 404, (struct pt_str){ 0 }, "NR");
        return;
    }
    route = vh->routes ? pt_route_match(vh->routes, &rreq, (uint32_t)pt_worker_rand(w)) : NULL;
    if (route == NULL) {
        struct pt_http_stats *hs = pt_stream_http_stats(st);
        if (hs != NULL)
            pt_stats_inc(&hs->no_route);
        pt_reply_local(st, 404, (struct pt_str){ 0 }, "NR");
        return;
    }
    st->route = route;
    {
        const struct pt_route_action *a = pt_route_action(route);
        if (a->redirect != NULL) { /* host_redirect: answered here, no upstream, no cluster */
            pt_reply_route_redirect(st, route, &rreq);
            return;
        }
        st->rec.action = a;
        if (a->cors != NULL && pt_cors_filter_request(st, a->cors))
            return; /* a preflight, answered here */
        if (a->nresp_keep) /* what its response side reads with %REQ()% */
            pt_format_keep(st, a->resp_keep, a->nresp_keep);
    }
    if (req->upgrade) {
        int up = upgrade_check(st);
        if (up < 0) {
            pt_reply_local(st, 403, (struct pt_str){ 0 }, "-"); /* Envoy's upgrade_failed */
            return;
        }
        if (up > 0)
            st->flags |= PT_SF_UPGRADE;
    }
    if (pt_policy_wanted(st)) {
        pt_policy_start(st); /* pt_session_proceed when the checks let it go on */
        return;
    }
    forward(st, &rreq, rid);
}

void pt_session_proceed(struct pt_stream *st)
{
    struct pt_route_req rreq = route_req(&st->req);
    char rid[37];

    forward(st, &rreq, made_request_id(st, rid));
}

/* add_response_headers: the route's add_response_headers behind the <n> headers at <out>;
 * values with %...% operators are rendered into <buf> (<cap> bytes, shared by all of them) and
 * those that come out empty, too long or with CR/LF/NUL are left out. Returns the new count. */
static size_t add_response_headers(struct pt_stream *st, const struct pt_h1_response *res, struct pt_header *out,
                                   size_t n, char *buf, size_t cap)
{
    const struct pt_route_action *a = st->rec.action;
    size_t used = 0;

    for (uint32_t i = 0; i < a->nadd_resp; i++) {
        struct pt_str v = a->add_resp[i].value;
        if (a->add_resp[i].fmt != NULL) {
            if (!pt_format_header(st, &a->add_resp[i], res->headers, res->nheaders, buf + used, cap - used, &v))
                continue;
            used += v.len;
        }
        out[n++] = (struct pt_header){ a->add_resp[i].name, v };
    }
    return n;
}

/* replace_body: sends the head <h> with the body of error_response_overrides rule <eo> instead
 * of the upstream's (Emissary's response_map filter): its content-type and content-length, then
 * the whole body; the upstream's body is read and dropped (PT_SF_BODY_REPLACED). Returns 0 or
 * PT_BADMSG. */
static int replace_body(struct pt_stream *st, const struct pt_error_override *eo, const struct pt_h1_response *res,
                        struct pt_resp_head *h, size_t max)
{
    char body[PT_FORMAT_BODY_MAX], len[24];
    struct pt_header *out = (struct pt_header *)h->headers;
    size_t n = h->nheaders, blen = pt_format_error_body(st, eo, res->headers, res->nheaders, body, sizeof(body));
    struct iovec iov = { body, blen };

    if (n + 2 > max)
        return PT_BADMSG;
    out[n++] = (struct pt_header){ PT_STR_LIT("content-length"), pt_str_make(len, pt_u64_dec(blen, len)) };
    out[n++] = (struct pt_header){ PT_STR_LIT("content-type"), pt_str_c(eo->content_type) };
    h->nheaders = n;
    h->content_length = (int64_t)blen;
    h->close_delimited = false;
    st->flags |= PT_SF_BODY_REPLACED;
    if (st->conn->down->head(st, h) != 0)
        return PT_BADMSG;
    st->rec.bytes_tx = h->body ? blen : 0;
    return st->conn->down->data(st, &iov, h->body && blen ? 1 : 0, true) == PT_IO ? PT_BADMSG : 0;
}

int pt_session_response_head(struct pt_stream *st, const struct pt_h1_response *res)
{
    struct pt_worker *w = st->w;
    const struct pt_route_action *a = st->rec.action;
    struct pt_header *out = w->out_hdrs;
    size_t n = 0, max = PT_ARRAY_SIZE(w->out_hdrs);
    char ust[24], gwct[64], vbuf[PT_FORMAT_VALUE_MAX], cookie[PT_LBHASH_COOKIE_MAX];
    const struct pt_error_override *eo = NULL;
    struct pt_resp_head h = {
        .status = res->status,
        .reason = res->reason,
        .headers = out,
        .content_length = res->chunked ? -1 : res->content_length,
        .body = pt_h1_response_has_body(st->flags & PT_SF_HEAD_METHOD, res->status),
        .close_delimited = !res->chunked && res->content_length < 0,
    };

    st->rec.status = res->status;
    st->rec.upstream_status = res->status;
    st->rec.upstream_ms = (uint32_t)(pt_loop_now_ms(w->loop) - st->upstream_start_ms);
    pt_accesslog_capture_response(&st->rec, res->headers, res->nheaders);
    if (res->status == 101) { /* what follows the head is the other protocol, both ways */
        struct pt_http_stats *hs = pt_stream_http_stats(st);
        if (hs != NULL)
            pt_gauge_inc(&hs->downstream_cx_upgrades_active); /* until observe_end */
        st->flags |= PT_SF_CLOSE_AFTER | PT_SF_TUNNEL;
        h.upgrade = find_header(res->headers, res->nheaders, PT_STR_LIT("upgrade"));
    } else if (a->error_overrides != NULL && !st->gw.kind) {
        eo = pt_format_override(st, res->status); /* error_response_overrides: another body */
    }
    for (size_t i = 0; i < res->nheaders && n < max; i++) {
        struct pt_str nm = res->headers[i].name;
        if (pt_http_hop_by_hop(nm))
            continue;
        if (nm.len == 6 && pt_str_caseeq(nm, PT_STR_LIT("server")))
            continue;
        if (name_in(nm, a->remove_resp, a->nremove_resp) || name_in_ops(nm, a->add_resp, a->nadd_resp))
            continue;
        if ((st->gw.kind || eo != NULL) && ((nm.len == 12 && pt_str_caseeq(nm, PT_STR_LIT("content-type"))) ||
                                            (nm.len == 14 && pt_str_caseeq(nm, PT_STR_LIT("content-length")))))
            continue; /* gRPC-Web's, or the override's, below */
        out[n++] = res->headers[i];
    }
    if (n + 5 + a->nadd_resp > max)
        return PT_BADMSG;
    if (st->gw.kind) {
        out[n++] = (struct pt_header){ PT_STR_LIT("content-type"), pt_gw_response_type(st, gwct, sizeof(gwct)) };
        if (res->content_length == 0) /* trailers-only: grpc-status stays in the head */
            out[n++] = (struct pt_header){ PT_STR_LIT("content-length"), PT_STR_LIT("0") };
        else
            h.content_length = -1; /* the trailer frame and base64 change the length */
    }
    out[n++] = (struct pt_header){ PT_STR_LIT("x-envoy-upstream-service-time"),
                                   pt_str_make(ust, pt_u64_dec(st->rec.upstream_ms, ust)) };
    if (st->flags & PT_SF_LB_COOKIE) /* the cookie its hash policy made (Envoy's router) */
        n = pt_lbhash_set_cookie(st, out, n, cookie, sizeof(cookie));
    out[n++] = (struct pt_header){ PT_STR_LIT("server"), PT_STR_LIT("envoy") };
    n = add_response_headers(st, res, out, n, vbuf, sizeof(vbuf));
    if (pt_policy_has_edits(st)) /* the AuthService's or RateLimitService's response headers */
        n += pt_policy_response_headers(st, out + n, max - n);
    if ((st->flags & PT_SF_CORS) && pt_cors_filter_response(st, out, &n, max) != 0)
        return PT_BADMSG; /* the route's CORS policy allowed the Origin */
    h.nheaders = n;
    if (eo != NULL ? replace_body(st, eo, res, &h, max) != 0 : st->conn->down->head(st, &h) != 0)
        return PT_BADMSG;
    if (st->gs.on) /* Module grpc_stats: a trailers-only answer's grpc-status */
        pt_grpcstats_status(&st->gs, res->headers, res->nheaders);
    pt_stats_downstream_code(pt_stream_http_stats(st), res->status);
    pt_stats_upstream_code(pt_stream_cluster_stats(st), res->status);
    st->flags |= PT_SF_RESP_HEAD;
    if (st->flags & PT_SF_TUNNEL) {
        /* The client's bytes now flow upstream until either side closes; the route timeout
         * gives way to the idle timeout (the Mapping's, else the connection's). */
        st->req_body = (struct pt_body){ .kind = PT_BODY_UNTIL_CLOSE };
        st->flags &= ~(PT_SF_REQ_DONE | PT_SF_REQ_SENT);
        pt_timer_cancel(&st->timer);
        st->idle_ms = a->idle_timeout_ms ? a->idle_timeout_ms : pt_proxy_limits.idle_timeout_ms;
        pt_timer_cancel(&st->idle_timer); /* armed for the other timeout */
        pt_stream_touch(st);
    }
    return 0;
}
