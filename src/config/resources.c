/* Configuration loading, second half: one YAML document (a node tree from load.c) becomes typed
 * resources (resource-t.h). Here live the Kubernetes envelope (apiVersion, kind, metadata, List),
 * the AMBASSADOR_ID and single-namespace filters, duplicate detection, the pt_resources being
 * filled, what must fail closed when it cannot be read (an AuthService, the Module's
 * ip_allow/ip_deny) and notices for the Emissary kinds Portico does not read. What
 * each kind's fields mean is in kinds.c, how they are read in fields.c. A resource with any
 * error is left out alone; everything else still loads. Called by load.c for each document. */
#include "config/fields.h"
#include "config/load.h"
#include "config/ynode.h"

#include "core/arena.h"
#include "core/common.h"
#include "core/log.h"
#include "core/strmap.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define AMBASSADOR_GROUP "getambassador.io/"

/* The identity of a kept (or rejected) object, for "duplicate ..., first defined at ...". */
struct first_def {
    struct pt_origin origin;
    const char *object;
};

struct pt_config__loader {
    struct pt_arena *arena; /* owns r and everything it points to */
    struct pt_resources *r;
    const char *ambassador_id;
    const char *namespace;
    bool single_namespace;
    struct pt_strmap seen;  /* "Kind/ns/name" (TLSContext: "TLSContext//name") -> first_def */
    size_t cap[PT_CONFIG__NKINDS]; /* capacity of each pt_resources array, by kind index */
};

/* ---- loader --------------------------------------------------------------------------------- */

struct pt_config__loader *pt_config__loader_new(const struct pt_config_env *env)
{
    struct pt_arena *a = pt_xcalloc(1, sizeof(*a));
    struct pt_config__loader *l = pt_xcalloc(1, sizeof(*l));
    l->arena = a;
    l->r = pt_arena_alloc(a, sizeof(*l->r));
    l->r->_arena = a;
    bool has_id = env && env->ambassador_id && *env->ambassador_id;
    bool has_ns = env && env->namespace && *env->namespace;
    l->ambassador_id = pt_arena_strdup(a, has_id ? env->ambassador_id : "default");
    l->namespace = pt_arena_strdup(a, has_ns ? env->namespace : "default");
    l->single_namespace = env && env->single_namespace;
    return l;
}

const char *pt_config__loader_file(struct pt_config__loader *l, const char *path)
{
    return pt_arena_strdup(l->arena, path);
}

struct pt_diag *pt_config__diag(struct pt_config__loader *l)
{
    return &l->r->diag;
}

static void append(struct pt_config__loader *l, const struct pt_config__kind *k, const void *obj);

/* A Service's Endpoints as built from its EndpointSlices. */
struct folded {
    size_t index; /* in r->endpoints */
    size_t cap;   /* of its subsets */
};

/* fold_slice: <s> as one more subset of its Service's Endpoints: its ready endpoints' first
 * addresses and its ports. An Endpoints object written for the same Service gives way to the
 * slices (Kubernetes keeps both; only slices hold more than 1,000 addresses). */
static void fold_slice(struct pt_config__loader *l, struct pt_strmap *built, const struct pt_strmap *written,
                       const struct pt_endpointslice_res *s)
{
    struct pt_resources *r = l->r;
    char key[600];
    int klen = snprintf(key, sizeof(key), "%s/%s", s->meta.namespace, s->service);
    struct folded *f = pt_strmap_get(built, key, (size_t)klen);
    struct pt_endpoint_subset *sub;
    struct pt_endpoints_res *e;

    if (f == NULL) {
        uintptr_t at = (uintptr_t)pt_strmap_get(written, key, (size_t)klen); /* index + 1 */
        f = pt_arena_alloc(l->arena, sizeof(*f));
        *f = (struct folded){ .index = at ? at - 1 : r->nendpoints };
        if (at == 0) {
            struct pt_endpoints_res ne = { .meta = s->meta };
            ne.meta.kind = "Endpoints";
            ne.meta.name = s->service;
            append(l, pt_config__find_kind("Endpoints"), &ne);
        }
        r->endpoints[f->index].subsets = NULL;
        r->endpoints[f->index].nsubsets = 0;
        pt_strmap_put(built, pt_arena_strdup(l->arena, key), (size_t)klen, f);
    }
    e = &r->endpoints[f->index];
    if (e->nsubsets == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 4;
        e->subsets = pt_arena_grow(l->arena, e->subsets, e->nsubsets, f->cap, sizeof(*e->subsets));
    }
    sub = &e->subsets[e->nsubsets++];
    *sub = (struct pt_endpoint_subset){ .ports = s->ports, .nports = s->nports };
    sub->addresses = pt_arena_alloc(l->arena, (s->nendpoints + 1) * sizeof(*sub->addresses));
    for (size_t i = 0; i < s->nendpoints; i++) {
        const struct pt_slice_endpoint *ep = &s->endpoints[i];
        unsigned char buf[16];
        if (ep->not_ready || ep->naddresses == 0 ||
            inet_pton(strcmp(s->address_type, "IPv6") == 0 ? AF_INET6 : AF_INET, ep->addresses[0], buf) != 1)
            continue;
        sub->addresses[sub->naddresses++].ip = ep->addresses[0];
    }
}

/* fold_endpointslices: every usable EndpointSlice (IPv4 or IPv6 addresses, a Service label,
 * each port numbered) into Endpoints, so the rest of the configuration reads Endpoints only. */
static void fold_endpointslices(struct pt_config__loader *l)
{
    struct pt_strmap built = { 0 }, written = { 0 };

    if (l->r->nendpointslices == 0)
        return;
    for (size_t i = 0; i < l->r->nendpoints; i++) {
        const struct pt_meta *m = &l->r->endpoints[i].meta;
        char key[600];
        int klen = snprintf(key, sizeof(key), "%s/%s", m->namespace, m->name);
        pt_strmap_put(&written, pt_arena_strdup(l->arena, key), (size_t)klen, (void *)(uintptr_t)(i + 1));
    }
    for (size_t i = 0; i < l->r->nendpointslices; i++) {
        const struct pt_endpointslice_res *s = &l->r->endpointslices[i];
        bool ports_ok = true;
        for (size_t k = 0; k < s->nports; k++)
            ports_ok &= s->ports[k].port != 0;
        if (s->service != NULL && ports_ok &&
            (strcmp(s->address_type, "IPv4") == 0 || strcmp(s->address_type, "IPv6") == 0))
            fold_slice(l, &built, &written, s);
    }
    pt_strmap_free(&built);
    pt_strmap_free(&written);
}

struct pt_resources *pt_config__loader_finish(struct pt_config__loader *l)
{
    struct pt_resources *r = l->r;
    fold_endpointslices(l);
    pt_strmap_free(&l->seen);
    free(l);
    return r;
}

void pt_resources_free(struct pt_resources *r)
{
    if (r == NULL)
        return;
    struct pt_arena *a = r->_arena; /* r itself lives in the arena */
    pt_diag_free(&r->diag);
    pt_arena_free_all(a);
    free(a);
}

/* ---- documents ------------------------------------------------------------------------------ */

static const struct pt_ypair *find_pair(const struct pt_ynode *map, const char *key)
{
    if (map == NULL || map->type != PT_YNODE_MAP)
        return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < map->npairs; i++) {
        const struct pt_ynode *k = map->pairs[i].key;
        if (k->type == PT_YNODE_SCALAR && k->len == kl && memcmp(k->str, key, kl) == 0)
            return &map->pairs[i];
    }
    return NULL;
}

static int first_line(const struct pt_ynode *n)
{
    return n->type == PT_YNODE_MAP && n->npairs > 0 ? n->pairs[0].key->line : n->line;
}

/* envelope_string: the string at root[<key>], or NULL after an error. */
static const char *envelope_string(struct pt_config__obj *c, const struct pt_ynode *root,
                                   const char *key)
{
    const struct pt_ypair *p = find_pair(root, key);
    if (p == NULL || pt_ynode_is_null(p->value)) {
        pt_config__err(c, NULL, "%s: required", key);
        return NULL;
    }
    if (!pt_config__is_string(p->value) || p->value->len == 0) {
        pt_config__err(c, p->key, "%s: expected a non-empty string", key);
        return NULL;
    }
    return p->value->str;
}

/* lookup_kind: the kind of <kind> in <api>, or NULL (with a notice for other people's kinds
 * and an error for ours written with the wrong apiVersion). */
static const struct pt_config__kind *lookup_kind(struct pt_config__obj *c, const char *api, const char *kind,
                                      const struct pt_ynode *root)
{
    const struct pt_config__kind *k = pt_config__find_kind(kind);
    bool amb = strncmp(api, AMBASSADOR_GROUP, strlen(AMBASSADOR_GROUP)) == 0;
    bool core = strcmp(api, "v1") == 0 || strcmp(api, "discovery.k8s.io/v1") == 0;
    if (k == NULL && (amb || core)) {
        pt_config__notice(c, NULL, "unknown kind %.64s ignored", kind);
        return NULL;
    }
    if (k == NULL || (!amb && !core)) { /* e.g. a Deployment, or Knative's Service */
        pt_config__notice(c, NULL, "unknown kind %.64s ignored (apiVersion %.64s)", kind, api);
        return NULL;
    }
    if (k->core != core || (core && strcmp(api, k->api) != 0)) {
        pt_config__err(c, find_pair(root, "apiVersion")->key,
                       "apiVersion: %.64s is not valid for %s (use %s)", api, kind,
                       k->core ? k->api : "getambassador.io/v3alpha1");
        return NULL;
    }
    return k;
}

/* check_version: getambassador.io/v3alpha1, or v2/v1 read as v3alpha1 with a notice. */
static bool check_version(struct pt_config__obj *c, const char *api, const struct pt_ynode *root)
{
    const char *ver = api + strlen(AMBASSADOR_GROUP);
    const struct pt_ynode *at = find_pair(root, "apiVersion")->key;
    if (strcmp(ver, "v3alpha1") == 0)
        return true;
    if (strcmp(ver, "v2") == 0 || strcmp(ver, "v1") == 0) {
        c->v2 = true;
        pt_config__notice(c, at, "apiVersion %s is read as getambassador.io/v3alpha1", api);
        return true;
    }
    pt_config__err(c, at, "apiVersion: %.64s is not supported (use getambassador.io/v3alpha1)",
                   api);
    return false;
}

/* read_meta: metadata.name, .namespace (default "default", as kubectl), .labels. */
static bool read_meta(struct pt_config__obj *c, const struct pt_ynode *root, struct pt_meta *m)
{
    const struct pt_ypair *mp = find_pair(root, "metadata");
    const struct pt_ynode *md = mp ? mp->value : NULL;
    if (md != NULL && !pt_ynode_is_null(md) && md->type != PT_YNODE_MAP) {
        pt_config__err(c, mp->key, "metadata: expected a mapping");
        return false;
    }
    const struct pt_ypair *name = find_pair(md, "name"), *ns = find_pair(md, "namespace");
    const struct pt_ypair *labels = find_pair(md, "labels");
    if (name == NULL || pt_ynode_is_null(name->value)) {
        pt_config__err(c, NULL, "metadata.name: required");
        return false;
    }
    m->name = pt_config__string(c, name->key, name->value, "metadata.name");
    m->namespace = "default";
    if (ns != NULL && !pt_ynode_is_null(ns->value))
        m->namespace = pt_config__string(c, ns->key, ns->value, "metadata.namespace");
    if (labels != NULL && !pt_ynode_is_null(labels->value))
        pt_config__kvmap(c, labels->key, labels->value, &m->labels, &m->nlabels,
                         "metadata.labels");
    if (m->name != NULL && m->name[0] == '\0')
        pt_config__err(c, name->key, "metadata.name: must not be empty");
    return c->nerrors == 0 && m->name != NULL && m->namespace != NULL;
}

/* ambassador_id: whether the object is for this Portico. No ambassador_id (or an empty list)
 * means "default". Sets *bad on a malformed value. */
static bool ambassador_id_matches(struct pt_config__loader *l, struct pt_config__obj *c,
                                  const struct pt_ynode *spec, struct pt_meta *m)
{
    const struct pt_ypair *p = find_pair(spec, "ambassador_id");
    const struct pt_ynode *ids = p ? p->value : NULL;
    if (pt_ynode_is_null(ids) || (ids->type == PT_YNODE_SEQ && ids->nitems == 0))
        return strcmp(l->ambassador_id, "default") == 0;
    if (pt_config__is_string(ids)) {
        m->ambassador_id_first = pt_arena_strdup(c->arena, ids->str);
        return strcmp(ids->str, l->ambassador_id) == 0;
    }
    bool match = false;
    for (size_t i = 0; ids->type == PT_YNODE_SEQ && i < ids->nitems; i++) {
        if (!pt_config__is_string(ids->items[i]))
            break;
        match = match || strcmp(ids->items[i]->str, l->ambassador_id) == 0;
        if (i == ids->nitems - 1) {
            m->ambassador_id_first = pt_arena_strdup(c->arena, ids->items[0]->str);
            return match;
        }
    }
    pt_config__err(c, p->key, "ambassador_id: expected a string or a list of strings");
    return false;
}

/* is_duplicate: a later object with the same Kind/namespace/name (TLSContext: the same name) is
 * an error; the first one is kept. */
static bool is_duplicate(struct pt_config__loader *l, struct pt_config__obj *c,
                         const struct pt_config__kind *k, const struct pt_meta *m)
{
    const char *key = c->object;
    if (k->global_names) {
        size_t n = strlen(k->name) + strlen(m->name) + 3;
        char *g = pt_arena_alloc(l->arena, n);
        snprintf(g, n, "%s//%s", k->name, m->name);
        key = g;
    }
    const struct first_def *fd = pt_strmap_get(&l->seen, key, strlen(key));
    if (fd != NULL) {
        if (strcmp(fd->object, c->object) == 0)
            pt_config__err(c, NULL, "duplicate %s, first defined at %s:%d", c->object,
                           fd->origin.file, fd->origin.line);
        else
            pt_config__err(c, NULL,
                           "duplicate %s name %s (names are global), first defined at %s:%d "
                           "as %s", k->name, m->name, fd->origin.file, fd->origin.line,
                           fd->object);
        return true;
    }
    struct first_def *nd = pt_arena_alloc(l->arena, sizeof(*nd));
    nd->origin = m->origin;
    nd->object = c->object;
    pt_strmap_put(&l->seen, key, strlen(key), nd);
    return false;
}

static void append(struct pt_config__loader *l, const struct pt_config__kind *k, const void *obj)
{
    size_t ki = pt_config__kind_index(k);
    char **arr = (char **)((char *)l->r + k->arr_off);
    size_t *n = (size_t *)((char *)l->r + k->n_off);
    if (*n == l->cap[ki]) {
        l->cap[ki] = l->cap[ki] ? l->cap[ki] * 2 : 8;
        *arr = pt_arena_grow(l->arena, *arr, *n, l->cap[ki], k->size);
    }
    memcpy(*arr + *n * k->size, obj, k->size);
    (*n)++;
}

static const struct pt_ynode empty_map = { .type = PT_YNODE_MAP };

/* read_body: the object's fields (spec, or the root for Endpoints and Secret) into <obj>. */
static void read_body(struct pt_config__obj *c, const struct pt_config__kind *k, const struct pt_ynode *root,
                      void *obj)
{
    const struct pt_ypair *sp = find_pair(root, "spec");
    const struct pt_ynode *body = k->root_body ? root : sp ? sp->value : NULL;
    if (pt_ynode_is_null(body))
        body = &empty_map;
    if (body->type != PT_YNODE_MAP) {
        pt_config__err(c, sp->key, "spec: expected a mapping");
        return;
    }
    if (k->init != NULL)
        k->init(obj);
    pt_config__read_fields(c, body, k->fields, obj, "");
    if (k->check != NULL)
        k->check(c, obj, body);
}

static char *object_name(struct pt_arena *a, const char *kind, const struct pt_meta *m)
{
    size_t n = strlen(kind) + strlen(m->namespace) + strlen(m->name) + 3;
    char *s = pt_arena_alloc(a, n);
    snprintf(s, n, "%s/%s/%s", kind, m->namespace, m->name);
    return s;
}

/* loose_object_name: "Kind/ns/name" for notices about objects Portico does not read, when the
 * metadata allows it (no errors: the object is not ours to judge). */
static const char *loose_object_name(struct pt_arena *a, const char *kind,
                                     const struct pt_ynode *root)
{
    const struct pt_ynode *md = pt_ynode_get(root, "metadata");
    const struct pt_ynode *name = pt_ynode_get(md, "name"), *ns = pt_ynode_get(md, "namespace");
    if (name == NULL || !pt_config__is_string(name) || pt_ynode_is_null(name))
        return NULL;
    struct pt_meta m = { .name = name->str, .namespace = "default" };
    if (ns != NULL && pt_config__is_string(ns) && !pt_ynode_is_null(ns))
        m.namespace = ns->str;
    return object_name(a, kind, &m);
}

/* ip_policy_error: the ambassador Module's ip_allow / ip_deny cannot be read: every request is
 * denied (fail closed; dropping a rule would let the addresses it names through). An error in
 * diag that leaves the rest of the Module applied. */
static void ip_policy_error(struct pt_config__loader *l, struct pt_config__obj *c,
                            const struct pt_ynode *at, const char *fmt, ...)
{
    struct pt_origin o = { c->file, at ? at->line : c->line };
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    l->r->ip_policy = (struct pt_ip_policy){ .action = PT_IP_DENY_ALL };
    pt_diag_add(c->diag, PT_DIAG_ERROR, &o, c->object,
                "%s: every request is denied with 403 until it is fixed", msg);
}

/* read_ip_rules: the list <list> of ip_allow or ip_deny (<key>): each element one `peer:` or
 * `remote:` with an address or CIDR range, as Emissary reads them. False (reported) when one
 * cannot be read. */
static bool read_ip_rules(struct pt_config__loader *l, struct pt_config__obj *c, const char *key,
                          const struct pt_ynode *list, struct pt_ip_policy *out)
{
    if (list->type != PT_YNODE_SEQ) {
        ip_policy_error(l, c, list, "config.%s: expected a list of `peer:` or `remote:` entries", key);
        return false;
    }
    out->rules = pt_arena_alloc_array(l->arena, list->nitems ? list->nitems : 1, sizeof(*out->rules));
    for (size_t i = 0; i < list->nitems; i++) {
        const struct pt_ynode *e = list->items[i];
        struct pt_ip_rule *rule = &out->rules[out->nrules];
        const struct pt_ynode *v;
        char err[160];
        if (e->type != PT_YNODE_MAP || e->npairs != 1) {
            ip_policy_error(l, c, e, "config.%s[%zu]: expected one `peer:` or `remote:` (principals must "
                            "be separate list elements)", key, i);
            return false;
        }
        const struct pt_ynode *k = e->pairs[0].key;
        const char *kind = k->type == PT_YNODE_SCALAR ? k->str : "";
        if (strcmp(kind, "peer") == 0) {
            rule->remote = false;
        } else if (strcmp(kind, "remote") == 0) {
            rule->remote = true;
        } else {
            ip_policy_error(l, c, e, "config.%s[%zu]: principal type \"%.40s\" unknown: must be peer or "
                            "remote", key, i, kind);
            return false;
        }
        v = e->pairs[0].value;
        if (v->type != PT_YNODE_SCALAR || strlen(v->str) != v->len || !pt_cidr_parse(v->str, &rule->range, err, sizeof(err))) {
            ip_policy_error(l, c, v, "config.%s[%zu]: %s", key, i,
                            v->type == PT_YNODE_SCALAR && strlen(v->str) == v->len ? err
                                                                                  : "expected an IP address or CIDR range");
            return false;
        }
        out->nrules++;
    }
    return true;
}

/* read_ip_policy: the ambassador Module's ip_allow or ip_deny (spec.config), read here rather
 * than with the Module's other fields so that it applies even when the Module is rejected for
 * another field: what a policy is meant to keep out stays out. Emissary's rules: only one of
 * the two; an empty list enforces nothing. */
static void read_ip_policy(struct pt_config__loader *l, struct pt_config__obj *c,
                           const struct pt_ynode *root)
{
    const struct pt_ypair *sp = find_pair(root, "spec");
    const struct pt_ypair *cfg = find_pair(sp ? sp->value : NULL, "config");
    const struct pt_ypair *allow = find_pair(cfg ? cfg->value : NULL, "ip_allow");
    const struct pt_ypair *deny = find_pair(cfg ? cfg->value : NULL, "ip_deny");
    const struct pt_ypair *p = allow && !pt_ynode_is_null(allow->value) ? allow : NULL;
    struct pt_ip_policy pol = { 0 };

    if (deny != NULL && !pt_ynode_is_null(deny->value)) {
        if (p != NULL) {
            ip_policy_error(l, c, deny->key, "config: ip_allow and ip_deny may not both be set");
            return;
        }
        p = deny;
    }
    if (p == NULL)
        return;
    if (l->r->ip_policy.action != PT_IP_NONE) {
        ip_policy_error(l, c, p->key, "config.%s: a second ambassador Module sets an IP policy", p->key->str);
        return;
    }
    if (!read_ip_rules(l, c, p->key->str, p->value, &pol))
        return;
    if (pol.nrules == 0) {
        pt_config__notice(c, p->key, "config.%s is empty: no IP policy is enforced (as Emissary)", p->key->str);
        return;
    }
    pol.action = p == allow ? PT_IP_ALLOW : PT_IP_DENY;
    l->r->ip_policy = pol;
}

/* read_resource: a Kubernetes object of a kind Portico reads, from the metadata on. */
static void read_resource(struct pt_config__loader *l, struct pt_config__obj *c,
                          const struct pt_config__kind *k, const char *api, const struct pt_ynode *root)
{
    union pt_config__any_res obj;
    struct pt_meta *m = (struct pt_meta *)&obj;
    memset(&obj, 0, sizeof(obj));
    m->kind = k->name;
    m->origin = (struct pt_origin){ c->file, c->line };
    c->object = k->name;
    if (!read_meta(c, root, m))
        return;
    c->object = object_name(l->arena, k->name, m);
    if (l->single_namespace && strcmp(m->namespace, l->namespace) != 0) {
        pt_debug("config: %s: %s is outside namespace %s; skipped", c->file, c->object,
                 l->namespace);
        return;
    }
    const struct pt_ypair *sp = find_pair(root, "spec");
    if (!k->core && !ambassador_id_matches(l, c, sp ? sp->value : NULL, m)) {
        if (c->nerrors == 0)
            pt_debug("config: %s: %s is for another ambassador_id; skipped", c->file, c->object);
        return;
    }
    if (!k->core && !check_version(c, api, root))
        return;
    if (strcmp(k->name, "Module") == 0 && strcmp(m->name, "ambassador") != 0) {
        pt_config__notice(c, NULL, "Module %s ignored; only the Module named ambassador is read",
                          m->name);
        return;
    }
    if (strcmp(k->name, "Module") == 0)
        read_ip_policy(l, c, root);
    if (is_duplicate(l, c, k, m))
        return;
    read_body(c, k, root, &obj);
    if (c->nerrors == 0)
        append(l, k, &obj);
}

/* add_resource: read_resource, and an AuthService for this Portico that has errors (even one
 * too broken to tell whose it is) is counted: requests fail closed while it is there. */
static void add_resource(struct pt_config__loader *l, struct pt_config__obj *c,
                         const struct pt_config__kind *k, const char *api, const struct pt_ynode *root)
{
    read_resource(l, c, k, api, root);
    if (c->nerrors > 0 && strcmp(k->name, "AuthService") == 0)
        l->r->nauth_invalid++;
}

static void add_object(struct pt_config__loader *l, const char *file, const struct pt_ynode *root,
                       bool in_list);

static void add_list(struct pt_config__loader *l, struct pt_config__obj *c,
                     const struct pt_ynode *root, bool in_list)
{
    const struct pt_ypair *items = find_pair(root, "items");
    if (in_list) {
        pt_config__err(c, NULL, "a List inside a List is not supported");
        return;
    }
    if (items == NULL || pt_ynode_is_null(items->value))
        return;
    if (items->value->type != PT_YNODE_SEQ) {
        pt_config__err(c, items->key, "items: expected a list");
        return;
    }
    for (size_t i = 0; i < items->value->nitems; i++)
        add_object(l, c->file, items->value->items[i], true);
}

static void add_object(struct pt_config__loader *l, const char *file, const struct pt_ynode *root,
                       bool in_list)
{
    struct pt_config__obj c = { .arena = l->arena, .diag = &l->r->diag, .file = file,
                                .line = first_line(root) };
    if (root->type != PT_YNODE_MAP) {
        pt_config__err(&c, root, "expected a Kubernetes object (a mapping with apiVersion, "
                                 "kind and metadata)");
        return;
    }
    const char *kind = envelope_string(&c, root, "kind");
    const char *api = kind ? envelope_string(&c, root, "apiVersion") : NULL;
    if (kind == NULL || api == NULL)
        return;
    if (strcmp(kind, "List") == 0) {
        add_list(l, &c, root, in_list);
        return;
    }
    c.object = loose_object_name(l->arena, kind, root);
    if (pt_config__unimplemented(kind) && strncmp(api, AMBASSADOR_GROUP, strlen(AMBASSADOR_GROUP)) == 0) {
        /* none of them can let through what Emissary would stop */
        pt_config__notice(&c, NULL, "%s is not supported by this build; ignored", kind);
        return;
    }
    const struct pt_config__kind *k = lookup_kind(&c, api, kind, root);
    if (k != NULL)
        add_resource(l, &c, k, api, root);
}

void pt_config__add_document(struct pt_config__loader *l, const char *file,
                             const struct pt_ynode *root)
{
    add_object(l, file, root, false);
}
