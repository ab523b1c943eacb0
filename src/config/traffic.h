/* Readers of the traffic-policy fields of a Mapping and of the `ambassador` Module: retry_policy
 * and circuit_breakers (config/traffic.c). Internal to config/: kinds.c lists them in its field
 * tables, with <arg> 0 for a Mapping and 1 for the Module. */
#ifndef PT_CONFIG_TRAFFIC_H
#define PT_CONFIG_TRAFFIC_H

#include "config/fields.h"

/* pt_config__read_retry_policy: `retry_policy` {retry_on, num_retries, per_try_timeout,
 * retriable_status_codes} into the resource's struct pt_retry_policy_res, retry_on parsed into
 * its bits and per_try_timeout into milliseconds; a bad value is an error on the resource. */
void pt_config__read_retry_policy(struct pt_config__obj *c, const struct pt_config__field *f,
                                  const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                                  const char *path);

/* pt_config__read_breakers: `circuit_breakers`, a list of {priority, max_connections,
 * max_pending_requests, max_requests, max_retries} (a single mapping is a list of one), into the
 * resource's struct pt_breaker_res array; unset limits stay -1. */
void pt_config__read_breakers(struct pt_config__obj *c, const struct pt_config__field *f,
                              const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                              const char *path);



struct pt_retry_policy;
struct pt_breakers;

/* pt_config__retry_compile: the policy <rp> describes (NULL or without retry_on: none), for a
 * route action to own (malloc'd; freed with free()), or NULL. */
struct pt_retry_policy *pt_config__retry_compile(const struct pt_retry_policy_res *rp);

/* pt_config__breakers_name: Emissary's circuit-breaker part of a cluster's name for the <n>
 * entries at <b> ("cbdr10", one per entry, each behind a '_'), into <out> (<cap> bytes); ""
 * when there are none. False when it does not fit. */
bool pt_config__breakers_name(const struct pt_breaker_res *b, size_t n, char *out, size_t cap);

/* pt_config__breakers_limits: the limits of priority default that the <n> entries at <b> give
 * (Envoy's defaults for what they leave out, and for all when none is of priority default)
 * into <out>. */
void pt_config__breakers_limits(const struct pt_breaker_res *b, size_t n, struct pt_breakers *out);
#endif
