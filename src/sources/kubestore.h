/* The objects of one Kubernetes kind as last seen from the API server, keyed by namespace/name,
 * each kept as compact JSON text with the fields no configuration reads (status, managedFields,
 * resourceVersion, kubectl's last-applied annotation...) cut, so that an update nobody can see
 * is not a change. sources/kubernetes.c fills one store per kind from LIST and WATCH and turns
 * them all into one `kind: List` document for config/load.c. */
#ifndef PT_SOURCES_KUBESTORE_H
#define PT_SOURCES_KUBESTORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct pt_kubestore_obj;

/* An all-zero store is empty. */
struct pt_kubestore {
    struct pt_kubestore_obj **_buckets;
    size_t _cap;  /* power of two, or 0 */
    size_t n;     /* objects */
    size_t bytes; /* JSON text of all objects */
};

/* pt_kubestore_put: stores <obj> (ADDED, MODIFIED, or an item of a LIST, which carries no kind)
 * under its metadata.namespace/name after setting its kind and apiVersion and cutting what no
 * configuration reads; <obj> is modified. Returns 1 when the store changed, 0 when an equal
 * object was there already, PT_BADMSG when <obj> has no metadata.name, PT_NOMEM. */
int pt_kubestore_put(struct pt_kubestore *s, json_t *obj, const char *kind,
                     const char *api_version);

/* pt_kubestore_remove: removes the object named by <obj>'s metadata (DELETED). Returns 1 when it
 * was there, 0 when not, PT_BADMSG when <obj> has no metadata.name. */
int pt_kubestore_remove(struct pt_kubestore *s, const json_t *obj);

/* pt_kubestore_equal: whether <a> and <b> hold the same objects with the same text. */
bool pt_kubestore_equal(const struct pt_kubestore *a, const struct pt_kubestore *b);

/* pt_kubestore_free: frees every object; <s> is empty again. */
void pt_kubestore_free(struct pt_kubestore *s);

/* pt_kubestore_foreach: calls <fn> with the JSON text of every object of <s>. */
void pt_kubestore_foreach(const struct pt_kubestore *s, void (*fn)(const char *json, size_t len, void *arg),
                          void *arg);

/* pt_kubestore_list_json_keep: pt_kubestore_list_json with only the objects <keep>(store index,
 * JSON, length, <arg>) accepts (NULL: all). */
char *pt_kubestore_list_json_keep(const struct pt_kubestore *const *stores, size_t n, size_t *len,
                                  bool (*keep)(size_t store, const char *json, size_t len, void *arg), void *arg);

/* pt_kubestore_list_json: one JSON document {"apiVersion":"v1","kind":"List","items":[...]}
 * with the objects of the <n> stores at <stores>, store by store, sorted by namespace/name
 * within each (so loads are deterministic), one item per line. Returns malloc'd NUL-terminated
 * text (length in *<len> when not NULL), or NULL when memory is short. */
char *pt_kubestore_list_json(const struct pt_kubestore *const *stores, size_t n, size_t *len);

/* pt_kube_resource_version: <obj>'s metadata.resourceVersion, or NULL. Borrowed from <obj>. */
const char *pt_kube_resource_version(const json_t *obj);

#endif
