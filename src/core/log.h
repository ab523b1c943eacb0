/* Logging to stderr with levels. Log lines are for operators; the access log is separate
 * (observe/accesslog). Secrets must never be passed to these functions. */
#ifndef PT_CORE_LOG_H
#define PT_CORE_LOG_H

enum pt_log_level { PT_LOG_DEBUG, PT_LOG_INFO, PT_LOG_WARN, PT_LOG_ERROR };

/* pt_log_set_level: only messages at or above <level> are printed. */
void pt_log_set_level(enum pt_log_level level);

/* pt_log_parse_level: "debug|info|warn|error" into <out>; returns 0 or PT_EINVAL. */
int pt_log_parse_level(const char *s, enum pt_log_level *out);

/* pt_log: printf-style message with a timestamp and level prefix, written with one write(2). */
void pt_log(enum pt_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

extern enum pt_log_level pt_log_level_cur;

#define pt_debug(...) do { if (pt_log_level_cur <= PT_LOG_DEBUG) pt_log(PT_LOG_DEBUG, __VA_ARGS__); } while (0)
#define pt_info(...)  pt_log(PT_LOG_INFO, __VA_ARGS__)
#define pt_warn(...)  pt_log(PT_LOG_WARN, __VA_ARGS__)
#define pt_error(...) pt_log(PT_LOG_ERROR, __VA_ARGS__)

#endif
