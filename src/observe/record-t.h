/* What observe/ knows of one request: the proxy fills a record as the request goes (who asked,
 * what was routed where, status, bytes, times, and the request values the log format needs,
 * copied so they outlive the request's buffers), and the access log and tracing read it at the
 * end. Nothing in it points at a socket, a TLS object or worker internals. Types only: the
 * functions are in observe/logformat.h (access log) and observe/trace.h. */
#ifndef PT_OBSERVE_RECORD_T_H
#define PT_OBSERVE_RECORD_T_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/loop.h"

struct pt_snapshot;
struct pt_route_action;
struct pt_endpoint;

#define PT_RECORD_LOG_MAX 3072 /* request values kept for the log line and the spans */
#define PT_RECORD_HEADERS 16   /* request headers a custom log format may name */
#define PT_RECORD_ADDR_MAX 56  /* "[v6]:port" */
#define PT_RECORD_XHEADERS 8   /* request headers kept for response-side value formats */

/* Where a value kept in pt_req_record.log lies; len 0: unset. */
struct pt_str_off {
    uint16_t off, len;
};

struct pt_req_record {
    /* The connection it came on (set by the proxy when the request starts). */
    const char *peer_ip;               /* the client's address, without port */
    uint8_t peer_ip_len;
    uint16_t peer_port;
    bool tls;
    const char *sni;                   /* the TLS server name; NULL: none */

    /* What happened to it. */
    const struct pt_snapshot *snap;    /* its configuration (the log format, the log file) */
    const struct pt_route_action *action; /* the route taken; NULL: none */
    const struct pt_endpoint *endpoint;   /* the upstream chosen; NULL: none */
    uint64_t start_ms, end_ms;         /* monotonic */
    uint64_t start_realtime_ms;
    uint64_t bytes_rx, bytes_tx;       /* body bytes, without chunk framing (Envoy's) */
    int status, upstream_status;       /* 0: none */
    const char *flags;                 /* Envoy response flags; "-": none */
    uint32_t upstream_ms;              /* x-envoy-upstream-service-time; UINT32_MAX: none */
    uint8_t http_version;              /* 10, 11 or 20: HTTP/1.0, HTTP/1.1, HTTP/2 */

    /* Request values, copied: log = prefix '\0' suffix of the default line, then what a custom
     * format or the spans need (proxy/session.c keep_log_fields, observe/accesslog.c). */
    uint16_t log_len, log_mid, log_used;
    uint8_t log_nhdr;                  /* header slots kept for the format */
    struct pt_str_off lf_method, lf_path, lf_ua, lf_rid, lf_auth;
    struct pt_str_off lf_xff, lf_tfr, lf_ctype;
    struct pt_str_off lf_hdr[PT_RECORD_HEADERS];
    /* Request headers that response-side value formats read (%REQ(X)% in add_response_headers
     * and error_response_overrides), kept when the request starts: its head may be gone by
     * the time the response comes. Names point into the snapshot. */
    uint8_t nx;
    struct pt_str x_name[PT_RECORD_XHEADERS];
    struct pt_str_off x_val[PT_RECORD_XHEADERS];

    /* Looked up only when the log format asks (a system call each); "" otherwise. */
    char local_addr[PT_RECORD_ADDR_MAX];          /* "ip:port" the client connected to */
    char upstream_local_addr[PT_RECORD_ADDR_MAX]; /* the upstream connection's */
    char log[PT_RECORD_LOG_MAX];
};

/* A worker's access-log lines waiting for one write (observe/accesslog.c). */
struct pt_logsink {
    struct pt_buf buf;
    struct pt_timer timer;   /* flushes half a second after the first line */
    struct pt_loop *loop;
    int fd;                  /* the snapshot's log file, or stdout */
};

/* pt_record_protocol: the request's protocol as Envoy's %PROTOCOL% writes it. */
static inline struct pt_str pt_record_protocol(const struct pt_req_record *rec)
{
    switch (rec->http_version) {
    case 20: return PT_STR_LIT("HTTP/2");
    case 10: return PT_STR_LIT("HTTP/1.0");
    default: return PT_STR_LIT("HTTP/1.1");
    }
}

#endif
