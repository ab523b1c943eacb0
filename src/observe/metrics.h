/* Prometheus text exposition of Portico's counters (admin /metrics). */
#ifndef PT_OBSERVE_METRICS_H
#define PT_OBSERVE_METRICS_H

#include <stddef.h>

/* pt_metrics_render: the whole /metrics page (malloc'ed, *len bytes), or NULL. Control thread. */
char *pt_metrics_render(size_t *len);

#endif
