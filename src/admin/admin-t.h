/* Types of the admin server (functions in admin/admin.h). */
#ifndef PT_ADMIN_ADMIN_T_H
#define PT_ADMIN_ADMIN_T_H

#include <stdint.h>

#define PT_ADMIN_PORT_DEFAULT 8877
#define PT_ADMIN_MAX_CONNECTIONS_DEFAULT 32
#define PT_ADMIN_TIMEOUT_MS_DEFAULT 10000

/* How the admin server listens; the command line fills it in. All-zero is not valid: start from
 * PT_ADMIN_OPTS_DEFAULT. */
struct pt_admin_opts {
    const char *bind;         /* numeric IPv4 or IPv6 address; NULL: all addresses */
    int port;
    uint32_t max_connections; /* open at once; more are closed as soon as accepted */
    uint32_t timeout_ms;      /* for the request head from accept, then between writes */
};

#define PT_ADMIN_OPTS_DEFAULT                                                                      \
    {                                                                                              \
        .bind = NULL, .port = PT_ADMIN_PORT_DEFAULT,                                               \
        .max_connections = PT_ADMIN_MAX_CONNECTIONS_DEFAULT,                                       \
        .timeout_ms = PT_ADMIN_TIMEOUT_MS_DEFAULT,                                                 \
    }

#endif
