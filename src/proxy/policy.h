/* The checks a routed request goes through before it is sent upstream, in Envoy's filter order:
 * the AuthService (proxy/auth.c, Envoy's ext_authz), then the RateLimitService
 * (proxy/ratelimit.c, Envoy's ratelimit filter). policy.c runs them in turn on the stream (state
 * PT_ST_POLICY), gathers the request body an AuthService asks for, and keeps the header changes
 * their answers ask for, which proxy/session.c applies to the upstream request and to the
 * response. Internal to src/proxy/. */
#ifndef PT_PROXY_POLICY_H
#define PT_PROXY_POLICY_H

#include "proxy/call.h"
#include "http/h1write.h"
#include "http/reply-t.h"

/* What an answer asks to change (struct pt_call's edits). */
enum pt_edit_op {
    PT_EDIT_SET = 0,   /* the request's header <name> becomes <value> (replaced, or added) */
    PT_EDIT_ADD,       /* one more request header */
    PT_EDIT_REMOVE,    /* the request's header <name> goes */
    PT_EDIT_RESP_ADD,  /* one more header on the response to the client */
};

/* pt_policy_wanted: <st>'s route is checked: an AuthService it does not bypass, or rate-limit
 * descriptors and a RateLimitService (or an AuthService that cannot be read: then every
 * request is answered 500). */
static inline bool pt_policy_wanted(const struct pt_stream *st)
{
    const struct pt_http_opts *o = &st->snap->http;
    const struct pt_route_action *a = st->rec.action;

    return o->auth_broken || (o->auth != NULL && !a->bypass_auth) || (o->rls != NULL && a->nrl != 0);
}

/* pt_policy_start: runs <st>'s checks; a request they let through goes on with
 * pt_session_proceed, else it is answered here. */
void pt_policy_start(struct pt_stream *st);

/* pt_policy_on_client_readable: request body arrived while the checks run. */
void pt_policy_on_client_readable(struct pt_stream *st);

/* pt_policy_end: <st> ends: a running call is given up, kept answers and the held body are
 * released (the head's copy, st->head_copy, is the stream's to free last: its request is read
 * until the end). */
void pt_policy_end(struct pt_stream *st);

/* pt_policy_header_ok: a header an answer may put on a request or a reply: a token name, a
 * value that fits a field, and none that frames or routes the message (hop-by-hop fields,
 * content-length, host, pseudo-fields). */
bool pt_policy_header_ok(struct pt_str name, struct pt_str value);

/* ---- what session.c applies ---- */

/* pt_policy_has_edits: an answer asks for header changes. */
static inline bool pt_policy_has_edits(const struct pt_stream *st)
{
    return st->edits[0] != NULL || st->edits[1] != NULL;
}

/* pt_policy_replaces: the request's header <name> is set or removed by an answer (the
 * client's copies are not forwarded). */
bool pt_policy_replaces(const struct pt_stream *st, struct pt_str name);

/* pt_policy_write_request_headers: the headers the answers set or add, into <b>. */
void pt_policy_write_request_headers(const struct pt_stream *st, struct pt_h1w *b);

/* pt_policy_response_headers: the headers the answers add to the response, into <out> (at
 * most <max>). Returns how many. */
size_t pt_policy_response_headers(const struct pt_stream *st, struct pt_header *out, size_t max);

/* ---- between policy.c, auth.c and ratelimit.c ---- */

/* pt_policy_passed: the check running (AuthService or RateLimitService) lets the request go
 * on; <call> (NULL: none) holds header edits to keep, in slot <slot> (0 auth, 1 rate limit). */
void pt_policy_passed(struct pt_stream *st, struct pt_call *call, int slot);

/* pt_policy_body: the request body gathered for the AuthService (at most <max> bytes of it),
 * and whether it was cut (more followed). */
struct pt_str pt_policy_body(const struct pt_stream *st, uint32_t max, bool *partial);

/* pt_auth_start: the AuthService's check of <st> (its body gathered when it asks for it). */
void pt_auth_start(struct pt_stream *st);

/* pt_ratelimit_start: the RateLimitService's call for <st>. False when no descriptor applies
 * (the request goes on at once). */
bool pt_ratelimit_start(struct pt_stream *st);

/* What a RateLimitResponse says. */
struct pt_ratelimit_answer {
    bool over;                  /* OVER_LIMIT: 429 with these headers and body */
    struct pt_header headers[PT_HTTP_REPLY_EXTRA_MAX];
    size_t nheaders;
    struct pt_str body;
};

/* pt_ratelimit_read: reads the answer of an ended ShouldRateLimit call into <a> (an OK
 * answer's header additions become the call's edits; headers that frame or route a message,
 * or hold control bytes, are left out). -1 when it is not an answer Portico can apply. */
int pt_ratelimit_read(struct pt_call *call, struct pt_ratelimit_answer *a);

#endif
