/* String-keyed hash map (see strmap.h): FNV-1a hashing, linear probing, grown at 50% load.
 * Used by config/load.c for YAML anchors and by config/resources.c for duplicate objects. */
#include "core/strmap.h"

#include "core/common.h"

#include <stdint.h>
#include <stdlib.h>

struct pt_strmap_slot {
    const char *key; /* NULL: empty slot */
    size_t len;
    uint64_t hash;
    void *value;
};

static uint64_t hash_bytes(const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static struct pt_strmap_slot *find_slot(const struct pt_strmap *m, const char *key, size_t len,
                                        uint64_t h)
{
    size_t mask = m->_cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct pt_strmap_slot *s = &m->_slots[i];
        if (s->key == NULL)
            return s;
        if (s->hash == h && s->len == len && (len == 0 || memcmp(s->key, key, len) == 0))
            return s;
    }
}

void *pt_strmap_get(const struct pt_strmap *m, const char *key, size_t len)
{
    if (m->_cap == 0)
        return NULL;
    struct pt_strmap_slot *s = find_slot(m, key, len, hash_bytes(key, len));
    return s->key ? s->value : NULL;
}

static void grow(struct pt_strmap *m)
{
    struct pt_strmap old = *m;
    m->_cap = old._cap ? old._cap * 2 : 16;
    m->_slots = pt_xcalloc(m->_cap, sizeof(*m->_slots));
    for (size_t i = 0; i < old._cap; i++) {
        if (old._slots[i].key != NULL)
            *find_slot(m, old._slots[i].key, old._slots[i].len, old._slots[i].hash) =
                old._slots[i];
    }
    free(old._slots);
}

void pt_strmap_put(struct pt_strmap *m, const char *key, size_t len, void *value)
{
    if ((m->_n + 1) * 2 > m->_cap)
        grow(m);
    uint64_t h = hash_bytes(key, len);
    struct pt_strmap_slot *s = find_slot(m, key, len, h);
    if (s->key == NULL) {
        s->key = key ? key : "";
        s->len = len;
        s->hash = h;
        m->_n++;
    }
    s->value = value;
}

void pt_strmap_free(struct pt_strmap *m)
{
    free(m->_slots);
    m->_slots = NULL;
    m->_cap = 0;
    m->_n = 0;
}

void pt_strmap_foreach(const struct pt_strmap *m, void (*fn)(void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < m->_cap; i++)
        if (m->_slots[i].key != NULL)
            fn(m->_slots[i].value, arg);
}
