/* Prometheus text for /metrics: per-worker counters summed at scrape time, with Envoy's metric
 * names (reference/envoy-compat.md §1). The full Envoy-compatible set is the observability
 * issue's; this file serves what the core counts. Called by admin/admin.c. */
#include "observe/metrics.h"
#include "config/reload.h"
#include "config/snapshot.h"
#include "proxy/proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static time_t started;

char *pt_metrics_render(size_t *len)
{
    struct pt_worker_stats st;
    const struct pt_reload_stats *rs = pt_reload_stats();
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);

    if (f == NULL)
        return NULL;
    if (started == 0)
        started = time(NULL);
    pt_workers_stats_sum(&st);
    fprintf(f, "# TYPE envoy_http_downstream_cx_total counter\n");
    fprintf(f, "envoy_http_downstream_cx_total{envoy_http_conn_manager_prefix=\"ingress_http\"} %llu\n",
            (unsigned long long)st.downstream_cx_total);
    fprintf(f, "# TYPE envoy_http_downstream_rq_total counter\n");
    fprintf(f, "envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=\"ingress_http\"} %llu\n",
            (unsigned long long)st.downstream_rq_total);
    fprintf(f, "# TYPE envoy_http_downstream_rq_xx counter\n");
    for (int k = 1; k <= 5; k++)
        fprintf(f, "envoy_http_downstream_rq_xx{envoy_http_conn_manager_prefix=\"ingress_http\",envoy_response_code_class=\"%d\"} %llu\n",
                k, (unsigned long long)st.downstream_rq_xx[k]);
    fprintf(f, "# TYPE envoy_http_downstream_cx_active gauge\n");
    fprintf(f, "envoy_http_downstream_cx_active{envoy_http_conn_manager_prefix=\"ingress_http\"} %llu\n",
            (unsigned long long)st.downstream_cx_active);
    fprintf(f, "# TYPE envoy_server_live gauge\nenvoy_server_live{} 1\n");
    fprintf(f, "# TYPE envoy_server_uptime gauge\nenvoy_server_uptime{} %lld\n", (long long)(time(NULL) - started));
    fprintf(f, "# TYPE portico_config_reloads_total counter\n");
    fprintf(f, "portico_config_reloads_total{result=\"ok\"} %llu\n", (unsigned long long)rs->ok);
    fprintf(f, "portico_config_reloads_total{result=\"failed\"} %llu\n", (unsigned long long)rs->failed);
    fclose(f);
    *len = size;
    return buf;
}

void pt_metrics_start_clock(void)
{
    started = time(NULL);
}
