/* The access log. Emissary's default text line (reference/envoy-compat.md §2.3):
 *   ACCESS [START_TIME] "METHOD PATH PROTOCOL" CODE FLAGS RX TX DURATION UPSTREAM_TIME
 *   "X-FORWARDED-FOR" "USER-AGENT" "X-REQUEST-ID" "AUTHORITY" "UPSTREAM_HOST"
 * has its own hand-written path; any other format (the Module's envoy_log_format, or
 * envoy_log_type json) runs the program observe/logformat.c compiled. Lines collect in a
 * per-worker buffer that is written to the snapshot's log file (stdout by default) when it fills
 * or half a second after the first line, so a request never costs a write of its own. Also keeps
 * the request values those formats need beyond the default ones (pt_accesslog_capture).
 * Called by proxy/session.c, proxy/reply.c and proxy/worker.c. */
#include "proxy/proxy.h"
#include "observe/logformat.h"

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

_Static_assert(PT_LOGFMT_MAX_HEADERS <= PT_ARRAY_SIZE(((struct pt_downstream *)0)->lf_hdr),
               "a header slot per REQ() header of a format");

void pt_accesslog_flush(struct pt_worker *w)
{
    size_t off = 0;

    while (off < w->logbuf.len) {
        ssize_t n = write(w->log_fd, w->logbuf.base + off, w->logbuf.len - off);
        if (n <= 0)
            break; /* a log that cannot be written must not stop the proxy */
        off += (size_t)n;
    }
    w->logbuf.len = 0;
}

static void on_flush_timer(struct pt_timer *t)
{
    pt_accesslog_flush(pt_container_of(t, struct pt_worker, log_timer));
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static char *put_uint(char *p, uint64_t v)
{
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

static void set_slice(struct logval *v, const struct pt_downstream *ds, struct pt_str_off o)
{
    if (o.len)
        *v = (struct logval){ V_STR, pt_str_make(ds->log + o.off, o.len), 0 };
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

static char *put_ipv4(char *p, const unsigned char *ip)
{
    for (int i = 0; i < 4; i++) {
        p = put_uint(p, ip[i]);
        *p++ = '.';
    }
    return p - 1;
}

/* "ip:port" ("[ip]:port" for IPv6) of <sa> into <out> (at least 56 bytes); "" when unknown.
 * No printf: with JSON logs this runs for every request. */
static void format_addr(const struct sockaddr_storage *sa, char *out)
{
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    char *p = out;

    if (sa->ss_family == AF_INET) {
        p = put_ipv4(p, (const unsigned char *)&s4->sin_addr);
    } else if (sa->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
        p = put_ipv4(p, &s6->sin6_addr.s6_addr[12]);
    } else if (sa->ss_family == AF_INET6) {
        *p++ = '[';
        inet_ntop(AF_INET6, &s6->sin6_addr, p, INET6_ADDRSTRLEN);
        p += strlen(p);
        *p++ = ']';
    } else {
        *out = '\0';
        return;
    }
    *p++ = ':';
    p = put_uint(p, ntohs(sa->ss_family == AF_INET ? s4->sin_port : s6->sin6_port));
    *p = '\0';
}

/* The address a socket is bound to (<local>) or connected to, as format_addr. */
static void socket_addr(int fd, bool local, char *out)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);

    if ((local ? getsockname(fd, (struct sockaddr *)&sa, &len) : getpeername(fd, (struct sockaddr *)&sa, &len)) != 0)
        sa.ss_family = AF_UNSPEC;
    format_addr(&sa, out);
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

/* %DOWNSTREAM_REMOTE_ADDRESS% into <buf>: the peer's port is asked for once per connection. */
static void remote_addr(struct pt_downstream *ds, struct logval *v, char *buf)
{
    size_t n = strlen(ds->peer_ip);
    bool v6 = memchr(ds->peer_ip, ':', n) != NULL;
    char *p = buf;

    if (ds->log_peer_port == 0) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        if (getpeername(ds->io.fd, (struct sockaddr *)&sa, &len) == 0)
            ds->log_peer_port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
                                                              : ((struct sockaddr_in6 *)&sa)->sin6_port);
    }
    if (ds->log_peer_port == 0 || n == 0) {
        set_plain(v, ds->peer_ip, n);
        return;
    }
    if (v6)
        *p++ = '[';
    p = put(p, ds->peer_ip, n);
    if (v6)
        *p++ = ']';
    *p++ = ':';
    p = put_uint(p, ds->log_peer_port);
    set_plain(v, buf, (size_t)(p - buf));
}

static const char *local_addr(struct pt_downstream *ds)
{
    _Static_assert(sizeof(ds->log_local_addr) >= INET6_ADDRSTRLEN + 9, "[v6]:port fits");
    if (ds->log_local_addr[0] == '\0')
        socket_addr(ds->io.fd, true, ds->log_local_addr);
    return ds->log_local_addr;
}

static void req_value(const struct pt_downstream *ds, uint8_t field, struct logval *v)
{
    switch (field) {
    case PT_LOGREQ_NONE: break;
    case PT_LOGREQ_METHOD: set_slice(v, ds, ds->lf_method); break;
    case PT_LOGREQ_PATH: set_slice(v, ds, ds->lf_path); break;
    case PT_LOGREQ_AUTHORITY: set_slice(v, ds, ds->lf_auth); break;
    case PT_LOGREQ_SCHEME:
        if (ds->lf_method.len)
            set_plain(v, (ds->flags & PT_DSF_TLS) ? "https" : "http", (ds->flags & PT_DSF_TLS) ? 5 : 4);
        break;
    case PT_LOGREQ_XFF: set_slice(v, ds, ds->lf_xff); break;
    case PT_LOGREQ_USER_AGENT: set_slice(v, ds, ds->lf_ua); break;
    case PT_LOGREQ_REQUEST_ID: set_slice(v, ds, ds->lf_rid); break;
    default:
        if (field - PT_LOGREQ_HEADER < ds->log_nhdr)
            set_slice(v, ds, ds->lf_hdr[field - PT_LOGREQ_HEADER]);
    }
}

static void resp_value(const struct pt_downstream *ds, uint8_t field, struct logval *v, char *buf)
{
    switch (field) {
    case PT_LOGRESP_SERVICE_TIME:
        if (ds->upstream_ms != UINT32_MAX)
            set_plain(v, buf, (size_t)(put_uint(buf, ds->upstream_ms) - buf));
        break;
    case PT_LOGRESP_SERVER:
        if (ds->status != 0)
            set_plain(v, "envoy", 5);
        break;
    case PT_LOGRESP_CONTENT_TYPE:
        set_slice(v, ds, ds->lf_ctype);
        if (v->kind == V_UNSET && ds->status != 0 && ds->upstream_status == 0 && ds->bytes_tx > 0)
            set_plain(v, "text/plain", 10); /* Portico's own replies (proxy/reply.c) */
        break;
    }
}

/* The operators about the connections: addresses, SNI, why the upstream one failed. */
static void connection_value(struct pt_downstream *ds, uint8_t op, struct logval *v, char *buf)
{
    const char *addr;

    switch (op) {
    case PT_LOGOP_UPSTREAM_LOCAL_ADDRESS:
        if (ds->up != NULL) {
            socket_addr(ds->up->io.fd, true, buf);
            set_plain(v, buf, strlen(buf));
        }
        break;
    case PT_LOGOP_UPSTREAM_TRANSPORT_FAILURE_REASON: set_slice(v, ds, ds->lf_tfr); break;
    case PT_LOGOP_DOWNSTREAM_REMOTE_ADDRESS: remote_addr(ds, v, buf); break;
    case PT_LOGOP_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT: set_plain(v, ds->peer_ip, strlen(ds->peer_ip)); break;
    case PT_LOGOP_DOWNSTREAM_LOCAL_ADDRESS:
        addr = local_addr(ds);
        set_plain(v, addr, strlen(addr));
        break;
    case PT_LOGOP_DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT: {
        struct pt_str ip = without_port(local_addr(ds));
        set_plain(v, ip.ptr, ip.len);
        break;
    }
    case PT_LOGOP_REQUESTED_SERVER_NAME:
        if (ds->ssl != NULL)
            set_str(v, SSL_get_servername(ds->ssl, TLSEXT_NAMETYPE_host_name));
        break;
    }
}

/* The value of <it> for <ds>; <buf> (256 bytes) holds it when it is made here. */
static void op_value(struct pt_downstream *ds, const struct pt_logfmt *f, const struct pt_logitem *it,
                     struct logval *v, char *buf)
{
    const struct pt_route_action *a = ds->action;

    *v = (struct logval){ 0 };
    switch (it->op) {
    case PT_LOGOP_TEXT:
    case PT_LOGOP_KEY:
    case PT_LOGOP_DYNAMIC_METADATA: break; /* never set in Portico */
    case PT_LOGOP_START_TIME:
        if (it->len == 0)
            set_plain(v, buf, (size_t)(put_time(buf, ds->start_realtime_ms) - buf));
        else
            *v = (struct logval){ V_STR, pt_str_make(buf, pt_logfmt_time(f->text + it->off, it->len,
                                                                         ds->start_realtime_ms, buf, 256)), 0 };
        break;
    case PT_LOGOP_REQ:
        req_value(ds, it->field, v);
        if (v->kind == V_UNSET)
            req_value(ds, it->alt, v);
        break;
    case PT_LOGOP_RESP:
        resp_value(ds, it->field, v, buf);
        if (v->kind == V_UNSET && it->alt)
            resp_value(ds, it->alt, v, buf);
        break;
    case PT_LOGOP_PROTOCOL:
        if (ds->lf_method.len)
            set_plain(v, ds->req.minor_version ? "HTTP/1.1" : "HTTP/1.0", 8);
        break;
    case PT_LOGOP_RESPONSE_CODE: *v = (struct logval){ V_NUM, { 0 }, (uint64_t)ds->status }; break;
    case PT_LOGOP_RESPONSE_FLAGS: set_str(v, ds->flags_str ? ds->flags_str : "-"); v->kind = V_PLAIN; break;
    case PT_LOGOP_BYTES_RECEIVED: *v = (struct logval){ V_NUM, { 0 }, ds->bytes_rx }; break;
    case PT_LOGOP_BYTES_SENT: *v = (struct logval){ V_NUM, { 0 }, ds->bytes_tx }; break;
    case PT_LOGOP_DURATION:
        *v = (struct logval){ V_NUM, { 0 }, pt_loop_now_ms(ds->w->loop) - ds->start_ms };
        break;
    case PT_LOGOP_UPSTREAM_HOST:
        if (ds->endpoint != NULL)
            set_plain(v, ds->endpoint->name, strlen(ds->endpoint->name));
        break;
    case PT_LOGOP_UPSTREAM_CLUSTER: /* Envoy's observability name: alt_stat_name */
        if (a != NULL)
            set_str(v, a->cluster->stats_name ? a->cluster->stats_name : a->cluster->name);
        break;
    case PT_LOGOP_UPSTREAM_CLUSTER_RAW: set_str(v, a ? a->cluster->name : NULL); break;
    default:
        connection_value(ds, it->op, v, buf);
    }
    if (v->kind != V_NUM && it->max_len && v->s.len > it->max_len)
        v->s.len = it->max_len;
}

/* One operator as text, or inside a JSON string (<json>): unset is "-". */
static void put_op(struct pt_downstream *ds, const struct pt_logfmt *f, const struct pt_logitem *it,
                   struct line *l, bool json)
{
    char buf[256];
    struct logval v;

    op_value(ds, f, it, &v, buf);
    if (v.kind == V_NUM)
        lput_uint(l, v.num);
    else if (v.kind == V_UNSET)
        lput_c(l, '-');
    else if (json && v.kind == V_STR)
        lput_json(l, v.s.ptr, v.s.len);
    else
        lput(l, v.s.ptr, v.s.len);
}

/* A JSON member's value: <n> items from <it>. One operator alone is typed (a number, a string
 * or null, as Envoy's JSON formatter); anything else is a string. Returns the next item. */
static const struct pt_logitem *put_json_value(struct pt_downstream *ds, const struct pt_logfmt *f,
                                               const struct pt_logitem *it, uint32_t n, struct line *l)
{
    if (n == 1 && it->op != PT_LOGOP_TEXT) {
        char buf[256];
        struct logval v;
        op_value(ds, f, it, &v, buf);
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
            put_op(ds, f, it, l, true);
    }
    lput_c(l, '"');
    return it;
}

static void render(struct pt_downstream *ds, const struct pt_logfmt *f, struct line *l)
{
    const struct pt_logitem *it = f->items, *end = f->items + f->nitems;

    while (it < end) {
        if (it->op == PT_LOGOP_TEXT) {
            lput(l, f->text + it->off, it->len);
            it++;
        } else if (it->op == PT_LOGOP_KEY) {
            lput(l, f->text + it->off, it->len);
            it = put_json_value(ds, f, it + 1, it->nvalue, l);
        } else {
            put_op(ds, f, it, l, f->json);
            it++;
        }
    }
}

/* Renders a custom-format line into the log buffer; one longer than the buffer is cut. */
static void custom_line(struct pt_worker *w, struct pt_downstream *ds, const struct pt_logfmt *f)
{
    struct line l;

    if (w->logbuf.cap - w->logbuf.len < PT_LOG_LINE_ROOM)
        pt_accesslog_flush(w);
    l = (struct line){ w->logbuf.base + w->logbuf.len, w->logbuf.base + w->logbuf.cap, false };
    render(ds, f, &l);
    if (l.full && w->logbuf.len > 0) {
        pt_accesslog_flush(w);
        l = (struct line){ w->logbuf.base, w->logbuf.base + w->logbuf.cap, false };
        render(ds, f, &l);
    }
    if (l.full && l.p > w->logbuf.base)
        l.p[-1] = '\n';
    w->logbuf.len = (uint32_t)(l.p - w->logbuf.base);
}

/* ---- Emissary's default line, and the buffer --------------------------------------------- */

static void default_line(struct pt_worker *w, struct pt_downstream *ds)
{
    size_t mid, rest;
    char *p, *start;

    mid = ds->log_mid;
    rest = (size_t)ds->log_len - mid - 1;
    if (w->logbuf.cap - w->logbuf.len < mid + rest + 256) /* the fixed fields fit in 256 */
        pt_accesslog_flush(w);
    start = p = w->logbuf.base + w->logbuf.len;
    p = put(p, "ACCESS [", 8);
    p = put_time(p, ds->start_realtime_ms);
    p = put(p, "] ", 2);
    p = put(p, ds->log, mid);
    *p++ = ' ';
    p = put_uint(p, (uint64_t)ds->status);
    *p++ = ' ';
    p = put(p, ds->flags_str ? ds->flags_str : "-", strlen(ds->flags_str ? ds->flags_str : "-"));
    *p++ = ' ';
    p = put_uint(p, ds->bytes_rx);
    *p++ = ' ';
    p = put_uint(p, ds->bytes_tx);
    *p++ = ' ';
    p = put_uint(p, pt_loop_now_ms(w->loop) - ds->start_ms);
    *p++ = ' ';
    if (ds->upstream_ms != UINT32_MAX)
        p = put_uint(p, ds->upstream_ms);
    else
        *p++ = '-';
    *p++ = ' ';
    p = put(p, ds->log + mid + 1, rest);
    p = put(p, " \"", 2);
    if (ds->endpoint)
        p = put(p, ds->endpoint->name, strlen(ds->endpoint->name));
    else
        *p++ = '-';
    p = put(p, "\"\n", 2);
    w->logbuf.len += (uint32_t)(p - start);
}

void pt_accesslog_request(struct pt_downstream *ds)
{
    struct pt_worker *w = ds->w;
    const struct pt_snapshot *s = ds->snap ? ds->snap : w->snap;

    if (ds->log_len == 0)
        return;
    if (w->logbuf.base == NULL) {
        if ((w->logbuf.base = malloc(PT_LOGBUF_SIZE)) == NULL)
            return;
        w->logbuf.cap = PT_LOGBUF_SIZE;
        w->log_timer.cb = on_flush_timer;
    }
    if (s == NULL || s->log.fmt == NULL)
        default_line(w, ds);
    else
        custom_line(w, ds, s->log.fmt);
    ds->log_len = 0;
    if (w->logbuf.len >= PT_LOGBUF_FLUSH_AT)
        pt_accesslog_flush(w);
    else if (!pt_timer_armed(&w->log_timer))
        pt_timer_arm(w->loop, &w->log_timer, PT_LOG_FLUSH_MS);
}

/* ---- Keeping request and response values ---------------------------------------------------- */

/* Copies <s> (at most <max> bytes, less when log[] is nearly full) behind what log[] keeps. */
static void keep(struct pt_downstream *ds, struct pt_str s, size_t max, struct pt_str_off *at)
{
    size_t room = sizeof(ds->log) - ds->log_used, n = s.len < max ? s.len : max;

    if (n > room)
        n = room;
    *at = (struct pt_str_off){ ds->log_used, (uint16_t)n };
    if (n > 0)
        memcpy(ds->log + ds->log_used, s.ptr, n);
    ds->log_used = (uint16_t)(ds->log_used + n);
}

void pt_accesslog_keep(struct pt_downstream *ds, struct pt_str s, struct pt_str_off *at)
{
    keep(ds, s, PT_LOG_KEEP_MAX, at);
}

void pt_accesslog_capture(struct pt_downstream *ds)
{
    const struct pt_logfmt *f = ds->snap->log.fmt;
    const struct pt_h1_request *req = &ds->req;

    for (uint8_t i = 0; i < f->nheaders; i++) {
        const struct pt_header *h = pt_header_find(req->headers, req->nheaders, f->headers[i]);
        keep(ds, h ? h->value : (struct pt_str){ 0 }, f->header_max[i], &ds->lf_hdr[i]);
    }
    ds->log_nhdr = f->nheaders;
}

void pt_accesslog_capture_response(struct pt_downstream *ds, const struct pt_header *h, size_t n)
{
    const struct pt_header *ct = pt_header_find(h, n, PT_STR_LIT("content-type"));

    if (ct != NULL)
        keep(ds, ct->value, PT_LOG_KEEP_MAX, &ds->lf_ctype);
}
