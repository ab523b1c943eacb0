/* core/cidr.c: ranges as Envoy's CidrRange reads them, and matching. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "core/cidr.h"

static bool in(const char *range, const char *addr)
{
    struct pt_cidr c;
    struct pt_ip ip;
    char err[128];

    assert_true(pt_cidr_parse(range, &c, err, sizeof(err)));
    assert_true(pt_ip_parse(addr, strlen(addr), &ip));
    return pt_cidr_match(&c, &ip);
}

static void test_ipv4_ranges(void **state)
{
    (void)state;
    assert_true(in("99.99.0.0/16", "99.99.0.1"));
    assert_true(in("99.99.0.0/16", "99.99.255.255"));
    assert_false(in("99.99.0.0/16", "99.98.0.1"));
    assert_true(in("127.0.0.1", "127.0.0.1"));      /* an address alone: /32 */
    assert_false(in("127.0.0.1", "127.0.0.2"));
    assert_true(in("0.0.0.0/0", "203.0.113.9"));
    assert_true(in("10.1.2.3/8", "10.200.0.1"));   /* bits past the prefix are cleared */
    assert_true(in("192.168.1.128/25", "192.168.1.200"));
    assert_false(in("192.168.1.128/25", "192.168.1.127"));
    assert_true(in("10.0.0.0/13", "10.7.255.255"));
    assert_false(in("10.0.0.0/13", "10.8.0.0"));
}

static void test_ipv6_and_families(void **state)
{
    (void)state;
    assert_true(in("::1", "::1"));
    assert_true(in("2001:db8::/32", "2001:db8:1::5"));
    assert_false(in("2001:db8::/32", "2001:db9::5"));
    assert_false(in("0.0.0.0/0", "::1"));          /* never across families */
    assert_false(in("::/0", "127.0.0.1"));
    /* a peer of a dual-stack listener comes as IPv4-mapped IPv6: it is matched as IPv4 */
    assert_true(in("127.0.0.0/8", "::ffff:127.0.0.1"));
    /* and an IPv4-mapped range is the IPv4 range */
    assert_true(in("::ffff:10.0.0.0/104", "10.2.3.4"));
    assert_false(in("::ffff:10.0.0.0/104", "11.2.3.4"));
}

static void test_bad_ranges(void **state)
{
    static const char *const bad[] = { "", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129",
                                       "10.0.0.0/-1", "10.0.0.0/8x", "10.0.0", "hostname",
                                       "10.0.0.0/ 8", "10.0.0.0/+8", "1.2.3.4 " };
    struct pt_cidr c;
    char err[128];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        assert_false(pt_cidr_parse(bad[i], &c, err, sizeof(err)));
        assert_true(err[0] != 0);
    }
    struct pt_ip ip;
    assert_false(pt_ip_parse("", 0, &ip));
    assert_false(pt_ip_parse("1.2.3.4:80", 10, &ip));
    assert_false(pt_ip_parse("unknown", 7, &ip));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4_ranges),
        cmocka_unit_test(test_ipv6_and_families),
        cmocka_unit_test(test_bad_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
