/* Readers and compile helpers of the upstream-connection fields of a Mapping and of the
 * `ambassador` Module: keepalive, cluster_idle_timeout_ms, cluster_max_connection_lifetime_ms,
 * dns_type, and connect_timeout_ms's part of a cluster's name (config/upconn.c). Internal to
 * config/: kinds.c lists the readers in its field tables (<arg> 0 for a Mapping, 1 for the
 * Module), compile.c calls the helpers. */
#ifndef PT_CONFIG_UPCONN_H
#define PT_CONFIG_UPCONN_H

#include "config/fields.h"
#include "model/resource-t.h"
#include "model/upconn-t.h"

#include <stdbool.h>
#include <stddef.h>

/* Emissary's connect_timeout_ms when a Mapping gives none. */
#define PT_CONNECT_TIMEOUT_DEFAULT_MS 3000

/* pt_config__read_keepalive: `keepalive` {probes, idle_time, interval} (`time` is read as
 * idle_time: Emissary's Envoy config reads that name) into the resource's struct
 * pt_keepalive_res, each within what Linux accepts; a bad value is an error on the resource. */
void pt_config__read_keepalive(struct pt_config__obj *c, const struct pt_config__field *f,
                               const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                               const char *path);

/* pt_config__read_dns_type: a Mapping's `dns_type`, strict_dns or logical_dns in any case (as
 * Emissary upper-cases it), into its dns_type; anything else is an error on the Mapping. */
void pt_config__read_dns_type(struct pt_config__obj *c, const struct pt_config__field *f,
                              const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                              const char *path);

/* pt_config__up_opts: the connection settings of the cluster of Mapping <m> into <out>: each
 * of keepalive, cluster_idle_timeout_ms and cluster_max_connection_lifetime_ms the Mapping's,
 * else the Module <mod>'s (NULL: none), else unset (all-zero), as Emissary's v3cluster.py. */
void pt_config__up_opts(const struct pt_mapping_res *m, const struct pt_module_res *mod,
                        struct pt_up_opts *out);

/* pt_config__ctms_name: the part of a cluster's name that a connect timeout of <ms> adds, into
 * <out> (<cap> bytes, at least 16): "" for the default (3000), else "_ctms<ms>". So Mappings of
 * one service with other connect timeouts get clusters of their own. */
void pt_config__ctms_name(int ms, char *out, size_t cap);

#endif
