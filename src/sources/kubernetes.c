/* The Kubernetes source: one LIST + WATCH loop per kind (a reflector, as client-go calls it), the
 * objects kept in sources/kubestore.c, and the batching that turns a stream of changes into a few
 * rebuilds through the callback main.c gives (control/reload.c's). HTTP is sources/kubehttp.c;
 * credentials come from sources/kubeconfig.c. Everything runs on the control thread's loop; main.c
 * starts it.
 *
 * Per kind:  LIST ──200──▶ WATCH from its resourceVersion ──events──▶ store ──▶ rebuild soon
 *              ▲              │ ends cleanly: watch again (or LIST when a resync is due)
 *              │              │ 410 Gone (HTTP, or an ERROR event): LIST again at once
 *              └── backoff ◀──┘ anything else: jittered backoff 100 ms..30 s, then WATCH again
 *                               from the last resourceVersion after a connection failure, or
 *                               LIST after a refusal (an HTTP error, an ERROR event) or a failed LIST
 * A relist replaces the kind's store wholesale, so events missed while a watch was down are
 * recovered, deletions included. A CRD that is not installed (404) counts as an empty kind and
 * is looked for again every minute. The watch's timeoutSeconds is about the resync period, so
 * every ~5 minutes each kind is listed again, healing anything a watch could have missed.
 *
 * Batching: a change arms a timer for K_QUIET_MS later (re-armed by every further change), but
 * never later than K_MAX_WAIT_MS after the first unapplied change, and never sooner than
 * max(K_MIN_GAP_MS, last build time) after the previous build ended. A single edit is thus
 * live ~10 ms after its event, and a burst of a thousand objects costs a handful of builds. */
#include "sources/kubernetes.h"
#include "sources/kubeconfig.h"
#include "sources/kubehttp.h"
#include "sources/kubestore.h"

#include "config/load.h"
#include "core/common.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/strmap.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define K_BACKOFF_MIN_MS 100
#define K_BACKOFF_MAX_MS 30000
#define K_RESYNC_MS (5 * 60 * 1000)
#define K_ABSENT_RETRY_MS 60000 /* a kind whose CRD is not installed: look again */
#define K_LIST_TIMEOUT_MS 120000L
#define K_WATCH_GRACE_MS 60000L /* client-side limit beyond the server's timeoutSeconds */
#define K_RELIST_MIN_MS 1000    /* 410 right after a LIST: back off instead of looping */
#define K_HEALTHY_WATCH_MS 5000 /* a watch this old (or with events) resets the backoff */
#define K_LIST_MAX ((size_t)512 << 20)  /* one LIST page */
#define K_PAGE 500                       /* objects per LIST page, as client-go's reflectors */
#define K_EVENT_MAX ((size_t)16 << 20)
#define K_ERRBODY_MAX ((size_t)16 << 10)
#define K_QUIET_MS 10
#define K_MAX_WAIT_MS 50
#define K_MIN_GAP_MS 20

/* A kind Portico reads, and where the API serves it. */
struct kind {
    const char *kind, *api_version;
    const char *prefix;   /* "/api/v1" or "/apis/<group>/<version>" */
    const char *resource; /* plural, lower case */
    const char *selector; /* fieldSelector, URL-escaped, or NULL */
    bool crd;             /* may be missing from the cluster (404) */
    bool unimplemented;   /* watched only to be seen: its CRD's absence is normal (info) */
};

#define AMB "getambassador.io/v3alpha1", "/apis/getambassador.io/v3alpha1"
static const struct kind kinds[] = {
    {"Listener", AMB, "listeners", NULL, true, false},
    {"Host", AMB, "hosts", NULL, true, false},
    {"Mapping", AMB, "mappings", NULL, true, false},
    {"TLSContext", AMB, "tlscontexts", NULL, true, false},
    {"TracingService", AMB, "tracingservices", NULL, true, false},
    {"Module", AMB, "modules", NULL, true, false},
    {"AuthService", AMB, "authservices", NULL, true, false},
    {"RateLimitService", AMB, "ratelimitservices", NULL, true, false},
    /* Kinds Portico does not implement, watched so that none goes unseen: a notice each
     * (config/kinds.c). Emissary's CRDs, all served as v3alpha1. */
    {"LogService", AMB, "logservices", NULL, true, true},
    {"TCPMapping", AMB, "tcpmappings", NULL, true, true},
    {"KubernetesEndpointResolver", AMB, "kubernetesendpointresolvers", NULL, true, true},
    {"KubernetesServiceResolver", AMB, "kubernetesserviceresolvers", NULL, true, true},
    {"ConsulResolver", AMB, "consulresolvers", NULL, true, true},
    {"DevPortal", AMB, "devportals", NULL, true, true},
    {"Service", "v1", "/api/v1", "services", NULL, false, false},
    {"Endpoints", "v1", "/api/v1", "endpoints", NULL, false, false},
    /* preferred over Endpoints when both exist (config/resources.c); absent before 1.21 */
    {"EndpointSlice", "discovery.k8s.io/v1", "/apis/discovery.k8s.io/v1", "endpointslices", NULL, true, false},
    /* Helm keeps every release in a Secret of up to 1 MiB that no configuration reads. */
    {"Secret", "v1", "/api/v1", "secrets", "type%21%3Dhelm.sh%2Frelease.v1", false, false},
};
#undef AMB
#define NKINDS PT_ARRAY_SIZE(kinds)

/* One kind's reflector. */
struct watch {
    const struct kind *k;
    struct pt_kubehttp_req req;
    struct pt_timer timer;
    bool next_list; /* what the timer starts: a LIST, else a WATCH */
    bool synced;    /* listed at least once */
    bool gone;      /* the watch saw ERROR 410: list again */
    bool refused;   /* the watch saw another ERROR event */
    struct pt_kubestore store;
    struct pt_kubestore paging; /* the pages of a LIST so far */
    char cont[2048];            /* the next page's continue token; "" on the first page */
    struct pt_kube_bytes body; /* LIST body, WATCH partial line, or an error body */
    char rv[128];
    unsigned failures;
    unsigned events; /* events in the current watch */
    uint64_t listed_ms, started_ms;
    char error[256]; /* the current failure, "" when healthy */
};

static struct {
    struct pt_loop *loop;
    const struct pt_config_env *env;
    struct pt_kube_creds creds;
    struct pt_kubehttp *http;
    struct watch w[NKINDS];
    char ns_path[300]; /* "" or "/namespaces/<ns>" */
    struct pt_timer build_timer;
    pt_kubernetes_rebuild_cb rebuild; /* main.c's: control/reload.c's pt_reload_now */
    bool dirty;
    uint64_t dirty_since, build_end, build_ms;
    uint64_t resync_ms, started_ms;
    uint32_t rand;
    char last_error[512];
} * kc;

static void start_list(struct watch *w);
static void start_watch(struct watch *w);

/* ---- small helpers -------------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    return pt_loop_now_ms(kc->loop);
}

static uint32_t rnd(void)
{
    uint32_t x = kc->rand; /* xorshift32: jitter only */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return kc->rand = x;
}

static bool all_synced(void)
{
    for (size_t i = 0; i < NKINDS; i++)
        if (!kc->w[i].synced)
            return false;
    return true;
}

/* set_error: <w> fails now; logged when the reason changes (retries repeat it quietly). */
static void set_error(struct watch *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(struct watch *w, const char *fmt, ...)
{
    char msg[sizeof(w->error)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (strcmp(msg, w->error) != 0)
        pt_warn("kubernetes: %s: %s", w->k->resource, msg);
    else
        pt_debug("kubernetes: %s: %s (again)", w->k->resource, msg);
    snprintf(w->error, sizeof(w->error), "%s", msg);
    snprintf(kc->last_error, sizeof(kc->last_error), "%s: %s", w->k->resource, msg);
}

static void clear_error(struct watch *w)
{
    if (w->error[0] != '\0')
        pt_info("kubernetes: %s: recovered", w->k->resource);
    w->error[0] = '\0';
}

/* http_error: "HTTP 401: Unauthorized" from a response and its Status body, if any. */
static void http_error(struct watch *w, const char *what, long status)
{
    json_t *st = w->body.len ? json_loadb(w->body.p, w->body.len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(st, "message"));

    set_error(w, "%s: HTTP %ld%s%.200s", what, status, msg ? ": " : "", msg ? msg : "");
    json_decref(st);
}

/* resource_path: the kind's collection URL path with <query> ("" or "?..."). */
static void resource_path(const struct watch *w, char *out, size_t cap, const char *query)
{
    snprintf(out, cap, "%s%s/%s%s", w->k->prefix, kc->ns_path, w->k->resource, query);
}

static void url_escape(char *out, size_t cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (; *s && o + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~", c)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
}

/* ---- rebuilds ------------------------------------------------------------------------------- */

static void build_on_fire(struct pt_timer *t)
{
    uint64_t t0 = pt_now_ms();

    kc->dirty = false;
    kc->rebuild();
    kc->build_end = pt_now_ms();
    kc->build_ms = kc->build_end - t0;
    pt_loop_update_time(kc->loop);
}

/* changed: the store of some kind changed; schedule a rebuild (see the top of this file). The
 * first build waits until every kind has been listed. */
static void changed(void)
{
    uint64_t now = now_ms(), due, gap;

    if (!all_synced())
        return;
    if (!kc->dirty) {
        kc->dirty = true;
        kc->dirty_since = now;
    }
    due = now + K_QUIET_MS;
    if (due > kc->dirty_since + K_MAX_WAIT_MS)
        due = kc->dirty_since + K_MAX_WAIT_MS;
    gap = kc->build_ms > K_MIN_GAP_MS ? kc->build_ms : K_MIN_GAP_MS;
    if (kc->build_end != 0 && due < kc->build_end + gap)
        due = kc->build_end + gap;
    pt_timer_arm(kc->loop, &kc->build_timer, due > now ? due - now : 1);
}

/* Only the Secrets the configuration names go into it (TLSContext secret / ca_secret, Host
 * tlsSecret and inline tls, the fallback certificate): the others are neither parsed nor listed
 * in diag. A "name.namespace" reference also counts as "name": which one it is depends on the
 * TLSContext's secret_namespacing, and keeping both is safe. */
struct secret_refs {
    struct pt_strmap names;
    char **owned;
    size_t n, cap;
};

static void ref_add(struct secret_refs *refs, const char *v)
{
    const char *dot;
    if (v == NULL || v[0] == '\0')
        return;
    for (int pass = 0; pass < 2; pass++) {
        size_t len = pass == 0 ? strlen(v) : (size_t)((dot = strrchr(v, '.')) ? dot - v : 0);
        if (len == 0 || pt_strmap_get(&refs->names, v, len) != NULL)
            continue;
        if (refs->n == refs->cap) {
            refs->cap = refs->cap ? refs->cap * 2 : 16;
            refs->owned = pt_xrealloc(refs->owned, refs->cap * sizeof(*refs->owned));
        }
        refs->owned[refs->n] = pt_xstrndup(v, len);
        pt_strmap_put(&refs->names, refs->owned[refs->n], len, refs->owned[refs->n]);
        refs->n++;
    }
}

static void refs_of(const char *json, size_t len, void *arg)
{
    json_t *o = json_loadb(json, len, 0, NULL), *spec = o ? json_object_get(o, "spec") : NULL, *tls;
    if (spec != NULL) {
        ref_add(arg, json_string_value(json_object_get(spec, "secret")));
        ref_add(arg, json_string_value(json_object_get(spec, "ca_secret")));
        ref_add(arg, json_string_value(json_object_get(json_object_get(spec, "tlsSecret"), "name")));
        if ((tls = json_object_get(spec, "tls")) != NULL) {
            ref_add(arg, json_string_value(json_object_get(tls, "secret")));
            ref_add(arg, json_string_value(json_object_get(tls, "ca_secret")));
            ref_add(arg, json_string_value(json_object_get(tls, "caSecret")));
        }
    }
    json_decref(o);
}

static bool keep_object(size_t store, const char *json, size_t len, void *arg)
{
    const struct secret_refs *refs = arg;
    json_t *o;
    const char *name;
    bool keep;

    if (strcmp(kinds[store].kind, "Secret") != 0)
        return true;
    o = json_loadb(json, len, 0, NULL);
    name = o ? json_string_value(json_object_get(json_object_get(o, "metadata"), "name")) : NULL;
    keep = name != NULL && (strcmp(name, "fallback-self-signed-cert") == 0 ||
                            pt_strmap_get(&refs->names, name, strlen(name)) != NULL);
    json_decref(o);
    return keep;
}

struct pt_resources *pt_kubernetes_resources(const struct pt_config_env *env, void *arg)
{
    struct secret_refs refs = { 0 };
    const struct pt_kubestore *stores[NKINDS];
    struct pt_resources *r;
    char *text;

    (void)arg;
    if (kc == NULL || !all_synced())
        return NULL;
    for (size_t i = 0; i < NKINDS; i++) {
        stores[i] = &kc->w[i].store;
        if (strcmp(kinds[i].kind, "TLSContext") == 0 || strcmp(kinds[i].kind, "Host") == 0)
            pt_kubestore_foreach(stores[i], refs_of, &refs);
    }
    text = pt_kubestore_list_json_keep(stores, NKINDS, NULL, keep_object, &refs);
    for (size_t i = 0; i < refs.n; i++)
        free(refs.owned[i]);
    free(refs.owned);
    pt_strmap_free(&refs.names);
    if (text == NULL) {
        pt_error("kubernetes: out of memory serialising the objects; keeping the configuration");
        return NULL;
    }
    r = pt_config_load_string(text, "kubernetes", env);
    free(text);
    return r;
}

/* ---- scheduling ----------------------------------------------------------------------------- */

static void timer_on_fire(struct pt_timer *t)
{
    struct watch *w = pt_container_of(t, struct watch, timer);

    if (w->next_list)
        start_list(w);
    else
        start_watch(w);
}

static void later(struct watch *w, bool list, uint64_t ms)
{
    w->next_list = list;
    pt_timer_arm(kc->loop, &w->timer, ms < 1 ? 1 : ms);
}

/* retry: a failure; try again after a jittered exponential backoff (half fixed, half random). */
static void retry(struct watch *w, bool list)
{
    unsigned shift = w->failures < 20 ? w->failures : 20;
    uint64_t base = (uint64_t)K_BACKOFF_MIN_MS << shift;

    w->failures++;
    if (base > K_BACKOFF_MAX_MS)
        base = K_BACKOFF_MAX_MS;
    later(w, list, base / 2 + rnd() % (base / 2 + 1));
}

/* relist: after 410 Gone. A LIST at once, unless one just happened (a server that keeps
 * answering 410 must not be hammered). */
static void relist(struct watch *w)
{
    pt_info("kubernetes: %s: resourceVersion %s is gone (410): listing again", w->k->resource,
            w->rv);
    w->rv[0] = '\0';
    if (now_ms() - w->listed_ms < K_RELIST_MIN_MS)
        retry(w, true);
    else
        start_list(w);
}

static void start_request(struct watch *w, const char *path, long timeout_ms, bool list)
{
    pt_kube_bytes_free(&w->body);
    w->events = 0;
    w->started_ms = now_ms();
    if (pt_kubehttp_get(kc->http, &w->req, path, timeout_ms) != 0) {
        set_error(w, "cannot start a request (out of memory)");
        retry(w, list);
    }
}

/* ---- LIST ----------------------------------------------------------------------------------- */

static bool list_on_data(struct pt_kubehttp_req *req, const char *p, size_t n)
{
    struct watch *w = pt_container_of(req, struct watch, req);

    if (req->status != 200) {
        pt_kube_bytes_append(&w->body, p, n, K_ERRBODY_MAX); /* the Status, cut if long */
        return true;
    }
    if (!pt_kube_bytes_append(&w->body, p, n, K_LIST_MAX)) {
        set_error(w, "list: the response is larger than %zu MiB or memory is short",
                  K_LIST_MAX >> 20);
        return false;
    }
    return true;
}

/* list_page: one LIST page into w->paging. Returns 1 when another page follows (w->cont set),
 * 0 when the list is whole and replaced the store, -1 (error set) when it is not a list. */
static int list_page(struct watch *w)
{
    json_t *root = json_loadb(w->body.p, w->body.len, 0, NULL),
           *items = json_object_get(root, "items"), *it, *md = json_object_get(root, "metadata");
    const char *rv = json_string_value(json_object_get(md, "resourceVersion"));
    const char *cont = json_string_value(json_object_get(md, "continue"));
    bool first = !w->synced, diff;
    size_t i, bad = 0;

    if (!json_is_array(items) || rv == NULL || rv[0] == '\0' || strlen(rv) >= sizeof(w->rv) ||
        (cont != NULL && strlen(cont) >= sizeof(w->cont))) {
        set_error(w, "list: not a %sList with a resourceVersion", w->k->kind);
        json_decref(root);
        return -1;
    }
    json_array_foreach (items, i, it) {
        if (pt_kubestore_put(&w->paging, it, w->k->kind, w->k->api_version) < 0)
            bad++;
    }
    if (bad > 0)
        pt_warn("kubernetes: %s: %zu listed objects without metadata.name ignored", w->k->resource,
                bad);
    if (cont != NULL && cont[0] != '\0') { /* every page has the first page's resourceVersion */
        snprintf(w->cont, sizeof(w->cont), "%s", cont);
        json_decref(root);
        return 1;
    }
    w->cont[0] = '\0';
    snprintf(w->rv, sizeof(w->rv), "%s", rv);
    diff = !pt_kubestore_equal(&w->store, &w->paging);
    pt_kubestore_free(&w->store);
    w->store = w->paging;
    w->paging = (struct pt_kubestore){ 0 };
    json_decref(root);
    w->synced = true;
    pt_debug("kubernetes: %s: listed %zu objects at resourceVersion %s%s", w->k->resource,
             w->store.n, w->rv, diff ? "" : " (no change)");
    if (first && all_synced())
        pt_info("kubernetes: every kind listed in %lu ms; building the first configuration",
                (unsigned long)(now_ms() - kc->started_ms));
    if (diff || first)
        changed();
    return 0;
}

/* list_absent: the CRD is not installed: an empty kind for now, looked for again later. */
static void list_absent(struct watch *w)
{
    bool had = w->store.n > 0, first = !w->synced;

    if ((first || had) && w->k->unimplemented)
        pt_info("kubernetes: %s: the API server does not serve %s (CRD not installed); "
                "treated as empty, checking again every %d s",
                w->k->resource, w->k->prefix, K_ABSENT_RETRY_MS / 1000);
    else if (first || had)
        pt_warn("kubernetes: %s: the API server does not serve %s (CRD not installed?); "
                "treated as empty, checking again every %d s",
                w->k->resource, w->k->prefix, K_ABSENT_RETRY_MS / 1000);
    pt_kubestore_free(&w->store);
    w->synced = true;
    w->failures = 0;
    w->listed_ms = now_ms();
    clear_error(w);
    if (first || had)
        changed();
    later(w, true, K_ABSENT_RETRY_MS);
}

static void list_on_done(struct pt_kubehttp_req *req, const char *error)
{
    struct watch *w = pt_container_of(req, struct watch, req);
    int page = error == NULL && req->status == 200 ? list_page(w) : -1;

    if (page == 1) {
        start_list(w); /* the next page */
    } else if (page == 0) {
        w->failures = 0;
        w->listed_ms = now_ms();
        clear_error(w);
        start_watch(w);
    } else if (error == NULL && req->status == 410 && w->cont[0] != '\0') {
        pt_info("kubernetes: %s: the list's continue token expired; listing again", w->k->resource);
        w->cont[0] = '\0';
        pt_kubestore_free(&w->paging);
        start_list(w);
    } else if (error == NULL && req->status == 404 && w->k->crd) {
        list_absent(w);
    } else {
        if (error != NULL && strcmp(error, "aborted") != 0)
            set_error(w, "list: %s", error);
        else if (error == NULL && req->status != 200)
            http_error(w, "list", req->status);
        w->cont[0] = '\0';
        pt_kubestore_free(&w->paging);
        retry(w, true);
    }
    pt_kube_bytes_free(&w->body);
}

/* start_list: the first page of a LIST, or the next one when w->cont holds a continue token. */
static void start_list(struct watch *w)
{
    char path[8192], query[7168], cont[6400] = "";
    int n = snprintf(query, sizeof(query), "?limit=%d", K_PAGE);

    if (w->k->selector != NULL)
        n += snprintf(query + n, sizeof(query) - (size_t)n, "&fieldSelector=%s", w->k->selector);
    if (w->cont[0] != '\0') {
        url_escape(cont, sizeof(cont), w->cont);
        snprintf(query + n, sizeof(query) - (size_t)n, "&continue=%s", cont);
    }
    resource_path(w, path, sizeof(path), query);
    w->req.on_data = list_on_data;
    w->req.on_done = list_on_done;
    start_request(w, path, K_LIST_TIMEOUT_MS, true);
}

/* ---- WATCH ---------------------------------------------------------------------------------- */

/* watch_event: applies one event line. Returns false to end the watch (w->gone or an error). */
static bool watch_event(struct watch *w, const char *line, size_t n)
{
    json_t *ev = json_loadb(line, n, 0, NULL), *obj = json_object_get(ev, "object");
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *rv = pt_kube_resource_version(obj);
    char rvcopy[sizeof(w->rv)] = "";
    int rc = 0;

    if (type == NULL || !json_is_object(obj)) {
        set_error(w, "watch: malformed event: %.*s", (int)(n < 80 ? n : 80), line);
        json_decref(ev);
        return false;
    }
    if (strcmp(type, "ERROR") == 0) {
        long code = (long)json_integer_value(json_object_get(obj, "code"));
        const char *msg = json_string_value(json_object_get(obj, "message"));
        w->gone = code == 410;
        w->refused = !w->gone;
        if (w->refused)
            set_error(w, "watch: ERROR %ld: %.200s", code, msg ? msg : "");
        json_decref(ev);
        return false;
    }
    if (rv != NULL && strlen(rv) < sizeof(rvcopy))
        snprintf(rvcopy, sizeof(rvcopy), "%s", rv); /* before the store cuts it out */
    if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0)
        rc = pt_kubestore_put(&w->store, obj, w->k->kind, w->k->api_version);
    else if (strcmp(type, "DELETED") == 0)
        rc = pt_kubestore_remove(&w->store, obj);
    else if (strcmp(type, "BOOKMARK") != 0)
        pt_debug("kubernetes: %s: watch event %s ignored", w->k->resource, type);
    if (rc == PT_BADMSG)
        pt_warn("kubernetes: %s: %s event without metadata.name ignored", w->k->resource, type);
    json_decref(ev); /* <type> and <rv> point into it */
    if (rc == PT_NOMEM) {
        set_error(w, "watch: out of memory");
        return false;
    }
    if (rvcopy[0] != '\0')
        memcpy(w->rv, rvcopy, sizeof(w->rv));
    if (rc > 0)
        changed();
    w->events++;
    return true;
}

static bool watch_on_data(struct pt_kubehttp_req *req, const char *p, size_t n)
{
    struct watch *w = pt_container_of(req, struct watch, req);
    char *line, *nl;
    size_t used;

    if (req->status != 200) {
        pt_kube_bytes_append(&w->body, p, n, K_ERRBODY_MAX);
        return true;
    }
    clear_error(w); /* the watch is up */
    if (n == 0)
        return true;
    if (!pt_kube_bytes_append(&w->body, p, n, K_EVENT_MAX)) {
        set_error(w, "watch: an event is larger than %zu MiB", K_EVENT_MAX >> 20);
        return false;
    }
    for (line = w->body.p;
         (nl = memchr(line, '\n', w->body.len - (size_t)(line - w->body.p))) != NULL;
         line = nl + 1) {
        if (nl > line && !watch_event(w, line, (size_t)(nl - line)))
            return false;
    }
    used = (size_t)(line - w->body.p);
    memmove(w->body.p, line, w->body.len - used);
    w->body.len -= used;
    return true;
}

static void watch_on_done(struct pt_kubehttp_req *req, const char *error)
{
    struct watch *w = pt_container_of(req, struct watch, req);
    bool healthy = w->events > 0 || now_ms() - w->started_ms >= K_HEALTHY_WATCH_MS;

    if (w->gone || req->status == 410) {
        w->gone = false;
        relist(w);
    } else if (error == NULL && req->status == 200) { /* timeoutSeconds: the normal end */
        w->failures = 0;
        if (now_ms() - w->listed_ms >= kc->resync_ms * 9 / 10)
            start_list(w);
        else
            start_watch(w);
    } else {
        if (error != NULL && strcmp(error, "aborted") != 0)
            set_error(w, "watch: %s", error);
        else if (error == NULL)
            http_error(w, "watch", req->status);
        if (healthy)
            w->failures = 0;
        /* The connection failed: resume from the resourceVersion. The server refused the watch
         * (an HTTP error, an ERROR event; say a replica behind on "too large resource version"):
         * list again, as client-go does. */
        retry(w, w->refused || (error == NULL && req->status != 200));
    }
    w->refused = false;
    pt_kube_bytes_free(&w->body);
}

static void start_watch(struct watch *w)
{
    char path[1024], query[512], rv[3 * sizeof(w->rv)];
    unsigned timeout_s = (unsigned)(kc->resync_ms / 1000);

    if (w->rv[0] == '\0') { /* nothing to resume from */
        start_list(w);
        return;
    }
    timeout_s = timeout_s * 9 / 10 + rnd() % (timeout_s / 5 + 1); /* 90-110%: spread the relists */
    if (timeout_s < 1)
        timeout_s = 1;
    url_escape(rv, sizeof(rv), w->rv);
    snprintf(query, sizeof(query),
             "?watch=true&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%u%s%s", rv,
             timeout_s, w->k->selector ? "&fieldSelector=" : "",
             w->k->selector ? w->k->selector : "");
    resource_path(w, path, sizeof(path), query);
    w->gone = false;
    w->req.on_data = watch_on_data;
    w->req.on_done = watch_on_done;
    start_request(w, path, (long)timeout_s * 1000 + K_WATCH_GRACE_MS, false);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

const char *pt_kubernetes_state(void)
{
    bool failing = false;

    if (kc == NULL)
        return NULL;
    for (size_t i = 0; i < NKINDS; i++)
        failing |= kc->w[i].error[0] != '\0';
    if (!all_synced())
        return failing ? "error" : "syncing";
    return failing ? "reconnecting" : "watching";
}

const char *pt_kubernetes_last_error(void)
{
    return kc ? kc->last_error : NULL;
}

/* namespace_path: "/namespaces/<ns>" in single-namespace mode, else "". */
static int namespace_path(const struct pt_config_env *env, char *err, size_t errlen)
{
    const char *ns = env->namespace && env->namespace[0] ? env->namespace : "default";

    kc->ns_path[0] = '\0';
    if (!env->single_namespace)
        return 0;
    if (strlen(ns) > 253 || strspn(ns, "abcdefghijklmnopqrstuvwxyz0123456789-.") != strlen(ns)) {
        snprintf(err, errlen, "AMBASSADOR_NAMESPACE '%.64s' is not a Kubernetes namespace name",
                 ns);
        return -1;
    }
    snprintf(kc->ns_path, sizeof(kc->ns_path), "/namespaces/%s", ns);
    return 0;
}

static uint64_t resync_period(void)
{
    const char *s = getenv("PORTICO_KUBERNETES_RESYNC_S"); /* tests shorten it */
    long v = s ? strtol(s, NULL, 10) : 0;

    return v > 0 && v <= 86400 ? (uint64_t)v * 1000 : K_RESYNC_MS;
}

int pt_kubernetes_start(struct pt_loop *loop, const struct pt_config_env *env, pt_kubernetes_rebuild_cb rebuild,
                        char *err, size_t errlen)
{
    err[0] = '\0';
    if (kc != NULL) {
        snprintf(err, errlen, "already started");
        return -1;
    }
    kc = pt_xcalloc(1, sizeof(*kc));
    kc->loop = loop;
    kc->env = env;
    kc->rebuild = rebuild;
    kc->resync_ms = resync_period();
    kc->rand = (uint32_t)(pt_now_ms() ^ ((uint64_t)getpid() << 16)) | 1;
    kc->started_ms = pt_loop_now_ms(loop);
    kc->build_timer.cb = build_on_fire;
    if (namespace_path(env, err, errlen) != 0 || pt_kubeconfig_load(&kc->creds, err, errlen) != 0 ||
        (kc->http = pt_kubehttp_new(loop, &kc->creds)) == NULL) {
        if (kc->http == NULL && err[0] == '\0')
            snprintf(err, errlen, "libcurl cannot start");
        pt_kube_creds_free(&kc->creds);
        free(kc);
        kc = NULL;
        return -1;
    }
    pt_info("kubernetes: API server %s (%s), %s", kc->creds.server,
            kc->creds.origin ? kc->creds.origin : "-",
            kc->ns_path[0] ? kc->ns_path + 1 : "all namespaces");
    for (size_t i = 0; i < NKINDS; i++) {
        struct watch *w = &kc->w[i];
        w->k = &kinds[i];
        w->timer.cb = timer_on_fire;
        start_list(w);
    }
    return 0;
}

void pt_kubernetes_stop(void)
{
    if (kc == NULL)
        return;
    for (size_t i = 0; i < NKINDS; i++) {
        struct watch *w = &kc->w[i];
        pt_kubehttp_cancel(kc->http, &w->req);
        pt_timer_cancel(&w->timer);
        pt_kubestore_free(&w->store);
        pt_kubestore_free(&w->paging);
        pt_kube_bytes_free(&w->body);
    }
    pt_timer_cancel(&kc->build_timer);
    pt_kubehttp_free(kc->http);
    pt_kube_creds_free(&kc->creds);
    free(kc);
    kc = NULL;
}
