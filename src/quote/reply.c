/* Responses of portico-quote: what each path answers, written into a connection's output buffer.
 *
 *   any path       200 {"server":NAME,"quote":QUOTE,"time":RFC3339 with ns}, quotes rotate
 *   /echo[/...]    200 a JSON description of the request as received (for proxy tests)
 *   /status/NNN    NNN (200-599) {"server":NAME,"status":NNN}
 *   /delay/MS      a quote after MS milliseconds (the timer lives in conn.c)
 *   /size/N        200 N bytes "abc...zabc..." with content-length
 *   /chunked/N     200 the same N bytes chunked (content-length for HTTP/1.0 clients)
 *
 * A number may be followed by "/anything", so a proxy that appends to a rewritten prefix still
 * reaches the right handler. Nothing here does I/O; conn.c calls it and writes the buffer. */
#include <stdio.h>

#include "quote/quote.h"

static const char *const quotes[] = {
    "Abstraction is ever present.",
    "A late night does not make any sense.",
    "A principal idea is omnipresent, much like candy.",
    "Nihilism gambles with lives, happiness, and even destiny itself!",
    "The last sentence you read is often sensible nonsense.",
    "Utter nonsense is a storyteller without equal.",
    "Non-locality is the driver of truth. By summoning, we vibrate.",
    "A small mercy is nothing at all?",
    "The notion of cause and effect is the key to all that is.",
    "The light at the end of the tunnel is a distinctly soulless jingle.",
    "Every request deserves an answer, even a short one.",
    "Keep-alive is a promise the network rarely keeps.",
    "A proxy is a mirror that remembers.",
    "The shortest path is rarely the one in the routing table.",
    "Latency is the distance between a question and its quote.",
    "Nothing is as permanent as a temporary configuration.",
    "Silence is an answer with a content length of zero.",
    "Certainty is a cache that has not expired yet.",
    "Every edge is the center of someone else's mesh.",
    "Time is what keeps every timeout from happening at once.",
};
#define NQUOTES (sizeof(quotes) / sizeof(quotes[0]))

/* The /size/ and /chunked/ body: the alphabet repeated; byte i of a body is 'a' + i % 26. */
#define P26 "abcdefghijklmnopqrstuvwxyz"
#define P260 P26 P26 P26 P26 P26 P26 P26 P26 P26 P26
#define P2080 P260 P260 P260 P260 P260 P260 P260 P260
static const char pattern[] = P2080 P2080; /* 4160 bytes: any 4096-byte run fits from any phase */
#define PATTERN_RUN 4096

#define HEAD_MAX 512 /* bound on a response head written by put_head */

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* ---- small writers (room reserved by the caller) ---- */

static void put_u64(struct pt_quote_buf *b, uint64_t v)
{
    char t[20];
    int i = 20;
    do {
        t[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    pt_quote_buf_put(b, t + i, (size_t)(20 - i));
}

static void put_hex(struct pt_quote_buf *b, uint64_t v)
{
    char t[16];
    int i = 16;
    do {
        t[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    pt_quote_buf_put(b, t + i, (size_t)(16 - i));
}

static void put_str(struct pt_quote_buf *b, const char *s)
{
    pt_quote_buf_put(b, s, strlen(s));
}

size_t pt_quote_json_escape(char *dst, const char *s, size_t n)
{
    char *d = dst;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *d++ = '\\';
            *d++ = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            memcpy(d, "\\u00", 4);
            d[4] = "0123456789abcdef"[c >> 4];
            d[5] = "0123456789abcdef"[c & 15];
            d += 6;
        } else {
            *d++ = (char)c;
        }
    }
    return (size_t)(d - dst);
}

/* put_json: a quoted JSON string; the room for 6 * n + 2 bytes is reserved. */
static void put_json(struct pt_quote_buf *b, const char *s, size_t n)
{
    b->ptr[b->len++] = '"';
    b->len += pt_quote_json_escape(b->ptr + b->len, s, n);
    b->ptr[b->len++] = '"';
}

static void put_pattern(struct pt_quote_buf *b, uint64_t pos, uint64_t n)
{
    while (n > 0) {
        size_t k = n > PATTERN_RUN ? PATTERN_RUN : (size_t)n;
        pt_quote_buf_put(b, pattern + pos % 26, k);
        pos += k;
        n -= k;
    }
}

static void clock_update(struct pt_quote_clock *ck)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ck->nsec = ts.tv_nsec;
    if (ts.tv_sec == ck->sec && ck->date_len > 0)
        return;
    struct tm tm;
    ck->sec = ts.tv_sec;
    gmtime_r(&ts.tv_sec, &tm);
    strftime(ck->iso, sizeof(ck->iso), "%Y-%m-%dT%H:%M:%S", &tm);
    ck->date_len = strftime(ck->date, sizeof(ck->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* put_time: "2026-01-02T03:04:05.123456789Z" (30 bytes). */
static void put_time(struct pt_quote_buf *b, const struct pt_quote_clock *ck)
{
    char ns[11];
    long v = ck->nsec;
    ns[0] = '.';
    for (int i = 9; i >= 1; i--, v /= 10)
        ns[i] = (char)('0' + v % 10);
    ns[10] = 'Z';
    put_str(b, ck->iso);
    pt_quote_buf_put(b, ns, sizeof(ns));
}

/* ---- the response head ---- */

struct head {
    int status;
    const char *ctype; /* NULL: no content-type */
    uint64_t length;
    bool no_length;  /* 204 and 304 carry no content-length */
    bool chunked;
    bool close;
    bool http10_keep_alive; /* an HTTP/1.0 client asked for keep-alive: say yes */
};

static void put_head(struct pt_quote_server *srv, struct pt_quote_buf *b, const struct head *h)
{
    pt_quote_buf_lit(b, "HTTP/1.1 ");
    put_u64(b, (uint64_t)h->status);
    pt_quote_buf_lit(b, " ");
    put_str(b, reason(h->status));
    pt_quote_buf_lit(b, "\r\ndate: ");
    pt_quote_buf_put(b, srv->clock.date, srv->clock.date_len);
    if (h->ctype) {
        pt_quote_buf_lit(b, "\r\ncontent-type: ");
        put_str(b, h->ctype);
    }
    if (h->chunked) {
        pt_quote_buf_lit(b, "\r\ntransfer-encoding: chunked");
    } else if (!h->no_length) {
        pt_quote_buf_lit(b, "\r\ncontent-length: ");
        put_u64(b, h->length);
    }
    if (h->close)
        pt_quote_buf_lit(b, "\r\nconnection: close");
    else if (h->http10_keep_alive)
        pt_quote_buf_lit(b, "\r\nconnection: keep-alive");
    pt_quote_buf_lit(b, "\r\n\r\n");
}

static struct head head_for(const struct pt_quote_exchange *x, int status, const char *ctype)
{
    return (struct head){
        .status = status,
        .ctype = ctype,
        .close = x->close,
        .http10_keep_alive = x->req->minor == 0 && !x->close,
    };
}

/* ---- routes ---- */

/* target_path: the path of a request-target, without query or fragment. */
static void target_path(const char *t, size_t n, const char **path, size_t *plen)
{
    if (t[0] != '/' && !(n == 1 && t[0] == '*')) { /* absolute-form: skip scheme://authority */
        const char *s = (const char *)memchr(t, ':', n) + 3;
        const char *slash = memchr(s, '/', n - (size_t)(s - t));
        if (slash == NULL) {
            *path = "/";
            *plen = 1;
            return;
        }
        n -= (size_t)(slash - t);
        t = slash;
    }
    size_t i = 0;
    while (i < n && t[i] != '?' && t[i] != '#')
        i++;
    *path = t;
    *plen = i;
}

/* number_after: if path starts with <prefix>, parses the decimal number that follows (ended by
 * the path or a '/') into <out>. Returns 1 on a number <= max, 0 when the prefix is absent, -400
 * on anything else. */
static int number_after(const char *path, size_t plen, const char *prefix, uint64_t max,
                        uint64_t *out)
{
    size_t k = strlen(prefix), i;
    uint64_t v = 0;
    if (plen < k || memcmp(path, prefix, k) != 0)
        return 0;
    for (i = k; i < plen && path[i] != '/'; i++) {
        if (path[i] < '0' || path[i] > '9' || i - k >= 13)
            return -400;
        v = v * 10 + (uint64_t)(path[i] - '0');
    }
    if (i == k || v > max)
        return -400;
    *out = v;
    return 1;
}

int pt_quote_route_parse(const char *in, const struct pt_quote_req *req, bool echo_all,
                         struct pt_quote_route *route)
{
    static const struct {
        const char *prefix;
        enum pt_quote_kind kind;
        uint64_t max;
    } numbered[] = {
        { "/status/", PT_QUOTE_KIND_STATUS, 599 },
        { "/delay/", PT_QUOTE_KIND_DELAY, PT_QUOTE_MAX_DELAY_MS },
        { "/size/", PT_QUOTE_KIND_SIZE, PT_QUOTE_MAX_SIZE },
        { "/chunked/", PT_QUOTE_KIND_CHUNKED, PT_QUOTE_MAX_SIZE },
    };
    const char *path;
    size_t plen;

    *route = (struct pt_quote_route){ PT_QUOTE_KIND_QUOTE, 0 };
    target_path(in + req->target.off, req->target.len, &path, &plen);
    if (echo_all || (plen >= 5 && memcmp(path, "/echo", 5) == 0 &&
                     (plen == 5 || path[5] == '/'))) {
        route->kind = PT_QUOTE_KIND_ECHO;
        return 0;
    }
    for (size_t i = 0; i < sizeof(numbered) / sizeof(numbered[0]); i++) {
        int rc = number_after(path, plen, numbered[i].prefix, numbered[i].max, &route->arg);
        if (rc == 0)
            continue;
        if (rc < 0 || (numbered[i].kind == PT_QUOTE_KIND_STATUS && route->arg < 200))
            return -400;
        route->kind = numbered[i].kind;
        return 0;
    }
    return 0;
}

/* ---- replies ---- */

static int reply_quote(struct pt_quote_server *srv, const struct pt_quote_exchange *x,
                       struct pt_quote_buf *out)
{
    const char *q = quotes[srv->quote_next++ % NQUOTES];
    size_t qlen = strlen(q);
    const struct pt_quote_opts *o = srv->opts;
    struct head h = head_for(x, 200, "application/json");

    h.length = sizeof("{\"server\":\"\",\"quote\":\"\",\"time\":\"\"}") - 1 + o->name_json_len +
               qlen + 30;
    if (pt_quote_buf_reserve(out, HEAD_MAX + h.length) < 0)
        return -1;
    put_head(srv, out, &h);
    if (x->req->is_head)
        return 0;
    pt_quote_buf_lit(out, "{\"server\":\"");
    pt_quote_buf_put(out, o->name_json, o->name_json_len);
    pt_quote_buf_lit(out, "\",\"quote\":\"");
    pt_quote_buf_put(out, q, qlen);
    pt_quote_buf_lit(out, "\",\"time\":\"");
    put_time(out, &srv->clock);
    pt_quote_buf_lit(out, "\"}");
    return 0;
}

/* echo_body: the JSON description of the request, built in srv->scratch. */
static int echo_body(struct pt_quote_server *srv, const struct pt_quote_exchange *x)
{
    const struct pt_quote_req *r = x->req;
    const char *in = x->in;
    struct pt_quote_buf *b = &srv->scratch;
    size_t need = 512 + srv->opts->name_json_len + 6 * (r->method.len + r->target.len +
                  strlen(x->client) + x->body->prefix_len);

    for (uint32_t i = 0; i < r->nheaders; i++)
        need += 8 + 6 * (r->headers[i].name.len + r->headers[i].value.len);
    b->off = b->len = 0;
    if (pt_quote_buf_reserve(b, need) < 0)
        return -1;
    pt_quote_buf_lit(b, "{\"server\":\"");
    pt_quote_buf_put(b, srv->opts->name_json, srv->opts->name_json_len);
    pt_quote_buf_lit(b, "\",\"method\":");
    put_json(b, in + r->method.off, r->method.len);
    pt_quote_buf_lit(b, ",\"path\":");
    put_json(b, in + r->target.off, r->target.len);
    pt_quote_buf_lit(b, ",\"version\":\"HTTP/1.");
    put_u64(b, (uint64_t)r->minor);
    pt_quote_buf_lit(b, "\",\"client\":");
    put_json(b, x->client, strlen(x->client));
    pt_quote_buf_lit(b, ",\"headers\":[");
    for (uint32_t i = 0; i < r->nheaders; i++) {
        const struct pt_quote_header *h = &r->headers[i];
        pt_quote_buf_put(b, i ? ",[" : "[", i ? 2 : 1);
        put_json(b, in + h->name.off, h->name.len);
        pt_quote_buf_lit(b, ",");
        put_json(b, in + h->value.off, h->value.len);
        pt_quote_buf_lit(b, "]");
    }
    pt_quote_buf_lit(b, "],\"body_length\":");
    put_u64(b, x->body->len);
    if (r->chunked)
        pt_quote_buf_lit(b, ",\"body_chunked\":true,\"body_prefix\":");
    else
        pt_quote_buf_lit(b, ",\"body_chunked\":false,\"body_prefix\":");
    put_json(b, x->body->prefix, x->body->prefix_len);
    pt_quote_buf_lit(b, "}");
    return 0;
}

static int reply_echo(struct pt_quote_server *srv, const struct pt_quote_exchange *x,
                      struct pt_quote_buf *out)
{
    struct head h = head_for(x, 200, "application/json");

    if (echo_body(srv, x) < 0)
        return -1;
    h.length = srv->scratch.len;
    if (pt_quote_buf_reserve(out, HEAD_MAX + h.length) < 0)
        return -1;
    put_head(srv, out, &h);
    if (!x->req->is_head)
        pt_quote_buf_put(out, srv->scratch.ptr, srv->scratch.len);
    return 0;
}

static int reply_status(struct pt_quote_server *srv, const struct pt_quote_exchange *x,
                        struct pt_quote_buf *out)
{
    int status = (int)x->route->arg;
    bool bodiless = status == 204 || status == 304;
    struct head h = head_for(x, status, bodiless ? NULL : "application/json");

    h.no_length = bodiless;
    h.length = sizeof("{\"server\":\"\",\"status\":000}") - 1 + srv->opts->name_json_len;
    if (pt_quote_buf_reserve(out, HEAD_MAX + h.length) < 0)
        return -1;
    put_head(srv, out, &h);
    if (bodiless || x->req->is_head)
        return 0;
    pt_quote_buf_lit(out, "{\"server\":\"");
    pt_quote_buf_put(out, srv->opts->name_json, srv->opts->name_json_len);
    pt_quote_buf_lit(out, "\",\"status\":");
    put_u64(out, (uint64_t)status);
    pt_quote_buf_lit(out, "}");
    return 0;
}

static int reply_bytes(struct pt_quote_server *srv, const struct pt_quote_exchange *x,
                       struct pt_quote_buf *out, struct pt_quote_stream *st)
{
    uint64_t n = x->route->arg;
    struct head h = head_for(x, 200, "text/plain");

    h.chunked = x->route->kind == PT_QUOTE_KIND_CHUNKED && x->req->minor >= 1;
    h.length = n;
    if (pt_quote_buf_reserve(out, HEAD_MAX) < 0)
        return -1;
    put_head(srv, out, &h);
    if (x->req->is_head || (n == 0 && !h.chunked))
        return 0;
    uint64_t chunk = (n + 3) / 4; /* four chunks, smaller ones for large bodies */
    *st = (struct pt_quote_stream){
        .active = true,
        .chunked = h.chunked,
        .chunk = (uint32_t)(chunk > 16384 ? 16384 : chunk ? chunk : 1),
        .left = n,
    };
    return 0;
}

int pt_quote_reply(struct pt_quote_server *srv, const struct pt_quote_exchange *x,
                   struct pt_quote_buf *out, struct pt_quote_stream *stream)
{
    clock_update(&srv->clock);
    switch (x->route->kind) {
    case PT_QUOTE_KIND_ECHO:
        return reply_echo(srv, x, out);
    case PT_QUOTE_KIND_STATUS:
        return reply_status(srv, x, out);
    case PT_QUOTE_KIND_SIZE:
    case PT_QUOTE_KIND_CHUNKED:
        return reply_bytes(srv, x, out, stream);
    case PT_QUOTE_KIND_QUOTE:
    case PT_QUOTE_KIND_DELAY:
        break;
    }
    return reply_quote(srv, x, out);
}

int pt_quote_reply_error(struct pt_quote_server *srv, int status, struct pt_quote_buf *out)
{
    char body[96];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"status\":%d}", reason(status),
                     status);
    struct head h = { .status = status, .ctype = "application/json", .length = (uint64_t)n,
                      .close = true };

    clock_update(&srv->clock);
    if (pt_quote_buf_reserve(out, HEAD_MAX + (size_t)n) < 0)
        return -1;
    put_head(srv, out, &h);
    pt_quote_buf_put(out, body, (size_t)n);
    return 0;
}

int pt_quote_reply_continue(struct pt_quote_buf *out)
{
    if (pt_quote_buf_reserve(out, 32) < 0)
        return -1;
    pt_quote_buf_lit(out, "HTTP/1.1 100 Continue\r\n\r\n");
    return 0;
}

int pt_quote_stream_fill(struct pt_quote_stream *st, struct pt_quote_buf *out, size_t want)
{
    while (st->active && pt_quote_buf_pending(out) < want) {
        uint64_t n = st->left;
        if (st->chunked) {
            if (n == 0) {
                if (pt_quote_buf_reserve(out, 5) < 0)
                    return -1;
                pt_quote_buf_lit(out, "0\r\n\r\n");
                st->active = false;
                break;
            }
            n = n < st->chunk ? n : st->chunk;
        } else if (n > 16384) {
            n = 16384;
        }
        if (pt_quote_buf_reserve(out, (size_t)n + 24) < 0)
            return -1;
        if (st->chunked) {
            put_hex(out, n);
            pt_quote_buf_lit(out, "\r\n");
        }
        put_pattern(out, st->sent, n);
        if (st->chunked)
            pt_quote_buf_lit(out, "\r\n");
        st->sent += n;
        st->left -= n;
        if (!st->chunked && st->left == 0)
            st->active = false;
    }
    return 0;
}
