/* Operator log: leveled lines on stderr, each written with a single write(2) so lines from
 * different threads never interleave. Not the access log (see observe/accesslog.c). */
#include "core/log.h"
#include "core/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

enum pt_log_level pt_log_level_cur = PT_LOG_INFO;

void pt_log_set_level(enum pt_log_level level)
{
    pt_log_level_cur = level;
}

int pt_log_parse_level(const char *s, enum pt_log_level *out)
{
    static const char *names[] = { "debug", "info", "warn", "error" };
    for (size_t i = 0; i < PT_ARRAY_SIZE(names); i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (enum pt_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = PT_LOG_WARN;
        return 0;
    }
    return PT_INVAL;
}

void pt_log(enum pt_log_level level, const char *fmt, ...)
{
    static const char *tags[] = { "debug", "info", "warn", "error" };
    char line[2048];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    if (level < pt_log_level_cur)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ portico %s: ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000000, tags[level]);
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    (void)!write(STDERR_FILENO, line, (size_t)n);
}
