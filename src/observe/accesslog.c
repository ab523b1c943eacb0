/* The access log. Emissary's default text line (reference/envoy-compat.md §2.3):
 *   ACCESS [START_TIME] "METHOD PATH PROTOCOL" CODE FLAGS RX TX DURATION UPSTREAM_TIME
 *   "X-FORWARDED-FOR" "USER-AGENT" "X-REQUEST-ID" "AUTHORITY" "UPSTREAM_HOST"
 * has its own hand-written path; any other format (the Module's envoy_log_format, or
 * envoy_log_type json) runs the program observe/logformat.c compiled. Lines collect in a
 * per-worker buffer that is written to the snapshot's log file (stdout by default) when it fills
 * or half a second after the first line, so a request never costs a write of its own. Also keeps
 * the request values those formats need beyond the default ones (pt_accesslog_capture).
 * It reads only the request's record (observe/record-t.h), never the proxy's objects.
 * Called by proxy/session.c, proxy/reply.c and proxy/worker.c. */
#include "observe/logformat.h"
#include "observe/record-t.h"
#include "model/snapshot-t.h"

#include <arpa/inet.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PT_LOGBUF_SIZE (64 * 1024)
#define PT_LOGBUF_FLUSH_AT (PT_LOGBUF_SIZE - 4096)
#define PT_LOG_FLUSH_MS 500
#define PT_LOG_LINE_ROOM 8192       /* a custom line is rendered with at least this much room */
#define PT_LOG_KEEP_MAX 256         /* bytes kept of a value captured for a custom format */

_Static_assert(PT_LOGFMT_MAX_HEADERS <= PT_RECORD_HEADERS,
               "a header slot per REQ() header of a format");

void pt_accesslog_flush(struct pt_logsink *sink)
{
    size_t off = 0;

    while (off < sink->buf.len) {
        ssize_t n = write(sink->fd, sink->buf.base + off, sink->buf.len - off);
        if (n <= 0)
            break; /* a log that cannot be written must not stop the proxy */
        off += (size_t)n;
    }
    sink->buf.len = 0;
}

static void on_flush_timer(struct pt_timer *t)
{
    pt_accesslog_flush(pt_container_of(t, struct pt_logsink, timer));
}

static char *put(char *p, const char *s, size_t n)
{
    pt_memcpy_short(p, s, n);
    return p + n;
}

/* put_uint: <v> in decimal; the common small values without the loop. */
static char *put_uint(char *p, uint64_t v)
{
    if (v < 10) {
        *p = (char)('0' + v);
        return p + 1;
    }
    if (v < 100) {
        p[0] = (char)('0' + v / 10);
        p[1] = (char)('0' + v % 10);
        return p + 2;
    }
    if (v < 1000) {
        p[0] = (char)('0' + v / 100);
        p[1] = (char)('0' + v / 10 % 10);
        p[2] = (char)('0' + v % 10);
        return p + 3;
    }
    char tmp[24], *q = tmp + sizeof(tmp);
    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return put(p, q, (size_t)(tmp + sizeof(tmp) - q));
}

/* "2026-11-26T03:09:35.641Z": the seconds part is formatted once per second. */
static char *put_time(char *p, uint64_t ms)
{
    static __thread time_t last;
    static __thread char cached[24];
    time_t sec = (time_t)(ms / 1000);
    unsigned frac = (unsigned)(ms % 1000);

    if (sec != last) {
        struct tm tm;
        gmtime_r(&sec, &tm);
        strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
        last = sec;
    }
    p = put(p, cached, 19);
    *p++ = '.';
    *p++ = (char)('0' + frac / 100);
    *p++ = (char)('0' + frac / 10 % 10);
    *p++ = (char)('0' + frac % 10);
    *p++ = 'Z';
    return p;
}

/* ---- Values of a custom format ------------------------------------------------------------- */

/* The value of one operator for a request. V_PLAIN: a string Portico made that needs no JSON
 * escaping (times, addresses, flags, cluster names); V_STR may hold anything a client sent. */
struct logval {
    enum { V_UNSET = 0, V_STR, V_PLAIN, V_NUM } kind;
    struct pt_str s;
    uint64_t num;
};

/* A line being rendered into the log buffer; <full> once something did not fit. */
struct line {
    char *p, *end;
    bool full;
};

/* Appends what fits of <s>; the line is cut there for good. */
static void lput(struct line *l, const char *s, size_t n)
{
    size_t room = (size_t)(l->end - l->p);

    if (l->full)
        return;
    if (n > room) {
        n = room;
        l->full = true;
    }
    memcpy(l->p, s, n);
    l->p += n;
}

static void lput_c(struct line *l, char c)
{
    if (l->p < l->end)
        *l->p++ = c;
    else
        l->full = true;
}

static void lput_uint(struct line *l, uint64_t v)
{
    char tmp[24];
    lput(l, tmp, (size_t)(put_uint(tmp, v) - tmp));
}

/* Length of the valid UTF-8 sequence at <s> (<n> bytes left), 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : 2;
    unsigned char lo = 0x80, hi = 0xBF;

    if (s[0] < 0xC2 || s[0] > 0xF4 || n < len)
        return 0;
    if (s[0] == 0xE0)
        lo = 0xA0;
    else if (s[0] == 0xED)
        hi = 0x9F; /* no surrogates */
    else if (s[0] == 0xF0)
        lo = 0x90;
    else if (s[0] == 0xF4)
        hi = 0x8F;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* Bytes that stand for themselves in a JSON string. */
static const unsigned char json_plain[256] = { [0x20 ... 0x21] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0x7e] = 1 };

/* <s> as JSON string contents: quotes, backslashes and control bytes escaped; a byte that is
 * not part of valid UTF-8 becomes \u00XX (read as Latin-1), so every line is valid JSON. */
static void lput_json(struct line *l, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0, seq;

    while (i < n) {
        while (i < n && json_plain[u[i]])
            i++;
        if (i == n)
            break;
        if (u[i] >= 0x80 && (seq = utf8_seq(u + i, n - i)) > 0) {
            i += seq;
            continue;
        }
        lput(l, s + run, i - run);
        if (u[i] == '"' || u[i] == '\\') {
            char esc[2] = { '\\', (char)u[i] };
            lput(l, esc, 2);
        } else {
            char esc[6] = { '\\', 'u', '0', '0', hex[u[i] >> 4], hex[u[i] & 15] };
            lput(l, esc, 6);
        }
        run = ++i;
    }
    lput(l, s + run, n - run);
}

static void set_slice(struct logval *v, const struct pt_req_record *rec, struct pt_str_off o)
{
    if (o.len)
        *v = (struct logval){ V_STR, pt_str_make(rec->log + o.off, o.len), 0 };
}

static void set_str(struct logval *v, const char *s)
{
    if (s != NULL && *s != '\0')
        *v = (struct logval){ V_STR, pt_str_c(s), 0 };
}

static void set_plain(struct logval *v, const char *s, size_t n)
{
    if (n > 0)
        *v = (struct logval){ V_PLAIN, pt_str_make(s, n), 0 };
}

/* <addr> without its port (and IPv6 brackets). */
static struct pt_str without_port(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    size_t n = colon ? (size_t)(colon - addr) : strlen(addr);

    if (n >= 2 && addr[0] == '[')
        return pt_str_make(addr + 1, n - 2);
    return pt_str_make(addr, n);
}

/* %DOWNSTREAM_REMOTE_ADDRESS% into <buf>. */
static void remote_addr(const struct pt_req_record *rec, struct logval *v, char *buf)
{
    size_t n = rec->peer_ip ? rec->peer_ip_len : 0;
    bool v6 = n && memchr(rec->peer_ip, ':', n) != NULL;
    char *p = buf;

    if (rec->peer_port == 0 || n == 0) {
        set_plain(v, rec->peer_ip, n);
        return;
    }
    if (v6)
        *p++ = '[';
    p = put(p, rec->peer_ip, n);
    if (v6)
        *p++ = ']';
    *p++ = ':';
    p = put_uint(p, rec->peer_port);
    set_plain(v, buf, (size_t)(p - buf));
}

/* A value format's header: from the message when the context has it, else from the copies
 * the proxy kept in the record (rec->x_*) for the response side. */
static void live_header(const struct pt_req_record *rec, struct pt_str name, const struct pt_header *h, size_t n,
                        bool kept, struct logval *v)
{
    if (h != NULL) {
        const struct pt_header *f = pt_header_find(h, n, name);
        if (f != NULL && f->value.len)
            *v = (struct logval){ V_STR, f->value, 0 };
        return;
    }
    for (uint8_t i = 0; kept && i < rec->nx; i++)
        if (pt_str_caseeq(rec->x_name[i], name)) {
            set_slice(v, rec, rec->x_val[i]);
            return;
        }
}

static void req_value(const struct pt_req_record *rec, const struct pt_logfmt *f, const struct pt_logctx *ctx,
                      uint8_t field, struct logval *v)
{
    if (ctx != NULL && field >= PT_LOGREQ_HEADER) {
        if (field - PT_LOGREQ_HEADER < f->nheaders)
            live_header(rec, f->headers[field - PT_LOGREQ_HEADER], ctx->req, ctx->nreq, true, v);
        return;
    }
    switch (field) {
    case PT_LOGREQ_NONE: break;
    case PT_LOGREQ_METHOD: set_slice(v, rec, rec->lf_method); break;
    case PT_LOGREQ_PATH: set_slice(v, rec, rec->lf_path); break;
    case PT_LOGREQ_AUTHORITY: set_slice(v, rec, rec->lf_auth); break;
    case PT_LOGREQ_SCHEME:
        if (rec->lf_method.len)
            set_plain(v, rec->tls ? "https" : "http", rec->tls ? 5 : 4);
        break;
    case PT_LOGREQ_XFF: set_slice(v, rec, rec->lf_xff); break;
    case PT_LOGREQ_USER_AGENT: set_slice(v, rec, rec->lf_ua); break;
    case PT_LOGREQ_REQUEST_ID: set_slice(v, rec, rec->lf_rid); break;
    default:
        if (field - PT_LOGREQ_HEADER < rec->log_nhdr)
            set_slice(v, rec, rec->lf_hdr[field - PT_LOGREQ_HEADER]);
    }
}

static void resp_value(const struct pt_req_record *rec, const struct pt_logfmt *f, const struct pt_logctx *ctx,
                       uint8_t field, struct logval *v, char *buf)
{
    if (ctx != NULL && field >= PT_LOGRESP_HEADER) {
        if (field - PT_LOGRESP_HEADER < f->nheaders && ctx->resp != NULL)
            live_header(rec, f->headers[field - PT_LOGRESP_HEADER], ctx->resp, ctx->nresp, false, v);
        return;
    }
    switch (field) {
    case PT_LOGRESP_SERVICE_TIME:
        if (rec->upstream_ms != UINT32_MAX)
            set_plain(v, buf, (size_t)(put_uint(buf, rec->upstream_ms) - buf));
        break;
    case PT_LOGRESP_SERVER:
        if (rec->status != 0)
            set_plain(v, "envoy", 5);
        break;
    case PT_LOGRESP_CONTENT_TYPE:
        set_slice(v, rec, rec->lf_ctype);
        if (v->kind == V_UNSET && rec->status != 0 && rec->upstream_status == 0 && rec->bytes_tx > 0)
            set_plain(v, "text/plain", 10); /* Portico's own replies (proxy/reply.c) */
        break;
    }
}

/* The port of "ip:port" <addr> ("" when none). */
static struct pt_str port_of(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    return colon != NULL && (colon == addr || colon[-1] == ']' || memchr(addr, ':', (size_t)(colon - addr)) == NULL)
               ? pt_str_c(colon + 1) : (struct pt_str){ 0 };
}

/* The upstream's address operators; unset for request headers (the host is chosen after them,
 * in Envoy). */
static void upstream_value(const struct pt_req_record *rec, const struct pt_logctx *ctx, uint8_t op, struct logval *v)
{
    struct pt_str s;

    if (rec->endpoint == NULL || (ctx != NULL && ctx->no_upstream))
        return;
    if (op == PT_LOGOP_UPSTREAM_REMOTE_ADDRESS)
        s = pt_str_c(rec->endpoint->name);
    else if (op == PT_LOGOP_UPSTREAM_REMOTE_PORT)
        s = port_of(rec->endpoint->name);
    else
        s = without_port(rec->endpoint->name);
    set_plain(v, s.ptr, s.len);
}

/* The operators about the connections: addresses, SNI, why the upstream one failed. */
static void connection_value(struct pt_req_record *rec, uint8_t op, struct logval *v, char *buf)
{
    switch (op) {
    case PT_LOGOP_DOWNSTREAM_LOCAL_PORT: {
        struct pt_str p = port_of(rec->local_addr);
        set_plain(v, p.ptr, p.len);
        break;
    }
    case PT_LOGOP_DOWNSTREAM_REMOTE_PORT:
        if (rec->peer_port != 0)
            set_plain(v, buf, (size_t)(put_uint(buf, rec->peer_port) - buf));
        break;
    case PT_LOGOP_UPSTREAM_LOCAL_ADDRESS:
        set_plain(v, rec->upstream_local_addr, strlen(rec->upstream_local_addr));
        break;
    case PT_LOGOP_UPSTREAM_TRANSPORT_FAILURE_REASON: set_slice(v, rec, rec->lf_tfr); break;
    case PT_LOGOP_DOWNSTREAM_REMOTE_ADDRESS: remote_addr(rec, v, buf); break;
    case PT_LOGOP_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT:
        set_plain(v, rec->peer_ip, rec->peer_ip ? rec->peer_ip_len : 0);
        break;
    case PT_LOGOP_DOWNSTREAM_LOCAL_ADDRESS:
        set_plain(v, rec->local_addr, strlen(rec->local_addr));
        break;
    case PT_LOGOP_DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT: {
        struct pt_str ip = without_port(rec->local_addr);
        set_plain(v, ip.ptr, ip.len);
        break;
    }
    case PT_LOGOP_REQUESTED_SERVER_NAME: set_str(v, rec->sni); break;
    }
}

/* The value of <it> for <rec> (and <ctx>: a value format's, else NULL); <buf> (256 bytes)
 * holds it when it is made here. */
static void op_value(struct pt_req_record *rec, const struct pt_logfmt *f, const struct pt_logctx *ctx,
                     const struct pt_logitem *it, struct logval *v, char *buf)
{
    const struct pt_route_action *a = rec->action;

    *v = (struct logval){ 0 };
    switch (it->op) {
    case PT_LOGOP_TEXT:
    case PT_LOGOP_KEY:
    case PT_LOGOP_DYNAMIC_METADATA: break; /* never set in Portico */
    case PT_LOGOP_START_TIME:
        if (it->len == 0)
            set_plain(v, buf, (size_t)(put_time(buf, rec->start_realtime_ms) - buf));
        else
            *v = (struct logval){ V_STR, pt_str_make(buf, pt_logfmt_time(f->text + it->off, it->len,
                                                                         rec->start_realtime_ms, buf, 256)), 0 };
        break;
    case PT_LOGOP_REQ:
        req_value(rec, f, ctx, it->field, v);
        if (v->kind == V_UNSET)
            req_value(rec, f, ctx, it->alt, v);
        break;
    case PT_LOGOP_RESP:
        resp_value(rec, f, ctx, it->field, v, buf);
        if (v->kind == V_UNSET && it->alt)
            resp_value(rec, f, ctx, it->alt, v, buf);
        break;
    case PT_LOGOP_UPSTREAM_REMOTE_ADDRESS:
    case PT_LOGOP_UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT:
    case PT_LOGOP_UPSTREAM_REMOTE_PORT:
        upstream_value(rec, ctx, it->op, v);
        break;
    case PT_LOGOP_PROTOCOL:
        if (rec->lf_method.len)
            set_plain(v, pt_record_protocol(rec).ptr, pt_record_protocol(rec).len);
        break;
    case PT_LOGOP_RESPONSE_CODE: *v = (struct logval){ V_NUM, { 0 }, (uint64_t)rec->status }; break;
    case PT_LOGOP_RESPONSE_FLAGS: set_str(v, rec->flags ? rec->flags : "-"); v->kind = V_PLAIN; break;
    case PT_LOGOP_BYTES_RECEIVED: *v = (struct logval){ V_NUM, { 0 }, rec->bytes_rx }; break;
    case PT_LOGOP_BYTES_SENT: *v = (struct logval){ V_NUM, { 0 }, rec->bytes_tx }; break;
    case PT_LOGOP_DURATION:
        *v = (struct logval){ V_NUM, { 0 }, rec->end_ms - rec->start_ms };
        break;
    case PT_LOGOP_UPSTREAM_HOST:
        if (rec->endpoint != NULL && (ctx == NULL || !ctx->no_upstream))
            set_plain(v, rec->endpoint->name, strlen(rec->endpoint->name));
        break;
    case PT_LOGOP_UPSTREAM_CLUSTER: /* Envoy's observability name: alt_stat_name */
        if (a != NULL)
            set_str(v, a->cluster->stats_name ? a->cluster->stats_name : a->cluster->name);
        break;
    case PT_LOGOP_UPSTREAM_CLUSTER_RAW: set_str(v, a ? a->cluster->name : NULL); break;
    default:
        connection_value(rec, it->op, v, buf);
    }
    if (v->kind != V_NUM && it->max_len && v->s.len > it->max_len)
        v->s.len = it->max_len;
}

/* One operator as text, or inside a JSON string (<json>): unset is "-". */
static void put_op(struct pt_req_record *rec, const struct pt_logfmt *f, const struct pt_logctx *ctx,
                   const struct pt_logitem *it, struct line *l, bool json)
{
    char buf[256];
    struct logval v;

    op_value(rec, f, ctx, it, &v, buf);
    if (v.kind == V_NUM)
        lput_uint(l, v.num);
    else if (v.kind == V_UNSET && !(f->flags & PT_LOGFMT_OMIT_EMPTY))
        lput_c(l, '-');
    else if (v.kind == V_UNSET)
        return;
    else if (json && v.kind == V_STR)
        lput_json(l, v.s.ptr, v.s.len);
    else
        lput(l, v.s.ptr, v.s.len);
}

/* A JSON member's value: <n> items from <it>. One operator alone is typed (a number, a string
 * or null, as Envoy's JSON formatter); anything else is a string. Returns the next item. */
static const struct pt_logitem *put_json_value(struct pt_req_record *rec, const struct pt_logfmt *f,
                                               const struct pt_logctx *ctx, const struct pt_logitem *it,
                                               uint32_t n, struct line *l)
{
    if (n == 1 && it->op != PT_LOGOP_TEXT) {
        char buf[256];
        struct logval v;
        op_value(rec, f, ctx, it, &v, buf);
        if (v.kind == V_NUM) {
            lput_uint(l, v.num);
        } else if (v.kind == V_UNSET) {
            lput(l, "null", 4);
        } else {
            lput_c(l, '"');
            if (v.kind == V_STR)
                lput_json(l, v.s.ptr, v.s.len);
            else
                lput(l, v.s.ptr, v.s.len);
            lput_c(l, '"');
        }
        return it + 1;
    }
    lput_c(l, '"');
    for (uint32_t i = 0; i < n; i++, it++) {
        if (it->op == PT_LOGOP_TEXT)
            lput(l, f->text + it->off, it->len); /* stored escaped */
        else
            put_op(rec, f, ctx, it, l, true);
    }
    lput_c(l, '"');
    return it;
}

static void render(struct pt_req_record *rec, const struct pt_logfmt *f, const struct pt_logctx *ctx,
                   struct line *l)
{
    const struct pt_logitem *it, *end;

    if (f->nitems == 0)
        return; /* an empty value: no items at all */
    it = f->items;
    end = f->items + f->nitems;
    while (it < end) {
        if (it->op == PT_LOGOP_TEXT) {
            lput(l, f->text + it->off, it->len);
            it++;
        } else if (it->op == PT_LOGOP_KEY) {
            lput(l, f->text + it->off, it->len);
            it = put_json_value(rec, f, ctx, it + 1, it->nvalue, l);
        } else {
            put_op(rec, f, ctx, it, l, f->json);
            it++;
        }
    }
}

/* Renders a custom-format line into the log buffer; one longer than the buffer is cut. */
static void custom_line(struct pt_logsink *w, struct pt_req_record *rec, const struct pt_logfmt *f)
{
    struct line l;

    if (w->buf.cap - w->buf.len < PT_LOG_LINE_ROOM)
        pt_accesslog_flush(w);
    l = (struct line){ w->buf.base + w->buf.len, w->buf.base + w->buf.cap, false };
    render(rec, f, NULL, &l);
    if (l.full && w->buf.len > 0) {
        pt_accesslog_flush(w);
        l = (struct line){ w->buf.base, w->buf.base + w->buf.cap, false };
        render(rec, f, NULL, &l);
    }
    if (l.full && l.p > w->buf.base)
        l.p[-1] = '\n';
    w->buf.len = (uint32_t)(l.p - w->buf.base);
}

size_t pt_logfmt_render(struct pt_req_record *rec, const struct pt_logfmt *f, const struct pt_logctx *ctx,
                        char *out, size_t cap, bool *cut)
{
    struct line l = { out, out + cap, false };

    render(rec, f, ctx, &l);
    *cut = l.full;
    return (size_t)(l.p - out);
}

/* ---- Emissary's default line, and the buffer --------------------------------------------- */

static void default_line(struct pt_logsink *w, struct pt_req_record *rec)
{
    size_t mid, rest;
    char *p, *start;

    mid = rec->log_mid;
    rest = (size_t)rec->log_len - mid - 1;
    if (w->buf.cap - w->buf.len < mid + rest + 256) /* the fixed fields fit in 256 */
        pt_accesslog_flush(w);
    start = p = w->buf.base + w->buf.len;
    p = put(p, "ACCESS [", 8);
    p = put_time(p, rec->start_realtime_ms);
    p = put(p, "] ", 2);
    p = put(p, rec->log, mid);
    *p++ = ' ';
    p = put_uint(p, (uint64_t)rec->status);
    *p++ = ' ';
    p = put(p, rec->flags ? rec->flags : "-", strlen(rec->flags ? rec->flags : "-"));
    *p++ = ' ';
    p = put_uint(p, rec->bytes_rx);
    *p++ = ' ';
    p = put_uint(p, rec->bytes_tx);
    *p++ = ' ';
    p = put_uint(p, rec->end_ms - rec->start_ms);
    *p++ = ' ';
    if (rec->upstream_ms != UINT32_MAX)
        p = put_uint(p, rec->upstream_ms);
    else
        *p++ = '-';
    *p++ = ' ';
    p = put(p, rec->log + mid + 1, rest);
    p = put(p, " \"", 2);
    if (rec->endpoint)
        p = put(p, rec->endpoint->name, strlen(rec->endpoint->name));
    else
        *p++ = '-';
    p = put(p, "\"\n", 2);
    w->buf.len += (uint32_t)(p - start);
}

void pt_accesslog_request(struct pt_logsink *w, struct pt_req_record *rec)
{
    const struct pt_snapshot *s = rec->snap;

    if (rec->log_len == 0)
        return;
    if (w->buf.base == NULL) {
        if ((w->buf.base = malloc(PT_LOGBUF_SIZE)) == NULL)
            return;
        w->buf.cap = PT_LOGBUF_SIZE;
        w->timer.cb = on_flush_timer;
    }
    if (s == NULL || s->log.fmt == NULL)
        default_line(w, rec);
    else
        custom_line(w, rec, s->log.fmt);
    rec->log_len = 0;
    if (w->buf.len >= PT_LOGBUF_FLUSH_AT)
        pt_accesslog_flush(w);
    else if (!pt_timer_armed(&w->timer))
        pt_timer_arm(w->loop, &w->timer, PT_LOG_FLUSH_MS);
}

/* ---- Keeping request and response values ---------------------------------------------------- */

/* Copies <s> (at most <max> bytes, less when log[] is nearly full) behind what log[] keeps. */
static void keep(struct pt_req_record *rec, struct pt_str s, size_t max, struct pt_str_off *at)
{
    size_t room = sizeof(rec->log) - rec->log_used, n = s.len < max ? s.len : max;

    if (n > room)
        n = room;
    *at = (struct pt_str_off){ rec->log_used, (uint16_t)n };
    if (n > 0)
        memcpy(rec->log + rec->log_used, s.ptr, n);
    rec->log_used = (uint16_t)(rec->log_used + n);
}

void pt_accesslog_keep(struct pt_req_record *rec, struct pt_str s, struct pt_str_off *at)
{
    keep(rec, s, PT_LOG_KEEP_MAX, at);
}

void pt_accesslog_capture(struct pt_req_record *rec, const struct pt_header *h, size_t n)
{
    const struct pt_logfmt *f = rec->snap->log.fmt;

    for (uint8_t i = 0; i < f->nheaders; i++) {
        const struct pt_header *v = pt_header_find(h, n, f->headers[i]);
        keep(rec, v ? v->value : (struct pt_str){ 0 }, f->header_max[i], &rec->lf_hdr[i]);
    }
    rec->log_nhdr = f->nheaders;
}

void pt_accesslog_capture_response(struct pt_req_record *rec, const struct pt_header *h, size_t n)
{
    const struct pt_header *ct = pt_header_find(h, n, PT_STR_LIT("content-type"));

    if (ct != NULL)
        keep(rec, ct->value, PT_LOG_KEEP_MAX, &rec->lf_ctype);
}
