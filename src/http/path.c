/* Request-path normalization, as Envoy's HttpConnectionManager does it with `normalize_path`
 * (Envoy's PathUtil::canonicalPath, built on Chromium's URL path canonicalizer), followed by
 * `merge_slashes`, and the escaped-slash check of `path_with_escaped_slashes_action:
 * REJECT_REQUEST`. The behaviour was learned from Envoy's test/common/http/path_utility_test.cc
 * and the canonicalizer's character table; the code is Portico's own. It is not a URL parser:
 * the caller has split the query off, and the path's bytes were checked by http/h1.c.
 * proxy/session.c calls it once per request whose path needs it. */
#include "http/path.h"

#include <stdint.h>
#include <string.h>

/* What a byte of the input is to the normalizer. The order matters to the scan: bytes up to
 * K_DOT never need normalizing on their own. */
enum byte_kind {
    K_COPY = 0, /* copied as it is */
    K_DOT,      /* '.': special at the start of a segment */
    K_SLASH,    /* '/' */
    K_PCT,      /* '%': an escape, "%2e", or a lone '%' */
    K_BSLASH,   /* '\\': a slash */
    K_ESCAPE,   /* percent-encoded on output */
    K_NUL,      /* rejected */
};

static const uint8_t kind[256] = {
    [0] = K_NUL,         [1 ... 0x20] = K_ESCAPE, ['"'] = K_ESCAPE,  ['#'] = K_ESCAPE,
    ['%'] = K_PCT,       ['.'] = K_DOT,           ['/'] = K_SLASH,   ['<'] = K_ESCAPE,
    ['>'] = K_ESCAPE,    ['?'] = K_ESCAPE,        ['\\'] = K_BSLASH, ['^'] = K_ESCAPE,
    ['`'] = K_ESCAPE,    ['{'] = K_ESCAPE,        ['|'] = K_ESCAPE,  ['}'] = K_ESCAPE,
    [0x7f ... 0xff] = K_ESCAPE,
};

/* RFC 3986 unreserved characters: the only escapes that are decoded. */
static const uint8_t unreserved[256] = {
    ['-'] = 1, ['.'] = 1, ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['_'] = 1, ['a' ... 'z'] = 1,
    ['~'] = 1,
};

#define NONE SIZE_MAX

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool pt_path_needs_normalizing(struct pt_str path, unsigned flags)
{
    const unsigned char *p = (const unsigned char *)path.ptr;
    size_t n = path.len;

    if (n == 0 || p[0] != '/')
        return true;
    for (size_t i = 0; i < n; i++) {
        uint8_t k = kind[p[i]];
        if (k <= K_DOT)
            continue;
        if (k != K_SLASH)
            return true;
        if (i + 1 < n && (p[i + 1] == '.' || (p[i + 1] == '/' && (flags & PT_PATH_MERGE_SLASHES))))
            return true;
    }
    return false;
}

/* dot_len: the length of the dot at in[i] ('.' is 1, "%2e" or "%2E" is 3), 0 if none. */
static size_t dot_len(const unsigned char *in, size_t i, size_t len)
{
    if (in[i] == '.')
        return 1;
    if (in[i] == '%' && len - i >= 3 && in[i + 1] == '2' && (in[i + 2] | 0x20) == 'e')
        return 3;
    return 0;
}

static bool is_slash(unsigned char c)
{
    return c == '/' || c == '\\';
}

enum dot_kind {
    DOT_NAME, /* part of a name: ".a", "..." */
    DOT_CUR,  /* the segment "." */
    DOT_UP,   /* the segment ".." */
};

/* after_dot: what the dot just before in[j], first in its segment, is; <*used> is the number of
 * bytes from in[j] on that belong to the segment (its second dot and its ending slash). */
static enum dot_kind after_dot(const unsigned char *in, size_t j, size_t len, size_t *used)
{
    size_t d;

    *used = 0;
    if (j == len)
        return DOT_CUR;
    if (is_slash(in[j])) {
        *used = 1;
        return DOT_CUR;
    }
    d = dot_len(in, j, len);
    if (d != 0 && (j + d == len || is_slash(in[j + d]))) {
        *used = d + (j + d < len);
        return DOT_UP;
    }
    return DOT_NAME;
}

/* up: the length of out[0..o) (which ends with '/') without its last segment; the first '/'
 * stays, so ".." at the root stays at the root. */
static size_t up(const char *out, size_t o)
{
    size_t i = o - 1;

    if (i == 0)
        return o;
    do
        i--;
    while (i > 0 && out[i] != '/');
    return i + 1;
}

/* nests: <o> bytes are written and the last one was just decoded from an escape; <bad> is where
 * the latest '%' that began no escape was written, <next> the input byte after the escape (-1 at
 * the end). True when that '%' and the bytes after it now read as an escape ("%%34" then "1":
 * "%41"), which a second pass would decode. */
static bool nests(const char *out, size_t o, size_t bad, int next)
{
    if (bad == NONE || bad + 3 < o || out[bad] != '%')
        return false;
    if (bad + 2 == o) /* "%X", then the next input byte */
        return next >= 0 && hexval((unsigned char)out[o - 1]) >= 0 &&
               hexval((unsigned char)next) >= 0;
    return hexval((unsigned char)out[bad + 1]) >= 0 && hexval((unsigned char)out[o - 1]) >= 0;
}

/* unnest: when nests(), turns the '%' at <bad> into "%25" (the bytes after it move by 2) and
 * returns the new length, <o> + 2. */
static size_t unnest(char *out, size_t o, size_t bad)
{
    memmove(out + bad + 3, out + bad + 1, o - bad - 1);
    out[bad + 1] = '2';
    out[bad + 2] = '5';
    return o + 2;
}

/* escaped_slash: "%2F" or "%5C", any case, at in[i] (a '%'). */
static bool escaped_slash(const unsigned char *in, size_t i, size_t len)
{
    if (len - i < 3)
        return false;
    return (in[i + 1] == '2' && (in[i + 2] | 0x20) == 'f') ||
           (in[i + 1] == '5' && (in[i + 2] | 0x20) == 'c');
}

/* merge: collapses runs of '/' in out[0..o) in place; returns the new length. */
static size_t merge(char *out, size_t o)
{
    size_t w = 0;

    for (size_t r = 0; r < o; r++)
        if (out[r] != '/' || w == 0 || out[w - 1] != '/')
            out[w++] = out[r];
    return w;
}

/* The output being written: <o> of <cap> bytes used; <bad> is where the latest '%' that began
 * no escape was written (NONE: none). */
struct norm {
    char *out;
    size_t o, cap, bad;
};

/* put: appends <s> (<k> bytes); false when it does not fit. */
static bool put(struct norm *n, const char *s, size_t k)
{
    if (n->cap - n->o < k)
        return false;
    memcpy(n->out + n->o, s, k);
    n->o += k;
    return true;
}

/* put_dot: the dot of <d> bytes at in[i]; returns the input bytes consumed, 0 when out of room. */
static size_t put_dot(struct norm *n, const unsigned char *in, size_t i, size_t len, size_t d)
{
    size_t used = 0;

    /* n->o > 0: the output starts with '/' */
    switch (n->out[n->o - 1] == '/' ? after_dot(in, i + d, len, &used) : DOT_NAME) {
    case DOT_NAME:
        return put(n, ".", 1) ? d : 0;
    case DOT_UP:
        n->o = up(n->out, n->o);
        if (n->bad != NONE && n->bad >= n->o)
            n->bad = NONE;
        /* fall through */
    case DOT_CUR:
        break;
    }
    return d + used;
}

/* put_percent: the '%' at in[i] that is not a dot; returns the input bytes consumed, PT_TOOBIG or
 * PT_BADMSG. */
static int put_percent(struct norm *n, const unsigned char *in, size_t i, size_t len,
                       unsigned flags)
{
    int hi, lo;
    unsigned char c;

    if ((flags & PT_PATH_REJECT_ESCAPED_SLASHES) && escaped_slash(in, i, len))
        return PT_BADMSG;
    if (len - i < 3 || (hi = hexval(in[i + 1])) < 0 || (lo = hexval(in[i + 2])) < 0) {
        n->bad = n->o;
        return put(n, "%", 1) ? 1 : PT_TOOBIG;
    }
    c = (unsigned char)(hi << 4 | lo);
    if (c == 0)
        return PT_BADMSG;
    if (!unreserved[c]) /* kept as written, hex case included */
        return put(n, (const char *)in + i, 3) ? 3 : PT_TOOBIG;
    if (!put(n, (const char *)&c, 1))
        return PT_TOOBIG;
    if (nests(n->out, n->o, n->bad, i + 3 < len ? in[i + 3] : -1)) {
        if (n->cap - n->o < 2)
            return PT_TOOBIG;
        n->o = unnest(n->out, n->o, n->bad);
    }
    return 3;
}

int pt_path_normalize(struct pt_str path, unsigned flags, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *in = (const unsigned char *)path.ptr;
    struct norm n = { out, 0, cap > INT32_MAX ? INT32_MAX : cap, NONE };
    size_t len = path.len, i = 0;

    if ((len == 0 || !is_slash(in[0])) && !put(&n, "/", 1))
        return PT_TOOBIG;
    while (i < len) {
        unsigned char c = in[i];
        size_t d;
        int r = 1;
        switch (kind[c]) {
        case K_COPY:
            r = put(&n, (const char *)in + i, 1) ? 1 : PT_TOOBIG;
            break;
        case K_SLASH:
        case K_BSLASH:
            r = put(&n, "/", 1) ? 1 : PT_TOOBIG;
            break;
        case K_ESCAPE: {
            char e[3] = { '%', hex[c >> 4], hex[c & 15] };
            r = put(&n, e, 3) ? 1 : PT_TOOBIG;
            break;
        }
        case K_NUL:
            return PT_BADMSG;
        case K_DOT:
        case K_PCT:
            if ((d = dot_len(in, i, len)) != 0) {
                d = put_dot(&n, in, i, len, d);
                r = d != 0 ? (int)d : PT_TOOBIG;
            } else
                r = put_percent(&n, in, i, len, flags);
            break;
        }
        if (r < 0)
            return r;
        i += (size_t)r;
    }
    if (flags & PT_PATH_MERGE_SLASHES)
        n.o = merge(out, n.o);
    return (int)n.o;
}
