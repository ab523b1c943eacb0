/* Types of a cluster's upstream-connection settings: a Mapping's (or the `ambassador` Module's)
 * keepalive, cluster_idle_timeout_ms and cluster_max_connection_lifetime_ms, and a Mapping's
 * dns_type and respect_dns_ttl, as read (config/upconn.c) and as compiled into the cluster
 * (config/compile.c) for proxy/upstream.c and cluster/service.c. Types only. */
#ifndef PT_MODEL_UPCONN_T_H
#define PT_MODEL_UPCONN_T_H

#include <stdbool.h>
#include <stdint.h>

/* Linux's bounds of the TCP keepalive socket options (TCP_KEEPCNT, TCP_KEEPIDLE,
 * TCP_KEEPINTVL); a value outside them is refused by setsockopt, so by the config. */
#define PT_KEEPALIVE_PROBES_MAX 127
#define PT_KEEPALIVE_TIME_MAX 32767 /* seconds */

/* `keepalive` as read: {probes, idle_time, interval}, Envoy's TcpKeepalive. */
struct pt_keepalive_res {
    bool set;                     /* given (even empty: SO_KEEPALIVE with the kernel's values) */
    int probes;                   /* 0: unset (the kernel's, 9) */
    int idle_time;                /* seconds; 0: unset (the kernel's, 7200) */
    int interval;                 /* seconds; 0: unset (the kernel's, 75) */
};

/* dns_type: how a service resolved through DNS becomes endpoints (Envoy's cluster type). */
enum pt_dns_type {
    PT_DNS_STRICT = 0,            /* strict_dns: every address is an endpoint */
    PT_DNS_LOGICAL,               /* logical_dns: the first address only */
};

/* What a cluster's upstream connections are opened and pooled with. It is part of the key of
 * a worker's pool entry (proxy/upstream.c): clusters share pooled connections to an endpoint
 * only when these are equal. All-zero: the command line's defaults and no keepalive. Every
 * byte is a field (no padding), so that it compares with memcmp. */
struct pt_up_opts {
    uint32_t idle_ms;             /* cluster_idle_timeout_ms; 0: --upstream-idle-ms */
    uint32_t lifetime_ms;         /* cluster_max_connection_lifetime_ms; 0:
                                   * --upstream-max-lifetime-ms */
    uint8_t keepalive;            /* 1: SO_KEEPALIVE on its sockets */
    uint8_t ka_probes;            /* TCP_KEEPCNT; 0: the kernel's */
    uint16_t ka_idle_s;           /* TCP_KEEPIDLE; 0: the kernel's */
    uint16_t ka_interval_s;       /* TCP_KEEPINTVL; 0: the kernel's */
    uint16_t _pad;                /* zero */
};
_Static_assert(sizeof(struct pt_up_opts) == 16, "struct pt_up_opts has no padding (memcmp, hash)");

#endif
