/* The DNS cache behind cluster/dns.h: the names cluster/service.c asks for through
 * pt_dns_lookup(), mapped to their addresses and kept fresh by c-ares running on the control
 * thread's loop (core/loop.c). It is not a general resolver: no SRV records, no per-request
 * lookups, nothing on worker threads.
 *
 * Edge-triggered epoll: c-ares says which sockets it wants watched through its sock-state
 * callback, and each gets a pt_io. c-ares 1.18 does not always drain what an edge reports: it
 * reads a UDP socket until EAGAIN, but a TCP socket only once per ares_process_fd() (a length
 * word or one chunk), and it writes TCP once. So after each event we call ares_process_fd()
 * once with the readiness reported, then re-arm the fd with pt_loop_mod(): EPOLL_CTL_MOD checks
 * readiness again, so bytes still unread raise a fresh edge on the next loop turn. That is
 * level-triggered behaviour for one epoll_ctl per event, relies on no c-ares internals and
 * cannot starve the loop. c-ares may close a socket (and reuse its number) while we handle
 * another one of the same epoll batch, so closed sockets are marked dead, ignored, and freed
 * from a 1 ms timer, which runs after the batch.
 *
 * One timer drives ares_timeout(). Each entry is always either waiting for c-ares or has its
 * own expiry timer armed; on expiry it is dropped if idle, else re-resolved while the old
 * answer is still served. The state is one static pointer because dns.h has no handle; only
 * the control thread touches it. */
#include "cluster/dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/common.h"
#include "core/log.h"
#include "core/loop.h"

#define DNS_MAX_ENTRIES 4096
#define DNS_BUCKETS 4096 /* power of two */
#define DNS_MAX_NAME 254 /* 253 plus an optional final dot */
#define DNS_TIMEOUT_MS 1000
#define DNS_TRIES 2

/* Entry flags. */
#define DNS_F_QUERYING 0x01 /* a c-ares lookup is in flight; the expiry timer is not armed */
#define DNS_F_ANSWERED 0x02 /* an answer (positive or not) has arrived at least once */
#define DNS_F_STATIC 0x04   /* an address literal or a localhost name: never changes */

struct dns_link {
    struct dns_link *prev, *next;
};

struct dns_entry {
    struct dns_entry *hnext;   /* hash chain */
    struct dns_link lru;       /* most recently looked up first */
    struct pt_timer timer;     /* expiry: refresh, or drop when idle */
    struct pt_dns_addr *addrs; /* sorted, unique; NULL when naddrs is 0 */
    int naddrs;
    unsigned flags;            /* DNS_F_* */
    int last_err;              /* ARES_* of the failure last logged; 0 after a good answer */
    uint32_t hash;
    uint64_t used_ms; /* last pt_dns_lookup() */
    uint64_t due_ms;      /* when the expiry timer fires, while it is armed */
    uint64_t fixed_round; /* the last round in which a lookup asked for interval refreshes */
    char name[];
};

struct dns_sock {
    struct pt_io io;
    uint32_t events; /* what c-ares asked for */
    bool dead;       /* closed by c-ares; freed by the deferred timer */
    struct dns_sock *next;
};

struct dns_state {
    struct pt_loop *loop;
    ares_channel channel;
    void (*on_change)(void *);
    void *arg;
    struct dns_entry *buckets[DNS_BUCKETS];
    struct dns_link lru; /* list head */
    unsigned nentries, in_flight;
    struct dns_sock *socks;      /* live and dead */
    struct pt_timer ares_timer;  /* drives ares_timeout() */
    struct pt_timer defer_timer; /* after the I/O batch: free dead sockets, call on_change */
    bool changed;                /* on_change is due */
    bool closing;                /* inside pt_dns_fini() */
    bool warned_full;
    uint64_t ttl_min_ms, ttl_max_ms, idle_ms;
    uint64_t round;              /* pt_dns_new_round() count, from 1 */
};

static struct dns_state *dns;

static void resolve(struct dns_entry *e);

/* flags_str: the DNS_F_* bits of <flags> as words in <buf>, for debug logs. */
static const char *flags_str(unsigned flags, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s", flags & DNS_F_QUERYING ? "querying " : "",
             flags & DNS_F_ANSWERED ? "answered " : "");
    return buf;
}

static void link_remove(struct dns_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
}

static void link_push_front(struct dns_link *head, struct dns_link *l)
{
    l->next = head->next;
    l->prev = head;
    head->next->prev = l;
    head->next = l;
}

/* Case-insensitive FNV-1a: DNS names compare without case. */
static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)pt_lower(*s)) * 16777619u;
    return h;
}

static struct dns_entry **bucket_of(uint32_t hash)
{
    return &dns->buckets[hash & (DNS_BUCKETS - 1)];
}

static struct dns_entry *entry_find(const char *name, uint32_t hash)
{
    for (struct dns_entry *e = *bucket_of(hash); e != NULL; e = e->hnext)
        if (e->hash == hash && strcasecmp(e->name, name) == 0)
            return e;
    return NULL;
}

/* entry_free: unlinks and frees <e>, which must not be waiting for c-ares. */
static void entry_free(struct dns_entry *e)
{
    struct dns_entry **pp = bucket_of(e->hash);

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    link_remove(&e->lru);
    pt_timer_cancel(&e->timer);
    free(e->addrs);
    free(e);
    dns->nentries--;
}

/* entry_on_expire: the answer of an entry is due: drop the entry when nobody asked for it
 * lately, else ask again and serve the old answer meanwhile. */
static void entry_on_expire(struct pt_timer *t)
{
    struct dns_entry *e = pt_container_of(t, struct dns_entry, timer);

    if (pt_loop_now_ms(dns->loop) - e->used_ms >= dns->idle_ms) {
        pt_debug("dns: %s: not looked up lately, dropped", e->name);
        entry_free(e);
        return;
    }
    resolve(e);
}

/* evict_one: frees the least recently looked-up entry not waiting for c-ares; false if none. */
static bool evict_one(void)
{
    for (struct dns_link *l = dns->lru.prev; l != &dns->lru; l = l->prev) {
        struct dns_entry *e = pt_container_of(l, struct dns_entry, lru);
        if (!(e->flags & DNS_F_QUERYING)) {
            entry_free(e);
            return true;
        }
    }
    return false;
}

/* entry_new: a new unanswered entry for <name> (<len> bytes), evicting one when the cache is
 * full. Returns NULL when out of memory or when every entry is waiting for c-ares. */
static struct dns_entry *entry_new(const char *name, size_t len, uint32_t hash)
{
    struct dns_entry *e;

    if (dns->nentries >= DNS_MAX_ENTRIES) {
        if (!dns->warned_full)
            pt_warn("dns: cache full (%d names), evicting the least recently used",
                    DNS_MAX_ENTRIES);
        dns->warned_full = true;
        if (!evict_one())
            return NULL;
    }
    e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL)
        return NULL;
    memcpy(e->name, name, len + 1);
    e->hash = hash;
    e->timer.cb = entry_on_expire;
    e->used_ms = pt_loop_now_ms(dns->loop);
    e->hnext = *bucket_of(hash);
    *bucket_of(hash) = e;
    link_push_front(&dns->lru, &e->lru);
    dns->nentries++;
    return e;
}

/* defer: runs defer_on_fire() once the current batch of loop events is done. 1 ms, not 0: a
 * 0 ms timer armed from a timer callback run on a tick boundary lands in the wheel slot being
 * run and waits a whole turn (4 s) in core/loop.c. */
static void defer(void)
{
    if (!pt_timer_armed(&dns->defer_timer))
        pt_timer_arm(dns->loop, &dns->defer_timer, 1);
}

/* free_socks: frees the dead sockets, or all of them when <all>. */
static void free_socks(bool all)
{
    struct dns_sock **pp = &dns->socks, *s;

    while ((s = *pp) != NULL) {
        if (s->dead || all) {
            *pp = s->next;
            free(s);
        } else {
            pp = &s->next;
        }
    }
}

static void defer_on_fire(struct pt_timer *t)
{
    (void)t;
    free_socks(false);
    if (dns->changed) {
        dns->changed = false;
        if (dns->on_change != NULL)
            dns->on_change(dns->arg);
    }
}

/* addr_cmp: IPv4 before IPv6, then by address bytes. Operands come from addr_from(), so
 * every byte not part of the address is zero. */
static int addr_cmp(const void *a, const void *b)
{
    const struct pt_dns_addr *x = a, *y = b;

    if (x->addr.ss_family != y->addr.ss_family)
        return x->addr.ss_family == AF_INET ? -1 : 1;
    return memcmp(&x->addr, &y->addr, sizeof(x->addr));
}

/* addr_v4, addr_v6: <out> holds the address with port 0 and all other bytes zero, so that
 * equal addresses compare equal. */
static void addr_v4(struct pt_dns_addr *out, struct in_addr a)
{
    struct sockaddr_in *in = (struct sockaddr_in *)&out->addr;

    memset(out, 0, sizeof(*out));
    in->sin_family = AF_INET;
    in->sin_addr = a;
    out->len = sizeof(*in);
}

static void addr_v6(struct pt_dns_addr *out, const struct in6_addr *a, uint32_t scope_id)
{
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->addr;

    memset(out, 0, sizeof(*out));
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = *a;
    in6->sin6_scope_id = scope_id;
    out->len = sizeof(*in6);
}

/* addr_from: <sa> into <out>; false for families other than IPv4 and IPv6. */
static bool addr_from(const struct sockaddr *sa, socklen_t salen, struct pt_dns_addr *out)
{
    if (sa->sa_family == AF_INET && salen >= sizeof(struct sockaddr_in)) {
        addr_v4(out, ((const struct sockaddr_in *)sa)->sin_addr);
        return true;
    }
    if (sa->sa_family == AF_INET6 && salen >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        addr_v6(out, &in6->sin6_addr, in6->sin6_scope_id);
        return true;
    }
    return false;
}

/* addrs_normalize: sorts <a>, drops duplicates, keeps at most PT_DNS_MAX_ADDRS; new count. */
static int addrs_normalize(struct pt_dns_addr *a, int n)
{
    int out = 0;

    if (n == 0)
        return 0;
    qsort(a, (size_t)n, sizeof(*a), addr_cmp);
    for (int i = 0; i < n && out < PT_DNS_MAX_ADDRS; i++)
        if (out == 0 || addr_cmp(&a[out - 1], &a[i]) != 0)
            a[out++] = a[i];
    return out;
}

static bool addrs_equal(const struct pt_dns_addr *a, int na, const struct pt_dns_addr *b, int nb)
{
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (addr_cmp(&a[i], &b[i]) != 0)
            return false;
    return true;
}

/* addrs_from_ai: the addresses of <ai>, normalized, in a new array stored in *out (NULL when
 * none). Returns their number or PT_NOMEM; *ttl_s gets the smallest TTL of the answer. */
static int addrs_from_ai(const struct ares_addrinfo *ai, struct pt_dns_addr **out, int *ttl_s)
{
    const struct ares_addrinfo_node *node;
    struct pt_dns_addr *a, *shrunk;
    int n = 0, ttl = INT_MAX;

    *out = NULL;
    for (const struct ares_addrinfo_cname *c = ai->cnames; c != NULL; c = c->next)
        ttl = c->ttl < ttl ? c->ttl : ttl;
    for (node = ai->nodes; node != NULL; node = node->ai_next)
        n++;
    a = n > 0 ? malloc((size_t)n * sizeof(*a)) : NULL;
    if (n > 0 && a == NULL)
        return PT_NOMEM;
    n = 0;
    for (node = ai->nodes; node != NULL; node = node->ai_next) {
        if (node->ai_addr != NULL && addr_from(node->ai_addr, node->ai_addrlen, &a[n])) {
            ttl = node->ai_ttl < ttl ? node->ai_ttl : ttl;
            n++;
        }
    }
    n = addrs_normalize(a, n);
    if (n == 0) {
        free(a);
        a = NULL;
    } else if ((shrunk = realloc(a, (size_t)n * sizeof(*a))) != NULL) {
        a = shrunk;
    }
    *out = a;
    *ttl_s = ttl;
    return n;
}

/* entry_set_addrs: makes <a> (<n> addresses, ownership passes) the answer of <e>, and asks for
 * on_change when it differs from the previous one. */
static void entry_set_addrs(struct dns_entry *e, struct pt_dns_addr *a, int n)
{
    if (addrs_equal(a, n, e->addrs, e->naddrs)) {
        free(a);
        return;
    }
    free(e->addrs);
    e->addrs = a;
    e->naddrs = n;
    dns->changed = true;
    defer();
}

/* entry_arm: the expiry of <e> in <ms>. */
static void entry_arm(struct dns_entry *e, uint64_t ms)
{
    e->due_ms = pt_loop_now_ms(dns->loop) + ms;
    pt_timer_arm(dns->loop, &e->timer, ms);
}

/* ttl_ms: how long an answer with a TTL of <ttl_s> seconds is kept. */
static uint64_t ttl_ms(int ttl_s)
{
    uint64_t ms = ttl_s > 0 ? (uint64_t)ttl_s * 1000 : 0;

    if (ms < dns->ttl_min_ms)
        ms = dns->ttl_min_ms;
    return ms < dns->ttl_max_ms ? ms : dns->ttl_max_ms;
}

/* answer_failed: a negative answer (no such name, no address) empties <e>; any other failure
 * (timeout, refused, server error, no memory) keeps what it had. Either is logged when it is
 * not the failure logged last, and asked again after the minimum TTL. */
static void answer_failed(struct dns_entry *e, int status)
{
    bool negative = status == ARES_ENOTFOUND || status == ARES_ENODATA;

    if (e->last_err != status)
        pt_warn("dns: %s: %s%s", e->name, ares_strerror(status),
                !negative && e->naddrs > 0 ? "; serving the previous answer" : "");
    e->last_err = status;
    if (negative)
        entry_set_addrs(e, NULL, 0);
    entry_arm(e, dns->ttl_min_ms);
}

static void answer_ok(struct dns_entry *e, const struct ares_addrinfo *ai)
{
    struct pt_dns_addr *a;
    int ttl, n = addrs_from_ai(ai, &a, &ttl);

    if (n <= 0) {
        answer_failed(e, n == 0 ? ARES_ENODATA : ARES_ENOMEM);
        return;
    }
    e->last_err = 0;
    entry_set_addrs(e, a, n);
    /* Asked for in this round by a cluster without respect_dns_ttl: the refresh interval. */
    entry_arm(e, e->fixed_round == dns->round ? dns->ttl_min_ms : ttl_ms(ttl));
}

/* on_answer: c-ares is done with the lookup of entry <arg>; may run inside ares_getaddrinfo()
 * (hosts file, numeric names) and, with ARES_EDESTRUCTION, inside pt_dns_fini(). */
static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    struct dns_entry *e = arg;
    char fl[64];

    (void)timeouts;
    e->flags &= ~DNS_F_QUERYING;
    dns->in_flight--;
    if (!dns->closing) {
        if (status == ARES_SUCCESS && ai != NULL)
            answer_ok(e, ai);
        else
            answer_failed(e, status == ARES_SUCCESS ? ARES_ENODATA : status);
        e->flags |= DNS_F_ANSWERED;
        pt_debug("dns: %s: %s, %d address(es), flags %s", e->name, ares_strerror(status),
                 e->naddrs, flags_str(e->flags, fl, sizeof(fl)));
    }
    if (ai != NULL)
        ares_freeaddrinfo(ai);
}

/* is_localhost: "localhost" or a name under it, with or without a final dot (RFC 6761 6.3). */
static bool is_localhost(const char *name)
{
    size_t len = strlen(name);

    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len < 9 || strncasecmp(name + len - 9, "localhost", 9) != 0)
        return false;
    return len == 9 || name[len - 10] == '.';
}

/* answer_static: answers the names that need no lookup and returns true: address literals
 * (c-ares 1.18 with AF_UNSPEC sends an IPv4 literal to the DNS server), and localhost names
 * with 127.0.0.1 and ::1 whatever the hosts file says (it often lists only one). Such answers
 * never change; they are kept the longest TTL. */
static bool answer_static(struct dns_entry *e)
{
    struct pt_dns_addr tmp[2], *a;
    struct in_addr v4;
    struct in6_addr v6;
    int n = 1;

    if (inet_pton(AF_INET, e->name, &v4) == 1) {
        addr_v4(&tmp[0], v4);
    } else if (inet_pton(AF_INET6, e->name, &v6) == 1) {
        addr_v6(&tmp[0], &v6, 0);
    } else if (is_localhost(e->name)) {
        addr_v4(&tmp[0], (struct in_addr){ htonl(INADDR_LOOPBACK) });
        addr_v6(&tmp[1], &in6addr_loopback, 0);
        n = 2;
    } else {
        return false;
    }
    a = malloc((size_t)n * sizeof(*a));
    if (a == NULL) {
        answer_failed(e, ARES_ENOMEM);
        return true;
    }
    memcpy(a, tmp, (size_t)n * sizeof(*a));
    e->flags |= DNS_F_ANSWERED | DNS_F_STATIC;
    entry_set_addrs(e, a, n);
    entry_arm(e, dns->ttl_max_ms);
    return true;
}

/* arm_ares_timer: follows ares_timeout() after anything that may have changed it. */
static void arm_ares_timer(void)
{
    struct timeval tv;
    uint64_t ms;

    if (ares_timeout(dns->channel, NULL, &tv) == NULL) {
        pt_timer_cancel(&dns->ares_timer);
        return;
    }
    ms = (uint64_t)tv.tv_sec * 1000 + ((uint64_t)tv.tv_usec + 999) / 1000;
    pt_timer_arm(dns->loop, &dns->ares_timer, ms > 0 ? ms : 1);
}

static void ares_timer_on_fire(struct pt_timer *t)
{
    (void)t;
    ares_process_fd(dns->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    arm_ares_timer();
}

/* resolve: starts a lookup of <e>; the answer may arrive before this returns. */
static void resolve(struct dns_entry *e)
{
    /* NOSORT: we sort ourselves, and c-ares' RFC 6724 sort connects a UDP socket per address. */
    static const struct ares_addrinfo_hints hints = {
        .ai_flags = ARES_AI_ENVHOSTS | ARES_AI_NOSORT,
        .ai_family = AF_UNSPEC,
    };

    if (answer_static(e))
        return;
    e->flags |= DNS_F_QUERYING;
    dns->in_flight++;
    ares_getaddrinfo(dns->channel, e->name, NULL, &hints, on_answer, e);
    arm_ares_timer();
}

static struct dns_sock *sock_find(int fd)
{
    for (struct dns_sock *s = dns->socks; s != NULL; s = s->next)
        if (!s->dead && s->io.fd == fd)
            return s;
    return NULL;
}

/* sock_on_event: one ares_process_fd() for what epoll reported, then a re-arm so that what
 * c-ares left unread is reported again (see the top of this file). */
static void sock_on_event(struct pt_io *io, uint32_t events)
{
    struct dns_sock *s = pt_container_of(io, struct dns_sock, io);
    ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;
    int fd = io->fd;

    if (s->dead)
        return;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        rfd = fd;
    if (events & EPOLLOUT)
        wfd = fd;
    ares_process_fd(dns->channel, rfd, wfd);
    s = sock_find(fd); /* c-ares may have closed it, or reused its number */
    if (s != NULL && pt_loop_mod(dns->loop, &s->io, s->events) != 0)
        pt_warn("dns: cannot re-arm resolver socket %d; its lookups will time out", fd);
    arm_ares_timer();
}

/* on_sock_state: c-ares wants <fd> watched for reading and/or writing, or (0, 0) is about to
 * close it. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns_sock *s = sock_find(fd);
    uint32_t events = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0);

    (void)data;
    if (events == 0) {
        if (s != NULL) {
            pt_loop_del(dns->loop, &s->io);
            s->dead = true;
            defer();
        }
        return;
    }
    if (s != NULL) {
        s->events = events;
        if (pt_loop_mod(dns->loop, &s->io, events) != 0)
            pt_warn("dns: cannot watch resolver socket %d; its lookups will time out", fd);
        return;
    }
    s = calloc(1, sizeof(*s));
    if (s != NULL) {
        s->io.fd = fd;
        s->io.cb = sock_on_event;
        s->events = events;
    }
    if (s == NULL || pt_loop_add(dns->loop, &s->io, events) != 0) {
        pt_warn("dns: cannot watch resolver socket %d; its lookups will time out", fd);
        free(s);
        return;
    }
    s->next = dns->socks;
    dns->socks = s;
}

int pt_dns_init(struct pt_loop *loop, void (*on_change)(void *), void *arg)
{
    struct ares_options opts = { 0 };
    int rc;

    if (dns != NULL)
        return PT_INVAL;
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
        return PT_NOMEM;
    dns = calloc(1, sizeof(*dns));
    if (dns == NULL) {
        ares_library_cleanup();
        return PT_NOMEM;
    }
    dns->loop = loop;
    dns->on_change = on_change;
    dns->arg = arg;
    dns->lru.prev = dns->lru.next = &dns->lru;
    dns->ares_timer.cb = ares_timer_on_fire;
    dns->defer_timer.cb = defer_on_fire;
    dns->ttl_min_ms = 5 * 1000;
    dns->ttl_max_ms = 300 * 1000;
    dns->idle_ms = 600 * 1000;
    dns->round = 1;
    opts.timeout = DNS_TIMEOUT_MS;
    opts.tries = DNS_TRIES;
    opts.sock_state_cb = on_sock_state;
    /* No ARES_OPT_LOOKUPS or ARES_OPT_DOMAINS: c-ares then reads nsswitch.conf and resolv.conf
     * ("fb": hosts file, then DNS, with the search domains). */
    rc = ares_init_options(&dns->channel, &opts,
                           ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB);
    if (rc != ARES_SUCCESS) {
        pt_error("dns: cannot set up the resolver: %s", ares_strerror(rc));
        free(dns);
        dns = NULL;
        ares_library_cleanup();
        return rc == ARES_ENOMEM ? PT_NOMEM : PT_IO;
    }
    return 0;
}

/* want_interval: a lookup of <e> asks for refreshes every interval (ttl_min_ms) in this round;
 * an expiry set further out (a long TTL) is brought in. */
static void want_interval(struct dns_entry *e)
{
    uint64_t now = pt_loop_now_ms(dns->loop);

    e->fixed_round = dns->round;
    if (!(e->flags & (DNS_F_QUERYING | DNS_F_STATIC)) && pt_timer_armed(&e->timer) &&
        e->due_ms > now + dns->ttl_min_ms)
        entry_arm(e, dns->ttl_min_ms);
}

int pt_dns_lookup(const char *name, struct pt_dns_addr *out, int max)
{
    return pt_dns_lookup_refresh(name, out, max, true);
}

void pt_dns_new_round(void)
{
    if (dns != NULL)
        dns->round++;
}

int pt_dns_lookup_refresh(const char *name, struct pt_dns_addr *out, int max, bool respect_ttl)
{
    struct dns_entry *e;
    uint32_t hash;
    size_t len;
    int n;

    if (dns == NULL || dns->closing || name == NULL)
        return 0;
    len = strnlen(name, DNS_MAX_NAME + 1);
    if (len == 0 || len > DNS_MAX_NAME)
        return 0;
    hash = name_hash(name);
    e = entry_find(name, hash);
    if (e == NULL) {
        e = entry_new(name, len, hash);
        if (e != NULL && !respect_ttl)
            e->fixed_round = dns->round; /* before resolve: the hosts file answers at once */
        if (e != NULL)
            resolve(e);
        return 0;
    }
    if (!respect_ttl)
        want_interval(e);
    e->used_ms = pt_loop_now_ms(dns->loop);
    link_remove(&e->lru);
    link_push_front(&dns->lru, &e->lru);
    n = e->naddrs < max ? e->naddrs : max;
    if (n > 0)
        memcpy(out, e->addrs, (size_t)n * sizeof(*out));
    return n > 0 ? n : 0;
}

bool pt_dns_answered(const char *name)
{
    struct dns_entry *e;
    if (dns == NULL || name == NULL)
        return true; /* nothing will ever answer: do not wait */
    e = entry_find(name, name_hash(name));
    return e == NULL || (e->flags & DNS_F_ANSWERED) != 0;
}

void pt_dns_get_stats(struct pt_dns_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (dns == NULL)
        return;
    out->entries = dns->nentries;
    out->in_flight = dns->in_flight;
}

int pt_dns_set_ttl_bounds(unsigned min_s, unsigned max_s)
{
    if (dns == NULL || min_s == 0 || min_s > max_s)
        return PT_INVAL;
    dns->ttl_min_ms = (uint64_t)min_s * 1000;
    dns->ttl_max_ms = (uint64_t)max_s * 1000;
    return 0;
}

int pt_dns_set_idle_timeout(unsigned s)
{
    if (dns == NULL || s == 0)
        return PT_INVAL;
    dns->idle_ms = (uint64_t)s * 1000;
    return 0;
}

int pt_dns_set_servers(const char *csv)
{
    if (dns == NULL || csv == NULL)
        return PT_INVAL;
    return ares_set_servers_ports_csv(dns->channel, csv) == ARES_SUCCESS ? 0 : PT_INVAL;
}

void pt_dns_fini(void)
{
    if (dns == NULL)
        return;
    dns->closing = true;
    /* Answers every lookup with ARES_EDESTRUCTION and closes the sockets (on_sock_state). */
    ares_destroy(dns->channel);
    pt_timer_cancel(&dns->ares_timer);
    pt_timer_cancel(&dns->defer_timer);
    free_socks(true);
    while (dns->lru.next != &dns->lru)
        entry_free(pt_container_of(dns->lru.next, struct dns_entry, lru));
    free(dns);
    dns = NULL;
    ares_library_cleanup();
}
