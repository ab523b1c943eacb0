/* Replies Portico makes itself, with Envoy's status codes, bodies and response flags
 * (reference/envoy-compat.md §2.1): 404 with an empty body when no route matches, 503
 * "no healthy upstream", 503 "upstream connect error or disconnect/reset before headers. ...",
 * 504 "upstream request timeout", 400 "Bad Request" for malformed requests (the connection is
 * then closed), and the 301 of a Host's insecure Redirect. Called by proxy/http1.c and
 * proxy/session.c. */
#include "proxy/session.h"
#include "proxy/proxy.h"
#include "observe/logformat.h"

#include <stdio.h>
#include <time.h>

const char *pt_reason_phrase(int status)
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
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 421: return "Misdirected Request";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    }
    return "Unknown";
}

struct pt_str pt_http_date(void)
{
    static __thread char buf[32];
    static __thread time_t last;
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (ts.tv_sec != last) {
        struct tm tm;
        last = ts.tv_sec;
        gmtime_r(&last, &tm);
        strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    }
    return pt_str_make(buf, 29);
}

/* Sends a complete local response; <extra> holds more header lines ("name: value\r\n"). */
static void send_reply(struct pt_downstream *ds, int status, struct pt_str body, const char *flags,
                       const char *extra, size_t extra_len)
{
    char head[1024];
    struct pt_str date = pt_http_date();
    int n;

    if (ds->flags & PT_DSF_RESP_HEAD) {
        pt_ds_abort(ds);
        return;
    }
    if (ds->up != NULL) {
        pt_up_release(ds->up, false);
        ds->up = NULL;
    }
    if (!(ds->flags & PT_DSF_REQ_DONE) || ds->w->draining)
        ds->flags |= PT_DSF_CLOSE_AFTER;
    ds->status = status;
    ds->flags_str = flags;
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\ncontent-length: %zu\r\n%sdate: %.*s\r\nserver: envoy\r\n%.*s%s\r\n",
                 status, pt_reason_phrase(status), body.len, body.len ? "content-type: text/plain\r\n" : "",
                 (int)date.len, date.ptr, (int)extra_len, extra ? extra : "",
                 (ds->flags & PT_DSF_CLOSE_AFTER) ? "connection: close\r\n"
                 : ds->req.minor_version == 0 ? "connection: keep-alive\r\n" : "");
    pt_stats_downstream_code(pt_ds_http_stats(ds), status);
    if (ds->flags & PT_DSF_UP_ACTIVE) /* the router's own replies count for the cluster, as Envoy */
        pt_stats_upstream_code(pt_ds_cluster_stats(ds), status);
    struct iovec iov[2] = { { head, (size_t)n }, { (void *)body.ptr, body.len } };
    if (pt_ds_send(ds, iov, 2) == PT_IO) {
        pt_ds_abort(ds);
        return;
    }
    ds->bytes_tx = body.len;
    pt_ds_local_reply_done(ds);
}

void pt_reply_local(struct pt_downstream *ds, int status, struct pt_str body, const char *flags)
{
    send_reply(ds, status, body, flags, NULL, 0);
}

void pt_reply_bad_request(struct pt_downstream *ds)
{
    pt_reply_refuse(ds, 400);
}

void pt_reply_refuse(struct pt_downstream *ds, int status)
{
    const char *text = pt_reason_phrase(status);

    ds->flags |= PT_DSF_CLOSE_AFTER;
    ds->flags &= ~PT_DSF_REQ_DONE;
    if (ds->state == PT_DS_HEAD || ds->log_len == 0) {
        /* Nothing was parsed: log what can be said. */
        struct timespec now;
        int n = snprintf(ds->log, sizeof(ds->log), "\"- - -\"");
        clock_gettime(CLOCK_REALTIME_COARSE, &now);
        ds->start_realtime_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
        ds->log_mid = (uint16_t)n;
        ds->log[n++] = '\0';
        n += snprintf(ds->log + n, sizeof(ds->log) - (size_t)n, "\"-\" \"-\" \"-\" \"-\"");
        ds->log_len = ds->log_used = (uint16_t)n;
        ds->lf_method = ds->lf_path = ds->lf_ua = ds->lf_rid = ds->lf_auth = (struct pt_str_off){ 0 };
        ds->lf_xff = ds->lf_tfr = ds->lf_ctype = (struct pt_str_off){ 0 };
        ds->log_nhdr = 0;
    }
    if (ds->state == PT_DS_HEAD) { /* nothing of this request was parsed */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME_COARSE, &ts);
        ds->state = PT_DS_FORWARD;
        ds->start_ms = pt_loop_now_ms(ds->w->loop);
        ds->start_realtime_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        ds->endpoint = NULL;
        ds->upstream_ms = UINT32_MAX;
        ds->bytes_rx = ds->bytes_tx = 0;
    }
    send_reply(ds, status, pt_str_c(text), "DPE", NULL, 0);
}

void pt_reply_redirect_https(struct pt_downstream *ds)
{
    char loc[8192];
    struct pt_str host = ds->req.authority.len ? ds->req.authority : ds->req.host;
    int n;
    /* The cleartext port means nothing on https (Envoy strips it too). */
    if (host.len > 3 && memcmp(host.ptr + host.len - 3, ":80", 3) == 0)
        host.len -= 3;
    n = snprintf(loc, sizeof(loc), "location: https://%.*s%.*s\r\n", (int)host.len, host.ptr,
                     (int)ds->req.target.len, ds->req.target.ptr);
    if (n < 0 || n >= (int)sizeof(loc)) {
        pt_reply_bad_request(ds);
        return;
    }
    send_reply(ds, 301, (struct pt_str){ 0 }, "-", loc, (size_t)n);
}

void pt_reply_upstream_reset(struct pt_downstream *ds, const char *reason, const char *tfr,
                             const char *flags)
{
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "upstream connect error or disconnect/reset before headers. reset reason: %s%s%s",
                     reason, tfr ? ", transport failure reason: " : "", tfr ? tfr : "");
    int status = strcmp(reason, "protocol error") == 0 ? 502 : 503;
    if (tfr != NULL) /* %UPSTREAM_TRANSPORT_FAILURE_REASON% */
        pt_accesslog_keep(ds, pt_str_c(tfr), &ds->lf_tfr);
    send_reply(ds, status, pt_str_make(body, (size_t)n), flags, NULL, 0);
}
