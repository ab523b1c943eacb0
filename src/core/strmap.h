/* A small open-addressing hash map from byte strings to pointers, for start-up and config code
 * (YAML anchors, duplicate detection). Keys are borrowed: they must outlive the map. */
#ifndef PT_CORE_STRMAP_H
#define PT_CORE_STRMAP_H

#include <stddef.h>

struct pt_strmap_slot;

/* An all-zero pt_strmap is a valid empty map. */
struct pt_strmap {
    struct pt_strmap_slot *_slots;
    size_t _cap; /* power of two, or 0 */
    size_t _n;
};

/* pt_strmap_get: the value stored under the <len> bytes at <key>, or NULL. */
void *pt_strmap_get(const struct pt_strmap *m, const char *key, size_t len);

/* pt_strmap_put: stores <value> (not NULL) under <key>, replacing any earlier value. The key
 * bytes are borrowed. Aborts when memory is exhausted (config code). */
void pt_strmap_put(struct pt_strmap *m, const char *key, size_t len, void *value);

/* pt_strmap_foreach: calls <fn>(value, <arg>) for every entry, in no particular order. */
void pt_strmap_foreach(const struct pt_strmap *m, void (*fn)(void *value, void *arg), void *arg);

/* pt_strmap_free: releases the table (not the keys or values); <m> is empty again. */
void pt_strmap_free(struct pt_strmap *m);

#endif
