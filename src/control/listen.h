/* Listening sockets, shared between snapshots: for each port, one SO_REUSEPORT socket per
 * worker, so workers never contend on accept. The control thread binds them when it applies a
 * compiled snapshot (control/apply.c); they close when the last snapshot that uses them is
 * freed. The type, which workers read, is in model/snapshot-t.h. */
#ifndef PT_CONTROL_LISTEN_H
#define PT_CONTROL_LISTEN_H

#include <stdbool.h>
#include <stddef.h>

#include "model/snapshot-t.h"

/* pt_listen_sock_get: the sockets for <port> (a new reference), creating <nworkers> of them
 * bound to all addresses when needed. NULL with a message in <err> when the port cannot be
 * bound. */
struct pt_listen_sock *pt_listen_sock_get(int port, int nworkers, char *err, size_t errlen);

/* pt_listen_sock_release: drops a reference; the last one closes the sockets. Any thread. */
void pt_listen_sock_release(struct pt_listen_sock *ls);

#define PT_LISTEN_INHERIT_MAX 250 /* sockets handed over at a hot restart (SCM_MAX_FD is 253) */

/* pt_listen_inherit: a listening socket for <port> handed over by the process this one
 * replaces; pt_listen_sock_get uses it before creating new ones. */
void pt_listen_inherit(int port, int fd);

/* pt_listen_inherit_done: closes inherited sockets no Listener took (after the first compile). */
void pt_listen_inherit_done(void);

/* pt_listen_export: every listening socket (<ports>[i], <fds>[i]), at most <max>, to hand over
 * to a successor. Returns the count. */
size_t pt_listen_export(int *ports, int *fds, size_t max);

/* pt_listen_shutdown_all: stops every listening socket from taking connections (draining);
 * connections the kernel queued but nobody accepted are reset rather than left hanging. */
void pt_listen_shutdown_all(void);

/* pt_listen_set_bind: the address listeners bind to (default "::" with IPv4 mapped, falling
 * back to 0.0.0.0). */
void pt_listen_set_bind(const char *addr);

#endif
