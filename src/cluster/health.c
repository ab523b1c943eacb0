/* Endpoint health (see cluster/health.h): the shared per-cluster state, its transitions under
 * active checks and passive ejection, its carrying over from one snapshot to the next, and the
 * pure pieces of checking (durations, expected statuses, the gRPC health messages). It sends
 * nothing: proxy/health.c runs the checks, cluster/lb.c reads the state and reports requests'
 * outcomes, control/apply.c attaches the state to a snapshot's clusters.
 *
 * Concurrency: an endpoint's flags change with atomic fetch-or / fetch-and, and the thread
 * whose change turns the word from 0 to non-0 (or back) is the one that moves nhealthy, so the
 * count stays exact however writers interleave. Passive failures are counted with one atomic
 * add per failed request; the add that reaches the threshold is the one that ejects. */
#include "cluster/health.h"
#include "cluster/lb.h"
#include "core/common.h"
#include "core/strmap.h"
#include "model/snapshot-t.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct pt_health *pt_health_new(uint32_t n)
{
    struct pt_health *h = calloc(1, sizeof(*h) + (size_t)n * sizeof(h->ep[0]));

    if (h == NULL)
        return NULL;
    atomic_init(&h->refcnt, 1);
    atomic_init(&h->nhealthy, n);
    h->n = n;
    return h;
}

void pt_health_ref(struct pt_health *h)
{
    atomic_fetch_add_explicit(&h->refcnt, 1, memory_order_relaxed);
}

void pt_health_release(struct pt_health *h)
{
    if (h != NULL && atomic_fetch_sub_explicit(&h->refcnt, 1, memory_order_acq_rel) == 1)
        free(h);
}

/* set_flag: turns <bit> of endpoint <i> on or off; true when the endpoint went in or out of
 * the rotation. */
static bool set_flag(struct pt_health *h, uint32_t i, uint32_t bit, bool on)
{
    struct pt_health_ep *e = &h->ep[i];
    uint32_t old;

    if (on) {
        old = atomic_fetch_or_explicit(&e->flags, bit, memory_order_relaxed);
        if (old == 0)
            atomic_fetch_sub_explicit(&h->nhealthy, 1, memory_order_relaxed);
        return old == 0;
    }
    old = atomic_fetch_and_explicit(&e->flags, ~bit, memory_order_relaxed);
    if (old == bit)
        atomic_fetch_add_explicit(&h->nhealthy, 1, memory_order_relaxed);
    return old == bit;
}

/* uneject: takes endpoint <i> out of ejection (if it was); true when it came back. */
static bool uneject(struct pt_health *h, uint32_t i)
{
    struct pt_health_ep *e = &h->ep[i];

    uint32_t old = atomic_fetch_and_explicit(&e->flags, ~PT_HEALTH_EJECTED, memory_order_relaxed);

    if (!(old & PT_HEALTH_EJECTED))
        return false;
    atomic_fetch_sub_explicit(&h->nejected, 1, memory_order_relaxed);
    atomic_store_explicit(&e->failures, 0, memory_order_relaxed);
    if (old != PT_HEALTH_EJECTED)
        return false;
    atomic_fetch_add_explicit(&h->nhealthy, 1, memory_order_relaxed);
    return true;
}

bool pt_health_active(struct pt_health *h, uint32_t i, uint32_t k, const struct pt_health_cfg *cfg,
                      struct pt_health_run *run, enum pt_health_result result)
{
    uint32_t bit = PT_HEALTH_FAILED_CHECK(k);
    bool failing = atomic_load_explicit(&h->ep[i].flags, memory_order_relaxed) & bit;
    bool changed = false;

    if (result == PT_HEALTH_PASS) {
        run->failures = 0;
        if (run->successes < UINT32_MAX)
            run->successes++;
        if (failing && run->successes >= cfg->healthy_threshold)
            changed = set_flag(h, i, bit, false);
        return uneject(h, i) || changed;
    }
    run->successes = 0;
    if (run->failures < UINT32_MAX)
        run->failures++;
    if (!failing && (result == PT_HEALTH_FAIL || run->failures >= cfg->unhealthy_threshold))
        changed = set_flag(h, i, bit, true);
    return changed;
}

/* may_eject: reserves one of the ejections PT_HEALTH_MAX_EJECTION_PERCENT allows (at least
 * one); false when they are all taken. */
static bool may_eject(struct pt_health *h)
{
    uint32_t max = h->n * PT_HEALTH_MAX_EJECTION_PERCENT / 100;
    uint32_t cur = atomic_load_explicit(&h->nejected, memory_order_relaxed);

    if (max == 0)
        max = 1;
    do {
        if (cur >= max)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&h->nejected, &cur, cur + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

bool pt_health_passive(struct pt_health *h, uint32_t i, bool failed, uint64_t now_ms)
{
    struct pt_health_ep *e = &h->ep[i];
    uint32_t n, old;

    if (!failed) {
        if (atomic_load_explicit(&e->failures, memory_order_relaxed) != 0)
            atomic_store_explicit(&e->failures, 0, memory_order_relaxed);
        return false;
    }
    n = atomic_fetch_add_explicit(&e->failures, 1, memory_order_relaxed) + 1;
    if (n != PT_HEALTH_CONSECUTIVE_5XX)
        return false;
    atomic_store_explicit(&e->failures, 0, memory_order_relaxed);
    if (atomic_load_explicit(&e->flags, memory_order_relaxed) & PT_HEALTH_EJECTED)
        return false;
    if (!may_eject(h))
        return false;
    atomic_store_explicit(&e->ejected_ms, now_ms, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->nejections, 1, memory_order_relaxed);
    old = atomic_fetch_or_explicit(&e->flags, PT_HEALTH_EJECTED, memory_order_relaxed);
    if (old & PT_HEALTH_EJECTED) {
        atomic_fetch_sub_explicit(&h->nejected, 1, memory_order_relaxed); /* another thread won */
        return false;
    }
    if (old == 0)
        atomic_fetch_sub_explicit(&h->nhealthy, 1, memory_order_relaxed);
    return true;
}

bool pt_health_sweep(struct pt_health *h, uint32_t i, uint64_t now_ms)
{
    struct pt_health_ep *e = &h->ep[i];
    uint64_t ms, at;

    if (!(atomic_load_explicit(&e->flags, memory_order_relaxed) & PT_HEALTH_EJECTED))
        return false;
    ms = (uint64_t)PT_HEALTH_BASE_EJECTION_MS * atomic_load_explicit(&e->nejections, memory_order_relaxed);
    if (ms > PT_HEALTH_MAX_EJECTION_MS)
        ms = PT_HEALTH_MAX_EJECTION_MS;
    at = atomic_load_explicit(&e->ejected_ms, memory_order_relaxed);
    if (now_ms < at + ms)
        return false;
    return uneject(h, i);
}

/* ---- configuration ------------------------------------------------------------------------ */

void pt_health_cfg_free(struct pt_health_cfg *cfg, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++) {
        struct pt_health_cfg *c = &cfg[k];
        free(c->path);
        free(c->host);
        free(c->service);
        free(c->ranges);
        for (uint32_t i = 0; i < c->nadd; i++) {
            free(c->add[i].name);
            free(c->add[i].value);
        }
        free(c->add);
        for (uint32_t i = 0; i < c->nremove; i++)
            free(c->remove[i]);
        free(c->remove);
    }
    free(cfg);
}

static bool str_same(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool cfg_same(const struct pt_health_cfg *a, const struct pt_health_cfg *b)
{
    if (a->timeout_ms != b->timeout_ms || a->interval_ms != b->interval_ms ||
        a->healthy_threshold != b->healthy_threshold || a->unhealthy_threshold != b->unhealthy_threshold ||
        a->grpc != b->grpc || !str_same(a->path, b->path) || !str_same(a->host, b->host) ||
        !str_same(a->service, b->service) || a->nranges != b->nranges || a->nadd != b->nadd ||
        a->nremove != b->nremove)
        return false;
    if (a->nranges && memcmp(a->ranges, b->ranges, a->nranges * sizeof(*a->ranges)) != 0)
        return false;
    for (uint32_t i = 0; i < a->nadd; i++)
        if (!str_same(a->add[i].name, b->add[i].name) || !str_same(a->add[i].value, b->add[i].value))
            return false;
    for (uint32_t i = 0; i < a->nremove; i++)
        if (!str_same(a->remove[i], b->remove[i]))
            return false;
    return true;
}

bool pt_health_cfg_equal(const struct pt_health_cfg *a, uint32_t na, const struct pt_health_cfg *b, uint32_t nb)
{
    if (na != nb)
        return false;
    for (uint32_t k = 0; k < na; k++)
        if (!cfg_same(&a[k], &b[k]))
            return false;
    return true;
}

/* add_checked: puts the checked clusters of <prev> in <m> by name (HTTP/2 ones with a prefix
 * that no cluster name has, since a grpc cluster keeps the name of its HTTP/1 twin). */
static void add_checked(struct pt_strmap *m, const struct pt_snapshot *prev, char *key, size_t cap)
{
    for (uint32_t i = 0; prev != NULL && i < prev->nclusters; i++) {
        const struct pt_cluster *c = prev->clusters[i];
        size_t n = strlen(c->name);
        if (c->health == NULL || n + 2 > cap)
            continue;
        key[0] = c->http2 ? '2' : '1';
        memcpy(key + 1, c->name, n);
        pt_strmap_put(m, key, n + 1, (void *)c);
    }
}

int pt_health_attach(struct pt_snapshot *s, const struct pt_snapshot *prev)
{
    struct pt_strmap old = { 0 };
    char key[1024];
    int rc = 0;

    add_checked(&old, prev, key, sizeof(key));
    for (uint32_t i = 0; i < s->nclusters; i++) {
        struct pt_cluster *c = s->clusters[i];
        const struct pt_cluster *o;
        size_t n = strlen(c->name);

        if (c->nchecks == 0 || c->health != NULL)
            continue;
        o = NULL;
        if (n + 2 <= sizeof(key)) {
            key[0] = c->http2 ? '2' : '1';
            memcpy(key + 1, c->name, n);
            o = pt_strmap_get(&old, key, n + 1);
        }
        if (o != NULL && pt_lb_same_endpoints(o, c) && pt_health_cfg_equal(o->checks, o->nchecks, c->checks, c->nchecks)) {
            pt_health_ref(o->health);
            c->health = o->health;
        } else if ((c->health = pt_health_new(c->nendpoints)) == NULL) {
            rc = PT_NOMEM;
        }
    }
    pt_strmap_free(&old);
    return rc;
}

/* ---- pure pieces of checking -------------------------------------------------------------- */

/* unit_ns: the nanoseconds of the unit at <p> (its length in *len), or 0. */
static double unit_ns(const char *p, size_t *len)
{
    static const struct { const char *name; double ns; } units[] = {
        { "ns", 1 }, { "us", 1e3 }, { "\xc2\xb5s", 1e3 }, { "\xce\xbcs", 1e3 }, { "ms", 1e6 },
        { "s", 1e9 }, { "m", 60e9 }, { "h", 3600e9 },
    };
    for (size_t i = 0; i < PT_ARRAY_SIZE(units); i++) {
        size_t n = strlen(units[i].name);
        if (strncmp(p, units[i].name, n) == 0 && !(n == 1 && p[0] == 'm' && p[1] == 's')) {
            *len = n;
            return units[i].ns;
        }
    }
    return 0;
}

int pt_health_parse_duration(const char *s, uint32_t *ms)
{
    double total = 0;
    const char *p = s;

    if (p == NULL || *p == '\0')
        return -1;
    if (*p == '+')
        p++;
    if (strcmp(p, "0") == 0) {
        *ms = 0;
        return 0;
    }
    while (*p != '\0') {
        double v = 0, scale = 0.1, ns;
        bool digits = false;
        size_t ulen;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (*p++ - '0');
            digits = true;
        }
        if (*p == '.') {
            for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10) {
                v += (*p - '0') * scale;
                digits = true;
            }
        }
        if (!digits || (ns = unit_ns(p, &ulen)) == 0)
            return -1;
        p += ulen;
        total += v * ns;
        if (total > 86400e9)
            return -1;
    }
    *ms = (uint32_t)ceil(total / 1e6);
    return 0;
}

bool pt_health_status_expected(const struct pt_health_cfg *cfg, int status)
{
    if (cfg->nranges == 0)
        return status == 200;
    for (uint32_t i = 0; i < cfg->nranges; i++)
        if (status >= cfg->ranges[i].min && status <= cfg->ranges[i].max)
            return true;
    return false;
}

/* read_varint: a protobuf varint at *p (< end); false when cut short or longer than 64 bits. */
static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

bool pt_health_grpc_serving(const uint8_t *msg, size_t len)
{
    const uint8_t *p = msg, *end = msg + len;
    uint64_t status = 0; /* UNKNOWN when absent */

    while (p < end) {
        uint64_t key, v;
        if (!read_varint(&p, end, &key))
            return false;
        switch (key & 7) {
        case 0: /* varint */
            if (!read_varint(&p, end, &v))
                return false;
            if (key >> 3 == 1)
                status = v;
            break;
        case 1: /* 64-bit */
            if (end - p < 8)
                return false;
            p += 8;
            break;
        case 2: /* length-delimited */
            if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return false;
            p += v;
            break;
        case 5: /* 32-bit */
            if (end - p < 4)
                return false;
            p += 4;
            break;
        default:
            return false;
        }
    }
    return status == 1; /* SERVING */
}

size_t pt_health_grpc_request(const char *service, uint8_t *out, size_t cap)
{
    size_t sl = service ? strlen(service) : 0, n = 0, ml;
    uint8_t vi[10];
    size_t vl = 0;

    for (size_t v = sl; ; v >>= 7) { /* the service's length, as a varint */
        vi[vl++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80)
            break;
    }
    ml = sl ? 1 + vl + sl : 0; /* field 1, length-delimited; empty: no field at all */
    if (cap < 5 + ml)
        return 0;
    out[n++] = 0; /* not compressed */
    out[n++] = (uint8_t)(ml >> 24);
    out[n++] = (uint8_t)(ml >> 16);
    out[n++] = (uint8_t)(ml >> 8);
    out[n++] = (uint8_t)ml;
    if (sl) {
        out[n++] = 0x0a;
        memcpy(out + n, vi, vl);
        n += vl;
        memcpy(out + n, service, sl);
        n += sl;
    }
    return n;
}
