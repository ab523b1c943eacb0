/* Unit tests for src/control/apply.c and the line it draws: pt_compile() touches nothing outside
 * the snapshot (no socket bound, no file opened, no stats name registered), pt_apply() does those
 * things (binding or reusing listening sockets, opening the access log, registering stats names,
 * reporting what fails on the resource it comes from), the snapshot's on_free hook undoes them,
 * and `portico check` (pt_config_check) applies nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/compile.h"
#include "config/load.h"
#include "config/snapshot.h"
#include "control/apply.h"
#include "control/check.h"
#include "control/listen.h"

#define CONFIG                                                                                     \
    "apiVersion: getambassador.io/v3alpha1\n"                                                      \
    "kind: Listener\n"                                                                             \
    "metadata: {name: edge}\n"                                                                     \
    "spec: {port: %d, protocol: HTTP, securityModel: XFP}\n"                                       \
    "---\n"                                                                                        \
    "apiVersion: getambassador.io/v3alpha1\n"                                                      \
    "kind: Mapping\n"                                                                              \
    "metadata: {name: quote}\n"                                                                    \
    "spec: {hostname: '*', prefix: /, service: '127.0.0.1:9', stats_name: apply_test_quote}\n"    \
    "---\n"                                                                                        \
    "apiVersion: getambassador.io/v3alpha1\n"                                                      \
    "kind: Module\n"                                                                               \
    "metadata: {name: ambassador}\n"                                                               \
    "spec:\n"                                                                                      \
    "  config: {envoy_log_path: %s}\n"

/* A bound socket on a port the kernel picked, not listening, without SO_REUSEPORT: while it is
 * open, nobody else can bind the port. */
static int hold_port(int *port)
{
    struct sockaddr_in6 a = { .sin6_family = AF_INET6 };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET6, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin6_port);
    return fd;
}

/* can_bind: whether <port> is free to bind on all addresses right now. */
static bool can_bind(int port)
{
    struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
    int fd = socket(AF_INET6, SOCK_STREAM, 0), ok;

    assert_true(fd >= 0);
    ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

struct fixture {
    int port;
    char log[64];
    struct pt_resources *r;
};

static void load(struct fixture *fx)
{
    int fd = hold_port(&fx->port);
    char *yaml;

    close(fd);
    snprintf(fx->log, sizeof(fx->log), "/tmp/pt-apply-%d.log", (int)getpid());
    unlink(fx->log);
    assert_true(asprintf(&yaml, CONFIG, fx->port, fx->log) > 0);
    fx->r = pt_config_load_string(yaml, "t.yaml", NULL);
    free(yaml);
    assert_int_equal(fx->r->diag.nerrors, 0);
}

static char *diag_text(const struct pt_diag *d)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    pt_diag_print(d, f);
    fclose(f);
    return buf;
}

/* Compiling alone binds no socket, opens no file and registers no stats name; applying does
 * all three, and the last release of the snapshot closes what applying opened. */
static void test_compile_is_pure_apply_is_not(void **state)
{
    struct fixture fx;
    struct pt_snapshot *s;
    struct pt_listen_sock *ls;
    int sock_fd, log_fd;

    load(&fx);
    s = pt_compile(fx.r, NULL, 1, &fx.r->diag);
    assert_int_equal(s->nlisteners, 1);
    assert_null(s->listeners[0].sock);
    assert_true(can_bind(fx.port));
    assert_string_equal(s->log.path, fx.log);
    assert_int_equal(s->log.fd, 0);
    assert_int_equal(access(fx.log, F_OK), -1);
    assert_int_equal(s->nclusters, 1);
    assert_int_equal(s->clusters[0]->stats_idx, 0);
    assert_int_equal(s->listeners[0].stats_idx, 0);
    assert_int_equal(s->listeners[0].stats_prefix_idx, 0);
    assert_null(s->on_free);

    pt_apply(s, fx.r, &(struct pt_apply_opts){ .nworkers = 2 }, &fx.r->diag);
    assert_int_equal(fx.r->diag.nerrors, 0);
    ls = s->listeners[0].sock;
    assert_non_null(ls);
    assert_int_equal(ls->nfds, 2);
    assert_false(can_bind(fx.port));
    assert_true(s->log.fd > 2);
    assert_int_equal(access(fx.log, F_OK), 0);
    assert_int_not_equal(s->clusters[0]->stats_idx, 0);
    assert_int_not_equal(s->listeners[0].stats_idx, 0);
    assert_int_not_equal(s->listeners[0].stats_prefix_idx, 0);
    sock_fd = ls->fds[0];
    log_fd = s->log.fd;
    pt_snapshot_release(s);
    assert_false(fd_open(sock_fd));
    assert_false(fd_open(log_fd));
    assert_true(can_bind(fx.port));
    unlink(fx.log);
    pt_resources_free(fx.r);
}

/* PORTICO_STATS=off (stats_off): nothing is registered, so the request path counts nothing. */
static void test_apply_stats_off(void **state)
{
    struct fixture fx;
    struct pt_snapshot *s;

    load(&fx);
    s = pt_compile(fx.r, NULL, 1, &fx.r->diag);
    pt_apply(s, fx.r, &(struct pt_apply_opts){ .nworkers = 1, .stats_off = true }, &fx.r->diag);
    assert_non_null(s->listeners[0].sock);
    assert_int_equal(s->clusters[0]->stats_idx, 0);
    assert_int_equal(s->listeners[0].stats_idx, 0);
    pt_snapshot_release(s);
    unlink(fx.log);
    pt_resources_free(fx.r);
}

/* A port that cannot be bound and a log file that cannot be opened are errors on their
 * resources, with file:line, in the diag document and the invalid count too; the Listener is
 * left out and the log goes to stdout. */
static void test_apply_failures_reported(void **state)
{
    struct pt_resources *r;
    struct pt_snapshot *s;
    int port, busy = hold_port(&port);
    char *yaml, *text;

    assert_int_equal(listen(busy, 1), 0);
    assert_true(asprintf(&yaml, CONFIG, port, "/nonexistent-dir/access.log") > 0);
    r = pt_config_load_string(yaml, "t.yaml", NULL);
    free(yaml);
    s = pt_compile(r, NULL, 1, &r->diag);
    assert_int_equal(r->diag.nerrors, 0);
    assert_int_equal(s->ninvalid, 0);
    pt_apply(s, r, &(struct pt_apply_opts){ .nworkers = 1 }, &r->diag);
    text = diag_text(&r->diag);
    assert_non_null(strstr(text, "t.yaml:1: Listener/default/edge: cannot listen on"));
    assert_non_null(strstr(text, "t.yaml:11: Module/default/ambassador: envoy_log_path "
                                 "/nonexistent-dir/access.log: No such file or directory; access logs go to stdout"));
    free(text);
    assert_int_equal(r->diag.nerrors, 2);
    assert_int_equal(s->ninvalid, 2);
    assert_non_null(strstr(s->diag_json, "Listener/default/edge"));
    assert_non_null(strstr(s->diag_json, "envoy_log_path"));
    assert_int_equal(s->nlisteners, 0);
    assert_int_equal(s->log.fd, 0);
    pt_snapshot_release(s);
    pt_resources_free(r);
    close(busy);
}

/* `portico check` compiles what `run` would and applies nothing: the log file is not created, a
 * port in use is not an error (run would report it), and the exit status counts errors only. */
static void test_check_applies_nothing(void **state)
{
    char dir[] = "/tmp/pt-apply-check-XXXXXX", path[128], log[160], out[4096] = "";
    int port, busy = hold_port(&port);
    FILE *f;

    assert_int_equal(listen(busy, 1), 0);
    assert_non_null(mkdtemp(dir));
    snprintf(log, sizeof(log), "%s/access.log", dir);
    snprintf(path, sizeof(path), "%s/c.yaml", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, CONFIG, port, log);
    fclose(f);
    f = fmemopen(out, sizeof(out) - 1, "w");
    assert_int_equal(pt_config_check(dir, f), 0);
    fclose(f);
    assert_null(strstr(out, "cannot listen"));
    assert_null(strstr(out, "envoy_log_path"));
    assert_null(strstr(out, "nothing is served"));
    assert_non_null(strstr(out, "c.yaml:1: Listener/default/edge: notice: no hostBinding")); /* it ran */
    assert_int_equal(access(log, F_OK), -1);
    unlink(path);
    rmdir(dir);
    close(busy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_is_pure_apply_is_not),
        cmocka_unit_test(test_apply_stats_off),
        cmocka_unit_test(test_apply_failures_reported),
        cmocka_unit_test(test_check_applies_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
