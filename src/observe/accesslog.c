/* The access log in Emissary's default text format (reference/envoy-compat.md §2.3):
 *   ACCESS [START_TIME] "METHOD PATH PROTOCOL" CODE FLAGS RX TX DURATION UPSTREAM_TIME
 *   "X-FORWARDED-FOR" "USER-AGENT" "X-REQUEST-ID" "AUTHORITY" "UPSTREAM_HOST"
 * Lines collect in a per-worker buffer that is written when it fills or half a second after the
 * first line, so a request never costs a write of its own. Called by proxy/http1.c. */
#include "proxy/proxy.h"

#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define PT_LOGBUF_SIZE (64 * 1024)
#define PT_LOGBUF_FLUSH_AT (PT_LOGBUF_SIZE - 4096)
#define PT_LOG_FLUSH_MS 500

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

void pt_accesslog_request(struct pt_downstream *ds)
{
    struct pt_worker *w = ds->w;
    size_t mid, rest;
    char *p, *start;

    if (ds->log_len == 0)
        return;
    if (w->logbuf.base == NULL) {
        if ((w->logbuf.base = malloc(PT_LOGBUF_SIZE)) == NULL)
            return;
        w->logbuf.cap = PT_LOGBUF_SIZE;
        w->log_timer.cb = on_flush_timer;
    }
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
    ds->log_len = 0;
    w->logbuf.len += (uint32_t)(p - start);
    if (w->logbuf.len >= PT_LOGBUF_FLUSH_AT)
        pt_accesslog_flush(w);
    else if (!pt_timer_armed(&w->log_timer))
        pt_timer_arm(w->loop, &w->log_timer, PT_LOG_FLUSH_MS);
}
