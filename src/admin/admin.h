/* The admin server (default port 8877): health checks, diag and metrics, on the control thread. */
#ifndef PT_ADMIN_ADMIN_H
#define PT_ADMIN_ADMIN_H

#include <stdbool.h>

#include "admin/admin-t.h"

struct pt_loop;

/* pt_admin_bind_valid: whether <addr> is a numeric IPv4 or IPv6 address that --admin-bind
 * accepts (no brackets, no port, no host name). */
bool pt_admin_bind_valid(const char *addr);

/* pt_admin_start: listens as <opts> says (copied) on <loop>, the control thread's. Returns 0, or
 * PT_IO with a message logged. */
int pt_admin_start(struct pt_loop *loop, const struct pt_admin_opts *opts);

#endif
