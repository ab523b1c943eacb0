/* The access log in Emissary's default text format (reference/envoy-compat.md §2.3):
 *   ACCESS [START_TIME] "METHOD PATH PROTOCOL" CODE FLAGS RX TX DURATION UPSTREAM_TIME
 *   "X-FORWARDED-FOR" "USER-AGENT" "X-REQUEST-ID" "AUTHORITY" "UPSTREAM_HOST"
 * Lines collect in a per-worker buffer that is written when it fills or half a second after the
 * first line, so a request never costs a write of its own. Called by proxy/http1.c. */
#include "proxy/proxy.h"

#include <stdio.h>
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

static int format_time(char *out, uint64_t ms)
{
    static __thread time_t last;
    static __thread char cached[24];
    time_t sec = (time_t)(ms / 1000);

    if (sec != last) {
        struct tm tm;
        gmtime_r(&sec, &tm);
        strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
        last = sec;
    }
    return sprintf(out, "%s.%03uZ", cached, (unsigned)(ms % 1000));
}

void pt_accesslog_request(struct pt_downstream *ds)
{
    struct pt_worker *w = ds->w;
    char ts[40], ust[16];
    int n;

    if (ds->log_len == 0)
        return;
    if (w->logbuf.base == NULL) {
        if ((w->logbuf.base = malloc(PT_LOGBUF_SIZE)) == NULL)
            return;
        w->logbuf.cap = PT_LOGBUF_SIZE;
        w->log_timer.cb = on_flush_timer;
    }
    format_time(ts, ds->start_realtime_ms);
    if (ds->upstream_ms != UINT32_MAX)
        snprintf(ust, sizeof(ust), "%u", ds->upstream_ms);
    else
        strcpy(ust, "-");
    n = snprintf(w->logbuf.base + w->logbuf.len, w->logbuf.cap - w->logbuf.len,
                 "ACCESS [%s] %s %d %s %llu %llu %llu %s %s \"%s\"\n", ts, ds->log, ds->status,
                 ds->flags_str ? ds->flags_str : "-", (unsigned long long)ds->bytes_rx,
                 (unsigned long long)ds->bytes_tx,
                 (unsigned long long)(pt_loop_now_ms(w->loop) - ds->start_ms), ust,
                 ds->log + ds->log_mid + 1, ds->endpoint ? ds->endpoint->name : "-");
    ds->log_len = 0;
    if (n > 0 && (uint32_t)n < w->logbuf.cap - w->logbuf.len)
        w->logbuf.len += (uint32_t)n;
    if (w->logbuf.len >= PT_LOGBUF_FLUSH_AT)
        pt_accesslog_flush(w);
    else if (!pt_timer_armed(&w->log_timer))
        pt_timer_arm(w->loop, &w->log_timer, PT_LOG_FLUSH_MS);
}
