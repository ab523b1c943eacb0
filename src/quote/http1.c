/* HTTP/1.x request parsers of portico-quote: the request head and the chunked body.
 *
 * Pure and resumable: no I/O, no allocation; the caller keeps the bytes in one buffer and calls
 * again with a longer buffer when PT_QUOTE_AGAIN comes back. Strict on what matters for a test
 * backend behind a proxy (RFC 9112): CRLF line ends only, no obs-fold, no whitespace before the
 * colon, exactly one Host in HTTP/1.1, Content-Length digits only, Transfer-Encoding together
 * with Content-Length refused. Errors are the negated status to answer. Called by conn.c. */
#include "quote/quote.h"

/* ---- small byte classes ---- */

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* line_byte_ok: whether <c> may appear before the LF of a request line (!fields) or a header
 * field line (fields). CR is checked apart: it must be followed by LF. */
static bool line_byte_ok(unsigned char c, bool fields)
{
    if (c == '\r')
        return true;
    if (fields)
        return c == '\t' || (c >= 0x20 && c != 0x7f);
    return c >= 0x20 && c <= 0x7e;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static struct pt_quote_span span_of(const char *buf, const char *p, const char *end)
{
    return (struct pt_quote_span){ (uint32_t)(p - buf), (uint32_t)(end - p) };
}

bool pt_quote_span_eq_ci(const char *buf, struct pt_quote_span s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)buf[s.off + i], b = (unsigned char)lit[i];
        if (a >= 'A' && a <= 'Z')
            a |= 0x20;
        if (a != b)
            return false;
    }
    return true;
}

/* next_element: the next element of the comma-separated list v[*i, n), without surrounding
 * whitespace (may be empty). Returns false when the list is exhausted. */
static bool next_element(const char *v, size_t n, size_t *i, struct pt_quote_span *el,
                         uint32_t base)
{
    if (*i > n)
        return false;
    size_t s = *i, e = s;
    while (e < n && v[e] != ',')
        e++;
    *i = e + 1;
    while (s < e && (v[s] == ' ' || v[s] == '\t'))
        s++;
    while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
        e--;
    *el = (struct pt_quote_span){ base + (uint32_t)s, (uint32_t)(e - s) };
    return true;
}

/* ---- request line ---- */

/* target_ok: origin-form ("/..."), asterisk-form ("*") or absolute-form ("scheme://..."). */
static bool target_ok(const char *t, size_t n)
{
    if (t[0] == '/')
        return true;
    if (n == 1 && t[0] == '*')
        return true;
    size_t i = 0;
    if (!is_alpha((unsigned char)t[0]))
        return false;
    while (i < n && (is_alpha((unsigned char)t[i]) || (t[i] >= '0' && t[i] <= '9') ||
                     t[i] == '+' || t[i] == '-' || t[i] == '.'))
        i++;
    return n - i >= 3 && memcmp(t + i, "://", 3) == 0;
}

static int parse_request_line(struct pt_quote_req *req, const char *buf, uint32_t off, uint32_t n)
{
    const char *p = buf + off, *end = p + n;
    const char *m = p;

    if (n > PT_QUOTE_MAX_LINE)
        return -414;
    while (p < end && is_tchar((unsigned char)*p))
        p++;
    if (p == m || p == end || *p != ' ')
        return -400;
    req->method = span_of(buf, m, p);
    const char *t = ++p;
    while (p < end && *p > 0x20 && *p < 0x7f)
        p++;
    if (p == t || p == end || *p != ' ' || !target_ok(t, (size_t)(p - t)))
        return -400;
    req->target = span_of(buf, t, p);
    p++;
    if (end - p != 8 || memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9' || p[6] != '.' ||
        p[7] < '0' || p[7] > '9')
        return -400;
    if (p[5] != '1')
        return -505;
    req->minor = p[7] - '0';
    req->is_head = req->method.len == 4 && memcmp(m, "HEAD", 4) == 0;
    return 0;
}

/* ---- header fields ---- */

static int note_content_length(struct pt_quote_req *req, const char *v, size_t n)
{
    uint64_t x = 0;
    if (n == 0 || n > 19)
        return -400;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -400;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    if (req->has_content_length && req->content_length != x)
        return -400;
    req->has_content_length = true;
    req->content_length = x;
    return 0;
}

static void note_transfer_encoding(struct pt_quote_req *req, const char *buf,
                                   struct pt_quote_span v)
{
    struct pt_quote_span el;
    size_t i = 0;
    while (next_element(buf + v.off, v.len, &i, &el, v.off)) {
        if (el.len == 0)
            continue;
        req->te_codings++;
        req->te_last_chunked = pt_quote_span_eq_ci(buf, el, "chunked");
    }
}

static void note_connection(struct pt_quote_req *req, const char *buf, struct pt_quote_span v)
{
    struct pt_quote_span el;
    size_t i = 0;
    while (next_element(buf + v.off, v.len, &i, &el, v.off)) {
        if (pt_quote_span_eq_ci(buf, el, "close"))
            req->conn_close = true;
        else if (pt_quote_span_eq_ci(buf, el, "keep-alive"))
            req->conn_keep_alive = true;
    }
}

/* note_header: the fields whose meaning the backend needs; the others are only recorded. */
static int note_header(struct pt_quote_req *req, const char *buf, const struct pt_quote_header *h)
{
    switch (h->name.len) {
    case 4:
        if (pt_quote_span_eq_ci(buf, h->name, "host"))
            req->nhost++;
        return 0;
    case 6:
        if (!pt_quote_span_eq_ci(buf, h->name, "expect"))
            return 0;
        if (pt_quote_span_eq_ci(buf, h->value, "100-continue"))
            req->expect_continue = true;
        else
            req->expect_other = true;
        return 0;
    case 10:
        if (pt_quote_span_eq_ci(buf, h->name, "connection"))
            note_connection(req, buf, h->value);
        return 0;
    case 14:
        if (pt_quote_span_eq_ci(buf, h->name, "content-length"))
            return note_content_length(req, buf + h->value.off, h->value.len);
        return 0;
    case 17:
        if (pt_quote_span_eq_ci(buf, h->name, "transfer-encoding"))
            note_transfer_encoding(req, buf, h->value);
        return 0;
    default:
        return 0;
    }
}

static int parse_field_line(struct pt_quote_req *req, const char *buf, uint32_t off, uint32_t n)
{
    const char *p = buf + off, *end = p + n;
    const char *name = p;

    while (p < end && is_tchar((unsigned char)*p))
        p++;
    if (p == name || p == end || *p != ':') /* also rejects obs-fold and "name :" */
        return -400;
    const char *name_end = p++;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    const char *v = p, *ve = end;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
    if (req->nheaders == PT_QUOTE_MAX_HEADERS)
        return -431;
    struct pt_quote_header *h = &req->headers[req->nheaders++];
    h->name = span_of(buf, name, name_end);
    h->value = span_of(buf, v, ve);
    return note_header(req, buf, h);
}

/* finish_head: the checks that need the whole head, then the request's framing. */
static int finish_head(struct pt_quote_req *req)
{
    if (req->te_codings > 0) {
        if (req->has_content_length || req->minor == 0 || !req->te_last_chunked)
            return -400;
        if (req->te_codings > 1)
            return -501; /* gzip, chunked: a coding this backend does not decode */
        req->chunked = true;
    }
    if (req->nhost > 1 || (req->minor >= 1 && req->nhost == 0))
        return -400;
    if (req->expect_other)
        return -417;
    if (req->minor == 0)
        req->expect_continue = false;
    req->keep_alive = !req->conn_close && (req->minor >= 1 || req->conn_keep_alive);
    return (int)req->pos;
}

/* ---- the head, line by line ---- */

int pt_quote_head_parse(struct pt_quote_req *req, const char *buf, size_t len)
{
    const unsigned char *b = (const unsigned char *)buf;

    for (;;) {
        uint32_t start = req->pos;
        bool fields = req->state == PT_QUOTE_HEAD_FIELDS;
        size_t i = req->scan > start ? req->scan : start;

        for (; i < len && b[i] != '\n'; i++) {
            if (!line_byte_ok(b[i], fields))
                return -400;
            if (b[i] == '\r' && i + 1 < len && b[i + 1] != '\n')
                return -400;
        }
        if (i == len) {
            req->scan = (uint32_t)(i > start ? i - 1 : start); /* recheck a trailing CR */
            if (!fields && len - start > PT_QUOTE_MAX_LINE)
                return -414;
            return len > PT_QUOTE_MAX_HEAD ? -431 : PT_QUOTE_AGAIN;
        }
        if (i == start || b[i - 1] != '\r')
            return -400; /* bare LF */
        uint32_t n = (uint32_t)(i - 1 - start);
        req->pos = req->scan = (uint32_t)(i + 1);
        if (req->pos > PT_QUOTE_MAX_HEAD)
            return -431;

        int rc;
        if (!fields) {
            if (n == 0)
                continue; /* empty line before the request line */
            rc = parse_request_line(req, buf, start, n);
            req->state = PT_QUOTE_HEAD_FIELDS;
        } else if (n == 0) {
            return finish_head(req);
        } else {
            rc = parse_field_line(req, buf, start, n);
        }
        if (rc < 0)
            return rc;
    }
}

/* ---- bodies ---- */

void pt_quote_body_add(struct pt_quote_body *body, const char *p, size_t n)
{
    if (body->prefix_len < PT_QUOTE_BODY_PREFIX) {
        size_t k = PT_QUOTE_BODY_PREFIX - body->prefix_len;
        if (k > n)
            k = n;
        memcpy(body->prefix + body->prefix_len, p, k);
        body->prefix_len += (uint32_t)k;
    }
    body->len += n;
}

static bool ctl_byte(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* chunk_step: one state transition on byte <c> that is not chunk data. Returns 1 when <c> is
 * consumed, 0 when the next state must look at it again, -400 when it is malformed. */
static int chunk_step(struct pt_quote_chunked *ck, unsigned char c)
{
    int h;
    switch (ck->state) {
    case PT_QUOTE_CHUNK_SIZE:
        if ((h = hex_value(c)) < 0)
            return -400;
        ck->left = (uint64_t)h;
        ck->digits = 1;
        ck->state = PT_QUOTE_CHUNK_SIZE_MORE;
        return 1;
    case PT_QUOTE_CHUNK_SIZE_MORE:
        if ((h = hex_value(c)) >= 0) {
            if (++ck->digits > 15)
                return -400;
            ck->left = ck->left * 16 + (uint64_t)h;
            return 1;
        }
        if (c == ';' || c == ' ' || c == '\t') /* BWS then extensions */
            ck->state = PT_QUOTE_CHUNK_EXT;
        else if (c == '\r')
            ck->state = PT_QUOTE_CHUNK_SIZE_LF;
        else
            return -400;
        return 1;
    case PT_QUOTE_CHUNK_EXT:
    case PT_QUOTE_CHUNK_TRAILER_LINE:
        if (c == '\r')
            ck->state = ck->state == PT_QUOTE_CHUNK_EXT ? PT_QUOTE_CHUNK_SIZE_LF
                                                         : PT_QUOTE_CHUNK_TRAILER_LF;
        else if (ctl_byte(c) || ++ck->extra > PT_QUOTE_MAX_TRAILER)
            return -400;
        return 1;
    case PT_QUOTE_CHUNK_SIZE_LF:
        if (c != '\n')
            return -400;
        ck->state = ck->left > 0 ? PT_QUOTE_CHUNK_DATA : PT_QUOTE_CHUNK_TRAILER;
        return 1;
    case PT_QUOTE_CHUNK_DATA_CR:
        if (c != '\r')
            return -400;
        ck->state = PT_QUOTE_CHUNK_DATA_LF;
        return 1;
    case PT_QUOTE_CHUNK_DATA_LF:
    case PT_QUOTE_CHUNK_TRAILER_LF:
        if (c != '\n')
            return -400;
        ck->state = ck->state == PT_QUOTE_CHUNK_DATA_LF ? PT_QUOTE_CHUNK_SIZE
                                                         : PT_QUOTE_CHUNK_TRAILER;
        return 1;
    case PT_QUOTE_CHUNK_TRAILER:
        if (c == '\r') {
            ck->state = PT_QUOTE_CHUNK_END_LF;
            return 1;
        }
        ck->state = PT_QUOTE_CHUNK_TRAILER_LINE;
        return 0;
    case PT_QUOTE_CHUNK_END_LF:
        if (c != '\n')
            return -400;
        ck->state = PT_QUOTE_CHUNK_DONE;
        return 1;
    case PT_QUOTE_CHUNK_DATA:
    case PT_QUOTE_CHUNK_DONE:
        break;
    }
    return -400;
}

long pt_quote_chunked_decode(struct pt_quote_chunked *ck, const char *buf, size_t len,
                             struct pt_quote_body *body)
{
    size_t i = 0;
    while (i < len && ck->state != PT_QUOTE_CHUNK_DONE) {
        if (ck->state == PT_QUOTE_CHUNK_DATA) {
            size_t n = len - i;
            if (n > ck->left)
                n = (size_t)ck->left;
            pt_quote_body_add(body, buf + i, n);
            i += n;
            ck->left -= n;
            if (ck->left == 0)
                ck->state = PT_QUOTE_CHUNK_DATA_CR;
            continue;
        }
        int rc = chunk_step(ck, (unsigned char)buf[i]);
        if (rc < 0)
            return rc;
        i += (size_t)rc;
    }
    return (long)i;
}
