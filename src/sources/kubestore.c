/* The per-kind object store of the Kubernetes source: a chained hash table from
 * "namespace/name" to the object's normalised JSON text. Normalising (sorted keys, no status,
 * no bookkeeping metadata) makes the text canonical, so a LIST item and the WATCH event for the
 * same object compare equal, and a relist that finds nothing new costs no recompile. Control
 * thread only (sources/kubernetes.c); the unit tests include it directly. */
#include "sources/kubestore.h"

#include "core/common.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pt_kubestore_obj {
    struct pt_kubestore_obj *next;
    uint32_t hash;
    char *key;  /* "namespace/name" */
    char *json; /* normalised, compact */
    size_t len;
};

/* Annotations that change without changing anything a configuration reads. */
static const char *const noisy_annotations[] = {
    "kubectl.kubernetes.io/last-applied-configuration",
    "control-plane.alpha.kubernetes.io/leader",
    "endpoints.kubernetes.io/last-change-trigger-time",
};

/* Metadata that changes on every write. */
static const char *const noisy_metadata[] = {"managedFields", "resourceVersion", "generation"};

static uint32_t hash_key(const char *k)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 16777619u;
    return h;
}

const char *pt_kube_resource_version(const json_t *obj)
{
    return json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
}

/* object_key: "namespace/name" of <obj> (namespace "default" when missing, as kubectl), or NULL. */
static char *object_key(const json_t *obj)
{
    const json_t *md = json_object_get(obj, "metadata");
    const char *name = json_string_value(json_object_get(md, "name"));
    const char *ns = json_string_value(json_object_get(md, "namespace"));
    char *key;

    if (name == NULL || name[0] == '\0')
        return NULL;
    if (asprintf(&key, "%s/%s", ns && ns[0] ? ns : "default", name) < 0)
        return NULL;
    return key;
}

static void normalize(json_t *obj, const char *kind, const char *api_version)
{
    json_t *md = json_object_get(obj, "metadata"), *ann = json_object_get(md, "annotations");

    json_object_set_new(obj, "kind", json_string(kind));
    json_object_set_new(obj, "apiVersion", json_string(api_version));
    json_object_del(obj, "status");
    for (size_t i = 0; i < PT_ARRAY_SIZE(noisy_metadata); i++)
        json_object_del(md, noisy_metadata[i]);
    for (size_t i = 0; i < PT_ARRAY_SIZE(noisy_annotations); i++)
        json_object_del(ann, noisy_annotations[i]);
    if (json_is_object(ann) && json_object_size(ann) == 0)
        json_object_del(md, "annotations");
}

static struct pt_kubestore_obj **find(const struct pt_kubestore *s, const char *key, uint32_t h)
{
    struct pt_kubestore_obj **pp;

    if (s->_cap == 0)
        return NULL;
    for (pp = &s->_buckets[h & (s->_cap - 1)]; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0)
            return pp;
    return pp;
}

static int grow(struct pt_kubestore *s)
{
    size_t cap = s->_cap ? s->_cap * 2 : 64;
    struct pt_kubestore_obj **b = calloc(cap, sizeof(*b));

    if (b == NULL)
        return PT_NOMEM;
    for (size_t i = 0; i < s->_cap; i++) {
        struct pt_kubestore_obj *o = s->_buckets[i], *next;
        for (; o != NULL; o = next) {
            next = o->next;
            o->next = b[o->hash & (cap - 1)];
            b[o->hash & (cap - 1)] = o;
        }
    }
    free(s->_buckets);
    s->_buckets = b;
    s->_cap = cap;
    return 0;
}

static void obj_free(struct pt_kubestore_obj *o)
{
    free(o->key);
    free(o->json);
    free(o);
}

int pt_kubestore_put(struct pt_kubestore *s, json_t *obj, const char *kind, const char *api_version)
{
    char *key = object_key(obj), *json;
    struct pt_kubestore_obj **pp, *o;
    uint32_t h;

    if (key == NULL)
        return PT_BADMSG;
    normalize(obj, kind, api_version);
    if ((json = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
        free(key);
        return PT_NOMEM;
    }
    h = hash_key(key);
    if ((s->n + 1 > s->_cap * 3 / 4) && grow(s) != 0) {
        free(key);
        free(json);
        return PT_NOMEM;
    }
    pp = find(s, key, h);
    if ((o = *pp) != NULL) {
        free(key);
        if (strcmp(o->json, json) == 0) {
            free(json);
            return 0;
        }
        s->bytes += strlen(json) - o->len;
        free(o->json);
        o->json = json;
        o->len = strlen(json);
        return 1;
    }
    if ((o = calloc(1, sizeof(*o))) == NULL) {
        free(key);
        free(json);
        return PT_NOMEM;
    }
    o->hash = h;
    o->key = key;
    o->json = json;
    o->len = strlen(json);
    *pp = o;
    s->n++;
    s->bytes += o->len;
    return 1;
}

int pt_kubestore_remove(struct pt_kubestore *s, const json_t *obj)
{
    char *key = object_key(obj);
    struct pt_kubestore_obj **pp, *o;

    if (key == NULL)
        return PT_BADMSG;
    pp = find(s, key, hash_key(key));
    free(key);
    if (pp == NULL || (o = *pp) == NULL)
        return 0;
    *pp = o->next;
    s->n--;
    s->bytes -= o->len;
    obj_free(o);
    return 1;
}

bool pt_kubestore_equal(const struct pt_kubestore *a, const struct pt_kubestore *b)
{
    if (a->n != b->n || a->bytes != b->bytes)
        return false;
    for (size_t i = 0; i < a->_cap; i++) {
        for (const struct pt_kubestore_obj *o = a->_buckets[i]; o != NULL; o = o->next) {
            struct pt_kubestore_obj **pp = find(b, o->key, o->hash);
            if (pp == NULL || *pp == NULL || (*pp)->len != o->len ||
                memcmp((*pp)->json, o->json, o->len) != 0)
                return false;
        }
    }
    return true;
}

void pt_kubestore_free(struct pt_kubestore *s)
{
    for (size_t i = 0; i < s->_cap; i++) {
        struct pt_kubestore_obj *o = s->_buckets[i], *next;
        for (; o != NULL; o = next) {
            next = o->next;
            obj_free(o);
        }
    }
    free(s->_buckets);
    memset(s, 0, sizeof(*s));
}

static int by_key(const void *a, const void *b)
{
    const struct pt_kubestore_obj *x = *(const struct pt_kubestore_obj *const *)a;
    const struct pt_kubestore_obj *y = *(const struct pt_kubestore_obj *const *)b;
    return strcmp(x->key, y->key);
}

/* sorted: the objects of <s> in key order (malloc'd array of s->n), or NULL when short of
 * memory. An empty store gives a non-NULL empty array. */
static struct pt_kubestore_obj **sorted(const struct pt_kubestore *s)
{
    struct pt_kubestore_obj **v = malloc((s->n ? s->n : 1) * sizeof(*v));
    size_t k = 0;

    if (v == NULL)
        return NULL;
    for (size_t i = 0; i < s->_cap; i++)
        for (struct pt_kubestore_obj *o = s->_buckets[i]; o != NULL; o = o->next)
            v[k++] = o;
    qsort(v, k, sizeof(*v), by_key);
    return v;
}

void pt_kubestore_foreach(const struct pt_kubestore *s, void (*fn)(const char *json, size_t len, void *arg),
                          void *arg)
{
    for (size_t i = 0; i < s->_cap; i++)
        for (struct pt_kubestore_obj *o = s->_buckets[i]; o != NULL; o = o->next)
            fn(o->json, o->len, arg);
}

char *pt_kubestore_list_json(const struct pt_kubestore *const *stores, size_t n, size_t *len)
{
    return pt_kubestore_list_json_keep(stores, n, len, NULL, NULL);
}

char *pt_kubestore_list_json_keep(const struct pt_kubestore *const *stores, size_t n, size_t *len,
                                  bool (*keep)(size_t store, const char *json, size_t len, void *arg), void *arg)
{
    static const char head[] = "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[\n",
                      tail[] = "]}\n";
    size_t total = sizeof(head) + sizeof(tail), off = 0;
    bool first = true;
    char *out;

    for (size_t i = 0; i < n; i++)
        total += stores[i]->bytes + 2 * stores[i]->n;
    if ((out = malloc(total)) == NULL)
        return NULL;
    memcpy(out, head, sizeof(head) - 1);
    off = sizeof(head) - 1;
    for (size_t i = 0; i < n; i++) {
        struct pt_kubestore_obj **v = sorted(stores[i]);
        if (v == NULL) {
            free(out);
            return NULL;
        }
        for (size_t j = 0; j < stores[i]->n; j++) {
            if (keep != NULL && !keep(i, v[j]->json, v[j]->len, arg))
                continue;
            if (!first) {
                memcpy(out + off, ",\n", 2);
                off += 2;
            }
            first = false;
            memcpy(out + off, v[j]->json, v[j]->len);
            off += v[j]->len;
        }
        free(v);
    }
    memcpy(out + off, tail, sizeof(tail));
    off += sizeof(tail) - 1;
    if (len != NULL)
        *len = off;
    return out;
}
