/* Writing HTTP/1.1 heads and the header rules of the proxy (http/h1write.h). Every write goes
 * through put(), which records an overflow instead of writing past the buffer; the caller
 * learns it once, from pt_h1w_end(). No I/O, no allocation. Called by proxy/session.c and
 * proxy/reply.c. */
#include "http/h1write.h"

#include <string.h>
#include <time.h>

#define put pt_h1w__put

#define put_lit(w, s) put((w), (s), sizeof(s) - 1)

static void put_str(struct pt_h1w *w, struct pt_str s)
{
    put(w, s.ptr, s.len);
}

void pt_h1w_request_line(struct pt_h1w *w, struct pt_str method, struct pt_str target)
{
    put_str(w, method);
    put_lit(w, " ");
    put_str(w, target);
    put_lit(w, " HTTP/1.1\r\n");
}

void pt_h1w_status_line(struct pt_h1w *w, int status, struct pt_str reason)
{
    if (reason.len == 0)
        reason = pt_str_c(pt_reason_phrase(status));
    if (status < 100 || status > 999) {
        put_lit(w, "HTTP/1.1 ");
        pt_h1w__uint(w, (uint64_t)status);
        put_lit(w, " ");
        put_str(w, reason);
        put_lit(w, "\r\n");
        return;
    }
    if (!pt_h1w__room(w, 15 + reason.len))
        return;
    memcpy(w->p, "HTTP/1.1 ", 9);
    w->p[9] = (char)('0' + status / 100);
    w->p[10] = (char)('0' + status / 10 % 10);
    w->p[11] = (char)('0' + status % 10);
    w->p[12] = ' ';
    pt_h1w__copy(w->p + 13, reason.ptr, reason.len);
    memcpy(w->p + 13 + reason.len, "\r\n", 2);
    w->p += 15 + reason.len;
}

void pt_h1w_framing(struct pt_h1w *w, bool chunked, int64_t content_length)
{
    if (chunked)
        put_lit(w, "transfer-encoding: chunked\r\n");
    else if (content_length >= 0)
        pt_h1w_header_uint(w, PT_STR_LIT("content-length"), (uint64_t)content_length);
}

size_t pt_h1w_end(struct pt_h1w *w)
{
    put_lit(w, "\r\n");
    return w->overflow ? 0 : (size_t)(w->p - w->start);
}


bool pt_http_envoy_dropped(struct pt_str name, bool internal)
{
    static const char *const always[] = { "internal", "original-path", "expected-rq-timeout-ms" };
    static const char *const external[] = {
        "retry-on", "retry-grpc-on", "max-retries", "upstream-alt-stat-name", "upstream-rq-timeout-ms",
        "upstream-rq-per-try-timeout-ms", "upstream-rq-timeout-alt-response", "upstream-stream-duration-ms",
        "force-trace", "ip-tags", "decorator-operation", "downstream-service-cluster",
        "downstream-service-node", "external-address",
    };
    struct pt_str rest = pt_str_make(name.ptr + 8, name.len - 8); /* after "x-envoy-" */

    for (size_t i = 0; i < sizeof(always) / sizeof(always[0]); i++)
        if (pt_str_caseeq(rest, pt_str_c(always[i])))
            return true;
    if (internal)
        return false;
    for (size_t i = 0; i < sizeof(external) / sizeof(external[0]); i++)
        if (pt_str_caseeq(rest, pt_str_c(external[i])))
            return true;
    return false;
}

bool pt_http_connection_protected(struct pt_str n)
{
    switch (n.len) {
    case 2:
        return pt_str_caseeq(n, PT_STR_LIT("te"));
    case 4:
        return pt_str_caseeq(n, PT_STR_LIT("host"));
    case 7:
        return pt_str_caseeq(n, PT_STR_LIT("upgrade"));
    case 14:
        return pt_str_caseeq(n, PT_STR_LIT("content-length"));
    case 17:
        return pt_str_caseeq(n, PT_STR_LIT("transfer-encoding"));
    }
    return false;
}

struct pt_str pt_http_list_next(struct pt_str v, size_t *i)
{
    size_t start, end;

    while (*i < v.len && (v.ptr[*i] == ' ' || v.ptr[*i] == '\t' || v.ptr[*i] == ','))
        (*i)++;
    start = *i;
    while (*i < v.len && v.ptr[*i] != ',')
        (*i)++;
    end = *i;
    while (end > start && (v.ptr[end - 1] == ' ' || v.ptr[end - 1] == '\t'))
        end--;
    return pt_str_make(v.ptr + start, end - start);
}

bool pt_h1_connection_names(const struct pt_h1_request *req, struct pt_str name)
{
    if (req->idx_connection < 0)
        return false;
    for (size_t k = (size_t)req->idx_connection; k < req->nheaders; k++) {
        struct pt_str v = req->headers[k].value;
        size_t i = 0;
        if (req->headers[k].name.len != 10 || !pt_str_caseeq(req->headers[k].name, PT_STR_LIT("connection")))
            continue;
        while (i < v.len)
            if (pt_str_caseeq(pt_http_list_next(v, &i), name))
                return true;
    }
    return false;
}

const char *pt_reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
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
