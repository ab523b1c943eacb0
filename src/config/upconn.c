/* Reading a Mapping's (or the `ambassador` Module's) upstream-connection fields as Emissary's
 * Mapping and Module accept them (crd_mapping.go KeepAlive, cluster_idle_timeout_ms,
 * cluster_max_connection_lifetime_ms, dns_type, respect_dns_ttl), and what they give a cluster:
 * its struct pt_up_opts (model/upconn-t.h, used by proxy/upstream.c) and, for
 * connect_timeout_ms, a part of its name. How DNS honours dns_type and respect_dns_ttl is in
 * cluster/service.c and cluster/dns.c. Called by config/kinds.c and config/compile.c. */
#include "config/upconn.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define OFF(T, m) offsetof(T, m)

#define T struct pt_keepalive_res
static const struct pt_config__field keepalive_fields[] = {
    { .name = "probes", .type = PT_F_INT, .off = OFF(T, probes), .min = 1, .max = PT_KEEPALIVE_PROBES_MAX },
    { .name = "idle_time", .alias = "time", .type = PT_F_INT, .off = OFF(T, idle_time), .min = 1,
      .max = PT_KEEPALIVE_TIME_MAX },
    { .name = "interval", .type = PT_F_INT, .off = OFF(T, interval), .min = 1, .max = PT_KEEPALIVE_TIME_MAX },
    { .type = PT_F_END },
};
#undef T

void pt_config__read_keepalive(struct pt_config__obj *c, const struct pt_config__field *f,
                               const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                               const char *path)
{
    struct pt_keepalive_res *ka = f->arg ? &((struct pt_module_res *)base)->keepalive
                                         : &((struct pt_mapping_res *)base)->keepalive;
    int errors = c->nerrors;

    if (val->type != PT_YNODE_MAP) {
        pt_config__err(c, key, "%s: expected a mapping", path);
        return;
    }
    *ka = (struct pt_keepalive_res){ 0 };
    pt_config__read_fields(c, val, keepalive_fields, ka, path);
    ka->set = c->nerrors == errors;
}

void pt_config__read_dns_type(struct pt_config__obj *c, const struct pt_config__field *f,
                              const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                              const char *path)
{
    struct pt_mapping_res *m = base;
    const char *s = pt_config__string(c, key, val, path);

    (void)f;
    if (s == NULL)
        return;
    if (strcasecmp(s, "strict_dns") == 0)
        m->dns_type = PT_DNS_STRICT;
    else if (strcasecmp(s, "logical_dns") == 0)
        m->dns_type = PT_DNS_LOGICAL;
    else
        pt_config__err(c, key, "%s: expected strict_dns or logical_dns (got \"%.64s\")", path, s);
}

void pt_config__up_opts(const struct pt_mapping_res *m, const struct pt_module_res *mod,
                        struct pt_up_opts *out)
{
    const struct pt_keepalive_res *ka = m->keepalive.set ? &m->keepalive
                                        : mod != NULL && mod->keepalive.set ? &mod->keepalive : NULL;
    int idle = m->cluster_idle_timeout_ms > 0 ? m->cluster_idle_timeout_ms
               : mod != NULL ? mod->cluster_idle_timeout_ms : 0;
    int life = m->cluster_max_connection_lifetime_ms > 0 ? m->cluster_max_connection_lifetime_ms
               : mod != NULL ? mod->cluster_max_connection_lifetime_ms : 0;

    memset(out, 0, sizeof(*out));
    out->idle_ms = idle > 0 ? (uint32_t)idle : 0;
    out->lifetime_ms = life > 0 ? (uint32_t)life : 0;
    if (ka != NULL) { /* the readers kept each value within its socket option's bounds */
        out->keepalive = 1;
        out->ka_probes = (uint8_t)ka->probes;
        out->ka_idle_s = (uint16_t)ka->idle_time;
        out->ka_interval_s = (uint16_t)ka->interval;
    }
}

void pt_config__ctms_name(int ms, char *out, size_t cap)
{
    int n;

    out[0] = '\0';
    if (ms == PT_CONNECT_TIMEOUT_DEFAULT_MS)
        return;
    n = snprintf(out, cap, "_ctms%d", ms);
    if (n < 0 || (size_t)n >= cap)
        out[0] = '\0'; /* cannot happen: an int has at most 11 characters */
}
