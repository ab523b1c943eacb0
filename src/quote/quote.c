/* portico-quote: the example backend bundled with Portico (build/portico-quote).
 *
 * It answers like the quote service of the Emissary/Istio guide ({"server","quote","time"}) and
 * adds what proxy tests and benchmarks need: /echo, /status/NNN, /delay/MS, /size/N, /chunked/N
 * (see reply.c). It must never be the bottleneck of a proxy benchmark: N threads, each with its
 * own SO_REUSEPORT listener and epoll loop (worker.c), keep-alive and pipelining (conn.c).
 *
 * This file is the command line, the listening sockets, the threads and the signals: SIGINT or
 * SIGTERM stops every worker, which closes its connections, and the process exits 0. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "quote/quote.h"

#define MAX_THREADS 256

static void usage(FILE *f)
{
    fprintf(f,
            "usage: portico-quote [--port N] [--bind ADDR] [--threads N] [--name NAME]\n"
            "                     [--close] [--echo]\n"
            "  --port N     TCP port (default 9000; 0 picks a free one)\n"
            "  --bind ADDR  IPv4 or IPv6 address (default 127.0.0.1)\n"
            "  --threads N  worker threads, each with its own listener (default 1)\n"
            "  --name NAME  the \"server\" field of replies (default: host name)\n"
            "  --close      close the connection after each response\n"
            "  --echo       answer every path like /echo\n"
            "Paths: / (a quote), /echo, /status/NNN, /delay/MS, /size/N, /chunked/N\n");
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_opts(int argc, char **argv, struct pt_quote_opts *o)
{
    static const struct option longopts[] = {
        { "port", required_argument, NULL, 'p' },    { "bind", required_argument, NULL, 'b' },
        { "threads", required_argument, NULL, 't' }, { "name", required_argument, NULL, 'n' },
        { "close", no_argument, NULL, 'c' },         { "echo", no_argument, NULL, 'e' },
        { "help", no_argument, NULL, 'h' },          { NULL, 0, NULL, 0 },
    };
    int ch;

    *o = (struct pt_quote_opts){ .bind = "127.0.0.1", .port = 9000, .threads = 1 };
    if (gethostname(o->name, sizeof(o->name) - 1) < 0)
        snprintf(o->name, sizeof(o->name), "quote");
    while ((ch = getopt_long(argc, argv, "p:b:t:n:ceh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            if (parse_int(optarg, 0, 65535, &o->port) < 0)
                return fprintf(stderr, "portico-quote: bad --port '%s'\n", optarg), -1;
            break;
        case 'b':
            o->bind = optarg;
            break;
        case 't':
            if (parse_int(optarg, 1, MAX_THREADS, &o->threads) < 0)
                return fprintf(stderr, "portico-quote: bad --threads '%s'\n", optarg), -1;
            break;
        case 'n':
            if (strlen(optarg) >= sizeof(o->name))
                return fprintf(stderr, "portico-quote: --name is too long\n"), -1;
            snprintf(o->name, sizeof(o->name), "%s", optarg);
            break;
        case 'c':
            o->close_always = true;
            break;
        case 'e':
            o->echo_all = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return -1;
    }
    o->name_json_len = pt_quote_json_escape(o->name_json, o->name, strlen(o->name));
    return 0;
}

/* resolve: --bind (an address, "[v6]" accepted, or a name) into <ss>. */
static int resolve(const char *bind, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256], service[8];
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res;
    size_t n = strlen(bind);

    if (n >= sizeof(host))
        return -1;
    if (n >= 2 && bind[0] == '[' && bind[n - 1] == ']')
        snprintf(host, sizeof(host), "%.*s", (int)(n - 2), bind + 1);
    else
        snprintf(host, sizeof(host), "%s", bind);
    snprintf(service, sizeof(service), "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "portico-quote: --bind %s: %s\n", bind, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

static int get_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static int open_listener(const struct sockaddr_storage *ss, socklen_t len)
{
    int one = 1;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, 4096) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* raise_nofile: as many descriptors as allowed, so a benchmark never runs out. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void print_listening(const struct pt_quote_opts *o, const struct sockaddr_storage *ss,
                            int port)
{
    char host[NI_MAXHOST];
    if (getnameinfo((const struct sockaddr *)ss, sizeof(*ss), host, sizeof(host), NULL, 0,
                    NI_NUMERICHOST) != 0)
        snprintf(host, sizeof(host), "?");
    fprintf(stderr, "portico-quote: listening on http://%s%s%s:%d/ (threads %d, name %s%s%s)\n",
            ss->ss_family == AF_INET6 ? "[" : "", host, ss->ss_family == AF_INET6 ? "]" : "",
            port, o->threads, o->name, o->close_always ? ", close" : "",
            o->echo_all ? ", echo" : "");
}

/* start_workers: opens one listener per worker (the first picks the port when it is 0) and
 * starts the threads. Returns the number started; on failure stops and joins them. */
static int start_workers(struct pt_quote_opts *o, struct pt_quote_worker *ws, pthread_t *tids)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int i;

    if (resolve(o->bind, o->port, &ss, &len) < 0)
        return -1;
    for (i = 0; i < o->threads; i++) {
        int fd = open_listener(&ss, len);
        if (fd < 0) {
            fprintf(stderr, "portico-quote: listen on %s port %d: %s\n", o->bind, o->port,
                    strerror(errno));
            break;
        }
        if (i == 0) {
            o->port = get_port(fd);
            set_port(&ss, o->port);
        }
        if (pt_quote_worker_init(&ws[i], i, fd, o) < 0 ||
            pthread_create(&tids[i], NULL, pt_quote_worker_run, &ws[i]) != 0) {
            fprintf(stderr, "portico-quote: worker %d: %s\n", i, strerror(errno));
            close(fd);
            break;
        }
    }
    if (i == o->threads) {
        print_listening(o, &ss, o->port);
        return i;
    }
    while (i-- > 0) {
        pt_quote_worker_stop(&ws[i]);
        pthread_join(tids[i], NULL);
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct pt_quote_opts opts;
    sigset_t stop;
    int sig;

    if (parse_opts(argc, argv, &opts) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    /* The workers inherit this mask: only the main thread takes SIGINT and SIGTERM. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    struct pt_quote_worker *ws = calloc((size_t)opts.threads, sizeof(*ws));
    pthread_t *tids = calloc((size_t)opts.threads, sizeof(*tids));
    if (ws == NULL || tids == NULL || start_workers(&opts, ws, tids) < 0) {
        free(ws);
        free(tids);
        return 1;
    }
    sigwait(&stop, &sig);
    for (int i = 0; i < opts.threads; i++)
        pt_quote_worker_stop(&ws[i]);
    for (int i = 0; i < opts.threads; i++)
        pthread_join(tids[i], NULL);
    free(ws);
    free(tids);
    return 0;
}
