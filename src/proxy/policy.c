/* Running a request's checks (proxy/policy.h): the AuthService, then the RateLimitService, each
 * only when it applies to the route; then the request goes on (pt_session_proceed). While they
 * run the stream is in PT_ST_POLICY: its body stays with the client's connection (which stops
 * reading when its buffer is full, or holds back HTTP/2 flow control), except the part an
 * AuthService with include_body wants: that part is taken into st->held and sent upstream first
 * when the request goes on. The stream idle timeout runs meanwhile. Header edits of the answers
 * stay in their calls (st->edits) until the stream ends. */
#include "proxy/policy.h"
#include "proxy/session.h"
#include "http/h1.h"

#include <stdlib.h>
#include <string.h>

/* The stream's checks are over: the request goes on to its upstream. */
static void policy_done(struct pt_stream *st)
{
    st->state = PT_ST_ROUTING;
    pt_session_proceed(st);
}

/* policy_ratelimit: the RateLimitService's turn. */
static void policy_ratelimit(struct pt_stream *st)
{
    if (st->snap->http.rls != NULL && st->rec.action->nrl != 0 && pt_ratelimit_start(st))
        return; /* its answer goes on */
    policy_done(st);
}

void pt_policy_passed(struct pt_stream *st, struct pt_call *call, int slot)
{
    if (st->call == call)
        st->call = NULL;
    if (call != NULL && call->nedits != 0)
        st->edits[slot] = call;
    else if (call != NULL)
        pt_call_free(call);
    if (slot == 0)
        policy_ratelimit(st);
    else
        policy_done(st);
}

/* misconfigured: Emissary's answer while an AuthService cannot be read (its Lua stand-in for
 * the ext_authz filter): 500 with a JSON body that names the request. */
static void misconfigured(struct pt_stream *st)
{
    char body[256];
    struct pt_str rid = pt_str_make(st->rec.log + st->rec.lf_rid.off, st->rec.lf_rid.len);
    int n = snprintf(body, sizeof(body),
                     "{\n  \"message\": \"the ir.auth AuthService is misconfigured; see the logs for more "
                     "information\",\n  \"request_id\": \"%.*s\",\n  \"status_code\": 500\n}\n",
                     (int)(rid.len > 64 ? 64 : rid.len), rid.ptr);
    static const struct pt_header ct = { PT_STR_LIT("content-type"), PT_STR_LIT("application/json") };

    if (n < 0 || (size_t)n >= sizeof(body))
        n = 0;
    pt_reply_policy(st, 500, &ct, 1, pt_str_make(body, (size_t)n), 0, "UAEX");
}

/* keep_head: the request's head is copied where the checks cannot overwrite it
 * (pt_stream_keep_head): an HTTP/1 connection reads the body an AuthService asks for into the
 * buffer the head lies in. (Otherwise a waiting request's connection reads nothing, and an
 * HTTP/2 head is the stream's own already.) False without memory. */
static bool keep_head(struct pt_stream *st)
{
    const struct pt_auth_config *ac = st->snap->http.auth;
    bool gathers = st->conn->h2 == NULL && ac != NULL && ac->max_body >= 0 && !st->rec.action->bypass_auth &&
                   !(st->flags & PT_SF_REQ_DONE);

    return pt_stream_keep_head(st, gathers);
}

void pt_policy_start(struct pt_stream *st)
{
    if (!keep_head(st)) {
        pt_reply_local(st, 503, PT_STR_LIT("upstream connect error or disconnect/reset before headers. "
                                           "reset reason: overflow"), "UO");
        return;
    }
    st->state = PT_ST_POLICY;
    st->idle_ms = pt_proxy_limits.stream_idle_timeout_ms;
    pt_stream_touch(st);
    if (st->snap->http.auth_broken) {
        misconfigured(st);
        return;
    }
    if (st->snap->http.auth != NULL && !st->rec.action->bypass_auth) {
        pt_auth_start(st);
        return;
    }
    policy_ratelimit(st);
}

void pt_policy_on_client_readable(struct pt_stream *st)
{
    if (st->call == NULL && st->snap->http.auth != NULL && st->snap->http.auth->max_body >= 0)
        pt_auth_start(st); /* still gathering the body the AuthService asked for */
}

void pt_policy_end(struct pt_stream *st)
{
    if (st->call != NULL) {
        pt_call_cancel(st->call);
        st->call = NULL;
    }
    for (int i = 0; i < 2; i++)
        if (st->edits[i] != NULL) {
            pt_call_free(st->edits[i]);
            st->edits[i] = NULL;
        }
    free(st->held);
    st->held = NULL;
    st->held_len = st->held_cap = 0;
    st->held_end = false;
}

struct pt_str pt_policy_body(const struct pt_stream *st, uint32_t max, bool *partial)
{
    *partial = st->held_len > max || (st->held_len == max && !st->held_end);
    return pt_str_make(st->held, st->held_len > max ? max : st->held_len);
}

bool pt_policy_header_ok(struct pt_str name, struct pt_str value)
{
    if (!pt_http_token(name) || pt_http_hop_by_hop(name) ||
        pt_str_caseeq(name, PT_STR_LIT("content-length")) || pt_str_caseeq(name, PT_STR_LIT("host")))
        return false;
    for (size_t i = 0; i < value.len; i++) {
        unsigned char c = (unsigned char)value.ptr[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* ---- header edits ---------------------------------------------------------------------------- */

bool pt_policy_replaces(const struct pt_stream *st, struct pt_str name)
{
    for (int s = 0; s < 2; s++)
        for (uint32_t i = 0; st->edits[s] != NULL && i < st->edits[s]->nedits; i++) {
            const struct pt_call_edit *e = &st->edits[s]->edits[i];
            if ((e->op == PT_EDIT_SET || e->op == PT_EDIT_REMOVE) && pt_str_caseeq(e->name, name))
                return true;
        }
    return false;
}

void pt_policy_write_request_headers(const struct pt_stream *st, struct pt_h1w *b)
{
    for (int s = 0; s < 2; s++)
        for (uint32_t i = 0; st->edits[s] != NULL && i < st->edits[s]->nedits; i++) {
            const struct pt_call_edit *e = &st->edits[s]->edits[i];
            if (e->op == PT_EDIT_SET || e->op == PT_EDIT_ADD)
                pt_h1w_header(b, e->name, e->value);
        }
}

size_t pt_policy_response_headers(const struct pt_stream *st, struct pt_header *out, size_t max)
{
    size_t n = 0;

    for (int s = 0; s < 2; s++)
        for (uint32_t i = 0; st->edits[s] != NULL && i < st->edits[s]->nedits && n < max; i++) {
            const struct pt_call_edit *e = &st->edits[s]->edits[i];
            if (e->op == PT_EDIT_RESP_ADD)
                out[n++] = (struct pt_header){ e->name, e->value };
        }
    return n;
}
