/* The AuthService check (Envoy's ext_authz filter as Emissary configures it; facts in
 * docs/auth-and-ratelimit.md). HTTP: the check request keeps the client's method and Host, its
 * path is path_prefix + the request's path and query, and it carries the allowed request
 * headers, add_auth_headers, and the body when include_body asks for it; a 200 lets the request
 * go on with the allowed authorization headers of the answer set on it, a 5xx is an error, any
 * other status is relayed to the client (with the allowed headers and the body). gRPC:
 * envoy.service.auth.v3.Authorization/Check (proxy/authgrpc.c builds and reads the messages).
 * An error (no answer in time, a failed call, a 5xx) answers status_on_error unless
 * failure_mode_allow. The outcome is counted as Envoy counts it, per route target cluster and
 * per HTTP connection manager prefix. */
#include "proxy/policy.h"
#include "proxy/session.h"
#include "proxy/authgrpc.h"
#include "http/h1.h"
#include "observe/stats.h"
#include "observe/trace.h"

#include <stdlib.h>
#include <string.h>

enum auth_outcome { AUTH_OK, AUTH_DENIED, AUTH_ERROR };

/* count: the outcome in Envoy's ext_authz counters. */
static void count(struct pt_stream *st, enum auth_outcome o, bool allowed_anyway)
{
    struct pt_cluster_stats *cs = pt_stream_cluster_stats(st);
    struct pt_http_stats *hs = pt_stream_http_stats(st);

#define BOTH(f)                      \
    do {                             \
        if (cs != NULL)              \
            pt_stats_inc(&cs->f);    \
        if (hs != NULL)              \
            pt_stats_inc(&hs->f);    \
    } while (0)
    if (o == AUTH_OK)
        BOTH(ext_authz_ok);
    else if (o == AUTH_DENIED)
        BOTH(ext_authz_denied);
    else
        BOTH(ext_authz_error);
    if (allowed_anyway)
        BOTH(ext_authz_failure_mode_allowed);
#undef BOTH
}

/* grpc_status_tag: a gRPC call's span says its grpc-status first, as Envoy's. */
static void grpc_status_tag(struct pt_call *call)
{
    struct pt_str gs = pt_call_trailer(call, PT_STR_LIT("grpc-status"));

    if (call->cluster->http2 && gs.len != 0)
        pt_call_tag(call, "grpc.status_code", gs);
}

/* auth_error: the check failed: the request goes on with failure_mode_allow, else it is
 * answered status_on_error with an empty body. <local>: the check request could not even be
 * made from this request (too large for it): it never goes on unchecked, whatever
 * failure_mode_allow says, or a client could choose to skip the check. */
static void auth_fail(struct pt_stream *st, struct pt_call *call, bool local)
{
    const struct pt_auth_config *ac = st->snap->http.auth;
    bool allow = ac->failure_mode_allow && !local;

    if (st->call == call)
        st->call = NULL;
    if (call != NULL) {
        grpc_status_tag(call);
        pt_call_tag(call, "ext_authz_status", PT_STR_LIT("ext_authz_error"));
        pt_call_free(call);
    }
    count(st, AUTH_ERROR, allow);
    if (allow) {
        pt_policy_passed(st, NULL, 0);
        return;
    }
    pt_reply_policy(st, ac->status_on_error, NULL, 0, (struct pt_str){ 0 }, 0, "UAEX");
}

static void auth_error(struct pt_stream *st, struct pt_call *call)
{
    auth_fail(st, call, false);
}

/* auth_denied: the answer goes to the client: <status>, the headers <h> and <body>. */
static void auth_denied(struct pt_stream *st, struct pt_call *call, int status, const struct pt_header *h,
                        size_t n, struct pt_str body)
{
    st->call = NULL;
    count(st, AUTH_DENIED, false);
    grpc_status_tag(call);
    pt_call_tag(call, "ext_authz_status", PT_STR_LIT("ext_authz_unauthorized"));
    pt_reply_policy(st, status, h, n, body, 0, "UAEX");
    pt_call_free(call); /* after the reply: <h> and <body> live in it */
}

/* ---- HTTP ------------------------------------------------------------------------------------ */

static bool in_list(struct pt_str name, const struct pt_str *list, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (pt_str_caseeq(name, list[i]))
            return true;
    return false;
}

static bool in_ops(struct pt_str name, const struct pt_hdr_op *ops, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (pt_str_caseeq(name, ops[i].name))
            return true;
    return false;
}

/* http_denied_header: a header of a denial that reaches the client: one of the allowed
 * authorization headers, or one Envoy always lets through (www-authenticate, location). */
static bool http_denied_header(const struct pt_auth_config *ac, struct pt_str name)
{
    return in_list(name, ac->allowed_auth, ac->nallowed_auth) || pt_str_caseeq(name, PT_STR_LIT("www-authenticate")) ||
           pt_str_caseeq(name, PT_STR_LIT("location"));
}

static void http_done(struct pt_stream *st, struct pt_call *call, int result)
{
    const struct pt_auth_config *ac = st->snap->http.auth;

    if (result != PT_CALL_OK || call->status >= 500) {
        auth_error(st, call);
        return;
    }
    if (call->status != 200) { /* Envoy: only a 200 allows */
        struct pt_header h[PT_HTTP_REPLY_EXTRA_MAX];
        size_t n = 0;
        for (uint32_t i = 0; i < call->nheaders && n < PT_ARRAY_SIZE(h); i++)
            if (http_denied_header(ac, call->headers[i].name) &&
                pt_policy_header_ok(call->headers[i].name, call->headers[i].value))
                h[n++] = call->headers[i];
        auth_denied(st, call, call->status, h, n, call->body);
        return;
    }
    for (uint32_t i = 0; i < call->nheaders; i++) {
        const struct pt_header *f = &call->headers[i];
        if (pt_str_caseeq(f->name, PT_STR_LIT("x-envoy-auth-headers-to-remove"))) {
            size_t k = 0;
            struct pt_str item;
            while ((item = pt_http_list_next(f->value, &k)).len != 0)
                if (pt_policy_header_ok(item, PT_STR_LIT("")) && !pt_call_edit(call, PT_EDIT_REMOVE, item, item)) {
                    auth_error(st, call); /* a removal that cannot be kept is not dropped */
                    return;
                }
        } else if (in_list(f->name, ac->allowed_auth, ac->nallowed_auth) && pt_policy_header_ok(f->name, f->value) &&
                   !pt_call_edit(call, PT_EDIT_SET, f->name, f->value)) {
            auth_error(st, call); /* more than a call can keep */
            return;
        }
    }
    count(st, AUTH_OK, false);
    pt_call_tag(call, "ext_authz_status", PT_STR_LIT("ext_authz_ok"));
    pt_policy_passed(st, call, 0);
}

/* http_check_head: the HTTP check request's head for <st> into <out> (<cap> bytes): the
 * client's method, path_prefix + path and query, the client's Host, the allowed request
 * headers (x-forwarded-for and -proto as the upstream gets them), content-length of <body>,
 * then add_auth_headers over any of the same name. 0 when it does not fit. */
static size_t http_check_head(const struct pt_stream *st, const struct pt_auth_config *ac, struct pt_str body,
                              bool partial, char *out, size_t cap)
{
    const struct pt_h1_request *req = &st->req;
    struct pt_str host = req->authority.len ? req->authority : req->host;
    size_t q = req->query.ptr != NULL ? 1 + req->query.len : 0;
    size_t tl = ac->path_prefix.len + req->path.len + q;
    char small[1024], *target = tl <= sizeof(small) ? small : malloc(tl);
    struct pt_h1w b;

    if (target == NULL)
        return 0;
    memcpy(target, ac->path_prefix.ptr, ac->path_prefix.len);
    memcpy(target + ac->path_prefix.len, req->path.ptr, req->path.len);
    if (q != 0) {
        target[ac->path_prefix.len + req->path.len] = '?';
        memcpy(target + ac->path_prefix.len + req->path.len + 1, req->query.ptr, req->query.len);
    }
    pt_h1w_init(&b, out, cap);
    pt_h1w_request_line(&b, req->method, pt_str_make(target, tl));
    if (target != small)
        free(target);
    pt_h1w_header(&b, PT_STR_LIT("host"), host);
    for (size_t i = 0; i < req->nheaders; i++) {
        struct pt_str n = req->headers[i].name;
        if (!in_list(n, ac->allowed_req, ac->nallowed_req) || in_ops(n, ac->add, ac->nadd) ||
            pt_http_hop_by_hop(n) || pt_str_caseeq(n, PT_STR_LIT("host")) ||
            pt_str_caseeq(n, PT_STR_LIT("content-length")) || pt_str_caseeq(n, PT_STR_LIT("x-forwarded-for")) ||
            pt_str_caseeq(n, PT_STR_LIT("x-forwarded-proto")) || pt_str_caseeq(n, PT_STR_LIT("expect")) ||
            pt_str_caseeq(n, PT_STR_LIT("x-envoy-auth-partial-body")))
            continue;
        if (st->trace_cfg != NULL && n.len >= 11 && pt_trace_is_b3_header(n))
            continue; /* the call's own span context instead */
        pt_h1w_header(&b, n, req->headers[i].value);
    }
    pt_session_write_forwarded(st, &b, in_list(PT_STR_LIT("x-forwarded-for"), ac->allowed_req, ac->nallowed_req),
                               in_list(PT_STR_LIT("x-forwarded-proto"), ac->allowed_req, ac->nallowed_req) &&
                                   !in_ops(PT_STR_LIT("x-forwarded-proto"), ac->add, ac->nadd));
    if (ac->max_body >= 0 && in_list(PT_STR_LIT("x-envoy-auth-partial-body"), ac->allowed_req, ac->nallowed_req))
        pt_h1w_header(&b, PT_STR_LIT("x-envoy-auth-partial-body"), partial ? PT_STR_LIT("true") : PT_STR_LIT("false"));
    pt_h1w_header_uint(&b, PT_STR_LIT("content-length"), body.len);
    for (uint32_t i = 0; i < ac->nadd; i++)
        pt_h1w_header(&b, ac->add[i].name, ac->add[i].value);
    return pt_h1w_end(&b);
}

/* ---- the body an AuthService asks for -------------------------------------------------------- */

/* gather: takes the request body from the client into st->held until it ended or holds more
 * than include_body.max_bytes (the pieces are whole: at most one connection buffer more).
 * Returns 1 when the check can go, 0 when more must come, -1 when the stream was answered or
 * ended. */
static int gather(struct pt_stream *st, const struct pt_auth_config *ac)
{
    const struct pt_down_ops *down = st->conn->down;

    if (st->req.expect_continue && !(st->flags & PT_SF_CONTINUED)) {
        st->flags |= PT_SF_CONTINUED; /* the client waits for it before sending the body */
        if (down->expect_continue(st) != 0) {
            pt_stream_abort(st);
            return -1;
        }
    }
    if (!ac->allow_partial && st->req.content_length > ac->max_body) {
        pt_reply_local(st, 413, PT_STR_LIT("Payload Too Large"), "-");
        return -1;
    }
    while (!st->held_end && (st->held == NULL || st->held_len <= (uint32_t)ac->max_body)) {
        struct iovec data[PT_BODY_RUNS];
        int k = 0;
        bool done = false;
        int64_t used = down->body(st, data, &k, &done);
        if (used == PT_BADMSG) {
            pt_reply_bad_request(st);
            return -1;
        }
        if (used < 0) {
            pt_stream_abort(st);
            return -1;
        }
        for (int i = 0; i < k; i++) {
            if (st->held_len + data[i].iov_len > st->held_cap || st->held == NULL) {
                uint32_t cap = st->held_cap ? st->held_cap : 4096;
                while (cap < st->held_len + data[i].iov_len)
                    cap *= 2;
                char *m = realloc(st->held, cap);
                if (m == NULL) {
                    pt_reply_local(st, 503, PT_STR_LIT("upstream connect error or disconnect/reset before headers. "
                                                       "reset reason: overflow"), "UO");
                    return -1;
                }
                st->held = m;
                st->held_cap = cap;
            }
            memcpy(st->held + st->held_len, data[i].iov_base, data[i].iov_len);
            st->held_len += (uint32_t)data[i].iov_len;
        }
        if (st->held == NULL && (st->held = malloc(1)) != NULL)
            st->held_cap = 1; /* gathered, even when empty */
        if (used > 0)
            down->body_consume(st, used);
        if (done)
            st->held_end = true;
        else if (used == 0)
            return 0; /* pt_policy_on_client_readable brings more */
        pt_stream_touch(st);
    }
    if (!st->held_end && !ac->allow_partial) {
        pt_reply_local(st, 413, PT_STR_LIT("Payload Too Large"), "-");
        return -1;
    }
    return 1;
}

/* ---- the check -------------------------------------------------------------------------------- */

void pt_auth_start(struct pt_stream *st)
{
    const struct pt_auth_config *ac = st->snap->http.auth;
    struct pt_str body = { 0 };
    bool partial = false;
    char *head;
    size_t len;

    if (ac->max_body >= 0 && !(st->flags & PT_SF_REQ_DONE)) {
        if (gather(st, ac) <= 0)
            return;
        body = pt_policy_body(st, (uint32_t)ac->max_body, &partial);
    }
    if (ac->grpc) {
        bool unbuilt = false;
        st->call = pt_authgrpc_check(st, ac, body, partial, &unbuilt);
        if (st->call == NULL)
            auth_fail(st, NULL, unbuilt);
        return;
    }
    head = st->w->scratch;
    len = http_check_head(st, ac, body, partial, head, sizeof(st->w->scratch));
    if (len == 0) { /* a head near the limit, and path_prefix and add_auth_headers on top */
        size_t need = 4096 + ac->path_prefix.len + st->req.path.len + st->req.query.len;
        for (size_t i = 0; i < st->req.nheaders; i++)
            need += st->req.headers[i].name.len + st->req.headers[i].value.len + 4;
        for (uint32_t i = 0; i < ac->nadd; i++)
            need += ac->add[i].name.len + ac->add[i].value.len + 4;
        if ((head = malloc(need)) != NULL)
            len = http_check_head(st, ac, body, partial, head, need);
    }
    if (len == 0)
        auth_fail(st, NULL, true); /* never unchecked for being large */
    else if ((st->call = pt_call_start(st, ac->cluster, pt_str_make(head, len), body, ac->timeout_ms, http_done)) ==
             NULL)
        auth_error(st, NULL);
    if (head != st->w->scratch)
        free(head); /* the call keeps its own copy */
}

/* ---- gRPC answers (the messages are read by proxy/authgrpc.c) --------------------------------- */

void pt_auth_grpc_done(struct pt_stream *st, struct pt_call *call, int result)
{
    struct pt_authgrpc_answer a;

    if (result != PT_CALL_OK || pt_authgrpc_read(call, &a) != 0) {
        auth_error(st, call);
        return;
    }
    if (!a.ok) {
        auth_denied(st, call, a.status, a.headers, a.nheaders, a.body);
        return;
    }
    count(st, AUTH_OK, false);
    grpc_status_tag(call);
    pt_call_tag(call, "ext_authz_status", PT_STR_LIT("ext_authz_ok"));
    pt_policy_passed(st, call, 0);
}
