/* The registry of listening sockets (see listen.h). A lock guards the registry because the
 * last reference may be dropped by a worker freeing an old snapshot; nothing here runs per
 * request. */
#include "control/listen.h"
#include "core/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PT_LISTEN_BACKLOG 4096

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct pt_listen_sock *socks[256];
static size_t nsocks;

/* Sockets handed over by the process this one replaces (hot restart), until a Listener takes
 * them. */
static struct {
    int port, fd;
} inherited[PT_LISTEN_INHERIT_MAX];
static size_t ninherited;
static char bind_addr[64] = "";

void pt_listen_set_bind(const char *addr)
{
    snprintf(bind_addr, sizeof(bind_addr), "%s", addr);
}

static int open_one(int port, char *err, size_t errlen)
{
    struct sockaddr_storage ss = { 0 };
    socklen_t len;
    int one = 1, zero = 0, fd, family = AF_INET6;
    const char *addr = bind_addr[0] ? bind_addr : "::";

    if (strchr(addr, ':') == NULL)
        family = AF_INET;
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && family == AF_INET6 && bind_addr[0] == '\0') {
        family = AF_INET;
        addr = "0.0.0.0";
        fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, addr, &s6->sin6_addr);
        len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, addr, &s4->sin_addr);
        len = sizeof(*s4);
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, PT_LISTEN_BACKLOG) != 0) {
        snprintf(err, errlen, "cannot listen on %s port %d: %s", addr, port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Whether <port> is already bound by someone else (a bind without SO_REUSEPORT fails). */
static bool port_taken(int port, char *err, size_t errlen)
{
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = in6addr_any };
    struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int zero = 0, one = 1, fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

    if (fd >= 0) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        r = bind(fd, (struct sockaddr *)&a6, sizeof(a6));
    } else {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        r = fd >= 0 ? bind(fd, (struct sockaddr *)&a4, sizeof(a4)) : -1;
    }
    if (fd >= 0)
        close(fd);
    if (r != 0 && errno == EADDRINUSE) {
        snprintf(err, errlen, "cannot listen on port %d: it is in use by another process", port);
        return true;
    }
    return false;
}

void pt_listen_inherit(int port, int fd)
{
    pthread_mutex_lock(&lock);
    if (ninherited < PT_LISTEN_INHERIT_MAX) {
        inherited[ninherited].port = port;
        inherited[ninherited++].fd = fd;
    } else {
        close(fd);
    }
    pthread_mutex_unlock(&lock);
}

void pt_listen_inherit_done(void)
{
    pthread_mutex_lock(&lock);
    while (ninherited > 0)
        close(inherited[--ninherited].fd); /* ports the new configuration does not listen on */
    pthread_mutex_unlock(&lock);
}

size_t pt_listen_export(int *ports, int *fds, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < nsocks; i++)
        for (int k = 0; k < socks[i]->nfds && n < max; k++, n++) {
            ports[n] = socks[i]->port;
            fds[n] = socks[i]->fds[k];
        }
    pthread_mutex_unlock(&lock);
    return n;
}

struct pt_listen_sock *pt_listen_sock_get(int port, int nworkers, char *err, size_t errlen)
{
    struct pt_listen_sock *ls = NULL;

    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < nsocks; i++) {
        if (socks[i]->port == port) {
            ls = socks[i];
            ls->refcnt++;
            goto out;
        }
    }
    if (nsocks == PT_ARRAY_SIZE(socks)) {
        snprintf(err, errlen, "too many listening ports");
        goto out;
    }
    ls = calloc(1, sizeof(*ls) + sizeof(int) * (size_t)(nworkers > PT_LISTEN_INHERIT_MAX ? nworkers : PT_LISTEN_INHERIT_MAX));
    if (ls == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    ls->port = port;
    ls->refcnt = 1;
    /* Sockets the previous process listened on for this port come first: their queues hold
     * connections it has not accepted. Without any, the port must be free: SO_REUSEPORT would
     * otherwise let us silently share it with an unrelated process. */
    for (size_t i = 0; i < ninherited;) {
        if (inherited[i].port == port && ls->nfds < PT_LISTEN_INHERIT_MAX) {
            ls->fds[ls->nfds++] = inherited[i].fd;
            inherited[i] = inherited[--ninherited];
        } else {
            i++;
        }
    }
    if (ls->nfds == 0 && port_taken(port, err, errlen)) {
        free(ls);
        ls = NULL;
        goto out;
    }
    for (; ls->nfds < nworkers; ls->nfds++) {
        int fd = open_one(port, err, errlen);
        if (fd < 0) {
            while (ls->nfds > 0)
                close(ls->fds[--ls->nfds]);
            free(ls);
            ls = NULL;
            goto out;
        }
        ls->fds[ls->nfds] = fd;
    }
    socks[nsocks++] = ls;
out:
    pthread_mutex_unlock(&lock);
    return ls;
}

void pt_listen_sock_release(struct pt_listen_sock *ls)
{
    pthread_mutex_lock(&lock);
    if (--ls->refcnt == 0) {
        for (size_t i = 0; i < nsocks; i++) {
            if (socks[i] == ls) {
                socks[i] = socks[--nsocks];
                break;
            }
        }
        for (int i = 0; i < ls->nfds; i++)
            close(ls->fds[i]);
        free(ls);
    }
    pthread_mutex_unlock(&lock);
}

void pt_listen_shutdown_all(void)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < nsocks; i++)
        for (int k = 0; k < socks[i]->nfds; k++)
            shutdown(socks[i]->fds[k], SHUT_RDWR);
    pthread_mutex_unlock(&lock);
}
