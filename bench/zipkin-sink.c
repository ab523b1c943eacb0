/* zipkin-sink: the fast Zipkin collector of the tracing row of bench/run.sh.
 *
 * One thread, epoll, HTTP/1.1 keep-alive. Every POST is answered "202 Accepted" with no body as
 * soon as its Content-Length bytes are in; the spans in it are counted as the occurrences of
 * "traceId" (one per Zipkin v2 JSON span). GET /stats answers
 *   {"posts":N,"spans":N,"bytes":N,"bad":N,"conns":N}
 * (bad = requests that were not a POST with a Content-Length, or that did not parse).
 * Nothing is stored. Built by bench/run.sh: cc -O2 -o zipkin-sink bench/zipkin-sink.c
 *
 * usage: zipkin-sink PORT
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define HDR_MAX (64 * 1024)

struct conn {
    int fd;
    char *buf;       /* headers, then body (grown as needed) */
    size_t len, cap;
    size_t hdr_end;  /* offset just past "\r\n\r\n", 0 while unknown */
    size_t body_len; /* Content-Length */
    int post;
};

static uint64_t n_posts, n_spans, n_bytes, n_bad, n_conns;
static volatile sig_atomic_t stop;

static void on_signal(int s) { (void)s; stop = 1; }

static size_t count_spans(const char *p, size_t n)
{
    static const char key[] = "\"traceId\"";
    size_t c = 0;
    const char *end = p + n;
    while ((p = memmem(p, (size_t)(end - p), key, sizeof(key) - 1)) != NULL) {
        c++;
        p += sizeof(key) - 1;
    }
    return c;
}

static int send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1; /* replies are tiny: EAGAIN on a fresh socket means a dead peer */
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static void conn_close(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->buf);
    free(c);
}

/* parse_headers: method and Content-Length of the request in c->buf[0..hdr_end). */
static int parse_headers(struct conn *c)
{
    const char *h = c->buf, *end = c->buf + c->hdr_end;
    c->post = c->hdr_end > 5 && memcmp(h, "POST ", 5) == 0;
    c->body_len = 0;
    int have_len = 0;
    for (const char *line = h; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        if (nl == NULL)
            break;
        if ((size_t)(nl - line) > 15 && strncasecmp(line, "content-length:", 15) == 0) {
            c->body_len = strtoull(line + 15, NULL, 10);
            have_len = 1;
        } else if ((size_t)(nl - line) > 18 && strncasecmp(line, "transfer-encoding:", 18) == 0) {
            return -1; /* chunked bodies are not expected from Portico (POSTFIELDSIZE) */
        }
        line = nl + 1;
    }
    if (c->post && !have_len)
        return -1;
    return 0;
}

/* handle: answers every complete request in the buffer; -1 closes the connection. */
static int handle(struct conn *c)
{
    static const char accepted[] = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
    static const char bad[] =
        "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    for (;;) {
        if (c->hdr_end == 0) {
            char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
            if (e == NULL)
                return c->len > HDR_MAX ? -1 : 0;
            c->hdr_end = (size_t)(e - c->buf) + 4;
            if (parse_headers(c) != 0) {
                n_bad++;
                send_all(c->fd, bad, sizeof(bad) - 1);
                return -1;
            }
        }
        size_t need = c->hdr_end + c->body_len;
        if (c->len < need)
            return 0;
        if (c->post) {
            n_posts++;
            n_bytes += c->body_len;
            n_spans += count_spans(c->buf + c->hdr_end, c->body_len);
            if (send_all(c->fd, accepted, sizeof(accepted) - 1) != 0)
                return -1;
        } else if (memcmp(c->buf, "GET /stats", 10) == 0) {
            char body[256], reply[400];
            int bl = snprintf(body, sizeof(body),
                              "{\"posts\":%llu,\"spans\":%llu,\"bytes\":%llu,\"bad\":%llu,"
                              "\"conns\":%llu}\n",
                              (unsigned long long)n_posts, (unsigned long long)n_spans,
                              (unsigned long long)n_bytes, (unsigned long long)n_bad,
                              (unsigned long long)n_conns);
            int rl = snprintf(reply, sizeof(reply),
                              "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              "Content-Length: %d\r\nConnection: close\r\n\r\n%s", bl, body);
            send_all(c->fd, reply, (size_t)rl);
            return -1;
        } else {
            n_bad++;
            send_all(c->fd, bad, sizeof(bad) - 1);
            return -1;
        }
        memmove(c->buf, c->buf + need, c->len - need);
        c->len -= need;
        c->hdr_end = 0;
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 1024) != 0) {
        perror("zipkin-sink: bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    fprintf(stderr, "zipkin-sink: listening on 127.0.0.1:%s\n", argv[1]);
    struct epoll_event evs[64];
    while (!stop) {
        int n = epoll_wait(ep, evs, 64, 500);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    c = calloc(1, sizeof(*c));
                    c->fd = fd;
                    c->cap = 16384;
                    c->buf = malloc(c->cap);
                    n_conns++;
                    struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                }
                continue;
            }
            int dead = 0;
            for (;;) {
                if (c->cap - c->len < 4096) {
                    size_t want = c->cap * 2;
                    if (c->hdr_end && c->hdr_end + c->body_len + 1 > want)
                        want = c->hdr_end + c->body_len + 1;
                    char *nb = realloc(c->buf, want);
                    if (nb == NULL) {
                        dead = 1;
                        break;
                    }
                    c->buf = nb;
                    c->cap = want;
                }
                ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
                if (r > 0) {
                    c->len += (size_t)r;
                    if (handle(c) != 0) {
                        dead = 1;
                        break;
                    }
                    continue;
                }
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    break;
                dead = 1; /* EOF or error */
                break;
            }
            if (dead)
                conn_close(ep, c);
        }
    }
    fprintf(stderr, "zipkin-sink: posts %llu spans %llu bytes %llu bad %llu conns %llu\n",
            (unsigned long long)n_posts, (unsigned long long)n_spans,
            (unsigned long long)n_bytes, (unsigned long long)n_bad,
            (unsigned long long)n_conns);
    return 0;
}
