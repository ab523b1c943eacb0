/* Every socket call of the data plane, in one narrow layer: accept, connect, read, write,
 * peek, shut down, close, on connections that may be TLS, so that the HTTP code never asks
 * which it has and never calls the kernel itself. Readiness comes from the worker's loop
 * (core/loop.h) through each connection's callback. A completion-based backend (io_uring) would
 * replace these functions and that notification, not the protocol code above them. Used by
 * proxy/conn.c, proxy/upstream.c and proxy/worker.c. */
#ifndef PT_PROXY_SOCKIO_H
#define PT_PROXY_SOCKIO_H

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/common.h"

/* pt_sock_read: reads up to <n> bytes. Returns the count (> 0), 0 at end of stream, PT_AGAIN,
 * or PT_IO. <*drained> tells whether the socket is known to be empty now (edge-triggered
 * epoll: a plain short read drains it, unless <peer_closed>: once the peer's FIN was reported
 * (EPOLLRDHUP), the edge that announced the last bytes also announced the end, and no later
 * event will come for it, so only a read of 0 or EAGAIN drains. TLS may hold more records, so
 * there only EAGAIN does). In the usual case (no FIN) this costs no extra read. */
static inline int pt_sock_read(int fd, SSL *ssl, char *buf, size_t n, bool peer_closed, bool *drained)
{
    if (ssl == NULL) {
        ssize_t r = read(fd, buf, n);
        if (r > 0) {
            *drained = (size_t)r < n && !peer_closed;
            return (int)r;
        }
        *drained = true;
        if (r == 0)
            return 0;
        return errno == EAGAIN ? PT_AGAIN : PT_IO;
    }
    ERR_clear_error();
    int r = SSL_read(ssl, buf, (int)(n > INT32_MAX ? INT32_MAX : n));
    if (r > 0) {
        *drained = false;
        return r;
    }
    *drained = true;
    switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return PT_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        return PT_IO;
    }
}

/* pt_sock_writev: writes <iov>. Returns the bytes written (possibly fewer than asked; 0 when
 * nothing could be written now) or PT_IO. TLS gathers the pieces in <scratch> first so they
 * leave in one record; a retry after a short TLS write must start with the unwritten bytes,
 * which is what the callers' pending buffers hold. */
static inline ssize_t pt_sock_writev(int fd, SSL *ssl, const struct iovec *iov, int iovcnt, char *scratch,
                                     size_t cap)
{
    if (ssl == NULL) {
        ssize_t r = writev(fd, iov, iovcnt);
        if (r < 0)
            return errno == EAGAIN ? 0 : PT_IO;
        return r;
    }
    const char *p = iov[0].iov_base;
    size_t len = iov[0].iov_len;
    if (iovcnt > 1) {
        len = 0;
        for (int i = 0; i < iovcnt; i++) {
            size_t k = iov[i].iov_len;
            if (len + k > cap)
                k = cap - len;
            if (k == 0)
                continue; /* an empty piece may have no base at all */
            memmove(scratch + len, iov[i].iov_base, k);
            len += k;
            if (len == cap)
                break;
        }
        p = scratch;
    }
    if (len == 0)
        return 0;
    ERR_clear_error();
    int r = SSL_write(ssl, p, (int)(len > INT32_MAX ? INT32_MAX : len));
    if (r > 0)
        return r;
    switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0;
    default:
        return PT_IO;
    }
}

/* pt_fd_local_addr: "ip:port" of the address <fd> is bound to, into <out>
 * (PT_SOCKADDR_STR_MAX bytes); "" when it cannot be known. One getsockname(). */
static inline void pt_fd_local_addr(int fd, char *out)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);

    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        sa.ss_family = AF_UNSPEC;
    pt_sockaddr_format(&sa, out);
}

/* pt_sock_accept: the next connection waiting on listening socket <lfd> (non-blocking,
 * close-on-exec), its peer in <peer>. Returns the fd, or -1 with errno (EAGAIN when none). */
static inline int pt_sock_accept(int lfd, struct sockaddr_storage *peer)
{
    socklen_t plen = sizeof(*peer);
    return accept4(lfd, (struct sockaddr *)peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

/* pt_sock_connect: a non-blocking TCP connection to <addr> (Nagle off). Returns the fd (with
 * *<done> true when it connected at once, false when it is in progress or failed: the failure
 * is then reported by pt_sock_connect_error once the loop says the socket is writable), or -1
 * when no socket could be made. */
static inline int pt_sock_connect(const struct sockaddr_storage *addr, socklen_t len, bool *done)
{
    int one = 1, fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    *done = false;
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)addr, len) == 0)
        *done = true;
    return fd;
}

/* pt_sock_keepalive: turns TCP keepalive on for <fd> (SO_KEEPALIVE), with <probes> unanswered
 * probes before the connection is dropped (TCP_KEEPCNT), <idle_s> seconds of silence before
 * the first (TCP_KEEPIDLE) and <interval_s> between them (TCP_KEEPINTVL); a 0 leaves the
 * kernel's value. Returns 0, or -1 with errno when an option is refused. */
static inline int pt_sock_keepalive(int fd, int probes, int idle_s, int interval_s)
{
    int one = 1;

    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) != 0 ||
        (probes > 0 && setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof(probes)) != 0) ||
        (idle_s > 0 && setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof(idle_s)) != 0) ||
        (interval_s > 0 && setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof(interval_s)) != 0))
        return -1;
    return 0;
}

/* pt_sock_connect_error: the error of a connect that was in progress (0: connected). */
static inline int pt_sock_connect_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    return err;
}

/* pt_sock_peek_byte: the first byte waiting on <fd> without taking it. Returns 1, 0 at end
 * of stream, PT_AGAIN or PT_IO. */
static inline int pt_sock_peek_byte(int fd, unsigned char *b)
{
    ssize_t n = recv(fd, b, 1, MSG_PEEK);
    if (n >= 0)
        return (int)n;
    return errno == EAGAIN ? PT_AGAIN : PT_IO;
}

/* pt_sock_shutdown_write: ends our side of the stream (TLS close_notify first), keeping the
 * reading side open. */
static inline void pt_sock_shutdown_write(int fd, SSL *ssl)
{
    if (ssl != NULL)
        SSL_shutdown(ssl);
    shutdown(fd, SHUT_WR);
}

/* pt_sock_unacked: how many bytes written to <fd> the peer has not acknowledged (0 on error). */
static inline uint32_t pt_sock_unacked(int fd)
{
    int n = 0;

    return ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0 ? (uint32_t)n : 0;
}

/* pt_sock_reset: makes the close of <fd> an abort: a TCP reset goes out and the kernel drops the
 * bytes still queued for the peer instead of keeping them (and their memory) until a peer that
 * does not read has taken them (nginx's reset_timedout_connection). */
static inline void pt_sock_reset(int fd)
{
    struct linger abort_now = { .l_onoff = 1, .l_linger = 0 };

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof(abort_now));
}

/* pt_sock_close: closes <fd> and frees <ssl> (which may be NULL); <notify>: send TLS
 * close_notify first. */
static inline void pt_sock_close(int fd, SSL *ssl, bool notify)
{
    if (ssl != NULL) {
        if (notify)
            SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    close(fd);
}

#endif
