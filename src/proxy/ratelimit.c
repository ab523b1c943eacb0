/* The RateLimitService call (Envoy's ratelimit filter as Emissary configures it):
 * envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit with the service's domain and one
 * descriptor per label group of the route (config/compile.c): generic_key, request_headers (a
 * group whose header is absent sends no descriptor, as Envoy drops it), remote_address,
 * source_cluster, destination_cluster. OVER_LIMIT answers 429 with x-envoy-ratelimited: true
 * and the service's response headers (gRPC clients: UNAVAILABLE, or RESOURCE_EXHAUSTED with
 * grpc.use_resource_exhausted_code); OK lets the request go on with the service's request and
 * response headers; an error lets it go on too, unless failure_mode_deny (then 500). Counted
 * per route target cluster, as Envoy does. */
#include "proxy/policy.h"
#include "proxy/session.h"
#include "proxy/pbuf.h"
#include "observe/stats.h"

#include "pb/envoy/service/ratelimit/v3/rls.pb-c.h"

typedef Envoy__Extensions__Common__Ratelimit__V3__RateLimitDescriptor Descriptor;
typedef Envoy__Extensions__Common__Ratelimit__V3__RateLimitDescriptor__Entry Entry;

#define RLS_PATH "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"

static void count(struct pt_stream *st, uint64_t *(*field)(struct pt_cluster_stats *))
{
    struct pt_cluster_stats *cs = pt_stream_cluster_stats(st);
    if (cs != NULL)
        pt_stats_inc(field(cs));
}

static uint64_t *c_ok(struct pt_cluster_stats *cs) { return &cs->ratelimit_ok; }
static uint64_t *c_over(struct pt_cluster_stats *cs) { return &cs->ratelimit_over_limit; }
static uint64_t *c_error(struct pt_cluster_stats *cs) { return &cs->ratelimit_error; }
static uint64_t *c_allowed(struct pt_cluster_stats *cs) { return &cs->ratelimit_failure_mode_allowed; }

/* entry_value: the value of descriptor entry <e> for <st>; false when it has none (a header
 * that is absent: the descriptor is not sent). */
static bool entry_value(const struct pt_stream *st, const struct pt_rl_entry *e, struct pt_str *v)
{
    const struct pt_header *h;

    switch (e->kind) {
    case PT_RL_GENERIC_KEY:
        *v = e->value;
        return true;
    case PT_RL_REQUEST_HEADERS:
        h = pt_header_find(st->req.headers, st->req.nheaders, e->value);
        if (h == NULL)
            return false;
        *v = h->value;
        return true;
    case PT_RL_REMOTE_ADDRESS:
        *v = pt_session_client_address(st);
        return true;
    case PT_RL_SOURCE_CLUSTER:
        *v = st->snap->http.rls->source_cluster;
        return true;
    case PT_RL_DESTINATION_CLUSTER:
        *v = pt_str_c(st->rec.action->cluster->name);
        return true;
    }
    return false;
}

/* request: the RateLimitRequest of <st>, framed, in <b>; empty when no descriptor applies or
 * <b> is too small (*full). */
static struct pt_str request(struct pt_pbuf *b, const struct pt_stream *st)
{
    const struct pt_route_action *a = st->rec.action;
    Envoy__Service__Ratelimit__V3__RateLimitRequest rr = ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_REQUEST__INIT;
    Descriptor **ds = pt_pbuf_alloc(b, a->nrl * sizeof(*ds));
    uint8_t *out;
    size_t len;

    if (ds == NULL)
        return (struct pt_str){ 0 };
    for (uint32_t i = 0; i < a->nrl; i++) {
        const struct pt_rl_descriptor *d = &a->rl[i];
        Descriptor *pd = pt_pbuf_alloc(b, sizeof(*pd));
        Entry **es = pt_pbuf_alloc(b, d->nentries * sizeof(*es));
        bool whole = true;
        if (pd == NULL || es == NULL)
            return (struct pt_str){ 0 };
        envoy__extensions__common__ratelimit__v3__rate_limit_descriptor__init(pd);
        for (uint32_t k = 0; k < d->nentries && whole; k++) {
            Entry *e = pt_pbuf_alloc(b, sizeof(*e));
            struct pt_str v;
            if (e == NULL)
                return (struct pt_str){ 0 };
            if (!(whole = entry_value(st, &d->entries[k], &v)))
                break;
            envoy__extensions__common__ratelimit__v3__rate_limit_descriptor__entry__init(e);
            e->key = pt_pbuf_str(b, d->entries[k].key, false);
            e->value = pt_pbuf_str(b, v, false);
            es[pd->n_entries++] = e;
        }
        if (!whole || pd->n_entries == 0)
            continue;
        pd->entries = es;
        ds[rr.n_descriptors++] = pd;
    }
    if (rr.n_descriptors == 0 || b->full)
        return (struct pt_str){ 0 };
    rr.domain = pt_pbuf_str(b, st->snap->http.rls->domain, false);
    rr.descriptors = ds;
    len = envoy__service__ratelimit__v3__rate_limit_request__get_packed_size(&rr);
    if ((out = pt_pbuf_alloc(b, len + 5)) == NULL)
        return (struct pt_str){ 0 };
    pt_pbuf_frame(out, len);
    envoy__service__ratelimit__v3__rate_limit_request__pack(&rr, out + 5);
    return pt_str_make((const char *)out, len + 5);
}

/* status_tag: the span of <call> says its grpc-status (then ratelimit_status, when known). */
static void status_tag(struct pt_call *call)
{
    struct pt_str gs = pt_call_trailer(call, PT_STR_LIT("grpc-status"));

    if (gs.len != 0)
        pt_call_tag(call, "grpc.status_code", gs);
}

/* failed: the service could not answer: the request goes on, unless failure_mode_deny.
 * <local>: the request could not even be made (no memory for it): it does not go on unlimited,
 * or a client could choose to skip the limit. */
static void failed_as(struct pt_stream *st, struct pt_call *call, bool local)
{
    if (st->call == call)
        st->call = NULL;
    if (call != NULL) {
        status_tag(call);
        pt_call_free(call);
    }
    count(st, c_error);
    if (st->snap->http.rls->failure_mode_deny || local) {
        pt_reply_policy(st, 500, NULL, 0, (struct pt_str){ 0 }, 0, "RLSE");
        return;
    }
    count(st, c_allowed);
    pt_policy_passed(st, NULL, 1);
}

static void failed(struct pt_stream *st, struct pt_call *call)
{
    failed_as(st, call, false);
}

static bool value_ok(const Envoy__Config__Core__V3__HeaderValue *h)
{
    return h != NULL && h->key != NULL && h->value != NULL && pt_policy_header_ok(pt_str_c(h->key), pt_str_c(h->value));
}

int pt_ratelimit_read(struct pt_call *call, struct pt_ratelimit_answer *a)
{
    Envoy__Service__Ratelimit__V3__RateLimitResponse *r =
        pt_call_grpc_unpack(call, &envoy__service__ratelimit__v3__rate_limit_response__descriptor);

    a->over = false;
    a->nheaders = 0;
    a->body = (struct pt_str){ 0 };
    if (r == NULL)
        return -1;
    if (r->overall_code == ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__CODE__OVER_LIMIT) {
        a->over = true;
        for (size_t i = 0; i < r->n_response_headers_to_add && a->nheaders + 1 < PT_ARRAY_SIZE(a->headers); i++) {
            Envoy__Config__Core__V3__HeaderValue *v = r->response_headers_to_add[i];
            if (!value_ok(v))
                continue;
            for (char *p = v->key; *p; p++) /* HTTP/2 wants them lowercase */
                *p = pt_lower(*p);
            a->headers[a->nheaders++] = (struct pt_header){ pt_str_c(v->key), pt_str_c(v->value) };
        }
        a->headers[a->nheaders++] = (struct pt_header){ PT_STR_LIT("x-envoy-ratelimited"), PT_STR_LIT("true") };
        a->body = pt_str_make((const char *)r->raw_body.data, r->raw_body.len);
        return 0;
    }
    for (size_t i = 0; i < r->n_request_headers_to_add; i++)
        if (value_ok(r->request_headers_to_add[i]) &&
            !pt_call_edit(call, PT_EDIT_ADD, pt_str_c(r->request_headers_to_add[i]->key),
                          pt_str_c(r->request_headers_to_add[i]->value)))
            return -1;
    for (size_t i = 0; i < r->n_response_headers_to_add; i++)
        if (value_ok(r->response_headers_to_add[i]) &&
            !pt_call_edit(call, PT_EDIT_RESP_ADD, pt_str_c(r->response_headers_to_add[i]->key),
                          pt_str_c(r->response_headers_to_add[i]->value)))
            return -1;
    return 0;
}

static void rls_done(struct pt_stream *st, struct pt_call *call, int result)
{
    const struct pt_rls_config *rc = st->snap->http.rls;
    struct pt_ratelimit_answer a;

    if (result != PT_CALL_OK || pt_ratelimit_read(call, &a) != 0) {
        failed(st, call);
        return;
    }
    status_tag(call);
    if (a.over) {
        st->call = NULL;
        count(st, c_over);
        pt_call_tag(call, "ratelimit_status", PT_STR_LIT("over_limit"));
        pt_reply_policy(st, 429, a.headers, a.nheaders, a.body, rc->resource_exhausted ? 8 : 14, "RL");
        pt_call_free(call);
        return;
    }
    count(st, c_ok);
    pt_call_tag(call, "ratelimit_status", PT_STR_LIT("ok"));
    pt_policy_passed(st, call, 1);
}

bool pt_ratelimit_start(struct pt_stream *st)
{
    const struct pt_rls_config *rc = st->snap->http.rls;
    struct pt_worker *w = st->w;
    const struct pt_route_action *a = st->rec.action;
    struct pt_pbuf b;
    size_t need = 4096 + 3 * rc->domain.len, hlen;
    struct pt_str msg, v;
    struct pt_call *call;

    for (uint32_t i = 0; i < a->nrl; i++) /* what the strings take, copied then packed */
        for (uint32_t k = 0; k < a->rl[i].nentries; k++)
            need += 3 * (a->rl[i].entries[k].key.len + (entry_value(st, &a->rl[i].entries[k], &v) ? v.len : 0)) + 128;
    b = pt_pbuf_sized(w->scratch + 4096, sizeof(w->scratch) - 4096, need);
    msg = request(&b, st);
    if (msg.len == 0) {
        pt_pbuf_release(&b);
        if (!b.full)
            return false; /* no descriptor: no call, as Envoy */
        failed_as(st, NULL, true);
        return true;
    }
    hlen = pt_call_grpc_head(rc->cluster, PT_STR_LIT(RLS_PATH), rc->timeout_ms, w->scratch, 4096);
    call = hlen != 0 ? pt_call_start(st, rc->cluster, pt_str_make(w->scratch, hlen), msg, rc->timeout_ms, rls_done)
                     : NULL;
    pt_pbuf_release(&b); /* the call copied the message */
    if (call == NULL)
        failed(st, NULL);
    else
        st->call = call;
    return true;
}
