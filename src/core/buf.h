/* Byte buffers and the per-thread pool they come from. A buffer holds bytes in
 * [base+off, base+off+len); an all-zero pt_buf is an empty buffer with no storage. Storage comes
 * from a pt_buf_pool owned by one thread (no locks) and goes back to it when empty, so idle
 * connections hold no buffer. */
#ifndef PT_CORE_BUF_H
#define PT_CORE_BUF_H

#include <stdlib.h>
#include <sys/uio.h>

#include "core/common.h"

#define PT_BUF_SIZE 16384

struct pt_buf {
    char *base;
    uint32_t cap, off, len;
};

struct pt_buf_pool {
    void *free_list; /* singly linked through the first word of each free block */
    uint32_t nfree, max_free;
};

/* pt_buf_reserve: makes sure <b> has storage (PT_BUF_SIZE from <pool>). Returns 0 or PT_NOMEM. */
__attribute__((warn_unused_result)) static inline int pt_buf_reserve(struct pt_buf_pool *pool, struct pt_buf *b)
{
    if (b->base != NULL)
        return 0;
    if (pool->free_list != NULL) {
        b->base = pool->free_list;
        pool->free_list = *(void **)pool->free_list;
        pool->nfree--;
    } else if ((b->base = malloc(PT_BUF_SIZE)) == NULL) {
        return PT_NOMEM;
    }
    b->cap = PT_BUF_SIZE;
    b->off = b->len = 0;
    return 0;
}

/* pt_buf_release: gives <b>'s storage back (to the pool when it is a standard buffer). */
static inline void pt_buf_release(struct pt_buf_pool *pool, struct pt_buf *b)
{
    if (b->base == NULL)
        return;
    if (b->cap == PT_BUF_SIZE && pool->nfree < pool->max_free) {
        *(void **)b->base = pool->free_list;
        pool->free_list = b->base;
        pool->nfree++;
    } else {
        free(b->base);
    }
    *b = (struct pt_buf){ 0 };
}

/* pt_buf_consume: drops <n> bytes from the front. */
static inline void pt_buf_consume(struct pt_buf *b, uint32_t n)
{
    b->off += n;
    b->len -= n;
    if (b->len == 0)
        b->off = 0;
}

/* pt_buf_compact: moves the data to the front so the tail has room. */
static inline void pt_buf_compact(struct pt_buf *b)
{
    if (b->off != 0 && b->len != 0)
        memmove(b->base, b->base + b->off, b->len);
    b->off = 0;
}

static inline char *pt_buf_data(const struct pt_buf *b)
{
    return b->base + b->off;
}

static inline uint32_t pt_buf_room(const struct pt_buf *b)
{
    return b->cap - b->off - b->len;
}

/* pt_buf_grow: replaces the storage with a larger one of <cap> bytes (heads longer than a
 * standard buffer). Returns 0 or PT_NOMEM; the data is kept. */
static inline int pt_buf_grow(struct pt_buf_pool *pool, struct pt_buf *b, uint32_t cap)
{
    char *n = malloc(cap);
    if (n == NULL)
        return PT_NOMEM;
    if (b->len)
        memcpy(n, b->base + b->off, b->len);
    uint32_t len = b->len;
    pt_buf_release(pool, b);
    b->base = n;
    b->cap = cap;
    b->off = 0;
    b->len = len;
    return 0;
}

/* pt_buf_append_iov: appends the bytes of <iov> after the first <skip> (what a socket already
 * took) to <b>, reserving or growing its storage. Returns 0 or PT_NOMEM. */
static inline int pt_buf_append_iov(struct pt_buf_pool *pool, struct pt_buf *b, const struct iovec *iov,
                                    int iovcnt, size_t total, size_t skip)
{
    if (pt_buf_reserve(pool, b) != 0)
        return PT_NOMEM;
    pt_buf_compact(b);
    if (pt_buf_room(b) < total - skip && pt_buf_grow(pool, b, b->len + (uint32_t)(total - skip) + 1024) != 0)
        return PT_NOMEM;
    for (int i = 0; i < iovcnt; i++) {
        size_t len = iov[i].iov_len, k = skip < len ? skip : len;
        skip -= k;
        if (len == k)
            continue; /* an empty piece may have no base at all */
        memcpy(b->base + b->off + b->len, (const char *)iov[i].iov_base + k, len - k);
        b->len += (uint32_t)(len - k);
    }
    return 0;
}

/* Header fields kept in a buffer (HTTP/2 trailers, an upstream's head): each is
 * [u32 name length][u32 value length][name][value]. */

/* pt_fields_append: appends <name>: <value> to <b>. Returns 0 or PT_NOMEM. */
static inline int pt_fields_append(struct pt_buf_pool *pool, struct pt_buf *b, struct pt_str name, struct pt_str value)
{
    uint32_t nl = (uint32_t)name.len, vl = (uint32_t)value.len;
    struct iovec iov[4] = { { &nl, 4 }, { &vl, 4 }, { (void *)name.ptr, name.len }, { (void *)value.ptr, value.len } };

    return pt_buf_append_iov(pool, b, iov, 4, 8 + name.len + value.len, 0);
}

/* pt_fields_read: the first <n> fields kept in <b> from byte <off>, as headers into <out> (at
 * most <max>; they point into <b>). Returns how many. */
static inline size_t pt_fields_read(const struct pt_buf *b, uint32_t off, size_t n, struct pt_header *out, size_t max)
{
    const char *p;
    size_t k = 0;

    if (n == 0)
        return 0; /* an empty buffer may have no storage */
    p = b->base + b->off + off;
    for (; k < n && k < max; k++) {
        uint32_t nl, vl;
        memcpy(&nl, p, 4);
        memcpy(&vl, p + 4, 4);
        out[k] = (struct pt_header){ pt_str_make(p + 8, nl), pt_str_make(p + 8 + nl, vl) };
        p += 8 + nl + vl;
    }
    return k;
}

/* pt_buf_pool_drain: frees every pooled block (thread exit). */
static inline void pt_buf_pool_drain(struct pt_buf_pool *pool)
{
    while (pool->free_list != NULL) {
        void *next = *(void **)pool->free_list;
        free(pool->free_list);
        pool->free_list = next;
    }
    pool->nfree = 0;
}

#endif
