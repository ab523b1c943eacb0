/* What the gRPC policy calls (proxy/authgrpc.c, proxy/ratelimit.c) share to build and read
 * protocol buffers with protobuf-c without allocating: a bump allocator over a caller's
 * buffer (for the strings of a request, and for unpacking an answer), strings copied as valid
 * UTF-8 (proto3 strings must be; other bytes become '!', as Envoy sanitizes them), and the
 * 5-byte gRPC message frame. Internal to src/proxy/. */
#ifndef PT_PROXY_PBUF_H
#define PT_PROXY_PBUF_H

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

struct pt_pbuf {
    char *base;
    size_t used, cap;
    bool full;                  /* something did not fit */
    bool heap;                  /* base was allocated by pt_pbuf_sized */
};

/* pt_pbuf_sized: a buffer over <mem> (<cap> bytes), or over <need> bytes of the heap when that
 * is more (if it can be had: else <mem>, which then fills up). pt_pbuf_release frees them. */
static inline struct pt_pbuf pt_pbuf_sized(char *mem, size_t cap, size_t need)
{
    char *heap = need > cap ? malloc(need) : NULL;

    return heap != NULL ? (struct pt_pbuf){ .base = heap, .cap = need, .heap = true }
                        : (struct pt_pbuf){ .base = mem, .cap = cap };
}

static inline void pt_pbuf_release(struct pt_pbuf *b)
{
    if (b->heap)
        free(b->base);
    b->heap = false;
}

static inline void *pt_pbuf_alloc(void *data, size_t size)
{
    struct pt_pbuf *b = data;
    size_t at = (size_t)((((uintptr_t)(b->base + b->used) + 15) & ~(uintptr_t)15) - (uintptr_t)b->base);

    if (size > b->cap || at > b->cap - size) {
        b->full = true;
        return NULL;
    }
    b->used = at + size;
    return b->base + at;
}

static inline void pt_pbuf_free(void *data, void *p)
{
    (void)data, (void)p; /* all of it goes with the buffer */
}

/* pt_pbuf_allocator: protobuf-c's allocator over <b>. */
static inline ProtobufCAllocator pt_pbuf_allocator(struct pt_pbuf *b)
{
    return (ProtobufCAllocator){ .alloc = pt_pbuf_alloc, .free = pt_pbuf_free, .allocator_data = b };
}

/* pt_pbuf_utf8_len: the length of the valid UTF-8 sequence at <p> (at most <n> bytes left),
 * or 0 when the byte there does not start one. */
static inline size_t pt_pbuf_utf8_len(const unsigned char *p, size_t n)
{
    size_t len;
    uint32_t cp;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        len = 2, cp = p[0] & 0x1f;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        len = 3, cp = p[0] & 0x0f;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        len = 4, cp = p[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* pt_pbuf__utf8: <s> copied to <out> as valid UTF-8 (invalid bytes as '!', as Envoy sanitizes
 * them; NULs kept), lowercased when <lower>. */
static inline void pt_pbuf__utf8(char *out, struct pt_str s, bool lower)
{
    const unsigned char *p = (const unsigned char *)s.ptr;

    for (size_t i = 0; i < s.len;) {
        size_t l = pt_pbuf_utf8_len(p + i, s.len - i);
        if (l == 0) {
            out[i++] = '!';
            continue;
        }
        memcpy(out + i, p + i, l);
        if (lower && l == 1)
            out[i] = pt_lower(out[i]);
        i += l;
    }
}

/* pt_pbuf_str: <s> as a NUL-terminated UTF-8 string in <b>, lowercased when <lower>; "" when
 * <b> is full. */
static inline char *pt_pbuf_str(struct pt_pbuf *b, struct pt_str s, bool lower)
{
    char *out = pt_pbuf_alloc(b, s.len + 1);

    if (out == NULL)
        return (char *)"";
    pt_pbuf__utf8(out, s, lower);
    out[s.len] = '\0';
    return out;
}

/* pt_pbuf_bytes: <s> as valid UTF-8 bytes in <b>, for a string field declared bytes so that
 * it is packed whole (protobuf-c packs a string up to its first NUL); empty when <b> is full. */
static inline ProtobufCBinaryData pt_pbuf_bytes(struct pt_pbuf *b, struct pt_str s)
{
    char *out = pt_pbuf_alloc(b, s.len + 1);

    if (out == NULL)
        return (ProtobufCBinaryData){ 0, NULL };
    pt_pbuf__utf8(out, s, false);
    return (ProtobufCBinaryData){ s.len, (uint8_t *)out };
}

/* pt_pbuf_frame: the gRPC frame of a message of <len> bytes (uncompressed) into <out>. */
static inline void pt_pbuf_frame(uint8_t out[5], size_t len)
{
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

/* pt_pbuf_unframe: the one uncompressed message that <body> (a gRPC answer's whole body)
 * holds; false when it holds anything else. */
static inline bool pt_pbuf_unframe(struct pt_str body, struct pt_str *msg)
{
    const uint8_t *p = (const uint8_t *)body.ptr;
    size_t len;

    if (body.len < 5 || p[0] != 0)
        return false;
    len = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
    if (len != body.len - 5)
        return false;
    *msg = pt_str_make(body.ptr + 5, len);
    return true;
}

#endif
