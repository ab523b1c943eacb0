/* Active health checks (a Mapping's health_checks): each checked cluster is checked by one
 * worker, the one its name hashes to, which sends every endpoint each check on the upstream
 * client (proxy/httpclient.h: the worker's pooled HTTP/1.1 connections, or HTTP/2 streams for a
 * grpc cluster) every interval, and writes the results into the cluster's shared health
 * (cluster/health.h) that every worker's load balancer reads. That worker also brings back the
 * endpoints whose passive ejection time has passed. Internal to src/proxy/: worker.c calls it
 * when it adopts a snapshot. */
#ifndef PT_PROXY_HEALTH_H
#define PT_PROXY_HEALTH_H

#include "proxy/proxy-t.h"

/* pt_health_adopt: the checks of <w> for snapshot <s> (adopted next; w->snap is still the one
 * before): a cluster of <s> whose health is the same object as before (pt_health_attach kept
 * it: same name, endpoints and checks) keeps its checks where they are, timers and counts
 * included, a check in flight finishing on the snapshot it began on; a new one starts checking
 * every endpoint now; the checks of a cluster <s> no longer has (or changed) are cancelled,
 * their exchanges given up and their connections closed. Returns 0, or PT_NOMEM with nothing
 * changed. */
int pt_health_adopt(struct pt_worker *w, struct pt_snapshot *s);

/* pt_health_owner: the worker (of <nworkers>) that checks cluster <c>. */
int pt_health_owner(const struct pt_cluster *c, int nworkers);

#endif
