/* HTTP/2 request heads read into the proxy's request type (http/h2req.h). Every field is
 * checked here even though nghttp2 checks most of them too: what reaches an HTTP/1.1 upstream
 * must be a valid HTTP/1.1 field, and this file is fuzzed on its own. */
#include "http/h2req.h"
#include "http/h1.h"

#include <stdint.h>
#include <string.h>

enum { PS_METHOD = 1, PS_PATH = 2, PS_AUTHORITY = 4, PS_SCHEME = 8 };

#define OFF(p, store) ((uint32_t)((p) - (store)))

/* name_ok: a lower-case token (RFC 9110 §5.6.2, RFC 9113 §8.2.1). */
static bool name_ok(struct pt_str n)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";

    if (n.len == 0)
        return false;
    for (size_t i = 0; i < n.len; i++) {
        char c = n.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c != '\0' && strchr(extra, c) != NULL)))
            return false;
    }
    return true;
}

/* value_ok: visible bytes, SP, HTAB and obs-text, not starting or ending with whitespace. */
static bool value_ok(struct pt_str v)
{
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.ptr[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return v.len == 0 || (v.ptr[0] != ' ' && v.ptr[0] != '\t' && v.ptr[v.len - 1] != ' ' &&
                          v.ptr[v.len - 1] != '\t');
}

/* connection_specific: a field HTTP/2 does not carry (RFC 9113 §8.2.2). */
static bool connection_specific(struct pt_str n)
{
    static const struct pt_str names[] = { PT_STR_LIT("connection"), PT_STR_LIT("keep-alive"),
                                           PT_STR_LIT("proxy-connection"), PT_STR_LIT("transfer-encoding"),
                                           PT_STR_LIT("upgrade") };
    for (size_t i = 0; i < PT_ARRAY_SIZE(names); i++)
        if (pt_str_eq(n, names[i]))
            return true;
    return false;
}

static int pseudo_add(struct pt_h2req *r, struct pt_str name, uint32_t at[2], uint32_t vlen)
{
    static const struct { const char *name; uint32_t bit; } known[] = {
        { ":method", PS_METHOD }, { ":path", PS_PATH }, { ":authority", PS_AUTHORITY }, { ":scheme", PS_SCHEME },
    };
    uint32_t *slots[] = { r->method, r->path, r->authority, r->scheme };

    if (r->regular)
        return PT_BADMSG; /* pseudo-fields come first */
    for (size_t i = 0; i < PT_ARRAY_SIZE(known); i++) {
        if (!pt_str_eq(name, pt_str_c(known[i].name)))
            continue;
        if (r->pseudo & known[i].bit)
            return PT_BADMSG;
        r->pseudo |= known[i].bit;
        slots[i][0] = at[0];
        slots[i][1] = vlen;
        return 0;
    }
    return PT_BADMSG; /* a response's :status, or one nobody defined */
}

int pt_h2req_add(struct pt_h2req *r, char *store, size_t cap, struct pt_str name, struct pt_str value)
{
    bool pseudo = name.len > 0 && name.ptr[0] == ':';
    struct pt_str bare = pseudo ? pt_str_make(name.ptr + 1, name.len - 1) : name;
    uint32_t at[2];

    if (!name_ok(bare) || !value_ok(value))
        return PT_BADMSG;
    if (!pseudo && connection_specific(name))
        return PT_BADMSG;
    if (!pseudo && pt_str_eq(name, PT_STR_LIT("te")) && !pt_str_eq(value, PT_STR_LIT("trailers")))
        return PT_BADMSG;
    if (!pseudo && value.len == 0 && pt_str_eq(name, PT_STR_LIT("cookie"))) {
        r->regular = true;
        return 0; /* an empty crumb: nothing to join */
    }
    if (!pseudo && r->nhdrs >= r->max_hdrs)
        return PT_TOOBIG;
    if (cap - r->used < name.len + value.len || name.len + value.len > UINT32_MAX / 2)
        return PT_TOOBIG;
    at[0] = (uint32_t)r->used;
    memcpy(store + r->used, name.ptr, name.len);
    memcpy(store + r->used + name.len, value.ptr, value.len);
    if (pseudo) {
        at[0] += (uint32_t)name.len; /* the value's offset */
        int e = pseudo_add(r, name, at, (uint32_t)value.len);
        if (e != 0)
            return e;
    } else {
        r->regular = true;
        /* offsets now, pointers in pt_h2req_finish */
        r->hdrs[r->nhdrs].name = pt_str_make((const char *)(uintptr_t)at[0], name.len);
        r->hdrs[r->nhdrs].value = pt_str_make((const char *)(uintptr_t)(at[0] + name.len), value.len);
        r->nhdrs++;
        if (pt_str_eq(name, PT_STR_LIT("cookie"))) {
            r->ncookies++;
            r->cookie_bytes += (uint32_t)value.len;
        }
    }
    r->used += name.len + value.len;
    return 0;
}

static struct pt_str slot(const char *store, const uint32_t at[2])
{
    return at[1] ? pt_str_make(store + at[0], at[1]) : (struct pt_str){ 0 };
}

/* join_cookies: the cookie fields become one, at the place of the first (RFC 9113 §8.2.3).
 * Names are pointers by now, values still offsets; the joined value is a pointer, at
 * *<joined>. */
static void join_cookies(struct pt_h2req *r, char *store, size_t *joined)
{
    size_t need = r->cookie_bytes + 2 * (r->ncookies - 1), first = r->nhdrs, k = 0;
    char *p = store + r->used;

    for (size_t i = 0; i < r->nhdrs; i++) {
        struct pt_header h = r->hdrs[i]; /* a copy: slot k <= i is written below */
        if (!pt_str_eq(h.name, PT_STR_LIT("cookie"))) {
            r->hdrs[k++] = h;
            continue;
        }
        if (first == r->nhdrs) {
            first = k;
            r->hdrs[k++] = (struct pt_header){ h.name, pt_str_make(p, need) }; /* a pointer */
        } else {
            memcpy(p, "; ", 2);
            p += 2;
        }
        memcpy(p, store + (uintptr_t)h.value.ptr, h.value.len); /* still an offset */
        p += h.value.len;
    }
    r->nhdrs = k;
    r->used += need;
    *joined = first;
}

/* parse_uint: a Content-Length value: digits only, below 2^62. */
static int64_t parse_uint(struct pt_str v)
{
    int64_t n = 0;

    if (v.len == 0 || v.len > 18)
        return -1;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9')
            return -1;
        n = n * 10 + (v.ptr[i] - '0');
    }
    return n;
}

/* index_fields: the request's well-known fields, as the HTTP/1 parser marks them. */
static int index_fields(struct pt_h1_request *req)
{
    static const struct { const char *name; size_t off; } idx[] = {
        { "x-forwarded-for", offsetof(struct pt_h1_request, idx_x_forwarded_for) },
        { "x-forwarded-proto", offsetof(struct pt_h1_request, idx_x_forwarded_proto) },
        { "x-request-id", offsetof(struct pt_h1_request, idx_x_request_id) },
        { "user-agent", offsetof(struct pt_h1_request, idx_user_agent) },
        { "host", offsetof(struct pt_h1_request, idx_host) },
        { "content-length", offsetof(struct pt_h1_request, idx_content_length) },
        { "content-type", offsetof(struct pt_h1_request, idx_content_type) },
    };

    for (size_t k = 0; k < req->nheaders; k++) {
        const struct pt_header *h = &req->headers[k];
        for (size_t i = 0; i < PT_ARRAY_SIZE(idx); i++) {
            int *slotp = (int *)((char *)req + idx[i].off);
            if (*slotp < 0 && pt_str_eq(h->name, pt_str_c(idx[i].name)))
                *slotp = (int)k;
        }
        if (h->name.len == 14 && pt_str_eq(h->name, PT_STR_LIT("content-length"))) {
            int64_t n = parse_uint(h->value);
            if (n < 0 || (req->content_length >= 0 && n != req->content_length))
                return PT_BADMSG;
            req->content_length = n;
        } else if (h->name.len == 6 && pt_str_eq(h->name, PT_STR_LIT("expect"))) {
            req->expect_continue = pt_str_caseeq(h->value, PT_STR_LIT("100-continue"));
        }
    }
    if (req->idx_host >= 0) {
        req->host = req->headers[req->idx_host].value;
        for (size_t k = (size_t)req->idx_host + 1; k < req->nheaders; k++)
            if (pt_str_eq(req->headers[k].name, PT_STR_LIT("host")))
                return PT_BADMSG; /* one Host, as in HTTP/1.1 */
    }
    return 0;
}

int pt_h2req_finish(struct pt_h2req *r, char *store, size_t cap, struct pt_h1_request *req)
{
    const char *q;

    size_t joined = SIZE_MAX;

    if (r->ncookies > 1 && cap - r->used < r->cookie_bytes + 2 * (r->ncookies - 1))
        return PT_TOOBIG; /* before anything changes: the caller grows and calls again */
    for (size_t i = 0; i < r->nhdrs; i++)
        r->hdrs[i].name.ptr = store + (uintptr_t)r->hdrs[i].name.ptr;
    if (r->ncookies > 1)
        join_cookies(r, store, &joined);
    for (size_t i = 0; i < r->nhdrs; i++)
        if (i != joined)
            r->hdrs[i].value.ptr = store + (uintptr_t)r->hdrs[i].value.ptr;
    *req = (struct pt_h1_request){
        .method = slot(store, r->method),
        .target = slot(store, r->path),
        .authority = slot(store, r->authority),
        .minor_version = 1,
        .headers = r->hdrs,
        .nheaders = r->nhdrs,
        .content_length = -1,
        .keep_alive = true,
        .idx_connection = -1, .idx_te_header = -1, .idx_x_forwarded_for = -1,
        .idx_x_forwarded_proto = -1, .idx_x_request_id = -1, .idx_user_agent = -1,
        .idx_host = -1, .idx_content_length = -1, .idx_transfer_encoding = -1, .idx_upgrade = -1,
        .idx_content_type = -1,
    };
    if (!(r->pseudo & PS_METHOD) || req->method.len == 0)
        return PT_BADMSG;
    req->method_id = pt_http_method_id(req->method);
    if (req->method_id == PT_H1_METHOD_CONNECT) {
        /* §8.5: :authority only; the proxy does not tunnel CONNECT, routing finds no path */
        if ((r->pseudo & (PS_PATH | PS_SCHEME)) || req->authority.len == 0)
            return PT_BADMSG;
    } else {
        if (!(r->pseudo & PS_SCHEME) || r->scheme[1] == 0 || !(r->pseudo & PS_PATH) || req->target.len == 0)
            return PT_BADMSG;
        if (req->target.ptr[0] == '/') {
            q = memchr(req->target.ptr, '?', req->target.len);
            req->path = q ? pt_str_make(req->target.ptr, (size_t)(q - req->target.ptr)) : req->target;
            if (q != NULL)
                req->query = pt_str_make(q + 1, req->target.len - (size_t)(q + 1 - req->target.ptr));
        } else if (req->target.len == 1 && req->target.ptr[0] == '*' && req->method_id == PT_H1_METHOD_OPTIONS) {
            req->path = req->target;
        } else {
            return PT_BADMSG;
        }
        for (size_t i = 0; i < req->target.len; i++) {
            unsigned char c = (unsigned char)req->target.ptr[i];
            if (c <= 0x20 || c >= 0x7f || c == '#')
                return PT_BADMSG; /* what an HTTP/1.1 request line could not carry */
        }
    }
    for (size_t i = 0; i < req->method.len; i++)
        if (!((req->method.ptr[i] >= 'A' && req->method.ptr[i] <= 'Z') || req->method.ptr[i] == '-' ||
              req->method.ptr[i] == '_'))
            return PT_BADMSG; /* a token an HTTP/1.1 upstream takes as a method */
    return index_fields(req);
}
