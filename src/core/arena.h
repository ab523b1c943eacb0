/* A chunked bump allocator for data that lives and dies together (one configuration load).
 * Allocations are zeroed and 16-byte aligned; nothing is freed one by one; pt_arena_free_all
 * releases everything at once. Config code only: allocation failure aborts (pt_xmalloc). */
#ifndef PT_CORE_ARENA_H
#define PT_CORE_ARENA_H

#include <stddef.h>

struct pt_arena_chunk;

/* An all-zero pt_arena is a valid empty arena. */
struct pt_arena {
    struct pt_arena_chunk *_head; /* chunk being filled; older and oversized chunks behind it */
    size_t _allocated;            /* bytes handed out, for diagnostics */
};

/* pt_arena_alloc: <n> zeroed bytes owned by <a>, valid until pt_arena_free_all(<a>). Never NULL:
 * aborts when memory is exhausted. <n> may be 0 (returns a unique non-NULL pointer). */
void *pt_arena_alloc(struct pt_arena *a, size_t n);

/* pt_arena_alloc_array: <count> zeroed elements of <size> bytes; aborts on overflow. */
void *pt_arena_alloc_array(struct pt_arena *a, size_t count, size_t size);

/* pt_arena_grow: a copy of the array <old> (<oldcount> elements of <size>) with room for
 * <newcount> elements, the tail zeroed. <old> stays allocated (arenas never free). */
void *pt_arena_grow(struct pt_arena *a, const void *old, size_t oldcount, size_t newcount,
                    size_t size);

/* pt_arena_strdup: a NUL-terminated copy of <s> in <a>; NULL when <s> is NULL. */
char *pt_arena_strdup(struct pt_arena *a, const char *s);

/* pt_arena_strndup: a NUL-terminated copy of the first <n> bytes of <s> (which may hold NULs). */
char *pt_arena_strndup(struct pt_arena *a, const char *s, size_t n);

/* pt_arena_allocated: bytes handed out so far (not counting chunk slack). */
size_t pt_arena_allocated(const struct pt_arena *a);

/* pt_arena_free_all: frees every allocation of <a>; <a> is empty again and may be reused. */
void pt_arena_free_all(struct pt_arena *a);

#endif
