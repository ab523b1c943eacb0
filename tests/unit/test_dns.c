/* Unit tests for cluster/dns.c: the cache on a real event loop, with names from localhost, a
 * temporary hosts file (CARES_HOSTS), and a fake DNS server on 127.0.0.1 that runs on the same
 * loop. Nothing here needs the network. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cluster/dns.h"
#include "core/common.h"
#include "core/log.h"
#include "core/loop.h"

enum fake_mode { FAKE_ANSWER, FAKE_NXDOMAIN, FAKE_DROP };

static struct pt_loop *g_loop; /* the loop of the running test, for the fake server */

struct fake_dns;

/* One TCP connection to the fake server. */
struct fake_conn {
    struct pt_io io; /* fd -1: unused */
    struct fake_dns *f;
    uint8_t buf[1024];
    size_t len;
};

/* A DNS server answering every A query with <a> and AAAA with fd00::<a's last byte>; with
 * <truncate>, UDP answers carry only the TC bit so that c-ares asks again over TCP. */
struct fake_dns {
    struct pt_io io;  /* UDP */
    struct pt_io tcp; /* listener on the same port */
    struct fake_conn conns[8];
    enum fake_mode mode;
    bool truncate;
    uint32_t a; /* host order */
    uint32_t ttl;
    int queries, tcp_queries;
    char csv[64]; /* for pt_dns_set_servers */
};

struct ctx {
    struct pt_loop *loop;
    int changes;
    bool in_lookup;
    uint64_t max_iter_ms;
    struct fake_dns fake;
    int blackhole_fd;
    char hosts_path[64];
};

static void on_change(void *arg)
{
    struct ctx *c = arg;
    assert_false(c->in_lookup); /* never from inside pt_dns_lookup */
    c->changes++;
}

static int lookup(struct ctx *c, const char *name, struct pt_dns_addr *out, int max)
{
    int n;
    c->in_lookup = true;
    n = pt_dns_lookup(name, out, max);
    c->in_lookup = false;
    return n;
}

static const char *addr_str(const struct pt_dns_addr *a, char *buf, size_t len)
{
    const void *p = a->addr.ss_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)&a->addr)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)&a->addr)->sin6_addr;
    return inet_ntop(a->addr.ss_family, p, buf, (socklen_t)len);
}

static void assert_addr(const struct pt_dns_addr *a, const char *want)
{
    char buf[INET6_ADDRSTRLEN];
    assert_non_null(addr_str(a, buf, sizeof(buf)));
    assert_string_equal(buf, want);
}

/* run_until: turns the loop until *<counter> >= <want> or <timeout_ms> passed; counts the
 * longest turn so tests can check that nothing blocks the loop. */
static bool run_until(struct ctx *c, const int *counter, int want, uint64_t timeout_ms)
{
    uint64_t start = pt_now_ms();

    while (counter == NULL || *counter < want) {
        uint64_t t0 = pt_now_ms();
        if (t0 - start >= timeout_ms)
            return false;
        pt_loop_run_once(c->loop, 20);
        if (pt_now_ms() - t0 > c->max_iter_ms)
            c->max_iter_ms = pt_now_ms() - t0;
    }
    return true;
}

/* run_until_idle: turns the loop until no lookup is in flight. */
static bool run_until_idle(struct ctx *c, uint64_t timeout_ms)
{
    uint64_t start = pt_now_ms();
    struct pt_dns_stats st;

    for (;;) {
        uint64_t t0 = pt_now_ms();
        pt_dns_get_stats(&st);
        if (st.in_flight == 0)
            return true;
        if (t0 - start >= timeout_ms)
            return false;
        pt_loop_run_once(c->loop, 20);
        if (pt_now_ms() - t0 > c->max_iter_ms)
            c->max_iter_ms = pt_now_ms() - t0;
    }
}

/* ---- the fake DNS server ---- */

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* fake_reply: builds the answer to <q> (<qlen> bytes) in <r>; returns its length or 0. */
static size_t fake_reply(struct fake_dns *f, const uint8_t *q, size_t qlen, uint8_t *r, bool tc)
{
    size_t pos = 12, len;
    unsigned qtype;
    uint8_t *p;

    if (qlen < 12 + 5)
        return 0;
    while (pos < qlen && q[pos] != 0)
        pos += (size_t)q[pos] + 1;
    if (pos + 5 > qlen)
        return 0;
    pos += 5; /* root label, type, class */
    qtype = (unsigned)(q[pos - 4] << 8 | q[pos - 3]);
    memcpy(r, q, pos);
    put16(r + 2, 0x8580u | (f->mode == FAKE_NXDOMAIN ? 3u : 0u)); /* QR AA RD RA, rcode */
    put16(r + 4, 1);
    put16(r + 6, 0);
    put16(r + 8, 0);
    put16(r + 10, 0);
    if (tc)
        r[2] |= 0x02;
    if (tc || f->mode != FAKE_ANSWER || (qtype != 1 && qtype != 28))
        return pos;
    put16(r + 6, 1);
    p = r + pos;
    put16(p, 0xc00c); /* the name of the question */
    put16(p + 2, qtype);
    put16(p + 4, 1);
    p[6] = (uint8_t)(f->ttl >> 24), p[7] = (uint8_t)(f->ttl >> 16);
    p[8] = (uint8_t)(f->ttl >> 8), p[9] = (uint8_t)f->ttl;
    if (qtype == 1) {
        uint32_t a = htonl(f->a);
        put16(p + 10, 4);
        memcpy(p + 12, &a, 4);
        len = 12 + 4;
    } else {
        put16(p + 10, 16);
        memset(p + 12, 0, 16);
        p[12] = 0xfd;
        p[27] = (uint8_t)f->a;
        len = 12 + 16;
    }
    return pos + len;
}

static void fake_on_read(struct pt_io *io, uint32_t events)
{
    struct fake_dns *f = pt_container_of(io, struct fake_dns, io);
    uint8_t q[512], r[600];
    struct sockaddr_storage from;
    socklen_t fromlen;
    ssize_t n;
    size_t rlen;

    (void)events;
    for (;;) { /* edge-triggered: drain */
        fromlen = sizeof(from);
        n = recvfrom(io->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fromlen);
        if (n < 0)
            return;
        f->queries++;
        if (f->mode == FAKE_DROP)
            continue;
        rlen = fake_reply(f, q, (size_t)n, r, f->truncate);
        if (rlen > 0)
            (void)!sendto(io->fd, r, rlen, 0, (struct sockaddr *)&from, fromlen);
    }
}

static void conn_close(struct fake_conn *fc, struct pt_loop *loop)
{
    pt_loop_del(loop, &fc->io);
    close(fc->io.fd);
    fc->io.fd = -1;
}

/* conn_on_read: answers each complete query (2-byte length, message) with one write, so the
 * length word and the message arrive together: c-ares 1.18 reads the length word alone and
 * only a re-armed fd gets it to read the rest. */
static void conn_on_read(struct pt_io *io, uint32_t events)
{
    struct fake_conn *fc = pt_container_of(io, struct fake_conn, io);
    uint8_t r[602];
    ssize_t n;

    (void)events;
    for (;;) {
        n = read(io->fd, fc->buf + fc->len, sizeof(fc->buf) - fc->len);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            conn_close(fc, g_loop);
            return;
        }
        if (n < 0)
            break;
        fc->len += (size_t)n;
    }
    while (fc->len >= 2 && fc->len >= 2 + (size_t)(fc->buf[0] << 8 | fc->buf[1])) {
        size_t qlen = (size_t)(fc->buf[0] << 8 | fc->buf[1]);
        size_t rlen = fake_reply(fc->f, fc->buf + 2, qlen, r + 2, false);
        fc->f->tcp_queries++;
        put16(r, (unsigned)rlen);
        if (rlen > 0)
            (void)!write(io->fd, r, rlen + 2);
        memmove(fc->buf, fc->buf + 2 + qlen, fc->len - 2 - qlen);
        fc->len -= 2 + qlen;
    }
}

static void tcp_on_accept(struct pt_io *io, uint32_t events)
{
    struct fake_dns *f = pt_container_of(io, struct fake_dns, tcp);
    int fd;

    (void)events;
    while ((fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        struct fake_conn *fc = NULL;
        for (size_t i = 0; i < PT_ARRAY_SIZE(f->conns) && fc == NULL; i++)
            if (f->conns[i].io.fd < 0)
                fc = &f->conns[i];
        if (fc == NULL) {
            close(fd);
            continue;
        }
        fc->io.fd = fd;
        fc->io.cb = conn_on_read;
        fc->f = f;
        fc->len = 0;
        assert_int_equal(pt_loop_add(g_loop, &fc->io, EPOLLIN), 0);
    }
}

/* udp_bind: a non-blocking UDP socket on 127.0.0.1 with a kernel-chosen port (in *port). */
static int udp_bind(int *port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

/* tcp_listen: a TCP listener on 127.0.0.1:<port>, or -1 when the port is taken. */
static int tcp_listen(int port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(fd, 8) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void fake_start(struct ctx *c)
{
    int port;

    c->fake.io.fd = udp_bind(&port);
    c->fake.tcp.fd = tcp_listen(port);
    c->fake.tcp.cb = tcp_on_accept;
    if (c->fake.tcp.fd >= 0)
        assert_int_equal(pt_loop_add(c->loop, &c->fake.tcp, EPOLLIN), 0);
    c->fake.io.cb = fake_on_read;
    c->fake.ttl = 1;
    snprintf(c->fake.csv, sizeof(c->fake.csv), "127.0.0.1:%d", port);
    assert_int_equal(pt_loop_add(c->loop, &c->fake.io, EPOLLIN), 0);
    assert_int_equal(pt_dns_set_servers(c->fake.csv), 0);
}

static void write_hosts(struct ctx *c, const char *text)
{
    FILE *fp = fopen(c->hosts_path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* ---- fixtures ---- */

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    int fd;

    assert_non_null(c);
    c->fake.io.fd = -1;
    c->fake.tcp.fd = -1;
    for (size_t i = 0; i < PT_ARRAY_SIZE(c->fake.conns); i++)
        c->fake.conns[i].io.fd = -1;
    c->blackhole_fd = -1;
    snprintf(c->hosts_path, sizeof(c->hosts_path), "/tmp/portico-test-hosts-XXXXXX");
    fd = mkstemp(c->hosts_path);
    assert_true(fd >= 0);
    close(fd);
    c->loop = pt_loop_new();
    assert_non_null(c->loop);
    g_loop = c->loop;
    assert_int_equal(pt_dns_init(c->loop, on_change, c), 0);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;

    pt_dns_fini();
    for (size_t i = 0; i < PT_ARRAY_SIZE(c->fake.conns); i++)
        if (c->fake.conns[i].io.fd >= 0)
            conn_close(&c->fake.conns[i], c->loop);
    if (c->fake.tcp.fd >= 0) {
        pt_loop_del(c->loop, &c->fake.tcp);
        close(c->fake.tcp.fd);
    }
    if (c->fake.io.fd >= 0) {
        pt_loop_del(c->loop, &c->fake.io);
        close(c->fake.io.fd);
    }
    if (c->blackhole_fd >= 0)
        close(c->blackhole_fd);
    unsetenv("CARES_HOSTS");
    unlink(c->hosts_path);
    pt_loop_free(c->loop);
    free(c);
    return 0;
}

/* ---- tests ---- */

static void test_localhost(void **state)
{
    struct ctx *c = *state;
    struct pt_dns_addr out[4];
    uint64_t t0 = pt_now_ms();

    assert_int_equal(lookup(c, "localhost", out, 4), 0);
    assert_true(run_until(c, &c->changes, 1, 1000));
    assert_true(pt_now_ms() - t0 < 1000);
    assert_int_equal(lookup(c, "localhost", out, 4), 2);
    assert_addr(&out[0], "127.0.0.1");
    assert_addr(&out[1], "::1");
    assert_int_equal(((struct sockaddr_in *)&out[0].addr)->sin_port, 0);
    assert_int_equal(out[0].len, sizeof(struct sockaddr_in));
    assert_int_equal(out[1].len, sizeof(struct sockaddr_in6));
    /* <max> bounds the copy. */
    assert_int_equal(lookup(c, "localhost", out, 1), 1);
    /* Names under localhost, any case, with a final dot. */
    assert_int_equal(lookup(c, "Api.LocalHost.", out, 4), 0);
    assert_true(run_until(c, &c->changes, 2, 1000));
    assert_int_equal(lookup(c, "api.localhost.", out, 4), 2);
    assert_addr(&out[1], "::1");
}

static void test_hosts_file(void **state)
{
    struct ctx *c = *state;
    struct pt_dns_addr out[8];

    write_hosts(c, "# test\n10.1.2.3 portico-hosts-only\nfd00::5 portico-hosts-only\n"
                   "10.1.2.3 portico-hosts-only alias\n10.0.0.9 portico-hosts-only\n");
    setenv("CARES_HOSTS", c->hosts_path, 1);
    assert_int_equal(lookup(c, "portico-hosts-only", out, 8), 0);
    assert_true(run_until(c, &c->changes, 1, 1000));
    /* sorted, IPv4 first, the duplicate gone */
    assert_int_equal(lookup(c, "portico-hosts-only", out, 8), 3);
    assert_addr(&out[0], "10.0.0.9");
    assert_addr(&out[1], "10.1.2.3");
    assert_addr(&out[2], "fd00::5");
}

static void test_ttl_expiry_rereads_hosts(void **state)
{
    struct ctx *c = *state;
    struct pt_dns_addr out[4];

    assert_int_equal(pt_dns_set_ttl_bounds(1, 1), 0);
    write_hosts(c, "10.1.2.3 flip\n");
    setenv("CARES_HOSTS", c->hosts_path, 1);
    assert_int_equal(lookup(c, "flip", out, 4), 0);
    assert_true(run_until(c, &c->changes, 1, 1000));
    write_hosts(c, "10.1.2.4 flip\n");
    /* the old answer is served until the new one arrives */
    assert_int_equal(lookup(c, "flip", out, 4), 1);
    assert_addr(&out[0], "10.1.2.3");
    assert_true(run_until(c, &c->changes, 2, 2500));
    assert_int_equal(lookup(c, "flip", out, 4), 1);
    assert_addr(&out[0], "10.1.2.4");
    /* an unchanged refresh is not a change */
    run_until(c, NULL, 0, 1500);
    assert_int_equal(c->changes, 2);
}

static void test_dns_ttl_from_wire(void **state)
{
    struct ctx *c = *state;
    struct pt_dns_addr out[4];
    uint64_t t2;

    fake_start(c);
    assert_int_equal(pt_dns_set_ttl_bounds(1, 300), 0);
    c->fake.a = 0x0a090001; /* 10.9.0.1 */
    c->fake.ttl = 1;
    assert_int_equal(lookup(c, "svc.portico.test", out, 4), 0);
    assert_true(run_until(c, &c->changes, 1, 1000));
    assert_int_equal(lookup(c, "svc.portico.test", out, 4), 2);
    assert_addr(&out[0], "10.9.0.1");
    assert_addr(&out[1], "fd00::1");
    /* The record's TTL (1 s) is honoured: asked again after 1 s, not after the cap. */
    assert_int_equal(pt_dns_set_ttl_bounds(1, 2), 0);
    c->fake.a = 0x0a090002;
    c->fake.ttl = 3600;
    assert_true(run_until(c, &c->changes, 2, 2500));
    t2 = pt_now_ms();
    assert_int_equal(lookup(c, "svc.portico.test", out, 4), 2);
    assert_addr(&out[0], "10.9.0.2");
    assert_addr(&out[1], "fd00::2");
    /* That answer's TTL (3600 s) is cut to the 2 s cap. */
    c->fake.a = 0x0a090003;
    assert_true(run_until(c, &c->changes, 3, 3500));
    assert_true(pt_now_ms() - t2 >= 1500);
    assert_int_equal(lookup(c, "svc.portico.test", out, 4), 2);
    assert_addr(&out[0], "10.9.0.3");
}

/* lookup_refresh: pt_dns_lookup_refresh, checked like lookup(). */
static int lookup_refresh(struct ctx *c, const char *name, struct pt_dns_addr *out, int max, bool ttl)
{
    int n;
    c->in_lookup = true;
    n = pt_dns_lookup_refresh(name, out, max, ttl);
    c->in_lookup = false;
    return n;
}

/* respect_dns_ttl false (Envoy's default): the name is asked again every refresh interval (the
 * lower bound), however long the TTL. */
static void test_interval_refresh_ignores_ttl(void **state)
{
    struct ctx *c = *state;
    struct pt_dns_addr out[4];
    uint64_t t1;

    fake_start(c);
    assert_int_equal(pt_dns_set_ttl_bounds(1, 300), 0);
    c->fake.a = 0x0a090001;
    c->fake.ttl = 3600;
    assert_int_equal(lookup_refresh(c, "svc.portico.test", out, 4, false), 0);
    assert_true(run_until(c, &c->changes, 1, 1000));
    t1 = pt_now_ms();
    c->fake.a = 0x0a090002;
    assert_true(run_until(c, &c->changes, 2, 2500));
    assert_true(pt_now_ms() - t1 >= 700); /* after the interval, not at once */
    assert_int_equal(lookup_refresh(c, "svc.portico.test", out, 4, false), 2);
    assert_addr(&out[0], "10.9.0.2");
}

/* respect_dns_ttl true: the TTL decides; a lookup that asks for the interval brings a long
 * expiry in at once, and once a new round no longer asks for it, the TTL decides again. */
static void test_ttl_respected_until_interval_asked(void **state)
{
    struct ctx *c = *state;
    struct pt_dns_addr out[4];
    int queries;

    fake_start(c);
    assert_int_equal(pt_dns_set_ttl_bounds(1, 300), 0);
    c->fake.a = 0x0a090001;
    c->fake.ttl = 3600;
    assert_int_equal(lookup_refresh(c, "svc.portico.test", out, 4, true), 0);
    assert_true(run_until(c, &c->changes, 1, 1000));
    queries = c->fake.queries;
    c->fake.a = 0x0a090002;
    run_until(c, NULL, 0, 1200);
    assert_int_equal(c->fake.queries, queries); /* not asked again: the TTL is an hour */
    assert_int_equal(c->changes, 1);
    /* Another cluster of the same round does not respect the TTL: refreshed every interval. */
    assert_int_equal(lookup_refresh(c, "svc.portico.test", out, 4, false), 2);
    assert_addr(&out[0], "10.9.0.1");
    assert_true(run_until(c, &c->changes, 2, 2500));
    /* A new round (a recompile) where only respecting clusters look it up: the refresh due
     * within the interval is the last one before the TTL rules again. */
    pt_dns_new_round();
    assert_int_equal(lookup_refresh(c, "svc.portico.test", out, 4, true), 2);
    assert_addr(&out[0], "10.9.0.2");
    c->fake.a = 0x0a090003;
    assert_true(run_until(c, &c->changes, 3, 2500));
    c->fake.a = 0x0a090004;
    run_until(c, NULL, 0, 1200);
    assert_int_equal(c->changes, 3);
    assert_int_equal(lookup_refresh(c, "svc.portico.test", out, 4, true), 2);
    assert_addr(&out[0], "10.9.0.3");
}

static void test_failure_keeps_answer_negative_clears(void **state)
{
    struct ctx *c = *state;
    struct pt_dns_addr out[4];
    int queries;

    fake_start(c);
    assert_int_equal(pt_dns_set_ttl_bounds(1, 1), 0);
    c->fake.a = 0x0a090003;
    assert_int_equal(lookup(c, "svc.portico.test", out, 4), 0);
    assert_true(run_until(c, &c->changes, 1, 1000));
    /* The server stops answering: the refresh times out, the old answer stays. */
    c->fake.mode = FAKE_DROP;
    queries = c->fake.queries;
    assert_true(run_until(c, &c->fake.queries, queries + 1, 2000));
    assert_true(run_until_idle(c, 5000));
    assert_true(c->max_iter_ms < 500);
    assert_int_equal(c->changes, 1);
    assert_int_equal(lookup(c, "svc.portico.test", out, 4), 2);
    assert_addr(&out[0], "10.9.0.3");
    /* The name is gone: that is a change, to no addresses. */
    c->fake.mode = FAKE_NXDOMAIN;
    assert_true(run_until(c, &c->changes, 2, 6000));
    assert_int_equal(lookup(c, "svc.portico.test", out, 4), 0);
}

static void test_tcp_fallback(void **state)
{
    struct ctx *c = *state;
    struct pt_dns_addr out[4];

    fake_start(c);
    if (c->fake.tcp.fd < 0)
        skip(); /* the UDP port was free, but not the same TCP port */
    c->fake.truncate = true;
    c->fake.a = 0x0a090007;
    assert_int_equal(lookup(c, "big.portico.test", out, 4), 0);
    assert_true(run_until(c, &c->changes, 1, 1000)); /* a timeout would take 3 s */
    assert_true(c->fake.tcp_queries >= 2);           /* A and AAAA */
    assert_int_equal(lookup(c, "big.portico.test", out, 4), 2);
    assert_addr(&out[0], "10.9.0.7");
    assert_addr(&out[1], "fd00::7");
}

static void test_nxdomain_from_fake_server(void **state)
{
    struct ctx *c = *state;
    struct pt_dns_addr out[4];
    struct pt_dns_stats st;

    fake_start(c);
    c->fake.mode = FAKE_NXDOMAIN;
    assert_int_equal(lookup(c, "gone.portico.test", out, 4), 0);
    pt_dns_get_stats(&st);
    assert_int_equal(st.in_flight, 1);
    assert_true(run_until_idle(c, 1000));
    run_until(c, NULL, 0, 100);
    assert_int_equal(c->changes, 0); /* a first negative answer is no change */
    assert_int_equal(lookup(c, "gone.portico.test", out, 4), 0);
    pt_dns_get_stats(&st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.in_flight, 0);
}

static void test_unresolvable_system_resolver(void **state)
{
    struct ctx *c = *state;
    struct pt_dns_addr out[4];

    /* resolv.conf's servers: NXDOMAIN if one answers, else a timeout; never a blocked loop. */
    assert_int_equal(lookup(c, "nonexistent.invalid", out, 4), 0);
    assert_true(run_until_idle(c, 15000));
    assert_true(c->max_iter_ms < 500);
    assert_int_equal(lookup(c, "nonexistent.invalid", out, 4), 0);
    assert_int_equal(c->changes, 0);
}

static void test_timeout_does_not_block(void **state)
{
    struct ctx *c = *state;
    struct pt_dns_addr out[4];
    char csv[64];
    int port;
    uint64_t t0;

    c->blackhole_fd = udp_bind(&port); /* never read: every query times out */
    snprintf(csv, sizeof(csv), "127.0.0.1:%d", port);
    assert_int_equal(pt_dns_set_servers(csv), 0);
    t0 = pt_now_ms();
    assert_int_equal(lookup(c, "slow.portico.test", out, 4), 0);
    assert_true(pt_now_ms() - t0 < 100);
    assert_true(run_until_idle(c, 6000));
    assert_true(pt_now_ms() - t0 >= 900); /* it really waited for the server */
    assert_true(c->max_iter_ms < 500);
    assert_int_equal(lookup(c, "slow.portico.test", out, 4), 0);
    assert_int_equal(c->changes, 0);
}

static void test_idle_names_dropped(void **state)
{
    struct ctx *c = *state;
    struct pt_dns_addr out[4];
    struct pt_dns_stats st;
    uint64_t t0;

    assert_int_equal(pt_dns_set_ttl_bounds(1, 1), 0);
    assert_int_equal(pt_dns_set_idle_timeout(2), 0);
    assert_int_equal(lookup(c, "idle.localhost", out, 4), 0);
    assert_int_equal(lookup(c, "busy.localhost", out, 4), 0);
    t0 = pt_now_ms();
    while (pt_now_ms() - t0 < 3500) {
        lookup(c, "busy.localhost", out, 4);
        run_until(c, NULL, 0, 100);
    }
    pt_dns_get_stats(&st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(lookup(c, "busy.localhost", out, 4), 2);
}

static void test_cache_bound(void **state)
{
    struct ctx *c = *state;
    struct pt_dns_addr out[4];
    struct pt_dns_stats st;
    char name[32];

    /* Numeric names are answered by c-ares without I/O. */
    for (int i = 0; i < 4200; i++) {
        snprintf(name, sizeof(name), "10.77.%d.%d", i / 256, i % 256);
        lookup(c, name, out, 4);
    }
    pt_dns_get_stats(&st);
    assert_int_equal(st.entries, 4096);
    run_until(c, &c->changes, 1, 1000);
    assert_int_equal(c->changes, 1); /* many first answers, one call */
    assert_int_equal(lookup(c, "10.77.16.103", out, 4), 1); /* the last one */
    assert_addr(&out[0], "10.77.16.103");
    assert_int_equal(lookup(c, "10.77.0.0", out, 4), 0); /* evicted: a miss again */
    pt_dns_get_stats(&st);
    assert_int_equal(st.entries, 4096);
}

static void test_bad_input(void **state)
{
    struct ctx *c = *state;
    struct pt_dns_addr out[4];
    char longname[300];

    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(lookup(c, NULL, out, 4), 0);
    assert_int_equal(lookup(c, "", out, 4), 0);
    assert_int_equal(lookup(c, longname, out, 4), 0);
    assert_int_equal(pt_dns_set_ttl_bounds(0, 5), PT_INVAL);
    assert_int_equal(pt_dns_set_ttl_bounds(6, 5), PT_INVAL);
    assert_int_equal(pt_dns_set_idle_timeout(0), PT_INVAL);
    assert_int_equal(pt_dns_set_servers("not a server list"), PT_INVAL);
    assert_int_equal(pt_dns_init(c->loop, on_change, c), PT_INVAL);
}

static void test_without_init(void **state)
{
    struct pt_dns_addr out[4];
    struct pt_dns_stats st = { 1, 1 };

    (void)state;
    assert_int_equal(pt_dns_lookup("localhost", out, 4), 0);
    pt_dns_get_stats(&st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(pt_dns_set_ttl_bounds(1, 1), PT_INVAL);
    pt_dns_fini();
}

static void test_fini_with_lookup_in_flight(void **state)
{
    struct ctx *c = *state;
    struct pt_dns_addr out[4];
    char csv[64];
    int port;

    c->blackhole_fd = udp_bind(&port);
    snprintf(csv, sizeof(csv), "127.0.0.1:%d", port);
    assert_int_equal(pt_dns_set_servers(csv), 0);
    assert_int_equal(lookup(c, "pending.portico.test", out, 4), 0);
    run_until(c, NULL, 0, 50);
    /* teardown calls pt_dns_fini() with the lookup still waiting */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_localhost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hosts_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_expiry_rereads_hosts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dns_ttl_from_wire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interval_refresh_ignores_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_respected_until_interval_asked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_keeps_answer_negative_clears, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tcp_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nxdomain_from_fake_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unresolvable_system_resolver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_does_not_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_names_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test(test_without_init),
        cmocka_unit_test_setup_teardown(test_fini_with_lookup_in_flight, setup, teardown),
    };

    pt_log_set_level(PT_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
