/* Asynchronous DNS for service names, on the control thread (c-ares): a cache of answers
 * re-resolved when their TTL runs out. A change in any answer asks for a recompile. */
#ifndef PT_CLUSTER_DNS_H
#define PT_CLUSTER_DNS_H

#include <sys/socket.h>

struct pt_loop;

struct pt_dns_addr {
    struct sockaddr_storage addr;
    socklen_t len;
};

/* pt_dns_init: sets up the resolver on <loop>; <on_change> runs (on the loop's thread) when an
 * answer differs from the cached one. Returns 0 or a negative PT_E* code. */
int pt_dns_init(struct pt_loop *loop, void (*on_change)(void *), void *arg);

/* pt_dns_lookup: the cached addresses of <name> (up to <max>); on a miss a lookup starts and 0
 * is returned. Without pt_dns_init (portico check), nothing is looked up and 0 is returned. */
int pt_dns_lookup(const char *name, struct pt_dns_addr *out, int max);

/* pt_dns_fini: cancels lookups and frees the cache. */
void pt_dns_fini(void);

#endif
