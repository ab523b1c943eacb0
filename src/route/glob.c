/* Hostname globs: matching a request host against a Mapping or Host hostname ("*", "*.a.com",
 * "a.*", exact), Emissary's glob-overlap test used to bind Mappings to Hosts, and stripping the
 * port from an authority. Pure functions on strings, no allocation. route.c calls the parsed
 * forms on the request path; config/ calls pt_hostglob_overlap() when it binds Mappings to Hosts.
 * Everything is ASCII case-insensitive, as DNS names are (Emissary compares case-sensitively). */
#include "route/route.h"

static bool is_digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

struct pt_str pt_authority_strip_port(struct pt_str a)
{
    if (a.len == 0)
        return a;
    if (a.ptr[0] == '[') {
        const char *close = memchr(a.ptr, ']', a.len);
        if (close == NULL)
            return a;
        size_t host_len = (size_t)(close - a.ptr) + 1;
        if (host_len == a.len)
            return a;
        if (a.ptr[host_len] != ':' || !is_digits(a.ptr + host_len + 1, a.len - host_len - 1))
            return a;
        return pt_str_make(a.ptr, host_len);
    }
    const char *colon = memchr(a.ptr, ':', a.len);
    if (colon == NULL)
        return a;
    size_t host_len = (size_t)(colon - a.ptr);
    const char *port = colon + 1;
    size_t port_len = a.len - host_len - 1;
    if (memchr(port, ':', port_len) != NULL || !is_digits(port, port_len))
        return a; /* bare IPv6 address, or not a port */
    return pt_str_make(a.ptr, host_len);
}

void pt_hostglob__parse(const char *glob, size_t len, struct pt_hostglob *out)
{
    *out = (struct pt_hostglob){ .kind = PT_HOSTGLOB_INVALID, .lit = pt_str_make(glob, len) };
    if (len == 0 || glob[0] == '.')
        return;
    if (len == 1 && glob[0] == '*') {
        out->kind = PT_HOSTGLOB_ANY;
        out->lit = pt_str_make(glob, 0);
        return;
    }
    const char *star = memchr(glob, '*', len);
    if (star == NULL) {
        out->kind = PT_HOSTGLOB_EXACT;
    } else if (star == glob && memchr(glob + 1, '*', len - 1) == NULL) {
        out->kind = PT_HOSTGLOB_SUFFIX;
        out->lit = pt_str_make(glob + 1, len - 1);
    } else if (star == glob + len - 1) {
        out->kind = PT_HOSTGLOB_PREFIX;
        out->lit = pt_str_make(glob, len - 1);
    } else {
        return; /* "*" in the middle, or at both ends */
    }
    out->has_port = pt_authority_strip_port(out->lit).len != out->lit.len;
}

static bool caseeq_n(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (pt_lower(a[i]) != pt_lower(b[i]))
            return false;
    return true;
}

bool pt_hostglob__test(const struct pt_hostglob *g, struct pt_str host)
{
    if (g->kind == PT_HOSTGLOB_ANY)
        return true;
    if (host.len == 0 || host.ptr[0] == '.')
        return false;
    switch (g->kind) {
    case PT_HOSTGLOB_EXACT:
        return pt_str_caseeq(g->lit, host);
    case PT_HOSTGLOB_SUFFIX:
        return host.len > g->lit.len &&
               caseeq_n(host.ptr + host.len - g->lit.len, g->lit.ptr, g->lit.len);
    case PT_HOSTGLOB_PREFIX:
        return host.len > g->lit.len && caseeq_n(host.ptr, g->lit.ptr, g->lit.len);
    default:
        return false;
    }
}

bool pt_hostglob_match(const char *glob, struct pt_str host)
{
    struct pt_hostglob g;

    pt_hostglob__parse(glob, strlen(glob), &g);
    return pt_hostglob__test(&g, host);
}

static bool ends_with(struct pt_str s, struct pt_str suffix)
{
    return s.len >= suffix.len && caseeq_n(s.ptr + s.len - suffix.len, suffix.ptr, suffix.len);
}

static bool starts_with(struct pt_str s, struct pt_str prefix)
{
    return s.len >= prefix.len && caseeq_n(s.ptr, prefix.ptr, prefix.len);
}

/* overlap_start: <g1> starts with '*', <g2> does not end with one (it may start with one). The
 * '*' of g1 matches at least one byte, so unless g2 is a wildcard too, g2 must be longer than g1
 * without its '*'. Emissary's hostglob_matches_start. */
static bool overlap_start(struct pt_str g1, struct pt_str g2, bool g2start)
{
    struct pt_str m1 = pt_str_make(g1.ptr + 1, g1.len - 1);
    struct pt_str m2 = g2start ? pt_str_make(g2.ptr + 1, g2.len - 1) : g2;

    if (g1.len > m2.len) {
        if (!g2start)
            return false;
        struct pt_str t = m1; /* both wildcards: test the shorter against the longer */
        m1 = m2;
        m2 = t;
    }
    return ends_with(m2, m1);
}

/* overlap_end: the mirror image of overlap_start() for trailing '*'. */
static bool overlap_end(struct pt_str g1, struct pt_str g2, bool g2end)
{
    struct pt_str m1 = pt_str_make(g1.ptr, g1.len - 1);
    struct pt_str m2 = g2end ? pt_str_make(g2.ptr, g2.len - 1) : g2;

    if (g1.len > m2.len) {
        if (!g2end)
            return false;
        struct pt_str t = m1;
        m1 = m2;
        m2 = t;
    }
    return starts_with(m2, m1);
}

bool pt_hostglob_overlap(const char *a, const char *b)
{
    struct pt_str g1 = pt_str_c(a), g2 = pt_str_c(b);

    if (pt_str_caseeq(g1, g2))
        return true;
    if (pt_str_eq(g1, PT_STR_LIT("*")) || pt_str_eq(g2, PT_STR_LIT("*")))
        return true;
    if (g1.len == 0 || g2.len == 0 || g1.ptr[0] == '.' || g2.ptr[0] == '.')
        return false;

    bool g1start = g1.ptr[0] == '*', g1end = g1.ptr[g1.len - 1] == '*';
    bool g2start = g2.ptr[0] == '*', g2end = g2.ptr[g2.len - 1] == '*';

    if ((g1start && g1end) || (g2start && g2end))
        return false; /* not a valid glob, and not equal */
    if (!(g1start || g1end || g2start || g2end))
        return false; /* two different plain names */
    if ((g1start && g2end) || (g2start && g1end))
        return true;  /* "*.x" and "y.*" always share some "y.<...>.x" */
    if (g1start)
        return overlap_start(g1, g2, g2start);
    if (g2start)
        return overlap_start(g2, g1, g1start);
    if (g1end)
        return overlap_end(g1, g2, g2end);
    return overlap_end(g2, g1, g1end);
}
