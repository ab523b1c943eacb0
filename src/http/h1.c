/* The HTTP/1.1 parser: Portico's security boundary on the wire. It turns the head of a request
 * (from a client) or a response (from an upstream) into slices of the receive buffer, decides
 * the body framing, and scans chunked bodies so the proxy can forward them unchanged. It is
 * strict on purpose: whatever another HTTP implementation could read differently (bare LF,
 * obs-fold, duplicate or contradictory framing headers, odd tokens) is rejected, because the
 * proxy forwards headers as received and disagreement on framing is request smuggling.
 * It does no I/O and no allocation, and it does not interpret values beyond framing and
 * routing needs: no percent-decoding or path normalisation (the router does that), no header
 * rewriting (the proxy does that). Called by the HTTP/1 session and upstream code in
 * src/proxy/; the chunked decoder is also meant for the HTTP/2 bridge.
 *
 * How heads are scanned: one memrchr finds <eol>, the last LF in the buffer (within the head
 * limit). LF is in none of the byte tables, so every scan loop stops at <eol> at the latest and
 * needs no bounds check, and a line that starts after <eol> is the only incomplete one
 * (PT_AGAIN). Where a scan stops, the byte must be the CR of a CRLF; reading the LF after it is
 * safe because that CR lies before <eol>. The hot loops (field values, request-target) check
 * 8 bytes per step. A head is re-parsed from its start on every call: callers use
 * pt_h1_find_head_end() between reads to keep piecemeal arrival linear.
 *
 * Choices the RFCs leave open, made here:
 * - One empty line (CRLF) before the request line is skipped (RFC 9112 §2.2); a second is an
 *   error. None is allowed before a status line.
 * - request-target bytes are VCHAR except '#'. RFC 3986 also excludes "<>\^`{|}, but browsers
 *   send some of them unencoded in queries; percent-encoding is not validated here.
 * - Host names (Host header, absolute-form and CONNECT targets) are limited to the unreserved
 *   bytes of a DNS name (ALPHA DIGIT - . _ ~) or an IPv6 literal; an optional port is 1 to 5
 *   digits up to 65535. Userinfo ('@') is rejected (RFC 9110 §4.2.4).
 * - Transfer-Encoding: the combined list must be exactly one "chunked" (as Envoy): a request
 *   with other codings gets PT_NOTSUP (501), a response with them is an upstream protocol error.
 *   No parameters, no empty elements.
 * - HTTP/1.0 messages with Transfer-Encoding are rejected (RFC 9112 §6.1: faulty framing).
 * - Status lines may omit the SP before an empty reason phrase (common in upstreams). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memrchr */
#endif
#include "http/h1.h"

#include <limits.h>
#include <string.h>

/* tchar (RFC 9110 §5.6.2): methods, field names and list tokens. */
static const uint8_t tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

/* Field value bytes (RFC 9110 §5.5): VCHAR, obs-text, SP and HTAB. Not NUL, CR, LF, the
 * other CTLs or DEL. */
static const uint8_t vchar[256] = {
    ['\t'] = 1, [' ' ... '~'] = 1, [0x80 ... 0xff] = 1,
};

/* request-target bytes: VCHAR except '#' (see the choices above). */
static const uint8_t target_char[256] = {
    ['!' ... '"'] = 1, ['$' ... '~'] = 1,
};

/* Host name bytes: the unreserved set of RFC 3986 (see the choices above). */
static const uint8_t host_char[256] = {
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
    ['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1,
};

/* The scan loops below check 8 bytes per step before falling back to the tables, with the
 * word tricks of Hacker's Delight §6.1: ANY_BELOW(x, n) is non-zero iff a byte of x is below n
 * (n <= 0x80; bytes of 0x80 and above never count), ANY_ZERO(x) iff a byte of x is zero. A
 * borrow can only set a flag in a byte above a true hit, so both are exact as booleans. In
 * tests/unit/bench_h1.c this took a 400-byte request from about 270 to 125 ns. */
#define BYTES(b) (0x0101010101010101ULL * (uint8_t)(b))
#define ANY_BELOW(x, n) (((x) - BYTES(n)) & ~(x) & BYTES(0x80))
#define ANY_ZERO(x) ANY_BELOW(x, 1)

static uint64_t load8(const char *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof(x));
    return x;
}

/* first_hit: the offset of the lowest byte flagged in the non-zero mask <m> of ANY_BELOW /
 * ANY_ZERO. The lowest flag is always a true hit (a borrow only runs upwards), so the bytes
 * before it passed the test. */
static size_t first_hit(uint64_t m)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (size_t)__builtin_ctzll(m) / 8;
#else
    return (size_t)__builtin_clzll(m) / 8;
#endif
}

/* skip_value: past field value bytes from <p> (<= <eol>, where it stops at the latest). An
 * HTAB, the one control byte a value may hold, resumes the word loop after it. */
static const char *skip_value(const char *p, const char *eol)
{
    while (eol - p >= 8) {
        uint64_t x = load8(p);
        uint64_t m = ANY_BELOW(x, 0x20) | ANY_ZERO(x ^ BYTES(0x7f)); /* CTL (HTAB too) or DEL */
        if (m == 0) {
            p += 8;
            continue;
        }
        p += first_hit(m);
        if (*p != '\t')
            return p;
        p++;
    }
    while (vchar[(uint8_t)*p])
        p++;
    return p;
}

/* skip_target: past request-target bytes from <p> (<= <eol>, where it stops at the latest).
 * Every byte a word flags is outside target_char. */
static const char *skip_target(const char *p, const char *eol)
{
    for (; eol - p >= 8; p += 8) {
        uint64_t x = load8(p);
        uint64_t m = ANY_BELOW(x, 0x21) | (x & BYTES(0x80)) | ANY_ZERO(x ^ BYTES(0x7f)) |
                     ANY_ZERO(x ^ BYTES('#'));
        if (m != 0)
            return p + first_hit(m);
    }
    while (target_char[(uint8_t)*p])
        p++;
    return p;
}

/* Header kinds the parser acts on or indexes for the proxy. */
enum hdr_kind {
    H_OTHER,
    H_CONNECTION,
    H_CONTENT_LENGTH,
    H_TRANSFER_ENCODING,
    H_HOST,
    H_TE,
    H_EXPECT,
    H_UPGRADE,
    H_X_FORWARDED_FOR,
    H_X_FORWARDED_PROTO,
    H_X_REQUEST_ID,
    H_CONTENT_TYPE,
    H_USER_AGENT,
    H_MAX,
};

/* What the header walk learnt; shared by requests and responses. */
struct fields {
    size_t n;                 /* headers stored */
    int idx[H_MAX];           /* first header of each kind, -1 if none */
    unsigned count[H_MAX];    /* headers of each kind */
    int64_t content_length;   /* last Content-Length value, -1 if none */
    bool content_length_differs;
    unsigned te_codings;      /* elements of the Transfer-Encoding list */
    bool te_chunked;          /* one of them is chunked */
    bool conn_close, conn_keep_alive, conn_upgrade;
    bool conn_options;        /* Connection names something besides close and keep-alive */
};

static const struct pt_str slash = { "/", 1 };

/* ---- small helpers ---- */

static size_t head_limit(const struct pt_h1_limits *lim)
{
    size_t n = lim && lim->max_head_bytes ? lim->max_head_bytes : PT_H1_DEFAULT_MAX_HEAD_BYTES;
    return n < INT_MAX ? n : INT_MAX; /* the head length is returned as an int */
}

static size_t header_limit(const struct pt_h1_limits *lim, size_t max_hdrs)
{
    size_t n = lim && lim->max_headers ? lim->max_headers : PT_H1_DEFAULT_MAX_HEADERS;
    return n < max_hdrs ? n : max_hdrs;
}

/* A head that did not end within the bytes available: wait for more, unless the limit is what
 * cut it short. */
static int incomplete(int r, size_t len, size_t max_head)
{
    return r == PT_AGAIN && len >= max_head ? PT_TOOBIG : r;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* name_is: case-insensitive comparison of <n> with the lowercase literal <lit> of <len> bytes.
 * Folding with |0x20 is exact here: it only conflates a letter, digit, '-', ':' or '/' with a
 * control byte, and callers pass only bytes already checked to be tchar, target or field bytes. */
static inline bool name_is(const char *n, const char *lit, size_t len)
{
    const uint64_t fold = BYTES(0x20);

    if (len >= 8) { /* 8 bytes per step, the last step overlapping the one before */
        for (size_t i = 0; i + 8 < len; i += 8)
            if ((load8(n + i) | fold) != load8(lit + i))
                return false;
        return (load8(n + len - 8) | fold) == load8(lit + len - 8);
    }
    if (len >= 4) { /* two 4-byte pieces, overlapping when len < 8 */
        uint32_t a, b, la, lb;
        memcpy(&a, n, 4);
        memcpy(&b, n + len - 4, 4);
        memcpy(&la, lit, 4);
        memcpy(&lb, lit + len - 4, 4);
        return ((a | (uint32_t)fold) == la) & ((b | (uint32_t)fold) == lb);
    }
    for (size_t i = 0; i < len; i++)
        if ((n[i] | 0x20) != lit[i])
            return false;
    return true;
}

/* at_crlf: whether the byte a scan stopped at, <p> (<= eol), starts a CRLF. If p[0] is CR it is
 * not the LF at eol, so p[1] is still inside the buffer. */
static bool at_crlf(const char *p)
{
    return p[0] == '\r' && p[1] == '\n';
}

static bool valid_port(const char *p, const char *end)
{
    uint32_t port = 0;

    if (p == end || end - p > 5)
        return false;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return false;
        port = port * 10 + (uint32_t)(*p - '0');
    }
    return port <= 65535;
}

static bool is_ipv6_char(char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') || c == ':' ||
           c == '.';
}

/* valid_authority: host [":" port], host being a name or an IPv6 literal in brackets. */
static bool valid_authority(const char *p, size_t len, bool need_port)
{
    const char *end = p + len, *start = p;

    if (len == 0)
        return false;
    if (*p == '[') {
        for (p++; p < end && is_ipv6_char(*p); p++)
            ;
        if (p == start + 1 || p == end || *p != ']')
            return false;
        p++;
    } else {
        while (p < end && host_char[(uint8_t)*p])
            p++;
        if (p == start)
            return false;
    }
    if (p == end)
        return !need_port;
    return *p == ':' && valid_port(p + 1, end);
}

/* parse_decimal: 1*DIGIT into <*out>; false on any other byte or overflow. */
static bool parse_decimal(struct pt_str v, int64_t *out)
{
    int64_t n = 0;

    if (v.len == 0)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        unsigned d = (unsigned)(uint8_t)v.ptr[i] - '0';
        if (d > 9 || n > (INT64_MAX - d) / 10)
            return false;
        n = n * 10 + d;
    }
    *out = n;
    return true;
}

/* list_next: the next element of the comma-separated list (RFC 9110 §5.6.1) left in <*rest>,
 * without surrounding OWS; elements may be empty. Returns false when the list is used up. */
static bool list_next(struct pt_str *rest, struct pt_str *elem)
{
    const char *p = rest->ptr, *end, *comma;

    if (p == NULL)
        return false;
    comma = memchr(p, ',', rest->len);
    end = comma ? comma : p + rest->len;
    *rest = comma ? pt_str_make(comma + 1, rest->len - (size_t)(comma + 1 - p))
                  : pt_str_make(NULL, 0);
    while (p < end && is_ows(*p))
        p++;
    while (end > p && is_ows(end[-1]))
        end--;
    *elem = pt_str_make(p, (size_t)(end - p));
    return true;
}

bool pt_http_token(struct pt_str s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (!tchar[(uint8_t)s.ptr[i]])
            return false;
    return true;
}

static bool token_is(struct pt_str s, const char *lit, size_t len)
{
    return s.len == len && name_is(s.ptr, lit, len);
}

#define TOKEN_IS(s, lit) token_is((s), (lit), sizeof(lit) - 1)

/* ---- header fields ---- */

static enum hdr_kind classify(struct pt_str n)
{
#define IS(lit) (n.len == sizeof(lit) - 1 && name_is(n.ptr, lit, sizeof(lit) - 1))
    switch (n.len) {
    case 2:
        return IS("te") ? H_TE : H_OTHER;
    case 4:
        return IS("host") ? H_HOST : H_OTHER;
    case 6:
        return IS("expect") ? H_EXPECT : H_OTHER;
    case 7:
        return IS("upgrade") ? H_UPGRADE : H_OTHER;
    case 10:
        return IS("connection") ? H_CONNECTION : IS("user-agent") ? H_USER_AGENT : H_OTHER;
    case 12:
        return IS("x-request-id") ? H_X_REQUEST_ID : IS("content-type") ? H_CONTENT_TYPE : H_OTHER;
    case 14:
        return IS("content-length") ? H_CONTENT_LENGTH : H_OTHER;
    case 15:
        return IS("x-forwarded-for") ? H_X_FORWARDED_FOR : H_OTHER;
    case 17:
        return IS("transfer-encoding")   ? H_TRANSFER_ENCODING
               : IS("x-forwarded-proto") ? H_X_FORWARDED_PROTO
                                         : H_OTHER;
    }
    return H_OTHER;
#undef IS
}

/* Connection options (RFC 9110 §7.6.1): a list of tokens; empty elements are ignored. */
static int note_connection(struct fields *f, struct pt_str v)
{
    struct pt_str e;

    while (list_next(&v, &e)) {
        if (e.len == 0)
            continue;
        if (!pt_http_token(e))
            return PT_BADMSG;
        if (TOKEN_IS(e, "close"))
            f->conn_close = true;
        else if (TOKEN_IS(e, "keep-alive"))
            f->conn_keep_alive = true;
        else if (TOKEN_IS(e, "upgrade"))
            f->conn_upgrade = f->conn_options = true;
        else
            f->conn_options = true;
    }
    return 0;
}

/* Transfer-Encoding (RFC 9112 §6.1): all headers form one list. The only framing Portico
 * accepts is exactly one coding, "chunked" (Envoy's rule): other codings, or chunked more than
 * once, are valid syntax that is not supported (501); an element that is not a token is
 * malformed (400). */
static int note_transfer_encoding(struct fields *f, struct pt_str v)
{
    struct pt_str e;

    while (list_next(&v, &e)) {
        if (!pt_http_token(e))
            return PT_BADMSG;
        f->te_codings++;
        if (TOKEN_IS(e, "chunked"))
            f->te_chunked = true;
    }
    return 0;
}

/* te_supported: the Transfer-Encoding list is exactly "chunked". */
static bool te_supported(const struct fields *f)
{
    return f->te_codings == 1 && f->te_chunked;
}

static int note_content_length(struct fields *f, struct pt_str v)
{
    int64_t n;

    if (!parse_decimal(v, &n))
        return PT_BADMSG;
    if (f->content_length >= 0 && f->content_length != n)
        f->content_length_differs = true;
    f->content_length = n;
    return 0;
}

/* note_field: records header number <i>, already syntax-checked, in <f>. */
static int note_field(struct fields *f, const struct pt_header *h, size_t i)
{
    enum hdr_kind kind = classify(h->name);

    if (kind == H_OTHER)
        return 0;
    if (f->count[kind]++ == 0)
        f->idx[kind] = (int)i;
    switch (kind) {
    case H_CONNECTION:
        return note_connection(f, h->value);
    case H_TRANSFER_ENCODING:
        return note_transfer_encoding(f, h->value);
    case H_CONTENT_LENGTH:
        return note_content_length(f, h->value);
    default:
        return 0;
    }
}

/* parse_field_line: field-name ":" OWS field-value OWS CRLF at <*pp> (<= <eol>); moves <*pp> to
 * the next line. A line that starts with whitespace (obs-fold) or has whitespace before ':' has
 * no valid name. */
static int parse_field_line(const char **pp, const char *eol, struct pt_header *h)
{
    const char *p = *pp, *s = p;

    /* Four bytes per step: a byte is read only after the one before it was tchar, hence not
     * the LF at eol. */
    for (;;) {
        if (!tchar[(uint8_t)p[0]])
            break;
        if (!tchar[(uint8_t)p[1]]) {
            p += 1;
            break;
        }
        if (!tchar[(uint8_t)p[2]]) {
            p += 2;
            break;
        }
        if (!tchar[(uint8_t)p[3]]) {
            p += 3;
            break;
        }
        p += 4;
    }
    if (p == s || *p != ':')
        return PT_BADMSG;
    h->name = pt_str_make(s, (size_t)(p - s));
    for (p++; is_ows(*p); p++)
        ;
    s = p;
    p = skip_value(p, eol);
    if (!at_crlf(p))
        return PT_BADMSG; /* a control byte, DEL, a bare CR or a bare LF */
    *pp = p + 2;
    while (p > s && is_ows(p[-1]))
        p--;
    h->value = pt_str_make(s, (size_t)(p - s));
    return 0;
}

/* parse_fields: header lines from <p> to the blank line, stored in <hdrs> (at most <max>).
 * Sets <*head_end> after the blank line. Returns 0, PT_AGAIN, PT_BADMSG or PT_TOOBIG. */
static int parse_fields(const char *p, const char *eol, struct pt_header *hdrs, size_t max,
                        struct fields *f, const char **head_end)
{
    int r;

    memset(f, 0, sizeof(*f));
    memset(f->idx, 0xff, sizeof(f->idx)); /* all -1 */
    f->content_length = -1;
    for (;;) {
        if (p > eol)
            return PT_AGAIN;
        if (at_crlf(p)) {
            *head_end = p + 2;
            return 0;
        }
        if (f->n == max)
            return PT_TOOBIG;
        if ((r = parse_field_line(&p, eol, &hdrs[f->n])) != 0)
            return r;
        if ((r = note_field(f, &hdrs[f->n], f->n)) != 0)
            return r;
        f->n++;
    }
}

/* keep_alive: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive". */
static bool keep_alive(const struct fields *f, int minor_version)
{
    if (f->conn_close)
        return false;
    return minor_version == 1 || f->conn_keep_alive;
}

/* parse_version: exactly "HTTP/1.0" or "HTTP/1.1" at <p>; returns the minor version or -1. */
static int parse_version(const char *p)
{
    if (memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1'))
        return -1;
    return p[7] - '0';
}

/* ---- requests ---- */

static enum pt_h1_method method_id(struct pt_str m)
{
#define IS(lit) (m.len == sizeof(lit) - 1 && memcmp(m.ptr, lit, sizeof(lit) - 1) == 0)
    switch (m.len) {
    case 3:
        return IS("GET") ? PT_H1_METHOD_GET : IS("PUT") ? PT_H1_METHOD_PUT : PT_H1_METHOD_OTHER;
    case 4:
        return IS("POST") ? PT_H1_METHOD_POST : IS("HEAD") ? PT_H1_METHOD_HEAD : PT_H1_METHOD_OTHER;
    case 5:
        return IS("PATCH") ? PT_H1_METHOD_PATCH : IS("TRACE") ? PT_H1_METHOD_TRACE
                                                                : PT_H1_METHOD_OTHER;
    case 6:
        return IS("DELETE") ? PT_H1_METHOD_DELETE : PT_H1_METHOD_OTHER;
    case 7:
        return IS("OPTIONS")   ? PT_H1_METHOD_OPTIONS
               : IS("CONNECT") ? PT_H1_METHOD_CONNECT
                               : PT_H1_METHOD_OTHER;
    }
    return PT_H1_METHOD_OTHER;
#undef IS
}

/* split_path: path and query of "path[?query]" (<p> to <end>); an empty path is "/". */
static void split_path(struct pt_h1_request *req, const char *p, const char *end)
{
    const char *q = memchr(p, '?', (size_t)(end - p));

    req->path = pt_str_make(p, (size_t)((q ? q : end) - p));
    if (req->path.len == 0)
        req->path = slash;
    if (q)
        req->query = pt_str_make(q + 1, (size_t)(end - q - 1));
}

/* parse_absolute_form: "http(s)://authority[path][?query]" (RFC 9112 §3.2.2). */
static int parse_absolute_form(struct pt_h1_request *req)
{
    const char *p = req->target.ptr, *end = p + req->target.len, *a;

    if (req->target.len > 7 && name_is(p, "http://", 7))
        p += 7;
    else if (req->target.len > 8 && name_is(p, "https://", 8))
        p += 8;
    else
        return PT_BADMSG;
    for (a = p; p < end && *p != '/' && *p != '?'; p++)
        ;
    if (!valid_authority(a, (size_t)(p - a), false))
        return PT_BADMSG;
    req->authority = pt_str_make(a, (size_t)(p - a));
    split_path(req, p, end);
    return 0;
}

/* parse_target: the four forms of RFC 9112 §3.2, each only where it belongs. */
static int parse_target(struct pt_h1_request *req)
{
    struct pt_str t = req->target;

    if (req->method_id == PT_H1_METHOD_CONNECT) {
        if (!valid_authority(t.ptr, t.len, true))
            return PT_BADMSG;
        req->authority = t;
        return 0;
    }
    if (t.ptr[0] == '/') {
        split_path(req, t.ptr, t.ptr + t.len);
        return 0;
    }
    if (t.len == 1 && t.ptr[0] == '*') {
        if (req->method_id != PT_H1_METHOD_OPTIONS)
            return PT_BADMSG;
        req->path = t;
        return 0;
    }
    return parse_absolute_form(req);
}

/* parse_request_line: method SP request-target SP HTTP-version CRLF at <*pp> (<= <eol>); moves
 * <*pp> to the next line. */
static int parse_request_line(const char **pp, const char *eol, struct pt_h1_request *req)
{
    const char *p = *pp, *s = p;

    while (tchar[(uint8_t)*p])
        p++;
    if (p == s || *p != ' ')
        return PT_BADMSG;
    req->method = pt_str_make(s, (size_t)(p - s));
    req->method_id = method_id(req->method);
    s = ++p;
    p = skip_target(p, eol);
    if (p == s || *p != ' ')
        return PT_BADMSG;
    req->target = pt_str_make(s, (size_t)(p - s));
    p++;
    /* "HTTP/1.x" CRLF: an LF at eol before p + 9 would sit inside it */
    if (eol - p < 9 || (req->minor_version = parse_version(p)) < 0 || !at_crlf(p + 8))
        return PT_BADMSG;
    *pp = p + 10;
    return parse_target(req);
}

/* request_semantics: framing, Host and connection facts from the header walk. */
static int request_semantics(struct pt_h1_request *req, const struct fields *f)
{
    bool v11 = req->minor_version == 1;

    if (f->count[H_HOST] > 1 || (v11 && f->count[H_HOST] == 0))
        return PT_BADMSG;
    if (f->count[H_HOST] == 1) {
        req->host = req->headers[f->idx[H_HOST]].value;
        if (req->host.len > 0 && !valid_authority(req->host.ptr, req->host.len, false))
            return PT_BADMSG;
    }
    if (f->count[H_CONTENT_LENGTH] > 1)
        return PT_BADMSG;
    if (f->count[H_TRANSFER_ENCODING] > 0) {
        if (!v11 || f->count[H_CONTENT_LENGTH] > 0)
            return PT_BADMSG;
        if (!te_supported(f))
            return PT_NOTSUP;
        req->chunked = true;
    }
    req->content_length = f->content_length;
    req->keep_alive = keep_alive(f, req->minor_version);
    if (v11 && f->count[H_EXPECT] > 0) {
        struct pt_str e = req->headers[f->idx[H_EXPECT]].value;
        req->expect_continue = e.len == 12 && name_is(e.ptr, "100-continue", 12);
    }
    req->upgrade = v11 && f->conn_upgrade && f->count[H_UPGRADE] > 0;
    req->conn_options = f->conn_options;
    req->idx_connection = f->idx[H_CONNECTION];
    req->idx_te_header = f->idx[H_TE];
    req->idx_x_forwarded_for = f->idx[H_X_FORWARDED_FOR];
    req->idx_x_forwarded_proto = f->idx[H_X_FORWARDED_PROTO];
    req->idx_x_request_id = f->idx[H_X_REQUEST_ID];
    req->idx_user_agent = f->idx[H_USER_AGENT];
    req->idx_host = f->idx[H_HOST];
    req->idx_content_length = f->idx[H_CONTENT_LENGTH];
    req->idx_transfer_encoding = f->idx[H_TRANSFER_ENCODING];
    req->idx_upgrade = f->idx[H_UPGRADE];
    req->idx_content_type = f->idx[H_CONTENT_TYPE];
    return 0;
}

int pt_h1_parse_request(const char *buf, size_t len, struct pt_h1_request *req,
                        struct pt_header *hdrs, size_t max_hdrs, const struct pt_h1_limits *lim)
{
    size_t max_head = head_limit(lim);
    const char *end = buf + (len < max_head ? len : max_head);
    const char *eol = memrchr(buf, '\n', (size_t)(end - buf));
    const char *p = buf, *head_end;
    struct fields f;
    int r;

    memset(req, 0, sizeof(*req));
    req->headers = hdrs;
    if (eol == NULL)
        return incomplete(PT_AGAIN, len, max_head);
    if (at_crlf(p)) /* the one empty line tolerated before the request line */
        p += 2;
    if (p > eol)
        return incomplete(PT_AGAIN, len, max_head);
    if ((r = parse_request_line(&p, eol, req)) != 0)
        return r;
    r = parse_fields(p, eol, hdrs, header_limit(lim, max_hdrs), &f, &head_end);
    if (r != 0)
        return incomplete(r, len, max_head);
    req->nheaders = f.n;
    if ((r = request_semantics(req, &f)) != 0)
        return r;
    return (int)(head_end - buf);
}

/* ---- responses ---- */

/* parse_status_line: HTTP-version SP 3DIGIT [SP reason-phrase] CRLF at <*pp> (<= <eol>); moves
 * <*pp> to the next line. */
static int parse_status_line(const char **pp, const char *eol, struct pt_h1_response *res)
{
    const char *p = *pp, *s;

    /* "HTTP/1.x 200" CRLF at least: an LF at eol before p + 13 would sit inside it */
    if (eol - p < 13 || (res->minor_version = parse_version(p)) < 0 || p[8] != ' ')
        return PT_BADMSG;
    if (p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
        return PT_BADMSG;
    res->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    p += 12;
    if (!at_crlf(p)) {
        if (*p != ' ')
            return PT_BADMSG;
        s = ++p;
        p = skip_value(p, eol);
        if (!at_crlf(p))
            return PT_BADMSG;
        res->reason = pt_str_make(s, (size_t)(p - s));
    }
    *pp = p + 2;
    return 0;
}

static int response_semantics(struct pt_h1_response *res, const struct fields *f)
{
    res->content_length = f->content_length;
    res->keep_alive = keep_alive(f, res->minor_version);
    if (f->content_length_differs)
        return PT_BADMSG;
    if (f->count[H_TRANSFER_ENCODING] > 0) {
        if (res->minor_version == 0 || !te_supported(f))
            return PT_BADMSG;
        /* RFC 9112 §6.3 lets chunked win, but a message framed two ways is how responses get
         * smuggled past a cache or the next hop: refused, as Envoy's strict default does. */
        if (f->count[H_CONTENT_LENGTH] > 0)
            return PT_BADMSG;
        res->chunked = true;
    }
    res->idx_connection = f->idx[H_CONNECTION];
    res->idx_content_length = f->idx[H_CONTENT_LENGTH];
    res->idx_transfer_encoding = f->idx[H_TRANSFER_ENCODING];
    return 0;
}

int pt_h1_parse_response(const char *buf, size_t len, struct pt_h1_response *res,
                         struct pt_header *hdrs, size_t max_hdrs,
                         const struct pt_h1_limits *lim)
{
    size_t max_head = head_limit(lim);
    const char *end = buf + (len < max_head ? len : max_head);
    const char *eol = memrchr(buf, '\n', (size_t)(end - buf));
    const char *p = buf, *head_end;
    struct fields f;
    int r;

    memset(res, 0, sizeof(*res));
    res->headers = hdrs;
    if (eol == NULL)
        return incomplete(PT_AGAIN, len, max_head);
    if ((r = parse_status_line(&p, eol, res)) != 0)
        return r;
    r = parse_fields(p, eol, hdrs, header_limit(lim, max_hdrs), &f, &head_end);
    if (r != 0)
        return incomplete(r, len, max_head);
    res->nheaders = f.n;
    if ((r = response_semantics(res, &f)) != 0)
        return r;
    return (int)(head_end - buf);
}

bool pt_h1_response_has_body(int request_method_is_head, int status)
{
    return !request_method_is_head && status >= 200 && status != 204 && status != 304;
}

/* ---- head end ---- */

int pt_h1_find_head_end(const char *buf, size_t len, size_t *scanned,
                        const struct pt_h1_limits *lim)
{
    size_t max_head = head_limit(lim);
    const char *end = buf + (len < max_head ? len : max_head);
    const char *p = buf + *scanned, *lf;

    while (p < end && (lf = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (lf == buf || lf[-1] != '\r')
            return PT_BADMSG;
        if (lf - buf >= 3 && lf[-2] == '\n' && lf[-3] == '\r')
            return (int)(lf + 1 - buf);
        p = lf + 1;
    }
    *scanned = (size_t)(end - buf);
    return incomplete(PT_AGAIN, len, max_head);
}

/* ---- chunked bodies ---- */

size_t pt_h1_chunk_head(char *out, uint64_t n)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    size_t k = 0, len = 0;

    do {
        tmp[k++] = hex[n & 15];
        n >>= 4;
    } while (n != 0);
    while (k > 0)
        out[len++] = tmp[--k];
    out[len++] = '\r';
    out[len++] = '\n';
    return len;
}

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int chunked_fail(struct pt_h1_chunked *st, int err)
{
    st->_state = PT_H1_CHUNKED_ERROR;
    return err;
}

/* chunked_count: one more byte of the chunk-size line or trailer section, within <max>. */
static int chunked_count(struct pt_h1_chunked *st, uint32_t max)
{
    return ++st->_count > max ? chunked_fail(st, PT_TOOBIG) : 0;
}

/* chunked_size_digit: appends hex digit <d> to the chunk-size, refusing sizes above PT_H1_CHUNK_SIZE_MAX. */
static int chunked_size_digit(struct pt_h1_chunked *st, int d)
{
    if (st->_size > (PT_H1_CHUNK_SIZE_MAX - (uint64_t)d) >> 4)
        return chunked_fail(st, PT_BADMSG);
    st->_size = st->_size << 4 | (uint64_t)d;
    return chunked_count(st, PT_H1_CHUNK_LINE_MAX);
}

/* chunked_size_end: the byte after the last hex digit: BWS, ';' or CR. */
static int chunked_size_end(struct pt_h1_chunked *st, uint8_t c)
{
    if (c == '\r')
        st->_state = PT_H1_CHUNKED_SIZE_LF;
    else if (c == ';')
        st->_state = PT_H1_CHUNKED_EXT;
    else if (is_ows((char)c))
        st->_state = PT_H1_CHUNKED_SIZE_BWS;
    else
        return chunked_fail(st, PT_BADMSG);
    return chunked_count(st, PT_H1_CHUNK_LINE_MAX);
}

/* chunked_ext: chunk-ext bytes (RFC 9112 §7.1.1). Only the byte classes are checked, and that
 * quoted-strings are closed before CR: extensions are forwarded as they are, so what matters
 * is that every reader agrees where the line ends. */
static int chunked_ext(struct pt_h1_chunked *st, uint8_t c)
{
    switch (st->_state) {
    case PT_H1_CHUNKED_SIZE_BWS:
        if (c == ';')
            st->_state = PT_H1_CHUNKED_EXT;
        else if (!is_ows((char)c))
            return chunked_fail(st, PT_BADMSG);
        break;
    case PT_H1_CHUNKED_EXT:
        if (c == '\r')
            st->_state = PT_H1_CHUNKED_SIZE_LF;
        else if (c == '"')
            st->_state = PT_H1_CHUNKED_EXT_QUOTED;
        else if (!tchar[c] && c != ';' && c != '=' && !is_ows((char)c))
            return chunked_fail(st, PT_BADMSG);
        break;
    case PT_H1_CHUNKED_EXT_QUOTED:
        if (c == '"')
            st->_state = PT_H1_CHUNKED_EXT;
        else if (c == '\\')
            st->_state = PT_H1_CHUNKED_EXT_QUOTED_PAIR;
        else if (!vchar[c])
            return chunked_fail(st, PT_BADMSG);
        break;
    default: /* PT_H1_CHUNKED_EXT_QUOTED_PAIR */
        if (!vchar[c])
            return chunked_fail(st, PT_BADMSG);
        st->_state = PT_H1_CHUNKED_EXT_QUOTED;
        break;
    }
    return chunked_count(st, PT_H1_CHUNK_LINE_MAX);
}

/* chunked_trailer: trailer section bytes (RFC 9112 §7.1.2), each line field-name ":" value. */
static int chunked_trailer(struct pt_h1_chunked *st, uint8_t c)
{
    switch (st->_state) {
    case PT_H1_CHUNKED_TRAILER:
        if (c == '\r')
            st->_state = PT_H1_CHUNKED_END_LF;
        else if (tchar[c])
            st->_state = PT_H1_CHUNKED_TRAILER_NAME;
        else
            return chunked_fail(st, PT_BADMSG); /* includes obs-fold */
        break;
    case PT_H1_CHUNKED_TRAILER_NAME:
        if (c == ':')
            st->_state = PT_H1_CHUNKED_TRAILER_VALUE;
        else if (!tchar[c])
            return chunked_fail(st, PT_BADMSG);
        break;
    case PT_H1_CHUNKED_TRAILER_VALUE:
        if (c == '\r')
            st->_state = PT_H1_CHUNKED_TRAILER_LF;
        else if (!vchar[c])
            return chunked_fail(st, PT_BADMSG);
        break;
    default: /* PT_H1_CHUNKED_TRAILER_LF */
        if (c != '\n')
            return chunked_fail(st, PT_BADMSG);
        st->_state = PT_H1_CHUNKED_TRAILER;
        break;
    }
    return chunked_count(st, PT_H1_TRAILERS_MAX);
}

/* chunked_step: consumes one framing byte <c>. Returns 0, 1 at the end of the body, or an
 * error. Never called in state DATA, whose bytes the caller skips in bulk. */
static int chunked_step(struct pt_h1_chunked *st, uint8_t c)
{
    int d;

    switch ((enum pt_h1_chunked_state)st->_state) {
    case PT_H1_CHUNKED_SIZE:
        if ((d = hex_value(c)) < 0)
            return chunked_fail(st, PT_BADMSG);
        st->_size = (uint64_t)d;
        st->_count = 1;
        st->_state = PT_H1_CHUNKED_SIZE_MORE;
        return 0;
    case PT_H1_CHUNKED_SIZE_MORE:
        if ((d = hex_value(c)) >= 0)
            return chunked_size_digit(st, d);
        return chunked_size_end(st, c);
    case PT_H1_CHUNKED_SIZE_BWS:
    case PT_H1_CHUNKED_EXT:
    case PT_H1_CHUNKED_EXT_QUOTED:
    case PT_H1_CHUNKED_EXT_QUOTED_PAIR:
        return chunked_ext(st, c);
    case PT_H1_CHUNKED_SIZE_LF:
        if (c != '\n')
            return chunked_fail(st, PT_BADMSG);
        st->remaining = st->_size;
        st->_count = 0;
        st->_state = st->_size ? PT_H1_CHUNKED_DATA : PT_H1_CHUNKED_TRAILER;
        return 0;
    case PT_H1_CHUNKED_DATA_CR:
        if (c != '\r')
            return chunked_fail(st, PT_BADMSG);
        st->_state = PT_H1_CHUNKED_DATA_LF;
        return 0;
    case PT_H1_CHUNKED_DATA_LF:
        if (c != '\n')
            return chunked_fail(st, PT_BADMSG);
        st->_state = PT_H1_CHUNKED_SIZE;
        return 0;
    case PT_H1_CHUNKED_TRAILER:
    case PT_H1_CHUNKED_TRAILER_NAME:
    case PT_H1_CHUNKED_TRAILER_VALUE:
    case PT_H1_CHUNKED_TRAILER_LF:
        return chunked_trailer(st, c);
    case PT_H1_CHUNKED_END_LF:
        if (c != '\n')
            return chunked_fail(st, PT_BADMSG);
        st->_state = PT_H1_CHUNKED_DONE;
        return 1;
    case PT_H1_CHUNKED_DATA:
    case PT_H1_CHUNKED_DONE:
    case PT_H1_CHUNKED_ERROR:
        break;
    }
    return chunked_fail(st, PT_BADMSG);
}

/* chunked_run: the loop behind scan and decode. With <data>, stops after the first data run and
 * returns it there. */
static int chunked_run(struct pt_h1_chunked *st, const char *buf, size_t len, size_t *consumed,
                       struct pt_str *data)
{
    const char *p = buf, *end = buf + len;
    int r = 0;

    if (data)
        *data = pt_str_make(NULL, 0);
    if (st->_state == PT_H1_CHUNKED_DONE || st->_state == PT_H1_CHUNKED_ERROR) {
        *consumed = 0;
        return st->_state == PT_H1_CHUNKED_DONE ? 1 : PT_BADMSG;
    }
    while (p < end) {
        if (st->_state == PT_H1_CHUNKED_DATA) {
            size_t n = (size_t)(end - p) < st->remaining ? (size_t)(end - p) : st->remaining;
            pt_h1_chunked_skip(st, n);
            p += n;
            if (data) {
                *data = pt_str_make(p - n, n);
                break;
            }
            continue;
        }
        if ((r = chunked_step(st, (uint8_t)*p++)) != 0)
            break;
    }
    *consumed = (size_t)(p - buf);
    return r;
}

int pt_h1_chunked_scan(struct pt_h1_chunked *st, const char *buf, size_t len, size_t *consumed)
{
    return chunked_run(st, buf, len, consumed, NULL);
}

int pt_h1_chunked_decode(struct pt_h1_chunked *st, const char *buf, size_t len, size_t *consumed,
                         struct pt_str *data)
{
    return chunked_run(st, buf, len, consumed, data);
}

enum pt_h1_method pt_http_method_id(struct pt_str method)
{
    return method_id(method);
}

static void rebase(struct pt_str *s, const char *lo, size_t len, char *to)
{
    if (s->ptr != NULL && s->ptr >= lo && s->ptr < lo + len)
        s->ptr = to + (s->ptr - lo);
}

void pt_h1_request_rebase(struct pt_h1_request *req, const char *lo, size_t len, char *to)
{
    rebase(&req->method, lo, len, to);
    rebase(&req->target, lo, len, to);
    rebase(&req->path, lo, len, to);
    rebase(&req->query, lo, len, to);
    rebase(&req->authority, lo, len, to);
    rebase(&req->host, lo, len, to);
    for (size_t i = 0; i < req->nheaders; i++) {
        rebase(&req->headers[i].name, lo, len, to);
        rebase(&req->headers[i].value, lo, len, to);
    }
}
