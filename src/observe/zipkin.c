/* The control-thread side of Zipkin tracing: JSON v2 encoding of the spans that workers leave
 * in their rings (observe/trace.c), and the reporter that POSTs them to the collector, shaped
 * like Envoy's (reference/envoy-compat.md §3.3-3.5): a POST as soon as 5 spans are pending, and
 * whatever is pending every 5 s; 5 s timeout; anything but a 2xx counts the batch as dropped.
 * Under load batches grow instead of POSTs multiplying: while a POST is in flight the next
 * waits for 250 spans, at most 4 are in flight, and one takes up to 1000 spans. Spans are
 * encoded straight into the body of the next POST; when it is full and no POST can start,
 * finished requests wait in the workers' rings (which drop, and count, what does not fit).
 *
 * A record is a request's two spans (HCM and router) or, for a call the request made to a policy
 * service, that call's span alone.
 *
 * The POSTs are libcurl transfers on the control loop (core/curlm.h).
 * The exporter is one static object because its API (trace.h) has no handle; only the control
 * thread touches it. The counters are atomics so any thread may read them. */
#include "observe/trace.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/snapshot-t.h"
#include "core/curlm.h"
#include "core/log.h"

#define ZK_MIN_FLUSH 5            /* Envoy's tracing.zipkin.min_flush_spans */
#define ZK_MIN_FLUSH_BUSY 250     /* the same while a POST is already in flight */
#define ZK_BATCH_MAX 1000         /* spans in one POST at most */
#define ZK_MAX_POSTS 4            /* POSTs in flight at most */
#define ZK_SPAN_MAX (16 * 1024)   /* one encoded span at most */
#define ZK_BODY_MIN (64 * 1024)   /* first allocation of a batch body */
#define ZK_BUSY_DRAIN_MS 5        /* drain interval while a ring is a quarter full */
#define ZK_WARN_EVERY_MS 10000    /* at most one failure warning per this interval */

/* --- JSON ----------------------------------------------------------------------------------- */

/* A bounded JSON writer: once something does not fit, <full> is set and nothing more is
 * written, so callers check once at the end. */
struct jw {
    char *p;
    size_t len, cap;
    bool full;
};

/* jw_raw: <n> bytes as they are. Most are short (keys, numbers, ids): 8 to 32 bytes are copied
 * as two overlapping words instead of a call to memcpy. */
static void jw_raw(struct jw *w, const char *s, size_t n)
{
    char *o = w->p + w->len;

    if (w->full || n > w->cap - w->len) {
        w->full = true;
        return;
    }
    if (n >= 8 && n <= 16) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(o, &a, 8);
        memcpy(o + n - 8, &b, 8);
    } else if (n > 16 && n <= 32) {
        char a[16], b[16];
        memcpy(a, s, 16);
        memcpy(b, s + n - 16, 16);
        memcpy(o, a, 16);
        memcpy(o + n - 16, b, 16);
    } else {
        memcpy(o, s, n);
    }
    w->len += n;
}

#define JW_LIT(w, s) jw_raw((w), (s), sizeof(s) - 1)

/* jw_u64: decimal. */
static void jw_u64(struct jw *w, uint64_t v)
{
    char b[20];

    jw_raw(w, b, pt_u64_dec(v, b));
}

/* jw_hex64: 16 lowercase hex digits, a byte (two digits from a table) at a time. */
static void jw_hex64(struct jw *w, uint64_t v)
{
    char b[16];

    for (int i = 14; i >= 0; i -= 2, v >>= 8)
        memcpy(b + i, pt_hex_pairs + 2 * (v & 255), 2);
    jw_raw(w, b, sizeof(b));
}

/* utf8_len: length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one (overlong
 * forms, surrogates and code points above U+10FFFF are not). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t len;

    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

#define ESC_MAX 6 /* the longest output for one input byte: "\u001f" */

/* Bytes that a JSON string carries as they are: printable ASCII but '"' and '\\'. */
static const bool esc_plain[256] = { [0x20 ... '"' - 1] = true, ['"' + 1 ... '\\' - 1] = true, ['\\' + 1 ... 0x7f] = true };

/* esc_plain8: no byte of the 8 in <x> needs escaping. Each term sets a byte's high bit for one
 * kind of special byte (>= 0x80, < 0x20, '"', '\\'); the borrows of the subtractions can only
 * add false alarms, which the byte-wise path then handles. */
static bool esc_plain8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull;
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');

    return ((x | ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & (ones << 7)) == 0;
}

/* esc_one: what the special byte at p[0] (of <n>) becomes, into <o> (ESC_MAX bytes of room):
 * an escape, a valid UTF-8 sequence as is, or U+FFFD. Sets *used to the input bytes taken and
 * returns the bytes written. */
static size_t esc_one(char *o, const unsigned char *p, size_t n, size_t *used)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char c = p[0];
    size_t len;

    *used = 1;
    if (c == '"' || c == '\\') {
        o[0] = '\\';
        o[1] = (char)c;
        return 2;
    }
    if (c < 0x20) {
        memcpy(o, "\\u00", 4);
        o[4] = hex[c >> 4];
        o[5] = hex[c & 15];
        return 6;
    }
    if ((len = utf8_len(p, n)) > 0) {
        memcpy(o, p, len);
        *used = len;
        return len;
    }
    memcpy(o, "\xef\xbf\xbd", 3);
    return 3;
}

/* jw_esc: the body of a JSON string: escapes, and U+FFFD for bytes that are not UTF-8 (header
 * values may carry any octet; the collector's parser must not reject the batch for it). With
 * room for the worst case, 8 plain bytes at a time (this is most of the exporter's work);
 * near the end of the buffer, one checked byte at a time. */
static void jw_esc(struct jw *w, struct pt_str s)
{
    const unsigned char *p = (const unsigned char *)s.ptr;
    size_t i = 0, n = s.len, used;
    char *o, e[ESC_MAX];

    if (w->full)
        return;
    if (n > (w->cap - w->len) / ESC_MAX) {
        for (; i < n && !w->full; i += used) {
            if (esc_plain[p[i]]) {
                used = 1;
                jw_raw(w, (const char *)p + i, 1);
            } else {
                jw_raw(w, e, esc_one(e, p + i, n - i, &used));
            }
        }
        return;
    }
    o = w->p + w->len;
    while (i < n) {
        uint64_t x;
        if (n - i >= 8 && (memcpy(&x, p + i, 8), esc_plain8(x))) {
            memcpy(o, &x, 8);
            o += 8;
            i += 8;
        } else if (n - i < 8 && n >= 8 && (memcpy(&x, p + n - 8, 8), esc_plain8(x))) {
            /* the tail, as the last 8 bytes: those before <i> among them were plain, so they
             * sit just before <o> as they are and may be written again */
            memcpy(o - (i - (n - 8)), &x, 8);
            o += n - i;
            i = n;
        } else if (esc_plain[p[i]]) {
            *o++ = (char)p[i++];
        } else {
            o += esc_one(o, p + i, n - i, &used);
            i += used;
        }
    }
    w->len = (size_t)(o - w->p);
}

static void jw_str(struct jw *w, struct pt_str s)
{
    JW_LIT(w, "\"");
    jw_esc(w, s);
    JW_LIT(w, "\"");
}

/* jw_name: a string lowercased, as Envoy writes span and service names. Escapes are already
 * lowercase and UTF-8 bytes are not letters, so lowering the output is lowering the input. */
static void jw_name(struct jw *w, struct pt_str s)
{
    size_t from = w->len;

    jw_esc(w, s);
    for (size_t i = from; i < w->len; i++)
        w->p[i] = pt_lower(w->p[i]);
}

/* --- spans ---------------------------------------------------------------------------------- */

/* The standard tags, as Envoy's HTTP tracer sets them. Their keys are written without escaping;
 * a custom tag of the same name replaces one (Envoy's later setTag wins). */
enum std_tag {
    TAG_NODE_ID,
    TAG_REQUEST_ID,
    TAG_URL,
    TAG_METHOD,
    TAG_DOWNSTREAM_CLUSTER,
    TAG_USER_AGENT,
    TAG_PROTOCOL,
    TAG_PEER_ADDRESS,
    TAG_CLIENT_TRACE_ID,
    TAG_REQUEST_SIZE,
    TAG_RESPONSE_SIZE,
    TAG_UPSTREAM_ADDRESS,
    TAG_COMPONENT,
    TAG_UPSTREAM_CLUSTER,
    TAG_UPSTREAM_CLUSTER_NAME,
    TAG_STATUS_CODE,
    TAG_RESPONSE_FLAGS,
    TAG_ERROR,
    TAG_COUNT
};

/* Each as written: a comma, the quoted name, a colon. */
static const struct pt_str std_tag_keys[TAG_COUNT] = {
    [TAG_NODE_ID] = PT_STR_LIT(",\"node_id\":"),
    [TAG_REQUEST_ID] = PT_STR_LIT(",\"guid:x-request-id\":"),
    [TAG_URL] = PT_STR_LIT(",\"http.url\":"),
    [TAG_METHOD] = PT_STR_LIT(",\"http.method\":"),
    [TAG_DOWNSTREAM_CLUSTER] = PT_STR_LIT(",\"downstream_cluster\":"),
    [TAG_USER_AGENT] = PT_STR_LIT(",\"user_agent\":"),
    [TAG_PROTOCOL] = PT_STR_LIT(",\"http.protocol\":"),
    [TAG_PEER_ADDRESS] = PT_STR_LIT(",\"peer.address\":"),
    [TAG_CLIENT_TRACE_ID] = PT_STR_LIT(",\"guid:x-client-trace-id\":"),
    [TAG_REQUEST_SIZE] = PT_STR_LIT(",\"request_size\":"),
    [TAG_RESPONSE_SIZE] = PT_STR_LIT(",\"response_size\":"),
    [TAG_UPSTREAM_ADDRESS] = PT_STR_LIT(",\"upstream_address\":"),
    [TAG_COMPONENT] = PT_STR_LIT(",\"component\":"),
    [TAG_UPSTREAM_CLUSTER] = PT_STR_LIT(",\"upstream_cluster\":"),
    [TAG_UPSTREAM_CLUSTER_NAME] = PT_STR_LIT(",\"upstream_cluster.name\":"),
    [TAG_STATUS_CODE] = PT_STR_LIT(",\"http.status_code\":"),
    [TAG_RESPONSE_FLAGS] = PT_STR_LIT(",\"response_flags\":"),
    [TAG_ERROR] = PT_STR_LIT(",\"error\":"),
};

/* The tags object being written, and the standard tags a custom tag replaces. Every member is
 * written with a comma before it; the first comma becomes the opening brace (tags_close). */
struct tags {
    struct jw *w;
    uint32_t replaced; /* 1 << enum std_tag */
};

static struct pt_str rec_tag(const struct pt_trace_record *rec, unsigned i)
{
    return pt_str_make(rec->buf + rec->tag_off[i], rec->tag_len[i]);
}

static uint32_t replaced_tags(const struct pt_trace_record *rec)
{
    uint32_t m = 0;

    for (unsigned i = 0; i < rec->ntags; i++) {
        struct pt_str name = rec_tag(rec, 2 * i);
        for (unsigned k = 0; k < TAG_COUNT; k++) {
            struct pt_str key = std_tag_keys[k];
            if (pt_str_eq(name, pt_str_make(key.ptr + 2, key.len - 4)))
                m |= 1u << k;
        }
    }
    return m;
}

/* tag_open: the member's key, or false when a custom tag replaces it. */
static bool tag_open(struct tags *t, enum std_tag k)
{
    if (t->replaced & (1u << k))
        return false;
    jw_raw(t->w, std_tag_keys[k].ptr, std_tag_keys[k].len);
    return true;
}

/* tag: one standard tag; an empty value is no tag (Zipkin's Span::setTag). */
static void tag(struct tags *t, enum std_tag k, struct pt_str value)
{
    if (value.len > 0 && tag_open(t, k))
        jw_str(t->w, value);
}

static void tag_u64(struct tags *t, enum std_tag k, uint64_t v)
{
    if (!tag_open(t, k))
        return;
    JW_LIT(t->w, "\"");
    jw_u64(t->w, v);
    JW_LIT(t->w, "\"");
}

#define S(lit) PT_STR_LIT(lit)
#define F(f) pt_trace__rec_str(rec, PT_TRF_##f)

/* tag_url: http.url = scheme "://" authority path (path already cut to 256, as Envoy). */
static void tag_url(struct tags *t, const struct pt_trace_record *rec)
{
    if (F(PATH).len == 0 || !tag_open(t, TAG_URL))
        return;
    JW_LIT(t->w, "\"");
    jw_esc(t->w, F(SCHEME).len ? F(SCHEME) : S("http"));
    JW_LIT(t->w, "://");
    jw_esc(t->w, F(AUTHORITY));
    jw_esc(t->w, F(PATH));
    JW_LIT(t->w, "\"");
}

/* tags_custom: the record's own tags (custom tags of a request, the caller's of a call). */
static void tags_custom(struct tags *t, const struct pt_trace_record *rec)
{
    for (unsigned i = 0; i < rec->ntags; i++) {
        JW_LIT(t->w, ",");
        jw_str(t->w, rec_tag(rec, 2 * i));
        JW_LIT(t->w, ":");
        jw_str(t->w, rec_tag(rec, 2 * i + 1));
    }
}

/* tags_set_common: Envoy's HttpTracerUtility::setCommonTags; <error> also marks the span. */
static void tags_set_common(struct tags *t, const struct pt_trace_record *rec, int status, bool error)
{
    tag(t, TAG_COMPONENT, S("proxy"));
    if (F(CLUSTER).len > 0) {
        tag(t, TAG_UPSTREAM_CLUSTER, F(CLUSTER));
        tag(t, TAG_UPSTREAM_CLUSTER_NAME, F(STATS_NAME));
    }
    tag_u64(t, TAG_STATUS_CODE, status > 0 ? (uint64_t)status : 0);
    tag(t, TAG_RESPONSE_FLAGS, F(FLAGS).len ? F(FLAGS) : S("-"));
    if (error || status <= 0 || (status >= 500 && status < 600))
        tag(t, TAG_ERROR, S("true"));
}

/* tags_common: setCommonTags, then the custom tags. */
static void tags_common(struct tags *t, const struct pt_trace_record *rec, int status)
{
    tags_set_common(t, rec, status, false);
    tags_custom(t, rec);
}

/* tags_hcm: Envoy's finalizeDownstreamSpan and HttpTracerImpl::startSpan tags. */
static void tags_hcm(struct tags *t, const struct pt_trace_record *rec)
{
    tag(t, TAG_NODE_ID, S("test-id")); /* Emissary's bootstrap node.id */
    tag(t, TAG_REQUEST_ID, F(REQUEST_ID));
    tag_url(t, rec);
    tag(t, TAG_METHOD, F(METHOD));
    tag(t, TAG_DOWNSTREAM_CLUSTER, S("-"));
    tag(t, TAG_USER_AGENT, F(USER_AGENT).len ? F(USER_AGENT) : S("-"));
    tag(t, TAG_PROTOCOL, F(PROTOCOL));
    tag(t, TAG_PEER_ADDRESS, F(PEER_IP));
    tag(t, TAG_CLIENT_TRACE_ID, F(CLIENT_TRACE_ID));
    tag_u64(t, TAG_REQUEST_SIZE, rec->bytes_received);
    tag_u64(t, TAG_RESPONSE_SIZE, rec->bytes_sent);
    tags_common(t, rec, rec->status);
}

/* tags_router: Envoy's finalizeUpstreamSpan tags. */
static void tags_router(struct tags *t, const struct pt_trace_record *rec)
{
    tag(t, TAG_PROTOCOL, F(UP_PROTOCOL));
    if (F(UP_ADDRESS).len > 0) {
        tag(t, TAG_UPSTREAM_ADDRESS, F(UP_ADDRESS));
        tag(t, TAG_PEER_ADDRESS, F(UP_ADDRESS)); /* with the port, as Envoy's upstream span */
    }
    tags_common(t, rec, rec->upstream_status);
}

/* tags_call: a call span, in the order Envoy's async clients set the tags. The gRPC client
 * (Grpc::AsyncRequestImpl) sets upstream_cluster (upstream_address in newer versions) and
 * component when the call starts, then grpc.status_code and error, and the filter its own tags
 * (the caller's, grpc.status_code among them); the HTTP client (Http::AsyncRequestSharedImpl)
 * lets the filter tag first (onBeforeFinalizeUpstreamSpan), then finalizes the span as the
 * router's upstream span. Its protocol is always HTTP/1.1: Envoy's async client never sets it. */
static void tags_call(struct tags *t, const struct pt_trace_record *rec)
{
    bool error = rec->flags & PT_TRACE_F_ERROR;

    if (!(rec->flags & PT_TRACE_F_CALL_HTTP)) {
        tag(t, TAG_UPSTREAM_CLUSTER, F(CLUSTER));
        tag(t, TAG_UPSTREAM_ADDRESS, F(UP_ADDRESS));
        tag(t, TAG_COMPONENT, S("proxy"));
        tags_custom(t, rec);
        if (error)
            tag(t, TAG_ERROR, S("true"));
        return;
    }
    tags_custom(t, rec);
    tag(t, TAG_PROTOCOL, S("HTTP/1.1"));
    if (F(UP_ADDRESS).len > 0) {
        tag(t, TAG_UPSTREAM_ADDRESS, F(UP_ADDRESS));
        tag(t, TAG_PEER_ADDRESS, F(UP_ADDRESS));
    }
    tags_set_common(t, rec, rec->upstream_status, error);
}

static void span_name(struct jw *w, const struct pt_trace_record *rec, bool child)
{
    if (rec->flags & PT_TRACE_F_CALL) {
        JW_LIT(w, ",\"name\":\"async ");
        jw_name(w, F(CLUSTER));
        JW_LIT(w, " egress\"");
        return;
    }
    if (!child) {
        if (F(AUTHORITY).len > 0) {
            JW_LIT(w, ",\"name\":\"");
            jw_name(w, F(AUTHORITY));
            JW_LIT(w, "\"");
        }
        return;
    }
    JW_LIT(w, ",\"name\":\"router ");
    jw_name(w, F(STATS_NAME));
    JW_LIT(w, " egress\"");
}

static void local_endpoint(struct jw *w, const struct pt_trace_config *cfg)
{
    if (cfg == NULL)
        return;
    JW_LIT(w, ",\"localEndpoint\":{\"serviceName\":");
    jw_str(w, pt_str_c(cfg->service_name));
    if (cfg->local_ip[0] != '\0') {
        if (cfg->local_ipv6)
            JW_LIT(w, ",\"ipv6\":");
        else
            JW_LIT(w, ",\"ipv4\":");
        jw_str(w, pt_str_c(cfg->local_ip));
    }
    JW_LIT(w, "}");
}

size_t pt_zipkin__encode_span(const struct pt_trace_config *cfg, const struct pt_trace_record *rec,
                              bool child, char *out, size_t cap)
{
    struct jw w = { out, 0, cap, false };
    struct tags t = { &w, rec->ntags ? replaced_tags(rec) : 0 };
    uint64_t ts = child ? rec->child_start_us : rec->start_us;
    uint64_t dur = child ? rec->child_duration_us : rec->duration_us;
    size_t tags_at;

    if (child ? rec->child_duration_us == 0 : (rec->flags & PT_TRACE_F_CALL) != 0)
        return 0;
    if (dur == 0)
        dur = 1;
    JW_LIT(&w, "{\"traceId\":\"");
    if (rec->trace_hi != 0)
        jw_hex64(&w, rec->trace_hi);
    jw_hex64(&w, rec->trace_lo);
    if (child || (rec->flags & PT_TRACE_F_PARENT)) {
        JW_LIT(&w, "\",\"parentId\":\"");
        jw_hex64(&w, child ? rec->span_id : rec->parent_id);
    }
    JW_LIT(&w, "\",\"id\":\"");
    jw_hex64(&w, child ? rec->child_id : rec->span_id);
    JW_LIT(&w, "\",\"kind\":\"CLIENT\"");
    span_name(&w, rec, child);
    JW_LIT(&w, ",\"timestamp\":");
    jw_u64(&w, ts);
    JW_LIT(&w, ",\"duration\":");
    jw_u64(&w, dur);
    if (rec->flags & PT_TRACE_F_DEBUG)
        JW_LIT(&w, ",\"debug\":true");
    local_endpoint(&w, cfg);
    JW_LIT(&w, ",\"annotations\":[{\"timestamp\":");
    jw_u64(&w, ts + dur);
    JW_LIT(&w, ",\"value\":\"cr\"}],\"tags\":");
    tags_at = w.len;
    if (rec->flags & PT_TRACE_F_CALL)
        tags_call(&t, rec);
    else if (child)
        tags_router(&t, rec);
    else
        tags_hcm(&t, rec);
    if (w.len > tags_at)
        w.p[tags_at] = '{'; /* was the first member's comma */
    else
        JW_LIT(&w, "{");
    JW_LIT(&w, "}}");
    return w.full ? 0 : w.len;
}

#undef F

/* --- the exporter --------------------------------------------------------------------------- */

/* The body of the next POST: "[" span "," span ..., closed with "]" when it goes. */
struct zk_batch {
    char *body;
    size_t len, cap;
    uint32_t nspans;
};

/* One POST in flight. */
struct zk_post {
    CURL *easy;
    struct curl_slist *hdrs;
    char *body;
    uint32_t nspans;
    char err[CURL_ERROR_SIZE];
};

struct zk {
    struct pt_loop *loop;
    struct pt_curlm *curlm;
    struct pt_timer drain_timer, flush_timer;
    struct pt_trace_config *cfg;
    struct zk_batch next;
    struct zk_post *posts[ZK_MAX_POSTS];
    uint32_t nposts;
    uint32_t rr;                            /* round-robin over the collector's addresses */
    uint64_t warned_ms;
};

static struct zk *zk;
static _Atomic uint64_t zk_sent, zk_dropped;
static uint32_t knob_drain_ms = 100, knob_flush_ms = 5000, knob_timeout_ms = 5000;

static void count_dropped(uint64_t n)
{
    atomic_fetch_add_explicit(&zk_dropped, n, memory_order_relaxed);
}

uint64_t pt_zipkin_spans_sent(void)
{
    return atomic_load_explicit(&zk_sent, memory_order_relaxed);
}

uint64_t pt_zipkin_spans_dropped(void)
{
    return atomic_load_explicit(&zk_dropped, memory_order_relaxed) + pt_trace__ring_dropped();
}

void pt_zipkin__set_timing(uint32_t drain_ms, uint32_t flush_ms, uint32_t timeout_ms)
{
    knob_drain_ms = drain_ms ? drain_ms : knob_drain_ms;
    knob_flush_ms = flush_ms ? flush_ms : knob_flush_ms;
    knob_timeout_ms = timeout_ms ? timeout_ms : knob_timeout_ms;
}

/* warn_failure: a failed report, logged at most once per ZK_WARN_EVERY_MS. */
static void warn_failure(const char *what, uint32_t nspans)
{
    uint64_t now = pt_loop_now_ms(zk->loop);

    if (zk->warned_ms != 0 && now - zk->warned_ms < ZK_WARN_EVERY_MS)
        return;
    zk->warned_ms = now;
    pt_warn("zipkin: %u spans dropped: %s (collector %s%s)", nspans, what,
            zk->cfg ? zk->cfg->collector_host : "-", zk->cfg ? zk->cfg->collector_endpoint : "");
}

/* drop_next: the spans waiting for a POST are dropped (and counted). */
static void drop_next(void)
{
    count_dropped(zk->next.nspans);
    zk->next.nspans = 0;
    zk->next.len = 0;
}

/* --- POSTs ---------------------------------------------------------------------------------- */

static void post_free(struct zk_post *p)
{
    for (uint32_t i = 0; i < zk->nposts; i++) {
        if (zk->posts[i] == p) {
            zk->posts[i] = zk->posts[--zk->nposts];
            break;
        }
    }
    pt_curlm_remove(zk->curlm, p->easy);
    curl_easy_cleanup(p->easy);
    curl_slist_free_all(p->hdrs);
    free(p->body);
    free(p);
}

static void maybe_flush(bool force);

/* post_done: accounts a finished POST, then sends what waits. */
static void post_done(void *arg, CURL *easy, CURLcode rc)
{
    struct zk_post *p = NULL;
    long code = 0;
    char what[64];

    (void)arg;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&p);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    if (rc == CURLE_OK && code >= 200 && code < 300) {
        atomic_fetch_add_explicit(&zk_sent, p->nspans, memory_order_relaxed);
    } else {
        count_dropped(p->nspans);
        if (rc != CURLE_OK)
            warn_failure(p->err[0] ? p->err : curl_easy_strerror(rc), p->nspans);
        else if (snprintf(what, sizeof(what), "the collector answered %ld", code) > 0)
            warn_failure(what, p->nspans);
    }
    post_free(p);
    maybe_flush(false);
}

/* --- batches -------------------------------------------------------------------------------- */

static void collector_url(const struct pt_trace_config *cfg, char *url, size_t cap)
{
    const struct pt_trace_collector *c = &cfg->collectors[zk->rr++ % cfg->ncollectors];
    char ip[INET6_ADDRSTRLEN] = "";
    int port = 0;

    if (c->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&c->addr;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        port = ntohs(a->sin6_port);
        snprintf(url, cap, "http://[%s]:%d%s", ip, port, cfg->collector_endpoint);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&c->addr;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        port = ntohs(a->sin_port);
        snprintf(url, cap, "http://%s:%d%s", ip, port, cfg->collector_endpoint);
    }
}

/* post_setup: an easy handle that POSTs <p>'s body to the collector. */
static int post_setup(struct zk_post *p, size_t len)
{
    const struct pt_trace_config *cfg = zk->cfg;
    char url[1024], host[600];
    struct curl_slist *h;

    collector_url(cfg, url, sizeof(url));
    snprintf(host, sizeof(host), "Host: %s", cfg->collector_host);
    for (size_t i = 0; i < 3; i++) {
        const char *line = i == 0 ? "Content-Type: application/json" : i == 1 ? host : "Expect:";
        if ((h = curl_slist_append(p->hdrs, line)) == NULL)
            return PT_NOMEM;
        p->hdrs = h;
    }
    if ((p->easy = curl_easy_init()) == NULL)
        return PT_NOMEM;
    curl_easy_setopt(p->easy, CURLOPT_URL, url);
    curl_easy_setopt(p->easy, CURLOPT_HTTPHEADER, p->hdrs);
    curl_easy_setopt(p->easy, CURLOPT_POSTFIELDS, p->body);
    curl_easy_setopt(p->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(p->easy, CURLOPT_TIMEOUT_MS, (long)knob_timeout_ms);
    curl_easy_setopt(p->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(p->easy, CURLOPT_PROXY, ""); /* never http_proxy from the environment */
    curl_easy_setopt(p->easy, CURLOPT_PRIVATE, p);
    curl_easy_setopt(p->easy, CURLOPT_ERRORBUFFER, p->err);
    return pt_curlm_add(zk->curlm, p->easy);
}

/* post_batch: the waiting spans go in one POST; on failure they are dropped. */
static void post_batch(void)
{
    struct zk_batch *b = &zk->next;
    uint32_t n = b->nspans;
    size_t len = b->len + 1;
    struct zk_post *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        drop_next();
        warn_failure("out of memory", n);
        return;
    }
    b->body[b->len] = ']'; /* queue_span keeps room for it */
    p->body = b->body;
    p->nspans = n;
    *b = (struct zk_batch){ 0 };
    zk->posts[zk->nposts++] = p;
    if (post_setup(p, len) != 0) {
        count_dropped(n);
        warn_failure("cannot start the request", n);
        post_free(p);
    }
}

/* maybe_flush: a POST when a slot is free and at least ZK_MIN_FLUSH spans wait, or
 * ZK_MIN_FLUSH_BUSY while another POST is in flight (any number, when <force>): at low rates
 * each batch goes at once, as Envoy's; at high rates batches grow instead of POSTs multiplying,
 * which costs both sides less per span. Without collector addresses (DNS has not answered)
 * spans wait. */
static void maybe_flush(bool force)
{
    uint32_t min = zk->nposts == 0 ? ZK_MIN_FLUSH : ZK_MIN_FLUSH_BUSY;

    if (zk->cfg != NULL && zk->cfg->ncollectors > 0 && zk->nposts < ZK_MAX_POSTS &&
        (zk->next.nspans >= min || (force && zk->next.nspans > 0)))
        post_batch();
}

/* batch_room: room in the next body for one more span of at most ZK_SPAN_MAX, its comma and
 * the closing bracket. */
static bool batch_room(struct zk_batch *b)
{
    size_t need = b->len + 1 + ZK_SPAN_MAX + 1;
    char *body;

    if (need <= b->cap)
        return true;
    need = need < 2 * b->cap ? 2 * b->cap : need < ZK_BODY_MIN ? ZK_BODY_MIN : need;
    if ((body = realloc(b->body, need)) == NULL)
        return false;
    b->body = body;
    b->cap = need;
    return true;
}

/* queue_span: encodes one span of <rec> at the end of the next POST's body. */
static void queue_span(const struct pt_trace_record *rec, bool child)
{
    struct zk_batch *b = &zk->next;
    size_t n;

    if (!batch_room(b)) {
        count_dropped(1);
        warn_failure("out of memory", 1);
        return;
    }
    n = pt_zipkin__encode_span(zk->cfg, rec, child, b->body + b->len + 1, ZK_SPAN_MAX);
    if (n == 0) {
        count_dropped(1);
        return;
    }
    b->body[b->len] = b->nspans == 0 ? '[' : ',';
    b->len += 1 + n;
    b->nspans++;
    maybe_flush(false); /* as Envoy's reporter: at min_flush_spans, not per request */
}

/* take_record: both spans of a finished request, the router span first as Envoy finishes it;
 * or the one span of a call. */
static void take_record(const struct pt_trace_record *rec)
{
    bool child = rec->child_duration_us != 0, hcm = !(rec->flags & PT_TRACE_F_CALL);

    if (zk->cfg == NULL) {
        count_dropped((child ? 1 : 0) + (hcm ? 1 : 0));
        return;
    }
    if (child)
        queue_span(rec, true);
    if (hcm)
        queue_span(rec, false);
}

/* drain: empties every worker's ring, as long as the next POST has room; true when a ring was
 * at least a quarter full. */
static bool drain(void)
{
    bool busy = false;

    for (int i = 0; i < PT_MAX_WORKERS; i++) {
        const struct pt_trace_record *rec;
        uint32_t n = pt_trace__ring_fill(i);
        busy |= n >= PT_TRACE_RING_SLOTS / 4;
        for (; n > 0 && zk->next.nspans + 2 <= ZK_BATCH_MAX && (rec = pt_trace__ring_peek(i)) != NULL; n--) {
            take_record(rec);
            pt_trace__ring_pop(i);
        }
    }
    return busy;
}

static void drain_on_fire(struct pt_timer *t)
{
    bool busy = drain();
    pt_timer_arm(zk->loop, t, busy ? ZK_BUSY_DRAIN_MS : knob_drain_ms);
}

static void flush_on_fire(struct pt_timer *t)
{
    maybe_flush(true);
    pt_timer_arm(zk->loop, t, knob_flush_ms);
}

/* --- lifecycle ------------------------------------------------------------------------------ */

int pt_zipkin_start(struct pt_loop *loop)
{
    if (zk != NULL)
        return PT_INVAL;
    zk = calloc(1, sizeof(*zk));
    if (zk == NULL || (zk->curlm = pt_curlm_new(loop, "zipkin", post_done, NULL)) == NULL) {
        free(zk);
        zk = NULL;
        return PT_NOMEM;
    }
    zk->loop = loop;
    zk->drain_timer.cb = drain_on_fire;
    zk->flush_timer.cb = flush_on_fire;
    pt_timer_arm(loop, &zk->drain_timer, knob_drain_ms);
    pt_timer_arm(loop, &zk->flush_timer, knob_flush_ms);
    return 0;
}

void pt_zipkin_stop(void)
{
    if (zk == NULL)
        return;
    pt_timer_cancel(&zk->drain_timer);
    pt_timer_cancel(&zk->flush_timer);
    while (zk->nposts > 0) {
        count_dropped(zk->posts[0]->nspans);
        post_free(zk->posts[0]);
    }
    drop_next();
    free(zk->next.body);
    pt_curlm_free(zk->curlm);
    pt_trace_config_release(zk->cfg);
    free(zk);
    zk = NULL;
}

void pt_zipkin_set_config(const struct pt_trace_config *cfg)
{
    struct pt_trace_config *old;

    if (zk == NULL)
        return;
    old = zk->cfg;
    zk->cfg = pt_trace_config_ref(cfg);
    if (cfg == NULL) {
        drop_next();
    } else if (old == NULL || strcmp(old->cluster_name, cfg->cluster_name) != 0 ||
               strcmp(old->collector_host, cfg->collector_host) != 0 ||
               old->ncollectors != cfg->ncollectors) {
        pt_info("zipkin: reporting to %s (%u addresses), Host %s, path %s", cfg->cluster_name,
                cfg->ncollectors, cfg->collector_host, cfg->collector_endpoint);
    }
    pt_trace_config_release(old);
    maybe_flush(false);
}
