/* Chunked bump allocator (see arena.h). Small allocations are carved from 16 KiB chunks; an
 * allocation larger than a quarter chunk gets a chunk of its own, linked behind the current one
 * so the current chunk's free space is not wasted. Used by config/ for one pt_resources and for
 * the short-lived YAML node trees of the loader. */
#include "core/arena.h"

#include "core/common.h"

#include <stdint.h>
#include <stdlib.h>

#define ARENA_ALIGN 16
#define ARENA_CHUNK (16 * 1024)

struct pt_arena_chunk {
    struct pt_arena_chunk *next;
    size_t size; /* usable bytes in data */
    size_t used;
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

static size_t align_up(size_t n)
{
    if (n > SIZE_MAX - (ARENA_ALIGN - 1)) {
        pt_xmalloc(SIZE_MAX); /* aborts */
    }
    return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

static struct pt_arena_chunk *chunk_new(size_t size)
{
    if (size > SIZE_MAX - sizeof(struct pt_arena_chunk))
        pt_xmalloc(SIZE_MAX); /* aborts */
    struct pt_arena_chunk *c = pt_xcalloc(1, sizeof(*c) + size);
    c->size = size;
    return c;
}

void *pt_arena_alloc(struct pt_arena *a, size_t n)
{
    size_t need = align_up(n ? n : 1);
    struct pt_arena_chunk *c = a->_head;
    a->_allocated += need;
    if (c != NULL && c->size - c->used >= need) {
        void *p = c->data + c->used;
        c->used += need;
        return p; /* chunks are calloc'd and never reused, so this memory is zero */
    }
    if (need > ARENA_CHUNK / 4) {
        struct pt_arena_chunk *big = chunk_new(need);
        big->used = need;
        if (c != NULL) {
            big->next = c->next;
            c->next = big;
        } else {
            a->_head = big;
        }
        return big->data;
    }
    c = chunk_new(ARENA_CHUNK);
    c->next = a->_head;
    a->_head = c;
    c->used = need;
    return c->data;
}

void *pt_arena_alloc_array(struct pt_arena *a, size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size)
        pt_xmalloc(SIZE_MAX); /* aborts */
    return pt_arena_alloc(a, count * size);
}

void *pt_arena_grow(struct pt_arena *a, const void *old, size_t oldcount, size_t newcount,
                    size_t size)
{
    void *p = pt_arena_alloc_array(a, newcount, size);
    if (old != NULL && oldcount != 0)
        memcpy(p, old, (oldcount < newcount ? oldcount : newcount) * size);
    return p;
}

char *pt_arena_strndup(struct pt_arena *a, const char *s, size_t n)
{
    if (n == SIZE_MAX)
        pt_xmalloc(SIZE_MAX); /* aborts */
    char *p = pt_arena_alloc(a, n + 1);
    if (n != 0)
        memcpy(p, s, n);
    return p; /* already NUL-terminated: arena memory is zeroed */
}

char *pt_arena_strdup(struct pt_arena *a, const char *s)
{
    return s ? pt_arena_strndup(a, s, strlen(s)) : NULL;
}

size_t pt_arena_allocated(const struct pt_arena *a)
{
    return a->_allocated;
}

void pt_arena_free_all(struct pt_arena *a)
{
    struct pt_arena_chunk *c = a->_head;
    while (c != NULL) {
        struct pt_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->_head = NULL;
    a->_allocated = 0;
}
