/* Hash policies of ring_hash and maglev routes (see proxy/lbhash.h): what of the request is
 * hashed, as Envoy's HashPolicyImpl does it: the cookie's value (quotes dropped), the header's
 * value (several values sorted and joined), or the client's IP; and the cookie Envoy's router
 * makes and sends back when a policy with a ttl finds none. Only routes with a hash policy come
 * here: round robin and least_request routes cost nothing. Called by proxy/session.c. */
#include "proxy/lbhash.h"
#include "proxy/sockio.h"
#include "core/hash.h"

#include <stdlib.h>
#include <string.h>

#define PT_LBHASH_VALUES_MAX 8 /* header values sorted and joined; more: the first is hashed */

/* cookie_value: the value of cookie <name> in the request's Cookie headers, as Envoy's
 * parseCookieValue: each "k=v" pair after ';' and leading spaces, the first whose key is
 * exactly <name>, surrounding double quotes dropped. Empty when there is none. */
static struct pt_str cookie_value(const struct pt_h1_request *req, struct pt_str name)
{
    for (size_t h = 0; h < req->nheaders; h++) {
        struct pt_str v = req->headers[h].value;
        size_t i = 0;
        if (!pt_str_caseeq(req->headers[h].name, PT_STR_LIT("cookie")))
            continue;
        while (i < v.len) {
            size_t start = i, end, eq;
            while (i < v.len && v.ptr[i] != ';')
                i++;
            end = i++;
            while (start < end && v.ptr[start] == ' ')
                start++;
            for (eq = start; eq < end && v.ptr[eq] != '='; eq++)
                ;
            if (eq == end || eq - start != name.len || memcmp(v.ptr + start, name.ptr, name.len) != 0)
                continue;
            struct pt_str val = pt_str_make(v.ptr + eq + 1, end - eq - 1);
            if (val.len >= 2 && val.ptr[0] == '"' && val.ptr[val.len - 1] == '"')
                val = pt_str_make(val.ptr + 1, val.len - 2);
            return val;
        }
    }
    return (struct pt_str){ 0 };
}

static int str_cmp(const void *a, const void *b)
{
    const struct pt_str *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int d = memcmp(x->ptr, y->ptr, n);
    return d ? d : (x->len > y->len) - (x->len < y->len);
}

/* header_hash: Envoy's HeaderHashMethod: one value is hashed as it is; several are sorted and
 * hashed joined (up to PT_LBHASH_VALUES_MAX values and 1 KiB, else the first alone). */
static bool header_hash(const struct pt_h1_request *req, struct pt_str name, uint64_t *out)
{
    struct pt_str vals[PT_LBHASH_VALUES_MAX];
    size_t n = 0, total = 0;
    char joined[1024];

    for (size_t h = 0; h < req->nheaders; h++) {
        if (!pt_str_caseeq(req->headers[h].name, name))
            continue;
        if (n == PT_LBHASH_VALUES_MAX) {
            total = sizeof(joined) + 1; /* too many: the first alone */
            break;
        }
        vals[n++] = req->headers[h].value;
        total += req->headers[h].value.len;
    }
    if (n == 0)
        return false;
    if (n == 1 || total > sizeof(joined)) {
        *out = pt_xxhash64(vals[0].ptr, vals[0].len, 0);
        return true;
    }
    qsort(vals, n, sizeof(vals[0]), str_cmp);
    total = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(joined + total, vals[i].ptr, vals[i].len);
        total += vals[i].len;
    }
    *out = pt_xxhash64(joined, total, 0);
    return true;
}

/* make_cookie: Envoy's generated cookie value for <st>'s connection: xxHash64 of the client's
 * "ip:port" followed by the local "ip:port", as 16 lower-case hex digits, into st->lb_cookie. */
static void make_cookie(struct pt_stream *st)
{
    const struct pt_conn *c = st->conn;
    char addrs[2 * PT_SOCKADDR_STR_MAX + 8], *p = addrs;
    bool v6 = memchr(c->peer_ip, ':', c->peer_ip_len) != NULL;
    uint64_t h;

    if (st->rec.local_addr[0] == '\0') /* once per request; the access log may use it too */
        pt_fd_local_addr(c->io.fd, st->rec.local_addr);
    if (v6)
        *p++ = '[';
    memcpy(p, c->peer_ip, c->peer_ip_len);
    p += c->peer_ip_len;
    if (v6)
        *p++ = ']';
    *p++ = ':';
    p += pt_u64_dec(c->peer_port, p);
    size_t ll = strnlen(st->rec.local_addr, PT_SOCKADDR_STR_MAX);
    memcpy(p, st->rec.local_addr, ll);
    p += ll;
    h = pt_xxhash64(addrs, (size_t)(p - addrs), 0);
    for (int i = 0; i < 8; i++) /* big-endian bytes, as Envoy's Hex::uint64ToHex */
        memcpy(st->lb_cookie + 2 * i, pt_hex_pairs + 2 * ((h >> (56 - 8 * i)) & 0xff), 2);
}

void pt_lbhash_ctx(struct pt_stream *st, const struct pt_lb_hash *hp, struct pt_lb_ctx *ctx)
{
    const struct pt_h1_request *req = &st->req;
    struct pt_str v;

    *ctx = (struct pt_lb_ctx){ 0 };
    switch (hp->kind) {
    case PT_LB_HASH_COOKIE:
        v = cookie_value(req, hp->name);
        if (v.len == 0 && hp->generate) {
            make_cookie(st);
            st->flags |= PT_SF_LB_COOKIE;
            v = pt_str_make(st->lb_cookie, sizeof(st->lb_cookie));
        }
        if (v.len > 0)
            *ctx = (struct pt_lb_ctx){ .hash = pt_xxhash64(v.ptr, v.len, 0), .has_hash = true };
        break;
    case PT_LB_HASH_HEADER:
        ctx->has_hash = header_hash(req, hp->name, &ctx->hash);
        break;
    case PT_LB_HASH_SOURCE_IP:
        if (st->conn->peer_ip_len > 0)
            *ctx = (struct pt_lb_ctx){ .hash = pt_xxhash64(st->conn->peer_ip, st->conn->peer_ip_len, 0),
                                       .has_hash = true };
        break;
    default:
        break;
    }
}

size_t pt_lbhash_set_cookie(const struct pt_stream *st, struct pt_header *out, size_t n, char *buf, size_t cap)
{
    const struct pt_lb_hash *hp = st->rec.action ? st->rec.action->lb_hash : NULL;
    size_t len;

    if (!(st->flags & PT_SF_LB_COOKIE) || hp == NULL)
        return n;
    len = hp->set_prefix.len + sizeof(st->lb_cookie) + hp->set_suffix.len;
    if (len > cap)
        return n;
    memcpy(buf, hp->set_prefix.ptr, hp->set_prefix.len);
    memcpy(buf + hp->set_prefix.len, st->lb_cookie, sizeof(st->lb_cookie));
    memcpy(buf + hp->set_prefix.len + sizeof(st->lb_cookie), hp->set_suffix.ptr, hp->set_suffix.len);
    out[n++] = (struct pt_header){ PT_STR_LIT("set-cookie"), pt_str_make(buf, len) };
    return n;
}
