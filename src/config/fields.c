/* The generic reader behind resources.c's field tables (see fields.h): one typed setter per
 * field type, unknown-key notices, required-field checks, and the error helpers that put
 * `path: message` on the line of the offending field. Knows nothing about any kind. */
#include "config/fields.h"

#include "core/common.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static void report(struct pt_config__obj *c, enum pt_diag_severity sev, const struct pt_ynode *at,
                   const char *fmt, va_list ap)
{
    struct pt_origin o = { c->file, at ? at->line : c->line };
    pt_diag_vadd(c->diag, sev, &o, c->object, fmt, ap);
    if (sev == PT_DIAG_ERROR)
        c->nerrors++;
}

void pt_config__err(struct pt_config__obj *c, const struct pt_ynode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(c, PT_DIAG_ERROR, at, fmt, ap);
    va_end(ap);
}

void pt_config__notice(struct pt_config__obj *c, const struct pt_ynode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(c, PT_DIAG_NOTICE, at, fmt, ap);
    va_end(ap);
}

void pt_config__path(char *out, size_t cap, const char *prefix, const char *name)
{
    int n = snprintf(out, cap, "%s%s%.200s", prefix, *prefix ? "." : "", name);
    if (n < 0)
        out[0] = '\0';
}

static void path_index(char *out, size_t cap, const char *prefix, size_t i)
{
    int n = snprintf(out, cap, "%s[%zu]", prefix, i);
    if (n < 0)
        out[0] = '\0';
}

bool pt_config__is_string(const struct pt_ynode *n)
{
    return n->type == PT_YNODE_SCALAR && memchr(n->str, '\0', n->len) == NULL;
}

const char *pt_config__string(struct pt_config__obj *c, const struct pt_ynode *at,
                              const struct pt_ynode *val, const char *path)
{
    if (!pt_config__is_string(val)) {
        pt_config__err(c, at, "%s: expected a string", path);
        return NULL;
    }
    return pt_arena_strndup(c->arena, val->str, val->len);
}

bool pt_config__scalar_bool(const struct pt_ynode *n, bool *out)
{
    static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On",
                                       "ON", NULL };
    static const char *const no[] = { "false", "False", "FALSE", "no", "No", "NO", "off", "Off",
                                      "OFF", NULL };
    if (n->type != PT_YNODE_SCALAR)
        return false;
    for (size_t i = 0; yes[i]; i++) {
        if (strcmp(n->str, yes[i]) == 0 && strlen(yes[i]) == n->len)
            return *out = true, true;
        if (strcmp(n->str, no[i]) == 0 && strlen(no[i]) == n->len)
            return *out = false, true;
    }
    return false;
}

bool pt_config__scalar_long(const struct pt_ynode *n, long *out)
{
    if (n->type != PT_YNODE_SCALAR || n->len == 0 || n->len > 24 || strlen(n->str) != n->len)
        return false;
    char *end;
    errno = 0;
    long v = strtol(n->str, &end, 10);
    if (errno != 0 || *end != '\0' || n->str[0] == ' ' || n->str[0] == '\t')
        return false;
    *out = v;
    return true;
}

static bool scalar_double(const struct pt_ynode *n, double *out)
{
    if (n->type != PT_YNODE_SCALAR || n->len == 0 || n->len > 64 || strlen(n->str) != n->len)
        return false;
    char *end;
    errno = 0;
    double v = strtod(n->str, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || n->str[0] == ' ' || n->str[0] == '\t')
        return false;
    *out = v;
    return true;
}

static void set_int(struct pt_config__obj *c, const struct pt_config__field *f,
                    const struct pt_ynode *key, const struct pt_ynode *val, void *dst,
                    const char *path)
{
    long v;
    if (!pt_config__scalar_long(val, &v)) {
        pt_config__err(c, key, "%s: expected an integer", path);
    } else if (v < f->min || v > f->max) {
        if (f->max == INT_MAX)
            pt_config__err(c, key, "%s: expected an integer >= %ld", path, f->min);
        else
            pt_config__err(c, key, "%s: expected an integer between %ld and %ld", path, f->min,
                           f->max);
    } else {
        *(int *)dst = (int)v;
    }
}

static void set_double(struct pt_config__obj *c, const struct pt_config__field *f,
                       const struct pt_ynode *key, const struct pt_ynode *val, void *dst,
                       const char *path)
{
    double v;
    if (!scalar_double(val, &v) || v < (double)f->min || v > (double)f->max)
        pt_config__err(c, key, "%s: expected a number between %ld and %ld", path, f->min,
                       f->max);
    else
        *(double *)dst = v;
}

/* choices: "A, B, C" for messages. */
static void choices(char *out, size_t cap, const char *const *names)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; names[i] && used < cap; i++) {
        int n = snprintf(out + used, cap - used, "%s%s", i ? ", " : "", names[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

static void set_enum(struct pt_config__obj *c, const struct pt_config__field *f,
                     const struct pt_ynode *key, const struct pt_ynode *val, void *dst,
                     const char *path)
{
    if (pt_config__is_string(val)) {
        for (size_t i = 0; f->names[i]; i++) {
            if (strcmp(val->str, f->names[i]) != 0)
                continue;
            if (f->type == PT_F_ENUM)
                *(int *)dst = (int)i;
            else
                *(const char **)dst = f->names[i];
            return;
        }
    }
    char list[200];
    choices(list, sizeof(list), f->names);
    if (pt_config__is_string(val))
        pt_config__err(c, key, "%s: expected one of %s (got \"%.64s\")", path, list, val->str);
    else
        pt_config__err(c, key, "%s: expected one of %s", path, list);
}

static void set_strlist(struct pt_config__obj *c, const struct pt_config__field *f,
                        const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                        const char *path)
{
    const char ***dst = (const char ***)((char *)base + f->off);
    size_t *n = (size_t *)((char *)base + f->off_n);
    if (val->type == PT_YNODE_SCALAR) {
        const char *s = pt_config__string(c, key, val, path);
        if (s != NULL) {
            *dst = pt_arena_alloc(c->arena, sizeof(**dst));
            (*dst)[0] = s;
            *n = 1;
        }
        return;
    }
    if (val->type != PT_YNODE_SEQ) {
        pt_config__err(c, key, "%s: expected a list of strings", path);
        return;
    }
    const char **list = pt_arena_alloc_array(c->arena, val->nitems, sizeof(*list));
    char p[PT_PATH_MAX];
    for (size_t i = 0; i < val->nitems; i++) {
        path_index(p, sizeof(p), path, i);
        list[i] = pt_config__string(c, val->items[i], val->items[i], p);
    }
    *dst = list;
    *n = val->nitems;
}

void pt_config__kvmap(struct pt_config__obj *c, const struct pt_ynode *key,
                      const struct pt_ynode *val, struct pt_kv **dst, size_t *n, const char *path)
{
    if (val->type != PT_YNODE_MAP) {
        pt_config__err(c, key, "%s: expected a mapping", path);
        return;
    }
    if (val->dup_key != NULL)
        pt_config__err(c, val->dup_key, "%s: duplicate key \"%.64s\"", path, val->dup_key->str);
    struct pt_kv *kv = pt_arena_alloc_array(c->arena, val->npairs, sizeof(*kv));
    char p[PT_PATH_MAX];
    for (size_t i = 0; i < val->npairs; i++) {
        const struct pt_ypair *pr = &val->pairs[i];
        kv[i].key = pt_config__string(c, pr->key, pr->key, path);
        pt_config__path(p, sizeof(p), path, kv[i].key ? kv[i].key : "?");
        kv[i].value = pt_ynode_is_null(pr->value) ? ""
                                                  : pt_config__string(c, pr->key, pr->value, p);
    }
    *dst = kv;
    *n = val->npairs;
}

static void set_kvmap(struct pt_config__obj *c, const struct pt_config__field *f,
                      const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                      const char *path)
{
    pt_config__kvmap(c, key, val, (struct pt_kv **)((char *)base + f->off),
                     (size_t *)((char *)base + f->off_n), path);
}

static void set_objlist(struct pt_config__obj *c, const struct pt_config__field *f,
                        const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                        const char *path)
{
    if (val->type != PT_YNODE_SEQ) {
        pt_config__err(c, key, "%s: expected a list", path);
        return;
    }
    char *arr = pt_arena_alloc_array(c->arena, val->nitems, f->elem);
    char p[PT_PATH_MAX];
    for (size_t i = 0; i < val->nitems; i++) {
        const struct pt_ynode *item = val->items[i];
        path_index(p, sizeof(p), path, i);
        if (item->type != PT_YNODE_MAP)
            pt_config__err(c, item, "%s: expected a mapping", p);
        else
            pt_config__read_fields(c, item, f->sub, arr + i * f->elem, p);
    }
    *(void **)((char *)base + f->off) = arr;
    *(size_t *)((char *)base + f->off_n) = val->nitems;
}

static void set_field(struct pt_config__obj *c, const struct pt_config__field *f,
                      const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                      const char *path)
{
    void *dst = (char *)base + f->off;
    bool b;
    switch (f->type) {
    case PT_F_STR: {
        const char *s = pt_config__string(c, key, val, path);
        if (s != NULL)
            *(const char **)dst = s;
        break;
    }
    case PT_F_BOOL:
        if (pt_config__scalar_bool(val, &b))
            *(bool *)dst = b;
        else
            pt_config__err(c, key, "%s: expected true or false", path);
        break;
    case PT_F_INT:
        set_int(c, f, key, val, dst, path);
        break;
    case PT_F_DOUBLE:
        set_double(c, f, key, val, dst, path);
        break;
    case PT_F_ENUM:
    case PT_F_STRENUM:
        set_enum(c, f, key, val, dst, path);
        break;
    case PT_F_STRLIST:
        set_strlist(c, f, key, val, base, path);
        break;
    case PT_F_KVMAP:
        set_kvmap(c, f, key, val, base, path);
        break;
    case PT_F_OBJECT:
        if (val->type != PT_YNODE_MAP)
            pt_config__err(c, key, "%s: expected a mapping", path);
        else
            pt_config__read_fields(c, val, f->sub, dst, path);
        break;
    case PT_F_OBJLIST:
        set_objlist(c, f, key, val, base, path);
        break;
    case PT_F_CUSTOM:
        f->fn(c, f, key, val, base, path);
        break;
    case PT_F_INLINE:
    case PT_F_IGNORE:
    case PT_F_END:
        break;
    }
}

static bool name_is(const char *name, const struct pt_ynode *key)
{
    return name != NULL && strlen(name) == key->len && memcmp(name, key->str, key->len) == 0;
}

/* lookup: the field <key> names in <tab> (or in an INLINE sub-table, adding its offset to *off). */
static const struct pt_config__field *lookup(const struct pt_config__field *tab,
                                             const struct pt_ynode *key, size_t *off,
                                             bool *via_alias, int *idx)
{
    for (int i = 0; tab[i].type != PT_F_END; i++) {
        const struct pt_config__field *f = &tab[i];
        if (f->type == PT_F_INLINE) {
            size_t suboff = 0;
            int subidx;
            const struct pt_config__field *g = lookup(f->sub, key, &suboff, via_alias, &subidx);
            if (g != NULL) {
                *off = f->off + suboff;
                *idx = -1; /* inline fields are never required */
                return g;
            }
        } else if (name_is(f->name, key) || name_is(f->alias, key)) {
            *via_alias = !name_is(f->name, key);
            *off = 0;
            *idx = i;
            return f;
        }
    }
    return NULL;
}

static void check_required(struct pt_config__obj *c, const struct pt_ynode *map,
                           const struct pt_config__field *tab, uint64_t seen, const char *path)
{
    char p[PT_PATH_MAX];
    for (size_t i = 0; tab[i].type != PT_F_END && i < 64; i++) {
        if (!(tab[i].flags & PT_F_REQUIRED) || (seen & ((uint64_t)1 << i)))
            continue;
        pt_config__path(p, sizeof(p), path, tab[i].name);
        /* a missing top-level field is reported on the object's line, a nested one on its map */
        pt_config__err(c, *path ? map : NULL, "%s: required", p);
    }
}

void pt_config__read_fields(struct pt_config__obj *c, const struct pt_ynode *map,
                            const struct pt_config__field *tab, void *base, const char *path)
{
    uint64_t seen = 0;
    char p[PT_PATH_MAX];
    if (map->dup_key != NULL) {
        pt_config__path(p, sizeof(p), path, map->dup_key->str);
        pt_config__err(c, map->dup_key, "%s: duplicate key", p);
    }
    for (size_t i = 0; i < map->npairs; i++) {
        const struct pt_ynode *key = map->pairs[i].key, *val = map->pairs[i].value;
        if (!pt_config__is_string(key)) {
            pt_config__notice(c, key, "%s%snon-string key ignored", path, *path ? ": " : "");
            continue;
        }
        pt_config__path(p, sizeof(p), path, key->str);
        size_t off = 0;
        bool via_alias = false;
        int idx = -1;
        const struct pt_config__field *f = lookup(tab, key, &off, &via_alias, &idx);
        if (f == NULL) {
            pt_config__notice(c, key, "unknown field %s ignored", p);
            continue;
        }
        if (via_alias && (f->flags & PT_F_DEPRECATED))
            pt_config__notice(c, key, "%s is deprecated; use %s", p, f->name);
        if (pt_ynode_is_null(val))
            continue;
        if (idx >= 0 && idx < 64)
            seen |= (uint64_t)1 << idx;
        set_field(c, f, key, val, (char *)base + off, p);
    }
    check_required(c, map, tab, seen, path);
}
