/* gRPC-Web's pure pieces (http/grpcweb.h): the content-type kinds, resumable base64 both ways,
 * and the trailer frame. */
#include "http/grpcweb.h"

#include <string.h>

enum pt_grpcweb_kind pt_grpcweb_kind(struct pt_str ct)
{
    static const struct pt_str web = PT_STR_LIT("application/grpc-web");
    enum pt_grpcweb_kind kind = PT_GRPCWEB_BINARY;
    size_t n = web.len;

    if (ct.len < n || !pt_str_caseeq(pt_str_make(ct.ptr, n), web))
        return PT_GRPCWEB_NONE;
    if (ct.len >= n + 5 && pt_str_caseeq(pt_str_make(ct.ptr + n, 5), PT_STR_LIT("-text"))) {
        kind = PT_GRPCWEB_TEXT;
        n += 5;
    }
    if (ct.len == n || ct.ptr[n] == '+' || ct.ptr[n] == ';')
        return kind;
    return PT_GRPCWEB_NONE; /* application/grpc-webfoo */
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int64_t pt_b64dec_run(struct pt_b64dec *d, const char *in, size_t len, uint8_t *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (in[i] == '=') {
            if (d->nq < 2)
                return PT_BADMSG; /* "=xxx" or "x===" */
            d->pads++;
            d->q[d->nq++] = 0;
        } else {
            int v = b64_value(in[i]);
            if (v < 0 || d->pads > 0)
                return PT_BADMSG;
            d->q[d->nq++] = (uint8_t)v;
        }
        if (d->nq < 4)
            continue;
        uint32_t w = (uint32_t)d->q[0] << 18 | (uint32_t)d->q[1] << 12 | (uint32_t)d->q[2] << 6 | d->q[3];
        out[o++] = (uint8_t)(w >> 16);
        if (d->pads < 2)
            out[o++] = (uint8_t)(w >> 8);
        if (d->pads < 1)
            out[o++] = (uint8_t)w;
        d->nq = d->pads = 0;
    }
    return (int64_t)o;
}

size_t pt_b64enc_run(struct pt_b64enc *e, const uint8_t *in, size_t len, bool end, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t g[3];
    size_t o = 0, i = 0;

    for (;;) {
        size_t k = e->ncarry;
        memcpy(g, e->carry, k);
        while (k < 3 && i < len)
            g[k++] = in[i++];
        if (k < 3 && !end) { /* wait for the rest of the group */
            memcpy(e->carry, g, k);
            e->ncarry = (uint8_t)k;
            return o;
        }
        e->ncarry = 0;
        if (k == 0)
            return o;
        uint32_t w = (uint32_t)g[0] << 16 | (k > 1 ? (uint32_t)g[1] << 8 : 0) | (k > 2 ? g[2] : 0);
        out[o++] = abc[w >> 18];
        out[o++] = abc[(w >> 12) & 63];
        out[o++] = k > 1 ? abc[(w >> 6) & 63] : '=';
        out[o++] = k > 2 ? abc[w & 63] : '=';
    }
}

int64_t pt_grpcweb_trailers(const struct pt_header *t, size_t n, uint8_t *out, size_t cap)
{
    size_t len = 5;

    for (size_t i = 0; i < n; i++)
        len += t[i].name.len + 1 + t[i].value.len + 2;
    if (len > cap || len - 5 > UINT32_MAX)
        return PT_TOOBIG;
    out[0] = 0x80;
    out[1] = (uint8_t)((len - 5) >> 24);
    out[2] = (uint8_t)((len - 5) >> 16);
    out[3] = (uint8_t)((len - 5) >> 8);
    out[4] = (uint8_t)(len - 5);
    uint8_t *p = out + 5;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < t[i].name.len; k++)
            *p++ = (uint8_t)pt_lower(t[i].name.ptr[k]);
        *p++ = ':';
        if (t[i].value.len)
            memcpy(p, t[i].value.ptr, t[i].value.len);
        p += t[i].value.len;
        *p++ = '\r';
        *p++ = '\n';
    }
    return (int64_t)len;
}
