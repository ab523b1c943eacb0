/* The route table: compiles route specs (one per Mapping, from config/) into an immutable table
 * and matches requests against it for the proxy, in O(path length) whatever the number of routes.
 * Not here: hostname globs (glob.c), path rewriting (rewrite.c), Host binding and Emissary
 * defaults such as rewrite "/" (config/).
 *
 * Ranking follows Emissary's route_weight, descending: precedence, prefix length, header weight,
 * query weight, prefix, method, header keys, query keys; each weight is the sum over constraints
 * of len(name) + len(value or "*") + 1 if regex, `host` counting as an ":authority" header and
 * `method` as a ":method" one (a `hostname` glob does not count). Ties then go to the more specific
 * host, exact before prefix, case-sensitive before not, then input order. Specs equal on every
 * match key form one canary group, sorted into one group; group index == rank.
 *
 * Layout: literal prefixes live in two radix tries (case-sensitive, and lowercased for
 * case_sensitive: false) in flat arrays: 32-byte nodes, children contiguous, short labels and child
 * bytes inline, so a step down costs about one cache line. Each node lists, by rank, the groups
 * whose prefix (or exact path) ends there; groups whose host is an exact name are filed instead
 * in a hash keyed by (node, host), so 10,000 hostnames on one prefix cost one probe. A match
 * walks the path once per trie and, at each node, takes the first group by rank that beats the
 * best so far and passes its other constraints, stopping where no group below can win. Regex
 * routes are a rank-ordered list, each tried only while it could still win and when the path
 * starts with its literal prefix. Matching never allocates.
 *
 * Cost: O(path length); beyond that, trie depth grows with the log of the fan-out (about 2 ns a
 * level). Hashing each distinct prefix length instead (linear, then Waldvogel's binary search;
 * see git history) made small tables twice as slow and varied prefixes slower, for no gain at
 * 10,000 routes. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "route/route.h"

#define NONE UINT32_MAX
#define ARENA_CHUNK (64 * 1024)
#define HEADER_JOIN_MAX 4096 /* repeated headers joined beyond this never match a value */

enum path_kind { PATH_REGEX, PATH_PREFIX, PATH_EXACT }; /* ascending specificity */
enum host_kind { HOST_ANY, HOST_REGEX, HOST_GLOB };
enum kv_kind { KV_PRESENT, KV_EXACT, KV_REGEX };
enum kv_source { SRC_HEADER, SRC_AUTHORITY, SRC_METHOD, SRC_QUERY };

/* One header or query-parameter constraint. */
struct kv {
    struct pt_str name; /* lowercased for headers */
    struct pt_str value;
    const pcre2_code *re;
    uint8_t kind, source;
};

/* One canary group, the part a match always reads (16 bytes): its members, and which of its
 * rules (struct rules, same index) need checking besides the path. */
struct group {
    uint32_t route_first, nroutes;
    uint32_t total_share;
    uint8_t checks; /* CHECK_* */
};

#define CHECK_HOST   0x01 /* a hostname glob, host or host regex */
#define CHECK_METHOD 0x02 /* a method or method regex */
#define CHECK_KVS    0x04 /* header or query-parameter constraints */

/* The match keys of one canary group, read only when its group says so (and for regex paths). */
struct rules {
    uint8_t path_kind, host_kind;
    const pcre2_code *path_re, *host_re, *method_re;
    struct pt_str re_lit; /* regex routes: literal bytes every matching path starts with */
    struct pt_hostglob glob;
    struct pt_str method; /* ptr NULL: any method */
    uint32_t kv_first, nkv;
};

#define LABEL_INLINE 8
#define KIDS_INLINE  11

/* A radix-trie node, 32 bytes: one cache line holds all a walk needs to go one level down. The
 * label is the bytes of the edge into the node; its first byte is what the parent dispatches on,
 * kept in the parent's kids[] for up to KIDS_INLINE children and in first_bytes[] for all.
 * Children are contiguous. */
struct node {
    union {
        char bytes[LABEL_INLINE]; /* label_len <= LABEL_INLINE */
        const char *ptr;          /* longer labels, in the table's arena */
    } label;
    uint32_t first_child; /* children: nodes first_child .. first_child + nchild - 1 */
    uint32_t cands;       /* NONE, or where cands[] holds {nprefix, nexact, groups by rank...} */
    uint16_t label_len;
    uint16_t nchild;
    uint8_t hashed;       /* HASHED_PREFIX | HASHED_EXACT: more groups in the host index */
    uint8_t kids[KIDS_INLINE]; /* the children's first label bytes, when nchild <= KIDS_INLINE */
};

_Static_assert(sizeof(struct node) == 32, "two nodes per cache line");

#define HASHED_PREFIX 0x01 /* prefix groups of this node keyed by exact host */
#define HASHED_EXACT  0x02 /* exact-path groups of this node keyed by exact host */

/* A host-index slot: the groups of one (node, exact?) that require host `host`. */
struct host_slot {
    uint32_t key; /* node * 2 + exact, NONE when empty */
    uint32_t cand_off, ncand;
    struct pt_str host; /* lowercased */
};

struct chunk {
    struct chunk *next;
    size_t used, cap;
    char data[];
};

struct pt_route_table {
    struct group *groups;
    struct rules *rules; /* parallel to groups */
    uint32_t ngroups;
    struct pt_route *routes;
    uint32_t nroutes;
    size_t naccepted;
    struct kv *kvs;
    uint32_t nkvs;
    struct node *nodes;
    uint8_t *first_bytes; /* parallel to nodes: the first byte of each label */
    uint32_t *subtree_rank; /* parallel to nodes: the best rank in the node's subtree */
    uint32_t nnodes;
    uint32_t *cands;
    uint32_t ncands;
    uint32_t root[2]; /* [0] case-sensitive trie, [1] lowercased trie; NONE when empty */
    uint32_t *regex_groups;
    uint32_t nregex;
    struct host_slot *slots;
    uint32_t slot_mask; /* slots has slot_mask + 1 entries; none when slots is NULL */
    pcre2_code **codes;
    size_t ncodes, capcodes;
    struct chunk *chunks;
};

/* ---- memory owned by a table ---------------------------------------------------------------- */

/* Table strings are followed by ARENA_PAD zero bytes, so that the matcher can read them a
 * whole 8-byte word at a time. */
#define ARENA_PAD 8

char *pt_route__strndup(struct pt_route_table *t, const char *s, size_t n)
{
    struct chunk *c = t->chunks;

    if (c == NULL || c->cap - c->used < n + ARENA_PAD) {
        size_t cap = n + ARENA_PAD > ARENA_CHUNK ? n + ARENA_PAD : ARENA_CHUNK;
        c = pt_xmalloc(sizeof(*c) + cap);
        c->used = 0;
        c->cap = cap;
        c->next = t->chunks;
        t->chunks = c;
    }
    char *p = c->data + c->used;
    if (n)
        memcpy(p, s, n);
    memset(p + n, 0, ARENA_PAD);
    c->used += n + ARENA_PAD;
    return p;
}

static struct pt_str lower_dup(struct pt_route_table *t, const char *s, size_t n)
{
    char *p = pt_route__strndup(t, s, n);

    for (size_t i = 0; i < n; i++)
        p[i] = pt_lower(p[i]);
    return pt_str_make(p, n);
}

static pthread_once_t mctx_once = PTHREAD_ONCE_INIT;
static pcre2_match_context *mctx;

/* The match limits bound backtracking on hostile paths (Envoy uses RE2, which cannot blow up). */
static void mctx_init(void)
{
    mctx = pcre2_match_context_create(NULL);
    if (mctx == NULL)
        return;
    pcre2_set_match_limit(mctx, 200000);
    pcre2_set_depth_limit(mctx, 10000);
    pcre2_set_heap_limit(mctx, 4096);
}

pcre2_code *pt_route__regex_compile(struct pt_route_table *t, const char *pattern,
                                    uint32_t options, char *err, size_t errlen)
{
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *code;

    pthread_once(&mctx_once, mctx_init);
    code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, options, &errcode, &erroff,
                         NULL);
    if (code == NULL) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        snprintf(err, errlen, "invalid regex \"%s\": %s at offset %zu", pattern, (char *)msg,
                 (size_t)erroff);
        return NULL;
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter on failure */
    if (t->ncodes == t->capcodes) {
        t->capcodes = t->capcodes ? 2 * t->capcodes : 16;
        t->codes = pt_xrealloc(t->codes, t->capcodes * sizeof(*t->codes));
    }
    t->codes[t->ncodes++] = code;
    return code;
}

static __thread pcre2_match_data *tls_match_data;

pcre2_match_data *pt_route__match_data(void)
{
    if (PT_UNLIKELY(tls_match_data == NULL))
        tls_match_data = pcre2_match_data_create(PT_ROUTE__MAX_GROUPS + 1, NULL);
    return tls_match_data;
}

int pt_route_thread_init(void)
{
    return pt_route__match_data() ? 0 : PT_NOMEM;
}

void pt_route_thread_fini(void)
{
    pcre2_match_data_free(tls_match_data);
    tls_match_data = NULL;
}

void pt_route_table_free(struct pt_route_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->ncodes; i++)
        pcre2_code_free(t->codes[i]);
    while (t->chunks) {
        struct chunk *next = t->chunks->next;
        free(t->chunks);
        t->chunks = next;
    }
    free(t->codes);
    free(t->groups);
    free(t->rules);
    free(t->routes);
    free(t->kvs);
    free(t->nodes);
    free(t->first_bytes);
    free(t->subtree_rank);
    free(t->cands);
    free(t->regex_groups);
    free(t->slots);
    free(t);
}

size_t pt_route_table_size(const struct pt_route_table *t)
{
    return t->naccepted;
}

void *pt_route_action(const struct pt_route *r)
{
    return r->action;
}

size_t pt_route_spec_index(const struct pt_route *r)
{
    return r->spec_index;
}

/* ---- compiling specs -------------------------------------------------------------------------- */

/* One accepted spec, normalised: the keys that rank and group it, and its route. */
struct norm {
    struct pt_route route;
    uint8_t path_kind, host_kind;
    bool ci;
    bool host_set;       /* hostname or host given: an :authority header constraint is ignored */
    bool host_from_host; /* the host constraint is `host`, which ranks as an :authority header */
    bool method_regex;
    int precedence;
    struct pt_str prefix; /* as written (the regex source for regex routes) */
    struct pt_str key;    /* trie key: the prefix, lowercased when ci */
    struct pt_str host;   /* hostname glob or host, lowercased unless a regex; empty when any */
    struct pt_str method; /* ptr NULL when any */
    struct pt_hostglob glob;
    const pcre2_code *path_re, *host_re, *method_re;
    uint32_t kv_first, nhdr, nqp;
    uint32_t hdr_weight, qp_weight;
    int weight;
    bool shadow;          /* the spec's shadow: a mirror of its group, not a member */
};

/* A trie entry: the group whose prefix (or exact path) is <key>. */
struct tentry {
    struct pt_str key;
    uint32_t group;
    uint8_t exact, hashed;
};

/* A distinct trie key and its entries. */
struct tkey {
    struct pt_str key;
    uint32_t first, count;
};

/* A group filed in the host index under (node key, host). */
struct hentry {
    uint32_t key, group;
    struct pt_str host;
};

struct builder {
    struct pt_route_table *t;
    const struct pt_route_spec *specs;
    struct norm *norms;
    uint32_t nnorms;
    struct tentry *entries[2]; /* [0] case-sensitive trie, [1] lowercased trie */
    uint32_t nentries[2];
    struct hentry *hashed;
    uint32_t nhashed;
    char err[512];
    pt_route_reject_cb on_reject; /* for shadow specs that find no place in their group */
    void *reject_ctx;
};

__attribute__((format(printf, 2, 3))) static bool fail(struct builder *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(b->err, sizeof(b->err), fmt, ap);
    va_end(ap);
    return false;
}

/* full_regex: compiles a regex that must match its whole subject (Envoy safe_regex). */
static const pcre2_code *full_regex(struct builder *b, const char *what, const char *pattern)
{
    char msg[400];
    const pcre2_code *re = pt_route__regex_compile(b->t, pattern, PCRE2_ANCHORED | PCRE2_ENDANCHORED,
                                                   msg, sizeof(msg));

    if (re == NULL)
        fail(b, "%s: %.450s", what, msg);
    return re;
}

static struct pt_str dup_str(struct builder *b, const char *s)
{
    size_t len = strlen(s);

    return pt_str_make(pt_route__strndup(b->t, s, len), len);
}

static bool norm_path(struct builder *b, const struct pt_route_spec *s, struct norm *nm)
{
    if (s->prefix == NULL || s->prefix[0] == '\0')
        return fail(b, "prefix is required");
    if (strlen(s->prefix) > UINT16_MAX)
        return fail(b, "prefix is longer than %d bytes", UINT16_MAX);
    nm->prefix = dup_str(b, s->prefix);
    nm->precedence = s->precedence;
    nm->route._matched_len = PT_ROUTE__WHOLE_PATH;
    if (s->prefix_regex) {
        nm->path_kind = PATH_REGEX; /* case_sensitive does not apply, as in Envoy */
        nm->path_re = full_regex(b, "prefix_regex", s->prefix);
        return nm->path_re != NULL;
    }
    nm->path_kind = s->prefix_exact ? PATH_EXACT : PATH_PREFIX;
    nm->ci = !s->case_sensitive;
    nm->key = nm->ci ? lower_dup(b->t, s->prefix, nm->prefix.len) : nm->prefix;
    if (nm->path_kind == PATH_PREFIX)
        nm->route._matched_len = (uint32_t)nm->prefix.len;
    return true;
}

static bool norm_hostname(struct builder *b, const struct pt_route_spec *s, struct norm *nm)
{
    nm->host = lower_dup(b->t, s->hostname, strlen(s->hostname));
    pt_hostglob__parse(nm->host.ptr, nm->host.len, &nm->glob);
    if (nm->glob.kind == PT_HOSTGLOB_INVALID)
        return fail(b, "hostname \"%.200s\": '*' may only be the first or the last character, "
                    "and a hostname cannot start with '.'", s->hostname);
    if (nm->glob.kind == PT_HOSTGLOB_ANY) {
        nm->host = (struct pt_str){ 0 };
        return true;
    }
    nm->host_kind = HOST_GLOB;
    return true;
}

/* norm_host: the host constraint. hostname (a glob) wins over host (exact or regex), which wins
 * over an :authority header constraint, as in Emissary. */
static bool norm_host(struct builder *b, const struct pt_route_spec *s, struct norm *nm)
{
    nm->host_kind = HOST_ANY;
    if (s->hostname != NULL && s->hostname[0] != '\0') {
        nm->host_set = true;
        return norm_hostname(b, s, nm);
    }
    if (s->host == NULL || s->host[0] == '\0')
        return true;
    nm->host_set = nm->host_from_host = true;
    nm->hdr_weight += (uint32_t)(strlen(":authority") + strlen(s->host) + s->host_regex);
    if (s->host_regex) {
        nm->host = dup_str(b, s->host);
        nm->host_kind = HOST_REGEX;
        nm->host_re = full_regex(b, "host_regex", s->host);
        return nm->host_re != NULL;
    }
    if (strchr(s->host, '*') != NULL)
        return fail(b, "host \"%.200s\": '*' is not allowed in an exact host (use hostname for "
                    "a glob)", s->host);
    nm->host = lower_dup(b->t, s->host, strlen(s->host));
    pt_hostglob__parse(nm->host.ptr, nm->host.len, &nm->glob);
    if (nm->glob.kind != PT_HOSTGLOB_EXACT)
        return fail(b, "host \"%.200s\" cannot start with '.'", s->host);
    nm->host_kind = HOST_GLOB;
    return true;
}

static bool norm_method(struct builder *b, const struct pt_route_spec *s, struct norm *nm)
{
    if (s->method == NULL || s->method[0] == '\0')
        return true;
    nm->method = dup_str(b, s->method);
    nm->method_regex = s->method_regex;
    nm->hdr_weight += (uint32_t)(strlen(":method") + nm->method.len + s->method_regex);
    if (!s->method_regex)
        return true;
    nm->method_re = full_regex(b, "method_regex", s->method);
    return nm->method_re != NULL;
}

static enum kv_source header_source(struct pt_str lname)
{
    if (pt_str_eq(lname, PT_STR_LIT(":authority")) || pt_str_eq(lname, PT_STR_LIT("host")))
        return SRC_AUTHORITY;
    if (pt_str_eq(lname, PT_STR_LIT(":method")))
        return SRC_METHOD;
    return SRC_HEADER;
}

/* add_kv: appends one header (<header>) or query-parameter constraint of <nm> to the table's kvs,
 * and its Emissary length to <weight>. */
static bool add_kv(struct builder *b, const struct pt_match_kv *m, bool header, struct norm *nm,
                   uint32_t *weight)
{
    const char *what = header ? "header" : "query parameter";
    struct kv *kv = &b->t->kvs[b->t->nkvs];

    if (m->name == NULL || m->name[0] == '\0')
        return fail(b, "%s without a name", what);
    if (m->regex && m->value == NULL)
        return fail(b, "%s %.200s: a regex match needs a value", what, m->name);
    *kv = (struct kv){ .source = SRC_QUERY, .kind = KV_PRESENT };
    kv->name = header ? lower_dup(b->t, m->name, strlen(m->name)) : dup_str(b, m->name);
    if (header)
        kv->source = header_source(kv->name);
    if (kv->source == SRC_AUTHORITY && nm->host_set)
        return true; /* hostname/host win over an :authority header */
    if (m->value != NULL) {
        kv->value = dup_str(b, m->value);
        kv->kind = m->regex ? KV_REGEX : KV_EXACT;
    }
    if (m->regex) {
        char what_name[256];
        snprintf(what_name, sizeof(what_name), "%s %.200s", what, m->name);
        if ((kv->re = full_regex(b, what_name, m->value)) == NULL)
            return false;
    }
    *weight += (uint32_t)(kv->name.len + (m->value ? kv->value.len : 1) + m->regex);
    b->t->nkvs++;
    return true;
}

static int cmp_kv_q(const void *a, const void *b);

static bool norm_kvs(struct builder *b, const struct pt_route_spec *s, struct norm *nm)
{
    struct pt_route_table *t = b->t;

    nm->kv_first = t->nkvs;
    for (size_t i = 0; i < s->nheaders; i++)
        if (!add_kv(b, &s->headers[i], true, nm, &nm->hdr_weight))
            return false;
    nm->nhdr = t->nkvs - nm->kv_first;
    for (size_t i = 0; i < s->nquery_parameters; i++)
        if (!add_kv(b, &s->query_parameters[i], false, nm, &nm->qp_weight))
            return false;
    nm->nqp = t->nkvs - nm->kv_first - nm->nhdr;
    /* Canonical order, so that the same constraints written in another order group together. */
    qsort(t->kvs + nm->kv_first, nm->nhdr, sizeof(struct kv), cmp_kv_q);
    qsort(t->kvs + nm->kv_first + nm->nhdr, nm->nqp, sizeof(struct kv), cmp_kv_q);
    return true;
}

static bool norm_rest(struct builder *b, const struct pt_route_spec *s, struct norm *nm)
{
    if (s->weight < -1 || s->weight > 100)
        return fail(b, "weight %d is invalid (0..100, or -1 for unset)", s->weight);
    nm->weight = s->weight;
    nm->shadow = s->shadow;
    return pt_route__rewrite_setup(b->t, &nm->route, s, b->err, sizeof(b->err)) == 0;
}

/* norm_spec: validates and normalises spec <i> into <nm>; on failure, undoes what it added to
 * the table (but for a few arena bytes) and leaves the reason in b->err. */
static bool norm_spec(struct builder *b, uint32_t i, struct norm *nm)
{
    const struct pt_route_spec *s = &b->specs[i];
    struct pt_route_table *t = b->t;
    size_t codes_mark = t->ncodes;
    uint32_t kv_mark = t->nkvs;

    *nm = (struct norm){ .route = { .action = s->action, .spec_index = i } };
    if (norm_path(b, s, nm) && norm_host(b, s, nm) && norm_method(b, s, nm) &&
        norm_kvs(b, s, nm) && norm_rest(b, s, nm))
        return true;
    while (t->ncodes > codes_mark)
        pcre2_code_free(t->codes[--t->ncodes]);
    t->nkvs = kv_mark;
    return false;
}

/* ---- ranking ---------------------------------------------------------------------------------- */

static int cmp_bytes(struct pt_str a, struct pt_str b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;

    return c ? c : (a.len > b.len) - (a.len < b.len);
}

/* cmp_pieces: compares the concatenations of <na> slices <a> and <nb> slices <b>. */
static int cmp_pieces(const struct pt_str *a, size_t na, const struct pt_str *b, size_t nb)
{
    size_t ia = 0, oa = 0, ib = 0, ob = 0;

    for (;;) {
        while (ia < na && oa == a[ia].len)
            ia++, oa = 0;
        while (ib < nb && ob == b[ib].len)
            ib++, ob = 0;
        if (ia == na || ib == nb)
            return (ia < na) - (ib < nb);
        unsigned char ca = (unsigned char)a[ia].ptr[oa++], cb = (unsigned char)b[ib].ptr[ob++];
        if (ca != cb)
            return ca < cb ? -1 : 1;
    }
}

/* cmp_kv: orders constraints by Emissary's key "name-value" ("*" for presence), then kind. */
static int cmp_kv(const struct kv *a, const struct kv *b)
{
    struct pt_str pa[3] = { a->name, PT_STR_LIT("-"), a->value.ptr ? a->value : PT_STR_LIT("*") };
    struct pt_str pb[3] = { b->name, PT_STR_LIT("-"), b->value.ptr ? b->value : PT_STR_LIT("*") };
    int c = cmp_pieces(pa, 3, pb, 3);

    return c ? c : (int)a->kind - (int)b->kind;
}

static int cmp_kv_q(const void *a, const void *b)
{
    return cmp_kv(a, b);
}

static int cmp_kv_lists(const struct kv *a, uint32_t na, const struct kv *b, uint32_t nb)
{
    for (uint32_t i = 0; i < na && i < nb; i++) {
        int c = cmp_kv(&a[i], &b[i]);
        if (c)
            return c;
    }
    return (na > nb) - (na < nb);
}

static int host_specificity(const struct norm *n)
{
    if (n->host_kind == HOST_GLOB)
        return n->glob.kind == PT_HOSTGLOB_EXACT ? 3 : 2;
    return n->host_kind == HOST_REGEX ? 1 : 0;
}

#define DESC(x, y)                          \
    do {                                    \
        if ((x) != (y))                     \
            return (x) > (y) ? -1 : 1;      \
    } while (0)

/* cmp_tiebreak: what Emissary leaves to chance: the more specific host first, then exact before
 * prefix before regex, case-sensitive first, a set method first. */
static int cmp_tiebreak(const struct norm *a, const struct norm *b)
{
    int c;

    DESC(host_specificity(a), host_specificity(b));
    DESC(a->host.len, b->host.len);
    if ((c = cmp_bytes(a->host, b->host)) != 0)
        return c;
    DESC(a->host_from_host, b->host_from_host);
    DESC(a->path_kind, b->path_kind);
    DESC(!a->ci, !b->ci);
    DESC(a->method.ptr != NULL, b->method.ptr != NULL);
    DESC(!a->method_regex, !b->method_regex);
    return 0;
}

/* cmp_group_key: Emissary's route_weight, descending, then cmp_tiebreak(). Zero iff <a> and <b>
 * have the same match keys, i.e. belong to the same canary group. */
static int cmp_group_key(const struct norm *a, const struct norm *b, const struct kv *kvs)
{
    struct pt_str ma = a->method.ptr ? a->method : PT_STR_LIT("GET");
    struct pt_str mb = b->method.ptr ? b->method : PT_STR_LIT("GET");
    int c;

    DESC(a->precedence, b->precedence);
    DESC(a->prefix.len, b->prefix.len);
    DESC(a->hdr_weight, b->hdr_weight);
    DESC(a->qp_weight, b->qp_weight);
    if ((c = cmp_bytes(a->prefix, b->prefix)) != 0)
        return -c;
    if ((c = cmp_bytes(ma, mb)) != 0)
        return -c;
    if ((c = cmp_kv_lists(kvs + a->kv_first, a->nhdr, kvs + b->kv_first, b->nhdr)) != 0)
        return -c;
    c = cmp_kv_lists(kvs + a->kv_first + a->nhdr, a->nqp, kvs + b->kv_first + b->nhdr, b->nqp);
    if (c != 0)
        return -c;
    return cmp_tiebreak(a, b);
}

static int cmp_norm(const void *pa, const void *pb, void *ctx)
{
    const struct norm *a = pa, *b = pb;
    int c = cmp_group_key(a, b, ctx);

    return c ? c : (a->route.spec_index > b->route.spec_index) - (a->route.spec_index <
                                                                   b->route.spec_index);
}

/* ---- groups ----------------------------------------------------------------------------------- */

/* share_members: gives each member of <nm>[0..n) its cumulative canary share and returns the
 * total. Weighted members get their weight; unweighted ones split what the weighted leave of 100
 * (nothing when they take 100 or more). A member is picked with probability share / total, so
 * weights summing to more (or, without unweighted members, less) than 100 act as proportions. */
static uint32_t share_members(struct norm *nm, uint32_t n)
{
    uint32_t weighted = 0, nunweighted = 0, remainder, cum = 0, k = 0;

    for (uint32_t i = 0; i < n; i++) {
        if (nm[i].weight >= 0)
            weighted += (uint32_t)nm[i].weight;
        else
            nunweighted++;
    }
    remainder = weighted < 100 ? 100 - weighted : 0;
    for (uint32_t i = 0; i < n; i++) {
        if (nm[i].weight >= 0) {
            cum += (uint32_t)nm[i].weight;
        } else {
            cum += remainder / nunweighted + (k < remainder % nunweighted);
            k++;
        }
        nm[i].route._share_end = cum;
    }
    return cum;
}

static void add_entry(struct builder *b, const struct norm *nm, uint32_t gi)
{
    int trie = nm->ci;
    bool hashed = nm->host_kind == HOST_GLOB && nm->glob.kind == PT_HOSTGLOB_EXACT &&
                  !nm->glob.has_port;

    b->entries[trie][b->nentries[trie]++] = (struct tentry){
        .key = nm->key, .group = gi, .exact = nm->path_kind == PATH_EXACT, .hashed = hashed,
    };
}

/* regex_literal_prefix: the literal bytes every match of the anchored regex <re> starts with, so
 * that a match can skip a regex route with one memcmp. Conservative: stops at the first
 * metacharacter, drops the byte before a quantifier that allows zero repeats, and gives up on any
 * alternation. */
static struct pt_str regex_literal_prefix(struct pt_str re)
{
    const char *p = re.ptr + (re.ptr[0] == '^');
    size_t n = re.len - (size_t)(p - re.ptr), i = 0;

    if (memchr(re.ptr, '|', re.len) != NULL)
        return pt_str_make(re.ptr, 0);
    while (i < n && strchr("\\^$.|?*+()[]{}", p[i]) == NULL)
        i++;
    if (i > 0 && i < n && strchr("?*{", p[i]) != NULL)
        i--;
    return pt_str_make(p, i);
}

/* take_shadow: moves the members of <nm>[0..*n) that are shadows out of the group, keeping the
 * others in order, and returns the first shadow's action (by input order: the norms of a group
 * are sorted so), or NULL. Later shadows, and a shadow with no member to mirror, are rejected
 * (Emissary: "cannot accept ... as second shadow"). */
static void *take_shadow(struct builder *b, struct norm *nm, uint32_t *n)
{
    void *action = NULL;
    size_t first = 0;
    uint32_t k = 0, nshadow = 0;

    for (uint32_t i = 0; i < *n; i++) {
        if (!nm[i].shadow) {
            nm[k++] = nm[i]; /* k <= i: a member only moves down */
            continue;
        }
        if (nshadow++ == 0) {
            action = nm[i].route.action;
            first = nm[i].route.spec_index;
            continue;
        }
        if (b->on_reject != NULL)
            b->on_reject(b->reject_ctx, nm[i].route.spec_index,
                         "shadow: a second shadow of the same match keys; only the first is used");
    }
    if (nshadow > 0 && k == 0) {
        if (b->on_reject != NULL)
            b->on_reject(b->reject_ctx, first,
                         "shadow: no Mapping with the same match keys to mirror; nothing is mirrored");
        action = NULL;
    }
    *n = k;
    return action;
}

/* add_group: makes the canary group of <nm>[0..n), which share their match keys. A group whose
 * members all weigh 0 never receives traffic and is left out. Its shadow, if any, is no member:
 * every member carries its action instead. */
static void add_group(struct builder *b, struct norm *nm, uint32_t n)
{
    struct pt_route_table *t = b->t;
    void *shadow = take_shadow(b, nm, &n);
    uint32_t total = n ? share_members(nm, n) : 0;

    if (total == 0)
        return;
    uint32_t gi = t->ngroups++;
    t->groups[gi] = (struct group){
        .route_first = t->nroutes, .nroutes = n, .total_share = total,
        .checks = (nm->host_kind != HOST_ANY ? CHECK_HOST : 0) |
                  (nm->method.ptr ? CHECK_METHOD : 0) | (nm->nhdr + nm->nqp ? CHECK_KVS : 0),
    };
    t->rules[gi] = (struct rules){
        .path_kind = nm->path_kind, .host_kind = nm->host_kind,
        .path_re = nm->path_re, .host_re = nm->host_re, .method_re = nm->method_re,
        .glob = nm->glob, .method = nm->method,
        .kv_first = nm->kv_first, .nkv = nm->nhdr + nm->nqp,
    };
    for (uint32_t i = 0; i < n; i++) {
        t->routes[t->nroutes] = nm[i].route;
        t->routes[t->nroutes++].shadow = shadow;
    }
    if (nm->path_kind == PATH_REGEX) {
        t->rules[gi].re_lit = regex_literal_prefix(nm->prefix);
        t->regex_groups[t->nregex++] = gi;
    }
    else
        add_entry(b, nm, gi);
}

static void make_groups(struct builder *b)
{
    struct pt_route_table *t = b->t;
    uint32_t n = b->nnorms;

    t->groups = pt_xcalloc(n, sizeof(*t->groups));
    t->rules = pt_xcalloc(n, sizeof(*t->rules));
    t->routes = pt_xcalloc(n, sizeof(*t->routes));
    t->regex_groups = pt_xcalloc(n, sizeof(*t->regex_groups));
    b->entries[0] = pt_xcalloc(n, sizeof(struct tentry));
    b->entries[1] = pt_xcalloc(n, sizeof(struct tentry));
    for (uint32_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && cmp_group_key(&b->norms[i], &b->norms[j], t->kvs) == 0; j++)
            ;
        add_group(b, &b->norms[i], j - i);
    }
}

/* ---- tries ------------------------------------------------------------------------------------ */

static int cmp_tentry(const void *pa, const void *pb)
{
    const struct tentry *a = pa, *b = pb;
    int c = cmp_bytes(a->key, b->key);

    if (c == 0)
        c = (int)a->exact - (int)b->exact;
    return c ? c : (a->group > b->group) - (a->group < b->group);
}

/* attach: files the entries of key <k> at node <ni>: generic ones in cands after the two counts
 * (prefix ones first, then exact ones, each by rank since the entries are sorted so), exact-host
 * ones in b->hashed. */
static void attach(struct builder *b, struct node *nd, uint32_t ni, const struct tentry *e,
                   const struct tkey *k)
{
    struct pt_route_table *t = b->t;
    uint32_t off = t->ncands, nprefix = 0, nexact = 0;

    t->ncands += 2;
    for (uint32_t i = k->first; i < k->first + k->count; i++) {
        const struct tentry *en = &e[i];
        if (en->group < t->subtree_rank[ni])
            t->subtree_rank[ni] = en->group;
        if (en->hashed) {
            b->hashed[b->nhashed++] = (struct hentry){
                .key = ni * 2 + en->exact, .group = en->group, .host = t->rules[en->group].glob.lit,
            };
            nd->hashed |= en->exact ? HASHED_EXACT : HASHED_PREFIX;
            continue;
        }
        t->cands[t->ncands++] = en->group;
        if (en->exact)
            nexact++;
        else
            nprefix++;
    }
    t->cands[off] = nprefix;
    t->cands[off + 1] = nexact;
    nd->cands = off;
}

static uint32_t common_prefix(struct pt_str a, struct pt_str b, uint32_t from)
{
    uint32_t n = (uint32_t)(a.len < b.len ? a.len : b.len), i = from;

    while (i < n && a.ptr[i] == b.ptr[i])
        i++;
    return i;
}

static void set_label(struct pt_route_table *t, struct node *nd, uint32_t ni, const char *p,
                      uint32_t len)
{
    nd->label_len = (uint16_t)len;
    if (len <= LABEL_INLINE)
        memcpy(nd->label.bytes, p, len);
    else
        nd->label.ptr = p;
    t->first_bytes[ni] = len ? (uint8_t)p[0] : 0;
}

/* trie_node: builds, into node slot <ni>, the node for the sorted distinct keys [lo, hi), which
 * share their first <depth> bytes, and its subtree, children in consecutive slots. Recursion
 * depth is at most the number of branching nodes on one key: a little stack per prefix byte. */
static void trie_node(struct builder *b, const struct tentry *e, const struct tkey *keys,
                      uint32_t lo, uint32_t hi, uint32_t depth, uint32_t ni)
{
    struct pt_route_table *t = b->t;
    uint32_t len = common_prefix(keys[lo].key, keys[hi - 1].key, depth), i = lo, c = 0;
    struct node nd = { .cands = NONE };

    t->subtree_rank[ni] = NONE;
    set_label(t, &nd, ni, keys[lo].key.ptr + depth, len - depth);
    if (keys[lo].key.len == len)
        attach(b, &nd, ni, e, &keys[i++]);
    for (uint32_t j = i; j < hi; nd.nchild++) {
        char byte = keys[j].key.ptr[len];
        while (j < hi && keys[j].key.ptr[len] == byte)
            j++;
    }
    nd.first_child = t->nnodes;
    t->nnodes += nd.nchild;
    while (i < hi) {
        char byte = keys[i].key.ptr[len];
        uint32_t j = i + 1, child = nd.first_child + c++;
        while (j < hi && keys[j].key.ptr[len] == byte)
            j++;
        trie_node(b, e, keys, i, j, len, child);
        if (t->subtree_rank[child] < t->subtree_rank[ni])
            t->subtree_rank[ni] = t->subtree_rank[child];
        i = j;
    }
    if (nd.nchild <= KIDS_INLINE)
        memcpy(nd.kids, t->first_bytes + nd.first_child, nd.nchild);
    t->nodes[ni] = nd;
}

static uint32_t build_trie(struct builder *b, struct tentry *e, uint32_t n)
{
    struct tkey *keys;
    uint32_t nkeys = 0, root;

    if (n == 0)
        return NONE;
    qsort(e, n, sizeof(*e), cmp_tentry);
    keys = pt_xmalloc(n * sizeof(*keys));
    for (uint32_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && pt_str_eq(e[i].key, e[j].key); j++)
            ;
        keys[nkeys++] = (struct tkey){ .key = e[i].key, .first = i, .count = j - i };
    }
    root = b->t->nnodes++;
    trie_node(b, e, keys, 0, nkeys, 0, root);
    free(keys);
    return root;
}

/* ---- host index ------------------------------------------------------------------------------- */

/* lower8: the 8 bytes of <x> with ASCII 'A'..'Z' lowercased, all at once. */
static inline uint64_t lower8(uint64_t x)
{
    uint64_t low7 = x & 0x7f7f7f7f7f7f7f7full;
    uint64_t ge_a = low7 + 0x3f3f3f3f3f3f3f3full; /* high bit set from 'A' (0x41) up */
    uint64_t gt_z = low7 + 0x2525252525252525ull; /* high bit set from 'Z' + 1 (0x5b) up */
    uint64_t upper = ge_a & ~gt_z & ~x & 0x8080808080808080ull;

    return x | (upper >> 2);
}

/* load8: the <n> (<= 8) bytes at <p>, zero-padded. */
static inline uint64_t load8(const char *p, size_t n)
{
    uint64_t x = 0;

    memcpy(&x, p, n < 8 ? n : 8);
    return x;
}

/* load_bytes: load8(<p>, <n>) for bytes inside the readable buffer [<base>, <end>), with one
 * 8-byte load where the buffer allows it (a variable-size copy costs a store-forwarding stall). */
static inline uint64_t load_bytes(const char *p, size_t n, const char *base, const char *end)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t w;

    if (n == 0)
        return 0;
    if (end - p >= 8) {
        memcpy(&w, p, 8);
    } else if (end - base >= 8) { /* the last 8 bytes of the buffer, shifted down */
        memcpy(&w, end - 8, 8);
        w >>= 8 * (8 - (end - p));
    } else {
        return load8(p, n);
    }
    return n < 8 ? w & ((1ull << (8 * n)) - 1) : w;
#else
    (void)base, (void)end;
    return load8(p, n);
#endif
}

/* host_hash: a hash of <host> lowercased, 8 bytes a step; <end> is the end of the readable
 * buffer that holds it. */
static uint64_t host_hash(struct pt_str host, const char *end)
{
    uint64_t h = 0xcbf29ce484222325ull ^ host.len;

    for (size_t i = 0; i < host.len; i += 8) {
        size_t n = host.len - i < 8 ? host.len - i : 8;
        h ^= lower8(load_bytes(host.ptr + i, n, host.ptr, end));
        h *= 0x9e3779b97f4a7c15ull;
        h ^= h >> 32;
    }
    return h;
}

/* host_eq: whether <host> lowercased equals <lower>, a lowercase table string; <end> is the end
 * of the readable buffer that holds <host>. */
static bool host_eq(struct pt_str lower, struct pt_str host, const char *end)
{
    if (lower.len != host.len)
        return false;
    for (size_t i = 0; i < host.len; i += 8) {
        size_t n = host.len - i < 8 ? host.len - i : 8;
        if (load8(lower.ptr + i, 8) != lower8(load_bytes(host.ptr + i, n, host.ptr, end)))
            return false;
    }
    return true;
}

static uint32_t slot_hash(uint64_t hh, uint32_t key)
{
    uint64_t x = hh ^ ((uint64_t)key * 0x9e3779b97f4a7c15ull);

    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    return (uint32_t)x;
}

static int cmp_hentry(const void *pa, const void *pb)
{
    const struct hentry *a = pa, *b = pb;
    int c;

    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    if ((c = cmp_bytes(a->host, b->host)) != 0)
        return c;
    return (a->group > b->group) - (a->group < b->group);
}

static void insert_slot(struct pt_route_table *t, const struct host_slot *s)
{
    uint32_t i = slot_hash(host_hash(s->host, s->host.ptr + s->host.len + ARENA_PAD), s->key) &
                 t->slot_mask;

    while (t->slots[i].key != NONE)
        i = (i + 1) & t->slot_mask;
    t->slots[i] = *s;
}

/* build_host_index: one slot per (node key, host), its groups by rank in cands; the table is at
 * most half full so that probes stay short. */
static void build_host_index(struct builder *b)
{
    struct pt_route_table *t = b->t;
    uint32_t n = b->nhashed, nslots = 0, cap = 16;

    if (n == 0)
        return;
    qsort(b->hashed, n, sizeof(*b->hashed), cmp_hentry);
    for (uint32_t i = 0; i < n; i++)
        nslots += i == 0 || b->hashed[i].key != b->hashed[i - 1].key ||
                  !pt_str_eq(b->hashed[i].host, b->hashed[i - 1].host);
    while (cap < 2 * nslots)
        cap *= 2;
    t->slots = pt_xmalloc(cap * sizeof(*t->slots));
    t->slot_mask = cap - 1;
    for (uint32_t i = 0; i < cap; i++)
        t->slots[i].key = NONE;
    for (uint32_t i = 0, j; i < n; i = j) {
        struct host_slot s = { .key = b->hashed[i].key, .cand_off = t->ncands,
                               .host = b->hashed[i].host };
        for (j = i; j < n && b->hashed[j].key == s.key && pt_str_eq(b->hashed[j].host, s.host); j++)
            t->cands[t->ncands++] = b->hashed[j].group;
        s.ncand = j - i;
        insert_slot(t, &s);
    }
}

static void build_index(struct builder *b)
{
    struct pt_route_table *t = b->t;
    uint32_t n = b->nentries[0] + b->nentries[1];

    /* A radix trie over k keys has at most 2k nodes; each entry sits in one list, and each
     * node with entries adds two counts. Nodes are 32 bytes, two to a cache line. */
    t->nodes = aligned_alloc(64, (2 * n + 2) * sizeof(*t->nodes));
    if (t->nodes == NULL)
        t->nodes = pt_xmalloc((2 * n + 2) * sizeof(*t->nodes));
    t->first_bytes = pt_xcalloc(2 * n + 2, sizeof(*t->first_bytes));
    t->subtree_rank = pt_xcalloc(2 * n + 2, sizeof(*t->subtree_rank));
    t->cands = pt_xcalloc(3 * n + 1, sizeof(*t->cands));
    b->hashed = pt_xcalloc(n + 1, sizeof(*b->hashed));
    t->root[0] = build_trie(b, b->entries[0], b->nentries[0]);
    t->root[1] = build_trie(b, b->entries[1], b->nentries[1]);
    build_host_index(b);
}

static void build_free(struct builder *b)
{
    free(b->norms);
    free(b->entries[0]);
    free(b->entries[1]);
    free(b->hashed);
}

struct pt_route_table *pt_route_table_build_partial(const struct pt_route_spec *specs, size_t n,
                                                    pt_route_reject_cb on_reject, void *ctx)
{
    struct pt_route_table *t = pt_xcalloc(1, sizeof(*t));
    struct builder b = { .t = t, .specs = specs, .on_reject = on_reject, .reject_ctx = ctx };
    size_t nkvs = 0;

    t->root[0] = t->root[1] = NONE;
    for (size_t i = 0; i < n; i++)
        nkvs += specs[i].nheaders + specs[i].nquery_parameters;
    t->kvs = pt_xcalloc(nkvs + 1, sizeof(*t->kvs));
    b.norms = pt_xcalloc(n + 1, sizeof(*b.norms));
    for (size_t i = 0; i < n; i++) {
        bool ok = i < (UINT32_MAX >> 3) ? norm_spec(&b, (uint32_t)i, &b.norms[b.nnorms])
                                        : fail(&b, "too many routes");
        if (ok)
            b.nnorms++;
        else if (on_reject != NULL)
            on_reject(ctx, i, b.err);
    }
    t->naccepted = b.nnorms;
    qsort_r(b.norms, b.nnorms, sizeof(*b.norms), cmp_norm, t->kvs);
    make_groups(&b);
    build_index(&b);
    build_free(&b);
    return t;
}

struct first_error {
    char *buf;
    size_t len;
    bool failed;
};

static void keep_first_error(void *ctx, size_t spec_index, const char *message)
{
    struct first_error *fe = ctx;

    if (fe->failed)
        return;
    fe->failed = true;
    if (fe->len > 0)
        snprintf(fe->buf, fe->len, "spec %zu: %s", spec_index, message);
}

struct pt_route_table *pt_route_table_build(const struct pt_route_spec *specs, size_t n, char *err,
                                            size_t errlen)
{
    struct first_error fe = { .buf = err, .len = errlen };
    struct pt_route_table *t = pt_route_table_build_partial(specs, n, keep_first_error, &fe);

    if (fe.failed) {
        pt_route_table_free(t);
        return NULL;
    }
    return t;
}

/* ---- matching --------------------------------------------------------------------------------- */

/* The state of one match: the request, and the best-ranked passing group found so far. */
struct match {
    const struct pt_route_table *t;
    const struct pt_route_req *req;
    struct pt_str path; /* req->path, never with a NULL ptr */
    struct pt_str host; /* the authority without its port, once host_ready */
    uint64_t host_hash; /* its hash, once host_ready and when the table has a host index */
    bool host_ready;
    uint32_t best; /* group index (== rank), NONE while nothing matched */
};

enum value_state { VAL_ABSENT, VAL_PRESENT, VAL_TOO_LONG };

/* request_host: the authority without its port, worked out on first use only: most tables
 * have no host constraints at all. */
static struct pt_str request_host(struct match *m)
{
    if (!m->host_ready) {
        m->host = pt_authority_strip_port(m->req->authority);
        if (m->t->slots != NULL)
            m->host_hash = host_hash(m->host, m->req->authority.ptr + m->req->authority.len);
        m->host_ready = true;
    }
    return m->host;
}

static bool full_match(const pcre2_code *re, struct pt_str s)
{
    pcre2_match_data *md = pt_route__match_data();

    /* >= 0: a return of 0 means a match with more groups than the ovector holds */
    return md != NULL &&
           pcre2_match(re, (PCRE2_SPTR)(s.ptr ? s.ptr : ""), s.len, 0, 0, md, mctx) >= 0;
}

/* header_value: the value of header <name> in <req>, repeated headers joined with ',' into <buf>
 * (HEADER_JOIN_MAX bytes) as Envoy joins them for matching. */
static enum value_state header_value(const struct pt_route_req *req, struct pt_str name, char *buf,
                                     struct pt_str *out)
{
    size_t found = 0, n = 0;

    for (size_t i = 0; i < req->nheaders; i++) {
        struct pt_str v = req->headers[i].value;
        if (!pt_str_caseeq(req->headers[i].name, name))
            continue;
        if (found++ == 0) {
            *out = v;
            continue;
        }
        if (found == 2) {
            if (out->len > HEADER_JOIN_MAX)
                return VAL_TOO_LONG;
            memcpy(buf, out->ptr, out->len);
            n = out->len;
        }
        if (n + 1 + v.len > HEADER_JOIN_MAX)
            return VAL_TOO_LONG;
        buf[n++] = ',';
        if (v.len)
            memcpy(buf + n, v.ptr, v.len);
        n += v.len;
        *out = pt_str_make(buf, n);
    }
    return found ? VAL_PRESENT : VAL_ABSENT;
}

/* query_value: the raw value of the first query parameter named <name> ("" for "a" or "a="). */
static enum value_state query_value(struct pt_str q, struct pt_str name, struct pt_str *out)
{
    if (q.len == 0)
        return VAL_ABSENT;
    const char *p = q.ptr, *end = q.ptr + q.len;

    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        size_t nlen = (size_t)((eq ? eq : e) - p);
        if (nlen == name.len && memcmp(p, name.ptr, nlen) == 0) {
            *out = eq ? pt_str_make(eq + 1, (size_t)(e - eq - 1)) : (struct pt_str){ 0 };
            return VAL_PRESENT;
        }
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    return VAL_ABSENT;
}

static bool kv_ok(const struct match *m, const struct kv *kv)
{
    const struct pt_route_req *req = m->req;
    char buf[HEADER_JOIN_MAX];
    struct pt_str v = { 0 };
    enum value_state st;

    switch (kv->source) {
    case SRC_AUTHORITY:
        v = req->authority;
        st = v.len ? VAL_PRESENT : VAL_ABSENT;
        break;
    case SRC_METHOD:
        v = req->method;
        st = v.len ? VAL_PRESENT : VAL_ABSENT;
        break;
    case SRC_QUERY:
        st = query_value(req->query, kv->name, &v);
        break;
    default:
        st = header_value(req, kv->name, buf, &v);
        break;
    }
    if (st == VAL_ABSENT)
        return false;
    if (kv->kind == KV_PRESENT)
        return true;
    if (st == VAL_TOO_LONG)
        return false;
    return kv->kind == KV_EXACT ? pt_str_eq(v, kv->value) : full_match(kv->re, v);
}

static bool host_ok(struct match *m, const struct rules *r)
{
    struct pt_str authority = m->req->authority, host = request_host(m);

    if (r->host_kind == HOST_GLOB)
        return pt_hostglob__test(&r->glob, r->glob.has_port ? authority : host);
    return full_match(r->host_re, authority) ||
           (host.len != authority.len && full_match(r->host_re, host));
}

/* group_ok: whether the request meets every constraint of group <gi> but the path, and but
 * those in <known> (CHECK_* already verified). */
static bool group_ok(struct match *m, uint32_t gi, uint8_t known)
{
    uint8_t checks = m->t->groups[gi].checks & ~known;
    const struct rules *r = &m->t->rules[gi];

    if (checks == 0)
        return true;
    if ((checks & CHECK_HOST) && !host_ok(m, r))
        return false;
    if ((checks & CHECK_METHOD) && !(r->method_re ? full_match(r->method_re, m->req->method)
                                                  : pt_str_eq(r->method, m->req->method)))
        return false;
    for (uint32_t i = 0; i < r->nkv; i++)
        if (!kv_ok(m, &m->t->kvs[r->kv_first + i]))
            return false;
    return true;
}

static const struct host_slot *find_slot(struct match *m, uint32_t key)
{
    const struct pt_route_table *t = m->t;
    struct pt_str host = request_host(m);

    for (uint32_t i = slot_hash(m->host_hash, key) & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        const struct host_slot *s = &t->slots[i];
        if (s->key == NONE)
            return NULL;
        if (s->key == key && host_eq(s->host, host, m->req->authority.ptr + m->req->authority.len))
            return s;
    }
}

/* consider: the groups of node <ni> whose path matched (its prefix groups, or its exact ones
 * when <exact>), plus those filed under the request's host, merged by rank; the first that beats
 * the best so far and passes becomes the best. */
static void consider(struct match *m, const struct node *nd, uint32_t ni, bool exact)
{
    const struct pt_route_table *t = m->t;
    const uint32_t *a = NULL, *h = NULL;
    uint32_t na = 0, nh = 0, i = 0, j = 0;

    if (nd->cands != NONE) {
        const uint32_t *c = t->cands + nd->cands;
        a = c + 2 + (exact ? c[0] : 0);
        na = exact ? c[1] : c[0];
    }
    if (nd->hashed & (exact ? HASHED_EXACT : HASHED_PREFIX)) {
        const struct host_slot *s = find_slot(m, ni * 2 + exact);
        if (s != NULL) {
            h = t->cands + s->cand_off;
            nh = s->ncand;
        }
    }
    for (;;) {
        uint32_t ga = i < na ? a[i] : NONE, gh = j < nh ? h[j] : NONE;
        uint32_t g = ga < gh ? ga : gh;
        if (g >= m->best)
            return;
        if (group_ok(m, g, ga < gh ? 0 : CHECK_HOST)) { /* the host index checked the host */
            m->best = g;
            return;
        }
        if (ga < gh)
            i++;
        else
            j++;
    }
}

/* label_eq: whether the <nd>'s label is at <p> (lowercased first when <fold>); the caller has
 * checked that <p> has label_len bytes. */
/* label_eq: whether <nd>'s label is at <p> (lowercased first when <fold>); the caller has
 * checked that <p> has label_len bytes. Labels are short: a byte loop beats anything cleverer. */
static inline bool label_eq(const struct node *nd, const char *p, bool fold)
{
    uint32_t n = nd->label_len;
    const char *l = n <= LABEL_INLINE ? nd->label.bytes : nd->label.ptr;

    if (!fold && n > LABEL_INLINE)
        return memcmp(l, p, n) == 0;
    for (uint32_t i = 0; i < n; i++)
        if (l[i] != (fold ? pt_lower(p[i]) : p[i]))
            return false;
    return true;
}

static inline uint32_t find_child(const struct pt_route_table *t, const struct node *nd, uint8_t c)
{
    const uint8_t *fb = nd->nchild <= KIDS_INLINE ? nd->kids : t->first_bytes + nd->first_child;

    for (uint32_t i = 0; i < nd->nchild; i++)
        if (fb[i] == c)
            return nd->first_child + i;
    return NONE;
}

/* walk: follows the path down the trie from <ni> (lowercasing it when <fold>), considering the
 * groups of every node whose prefix the path has, until the path leaves the trie or no group
 * below can beat the best so far. */
static inline __attribute__((always_inline)) void walk(struct match *m, uint32_t ni, bool fold)
{
    const struct pt_route_table *t = m->t;
    struct pt_str path = m->path;
    size_t pos = 0;

    while (ni != NONE) {
        const struct node *nd = &t->nodes[ni];
        if (nd->label_len > path.len - pos || !label_eq(nd, path.ptr + pos, fold) ||
            (m->best != NONE && t->subtree_rank[ni] >= m->best))
            return;
        pos += nd->label_len;
        if (nd->cands != NONE || nd->hashed)
            consider(m, nd, ni, false);
        if (pos == path.len) {
            if (nd->cands != NONE || nd->hashed)
                consider(m, nd, ni, true);
            return;
        }
        ni = find_child(t, nd, (uint8_t)(fold ? pt_lower(path.ptr[pos]) : path.ptr[pos]));
    }
}

static const struct pt_route *pick_member(const struct pt_route_table *t, const struct group *g,
                                          uint32_t rnd)
{
    const struct pt_route *r = t->routes + g->route_first;
    uint32_t x;

    if (g->nroutes == 1)
        return r;
    x = rnd % g->total_share;
    for (uint32_t i = 0; i + 1 < g->nroutes; i++)
        if (x < r[i]._share_end)
            return &r[i];
    return &r[g->nroutes - 1];
}

/* match_regex: the regex routes that could still beat the best, by rank, each tried only when
 * the path starts with its literal prefix. */
static void match_regex(struct match *m)
{
    const struct pt_route_table *t = m->t;

    for (uint32_t i = 0; i < t->nregex && t->regex_groups[i] < m->best; i++) {
        uint32_t g = t->regex_groups[i];
        struct pt_str lit = t->rules[g].re_lit;
        if (lit.len > m->path.len || (lit.len && memcmp(lit.ptr, m->path.ptr, lit.len) != 0))
            continue;
        if (group_ok(m, g, 0) && full_match(t->rules[g].path_re, m->path)) {
            m->best = g;
            return;
        }
    }
}

const struct pt_route *pt_route_match(const struct pt_route_table *t,
                                      const struct pt_route_req *req, uint32_t rnd)
{
    struct match m = { .t = t, .req = req, .path = req->path, .best = NONE };

    if (m.path.ptr == NULL)
        m.path = PT_STR_LIT("");
    if (t->root[0] != NONE)
        walk(&m, t->root[0], false);
    if (t->root[1] != NONE)
        walk(&m, t->root[1], true);
    if (t->nregex)
        match_regex(&m);
    return m.best == NONE ? NULL : pick_member(t, &t->groups[m.best], rnd);
}
