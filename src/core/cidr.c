/* IP address ranges: see cidr.h. */
#include "core/cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* ip_parse: as pt_ip_parse; <unmap>: an IPv4-mapped IPv6 address becomes the IPv4 one. */
static bool ip_parse(const char *s, size_t len, struct pt_ip *out, bool unmap)
{
    char text[INET6_ADDRSTRLEN];

    memset(out, 0, sizeof(*out));
    if (len == 0 || len >= sizeof(text))
        return false;
    memcpy(text, s, len);
    text[len] = 0;
    if (inet_pton(AF_INET, text, out->bytes) == 1) {
        out->family = 4;
        return true;
    }
    if (inet_pton(AF_INET6, text, out->bytes) != 1)
        return false;
    out->family = 6;
    if (unmap && memcmp(out->bytes, v4_mapped, sizeof(v4_mapped)) == 0) {
        memmove(out->bytes, out->bytes + 12, 4);
        memset(out->bytes + 4, 0, 12);
        out->family = 4;
    }
    return true;
}

bool pt_ip_parse(const char *s, size_t len, struct pt_ip *out)
{
    return ip_parse(s, len, out, true);
}

bool pt_cidr_parse(const char *s, struct pt_cidr *out, char *err, size_t errlen)
{
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    unsigned max, len;

    memset(out, 0, sizeof(*out));
    if (!ip_parse(s, alen, &out->base, false)) {
        snprintf(err, errlen, "\"%.*s\" is not an IP address", (int)(alen > 64 ? 64 : alen), s);
        return false;
    }
    max = out->base.family == 4 ? 32 : 128;
    len = max;
    if (slash != NULL) {
        char *end;
        unsigned long v;
        if (slash[1] < '0' || slash[1] > '9' || (v = strtoul(slash + 1, &end, 10)) > max || *end != 0) {
            snprintf(err, errlen, "\"%.64s\": the prefix length must be 0 to %u", s, max);
            return false;
        }
        len = (unsigned)v;
    }
    if (out->base.family == 6 && len >= 96 && memcmp(out->base.bytes, v4_mapped, sizeof(v4_mapped)) == 0) {
        /* ::ffff:a.b.c.d/96+n is the IPv4 range a.b.c.d/n: peers come as IPv4 */
        memmove(out->base.bytes, out->base.bytes + 12, 4);
        memset(out->base.bytes + 4, 0, 12);
        out->base.family = 4;
        len -= 96;
    }
    out->prefix_len = (uint8_t)len;
    for (unsigned i = len; i < 128; i++)
        out->base.bytes[i / 8] &= (uint8_t)~(0x80u >> (i % 8));
    return true;
}

bool pt_cidr_match(const struct pt_cidr *c, const struct pt_ip *ip)
{
    unsigned full = c->prefix_len / 8, rest = c->prefix_len % 8;

    if (c->base.family != ip->family || memcmp(c->base.bytes, ip->bytes, full) != 0)
        return false;
    return rest == 0 || ((c->base.bytes[full] ^ ip->bytes[full]) & (uint8_t)(0xff00u >> rest)) == 0;
}
