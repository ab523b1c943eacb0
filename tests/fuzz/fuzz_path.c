// fuzz-sources: src/http/path.c
/* libFuzzer target for src/http/path.c. The first input byte chooses the flags, the rest is the
 * path. Checks: the result is a length, PT_BADMSG exactly when Envoy rejects the path (a NUL
 * byte, %00, or an escaped slash under PT_PATH_REJECT_ESCAPED_SLASHES), or PT_TOOBIG only when
 * the buffer is smaller than the promised bound; the output starts with '/', is never longer than
 * the input plus the bytes that had to be percent-encoded, has no "." or ".." segment, no escape
 * of an unreserved character, no '\\' and (merging) no "//"; a second normalization changes
 * nothing; a path the quick scan passes is returned unchanged; and a buffer of any size is never
 * written past its end. Any violation aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/path.h"
#include "fuzz.h"


static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool is_unreserved(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

/* encoded: bytes the normalizer percent-encodes (each makes the output 2 bytes longer). */
static bool encoded(unsigned char c)
{
    return (c >= 1 && c <= 0x20) || c >= 0x7f || strchr("\"#<>?^`{|}", c) != NULL;
}

static bool rejected(const unsigned char *p, size_t n, unsigned flags)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == 0)
            return true;
        if (p[i] != '%' || n - i < 3)
            continue;
        if (p[i + 1] == '0' && p[i + 2] == '0')
            return true;
        if ((flags & PT_PATH_REJECT_ESCAPED_SLASHES) &&
            ((p[i + 1] == '2' && (p[i + 2] | 0x20) == 'f') ||
             (p[i + 1] == '5' && (p[i + 2] | 0x20) == 'c')))
            return true;
    }
    return false;
}

static void check_output(const char *o, size_t n, unsigned flags)
{
    size_t seg = 1;

    CHECK(n >= 1 && o[0] == '/');
    for (size_t i = 0; i < n; i++) {
        CHECK(o[i] != '\\' && o[i] != 0);
        if ((flags & PT_PATH_MERGE_SLASHES) && i > 0)
            CHECK(!(o[i] == '/' && o[i - 1] == '/'));
        if (o[i] == '%' && n - i >= 3 && hexval((unsigned char)o[i + 1]) >= 0 &&
            hexval((unsigned char)o[i + 2]) >= 0)
            CHECK(!is_unreserved(hexval((unsigned char)o[i + 1]) * 16 +
                                 hexval((unsigned char)o[i + 2])));
        if (i + 1 == n || o[i + 1] == '/') { /* segment o[seg..i] */
            size_t sl = i + 1 - seg;
            CHECK(!(sl == 1 && o[seg] == '.'));
            CHECK(!(sl == 2 && o[seg] == '.' && o[seg + 1] == '.'));
            seg = i + 2;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char out[3 * 4096 + 16], again[3 * 4096 + 16], small[3 * 4096 + 16];
    if (size < 1 || size > 4096)
        return 0;
    unsigned flags = data[0] & 3u;
    const unsigned char *p = data + 1;
    size_t n = size - 1, bound = n + 1;
    struct pt_str in = pt_str_make((const char *)p, n);

    for (size_t i = 0; i < n; i++)
        bound += encoded(p[i]) ? 2 : 0;
    int r = pt_path_normalize(in, flags, out, bound);
    if (rejected(p, n, flags)) {
        CHECK(r == PT_BADMSG);
        return 0;
    }
    CHECK(r >= 0 && (size_t)r <= bound);
    check_output(out, (size_t)r, flags);
    if (!pt_path_needs_normalizing(in, flags))
        CHECK((size_t)r == n && memcmp(out, p, n) == 0);

    int r2 = pt_path_normalize(pt_str_make(out, (size_t)r), flags, again, sizeof(again));
    CHECK(r2 == r && memcmp(again, out, (size_t)r) == 0);

    /* a smaller buffer: PT_TOOBIG or the same result, and nothing written past its end */
    size_t cap = (size_t)data[size - 1] % (bound + 1);
    memset(small, 0x5a, cap + 16);
    int r3 = pt_path_normalize(in, flags, small, cap);
    CHECK(r3 == PT_TOOBIG || (r3 == r && memcmp(small, out, (size_t)r) == 0));
    if (cap < (size_t)r)
        CHECK(r3 == PT_TOOBIG);
    for (size_t i = cap; i < cap + 16; i++)
        CHECK(small[i] == 0x5a);
    return 0;
}
