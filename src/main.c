/* portico: the command line. `run` starts the workers and the control thread (this one), which
 * owns configuration, DNS, signals and the admin server; `check` validates a directory without
 * serving. Everything else lives in the modules. */
#include "admin/admin.h"
#include "cluster/dns.h"
#include "config/load.h"
#include "control/check.h"
#include "control/hotrestart.h"
#include "control/listen.h"
#include "control/reload.h"
#include "core/log.h"
#include "core/loop.h"
#include "proxy/proxy.h"
#include "route/route.h"
#include "sources/dirwatch.h"
#include "sources/kubernetes.h"
#include "tls/tls.h"
#include "observe/trace.h"
#include "observe/stats.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#ifndef PT_VERSION
#define PT_VERSION "0.1.0"
#endif

static const char usage[] =
    "usage: portico run --config DIR [options]\n"
    "       portico run --kubernetes [options]\n"
    "       portico check DIR\n"
    "       portico --version | --help\n"
    "\n"
    "options:\n"
    "  --config DIR          read every *.yaml/*.yml under DIR and watch it for changes\n"
    "  --kubernetes          read resources from the Kubernetes API (list + watch; in a pod, or\n"
    "                        KUBECONFIG / ~/.kube/config)\n"
    "  --admin-port N        admin server port (default 8877)\n"
    "  --admin-bind ADDR     admin server address, numeric IPv4 or IPv6 (default: all)\n"
    "  --admin-max-connections N  open admin connections at most (default 32)\n"
    "  --admin-timeout-ms N  admin request head deadline and write idle timeout (default 10000)\n"
    "  --workers N           worker threads (default: one per CPU)\n"
    "  --log-level LEVEL     debug, info, warn or error (default info)\n"
    "  --max-header-bytes N  request line + headers limit (default 61440)\n"
    "  --max-headers N       header count limit (default 100)\n"
    "  --idle-timeout-ms N   downstream keep-alive idle timeout (default 300000)\n"
    "  --header-timeout-ms N time allowed for a request head (default 10000)\n"
    "  --stream-idle-timeout-ms N  a request with no bytes moving either way ends (default\n"
    "                        300000; 0: never; a Mapping's idle_timeout_ms wins)\n"
    "  --max-connections N   downstream connections per worker (default 100000)\n"
    "  --upstream-idle-timeout-ms N  a pooled upstream connection closes after this idle\n"
    "                        (default 60000)\n"
    "  --upstream-max-idle N pooled connections per upstream endpoint and worker (default 1024;\n"
    "                        0: no reuse)\n"
    "  --upstream-max-lifetime-ms N  an upstream connection is not reused after this long\n"
    "                        (default 0: no limit)\n"
    "\n"
    "environment: AMBASSADOR_NAMESPACE, AMBASSADOR_ID, AMBASSADOR_SINGLE_NAMESPACE,\n"
    "  AMBASSADOR_ISTIO_SECRET_DIR, AMBASSADOR_ENVOY_BASE_ID, AMBASSADOR_DRAIN_TIME\n";

struct run_opts {
    const char *config_dir;
    bool kubernetes;
    struct pt_admin_opts admin;
    int workers;
};

static struct {
    struct pt_loop *loop;
    struct pt_io sig_io;
    struct pt_timer drain_timer;
    uint64_t drain_deadline;
    bool draining;
} ctl;

static int parse_uint(const char *s, const char *what, long min, long max, long *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max) {
        fprintf(stderr, "portico: %s: expected a number from %ld to %ld, got '%s'\n", what, min, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

static void on_drain_tick(struct pt_timer *t)
{
    if (pt_workers_active() == 0 || pt_now_ms() >= ctl.drain_deadline) {
        pt_loop_stop(ctl.loop);
        return;
    }
    pt_timer_arm(ctl.loop, &ctl.drain_timer, 50);
}

/* Stops accepting and lets requests in flight finish (bounded by AMBASSADOR_DRAIN_TIME), then
 * stops. The listening sockets are closed, unless a hot restart handed them to a successor. */
static void start_drain(bool close_listeners)
{
    const char *dt = getenv("AMBASSADOR_DRAIN_TIME");
    long secs = dt ? strtol(dt, NULL, 10) : 600;

    if (ctl.draining)
        return;
    if (secs < 0)
        secs = 0;
    pt_info("draining: requests in flight have up to %ld s", secs);
    ctl.draining = true;
    ctl.drain_deadline = pt_now_ms() + (uint64_t)secs * 1000;
    pt_workers_drain();
    if (close_listeners)
        pt_listen_shutdown_all();
    ctl.drain_timer.cb = on_drain_tick;
    pt_timer_arm(ctl.loop, &ctl.drain_timer, 10);
}

static void on_handover(void)
{
    start_drain(false);
}

static void on_signal(struct pt_io *io, uint32_t events)
{
    struct signalfd_siginfo si;

    while (read(io->fd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            pt_info("SIGHUP: reloading configuration");
            pt_reload_now();
            continue;
        }
        if (ctl.draining) {
            pt_info("second signal: exiting now");
            pt_loop_stop(ctl.loop);
            return;
        }
        pt_info("%s: draining", strsignal((int)si.ssi_signo));
        start_drain(true);
    }
}

static int cmd_run(struct run_opts *o)
{
    static struct pt_config_env env;
    sigset_t set;

    if (o->kubernetes == (o->config_dir != NULL)) {
        fprintf(stderr, "portico: run needs --config DIR or --kubernetes (one of them)\n%s", usage);
        return 2;
    }
    if (!o->kubernetes && access(o->config_dir, R_OK) != 0) {
        fprintf(stderr, "portico: cannot read configuration directory %s: %s\n", o->config_dir, strerror(errno));
        return 2;
    }
    pt_config_env_from_environ(&env);
    if (o->workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o->workers = n > 0 ? (int)n : 1;
    }
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* workers inherit the mask: signals come here */
    signal(SIGPIPE, SIG_IGN);
    if ((ctl.loop = pt_loop_new()) == NULL || pt_workers_start(o->workers) != 0) {
        fprintf(stderr, "portico: cannot start workers\n");
        return 1;
    }
    ctl.sig_io.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    ctl.sig_io.cb = on_signal;
    pt_loop_add(ctl.loop, &ctl.sig_io, EPOLLIN);
    if (pt_admin_start(ctl.loop, &o->admin) != 0)
        return 1;
    pt_stats_server_init(PT_VERSION);
    pt_reload_init(ctl.loop, o->config_dir, &env, o->workers);
    if (pt_zipkin_start(ctl.loop) != 0)
        pt_warn("tracing exporter unavailable: spans will not be sent");
    if (pt_dns_init(ctl.loop, pt_reload_request, NULL) != 0)
        pt_warn("DNS resolver unavailable: services are resolved from IPs and Endpoints only");
    else
        pt_dns_set_idle_timeout(366 * 86400); /* names in the live config are only looked up at
                                                * compile time; keep refreshing them on TTL */
    if (o->kubernetes) {
        char err[512];
        pt_reload_set_source(pt_kubernetes_resources, "kubernetes", NULL);
        if (pt_kubernetes_start(ctl.loop, &env, pt_reload_now, err, sizeof(err)) != 0) {
            pt_error("--kubernetes: %s", err);
            return 2;
        }
    } else if (pt_dirwatch_start(ctl.loop, o->config_dir, 20, pt_reload_request, NULL) != 0)
        pt_warn("cannot watch %s: changes apply on SIGHUP only", o->config_dir);
    {
        const char *istio = getenv("AMBASSADOR_ISTIO_SECRET_DIR");
        if (istio != NULL && istio[0] != '\0' && pt_istio_certs_start(ctl.loop, istio, pt_reload_request, NULL) != 0)
            pt_warn("cannot watch AMBASSADOR_ISTIO_SECRET_DIR %s: the istio-certs Secret will be missing", istio);
    }
    pt_info("portico %s: %d workers, admin port %d on %s, config %s", PT_VERSION, o->workers,
            o->admin.port, o->admin.bind ? o->admin.bind : "all addresses",
            o->kubernetes ? "from the Kubernetes API" : o->config_dir);
    /* Hot restart only between processes that name their base id: two porticos started
     * without one (tests, side-by-side instances) must never take each other over. */
    if (getenv("AMBASSADOR_ENVOY_BASE_ID") != NULL &&
        pt_hotrestart_start(ctl.loop, getenv("AMBASSADOR_ENVOY_BASE_ID"), on_handover) != 0)
        pt_warn("hot restart unavailable for this base id");
    pt_reload_now(); /* Kubernetes: nothing until every kind is listed */
    pt_loop_run(ctl.loop);
    pt_kubernetes_stop();
    pt_workers_stop();
    pt_info("stopped");
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "kubernetes", no_argument, NULL, 'k' },
        { "admin-port", required_argument, NULL, 'a' },
        { "admin-bind", required_argument, NULL, 'b' },
        { "admin-max-connections", required_argument, NULL, 'm' },
        { "admin-timeout-ms", required_argument, NULL, 't' },
        { "workers", required_argument, NULL, 'w' },
        { "log-level", required_argument, NULL, 'l' },
        { "max-header-bytes", required_argument, NULL, 'B' },
        { "max-headers", required_argument, NULL, 'H' },
        { "idle-timeout-ms", required_argument, NULL, 'I' },
        { "header-timeout-ms", required_argument, NULL, 'T' },
        { "stream-idle-timeout-ms", required_argument, NULL, 'S' },
        { "upstream-idle-timeout-ms", required_argument, NULL, 'U' },
        { "upstream-max-idle", required_argument, NULL, 'P' },
        { "upstream-max-lifetime-ms", required_argument, NULL, 'L' },
        { "max-connections", required_argument, NULL, 'C' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'v' },
        { NULL, 0, NULL, 0 },
    };
    struct run_opts o = { .admin = PT_ADMIN_OPTS_DEFAULT };
    const char *cmd = NULL;
    long v;
    int c;

    if (argc >= 2 && argv[1][0] != '-') {
        cmd = argv[1];
        argv++;
        argc--;
    }
    while ((c = getopt_long(argc, argv, "hv", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': o.config_dir = optarg; break;
        case 'k': o.kubernetes = true; break;
        case 'a':
            if (parse_uint(optarg, "--admin-port", 1, 65535, &v)) return 2;
            o.admin.port = (int)v;
            break;
        case 'b':
            if (!pt_admin_bind_valid(optarg)) {
                fprintf(stderr, "portico: --admin-bind: expected a numeric IPv4 or IPv6 address "
                                "(such as 127.0.0.1 or ::1), got '%s'\n", optarg);
                return 2;
            }
            o.admin.bind = optarg;
            break;
        case 'm':
            if (parse_uint(optarg, "--admin-max-connections", 1, 10000, &v)) return 2;
            o.admin.max_connections = (uint32_t)v;
            break;
        case 't':
            if (parse_uint(optarg, "--admin-timeout-ms", 100, 3600000, &v)) return 2;
            o.admin.timeout_ms = (uint32_t)v;
            break;
        case 'w':
            if (parse_uint(optarg, "--workers", 1, PT_MAX_WORKERS, &v)) return 2;
            o.workers = (int)v;
            break;
        case 'l': {
            enum pt_log_level lvl;
            if (pt_log_parse_level(optarg, &lvl) != 0) {
                fprintf(stderr, "portico: --log-level: expected debug, info, warn or error\n");
                return 2;
            }
            pt_log_set_level(lvl);
            break;
        }
        case 'B':
            if (parse_uint(optarg, "--max-header-bytes", 1024, PT_MAX_HEAD_BYTES_DEFAULT, &v)) return 2;
            pt_proxy_limits.max_head_bytes = (uint32_t)v;
            break;
        case 'H':
            if (parse_uint(optarg, "--max-headers", 8, PT_MAX_HEADERS_DEFAULT, &v)) return 2;
            pt_proxy_limits.max_headers = (uint32_t)v;
            break;
        case 'I':
            if (parse_uint(optarg, "--idle-timeout-ms", 100, 86400000, &v)) return 2;
            pt_proxy_limits.idle_timeout_ms = (uint32_t)v;
            break;
        case 'T':
            if (parse_uint(optarg, "--header-timeout-ms", 100, 3600000, &v)) return 2;
            pt_proxy_limits.header_timeout_ms = (uint32_t)v;
            break;
        case 'S':
            if (parse_uint(optarg, "--stream-idle-timeout-ms", 0, 86400000, &v)) return 2;
            pt_proxy_limits.stream_idle_timeout_ms = (uint32_t)v;
            break;
        case 'U':
            if (parse_uint(optarg, "--upstream-idle-timeout-ms", 100, 86400000, &v)) return 2;
            pt_proxy_limits.upstream_idle_ms = (uint32_t)v;
            break;
        case 'P':
            if (parse_uint(optarg, "--upstream-max-idle", 0, 100000, &v)) return 2;
            pt_proxy_limits.max_idle_per_endpoint = (uint32_t)v;
            break;
        case 'L':
            if (parse_uint(optarg, "--upstream-max-lifetime-ms", 0, 86400000, &v)) return 2;
            pt_proxy_limits.upstream_max_lifetime_ms = (uint32_t)v;
            break;
        case 'C':
            if (parse_uint(optarg, "--max-connections", 1, 10000000, &v)) return 2;
            pt_proxy_limits.max_connections = (uint32_t)v;
            break;
        case 'h': fputs(usage, stdout); return 0;
        case 'v': printf("portico %s (features: http/1.1 tls istio zipkin kubernetes)\n", PT_VERSION); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (cmd == NULL) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(cmd, "run") == 0)
        return cmd_run(&o);
    if (strcmp(cmd, "check") == 0) {
        const char *dir = optind < argc ? argv[optind] : o.config_dir;
        if (dir == NULL) {
            fprintf(stderr, "portico: check needs a directory\n");
            return 2;
        }
        return pt_config_check(dir, stdout);
    }
    if (strcmp(cmd, "version") == 0) {
        printf("portico %s (features: http/1.1 tls istio zipkin kubernetes)\n", PT_VERSION);
        return 0;
    }
    fprintf(stderr, "portico: unknown command '%s'\n%s", cmd, usage);
    return 2;
}
