/* Compiling and applying a CORS policy the way Envoy's CORS filter does (see http/cors.h).
 * Emissary's ircors.py decides the shape: origins become exact string matches, lists are joined
 * with ", ", false and empty values are left out. Called by config/compile.c (compile) and
 * proxy/cors.c (the rest). */
#include "http/cors.h"

#include <stdlib.h>
#include <string.h>

/* joined_len: the length of <list> joined with ", ". */
static size_t joined_len(const char *const *list, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(list[i]) + (i ? 2 : 0);
    return len;
}

/* join: writes <list> joined with ", " at <p>; returns the slice. */
static struct pt_str join(char *p, const char *const *list, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(list[i]);
        if (i) {
            memcpy(p + len, ", ", 2);
            len += 2;
        }
        memcpy(p + len, list[i], l);
        len += l;
    }
    return pt_str_make(p, len);
}

struct pt_cors *pt_cors_compile(const struct pt_cors_res *r)
{
    size_t need = sizeof(struct pt_cors) + r->norigins * sizeof(struct pt_str);
    size_t lm = joined_len(r->methods, r->nmethods), lh = joined_len(r->headers, r->nheaders);
    size_t le = joined_len(r->exposed_headers, r->nexposed_headers);
    size_t la = r->max_age ? strlen(r->max_age) : 0;
    struct pt_cors *c;
    char *p;

    for (size_t i = 0; i < r->norigins; i++)
        need += strlen(r->origins[i]);
    need += lm + lh + le + la;
    c = pt_xcalloc(1, need);
    c->origins = (struct pt_str *)(c + 1);
    p = (char *)(c->origins + r->norigins);
    for (size_t i = 0; i < r->norigins; i++) {
        size_t l = strlen(r->origins[i]);
        memcpy(p, r->origins[i], l);
        c->origins[c->norigins++] = pt_str_make(p, l);
        p += l;
        if (l == 1 && r->origins[i][0] == '*')
            c->any_origin = true; /* Envoy: a matcher that matches "*" allows every Origin */
    }
    c->allow_methods = join(p, r->methods, r->nmethods);
    p += lm;
    c->allow_headers = join(p, r->headers, r->nheaders);
    p += lh;
    c->expose_headers = join(p, r->exposed_headers, r->nexposed_headers);
    p += le;
    if (la) {
        memcpy(p, r->max_age, la);
        c->max_age = pt_str_make(p, la);
    }
    c->credentials = r->credentials;
    return c;
}

bool pt_cors_origin_allowed(const struct pt_cors *c, struct pt_str origin)
{
    if (c->any_origin)
        return true;
    for (uint32_t i = 0; i < c->norigins; i++)
        if (pt_str_eq(c->origins[i], origin))
            return true;
    return false;
}

/* star: whether <v> is exactly "*". */
static bool star(struct pt_str v)
{
    return v.len == 1 && v.ptr[0] == '*';
}

size_t pt_cors_preflight_headers(const struct pt_cors *c, struct pt_str origin,
                                 struct pt_str req_method, struct pt_str req_headers,
                                 struct pt_header *out)
{
    size_t n = 0;

    out[n++] = (struct pt_header){ PT_STR_LIT("access-control-allow-origin"), origin };
    if (c->credentials)
        out[n++] = (struct pt_header){ PT_STR_LIT("access-control-allow-credentials"),
                                       PT_STR_LIT("true") };
    if (c->allow_methods.len)
        out[n++] = (struct pt_header){ PT_STR_LIT("access-control-allow-methods"),
                                       star(c->allow_methods) ? req_method : c->allow_methods };
    if (c->allow_headers.len)
        out[n++] = (struct pt_header){ PT_STR_LIT("access-control-allow-headers"),
                                       star(c->allow_headers) ? req_headers : c->allow_headers };
    if (c->max_age.len)
        out[n++] = (struct pt_header){ PT_STR_LIT("access-control-max-age"), c->max_age };
    if (c->expose_headers.len)
        out[n++] = (struct pt_header){ PT_STR_LIT("access-control-expose-headers"),
                                       c->expose_headers };
    return n;
}

size_t pt_cors_response_headers(const struct pt_cors *c, struct pt_str origin,
                                struct pt_header *out)
{
    size_t n = 0;

    out[n++] = (struct pt_header){ PT_STR_LIT("access-control-allow-origin"), origin };
    if (c->credentials)
        out[n++] = (struct pt_header){ PT_STR_LIT("access-control-allow-credentials"),
                                       PT_STR_LIT("true") };
    if (c->expose_headers.len)
        out[n++] = (struct pt_header){ PT_STR_LIT("access-control-expose-headers"),
                                       c->expose_headers };
    return n;
}
