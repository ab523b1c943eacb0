/* Upstream path rewriting for a matched route: Envoy's prefix_rewrite (the matched prefix, or the
 * whole path for exact and regex routes, is replaced) and regex_rewrite (every match of a pattern
 * is replaced, RE2-style "\1" groups). route.c calls pt_route__rewrite_setup() while it builds a
 * table; the proxy calls pt_route_rewrite() after pt_route_match(). Choosing the route and the
 * Emissary defaults (rewrite "/" unless `rewrite: ""`) are not done here: see route.c and config/. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>

#include "route/route.h"

/* convert_subst: translates an RE2 rewrite string (\0..\9 groups, \\ backslash, nothing else
 * after a backslash) into PCRE2 substitute syntax (${N}, $$) in <out>, which has room for
 * 4 * strlen(<in>) + 1 bytes. Returns the length, or -1 with a message in <err>. */
static int convert_subst(const char *in, uint32_t ncaptures, char *out, char *err, size_t errlen)
{
    size_t n = 0;

    for (const char *p = in; *p != '\0'; p++) {
        if (*p == '$') {
            out[n++] = '$';
            out[n++] = '$';
        } else if (*p != '\\') {
            out[n++] = *p;
        } else if (p[1] == '\\') {
            out[n++] = '\\';
            p++;
        } else if (p[1] >= '0' && p[1] <= '9') {
            uint32_t group = (uint32_t)(p[1] - '0');
            if (group > ncaptures) {
                snprintf(err, errlen, "regex_rewrite substitution uses \\%u but the pattern has %u "
                         "group(s)", group, ncaptures);
                return -1;
            }
            n += (size_t)sprintf(out + n, "${%u}", group);
            p++;
        } else {
            snprintf(err, errlen, "regex_rewrite substitution: '\\' must be followed by a digit "
                     "or '\\'");
            return -1;
        }
    }
    out[n] = '\0';
    return (int)n;
}

static int setup_regex_rewrite(struct pt_route_table *t, struct pt_route *r,
                               const struct pt_route_spec *spec, char *err, size_t errlen)
{
    char msg[256];
    const char *subst = spec->regex_rewrite_substitution ? spec->regex_rewrite_substitution : "";
    pcre2_code *code = pt_route__regex_compile(t, spec->regex_rewrite_pattern, 0, msg, sizeof(msg));
    uint32_t ncaptures = 0;

    if (code == NULL) {
        snprintf(err, errlen, "regex_rewrite pattern: %s", msg);
        return PT_INVAL;
    }
    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &ncaptures);
    if (ncaptures > PT_ROUTE__MAX_GROUPS) {
        snprintf(err, errlen, "regex_rewrite pattern has %u groups (at most %d)", ncaptures,
                 PT_ROUTE__MAX_GROUPS);
        return PT_INVAL;
    }
    char *conv = pt_xmalloc(4 * strlen(subst) + 1);
    int len = convert_subst(subst, ncaptures, conv, err, errlen);
    if (len >= 0) {
        r->_rr_code = code;
        r->_rr_subst = pt_route__strndup(t, conv, (size_t)len);
        r->_rr_subst_len = (uint32_t)len;
    }
    free(conv);
    return len < 0 ? PT_INVAL : 0;
}

int pt_route__rewrite_setup(struct pt_route_table *t, struct pt_route *r,
                            const struct pt_route_spec *spec, char *err, size_t errlen)
{
    if (spec->regex_rewrite_pattern != NULL && spec->regex_rewrite_pattern[0] != '\0')
        return setup_regex_rewrite(t, r, spec, err, errlen);
    if (spec->rewrite != NULL && spec->rewrite[0] != '\0') {
        size_t len = strlen(spec->rewrite);
        r->_rewrite = pt_route__strndup(t, spec->rewrite, len);
        r->_rewrite_len = (uint32_t)len;
    }
    return 0;
}

/* request-target bytes as the HTTP/1 parser accepts them (http/h1.c): VCHAR except '#'. */
static const unsigned char target_char[256] = {
    ['!' ... '"'] = 1, ['$' ... '~'] = 1,
};

/* is_target: whether <s> (<len> bytes) is a non-empty run of request-target bytes, so that it
 * can be written into a request line as is: no CR, LF, NUL, space or '#'. */
static bool is_target(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!target_char[(unsigned char)s[i]])
            return false;
    return len > 0;
}

/* regex_rewrite_path: the path with every match of the route's pattern substituted, into <out>.
 * Returns the length, or PT_TOOBIG / PT_NOMEM / PT_INVAL (match limit hit, or a result that is
 * not a request-target: config/ checks the substitution, this is the last line of defence
 * before the request line is written). */
static int regex_rewrite_path(const struct pt_route *r, struct pt_str path, char *out, size_t cap)
{
    pcre2_match_data *md = pt_route__match_data();
    PCRE2_SIZE outlen = cap;

    if (md == NULL)
        return PT_NOMEM;
    int rc = pcre2_substitute(r->_rr_code, (PCRE2_SPTR)(path.ptr ? path.ptr : ""), path.len, 0,
                              PCRE2_SUBSTITUTE_GLOBAL, md, NULL, (PCRE2_SPTR)r->_rr_subst,
                              r->_rr_subst_len, (PCRE2_UCHAR *)out, &outlen);
    if (rc == PCRE2_ERROR_NOMEMORY)
        return PT_TOOBIG;
    if (rc < 0 || !is_target(out, outlen))
        return PT_INVAL;
    return (int)outlen;
}

/* prefix_rewrite_path: the path with its matched part replaced by the rewrite, into <out>. */
static int prefix_rewrite_path(const struct pt_route *r, struct pt_str path, char *out, size_t cap)
{
    size_t matched = r->_matched_len < path.len ? r->_matched_len : path.len;
    size_t len = r->_rewrite_len + path.len - matched;

    if (len >= cap)
        return PT_TOOBIG;
    memcpy(out, r->_rewrite, r->_rewrite_len);
    if (path.len > matched)
        memcpy(out + r->_rewrite_len, path.ptr + matched, path.len - matched);
    return (int)len;
}

int pt_route_rewrite(const struct pt_route *r, const struct pt_route_req *req, char *out,
                     size_t cap, bool *changed)
{
    struct pt_str path = req->path;
    int len;

    *changed = r->_rr_code != NULL || r->_rewrite != NULL;
    if (cap > INT32_MAX)
        cap = INT32_MAX;
    if (r->_rr_code != NULL) {
        len = regex_rewrite_path(r, path, out, cap);
    } else if (r->_rewrite != NULL) {
        len = prefix_rewrite_path(r, path, out, cap);
    } else if (path.len < cap) {
        if (path.len)
            memcpy(out, path.ptr, path.len);
        len = (int)path.len;
    } else {
        len = PT_TOOBIG;
    }
    if (len < 0)
        return len;
    if (req->query.ptr != NULL) { /* a '?' with nothing after it is kept too, as Envoy does */
        if ((size_t)len + 1 + req->query.len >= cap)
            return PT_TOOBIG;
        out[len++] = '?';
        if (req->query.len)
            memcpy(out + len, req->query.ptr, req->query.len);
        len += (int)req->query.len;
    }
    out[len] = '\0';
    return len;
}
