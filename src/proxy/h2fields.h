/* Header fields handed to nghttp2, shared by both HTTP/2 sides (proxy/h2conn.c for clients,
 * proxy/h2client.c for upstreams). Internal to src/proxy/. */
#ifndef PT_PROXY_H2FIELDS_H
#define PT_PROXY_H2FIELDS_H

#include <nghttp2/nghttp2.h>

#include "proxy/proxy-t.h" /* PT_MAX_HEADERS_DEFAULT */

/* pt_h2_nv: the <n> fields <f> as nghttp2's name/value pairs into <nv> (which nghttp2 copies). */
static inline void pt_h2_nv(nghttp2_nv *nv, const struct pt_header *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        nv[i] = (nghttp2_nv){ (uint8_t *)f[i].name.ptr, (uint8_t *)f[i].value.ptr, f[i].name.len, f[i].value.len,
                              NGHTTP2_NV_FLAG_NONE };
}

/* pt_h2_submit_trailer: the <*n> fields kept in <fields> (core/buf.h's layout) as the HEADERS
 * that ends stream <id>; the buffer is released and *n cleared. Returns nghttp2's result. */
static inline int pt_h2_submit_trailer(nghttp2_session *ng, int32_t id, struct pt_buf_pool *pool,
                                       struct pt_buf *fields, uint32_t *n)
{
    struct pt_header f[PT_MAX_HEADERS_DEFAULT];
    nghttp2_nv nv[PT_MAX_HEADERS_DEFAULT];
    size_t k = pt_fields_read(fields, 0, *n, f, PT_ARRAY_SIZE(f));
    int r;

    pt_h2_nv(nv, f, k);
    r = nghttp2_submit_trailer(ng, id, nv, k); /* copied */
    pt_buf_release(pool, fields);
    *n = 0;
    return r;
}

#endif
