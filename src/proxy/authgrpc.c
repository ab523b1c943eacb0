/* A gRPC AuthService's messages (proxy/authgrpc.h), with the field numbers of Envoy's API
 * (proto/envoy/service/auth/v3/). The CheckRequest carries what Envoy's ext_authz puts in it:
 * source and destination addresses, the request's method, headers (lowercase names, repeated
 * ones joined with commas, and the pseudo-headers :authority, :method, :path, :scheme), path
 * with query, host, scheme, protocol, size, the body when include_body asks for it, the TLS
 * server name, and the Mapping's auth_context_extensions. Built in the worker's scratch area
 * (a larger body in memory of its own, freed once sent); the answer is unpacked into the call's
 * own spare memory, never with malloc. */
#include "proxy/authgrpc.h"
#include "proxy/policy.h"
#include "proxy/pbuf.h"
#include "proxy/sockio.h"
#include "observe/record-t.h"

#include "pb/envoy/service/auth/v3/external_auth.pb-c.h"

#include <stdlib.h>

typedef Envoy__Service__Auth__V3__AttributeContext__HttpRequest__HeadersEntry HeaderEntry;
typedef Envoy__Service__Auth__V3__AttributeContext__ContextExtensionsEntry ExtEntry;

#define CHECK_PATH "/envoy.service.auth.v3.Authorization/Check"

/* peer: an Address of <ip> and <port>. */
static Envoy__Config__Core__V3__Address *peer(struct pt_pbuf *b, struct pt_str ip, uint32_t port)
{
    Envoy__Config__Core__V3__Address *a = pt_pbuf_alloc(b, sizeof(*a));
    Envoy__Config__Core__V3__SocketAddress *sa = pt_pbuf_alloc(b, sizeof(*sa));

    if (a == NULL || sa == NULL)
        return NULL;
    envoy__config__core__v3__address__init(a);
    envoy__config__core__v3__socket_address__init(sa);
    sa->address = pt_pbuf_str(b, ip, false);
    sa->port_specifier_case = ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PORT_SPECIFIER_PORT_VALUE;
    sa->port_value = port;
    a->address_case = ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS;
    a->socket_address = sa;
    return a;
}

/* local_peer: the address the client connected to ("ip:port", "[v6]:port"). */
static Envoy__Config__Core__V3__Address *local_peer(struct pt_pbuf *b, const struct pt_stream *st)
{
    char addr[PT_SOCKADDR_STR_MAX];
    const char *colon;
    struct pt_str ip;

    pt_fd_local_addr(st->conn->io.fd, addr);
    colon = strrchr(addr, ':');
    if (colon == NULL)
        return NULL;
    ip = pt_str_make(addr, (size_t)(colon - addr));
    if (ip.len >= 2 && ip.ptr[0] == '[') /* [v6]:port */
        ip = pt_str_make(ip.ptr + 1, ip.len - 2);
    return peer(b, ip, (uint32_t)strtoul(colon + 1, NULL, 10));
}

/* add_header: <name> = <value> as a new entry of the map <h> (<*n> entries). */
static void add_header(struct pt_pbuf *b, HeaderEntry **h, size_t *n, struct pt_str name, struct pt_str value)
{
    HeaderEntry *e = pt_pbuf_alloc(b, sizeof(*e));

    if (e == NULL)
        return;
    envoy__service__auth__v3__attribute_context__http_request__headers_entry__init(e);
    e->key = pt_pbuf_str(b, name, true);
    e->value = pt_pbuf_str(b, value, false);
    h[(*n)++] = e;
}

/* joined: the values of every header of <req> named as header <first> is (from there on),
 * joined with "," as Envoy merges repeated headers, in memory from <b> (the value itself when
 * there is one). <extra>: a value to append (the client's address, for x-forwarded-for). */
static struct pt_str joined(struct pt_pbuf *b, const struct pt_h1_request *req, size_t first, struct pt_str extra)
{
    struct pt_str name = req->headers[first].name;
    size_t len = extra.len, count = extra.len != 0;
    char *out, *p;

    for (size_t i = first; i < req->nheaders; i++)
        if (pt_str_caseeq(req->headers[i].name, name) && req->headers[i].value.len != 0) {
            len += req->headers[i].value.len;
            count++;
        }
    if (count <= 1 && extra.len == 0)
        return req->headers[first].value;
    if ((out = pt_pbuf_alloc(b, len + count)) == NULL)
        return (struct pt_str){ 0 };
    p = out;
    for (size_t i = first; i < req->nheaders; i++)
        if (pt_str_caseeq(req->headers[i].name, name) && req->headers[i].value.len != 0) {
            memcpy(p, req->headers[i].value.ptr, req->headers[i].value.len);
            p += req->headers[i].value.len;
            *p++ = ',';
        }
    if (extra.len != 0) {
        memcpy(p, extra.ptr, extra.len);
        p += extra.len;
    } else {
        p--; /* the last comma */
    }
    return pt_str_make(out, (size_t)(p - out));
}

/* seen_before: a header of the same name as header <i> comes before it (it was joined there). */
static bool seen_before(const struct pt_h1_request *req, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (pt_str_caseeq(req->headers[k].name, req->headers[i].name))
            return true;
    return false;
}

/* http_request: the request's HttpRequest. */
static Envoy__Service__Auth__V3__AttributeContext__HttpRequest *http_request(struct pt_pbuf *b, const struct pt_stream *st,
                                                                             struct pt_str body, bool partial,
                                                                             bool with_body)
{
    const struct pt_h1_request *req = &st->req;
    Envoy__Service__Auth__V3__AttributeContext__HttpRequest *h = pt_pbuf_alloc(b, sizeof(*h));
    HeaderEntry **hs = pt_pbuf_alloc(b, (req->nheaders + 8) * sizeof(*hs));
    struct pt_str scheme = st->rec.tls ? PT_STR_LIT("https") : PT_STR_LIT("http");
    struct pt_str host = req->authority.len ? req->authority : req->host;
    struct pt_str rid = pt_str_make(st->rec.log + st->rec.lf_rid.off, st->rec.lf_rid.len);
    struct pt_str peer_ip = pt_str_make(st->conn->peer_ip, st->conn->peer_ip_len), xff = peer_ip;
    size_t n = 0, tl = req->path.len + (req->query.ptr != NULL ? 1 + req->query.len : 0);
    char *target = pt_pbuf_alloc(b, tl + 1); /* path and query, as Envoy's :path */

    if (h == NULL || hs == NULL || target == NULL)
        return NULL;
    envoy__service__auth__v3__attribute_context__http_request__init(h);
    memcpy(target, req->path.ptr, req->path.len);
    if (req->query.ptr != NULL) {
        target[req->path.len] = '?';
        memcpy(target + req->path.len + 1, req->query.ptr, req->query.len);
    }
    add_header(b, hs, &n, PT_STR_LIT(":authority"), host);
    add_header(b, hs, &n, PT_STR_LIT(":method"), req->method);
    add_header(b, hs, &n, PT_STR_LIT(":path"), pt_str_make(target, tl));
    add_header(b, hs, &n, PT_STR_LIT(":scheme"), scheme);
    for (size_t i = 0; i < req->nheaders; i++) {
        struct pt_str nm = req->headers[i].name;
        if (pt_str_caseeq(nm, PT_STR_LIT("x-forwarded-for"))) {
            if (!seen_before(req, i)) /* the client's list, then its address: as the upstream gets it */
                xff = joined(b, req, i, peer_ip);
            continue;
        }
        if (pt_str_caseeq(nm, PT_STR_LIT("host")) || pt_str_caseeq(nm, PT_STR_LIT("x-forwarded-proto")) ||
            pt_str_caseeq(nm, PT_STR_LIT("x-request-id")) || pt_str_caseeq(nm, PT_STR_LIT("x-envoy-auth-partial-body")))
            continue; /* as the proxy sets them, below */
        if (!seen_before(req, i))
            add_header(b, hs, &n, nm, joined(b, req, i, (struct pt_str){ 0 }));
    }
    add_header(b, hs, &n, PT_STR_LIT("x-forwarded-for"), xff);
    add_header(b, hs, &n, PT_STR_LIT("x-forwarded-proto"), scheme);
    add_header(b, hs, &n, PT_STR_LIT("x-request-id"), rid);
    if (with_body)
        add_header(b, hs, &n, PT_STR_LIT("x-envoy-auth-partial-body"), partial ? PT_STR_LIT("true") : PT_STR_LIT("false"));
    h->headers = hs;
    h->n_headers = n;
    h->id = pt_pbuf_str(b, rid, false);
    h->method = pt_pbuf_str(b, req->method, false);
    h->path = pt_pbuf_str(b, pt_str_make(target, tl), false);
    h->host = pt_pbuf_str(b, host, false);
    h->scheme = pt_pbuf_str(b, scheme, false);
    h->protocol = pt_pbuf_str(b, pt_record_protocol(&st->rec), false);
    h->size = req->chunked ? -1 : req->content_length > 0 ? req->content_length : 0;
    if (with_body)
        h->body = pt_pbuf_bytes(b, body);
    return h;
}

/* check_request: the CheckRequest of <st>, packed with its gRPC frame into memory from <b>.
 * Returns its slice, empty when <b> was too small. */
static struct pt_str check_request(struct pt_pbuf *b, const struct pt_stream *st, struct pt_str body, bool partial,
                                   bool with_body)
{
    const struct pt_route_action *a = st->rec.action;
    Envoy__Service__Auth__V3__CheckRequest cr = ENVOY__SERVICE__AUTH__V3__CHECK_REQUEST__INIT;
    Envoy__Service__Auth__V3__AttributeContext ac = ENVOY__SERVICE__AUTH__V3__ATTRIBUTE_CONTEXT__INIT;
    Envoy__Service__Auth__V3__AttributeContext__Peer src = ENVOY__SERVICE__AUTH__V3__ATTRIBUTE_CONTEXT__PEER__INIT;
    Envoy__Service__Auth__V3__AttributeContext__Peer dst = ENVOY__SERVICE__AUTH__V3__ATTRIBUTE_CONTEXT__PEER__INIT;
    Envoy__Service__Auth__V3__AttributeContext__Request rq = ENVOY__SERVICE__AUTH__V3__ATTRIBUTE_CONTEXT__REQUEST__INIT;
    Envoy__Service__Auth__V3__AttributeContext__TLSSession tls = ENVOY__SERVICE__AUTH__V3__ATTRIBUTE_CONTEXT__TLSSESSION__INIT;
    ExtEntry **ext = pt_pbuf_alloc(b, (a->nauth_ctx + 1) * sizeof(*ext));
    uint8_t *out;
    size_t len;

    src.address = peer(b, pt_str_make(st->conn->peer_ip, st->conn->peer_ip_len), st->conn->peer_port);
    dst.address = local_peer(b, st);
    rq.http = http_request(b, st, body, partial, with_body);
    ac.source = &src;
    ac.destination = &dst;
    ac.request = &rq;
    for (uint32_t i = 0; ext != NULL && i < a->nauth_ctx; i++) {
        ExtEntry *e = pt_pbuf_alloc(b, sizeof(*e));
        if (e == NULL)
            break;
        envoy__service__auth__v3__attribute_context__context_extensions_entry__init(e);
        e->key = pt_pbuf_str(b, a->auth_ctx[i].name, false);
        e->value = pt_pbuf_str(b, a->auth_ctx[i].value, false);
        ext[ac.n_context_extensions++] = e;
    }
    ac.context_extensions = ext;
    if (st->rec.sni != NULL) {
        tls.sni = pt_pbuf_str(b, pt_str_c(st->rec.sni), false);
        ac.tls_session = &tls;
    }
    cr.attributes = &ac;
    if (b->full || rq.http == NULL)
        return (struct pt_str){ 0 };
    len = envoy__service__auth__v3__check_request__get_packed_size(&cr);
    if ((out = pt_pbuf_alloc(b, len + 5)) == NULL)
        return (struct pt_str){ 0 };
    pt_pbuf_frame(out, len);
    envoy__service__auth__v3__check_request__pack(&cr, out + 5);
    return pt_str_make((const char *)out, len + 5);
}

struct pt_call *pt_authgrpc_check(struct pt_stream *st, const struct pt_auth_config *ac, struct pt_str body,
                                  bool partial, bool *unbuilt)
{
    const struct pt_h1_request *req = &st->req;
    struct pt_worker *w = st->w;
    /* what the strings take: copied (the target three times, a repeated header's value twice)
     * and then packed once more */
    size_t need = 16384 + body.len * 3 + 6 * (req->path.len + req->query.len), hlen;
    struct pt_pbuf b;
    struct pt_call *call = NULL;
    struct pt_str msg;

    for (size_t i = 0; i < req->nheaders; i++)
        need += 4 * (req->headers[i].name.len + req->headers[i].value.len) + 96;
    b = pt_pbuf_sized(w->scratch + 4096, sizeof(w->scratch) - 4096, need);
    msg = check_request(&b, st, body, partial, ac->max_body >= 0);
    *unbuilt = msg.len == 0;
    hlen = pt_call_grpc_head(ac->cluster, PT_STR_LIT(CHECK_PATH), ac->timeout_ms, w->scratch,
                             4096);
    if (msg.len != 0 && hlen != 0)
        call = pt_call_start(st, ac->cluster, pt_str_make(w->scratch, hlen), msg, ac->timeout_ms, pt_auth_grpc_done);
    pt_pbuf_release(&b);
    return call;
}

/* ---- the answer ------------------------------------------------------------------------------ */

/* edit_of: what a HeaderValueOption of an OK answer does to the request: append true adds a
 * value, anything else sets it (Envoy: append unset or false overwrites). */
static int edit_of(const Envoy__Config__Core__V3__HeaderValueOption *o)
{
    return o->append != NULL && o->append->value ? PT_EDIT_ADD : PT_EDIT_SET;
}

static bool option_ok(const Envoy__Config__Core__V3__HeaderValueOption *o)
{
    return o != NULL && o->header != NULL && o->header->key != NULL && o->header->value != NULL &&
           pt_policy_header_ok(pt_str_c(o->header->key), pt_str_c(o->header->value));
}

int pt_authgrpc_read(struct pt_call *call, struct pt_authgrpc_answer *a)
{
    Envoy__Service__Auth__V3__CheckResponse *r =
        pt_call_grpc_unpack(call, &envoy__service__auth__v3__check_response__descriptor);

    memset(a, 0, offsetof(struct pt_authgrpc_answer, headers));
    a->nheaders = 0;
    a->body = (struct pt_str){ 0 };
    if (r == NULL)
        return -1;
    if (r->http_response_case == ENVOY__SERVICE__AUTH__V3__CHECK_RESPONSE__HTTP_RESPONSE_ERROR_RESPONSE)
        return -1; /* the auth server failed: the error path */
    if (r->status == NULL || r->status->code == 0) {
        const Envoy__Service__Auth__V3__OkHttpResponse *ok =
            r->http_response_case == ENVOY__SERVICE__AUTH__V3__CHECK_RESPONSE__HTTP_RESPONSE_OK_RESPONSE ? r->ok_response
                                                                                                         : NULL;
        a->ok = true;
        for (size_t i = 0; ok != NULL && i < ok->n_headers; i++)
            if (option_ok(ok->headers[i]) &&
                !pt_call_edit(call, edit_of(ok->headers[i]), pt_str_c(ok->headers[i]->header->key),
                              pt_str_c(ok->headers[i]->header->value)))
                return -1;
        for (size_t i = 0; ok != NULL && i < ok->n_headers_to_remove; i++) {
            struct pt_str n = pt_str_c(ok->headers_to_remove[i]);
            if (pt_policy_header_ok(n, PT_STR_LIT("")) && !pt_call_edit(call, PT_EDIT_REMOVE, n, n))
                return -1;
        }
        for (size_t i = 0; ok != NULL && i < ok->n_response_headers_to_add; i++)
            if (option_ok(ok->response_headers_to_add[i]) &&
                !pt_call_edit(call, PT_EDIT_RESP_ADD, pt_str_c(ok->response_headers_to_add[i]->header->key),
                              pt_str_c(ok->response_headers_to_add[i]->header->value)))
                return -1;
        return 0;
    }
    a->status = 403;
    if (r->http_response_case == ENVOY__SERVICE__AUTH__V3__CHECK_RESPONSE__HTTP_RESPONSE_DENIED_RESPONSE) {
        const Envoy__Service__Auth__V3__DeniedHttpResponse *d = r->denied_response;
        if (d->status != NULL && d->status->code >= 200 && d->status->code <= 599)
            a->status = d->status->code;
        for (size_t i = 0; i < d->n_headers && a->nheaders < PT_ARRAY_SIZE(a->headers); i++) {
            const Envoy__Config__Core__V3__HeaderValueOption *o = d->headers[i];
            if (!option_ok(o))
                continue;
            for (char *p = o->header->key; *p; p++) /* HTTP/2 wants them lowercase */
                *p = pt_lower(*p);
            a->headers[a->nheaders++] = (struct pt_header){ pt_str_c(o->header->key), pt_str_c(o->header->value) };
        }
        if (d->body != NULL)
            a->body = pt_str_c(d->body);
    }
    return 0;
}
