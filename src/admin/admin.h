/* The admin server (default port 8877): health checks, diag and metrics, on the control thread. */
#ifndef PT_ADMIN_ADMIN_H
#define PT_ADMIN_ADMIN_H

struct pt_loop;

/* pt_admin_start: listens on <port> (all addresses) on <loop>. Returns 0, or PT_IO with a
 * message logged. */
int pt_admin_start(struct pt_loop *loop, int port);

#endif
