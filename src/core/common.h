/* Portico's small common vocabulary: string slices, status codes, helpers that every module uses.
 * Nothing here allocates on its own except pt_xalloc family (start-up and config code only). */
#ifndef PT_CORE_COMMON_H
#define PT_CORE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>

#define PT_LIKELY(x)   __builtin_expect(!!(x), 1)
#define PT_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define PT_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define pt_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* Status codes: 0 is success, negatives are PT_E* from this one table. */
#define PT_ERRNO_MAP(X)                                                \
    X(AGAIN, -1, "would block, call again")                            \
    X(DECLINED, -2, "not handled here, try the next handler")          \
    X(NOMEM, -3, "out of memory")                                      \
    X(INVAL, -4, "invalid argument")                                   \
    X(BADMSG, -5, "malformed message")                                 \
    X(TOOBIG, -6, "message too large")                                 \
    X(IO, -7, "I/O error")                                             \
    X(CLOSED, -8, "connection closed")                                 \
    X(TIMEDOUT, -9, "timed out")                                       \
    X(NOTFOUND, -10, "not found")                                      \
    X(NOTSUP, -11, "not supported")

enum pt_status {
#define PT_ERR_ENUM(name, val, msg) PT_##name = (val),
    PT_OK = 0,
    PT_ERRNO_MAP(PT_ERR_ENUM)
#undef PT_ERR_ENUM
};

/* pt_strerror: the message for a PT_* status code (never NULL). */
const char *pt_strerror(int status);

/* A non-owning slice of bytes. An all-zero pt_str is the empty string. */
struct pt_str {
    const char *ptr;
    size_t len;
};

/* One HTTP header as slices into the buffer it was parsed from. */
struct pt_header {
    struct pt_str name;
    struct pt_str value;
};

#define PT_STR_LIT(s) ((struct pt_str){ (s), sizeof(s) - 1 })

static inline struct pt_str pt_str_make(const char *p, size_t n)
{
    return (struct pt_str){ p, n };
}

static inline struct pt_str pt_str_c(const char *s)
{
    return (struct pt_str){ s, s ? strlen(s) : 0 };
}

static inline bool pt_str_eq(struct pt_str a, struct pt_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static inline char pt_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c | 0x20) : c;
}

/* pt__load8, pt__load4, pt__load2: <n> unaligned bytes at <p>, zero-extended. */
static inline uint64_t pt__load8(const char *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof(x));
    return x;
}

static inline uint64_t pt__load4(const char *p)
{
    uint32_t x;
    memcpy(&x, p, sizeof(x));
    return x;
}

static inline uint64_t pt__load2(const char *p)
{
    uint16_t x;
    memcpy(&x, p, sizeof(x));
    return x;
}

/* pt__lower8: pt_lower() on each byte of <x> at once. With h = x & 0x7f.. (no byte carries into
 * the next: h + 0x3f <= 0xbe), a byte's top bit in h + (0x80 - 'A') says h >= 'A' and in
 * h + (0x80 - 'Z' - 1) says h > 'Z'; bytes of 0x80 and above are left alone, as pt_lower does. */
static inline __attribute__((always_inline)) uint64_t pt__lower8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL, top = 0x8080808080808080ULL;
    uint64_t h = x & ~top;
    uint64_t upper = (h + ones * (0x80 - 'A')) & ~(h + ones * (0x80 - 'Z' - 1)) & ~x & top;
    return x | (upper >> 2);
}

/* pt_str_caseeq: ASCII case-insensitive equality. Compares 8 bytes per step (the last step
 * overlaps the one before); a shorter string is read as overlapping 4-, 2- or 1-byte pieces.
 * Against a literal, the literal's half folds to constants. */
static inline __attribute__((always_inline)) bool pt_str_caseeq(struct pt_str a, struct pt_str b)
{
    size_t n = a.len;

    if (n != b.len)
        return false;
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8)
            if (pt__lower8(pt__load8(a.ptr + i)) != pt__lower8(pt__load8(b.ptr + i)))
                return false;
        return pt__lower8(pt__load8(a.ptr + n - 8)) == pt__lower8(pt__load8(b.ptr + n - 8));
    }
    if (n >= 4)
        return pt__lower8(pt__load4(a.ptr) | pt__load4(a.ptr + n - 4) << 32) ==
               pt__lower8(pt__load4(b.ptr) | pt__load4(b.ptr + n - 4) << 32);
    if (n >= 2)
        return pt__lower8(pt__load2(a.ptr) | pt__load2(a.ptr + n - 2) << 16) ==
               pt__lower8(pt__load2(b.ptr) | pt__load2(b.ptr + n - 2) << 16);
    return n == 0 || pt_lower(a.ptr[0]) == pt_lower(b.ptr[0]);
}

/* pt_memcpy_short: <n> bytes from <s> to <d> (apart). For the short names and values of heads
 * and log lines: up to 32 bytes move as two overlapping words (or pairs of 16) inline, instead
 * of a call to memcpy; longer ones call it. <s> is not read when <n> is 0. */
static inline void pt_memcpy_short(char *d, const char *s, size_t n)
{
    if (n >= 16) {
        if (n > 32) {
            memcpy(d, s, n);
            return;
        }
        char a[16], b[16];
        memcpy(a, s, 16);
        memcpy(b, s + n - 16, 16);
        memcpy(d, a, 16);
        memcpy(d + n - 16, b, 16);
    } else if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + n - 8, &b, 8);
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        memcpy(d, &a, 4);
        memcpy(d + n - 4, &b, 4);
    } else if (n > 0) {
        char a = s[0], b = s[n / 2], c = s[n - 1];
        d[0] = a;
        d[n / 2] = b;
        d[n - 1] = c;
    }
}

/* pt_hex_pairs: the two lower-case hex digits of byte b at pt_hex_pairs + 2 * b. */
extern const char pt_hex_pairs[513];

/* pt_u64_dec: <v> in decimal at <out> (at least 20 bytes, no NUL); returns its length. */
size_t pt_u64_dec(uint64_t v, char *out);

/* pt_header_find: the first of the <n> headers at <h> named <name> (case-insensitive), or NULL. */
static inline const struct pt_header *pt_header_find(const struct pt_header *h, size_t n, struct pt_str name)
{
    for (size_t i = 0; i < n; i++)
        if (pt_str_caseeq(h[i].name, name))
            return &h[i];
    return NULL;
}

/* pt_xmalloc, pt_xcalloc, pt_xrealloc, pt_xstrdup, pt_xstrndup: allocate or abort. Start-up and
 * config code only: the request path uses the try_ variants of its pools and handles failure. */
void *pt_xmalloc(size_t n);
void *pt_xcalloc(size_t n, size_t size);
void *pt_xrealloc(void *p, size_t n);
char *pt_xstrdup(const char *s);
char *pt_xstrndup(const char *s, size_t n);

/* PT_B64_DECODED_MAX: room pt_b64_decode needs for <len> bytes of base64, its NUL included. */
#define PT_B64_DECODED_MAX(len) ((len) / 4 * 3 + 4)

/* pt_b64_decode: standard base64 (whitespace ignored, padding optional but, when present,
 * complete) into <out> (PT_B64_DECODED_MAX(len) bytes), NUL-terminated, *<outlen> bytes long.
 * False when <s> is not base64; <out> then holds garbage. */
bool pt_b64_decode(const char *s, size_t len, unsigned char *out, size_t *outlen);

/* pt_sockaddr_format: "ip:port" ("[ip]:port" for IPv6, an IPv4-mapped address as IPv4) of <sa>
 * into <out>, which has room for PT_SOCKADDR_STR_MAX bytes; "" for another family. No printf:
 * the access log may ask for it on every request. */
#define PT_SOCKADDR_STR_MAX 56
struct sockaddr_storage;
void pt_sockaddr_format(const struct sockaddr_storage *sa, char *out);

#endif
