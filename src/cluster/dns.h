/* Asynchronous DNS for service names, on the control thread (c-ares): a cache of answers
 * re-resolved every refresh interval (5 s) or, for callers that ask, when their TTL runs out.
 * A change in any answer asks for a recompile. */
#ifndef PT_CLUSTER_DNS_H
#define PT_CLUSTER_DNS_H

#include <stdbool.h>
#include <sys/socket.h>

struct pt_loop;

/* The most addresses kept for one name (the lowest after sorting). */
#define PT_DNS_MAX_ADDRS 32

/* One address; the port is always 0 (callers add their own). */
struct pt_dns_addr {
    struct sockaddr_storage addr;
    socklen_t len;
};

/* What the cache holds right now, for the admin API and tests. */
struct pt_dns_stats {
    unsigned entries;   /* names cached, answered or not */
    unsigned in_flight; /* c-ares lookups not yet answered */
};

/* pt_dns_init: sets up the resolver on <loop> (the control thread's); <on_change> runs on that
 * loop's thread, never from inside pt_dns_lookup, when the addresses of some name differ from
 * those served so far. A first answer with addresses is a change; a first negative answer is not
 * (lookups already returned nothing). Several changes close together give one call.
 * /etc/hosts, then DNS with resolv.conf's servers and search domains (1 s timeout, 2 tries);
 * "localhost" and "*.localhost" are always 127.0.0.1 and ::1 (RFC 6761), address literals
 * themselves; CARES_HOSTS in the environment names another hosts file.
 * Returns 0, PT_INVAL (already set up), PT_NOMEM or PT_IO. */
int pt_dns_init(struct pt_loop *loop, void (*on_change)(void *), void *arg);

/* pt_dns_lookup: copies the cached addresses of <name> (up to <max>, IPv4 before IPv6, sorted,
 * no duplicates) into <out> and returns how many. On a miss a lookup starts and 0 is returned;
 * on_change follows when addresses arrive. An expired answer is served until its refresh
 * arrives; a refresh that fails (timeout, server error) keeps the old answer. Names that
 * pt_dns_lookup has not asked for in 10 minutes are dropped. Without pt_dns_init (portico
 * check), nothing is looked up and 0 is returned. */
int pt_dns_lookup(const char *name, struct pt_dns_addr *out, int max);

/* pt_dns_lookup_refresh: pt_dns_lookup, and how the caller wants <name> kept fresh, as Envoy's
 * DNS clusters: <respect_ttl> (respect_dns_ttl: true) at the TTL of its answers (the smallest
 * in the answer, within the bounds of pt_dns_set_ttl_bounds: 5 to 300 s), else every refresh
 * interval (the lower bound, 5 s: Envoy's dns_refresh_rate) whatever the TTL. A name is
 * refreshed every interval while some lookup of the current round (pt_dns_new_round) asks for
 * it; a longer expiry already set is brought in at once. pt_dns_lookup is this with
 * <respect_ttl>. */
int pt_dns_lookup_refresh(const char *name, struct pt_dns_addr *out, int max, bool respect_ttl);

/* pt_dns_new_round: a new set of lookups begins (config/compile.c: one per compile). Names
 * that no lookup of the new round asks to refresh every interval go back to their TTL after
 * their next refresh. A no-op without pt_dns_init. */
void pt_dns_new_round(void);

/* pt_dns_answered: whether <name> has had a first answer (positive or not), or is not being
 * looked up at all. Readiness waits for first answers (as Envoy's cluster warming). */
bool pt_dns_answered(const char *name);

/* pt_dns_get_stats: fills <out>; all zero without pt_dns_init. */
void pt_dns_get_stats(struct pt_dns_stats *out);

/* pt_dns_set_ttl_bounds: answers are kept max(TTL, <min_s>) capped at <max_s> seconds, negative
 * answers and failures <min_s> (defaults 5 and 300); <min_s> is also the refresh interval. Applies to answers that arrive from now on.
 * Returns 0, or PT_INVAL when not set up or unless 1 <= min_s <= max_s. For tests. */
int pt_dns_set_ttl_bounds(unsigned min_s, unsigned max_s);

/* pt_dns_set_idle_timeout: names not looked up for <s> seconds (default 600) are dropped at
 * their next expiry. Returns 0, or PT_INVAL when not set up or <s> is 0. For tests. */
int pt_dns_set_idle_timeout(unsigned s);

/* pt_dns_set_servers: replaces resolv.conf's servers with <csv> ("127.0.0.1:5353,[::1]:53").
 * Only while no lookup is in flight. Returns 0 or PT_INVAL (not set up, <csv> malformed, or
 * lookups in flight). For tests. */
int pt_dns_set_servers(const char *csv);

/* pt_dns_fini: cancels lookups and frees the cache; call before freeing the loop, and not from
 * inside on_change. A no-op without pt_dns_init. */
void pt_dns_fini(void);

#endif
