/* libcurl's multi interface driven by a core/loop.c loop: the sockets libcurl opens are watched
 * on the loop and its timeouts are loop timers, so transfers run without a thread of their own
 * and never block the loop. Used by the Zipkin exporter (observe/zipkin.c) and the Kubernetes
 * client (sources/kubehttp.c), both on the control thread. */
#ifndef PT_CORE_CURLM_H
#define PT_CORE_CURLM_H

#include <curl/curl.h>

struct pt_loop;
struct pt_curlm;

/* A transfer of the multi handle finished with <result> (CURLE_OK: the whole response came).
 * The callback owns <easy> from here: it removes it (pt_curlm_remove) and cleans it up, and may
 * start new transfers. Called from the loop, never from inside a pt_curlm_* call. */
typedef void (*pt_curlm_done_cb)(void *arg, CURL *easy, CURLcode result);

/* pt_curlm_new: a multi handle on <loop>; <name> prefixes its warnings. NULL when libcurl
 * cannot start. */
struct pt_curlm *pt_curlm_new(struct pt_loop *loop, const char *name, pt_curlm_done_cb on_done,
                              void *arg);

/* pt_curlm_free: frees the multi handle. Its owner has removed every transfer first. NULL is
 * allowed. */
void pt_curlm_free(struct pt_curlm *m);

/* pt_curlm_add: starts <easy> (set up by the caller). Returns 0 or PT_NOMEM. */
int pt_curlm_add(struct pt_curlm *m, CURL *easy);

/* pt_curlm_remove: takes <easy> out of the multi handle (finished or not); the caller then
 * cleans it up. */
void pt_curlm_remove(struct pt_curlm *m, CURL *easy);

#endif
