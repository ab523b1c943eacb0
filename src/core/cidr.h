/* IP address ranges (CIDR blocks) as Envoy's CidrRange reads them: "10.0.0.0/8", "::1", an
 * address alone meaning the one address. Used by the ambassador Module's ip_allow / ip_deny
 * (Envoy's RBAC direct_remote_ip / remote_ip principals). */
#ifndef PT_CORE_CIDR_H
#define PT_CORE_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An address of either family: 4 or 16 bytes of <bytes>, network order. */
struct pt_ip {
    uint8_t family;     /* 4 or 6; 0: none */
    uint8_t bytes[16];
};

struct pt_cidr {
    struct pt_ip base;  /* the bits past prefix_len are zero */
    uint8_t prefix_len; /* 0..32 or 0..128 */
};

/* pt_ip_parse: the textual address of <len> bytes at <s> (IPv4 dotted quad, or IPv6; an
 * IPv4-mapped IPv6 address becomes the IPv4 one, as Envoy does for peers of dual-stack
 * listeners). Returns false if it is not one. */
bool pt_ip_parse(const char *s, size_t len, struct pt_ip *out);

/* pt_cidr_parse: "<address>[/<prefix length>]" (NUL-terminated). The address's bits past the
 * prefix are cleared, as Envoy's CidrRange does. Returns false, with a reason in <err> (which
 * has <errlen> bytes), if it is not one. */
bool pt_cidr_parse(const char *s, struct pt_cidr *out, char *err, size_t errlen);

/* pt_cidr_match: whether <ip> is in <c> (never across families). */
bool pt_cidr_match(const struct pt_cidr *c, const struct pt_ip *ip);

#endif
