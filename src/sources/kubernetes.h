/* The Kubernetes configuration source (`portico run --kubernetes`): the same resources as file
 * mode, read from the API server with LIST + WATCH, and applied in batches. main.c starts it;
 * admin/admin.c shows its state in diag. Control thread only. */
#ifndef PT_SOURCES_KUBERNETES_H
#define PT_SOURCES_KUBERNETES_H

#include <stdbool.h>
#include <stddef.h>

struct pt_loop;
struct pt_config_env;
struct pt_resources;

/* pt_kubernetes_rebuild_cb: rebuilds the configuration now (from pt_kubernetes_resources);
 * returns whether a new one went live. main.c passes control/reload.c's pt_reload_now, after
 * installing pt_kubernetes_resources as its source. */
typedef bool (*pt_kubernetes_rebuild_cb)(void);

/* pt_kubernetes_start: finds the API server and credentials (sources/kubeconfig.h), and starts, for
 * every kind Portico reads (getambassador.io/v3alpha1 listeners, hosts, mappings, tlscontexts,
 * tracingservices, modules; v1 services, endpoints, secrets except Helm's release secrets), a LIST
 * and then a WATCH from its resourceVersion. Cluster-wide, or only <env>->namespace with
 * single_namespace. The first configuration is built once every kind has been listed; until then
 * nothing is published (so check_ready answers 503). After that, changes are applied in batches (a
 * burst costs a few compiles through <rebuild>, a single change is live in about 10 ms plus the
 * compile). Failures are retried with jittered exponential backoff (100 ms to 30 s) while the last
 * configuration keeps serving. <env> is borrowed and must outlive the source. Returns 0, or -1 with
 * the reason in <err> when no credentials can be found (nothing is started). */
int pt_kubernetes_start(struct pt_loop *loop, const struct pt_config_env *env,
                        pt_kubernetes_rebuild_cb rebuild, char *err, size_t errlen);

/* pt_kubernetes_stop: cancels every request and frees the source. Safe when not started. */
void pt_kubernetes_stop(void);

/* pt_kubernetes_resources: the reload source (control/reload.h's pt_reload_source_cb): every stored object, loaded with
 * pt_config_load_string(..., "kubernetes", <env>). NULL until every kind has been listed. */
struct pt_resources *pt_kubernetes_resources(const struct pt_config_env *env, void *arg);

/* pt_kubernetes_state: NULL when the source is not running, else one of
 *   "syncing"       not every kind has been listed yet, no error so far
 *   "error"         not every kind has been listed yet, and the last attempt failed
 *   "watching"      every kind listed and its watch healthy
 *   "reconnecting"  configured, but some kind's requests fail (the last configuration serves)
 * A static string. */
const char *pt_kubernetes_state(void);

/* pt_kubernetes_last_error: the latest failure ("mappings: list: HTTP 401: Unauthorized"), kept
 * after recovery so an operator can see what happened; "" when none. NULL when not running. */
const char *pt_kubernetes_last_error(void);

#endif
