/* Unit tests for src/cluster/health.c: Envoy's thresholds for active checks (an unexpected
 * answer fails at once, no answer after unhealthy_threshold in a row, healthy_threshold passes to
 * come back), passive ejection (the 5th failure in a row, at most 10 % but one endpoint, back
 * after base time x ejections, or at a passing check), the count of healthy endpoints, the
 * health kept across snapshots, Go durations, expected statuses, the gRPC health messages, and
 * the load balancer skipping what the shared health says is out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/health.h"
#include "cluster/lb.h"
#include "model/snapshot-t.h"

static const struct pt_health_cfg cfg2 = { .healthy_threshold = 2, .unhealthy_threshold = 3 };

static void test_active_thresholds(void **state)
{
    struct pt_health *h = pt_health_new(3);
    struct pt_health_run run = { 0 }, run1 = { 0 };

    assert_int_equal(pt_health_nhealthy(h), 3);
    /* no answer: unhealthy after 3 in a row; a pass in between starts over */
    assert_false(pt_health_active(h, 0, 0, &cfg2, &run, PT_HEALTH_NETWORK));
    assert_false(pt_health_active(h, 0, 0, &cfg2, &run, PT_HEALTH_NETWORK));
    assert_false(pt_health_active(h, 0, 0, &cfg2, &run, PT_HEALTH_PASS));
    assert_false(pt_health_active(h, 0, 0, &cfg2, &run, PT_HEALTH_NETWORK));
    assert_false(pt_health_active(h, 0, 0, &cfg2, &run, PT_HEALTH_NETWORK));
    assert_true(pt_health_ok(h, 0));
    assert_true(pt_health_active(h, 0, 0, &cfg2, &run, PT_HEALTH_NETWORK));
    assert_false(pt_health_ok(h, 0));
    assert_int_equal(pt_health_flags(h, 0), PT_HEALTH_FAILED_CHECK(0));
    assert_int_equal(pt_health_nhealthy(h), 2);
    /* two passes bring it back */
    assert_false(pt_health_active(h, 0, 0, &cfg2, &run, PT_HEALTH_PASS));
    assert_true(pt_health_active(h, 0, 0, &cfg2, &run, PT_HEALTH_PASS));
    assert_int_equal(pt_health_nhealthy(h), 3);
    /* an unexpected answer: at once */
    assert_true(pt_health_active(h, 1, 0, &cfg2, &run1, PT_HEALTH_FAIL));
    assert_int_equal(pt_health_nhealthy(h), 2);
    /* a second check failing on the same endpoint does not count it twice */
    struct pt_health_run r2 = { 0 };
    assert_false(pt_health_active(h, 1, 1, &cfg2, &r2, PT_HEALTH_FAIL));
    assert_int_equal(pt_health_flags(h, 1), PT_HEALTH_FAILED_CHECK(0) | PT_HEALTH_FAILED_CHECK(1));
    run1 = (struct pt_health_run){ 0 };
    pt_health_active(h, 1, 0, &cfg2, &run1, PT_HEALTH_PASS);
    assert_false(pt_health_active(h, 1, 0, &cfg2, &run1, PT_HEALTH_PASS)); /* check 1 still fails */
    assert_int_equal(pt_health_nhealthy(h), 2);
    pt_health_release(h);
}

static void test_passive_ejection(void **state)
{
    struct pt_health *h = pt_health_new(3);
    struct pt_health_run run = { 0 };

    for (int i = 0; i < 4; i++)
        assert_false(pt_health_passive(h, 2, true, 1000));
    assert_false(pt_health_passive(h, 2, false, 0)); /* a success starts over */
    for (int i = 0; i < 4; i++)
        assert_false(pt_health_passive(h, 2, true, 1000));
    assert_true(pt_health_passive(h, 2, true, 1000));
    assert_int_equal(pt_health_flags(h, 2), PT_HEALTH_EJECTED);
    assert_int_equal(pt_health_nhealthy(h), 2);
    /* 10 % of 3 is none, but one may always go: no second ejection */
    for (int i = 0; i < 5; i++)
        assert_false(pt_health_passive(h, 1, true, 1000));
    assert_true(pt_health_ok(h, 1));
    /* back after 30 s (one ejection so far) */
    assert_false(pt_health_sweep(h, 2, 1000 + 29999));
    assert_true(pt_health_sweep(h, 2, 1000 + 30000));
    assert_int_equal(pt_health_nhealthy(h), 3);
    /* the second ejection lasts 60 s; a passing active check ends it sooner */
    for (int i = 0; i < 5; i++)
        pt_health_passive(h, 2, true, 50000);
    assert_false(pt_health_ok(h, 2));
    assert_false(pt_health_sweep(h, 2, 50000 + 59999));
    assert_true(pt_health_active(h, 2, 0, &cfg2, &run, PT_HEALTH_PASS));
    assert_int_equal(pt_health_nhealthy(h), 3);
    /* ejected and failing its check: out until both end */
    for (int i = 0; i < 5; i++)
        pt_health_passive(h, 0, true, 0);
    pt_health_active(h, 0, 0, &cfg2, &run, PT_HEALTH_FAIL);
    assert_int_equal(pt_health_nhealthy(h), 2);
    assert_false(pt_health_sweep(h, 0, 1000000)); /* still failing the check */
    assert_int_equal(pt_health_flags(h, 0), PT_HEALTH_FAILED_CHECK(0));
    assert_int_equal(pt_health_nhealthy(h), 2);
    pt_health_release(h);
}

static void test_max_ejection_percent(void **state)
{
    struct pt_health *h = pt_health_new(20); /* 10 %: two */

    for (uint32_t e = 0; e < 3; e++)
        for (int i = 0; i < 5; i++)
            pt_health_passive(h, e, true, 0);
    assert_int_equal(pt_health_nhealthy(h), 18);
    assert_true(pt_health_ok(h, 2));
    pt_health_release(h);
}

static void test_durations(void **state)
{
    static const struct { const char *s; int rc; uint32_t ms; } cases[] = {
        { "3s", 0, 3000 },   { "100ms", 0, 100 }, { "1.5s", 0, 1500 }, { "1m30s", 0, 90000 },
        { "0", 0, 0 },       { "1h", 0, 3600000 }, { "500us", 0, 1 },  { "2000000ns", 0, 2 },
        { ".5s", 0, 500 },   { "", -1, 0 },        { "5", -1, 0 },     { "5 s", -1, 0 },
        { "-1s", -1, 0 },    { "s", -1, 0 },       { "25h", -1, 0 },   { "1.s", 0, 1000 },
        { "3sx", -1, 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t ms = 12345;
        int rc = pt_health_parse_duration(cases[i].s, &ms);
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0)
            assert_int_equal(ms, cases[i].ms);
    }
}

static void test_statuses_and_grpc(void **state)
{
    struct pt_health_range r[] = { { 200, 204 }, { 404, 404 } };
    struct pt_health_cfg none = { 0 }, some = { .ranges = r, .nranges = 2 };
    uint8_t buf[64];
    size_t n;

    assert_true(pt_health_status_expected(&none, 200));
    assert_false(pt_health_status_expected(&none, 204));
    assert_true(pt_health_status_expected(&some, 204));
    assert_true(pt_health_status_expected(&some, 404));
    assert_false(pt_health_status_expected(&some, 205));
    assert_true(pt_health_grpc_serving((const uint8_t *)"\x08\x01", 2));
    assert_false(pt_health_grpc_serving((const uint8_t *)"\x08\x02", 2));
    assert_false(pt_health_grpc_serving((const uint8_t *)"", 0)); /* UNKNOWN */
    assert_true(pt_health_grpc_serving((const uint8_t *)"\x12\x01x\x08\x01", 5)); /* unknown field */
    assert_false(pt_health_grpc_serving((const uint8_t *)"\x08", 1));             /* cut short */
    n = pt_health_grpc_request("quote.v1", buf, sizeof(buf));
    assert_int_equal(n, 15);
    assert_memory_equal(buf, "\x00\x00\x00\x00\x0a\x0a\x08quote.v1", 15);
    assert_int_equal(pt_health_grpc_request("", buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "\x00\x00\x00\x00\x00", 5);
    assert_int_equal(pt_health_grpc_request("quote.v1", buf, 10), 0);
}

/* A cluster of <n> endpoints 10.0.0.<1+i>:80 with one check. */
struct tc {
    struct pt_cluster c;
    struct pt_endpoint eps[4];
    struct pt_health_cfg chk;
};

static void make(struct tc *t, uint32_t id, const char *name, uint32_t n)
{
    memset(t, 0, sizeof(*t));
    t->c.id = id;
    t->c.name = (char *)name;
    t->c.endpoints = t->eps;
    t->c.nendpoints = n;
    t->c.checks = &t->chk;
    t->c.nchecks = 1;
    t->chk.interval_ms = 100;
    t->chk.path = (char *)"/h";
    for (uint32_t i = 0; i < n; i++) {
        struct sockaddr_in *sa = (struct sockaddr_in *)&t->eps[i].addr;
        sa->sin_family = AF_INET;
        sa->sin_port = htons(80);
        sa->sin_addr.s_addr = htonl(0x0A000001u + i);
        t->eps[i].addrlen = sizeof(*sa);
    }
}

static void test_attach_keeps_unchanged(void **state)
{
    struct tc a, b, a2, b2;
    struct pt_cluster *l1[] = { &a.c, &b.c }, *l2[] = { &a2.c, &b2.c };
    struct pt_snapshot s1 = { .clusters = l1, .nclusters = 2 }, s2 = { .clusters = l2, .nclusters = 2 };

    make(&a, 0, "a", 3);
    make(&b, 1, "b", 3);
    assert_int_equal(pt_health_attach(&s1, NULL), 0);
    assert_non_null(a.c.health);
    assert_ptr_not_equal(a.c.health, b.c.health);
    make(&a2, 0, "a", 3);
    make(&b2, 1, "b", 3);
    b2.chk.path = (char *)"/other"; /* a changed check: a fresh state */
    assert_int_equal(pt_health_attach(&s2, &s1), 0);
    assert_ptr_equal(a2.c.health, a.c.health);
    assert_ptr_not_equal(b2.c.health, b.c.health);
    pt_health_release(a.c.health);
    pt_health_release(b.c.health);
    pt_health_release(a2.c.health);
    pt_health_release(b2.c.health);
}

static void test_lb_reads_shared_health(void **state)
{
    struct tc a;
    struct pt_cluster *l[] = { &a.c };
    struct pt_snapshot s = { .clusters = l, .nclusters = 1 };
    struct pt_lb_state lb;
    struct pt_lb_pick p;
    struct pt_health_run run = { 0 };
    uint32_t epoch = 0;

    make(&a, 0, "a", 3);
    assert_int_equal(pt_health_attach(&s, NULL), 0);
    pt_lb_init(&lb, 7);
    assert_int_equal(pt_lb_adopt(&lb, &s), 0);
    pt_health_active(a.c.health, 1, 0, &cfg2, &run, PT_HEALTH_FAIL);
    for (int i = 0; i < 12; i++) {
        const struct pt_endpoint *ep = pt_lb_pick(&lb, &a.c, NULL, &p);
        assert_ptr_not_equal(ep, &a.eps[1]);
        epoch = p.epoch;
        pt_lb_release(&lb, &p, PT_LB_SUCCESS);
    }
    /* passive: five 5xx in a row on endpoint 0, reported through release, eject it */
    for (int i = 0; i < 5; i++) {
        struct pt_lb_pick q = { .cluster_id = 0, .endpoint = 0, .epoch = epoch };
        pt_lb_release(&lb, &q, PT_LB_HTTP_5XX);
    }
    assert_int_equal(pt_health_flags(a.c.health, 0), PT_HEALTH_EJECTED);
    /* one of three healthy: below the panic threshold, every endpoint is picked again */
    uint32_t seen = 0;
    for (int i = 0; i < 6; i++) {
        const struct pt_endpoint *ep = pt_lb_pick(&lb, &a.c, NULL, &p);
        seen |= 1u << (ep - a.eps);
        pt_lb_release(&lb, &p, PT_LB_CANCELLED);
    }
    assert_int_equal(seen, 7);
    pt_lb_free(&lb);
    pt_health_release(a.c.health);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_active_thresholds),      cmocka_unit_test(test_passive_ejection),
        cmocka_unit_test(test_max_ejection_percent),   cmocka_unit_test(test_durations),
        cmocka_unit_test(test_statuses_and_grpc),      cmocka_unit_test(test_attach_keeps_unchanged),
        cmocka_unit_test(test_lb_reads_shared_health),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
