/* Hot restart: a new portico takes over the listening sockets of the running one with the same
 * AMBASSADOR_ENVOY_BASE_ID, so an upgrade loses no connection. Each process owns the abstract
 * Unix socket "portico-hot-restart-<base id>" (abstract names vanish with the process and are
 * per network namespace, like Envoy's hot-restart sockets). The protocol on that socket:
 *   new -> old  'T'                     hand over your listening sockets
 *   old -> new  [n ports] + n fds       (SCM_RIGHTS); the old process frees the name
 *   new -> old  'D'                     I serve now: drain and exit
 * The old process drains as on SIGTERM, except that it leaves the sockets open: they are the
 * new process's now. Different base ids never meet. Control thread only (main.c). */
#include "control/hotrestart.h"
#include "core/log.h"
#include "core/loop.h"
#include "control/listen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <fcntl.h>
#include <stddef.h>
#include <unistd.h>

static struct {
    struct pt_loop *loop;
    struct pt_io listen_io;   /* our name, for a successor to find us */
    struct pt_io peer_io;     /* the successor's connection */
    int predecessor;          /* our connection to the process we replace, or -1 */
    char name[108];
    socklen_t namelen;
    void (*on_drain)(void);
} hr = { .listen_io.fd = -1, .peer_io.fd = -1, .predecessor = -1 };

static void make_name(const char *base_id)
{
    struct sockaddr_un a;
    int n = snprintf(hr.name + 1, sizeof(a.sun_path) - 1, "portico-hot-restart-%s", base_id);
    hr.name[0] = '\0'; /* abstract namespace */
    hr.namelen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static int unix_socket(struct sockaddr_un *a)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    memcpy(a->sun_path, hr.name, (size_t)hr.namelen - offsetof(struct sockaddr_un, sun_path));
    return socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
}

/* The old side: the successor says 'D'. */
static void on_peer(struct pt_io *io, uint32_t events)
{
    char c;
    ssize_t n = read(io->fd, &c, 1);

    if (n < 0 && errno == EAGAIN)
        return;
    pt_loop_del(hr.loop, io);
    close(io->fd);
    io->fd = -1;
    if (n == 1 && c == 'D') {
        pt_info("hot restart: the new process serves; draining");
        hr.on_drain();
    } else {
        pt_warn("hot restart: the new process went away before taking over; still serving");
    }
}

/* The old side: hands every listening socket over, then frees the name for the successor. */
static void send_sockets(int fd)
{
    int ports[PT_LISTEN_INHERIT_MAX], fds[PT_LISTEN_INHERIT_MAX];
    size_t n = pt_listen_export(ports, fds, PT_LISTEN_INHERIT_MAX);
    uint32_t count = (uint32_t)n;
    char control[CMSG_SPACE(sizeof(int) * PT_LISTEN_INHERIT_MAX)];
    struct iovec iov[2] = { { &count, sizeof(count) }, { ports, sizeof(int) * n } };
    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = n ? 2 : 1 };

    if (n > 0) {
        struct cmsghdr *cm;
        memset(control, 0, sizeof(control));
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
    }
    if (sendmsg(fd, &msg, MSG_NOSIGNAL) < 0) {
        pt_warn("hot restart: cannot hand over sockets: %s", strerror(errno));
        return;
    }
    pt_info("hot restart: handed %zu listening sockets to a new process", n);
    pt_loop_del(hr.loop, &hr.listen_io);
    close(hr.listen_io.fd);
    hr.listen_io.fd = -1;
}

static void on_accept(struct pt_io *io, uint32_t events)
{
    int fd = accept4(io->fd, NULL, NULL, SOCK_CLOEXEC);
    char c;

    if (fd < 0)
        return;
    /* The request is one byte sent right after connecting: wait for it briefly. */
    struct timeval tv = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (hr.peer_io.fd >= 0 || read(fd, &c, 1) != 1 || c != 'T') {
        close(fd);
        return;
    }
    send_sockets(fd);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    hr.peer_io.fd = fd;
    hr.peer_io.cb = on_peer;
    if (pt_loop_add(hr.loop, &hr.peer_io, EPOLLIN | EPOLLRDHUP) != 0) {
        close(fd);
        hr.peer_io.fd = -1;
    }
}

/* Takes the name, so a successor can find this process. */
static int bind_name(void)
{
    struct sockaddr_un a;
    int fd = unix_socket(&a);

    if (fd < 0)
        return PT_IO;
    /* The predecessor frees the name right after handing its sockets over: retry briefly. */
    for (int tries = 0; bind(fd, (struct sockaddr *)&a, hr.namelen) != 0; tries++) {
        if (errno != EADDRINUSE || tries == 200) {
            pt_warn("hot restart: cannot take the name %s: %s (another portico with this base id?)",
                    hr.name + 1, strerror(errno));
            close(fd);
            return PT_IO;
        }
        usleep(10000);
    }
    if (listen(fd, 4) != 0) {
        close(fd);
        return PT_IO;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    hr.listen_io.fd = fd;
    hr.listen_io.cb = on_accept;
    return pt_loop_add(hr.loop, &hr.listen_io, EPOLLIN);
}

/* The new side: asks a running process with our base id for its sockets. */
static void take_over(void)
{
    struct sockaddr_un a;
    int fd = unix_socket(&a), ports[PT_LISTEN_INHERIT_MAX], fds[PT_LISTEN_INHERIT_MAX];
    char control[CMSG_SPACE(sizeof(int) * PT_LISTEN_INHERIT_MAX)];
    uint32_t count = 0;
    struct iovec iov[2] = { { &count, sizeof(count) }, { ports, sizeof(ports) } };
    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2, .msg_control = control,
                          .msg_controllen = sizeof(control) };
    struct timeval tv = { 5, 0 };
    size_t nfds = 0;
    ssize_t n;

    if (fd < 0)
        return;
    if (connect(fd, (struct sockaddr *)&a, hr.namelen) != 0) {
        close(fd); /* nobody to replace */
        return;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (write(fd, "T", 1) != 1 || (n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC)) < (ssize_t)sizeof(count)) {
        pt_warn("hot restart: the running process did not hand its sockets over");
        close(fd);
        return;
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(fds, CMSG_DATA(cm), nfds * sizeof(int));
        }
    for (size_t i = 0; i < nfds; i++) {
        if (i < count && (size_t)n >= sizeof(count) + (i + 1) * sizeof(int)) {
            fcntl(fds[i], F_SETFL, O_NONBLOCK);
            pt_listen_inherit(ports[i], fds[i]);
        } else {
            close(fds[i]);
        }
    }
    pt_info("hot restart: took over %zu listening sockets", nfds);
    hr.predecessor = fd;
}

int pt_hotrestart_start(struct pt_loop *loop, const char *base_id, void (*on_drain)(void))
{
    hr.loop = loop;
    hr.on_drain = on_drain;
    make_name(base_id && base_id[0] ? base_id : "0");
    take_over();
    if (hr.predecessor < 0)
        return bind_name();
    return 0;
}

void pt_hotrestart_ready(void)
{
    pt_listen_inherit_done();
    if (hr.predecessor < 0)
        return;
    if (write(hr.predecessor, "D", 1) != 1)
        pt_warn("hot restart: cannot tell the previous process to drain");
    close(hr.predecessor);
    hr.predecessor = -1;
    bind_name();
}

bool pt_hotrestart_handed_over(void)
{
    return hr.listen_io.fd < 0 && hr.peer_io.fd >= 0;
}
