/* xxHash64 (see core/hash.h), written from the algorithm's public description: four lanes
 * over 32-byte stripes, the lanes merged, the tail in 8-, 4- and 1-byte steps, and a final
 * avalanche. Called by cluster/lb.c (ring and Maglev tables) and proxy/lbhash.c (a request's
 * hash key). */
#include "core/hash.h"

#include <string.h>

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static inline uint64_t rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t read64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline uint64_t read32(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
}

/* lane: one 8-byte input folded into an accumulator. */
static inline uint64_t lane(uint64_t acc, uint64_t in)
{
    acc += in * P2;
    return rotl(acc, 31) * P1;
}

/* merge: a lane's accumulator folded into the total after the stripes. */
static inline uint64_t merge(uint64_t h, uint64_t v)
{
    h ^= lane(0, v);
    return h * P1 + P4;
}

/* stripes: the hash state after the 32-byte stripes of <p> (len >= 32); *used gets the bytes
 * they covered. */
static uint64_t stripes(const unsigned char *p, size_t len, uint64_t seed, size_t *used)
{
    uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1, h;
    size_t i = 0;

    for (; i + 32 <= len; i += 32) {
        v1 = lane(v1, read64(p + i));
        v2 = lane(v2, read64(p + i + 8));
        v3 = lane(v3, read64(p + i + 16));
        v4 = lane(v4, read64(p + i + 24));
    }
    *used = i;
    h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
    h = merge(h, v1);
    h = merge(h, v2);
    h = merge(h, v3);
    return merge(h, v4);
}

uint64_t pt_xxhash64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    size_t i = 0;
    uint64_t h = len >= 32 ? stripes(p, len, seed, &i) : seed + P5;

    h += (uint64_t)len;
    for (; i + 8 <= len; i += 8) {
        h ^= lane(0, read64(p + i));
        h = rotl(h, 27) * P1 + P4;
    }
    if (i + 4 <= len) {
        h ^= read32(p + i) * P1;
        h = rotl(h, 23) * P2 + P3;
        i += 4;
    }
    for (; i < len; i++) {
        h ^= (uint64_t)p[i] * P5;
        h = rotl(h, 11) * P1;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    return h ^ (h >> 32);
}
