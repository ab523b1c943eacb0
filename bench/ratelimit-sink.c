/* ratelimit-sink: the trivial gRPC rate-limit service of the ratelimit row of bench/run.sh.
 *
 * One thread, epoll, HTTP/2 over cleartext (h2c, prior knowledge) with libnghttp2. Every
 * request on /envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit is answered, once its
 * stream has ended, with a fixed RateLimitResponse{overall_code: OK}: the message bytes 08 01
 * in one gRPC frame (5-byte prefix: not compressed, length 2), headers ":status: 200",
 * "content-type: application/grpc", trailers "grpc-status: 0". The request message is not
 * decoded (its bytes are counted); any other path gets grpc-status 12 (UNIMPLEMENTED). Nothing
 * is stored. On SIGTERM or SIGINT it prints "ratelimit-sink: calls N ok N other N bytes N
 * conns N" to stderr and exits. Built by bench/run.sh: cc -O2 -o ratelimit-sink
 * bench/ratelimit-sink.c -lnghttp2
 *
 * usage: ratelimit-sink PORT
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RLS_PATH "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"

struct conn {
    int fd;
    nghttp2_session *h2;
    char *out;       /* bytes nghttp2 produced that the socket did not take yet */
    size_t out_len, out_cap;
    int want_out;    /* EPOLLOUT registered */
};

/* One per open stream: whether its path is ShouldRateLimit, and what is left to send. */
struct stream {
    int rls;
    int sent;        /* the gRPC frame has been handed to nghttp2 */
};

static uint64_t n_calls, n_ok, n_other, n_bytes, n_conns;
static volatile sig_atomic_t stop;
static int ep;

/* The gRPC frame of RateLimitResponse{overall_code: OK (1)}: field 1 varint 1 = 08 01. */
static const uint8_t ok_frame[] = {0, 0, 0, 0, 2, 0x08, 0x01};

static void on_signal(int s) { (void)s; stop = 1; }

static nghttp2_nv nv(const char *name, const char *value)
{
    nghttp2_nv v = {(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                    NGHTTP2_NV_FLAG_NONE};
    return v;
}

/* read_ok_frame: the data source of an answer: the 7 bytes of ok_frame, then EOF without
 * END_STREAM (the trailers end the stream). */
static ssize_t read_ok_frame(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
                             uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)src;
    (void)user;
    struct stream *st = nghttp2_session_get_stream_user_data(h2, id);
    if (st == NULL || len < sizeof(ok_frame))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    memcpy(buf, ok_frame, sizeof(ok_frame));
    st->sent = 1;
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    nghttp2_nv trailer = nv("grpc-status", "0");
    if (nghttp2_submit_trailer(h2, id, &trailer, 1) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return (ssize_t)sizeof(ok_frame);
}

/* answer: the response of stream <id>, whose request has ended. */
static int answer(nghttp2_session *h2, int32_t id, struct stream *st)
{
    n_calls++;
    if (!st->rls) {
        n_other++;
        nghttp2_nv hdrs[] = {nv(":status", "200"), nv("content-type", "application/grpc"),
                             nv("grpc-status", "12")};
        return nghttp2_submit_response(h2, id, hdrs, 3, NULL);
    }
    n_ok++;
    nghttp2_nv hdrs[] = {nv(":status", "200"), nv("content-type", "application/grpc")};
    nghttp2_data_provider dp = {.source.ptr = NULL, .read_callback = read_ok_frame};
    return nghttp2_submit_response(h2, id, hdrs, 2, &dp);
}

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
    (void)user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct stream *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(h2, f->hd.stream_id, st);
    return 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags;
    (void)user;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct stream *st = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
    if (st != NULL && namelen == 5 && memcmp(name, ":path", 5) == 0)
        st->rls = valuelen == sizeof(RLS_PATH) - 1 && memcmp(value, RLS_PATH, valuelen) == 0;
    return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)h2;
    (void)flags;
    (void)id;
    (void)data;
    (void)user;
    n_bytes += len;
    return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
    (void)user;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct stream *st = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
    if (st == NULL)
        return 0;
    return answer(h2, f->hd.stream_id, st) == 0 ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_stream_close(nghttp2_session *h2, int32_t id, uint32_t code, void *user)
{
    (void)code;
    (void)user;
    free(nghttp2_session_get_stream_user_data(h2, id));
    nghttp2_session_set_stream_user_data(h2, id, NULL);
    return 0;
}

static void conn_close(struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    nghttp2_session_del(c->h2); /* frees what on_stream_close did not */
    free(c->out);
    free(c);
}

/* flush: sends what nghttp2 has to send; what the socket does not take waits in c->out (and
 * EPOLLOUT is asked for). -1 on a dead connection. */
static int flush(struct conn *c)
{
    for (;;) {
        while (c->out_len > 0) {
            ssize_t w = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN)
                    return -1;
                if (!c->want_out) {
                    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
                    c->want_out = 1;
                }
                return 0;
            }
            memmove(c->out, c->out + w, c->out_len - (size_t)w);
            c->out_len -= (size_t)w;
        }
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->h2, &data);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        if (c->out_cap - c->out_len < (size_t)n) {
            size_t want = c->out_len + (size_t)n + 16384;
            char *nb = realloc(c->out, want);
            if (nb == NULL)
                return -1;
            c->out = nb;
            c->out_cap = want;
        }
        memcpy(c->out + c->out_len, data, (size_t)n);
        c->out_len += (size_t)n;
    }
    if (c->want_out) {
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
        c->want_out = 0;
    }
    if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))
        return -1;
    return 0;
}

static nghttp2_session_callbacks *callbacks(void)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return NULL;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    return cb;
}

static struct conn *conn_new(int fd, nghttp2_session_callbacks *cb)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->fd = fd;
    if (nghttp2_session_server_new(&c->h2, cb, c) != 0) {
        free(c);
        return NULL;
    }
    nghttp2_settings_entry s[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 10000},
                                  {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, s, 2);
    /* the connection window too, so that no WINDOW_UPDATE round trips slow the client */
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, 1 << 24);
    return c;
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
    nghttp2_session_callbacks *cb = callbacks();
    if (cb == NULL)
        return 1;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 1024) != 0) {
        perror("ratelimit-sink: bind/listen");
        return 1;
    }
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    fprintf(stderr, "ratelimit-sink: listening on 127.0.0.1:%s\n", argv[1]);
    struct epoll_event evs[64];
    static uint8_t buf[65536];
    while (!stop) {
        int n = epoll_wait(ep, evs, 64, 500);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    c = conn_new(fd, cb);
                    if (c == NULL) {
                        close(fd);
                        continue;
                    }
                    n_conns++;
                    struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                    if (flush(c) != 0)
                        conn_close(c);
                }
                continue;
            }
            int dead = 0;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                for (;;) {
                    ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
                    if (r > 0) {
                        if (nghttp2_session_mem_recv(c->h2, buf, (size_t)r) < 0) {
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
            }
            if (dead || flush(c) != 0)
                conn_close(c);
        }
    }
    fprintf(stderr, "ratelimit-sink: calls %llu ok %llu other %llu bytes %llu conns %llu\n",
            (unsigned long long)n_calls, (unsigned long long)n_ok,
            (unsigned long long)n_other, (unsigned long long)n_bytes,
            (unsigned long long)n_conns);
    nghttp2_session_callbacks_del(cb);
    return 0;
}
