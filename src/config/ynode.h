/* The loader's YAML node tree, shared by config/load.c (which builds it from libyaml events)
 * and config/resources.c (which reads resources out of it). Internal to config/. A tree lives in
 * a scratch arena for one document; resources copy what they keep. Aliases point at the anchored
 * node, so a tree is a DAG; `weight` bounds how much work walking it can take. */
#ifndef PT_CONFIG_YNODE_H
#define PT_CONFIG_YNODE_H

#include "config/load.h"

#include <stdbool.h>
#include <stddef.h>

enum pt_ynode_type { PT_YNODE_SCALAR, PT_YNODE_SEQ, PT_YNODE_MAP };

struct pt_ynode;

struct pt_ypair {
    struct pt_ynode *key;
    struct pt_ynode *value;
};

struct pt_ynode {
    enum pt_ynode_type type;
    int line;      /* 1-based line where the node starts */
    bool plain;    /* SCALAR: unquoted and untagged, so it may read as null, bool or number */
    const char *str; /* SCALAR: the bytes, NUL-terminated (may also contain NULs) */
    size_t len;
    struct pt_ynode **items; /* SEQ */
    size_t nitems;
    struct pt_ypair *pairs;  /* MAP, in document order */
    size_t npairs;
    size_t _cap;             /* capacity of items or pairs while building */
    const struct pt_ynode *dup_key; /* MAP: the second occurrence of a repeated key, or NULL */
    size_t weight; /* nodes in the subtree with aliases expanded (saturates) */
};

struct pt_config__loader;

/* pt_config__loader_new: a loader that collects resources into a new pt_resources. <env> may
 * be NULL; its strings are copied. */
struct pt_config__loader *pt_config__loader_new(const struct pt_config_env *env);

/* pt_config__loader_file: <path> copied into the resources' arena, for origins. */
const char *pt_config__loader_file(struct pt_config__loader *l, const char *path);

/* pt_config__diag: the diagnostics list being filled. */
struct pt_diag *pt_config__diag(struct pt_config__loader *l);

/* pt_config__add_document: reads the objects of one YAML document (<root>, never NULL) from
 * <file> (a string from pt_config__loader_file). <root> is only borrowed during the call. */
void pt_config__add_document(struct pt_config__loader *l, const char *file,
                             const struct pt_ynode *root);

/* pt_config__loader_finish: frees the loader and returns its resources. */
struct pt_resources *pt_config__loader_finish(struct pt_config__loader *l);

/* Scalar helpers for resources.c. */

/* pt_ynode_is_null: a plain empty, "~" or "null" scalar (YAML null). NULL counts as null. */
bool pt_ynode_is_null(const struct pt_ynode *n);

/* pt_ynode_get: the value under the scalar key <key> of the MAP <map>, or NULL (also when <map>
 * is NULL or not a map). The first occurrence wins. */
const struct pt_ynode *pt_ynode_get(const struct pt_ynode *map, const char *key);

#endif
