/* Reading a Mapping's (or the Module's) retry_policy and circuit_breakers, as Emissary's
 * IRRetryPolicy and validate_circuit_breakers accept them (emissary `ir/irretrypolicy.py`,
 * `ir/irbasemapping.py`), with Envoy's meaning for each value. What they do to a request is in
 * proxy/retry.c; how they name a cluster in config/compile.c. Called by config/kinds.c. */
#include "config/traffic.h"
#include "model/resource-t.h"
#include "model/traffic-t.h"

#include "core/arena.h"
#include "core/common.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OFF(T, m) offsetof(T, m)

static const struct {
    const char *name;
    unsigned bit;
} retry_ons[] = {
    { "5xx", PT_RETRY_5XX },
    { "gateway-error", PT_RETRY_GATEWAY },
    { "connect-failure", PT_RETRY_CONNECT },
    { "retriable-4xx", PT_RETRY_4XX },
    { "refused-stream", PT_RETRY_REFUSED },
    { "retriable-status-codes", PT_RETRY_STATUS_CODES },
    { "reset", PT_RETRY_RESET },
};

/* parse_retry_on: Envoy's comma-separated retry_on into PT_RETRY_* bits; 0 when a name is not
 * one of them (Emissary takes one name only; a list is Envoy's x-envoy-retry-on form). */
static unsigned parse_retry_on(const char *s)
{
    unsigned on = 0;

    for (const char *p = s;;) {
        const char *end = strchr(p, ','), *stop = end ? end : p + strlen(p);
        size_t i;
        while (p < stop && *p == ' ')
            p++;
        while (stop > p && stop[-1] == ' ')
            stop--;
        for (i = 0; i < sizeof(retry_ons) / sizeof(retry_ons[0]); i++)
            if (strlen(retry_ons[i].name) == (size_t)(stop - p) && memcmp(retry_ons[i].name, p, (size_t)(stop - p)) == 0)
                break;
        if (i == sizeof(retry_ons) / sizeof(retry_ons[0]))
            return 0;
        on |= retry_ons[i].bit;
        if (end == NULL)
            return on;
        p = end + 1;
    }
}

/* parse_duration_ms: a protobuf JSON Duration as Emissary passes per_try_timeout to Envoy
 * ("0.5s", "2s"), or milliseconds ("250ms"); rounded up to whole milliseconds. -1 when malformed
 * or longer than a day. */
static long parse_duration_ms(const char *s)
{
    char *end;
    double v, ms;

    if (*s < '0' || *s > '9')
        return -1;
    v = strtod(s, &end);
    if (strcmp(end, "s") == 0)
        ms = v * 1000.0;
    else if (strcmp(end, "ms") == 0)
        ms = v;
    else
        return -1;
    if (!(ms >= 0.0) || ms > 86400000.0)
        return -1;
    return (long)ms + ((double)(long)ms < ms ? 1 : 0);
}

static void read_codes(struct pt_config__obj *c, const struct pt_config__field *f, const struct pt_ynode *key,
                       const struct pt_ynode *val, void *base, const char *path)
{
    struct pt_retry_policy_res *rp = base;
    size_t n = val->type == PT_YNODE_SEQ ? val->nitems : 1;

    (void)f;
    if (n > PT_RETRY_CODES_MAX) {
        pt_config__err(c, key, "%s: at most %d codes", path, PT_RETRY_CODES_MAX);
        return;
    }
    rp->retriable_status_codes = pt_arena_alloc_array(c->arena, n, sizeof(int));
    for (size_t i = 0; i < n; i++) {
        const struct pt_ynode *it = val->type == PT_YNODE_SEQ ? val->items[i] : val;
        long v;
        if (!pt_config__scalar_long(it, &v) || v < 100 || v > 599) {
            pt_config__err(c, it, "%s[%zu]: expected an HTTP status code (100-599)", path, i);
            continue;
        }
        rp->retriable_status_codes[rp->nretriable_status_codes++] = (int)v;
    }
}

#define T struct pt_retry_policy_res
static const struct pt_config__field retry_fields[] = {
    { .name = "retry_on", .type = PT_F_STR, .off = OFF(T, retry_on) },
    { .name = "num_retries", .type = PT_F_INT, .off = OFF(T, num_retries), .min = 0, .max = 255 },
    { .name = "per_try_timeout", .type = PT_F_STR, .off = OFF(T, per_try_timeout) },
    { .name = "retriable_status_codes", .type = PT_F_CUSTOM, .fn = read_codes },
    { .type = PT_F_END },
};
#undef T

void pt_config__read_retry_policy(struct pt_config__obj *c, const struct pt_config__field *f,
                                  const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                                  const char *path)
{
    struct pt_retry_policy_res *rp = f->arg ? &((struct pt_module_res *)base)->retry_policy
                                            : &((struct pt_mapping_res *)base)->retry_policy;
    int errors = c->nerrors;
    char p[PT_PATH_MAX];

    if (val->type != PT_YNODE_MAP) {
        pt_config__err(c, key, "%s: expected a mapping", path);
        return;
    }
    *rp = (struct pt_retry_policy_res){ .num_retries = -1 };
    pt_config__read_fields(c, val, retry_fields, rp, path);
    if (c->nerrors != errors)
        return;
    pt_config__path(p, sizeof(p), path, "retry_on");
    if (rp->retry_on == NULL || (rp->on = parse_retry_on(rp->retry_on)) == 0) {
        pt_config__err(c, key, "%s: expected 5xx, gateway-error, connect-failure, retriable-4xx, "
                       "refused-stream, retriable-status-codes or reset (got \"%.64s\")", p,
                       rp->retry_on ? rp->retry_on : "");
        rp->retry_on = NULL;
        return;
    }
    if (rp->per_try_timeout != NULL) {
        long ms = parse_duration_ms(rp->per_try_timeout);
        pt_config__path(p, sizeof(p), path, "per_try_timeout");
        if (ms < 0) {
            pt_config__err(c, key, "%s: expected a duration such as \"0.5s\" or \"250ms\" (got \"%.64s\")", p,
                           rp->per_try_timeout);
            rp->retry_on = NULL;
            return;
        }
        rp->per_try_timeout_ms = (int)ms;
    }
}

#define T struct pt_breaker_res
static const struct pt_config__field breaker_fields[] = {
    { .name = "priority", .type = PT_F_STR, .off = OFF(T, priority) },
    { .name = "max_connections", .type = PT_F_INT, .off = OFF(T, max_connections), .min = 0, .max = INT_MAX },
    { .name = "max_pending_requests", .type = PT_F_INT, .off = OFF(T, max_pending_requests), .min = 0,
      .max = INT_MAX },
    { .name = "max_requests", .type = PT_F_INT, .off = OFF(T, max_requests), .min = 0, .max = INT_MAX },
    { .name = "max_retries", .type = PT_F_INT, .off = OFF(T, max_retries), .min = 0, .max = INT_MAX },
    { .type = PT_F_END },
};
#undef T

void pt_config__read_breakers(struct pt_config__obj *c, const struct pt_config__field *f,
                              const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                              const char *path)
{
    struct pt_breaker_res **dst = f->arg ? &((struct pt_module_res *)base)->circuit_breakers
                                         : &((struct pt_mapping_res *)base)->circuit_breakers;
    size_t *n = f->arg ? &((struct pt_module_res *)base)->ncircuit_breakers
                       : &((struct pt_mapping_res *)base)->ncircuit_breakers;
    size_t count = val->type == PT_YNODE_SEQ ? val->nitems : 1;
    char p[PT_PATH_MAX];

    if (val->type == PT_YNODE_SCALAR) {
        pt_config__err(c, key, "%s: expected a list of mappings", path);
        return;
    }
    *dst = pt_arena_alloc_array(c->arena, count ? count : 1, sizeof(**dst));
    *n = 0;
    for (size_t i = 0; i < count; i++) {
        const struct pt_ynode *it = val->type == PT_YNODE_SEQ ? val->items[i] : val;
        struct pt_breaker_res *b = &(*dst)[*n];
        int len = snprintf(p, sizeof(p), "%s[%zu]", path, i);
        if (len < 0 || (size_t)len >= sizeof(p))
            snprintf(p, sizeof(p), "%s", "circuit_breakers[]");
        if (it->type != PT_YNODE_MAP) {
            pt_config__err(c, it, "%s: expected a mapping", p);
            continue;
        }
        *b = (struct pt_breaker_res){ .max_connections = -1, .max_pending_requests = -1, .max_requests = -1,
                                      .max_retries = -1 };
        pt_config__read_fields(c, it, breaker_fields, b, p);
        if (b->priority != NULL && strcasecmp(b->priority, "default") != 0 && strcasecmp(b->priority, "high") != 0) {
            pt_config__err(c, it, "%s.priority: expected default or high (got \"%.32s\")", p, b->priority);
            continue;
        }
        (*n)++;
    }
}

struct pt_retry_policy *pt_config__retry_compile(const struct pt_retry_policy_res *rp)
{
    struct pt_retry_policy *p;

    if (rp == NULL || rp->retry_on == NULL)
        return NULL;
    p = pt_xcalloc(1, sizeof(*p));
    p->on = rp->on;
    p->num_retries = rp->num_retries >= 0 ? (uint32_t)rp->num_retries : 1;
    p->per_try_timeout_ms = (uint32_t)rp->per_try_timeout_ms;
    for (size_t i = 0; i < rp->nretriable_status_codes && i < PT_RETRY_CODES_MAX; i++)
        p->codes[p->ncodes++] = (uint16_t)rp->retriable_status_codes[i];
    return p;
}

bool pt_config__breakers_name(const struct pt_breaker_res *b, size_t n, char *out, size_t cap)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const int v[4] = { b[i].max_connections, b[i].max_pending_requests, b[i].max_requests, b[i].max_retries };
        static const char abbrev[4] = { 'c', 'p', 'r', 't' };
        char prio = b[i].priority == NULL ? 'n' : (char)(b[i].priority[0] | 0x20); /* d or h */
        int k = snprintf(out + used, cap - used, "_cb%c", prio);
        if (k < 0 || (size_t)k >= cap - used)
            return false;
        used += (size_t)k;
        for (int j = 0; j < 4; j++) {
            if (v[j] < 0)
                continue;
            k = snprintf(out + used, cap - used, "%c%d", abbrev[j], v[j]);
            if (k < 0 || (size_t)k >= cap - used)
                return false;
            used += (size_t)k;
        }
    }
    return true;
}

void pt_config__breakers_limits(const struct pt_breaker_res *b, size_t n, struct pt_breakers *out)
{
    out->max_connections = out->max_pending = out->max_requests = PT_CB_DEFAULT_MAX;
    out->max_retries = PT_CB_DEFAULT_MAX_RETRIES;
    for (size_t i = 0; i < n; i++) {
        if (b[i].priority != NULL && strcasecmp(b[i].priority, "default") != 0)
            continue; /* high: only for priority routing, which Emissary's Mappings do not use */
        if (b[i].max_connections >= 0)
            out->max_connections = (uint32_t)b[i].max_connections;
        if (b[i].max_pending_requests >= 0)
            out->max_pending = (uint32_t)b[i].max_pending_requests;
        if (b[i].max_requests >= 0)
            out->max_requests = (uint32_t)b[i].max_requests;
        if (b[i].max_retries >= 0)
            out->max_retries = (uint32_t)b[i].max_retries;
        break; /* Envoy takes one threshold per priority */
    }
}
