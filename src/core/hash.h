/* Hashing of byte strings: xxHash64, the hash Envoy uses for its consistent-hash load balancers
 * (ring hash points, Maglev permutations, hash policy keys, generated cookie values). Portico
 * uses it where it must pick what Envoy would pick; it is not a keyed hash and must never guard
 * against an attacker choosing the input. */
#ifndef PT_CORE_HASH_H
#define PT_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

/* pt_xxhash64: the XXH64 of the <len> bytes at <p> with <seed> (Envoy's HashUtil::xxHash64
 * uses seed 0; Maglev's skip uses seed 1). The same on every host (bytes are read
 * little-endian). No allocation. */
uint64_t pt_xxhash64(const void *p, size_t len, uint64_t seed);

#endif
