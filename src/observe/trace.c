/* The worker side of Zipkin tracing: compiling a TracingService into a pt_trace_config, the
 * per-request trace decision and B3 extraction (Envoy's span_context_extractor.cc and
 * conn_manager_utility.cc, reference/envoy-compat.md §3.1-3.3), the x-b3-* lines the upstream
 * sees, and handing finished requests to the exporter through a per-worker single-producer,
 * single-consumer ring. Nothing here allocates, locks or makes a system call on the request
 * path (clock_gettime is a vDSO call). Encoding and sending are in observe/zipkin.c; the data
 * plane (proxy/) calls this file, and config compilation calls pt_trace_config_new. The spans
 * of a request's calls to policy services (pt_trace_call_*) go through the same ring. */
#include "observe/trace.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "model/resource-t.h"
#include "model/snapshot-t.h"
#include "core/log.h"

#define RING_MASK (PT_TRACE_RING_SLOTS - 1)
_Static_assert((PT_TRACE_RING_SLOTS & RING_MASK) == 0, "ring size must be a power of two");
_Static_assert(PT_TRACE_REC_BYTES < 65535 && PT_TRACE_CAPTURE_BYTES < 65535, "uint16_t offsets");

/* Every worker's ring, indexed by worker id; written on the control thread, read by the exporter
 * on the same thread (atomics only so that a reader elsewhere sees whole pointers). */
static _Atomic(struct pt_trace_worker *) workers[PT_MAX_WORKERS];

/* --- clocks, ids ------------------------------------------------------------------------------ */

static uint64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* rng_next: splitmix64; never 0, so every id is a valid B3 id. */
static uint64_t rng_next(struct pt_trace_worker *tw)
{
    uint64_t z;

    do {
        z = (tw->_rng += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
    } while (z == 0);
    return z;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = pt_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* parse_hex64: 1 to 16 hex digits (either case) into <out>; false otherwise. */
static bool parse_hex64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 16)
        return false;
    for (size_t i = 0; i < n; i++) {
        int d = hexval(p[i]);
        if (d < 0)
            return false;
        v = (v << 4) | (uint64_t)d;
    }
    *out = v;
    return true;
}

static char *put_hex64(char *p, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        p[i] = digits[v & 15];
    return p + 16;
}

/* --- configuration -------------------------------------------------------------------------- */

static struct pt_str dup_str(const char *s, size_t n)
{
    return pt_str_make(pt_xstrndup(s, n), n);
}

static struct pt_str dup_lower(const char *s)
{
    struct pt_str r = dup_str(s, strlen(s));
    for (size_t i = 0; i < r.len; i++)
        ((char *)r.ptr)[i] = pt_lower(r.ptr[i]);
    return r;
}

static uint32_t per10k(double pct)
{
    if (!(pct > 0)) /* also NaN */
        return 0;
    if (pct >= 100)
        return 10000;
    return (uint32_t)(pct * 100 + 0.5);
}

/* local_address: the first non-loopback IPv4 of an interface that is up, else 127.0.0.1, as
 * Envoy's Network::Utility::getLocalAddress(v4) gives localEndpoint. */
static void local_address(struct pt_trace_config *cfg)
{
    struct ifaddrs *ifs = NULL;

    snprintf(cfg->local_ip, sizeof(cfg->local_ip), "127.0.0.1");
    if (getifaddrs(&ifs) != 0)
        return;
    for (struct ifaddrs *i = ifs; i != NULL; i = i->ifa_next) {
        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP) ||
            (i->ifa_flags & IFF_LOOPBACK))
            continue;
        inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, cfg->local_ip,
                  sizeof(cfg->local_ip));
        break;
    }
    freeifaddrs(ifs);
}

static bool tag_taken(const struct pt_trace_config *cfg, const char *name)
{
    struct pt_str n = pt_str_c(name);
    for (uint32_t i = 0; i < cfg->nfixed; i++)
        if (pt_str_eq(cfg->fixed[i].name, n))
            return true;
    for (uint32_t i = 0; i < cfg->nhdr; i++)
        if (pt_str_eq(cfg->hdr[i].name, n))
            return true;
    return false;
}

static enum pt_trace_pseudo pseudo_of(struct pt_str h)
{
    if (h.len == 0 || h.ptr[0] != ':')
        return PT_TRACE_HDR;
    if (pt_str_eq(h, PT_STR_LIT(":authority")))
        return PT_TRACE_PSEUDO_AUTHORITY;
    if (pt_str_eq(h, PT_STR_LIT(":path")))
        return PT_TRACE_PSEUDO_PATH;
    if (pt_str_eq(h, PT_STR_LIT(":method")))
        return PT_TRACE_PSEUDO_METHOD;
    if (pt_str_eq(h, PT_STR_LIT(":scheme")))
        return PT_TRACE_PSEUDO_SCHEME;
    return PT_TRACE_HDR; /* another pseudo-header: never present in HTTP/1, so only the default */
}

static void add_hdr_tag(struct pt_trace_config *cfg, const char *tag, const char *header, const char *dflt)
{
    struct pt_trace_hdr_tag *t;

    if (tag == NULL || *tag == '\0' || header == NULL || *header == '\0' || tag_taken(cfg, tag))
        return;
    if (cfg->nhdr == PT_TRACE_MAX_HDR_TAGS) {
        pt_warn("tracing: more than %d header tags; \"%s\" is ignored", PT_TRACE_MAX_HDR_TAGS, tag);
        return;
    }
    t = &cfg->hdr[cfg->nhdr++];
    t->name = dup_str(tag, strlen(tag));
    t->header = dup_lower(header);
    t->dflt = dflt ? dup_str(dflt, strlen(dflt)) : dup_str("", 0);
    t->pseudo = pseudo_of(t->header);
}

static void add_fixed_tag(struct pt_trace_config *cfg, const char *tag, const char *value)
{
    struct pt_trace_fixed_tag *t;

    /* An empty value is no tag: Envoy's span drops empty values. */
    if (tag == NULL || *tag == '\0' || value == NULL || *value == '\0' || tag_taken(cfg, tag))
        return;
    if (cfg->nfixed == PT_TRACE_MAX_FIXED_TAGS) {
        pt_warn("tracing: more than %d fixed tags; \"%s\" is ignored", PT_TRACE_MAX_FIXED_TAGS, tag);
        return;
    }
    t = &cfg->fixed[cfg->nfixed++];
    t->name = dup_str(tag, strlen(tag));
    t->value = dup_str(value, strlen(value));
}

/* compile_tags: custom_tags, then tag_headers (a header becomes a tag of the same name). Both
 * apply: Emissary ignores tag_headers in v3alpha1; Portico honours them (DESIGN.md). */
static void compile_tags(struct pt_trace_config *cfg, const struct pt_tracing_res *res)
{
    cfg->fixed = pt_xcalloc(PT_TRACE_MAX_FIXED_TAGS, sizeof(*cfg->fixed));
    cfg->hdr = pt_xcalloc(PT_TRACE_MAX_HDR_TAGS, sizeof(*cfg->hdr));
    for (size_t i = 0; i < res->ncustom_tags; i++) {
        const struct pt_custom_tag *ct = &res->custom_tags[i];
        if (ct->literal != NULL) {
            add_fixed_tag(cfg, ct->tag, ct->literal);
        } else if (ct->env_name != NULL) {
            const char *v = getenv(ct->env_name);
            add_fixed_tag(cfg, ct->tag, v != NULL && *v != '\0' ? v : ct->env_default);
        } else if (ct->header_name != NULL) {
            add_hdr_tag(cfg, ct->tag, ct->header_name, ct->header_default);
        }
    }
    for (size_t i = 0; i < res->ntag_headers; i++)
        add_hdr_tag(cfg, res->tag_headers[i], res->tag_headers[i], NULL);
}

static int check_res(const struct pt_tracing_res *res, char *err, size_t errlen)
{
    const char *v = res->collector_endpoint_version;

    if (res->driver == NULL || strcasecmp(res->driver, "zipkin") != 0) {
        snprintf(err, errlen, "tracing driver \"%s\" is not supported (Portico reports to zipkin)",
                 res->driver ? res->driver : "");
        return PT_INVAL;
    }
    if (v != NULL && strcmp(v, "HTTP_JSON") != 0 && strcmp(v, "HTTP_PROTO") != 0) {
        snprintf(err, errlen, "collector_endpoint_version \"%s\" is not supported (HTTP_JSON)", v);
        return PT_INVAL;
    }
    return 0;
}

static void copy_collectors(struct pt_trace_config *cfg, const struct pt_cluster *cl)
{
    if (cl == NULL || cl->nendpoints == 0)
        return;
    cfg->collectors = pt_xcalloc(cl->nendpoints, sizeof(*cfg->collectors));
    for (uint32_t i = 0; i < cl->nendpoints; i++) {
        memcpy(&cfg->collectors[i].addr, &cl->endpoints[i].addr, sizeof(cfg->collectors[i].addr));
        cfg->collectors[i].addrlen = cl->endpoints[i].addrlen;
    }
    cfg->ncollectors = cl->nendpoints;
}

struct pt_trace_config *pt_trace_config_new(const struct pt_trace_params *p, char *err, size_t errlen)
{
    const struct pt_tracing_res *res = p->res;
    const char *id = p->ambassador_id, *ns = p->ambassador_namespace;
    const char *ep = res->collector_endpoint ? res->collector_endpoint : "/api/v2/spans";
    struct pt_trace_config *cfg;
    char buf[512];

    if (check_res(res, err, errlen) != 0)
        return NULL;
    cfg = pt_xcalloc(1, sizeof(*cfg));
    atomic_init(&cfg->_refcnt, 1);
    cfg->client_per10k = per10k(res->sampling_client);
    cfg->random_per10k = per10k(res->sampling_random);
    cfg->overall_per10k = per10k(res->sampling_overall);
    cfg->trace_id_128bit = res->trace_id_128bit;
    cfg->shared_span_context = res->shared_span_context;
    snprintf(buf, sizeof(buf), "%s%s", ep[0] == '/' ? "" : "/", ep);
    cfg->collector_endpoint = pt_xstrdup(buf);
    cfg->cluster_name = pt_xstrdup(p->collector && p->collector->name ? p->collector->name
                                                                      : (res->service ? res->service : ""));
    cfg->collector_host = pt_xstrdup(res->collector_hostname && *res->collector_hostname
                                         ? res->collector_hostname : cfg->cluster_name);
    snprintf(buf, sizeof(buf), "%s-%s", id && *id ? id : "ambassador", ns && *ns ? ns : "default");
    for (char *c = buf; *c != '\0'; c++)
        *c = pt_lower(*c); /* as Envoy writes it */
    cfg->service_name = pt_xstrdup(buf);
    if (p->local_ip != NULL) {
        snprintf(cfg->local_ip, sizeof(cfg->local_ip), "%s", p->local_ip);
        cfg->local_ipv6 = strchr(p->local_ip, ':') != NULL;
    } else {
        local_address(cfg);
    }
    copy_collectors(cfg, p->collector);
    compile_tags(cfg, res);
    return cfg;
}

struct pt_trace_config *pt_trace_config_ref(const struct pt_trace_config *c)
{
    struct pt_trace_config *cfg = (struct pt_trace_config *)c;
    if (cfg != NULL)
        atomic_fetch_add_explicit(&cfg->_refcnt, 1, memory_order_relaxed);
    return cfg;
}

void pt_trace_config_release(struct pt_trace_config *cfg)
{
    if (cfg == NULL || atomic_fetch_sub_explicit(&cfg->_refcnt, 1, memory_order_acq_rel) != 1)
        return;
    for (uint32_t i = 0; i < cfg->nfixed; i++) {
        free((char *)cfg->fixed[i].name.ptr);
        free((char *)cfg->fixed[i].value.ptr);
    }
    for (uint32_t i = 0; i < cfg->nhdr; i++) {
        free((char *)cfg->hdr[i].name.ptr);
        free((char *)cfg->hdr[i].header.ptr);
        free((char *)cfg->hdr[i].dflt.ptr);
    }
    free(cfg->fixed);
    free(cfg->hdr);
    free(cfg->collectors);
    free(cfg->collector_endpoint);
    free(cfg->collector_host);
    free(cfg->cluster_name);
    free(cfg->service_name);
    free(cfg);
}

/* --- workers and their rings ---------------------------------------------------------------- */

struct pt_trace_worker *pt_trace_worker_new(int id)
{
    struct pt_trace_worker *tw;

    if (id < 0 || id >= PT_MAX_WORKERS || atomic_load(&workers[id]) != NULL)
        return NULL;
    tw = aligned_alloc(64, sizeof(*tw));
    if (tw == NULL)
        return NULL;
    memset(tw, 0, sizeof(*tw));
    /* calloc of this size maps fresh zero pages: nothing is touched until records are written */
    tw->_slots = calloc(PT_TRACE_RING_SLOTS, sizeof(*tw->_slots));
    if (tw->_slots == NULL) {
        free(tw);
        return NULL;
    }
    tw->id = id;
    if (getrandom(&tw->_rng, sizeof(tw->_rng), 0) != sizeof(tw->_rng))
        tw->_rng = clock_us(CLOCK_MONOTONIC) ^ ((uint64_t)id << 56) ^ (uintptr_t)tw;
    atomic_store(&workers[id], tw);
    return tw;
}

void pt_trace_worker_free(struct pt_trace_worker *tw)
{
    if (tw == NULL)
        return;
    atomic_store(&workers[tw->id], NULL);
    free(tw->_slots);
    free(tw);
}

const struct pt_trace_record *pt_trace__ring_peek(int id)
{
    struct pt_trace_worker *tw = atomic_load_explicit(&workers[id], memory_order_acquire);
    uint32_t tail, head;

    if (tw == NULL)
        return NULL;
    tail = atomic_load_explicit(&tw->_tail, memory_order_relaxed);
    head = atomic_load_explicit(&tw->_head, memory_order_acquire);
    return head == tail ? NULL : &tw->_slots[tail & RING_MASK];
}

void pt_trace__ring_pop(int id)
{
    struct pt_trace_worker *tw = atomic_load_explicit(&workers[id], memory_order_acquire);
    uint32_t tail;

    if (tw == NULL)
        return;
    tail = atomic_load_explicit(&tw->_tail, memory_order_relaxed);
    atomic_store_explicit(&tw->_tail, tail + 1, memory_order_release);
}

uint32_t pt_trace__ring_fill(int id)
{
    struct pt_trace_worker *tw = atomic_load_explicit(&workers[id], memory_order_acquire);

    if (tw == NULL)
        return 0;
    return atomic_load_explicit(&tw->_head, memory_order_acquire) -
           atomic_load_explicit(&tw->_tail, memory_order_relaxed);
}

uint64_t pt_trace__ring_dropped(void)
{
    uint64_t n = 0;
    for (int i = 0; i < PT_MAX_WORKERS; i++) {
        struct pt_trace_worker *tw = atomic_load_explicit(&workers[i], memory_order_acquire);
        if (tw != NULL)
            n += atomic_load_explicit(&tw->_dropped, memory_order_relaxed);
    }
    return n;
}

/* --- the request path: extraction, decision, ids --------------------------------------------- */

/* The first value of each header that tracing reads, from one pass over the request head. */
struct b3_in {
    struct pt_str b3, traceid, spanid, parentspanid, sampled, client_trace_id;
    uint8_t seen; /* IN_* bits */
};

#define IN_B3 0x01
#define IN_TRACEID 0x02
#define IN_SPANID 0x04
#define IN_PARENT 0x08
#define IN_SAMPLED 0x10
#define IN_CTID 0x20

static void see(struct b3_in *in, uint8_t bit, struct pt_str *slot, struct pt_str value)
{
    if (!(in->seen & bit)) { /* an untrusted header: only the first value counts, as Envoy */
        in->seen |= bit;
        *slot = value;
    }
}

static void scan_headers(const struct pt_trace_head *head, struct b3_in *in)
{
    for (size_t i = 0; i < head->nheaders; i++) {
        struct pt_str n = head->headers[i].name, v = head->headers[i].value;
        switch (n.len) {
        case 2:
            if (pt_str_caseeq(n, PT_STR_LIT("b3")))
                see(in, IN_B3, &in->b3, v);
            break;
        case 11:
            if (pt_str_caseeq(n, PT_STR_LIT("x-b3-spanid")))
                see(in, IN_SPANID, &in->spanid, v);
            break;
        case 12:
            if (pt_str_caseeq(n, PT_STR_LIT("x-b3-traceid")))
                see(in, IN_TRACEID, &in->traceid, v);
            else if (pt_str_caseeq(n, PT_STR_LIT("x-b3-sampled")))
                see(in, IN_SAMPLED, &in->sampled, v);
            break;
        case 17:
            if (pt_str_caseeq(n, PT_STR_LIT("x-b3-parentspanid")))
                see(in, IN_PARENT, &in->parentspanid, v);
            else if (pt_str_caseeq(n, PT_STR_LIT("x-client-trace-id")))
                see(in, IN_CTID, &in->client_trace_id, v);
            break;
        }
    }
}

/* decide: Envoy's trace reason (ConnectionManagerUtility::mutateTracingRequestHeader): client
 * sampling for requests with x-client-trace-id, else random sampling; overall sampling then
 * vetoes. Random and overall test the same draw, as Envoy tests both against one x-request-id. */
static uint8_t decide(struct pt_trace_worker *tw, const struct pt_trace_config *cfg, bool has_ctid)
{
    uint64_t r = rng_next(tw) % 10000;
    uint8_t reason = PT_TRACE_REASON_NONE;

    if (has_ctid && rng_next(tw) % 10000 < cfg->client_per10k)
        reason = PT_TRACE_REASON_CLIENT;
    else if (r < cfg->random_per10k)
        reason = PT_TRACE_REASON_SAMPLING;
    if (r >= cfg->overall_per10k)
        reason = PT_TRACE_REASON_NONE;
    return reason;
}

/* flag_sampled: a B3 sampling flag: 1 sampled, 0 not, -1 not a decision. */
static int flag_sampled(char c)
{
    return c == '1' || c == 'd' ? 1 : c == '0' ? 0 : -1;
}

/* explicit_sampled: the sampled flag the request carries (Envoy's extractSampled): 1, 0, or -1
 * when it carries none and the decision stands. The b3 header wins over x-b3-sampled. */
static int explicit_sampled(const struct b3_in *in)
{
    if (in->seen & IN_B3) {
        switch (in->b3.len) {
        case 1: return flag_sampled(in->b3.ptr[0]);
        case 35: case 52: return flag_sampled(in->b3.ptr[34]);
        case 51: case 68: return flag_sampled(in->b3.ptr[50]);
        default: return -1;
        }
    }
    if (in->seen & IN_SAMPLED)
        return pt_str_eq(in->sampled, PT_STR_LIT("1")) || pt_str_eq(in->sampled, PT_STR_LIT("true"));
    return -1;
}

/* An extracted span context. */
struct b3_ctx {
    uint64_t trace_hi, trace_lo, span_id;
    bool debug;
};

static bool parse_trace_id(const char *p, size_t n, struct b3_ctx *c)
{
    if (n == 32)
        return parse_hex64(p, 16, &c->trace_hi) && parse_hex64(p + 16, 16, &c->trace_lo);
    c->trace_hi = 0;
    return parse_hex64(p, n, &c->trace_lo);
}

/* parse_b3_single: `{trace 16|32}-{span 16}[-{0|1|d}[-{parent 16}]]` as Envoy's
 * extractSpanContextFromB3SingleFormat. Returns 1 with a context, 0 for a lone sampling flag
 * (no context), -1 when malformed. */
static int parse_b3_single(struct pt_str b3, struct b3_ctx *c)
{
    const char *s = b3.ptr;
    size_t n = b3.len, pos, tlen;
    uint64_t parent;

    if (n == 1)
        return flag_sampled(s[0]) >= 0 ? 0 : -1;
    if (n < 16 + 1 + 16 || n > 68)
        return -1;
    tlen = n > 32 && s[32] == '-' ? 32 : 16;
    if (!parse_trace_id(s, tlen, c) || s[tlen] != '-' || n < tlen + 17 ||
        !parse_hex64(s + tlen + 1, 16, &c->span_id))
        return -1;
    pos = tlen + 17;
    if (pos < n) {
        /* then "-{flag}", and then only "-{parent 16}" */
        if (s[pos++] != '-' || !(n == pos + 1 || (n >= pos + 2 && s[pos + 1] == '-')) ||
            flag_sampled(s[pos]) < 0)
            return -1;
        c->debug = s[pos++] == 'd';
        if (pos < n && (n != pos + 17 || !parse_hex64(s + pos + 1, 16, &parent)))
            return -1;
    }
    return 1;
}

/* extract: the incoming span context (Envoy's extractSpanContext): 1 found, 0 none, -1
 * malformed. x-b3-traceid and x-b3-spanid are both needed; a present x-b3-parentspanid must
 * parse even though only the span id becomes our parent. Zero ids are malformed: Zipkin
 * rejects them. */
static int extract(const struct b3_in *in, struct b3_ctx *c)
{
    uint64_t parent;
    int rc;

    if (in->seen & IN_B3) {
        rc = parse_b3_single(in->b3, c);
    } else if ((in->seen & (IN_TRACEID | IN_SPANID)) == (IN_TRACEID | IN_SPANID)) {
        rc = parse_trace_id(in->traceid.ptr, in->traceid.len, c) &&
                     parse_hex64(in->spanid.ptr, in->spanid.len, &c->span_id) &&
                     (!(in->seen & IN_PARENT) || in->parentspanid.len == 0 ||
                      parse_hex64(in->parentspanid.ptr, in->parentspanid.len, &parent))
                 ? 1 : -1;
    } else {
        return 0;
    }
    if (rc == 1 && ((c->trace_hi == 0 && c->trace_lo == 0) || c->span_id == 0))
        return -1;
    return rc;
}

/* capture_put: copies <v> (at most <max> bytes, as room allows) into ctx->buf. */
static void capture_put(struct pt_trace_ctx *ctx, struct pt_str v, size_t max, uint16_t *off, uint16_t *len)
{
    size_t n = v.len < max ? v.len : max;

    if (n > sizeof(ctx->buf) - ctx->used)
        n = sizeof(ctx->buf) - ctx->used;
    memcpy(ctx->buf + ctx->used, v.ptr, n);
    *off = ctx->used;
    *len = (uint16_t)n;
    ctx->used += (uint16_t)n;
}

/* tag_value: the value of header tag <t> in the request; false when absent. */
static bool tag_value(const struct pt_trace_head *head, const struct pt_trace_hdr_tag *t, struct pt_str *v)
{
    switch (t->pseudo) {
    case PT_TRACE_PSEUDO_AUTHORITY: *v = head->authority; return v->len > 0;
    case PT_TRACE_PSEUDO_PATH: *v = head->path; return v->len > 0;
    case PT_TRACE_PSEUDO_METHOD: *v = head->method; return v->len > 0;
    case PT_TRACE_PSEUDO_SCHEME: *v = head->scheme; return v->len > 0;
    case PT_TRACE_HDR: break;
    }
    const struct pt_header *h = pt_header_find(head->headers, head->nheaders, t->header);
    if (h != NULL)
        *v = h->value;
    return h != NULL;
}

/* capture: keeps x-client-trace-id and the configured tag headers' values for pt_trace_finish. */
static void capture(struct pt_trace_ctx *ctx, const struct pt_trace_config *cfg,
                    const struct pt_trace_head *head, const struct b3_in *in)
{
    ctx->used = 0;
    ctx->ctid_len = PT_TRACE_ABSENT;
    if (in->seen & IN_CTID)
        capture_put(ctx, in->client_trace_id, 128, &ctx->ctid_off, &ctx->ctid_len);
    ctx->ntags = (uint8_t)cfg->nhdr;
    for (uint32_t i = 0; i < cfg->nhdr; i++) {
        struct pt_str v;
        if (tag_value(head, &cfg->hdr[i], &v))
            capture_put(ctx, v, PT_TRACE_CAPTURE_BYTES / 2, &ctx->tag_off[i], &ctx->tag_len[i]);
        else
            ctx->tag_len[i] = PT_TRACE_ABSENT;
    }
}

bool pt_trace_start(struct pt_trace_worker *tw, const struct pt_trace_config *cfg,
                    const struct pt_trace_head *head, struct pt_trace_ctx *ctx)
{
    struct b3_in in = { .seen = 0 };
    struct b3_ctx c = { 0, 0, 0, false };
    int found, sampled;

    ctx->flags = 0;
    if (cfg == NULL || tw == NULL)
        return false;
    scan_headers(head, &in);
    found = extract(&in, &c);
    if (found < 0)
        return false; /* Envoy: a NullSpan; nothing injected, nothing reported */
    ctx->reason = decide(tw, cfg, in.seen & IN_CTID);
    sampled = explicit_sampled(&in);
    if (sampled < 0)
        sampled = ctx->reason != PT_TRACE_REASON_NONE;
    ctx->span_id = rng_next(tw);
    if (found) {
        ctx->trace_hi = c.trace_hi;
        ctx->trace_lo = c.trace_lo;
        ctx->parent_id = c.span_id; /* a CLIENT span never shares its parent's id */
    } else {
        ctx->trace_lo = ctx->span_id; /* a root span: id == the trace id's low half */
        ctx->trace_hi = cfg->trace_id_128bit ? rng_next(tw) : 0;
        ctx->parent_id = 0;
    }
    ctx->child_id = rng_next(tw);
    ctx->flags = PT_TRACE_F_ACTIVE | (found ? PT_TRACE_F_PARENT : 0) | (c.debug ? PT_TRACE_F_DEBUG : 0);
    ctx->up_start_mono_us = ctx->up_end_mono_us = 0;
    if (sampled) {
        ctx->flags |= PT_TRACE_F_SAMPLED;
        ctx->start_us = clock_us(CLOCK_REALTIME);
        ctx->start_mono_us = clock_us(CLOCK_MONOTONIC);
        capture(ctx, cfg, head, &in);
    }
    return true;
}

/* --- injection ------------------------------------------------------------------------------ */

static char *put_lit(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, s) put_lit((p), (s), sizeof(s) - 1)

/* put_b3: the four x-b3-* lines of span <span> (parent <parent>) into <out>, which has room for
 * PT_TRACE_INJECT_MAX bytes; returns the length. */
static size_t put_b3(char *out, uint64_t trace_hi, uint64_t trace_lo, uint64_t span, uint64_t parent,
                     bool sampled)
{
    char *p = out;

    p = PUT_LIT(p, "x-b3-traceid: ");
    if (trace_hi != 0)
        p = put_hex64(p, trace_hi);
    p = put_hex64(p, trace_lo);
    p = PUT_LIT(p, "\r\nx-b3-spanid: ");
    p = put_hex64(p, span);
    p = PUT_LIT(p, "\r\nx-b3-parentspanid: ");
    p = put_hex64(p, parent);
    p = PUT_LIT(p, "\r\nx-b3-sampled: ");
    *p++ = sampled ? '1' : '0';
    p = PUT_LIT(p, "\r\n");
    return (size_t)(p - out);
}

size_t pt_trace_inject(const struct pt_trace_ctx *ctx, char *out, size_t cap)
{
    if (!(ctx->flags & PT_TRACE_F_ACTIVE) || cap < PT_TRACE_INJECT_MAX)
        return 0;
    return put_b3(out, ctx->trace_hi, ctx->trace_lo, ctx->child_id, ctx->span_id,
                  ctx->flags & PT_TRACE_F_SAMPLED);
}

size_t pt_trace_call_inject(const struct pt_trace_call *call, char *out, size_t cap)
{
    if (!(call->flags & PT_TRACE_F_ACTIVE) || cap < PT_TRACE_INJECT_MAX)
        return 0;
    return put_b3(out, call->trace_hi, call->trace_lo, call->span_id, call->parent_id,
                  call->flags & PT_TRACE_F_SAMPLED);
}

bool pt_trace_is_b3_header(struct pt_str n)
{
    switch (n.len) {
    case 11: return pt_str_caseeq(n, PT_STR_LIT("x-b3-spanid"));
    case 12: return pt_str_caseeq(n, PT_STR_LIT("x-b3-traceid")) || pt_str_caseeq(n, PT_STR_LIT("x-b3-sampled"));
    case 17: return pt_str_caseeq(n, PT_STR_LIT("x-b3-parentspanid"));
    default: return false;
    }
}

char pt_trace_reason_char(const struct pt_trace_ctx *ctx)
{
    switch (ctx->reason) {
    case PT_TRACE_REASON_SAMPLING: return '9';
    case PT_TRACE_REASON_CLIENT: return 'b';
    default: return '4';
    }
}

/* --- the end of a request: into the ring ---------------------------------------------------- */

void pt_trace_upstream_begin(struct pt_trace_ctx *ctx)
{
    if ((ctx->flags & PT_TRACE_F_SAMPLED) && ctx->up_start_mono_us == 0)
        ctx->up_start_mono_us = clock_us(CLOCK_MONOTONIC);
}

void pt_trace_upstream_end(struct pt_trace_ctx *ctx)
{
    if ((ctx->flags & PT_TRACE_F_SAMPLED) && ctx->up_start_mono_us != 0)
        ctx->up_end_mono_us = clock_us(CLOCK_MONOTONIC);
}

/* rec_put: copies <v> (at most <max> bytes, as room allows) into rec->buf. */
static void rec_put(struct pt_trace_record *rec, struct pt_str v, size_t max, uint16_t *off, uint16_t *len)
{
    size_t n = v.len < max ? v.len : max;

    if (n > sizeof(rec->buf) - rec->used)
        n = sizeof(rec->buf) - rec->used;
    if (n > 0)
        memcpy(rec->buf + rec->used, v.ptr, n);
    *off = rec->used;
    *len = (uint16_t)n;
    rec->used += (uint16_t)n;
}

static void rec_field(struct pt_trace_record *rec, enum pt_trace_field f, struct pt_str v, size_t max)
{
    rec_put(rec, v, max, &rec->str_off[f], &rec->str_len[f]);
}

/* rec_tag: one custom tag; left out when the value is empty or the key does not fit. */
static void rec_tag(struct pt_trace_record *rec, struct pt_str key, struct pt_str value)
{
    uint16_t i = rec->ntags;

    if (value.len == 0 || i == PT_TRACE_MAX_TAGS || key.len >= sizeof(rec->buf) - rec->used)
        return;
    rec_put(rec, key, key.len, &rec->tag_off[2 * i], &rec->tag_len[2 * i]);
    rec_put(rec, value, value.len, &rec->tag_off[2 * i + 1], &rec->tag_len[2 * i + 1]);
    rec->ntags++;
}

static void rec_tags(struct pt_trace_record *rec, const struct pt_trace_config *cfg, const struct pt_trace_ctx *ctx)
{
    rec->ntags = 0;
    if (cfg == NULL)
        return;
    for (uint32_t i = 0; i < cfg->nfixed; i++)
        rec_tag(rec, cfg->fixed[i].name, cfg->fixed[i].value);
    for (uint32_t i = 0; i < cfg->nhdr && i < ctx->ntags; i++) {
        struct pt_str v = ctx->tag_len[i] == PT_TRACE_ABSENT
                              ? cfg->hdr[i].dflt
                              : pt_str_make(ctx->buf + ctx->tag_off[i], ctx->tag_len[i]);
        rec_tag(rec, cfg->hdr[i].name, v);
    }
}

static void rec_fill(struct pt_trace_record *rec, const struct pt_trace_config *cfg,
                     const struct pt_trace_ctx *ctx, uint32_t flags, const struct pt_trace_request_info *info,
                     uint64_t now)
{
    rec->trace_hi = ctx->trace_hi;
    rec->trace_lo = ctx->trace_lo;
    rec->parent_id = ctx->parent_id;
    rec->span_id = ctx->span_id;
    rec->child_id = ctx->child_id;
    rec->flags = flags;
    rec->start_us = ctx->start_us;
    rec->duration_us = now > ctx->start_mono_us ? now - ctx->start_mono_us : 1;
    rec->child_duration_us = 0;
    if (ctx->up_start_mono_us != 0) {
        uint64_t s = ctx->up_start_mono_us, e = ctx->up_end_mono_us ? ctx->up_end_mono_us : now;
        rec->child_start_us = ctx->start_us + (s > ctx->start_mono_us ? s - ctx->start_mono_us : 0);
        rec->child_duration_us = e > s ? e - s : 1;
    }
    rec->bytes_received = info->bytes_received;
    rec->bytes_sent = info->bytes_sent;
    rec->status = info->status;
    rec->upstream_status = info->upstream_status;
    rec->used = 0;
    rec_field(rec, PT_TRF_METHOD, info->method, 32);
    rec_field(rec, PT_TRF_AUTHORITY, info->authority, 256);
    rec_field(rec, PT_TRF_PATH, info->path, PT_TRACE_PATH_MAX);
    rec_field(rec, PT_TRF_SCHEME, info->scheme, 16);
    rec_field(rec, PT_TRF_PROTOCOL, info->protocol, 16);
    rec_field(rec, PT_TRF_USER_AGENT, info->user_agent, 256);
    rec_field(rec, PT_TRF_REQUEST_ID, info->request_id, 128);
    rec_field(rec, PT_TRF_CLIENT_TRACE_ID,
              ctx->ctid_len == PT_TRACE_ABSENT ? pt_str_make("", 0)
                                               : pt_str_make(ctx->buf + ctx->ctid_off, ctx->ctid_len), 128);
    rec_field(rec, PT_TRF_PEER_IP, info->peer_ip, 64);
    rec_field(rec, PT_TRF_UP_ADDRESS, info->upstream_address, 80);
    rec_field(rec, PT_TRF_UP_PROTOCOL, info->upstream_protocol.len ? info->upstream_protocol : info->protocol, 16);
    rec_field(rec, PT_TRF_CLUSTER, info->cluster_name, 256);
    rec_field(rec, PT_TRF_STATS_NAME, info->stats_name, 256);
    rec_field(rec, PT_TRF_FLAGS, info->response_flags, 64);
    rec_tags(rec, cfg, ctx);
}

/* ring_slot: the slot the worker writes next, or NULL when the ring is full (then <nspans> are
 * counted as dropped). The record becomes visible with ring_push. */
static struct pt_trace_record *ring_slot(struct pt_trace_worker *tw, uint64_t nspans)
{
    uint32_t head = atomic_load_explicit(&tw->_head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&tw->_tail, memory_order_acquire);

    if (head - tail >= PT_TRACE_RING_SLOTS) {
        uint64_t d = atomic_load_explicit(&tw->_dropped, memory_order_relaxed);
        atomic_store_explicit(&tw->_dropped, d + nspans, memory_order_relaxed);
        return NULL;
    }
    return &tw->_slots[head & RING_MASK];
}

static void ring_push(struct pt_trace_worker *tw)
{
    uint32_t head = atomic_load_explicit(&tw->_head, memory_order_relaxed);
    atomic_store_explicit(&tw->_head, head + 1, memory_order_release);
}

void pt_trace_finish(struct pt_trace_worker *tw, const struct pt_trace_config *cfg,
                     struct pt_trace_ctx *ctx, const struct pt_trace_request_info *info)
{
    uint32_t flags = ctx->flags;
    struct pt_trace_record *rec;

    ctx->flags = 0;
    if (!(flags & PT_TRACE_F_SAMPLED) || tw == NULL)
        return;
    if ((rec = ring_slot(tw, ctx->up_start_mono_us ? 2 : 1)) == NULL)
        return;
    rec_fill(rec, cfg, ctx, flags, info, clock_us(CLOCK_MONOTONIC));
    ring_push(tw);
}

/* --- calls to policy services --------------------------------------------------------------- */

uint64_t pt_trace_call_begin(struct pt_trace_worker *tw, const struct pt_trace_ctx *ctx,
                             struct pt_trace_call *call)
{
    call->flags = 0;
    call->span_id = 0;
    if (tw == NULL || !(ctx->flags & PT_TRACE_F_ACTIVE))
        return 0;
    call->trace_hi = ctx->trace_hi;
    call->trace_lo = ctx->trace_lo;
    call->parent_id = ctx->span_id;
    call->span_id = rng_next(tw);
    call->flags = ctx->flags & (PT_TRACE_F_ACTIVE | PT_TRACE_F_SAMPLED | PT_TRACE_F_DEBUG);
    call->start_us = call->start_mono_us = call->end_mono_us = 0;
    if (call->flags & PT_TRACE_F_SAMPLED) {
        /* on the request's epoch base, as the router span: the spans nest as the clocks say */
        uint64_t now = clock_us(CLOCK_MONOTONIC);
        call->start_mono_us = now;
        call->start_us = ctx->start_us + (now > ctx->start_mono_us ? now - ctx->start_mono_us : 0);
    }
    return call->span_id;
}

/* call_fill: a call record: the call span in the child fields, the HCM span as its parent. */
static void call_fill(struct pt_trace_record *rec, const struct pt_trace_call *call, uint32_t flags,
                      const struct pt_trace_call_info *info, uint64_t end)
{
    bool http = info->kind == PT_TRACE_CALL_HTTP;
    int ntags = info->ntags < 0 ? 0 : info->ntags > PT_TRACE_CALL_TAGS ? PT_TRACE_CALL_TAGS : info->ntags;

    rec->trace_hi = call->trace_hi;
    rec->trace_lo = call->trace_lo;
    rec->parent_id = 0;
    rec->span_id = call->parent_id;
    rec->child_id = call->span_id;
    rec->flags = flags | PT_TRACE_F_CALL | (http ? PT_TRACE_F_CALL_HTTP : 0) |
                 (info->error ? PT_TRACE_F_ERROR : 0);
    rec->start_us = rec->child_start_us = call->start_us;
    rec->duration_us = 0;
    rec->child_duration_us = end > call->start_mono_us ? end - call->start_mono_us : 1;
    rec->bytes_received = rec->bytes_sent = 0;
    rec->status = 0;
    rec->upstream_status = http ? info->status : 0;
    rec->used = 0;
    memset(rec->str_off, 0, sizeof(rec->str_off));
    memset(rec->str_len, 0, sizeof(rec->str_len));
    rec_field(rec, PT_TRF_CLUSTER, info->cluster, 256);
    rec_field(rec, PT_TRF_UP_ADDRESS, info->upstream_address, 80);
    if (http) {
        rec_field(rec, PT_TRF_STATS_NAME, info->stats_name.len ? info->stats_name : info->cluster, 256);
        rec_field(rec, PT_TRF_FLAGS, info->response_flags, 64);
    }
    rec->ntags = 0;
    for (int i = 0; i < ntags; i++)
        if (info->tag_key[i].len > 0)
            rec_tag(rec, info->tag_key[i], info->tag_value[i]);
}

void pt_trace_call_end(struct pt_trace_worker *tw, struct pt_trace_call *call,
                       const struct pt_trace_call_info *info)
{
    uint32_t flags = call->flags;
    struct pt_trace_record *rec;

    call->flags = 0;
    if (!(flags & PT_TRACE_F_SAMPLED) || tw == NULL)
        return;
    if ((rec = ring_slot(tw, 1)) == NULL)
        return;
    call_fill(rec, call, flags, info, call->end_mono_us ? call->end_mono_us : clock_us(CLOCK_MONOTONIC));
    ring_push(tw);
}
