/* Unit tests for the C that protoc-c generates from proto/ (build/gen/pb/): a CheckRequest and a
 * RateLimitRequest as Portico fills them pack and unpack to the same fields; tiny messages pack
 * to bytes worked out by hand from Envoy's field numbers (so a wrong number in proto/ fails
 * here, not against a real server); a CheckResponse and a RateLimitResponse written by hand, one
 * with a field proto/ leaves out, unpack to what a server meant; truncated input is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pb/envoy/service/auth/v3/external_auth.pb-c.h"
#include "pb/envoy/service/ratelimit/v3/rls.pb-c.h"

typedef Envoy__Service__Auth__V3__AttributeContext AttrCtx;
typedef Envoy__Service__Auth__V3__AttributeContext__Peer AttrPeer;
typedef Envoy__Service__Auth__V3__AttributeContext__Request AttrReq;
typedef Envoy__Service__Auth__V3__AttributeContext__HttpRequest AttrHttp;
typedef Envoy__Service__Auth__V3__AttributeContext__HttpRequest__HeadersEntry HdrEntry;
typedef Envoy__Service__Auth__V3__AttributeContext__ContextExtensionsEntry ExtEntry;
typedef Envoy__Config__Core__V3__Address Address;
typedef Envoy__Config__Core__V3__SocketAddress SockAddr;
typedef Envoy__Service__Auth__V3__CheckRequest CheckRequest;
typedef Envoy__Service__Auth__V3__CheckResponse CheckResponse;
typedef Envoy__Service__Ratelimit__V3__RateLimitRequest RlRequest;
typedef Envoy__Service__Ratelimit__V3__RateLimitResponse RlResponse;
typedef Envoy__Extensions__Common__Ratelimit__V3__RateLimitDescriptor Descriptor;
typedef Envoy__Extensions__Common__Ratelimit__V3__RateLimitDescriptor__Entry DescEntry;

/* set_peer: <peer> with the socket address <ip>:<port> (in <addr>, <sa>). */
static void set_peer(AttrPeer *peer, Address *addr, SockAddr *sa, char *ip, uint32_t port)
{
    envoy__service__auth__v3__attribute_context__peer__init(peer);
    envoy__config__core__v3__address__init(addr);
    envoy__config__core__v3__socket_address__init(sa);
    sa->address = ip;
    sa->port_specifier_case = ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PORT_SPECIFIER_PORT_VALUE;
    sa->port_value = port;
    addr->address_case = ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS;
    addr->socket_address = sa;
    peer->address = addr;
}

/* pack_check: packs <req> into a malloc'd buffer; its length in <len>. */
static uint8_t *pack_check(const CheckRequest *req, size_t *len)
{
    *len = envoy__service__auth__v3__check_request__get_packed_size(req);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(envoy__service__auth__v3__check_request__pack(req, buf), *len);
    return buf;
}

/* pack_rl: packs <req> into a malloc'd buffer; its length in <len>. */
static uint8_t *pack_rl(const RlRequest *req, size_t *len)
{
    *len = envoy__service__ratelimit__v3__rate_limit_request__get_packed_size(req);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(envoy__service__ratelimit__v3__rate_limit_request__pack(req, buf), *len);
    return buf;
}

static void test_check_request_round_trip(void **state)
{
    (void)state;
    AttrPeer src, dst;
    Address src_addr, dst_addr;
    SockAddr src_sa, dst_sa;
    set_peer(&src, &src_addr, &src_sa, "192.0.2.7", 40123);
    set_peer(&dst, &dst_addr, &dst_sa, "127.0.0.1", 8080);
    src.principal = "spiffe://test/client";

    HdrEntry h1, h2;
    envoy__service__auth__v3__attribute_context__http_request__headers_entry__init(&h1);
    envoy__service__auth__v3__attribute_context__http_request__headers_entry__init(&h2);
    h1.key = "authorization";
    h1.value = "Bearer abc";
    h2.key = "x-auth-decision";
    h2.value = "deny";
    HdrEntry *headers[] = { &h1, &h2 };
    static const uint8_t raw[] = { 'a', 0, 'b', 0xff };

    AttrHttp http;
    envoy__service__auth__v3__attribute_context__http_request__init(&http);
    http.id = "req-1";
    http.method = "POST";
    http.n_headers = 2;
    http.headers = headers;
    http.path = "/backend/x?q=1";
    http.host = "example.test";
    http.scheme = "https";
    http.size = 4;
    http.protocol = "HTTP/1.1";
    http.body.data = (uint8_t *)"bo\0dy"; /* bytes here (Envoy: string, the same on the wire): a NUL is kept */
    http.body.len = 5;
    http.raw_body.data = (uint8_t *)raw;
    http.raw_body.len = sizeof(raw);

    AttrReq request;
    envoy__service__auth__v3__attribute_context__request__init(&request);
    request.http = &http;
    ExtEntry ext;
    envoy__service__auth__v3__attribute_context__context_extensions_entry__init(&ext);
    ext.key = "tenant";
    ext.value = "blue";
    ExtEntry *exts[] = { &ext };
    AttrCtx attrs;
    envoy__service__auth__v3__attribute_context__init(&attrs);
    attrs.source = &src;
    attrs.destination = &dst;
    attrs.request = &request;
    attrs.n_context_extensions = 1;
    attrs.context_extensions = exts;
    CheckRequest req;
    envoy__service__auth__v3__check_request__init(&req);
    req.attributes = &attrs;

    size_t len;
    uint8_t *buf = pack_check(&req, &len);
    CheckRequest *got = envoy__service__auth__v3__check_request__unpack(NULL, len, buf);
    assert_non_null(got);
    const AttrCtx *a = got->attributes;
    assert_non_null(a);
    const SockAddr *s = a->source->address->socket_address;
    assert_int_equal(a->source->address->address_case,
                     ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS);
    assert_string_equal(s->address, "192.0.2.7");
    assert_int_equal(s->port_value, 40123);
    assert_string_equal(a->source->principal, "spiffe://test/client");
    assert_string_equal(a->destination->address->socket_address->address, "127.0.0.1");
    assert_int_equal(a->destination->address->socket_address->port_value, 8080);
    const AttrHttp *h = a->request->http;
    assert_string_equal(h->id, "req-1");
    assert_string_equal(h->method, "POST");
    assert_string_equal(h->path, "/backend/x?q=1");
    assert_string_equal(h->host, "example.test");
    assert_string_equal(h->scheme, "https");
    assert_string_equal(h->protocol, "HTTP/1.1");
    assert_int_equal(h->size, 4);
    assert_int_equal(h->body.len, 5);
    assert_memory_equal(h->body.data, "bo\0dy", 5);
    assert_int_equal(h->raw_body.len, sizeof(raw));
    assert_memory_equal(h->raw_body.data, raw, sizeof(raw));
    assert_int_equal(h->n_headers, 2);
    assert_string_equal(h->headers[0]->key, "authorization");
    assert_string_equal(h->headers[0]->value, "Bearer abc");
    assert_string_equal(h->headers[1]->key, "x-auth-decision");
    assert_string_equal(h->headers[1]->value, "deny");
    assert_int_equal(a->n_context_extensions, 1);
    assert_string_equal(a->context_extensions[0]->key, "tenant");
    assert_string_equal(a->context_extensions[0]->value, "blue");
    envoy__service__auth__v3__check_request__free_unpacked(got, NULL);

    /* Every strict prefix is refused (or, cut between fields, decodes to less): never a crash. */
    for (size_t cut = 0; cut < len; cut++) {
        got = envoy__service__auth__v3__check_request__unpack(NULL, cut, buf);
        if (got != NULL)
            envoy__service__auth__v3__check_request__free_unpacked(got, NULL);
    }
    /* Cut inside the length-delimited attributes: refused. */
    assert_null(envoy__service__auth__v3__check_request__unpack(NULL, len - 1, buf));
    free(buf);
}

/* The bytes by hand: CheckRequest.attributes = 1; AttributeContext.source = 1, request = 4;
 * Peer.address = 1; Address.socket_address = 1; SocketAddress.address = 2, port_value = 3;
 * Request.http = 2; HttpRequest.method = 2, headers = 3 (map entry: key 1, value 2). */
static void test_check_request_bytes(void **state)
{
    (void)state;
    AttrPeer src;
    Address addr;
    SockAddr sa;
    set_peer(&src, &addr, &sa, "a", 80);
    HdrEntry e;
    envoy__service__auth__v3__attribute_context__http_request__headers_entry__init(&e);
    e.key = "x";
    e.value = "y";
    HdrEntry *headers[] = { &e };
    AttrHttp http;
    envoy__service__auth__v3__attribute_context__http_request__init(&http);
    http.method = "GET";
    http.n_headers = 1;
    http.headers = headers;
    AttrReq request;
    envoy__service__auth__v3__attribute_context__request__init(&request);
    request.http = &http;
    AttrCtx attrs;
    envoy__service__auth__v3__attribute_context__init(&attrs);
    attrs.source = &src;
    attrs.request = &request;
    CheckRequest req;
    envoy__service__auth__v3__check_request__init(&req);
    req.attributes = &attrs;

    static const uint8_t want[] = {
        0x0a, 0x1c,                                     /* attributes, 28 bytes */
        0x0a, 0x09,                                     /*  source, 9 */
        0x0a, 0x07,                                     /*   address, 7 */
        0x0a, 0x05,                                     /*    socket_address, 5 */
        0x12, 0x01, 'a',                                /*     address "a" */
        0x18, 0x50,                                     /*     port_value 80 */
        0x22, 0x0f,                                     /*  request, 15 */
        0x12, 0x0d,                                     /*   http, 13 */
        0x12, 0x03, 'G', 'E', 'T',                      /*    method "GET" */
        0x1a, 0x06, 0x0a, 0x01, 'x', 0x12, 0x01, 'y',   /*    headers {x: y} */
    };
    size_t len;
    uint8_t *buf = pack_check(&req, &len);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    free(buf);
}

static void test_rate_limit_request_round_trip(void **state)
{
    (void)state;
    DescEntry e1, e2, e3;
    envoy__extensions__common__ratelimit__v3__rate_limit_descriptor__entry__init(&e1);
    envoy__extensions__common__ratelimit__v3__rate_limit_descriptor__entry__init(&e2);
    envoy__extensions__common__ratelimit__v3__rate_limit_descriptor__entry__init(&e3);
    e1.key = "generic_key";
    e1.value = "api";
    e2.key = "remote_address";
    e2.value = "192.0.2.7";
    e3.key = "x-user";
    e3.value = "";
    DescEntry *first[] = { &e1, &e2 };
    DescEntry *second[] = { &e3 };
    Descriptor d1, d2;
    envoy__extensions__common__ratelimit__v3__rate_limit_descriptor__init(&d1);
    envoy__extensions__common__ratelimit__v3__rate_limit_descriptor__init(&d2);
    d1.n_entries = 2;
    d1.entries = first;
    d2.n_entries = 1;
    d2.entries = second;
    Descriptor *descs[] = { &d1, &d2 };
    RlRequest req;
    envoy__service__ratelimit__v3__rate_limit_request__init(&req);
    req.domain = "ambassador";
    req.n_descriptors = 2;
    req.descriptors = descs;
    req.hits_addend = 3;

    size_t len;
    uint8_t *buf = pack_rl(&req, &len);
    RlRequest *got = envoy__service__ratelimit__v3__rate_limit_request__unpack(NULL, len, buf);
    assert_non_null(got);
    assert_string_equal(got->domain, "ambassador");
    assert_int_equal(got->hits_addend, 3);
    assert_int_equal(got->n_descriptors, 2);
    assert_int_equal(got->descriptors[0]->n_entries, 2);
    assert_string_equal(got->descriptors[0]->entries[0]->key, "generic_key");
    assert_string_equal(got->descriptors[0]->entries[0]->value, "api");
    assert_string_equal(got->descriptors[0]->entries[1]->key, "remote_address");
    assert_string_equal(got->descriptors[0]->entries[1]->value, "192.0.2.7");
    assert_int_equal(got->descriptors[1]->n_entries, 1);
    assert_string_equal(got->descriptors[1]->entries[0]->key, "x-user");
    assert_string_equal(got->descriptors[1]->entries[0]->value, "");
    envoy__service__ratelimit__v3__rate_limit_request__free_unpacked(got, NULL);
    free(buf);
}

/* By hand: RateLimitRequest.domain = 1, descriptors = 2, hits_addend = 3;
 * RateLimitDescriptor.entries = 1; Entry.key = 1, value = 2. */
static void test_rate_limit_request_bytes(void **state)
{
    (void)state;
    DescEntry e;
    envoy__extensions__common__ratelimit__v3__rate_limit_descriptor__entry__init(&e);
    e.key = "k";
    e.value = "v";
    DescEntry *entries[] = { &e };
    Descriptor d;
    envoy__extensions__common__ratelimit__v3__rate_limit_descriptor__init(&d);
    d.n_entries = 1;
    d.entries = entries;
    Descriptor *descs[] = { &d };
    RlRequest req;
    envoy__service__ratelimit__v3__rate_limit_request__init(&req);
    req.domain = "d";
    req.n_descriptors = 1;
    req.descriptors = descs;
    req.hits_addend = 2;
    static const uint8_t want[] = {
        0x0a, 0x01, 'd',                                      /* domain "d" */
        0x12, 0x08, 0x0a, 0x06,                               /* descriptors, entries */
        0x0a, 0x01, 'k', 0x12, 0x01, 'v',                     /*  key "k" value "v" */
        0x18, 0x02,                                           /* hits_addend 2 */
    };
    size_t len;
    uint8_t *buf = pack_rl(&req, &len);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    free(buf);
}

/* A CheckResponse a server sends to deny with 401, a header (append: true) and a body. By hand:
 * CheckResponse.status = 1 (Status.code = 1), denied_response = 2; DeniedHttpResponse.status = 1
 * (HttpStatus.code = 1), headers = 2, body = 3; HeaderValueOption.header = 1, append = 2
 * (BoolValue.value = 1). */
static void test_check_response_bytes(void **state)
{
    (void)state;
    static const uint8_t in[] = {
        0x0a, 0x02, 0x08, 0x07,                               /* status {code: 7} */
        0x12, 0x17,                                           /* denied_response, 23 */
        0x0a, 0x03, 0x08, 0x91, 0x03,                         /*  status {code: 401} */
        0x12, 0x0c, 0x0a, 0x06, 0x0a, 0x01, 'a', 0x12, 0x01, 'b',
        0x12, 0x02, 0x08, 0x01,                               /*  headers {a: b, append} */
        0x1a, 0x02, 'n', 'o',                                 /*  body "no" */
    };
    CheckResponse *r = envoy__service__auth__v3__check_response__unpack(NULL, sizeof(in), in);
    assert_non_null(r);
    assert_non_null(r->status);
    assert_int_equal(r->status->code, 7);
    assert_int_equal(r->http_response_case,
                     ENVOY__SERVICE__AUTH__V3__CHECK_RESPONSE__HTTP_RESPONSE_DENIED_RESPONSE);
    const Envoy__Service__Auth__V3__DeniedHttpResponse *d = r->denied_response;
    assert_int_equal(d->status->code, ENVOY__TYPE__V3__STATUS_CODE__Unauthorized);
    assert_int_equal(d->status->code, 401);
    assert_int_equal(d->n_headers, 1);
    assert_string_equal(d->headers[0]->header->key, "a");
    assert_string_equal(d->headers[0]->header->value, "b");
    assert_non_null(d->headers[0]->append);
    assert_true(d->headers[0]->append->value);
    assert_string_equal(d->body, "no");
    envoy__service__auth__v3__check_response__free_unpacked(r, NULL);
    /* The same denial cut inside denied_response: refused. */
    assert_null(envoy__service__auth__v3__check_response__unpack(NULL, sizeof(in) - 3, in));
}

/* An OVER_LIMIT RateLimitResponse with a status, a response header, and dynamic_metadata
 * (field 6, left out of proto/): skipped. By hand: overall_code = 1, statuses = 2
 * (DescriptorStatus.code = 1), response_headers_to_add = 3 (HeaderValue key 1, value 2). */
static void test_rate_limit_response_bytes(void **state)
{
    (void)state;
    static const uint8_t in[] = {
        0x08, 0x02,                                           /* overall_code OVER_LIMIT */
        0x12, 0x02, 0x08, 0x02,                               /* statuses [{code: OVER_LIMIT}] */
        0x1a, 0x06, 0x0a, 0x01, 'x', 0x12, 0x01, 'y',         /* response_headers_to_add x: y */
        0x32, 0x00,                                           /* dynamic_metadata {} */
        0x22, 0x06, 0x0a, 0x01, 'r', 0x12, 0x01, 's',         /* request_headers_to_add r: s */
    };
    RlResponse *r = envoy__service__ratelimit__v3__rate_limit_response__unpack(NULL, sizeof(in),
                                                                               in);
    assert_non_null(r);
    assert_int_equal(r->overall_code,
                     ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__CODE__OVER_LIMIT);
    assert_int_equal(r->n_statuses, 1);
    assert_int_equal(r->statuses[0]->code, 2);
    assert_int_equal(r->n_response_headers_to_add, 1);
    assert_string_equal(r->response_headers_to_add[0]->key, "x");
    assert_string_equal(r->response_headers_to_add[0]->value, "y");
    assert_int_equal(r->n_request_headers_to_add, 1);
    assert_string_equal(r->request_headers_to_add[0]->key, "r");
    assert_string_equal(r->request_headers_to_add[0]->value, "s");
    envoy__service__ratelimit__v3__rate_limit_response__free_unpacked(r, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_request_round_trip),
        cmocka_unit_test(test_check_request_bytes),
        cmocka_unit_test(test_rate_limit_request_round_trip),
        cmocka_unit_test(test_rate_limit_request_bytes),
        cmocka_unit_test(test_check_response_bytes),
        cmocka_unit_test(test_rate_limit_response_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
