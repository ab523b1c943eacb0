/* Prometheus text exposition of Portico's counters (admin /metrics). */
#ifndef PT_OBSERVE_METRICS_H
#define PT_OBSERVE_METRICS_H

#include <stddef.h>

struct pt_snapshot;
struct pt_reload_stats;

/* pt_metrics_render: the whole /metrics page (malloc'ed, *len bytes), or NULL, for the snapshot
 * in force <s> (NULL before the first) and the reload counters <rs> (both from control/reload.h:
 * observe/ does not reach up for them). Control thread. */
char *pt_metrics_render(const struct pt_snapshot *s, const struct pt_reload_stats *rs, size_t *len);

#endif
