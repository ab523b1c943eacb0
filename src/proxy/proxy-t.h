/* Types of the data plane: the worker, the downstream HTTP/1 session, the upstream connection
 * and its per-worker pool. Types only (see proxy/proxy.h). */
#ifndef PT_PROXY_PROXY_T_H
#define PT_PROXY_PROXY_T_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/loop.h"
#include "cluster/lb-t.h"
#include "model/snapshot-t.h"
#include "http/h1-t.h"
#include "observe/trace-t.h"
#include "observe/stats-t.h"

#define PT_MAX_HEADERS_DEFAULT 100
#define PT_MAX_HEAD_BYTES_DEFAULT (60 * 1024)
#define PT_LINGER_MS 2000 /* reading what a client still sends after our last response */

/* Limits and timeouts that every listener uses; each has a command-line/env knob. */
struct pt_proxy_limits {
    uint32_t max_head_bytes;      /* request line + headers */
    uint32_t max_headers;
    uint32_t header_timeout_ms;   /* a request head must arrive within this */
    uint32_t idle_timeout_ms;     /* downstream keep-alive idle (Module listener_idle_timeout_ms
                                   * wins) */
    uint32_t stream_idle_timeout_ms; /* a request with nothing moving (Envoy's stream idle
                                      * timeout; a Mapping's idle_timeout_ms wins); 0: none */
    uint32_t upstream_idle_ms;    /* pooled upstream connection idle */
    uint32_t max_idle_per_endpoint;
    uint32_t max_connections;     /* per worker */
};

struct pt_worker;
struct pt_downstream;

/* Downstream session states. */
enum pt_ds_state {
    PT_DS_HEAD = 0,   /* waiting for (more of) a request head */
    PT_DS_TLS_DETECT, /* HTTPS listener: TLS or cleartext? (first byte) */
    PT_DS_HANDSHAKE,  /* TLS handshake in progress */
    PT_DS_CONNECT,    /* head parsed, upstream connecting */
    PT_DS_FORWARD,    /* request being sent and/or response being received */
    PT_DS_CLOSING,    /* flushing the last bytes, then close */
};

/* Downstream flags, one bit each. */
#define PT_DSF_REQ_DONE      0x0001 /* the whole request (head + body) was read */
#define PT_DSF_REQ_SENT      0x0002 /* ...and written upstream */
#define PT_DSF_RESP_HEAD     0x0004 /* response head sent to the client */
#define PT_DSF_RESP_DONE     0x0008 /* the whole response was received */
#define PT_DSF_CLOSE_AFTER   0x0010 /* close once this response is out */
#define PT_DSF_RD_PENDING    0x0020 /* the socket may have unread bytes (edge-triggered) */
#define PT_DSF_WR_BLOCKED    0x0040 /* a write hit EAGAIN; waiting for EPOLLOUT */
#define PT_DSF_PEER_CLOSED   0x0080 /* the client's FIN was reported (EPOLLRDHUP): read to the end */
#define PT_DSF_HEAD_METHOD   0x0100 /* request method is HEAD */
#define PT_DSF_TLS           0x0200 /* the connection is TLS (TLS issue) */
#define PT_DSF_DEAD          0x0400 /* closed, waiting to be freed after this iteration */
#define PT_DSF_CONTINUE_SENT 0x0800 /* we answered Expect: 100-continue */
#define PT_DSF_REUSED_UP     0x1000 /* the upstream connection came from the pool */
#define PT_DSF_UP_KEEPALIVE  0x2000 /* the upstream response allows reusing its connection */
#define PT_DSF_IN_PROCESS    0x4000 /* ds_process is on the stack (no re-entry) */
#define PT_DSF_SECURE        0x8000 /* the request counts as secure (TLS, or XFP https) */
#define PT_DSF_HEAD_TIMER   0x10000 /* the header timeout runs for the head being received */
#define PT_DSF_UP_ACTIVE    0x20000 /* counted in the cluster's upstream_rq_active */
#define PT_DSF_UPGRADE      0x40000 /* an Upgrade the route allows was forwarded */
#define PT_DSF_TUNNEL       0x80000 /* upgraded (101): bytes flow both ways until a side closes */

/* How a message body is delimited. */
enum pt_body_kind {
    PT_BODY_NONE = 0,
    PT_BODY_LENGTH,
    PT_BODY_CHUNKED,       /* forwarded with its framing (responses) */
    PT_BODY_RECHUNK,       /* decoded and framed again by Portico (requests) */
    PT_BODY_DECHUNK,       /* chunked upstream, raw to an HTTP/1.0 client (close-delimited) */
    PT_BODY_UNTIL_CLOSE,
};

struct pt_body {
    enum pt_body_kind kind;
    uint64_t remaining;          /* PT_BODY_LENGTH */
    struct pt_h1_chunked chunk;  /* PT_BODY_CHUNKED, PT_BODY_RECHUNK, PT_BODY_DECHUNK */
    uint64_t payload;            /* body bytes taken so far, without chunk framing: what
                                  * Envoy's BYTES_RECEIVED / BYTES_SENT count */
};

/* Upstream connection states. */
enum pt_up_state { PT_UP_CONNECTING = 0, PT_UP_HANDSHAKE, PT_UP_BUSY, PT_UP_IDLE };

struct pt_pool_entry;

struct pt_upstream {
    struct pt_io io;
    struct pt_worker *w;
    SSL *ssl;                       /* NULL: plaintext */
    enum pt_up_state state;
    struct pt_pool_entry *pool;     /* the endpoint's pool */
    struct pt_upstream *idle_next, *idle_prev;
    struct pt_downstream *ds;       /* owner while busy */
    struct pt_buf in;               /* response bytes */
    struct pt_buf out;              /* request bytes not yet written */
    struct pt_timer timer;          /* connect timeout, or idle timeout when pooled */
    bool rd_pending, wr_blocked, dead, eof;
    bool peer_closed;               /* the backend's FIN was reported (EPOLLRDHUP): read to the
                                     * end, and never pool the connection */
    uint32_t cst_idx;               /* stats: the cluster it was opened for */
    uint64_t connect_start_ms;
    uint32_t requests;              /* served on this connection */
};

/* Per-endpoint pool of idle upstream connections, in a per-worker open hash. */
struct pt_pool_entry {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    SSL_CTX *tls;                   /* origination context (part of the key); NULL: plaintext */
    struct pt_upstream idle_head;   /* circular list of idle connections (sentinel) */
    uint32_t nidle;
};

struct pt_downstream {
    struct pt_io io;
    struct pt_worker *w;
    SSL *ssl;                       /* NULL: cleartext */
    struct pt_snapshot *snap;       /* the snapshot this request runs on */
    struct pt_listener *listener;
    enum pt_ds_state state;
    uint32_t flags;
    struct pt_buf in;               /* bytes from the client */
    struct pt_buf out;              /* bytes for the client not yet written */
    struct pt_timer timer;          /* header/idle timeout or route timeout */
    struct pt_timer idle_timer;     /* the request's idle timeout (idle_ms) while it is forwarded */
    uint32_t idle_ms;               /* Mapping idle_timeout_ms, else the stream idle timeout, or
                                     * the tunnel's; 0: none */
    struct pt_upstream *up;
    struct pt_downstream *dead_next;
    char peer_ip[48];
    uint16_t log_peer_port;         /* access log: the client's port, 0 until looked up */
    char log_local_addr[56];        /* access log: "ip:port" it connected to, "" until looked up */
    uint16_t log_len, log_mid;      /* access-log pieces kept from the head (zeroed at accept) */
    int port;                       /* the listener port it arrived on */
    uint32_t lst_idx, http_idx;     /* stats: listener address and HTTP prefix */
    uint64_t accepted_ms;
    int64_t head_scanned;           /* parser resume point */
    struct pt_lb_pick lb_pick;      /* the endpoint pick to release when the request ends
                                     * (zeroed at accept; pt_lb_release zeroes it) */

    /* The request in progress. */
    struct pt_h1_request req;
    struct pt_header hdrs[PT_MAX_HEADERS_DEFAULT];
    const struct pt_route *route;   /* the matched route (NULL before, or a local reply) */
    const struct pt_route_action *action;
    const struct pt_endpoint *endpoint;
    struct pt_body req_body, resp_body;
    uint64_t start_ms, upstream_start_ms;
    uint64_t start_realtime_ms;
    uint64_t bytes_rx, bytes_tx;
    int status, upstream_status;
    const char *flags_str;          /* Envoy response flags, "-" when none */
    uint32_t upstream_ms;           /* x-envoy-upstream-service-time */
    uint16_t log_used;              /* end of everything kept in log[] */
    uint8_t log_nhdr;               /* header slots kept for the snapshot's log format */
    struct pt_str_off {             /* where request fields sit in log[] (for tracing) */
        uint16_t off, len;
    } lf_method, lf_path, lf_ua, lf_rid, lf_auth;
    struct pt_str_off lf_xff, lf_tfr, lf_ctype; /* for custom log formats; len 0: unset */
    struct pt_str_off lf_hdr[16];   /* the format's header slots (observe/logformat.h) */
    char log[3072];
    const struct pt_trace_config *trace_cfg; /* set while a trace context is active */
    struct pt_trace_ctx trace;
};

struct pt_worker {
    int id;
    pthread_t thread;
    struct pt_loop *loop;
    struct pt_snapshot *snap;       /* the snapshot new requests use */
    struct pt_snapshot **retiring;  /* older snapshots with requests still in flight */
    uint32_t nretiring, retiring_cap;
    struct pt_io *listen_ios;       /* one per listener of snap */
    uint32_t nlisten;
    struct pt_buf_pool bufs;
    struct pt_downstream *free_ds, *dead_ds;
    struct pt_upstream *free_up, *dead_up;
    struct pt_pool_entry **pools;   /* open hash of endpoints */
    uint32_t npools_cap, npools_used;
    struct pt_lb_state lb;          /* load balancing for the clusters of snap (cluster/lb.h) */
    uint64_t rng[2];
    char scratch[PT_MAX_HEAD_BYTES_DEFAULT + 8192]; /* heads being built */
    /* The headers of the response head being handled (session.c pt_session_response_head):
     * never the request's array, which a retry rebuilds the request from. A head is handled
     * in one call, so one array per worker serves every connection. */
    struct pt_header resp_hdrs[PT_MAX_HEADERS_DEFAULT];
    char tls_scratch[16384];        /* gathers a TLS write into one record */
    char pathbuf[8192];             /* a request path with its dot segments removed */
    struct pt_stats_worker *st;     /* this worker's counters (observe/stats.h) */
    struct pt_trace_worker *trace;  /* this worker's span ring */
    struct pt_buf logbuf;           /* access log lines waiting for write */
    struct pt_timer log_timer;
    int log_fd;
    bool draining;
    uint32_t nconns;
    uint32_t inflight;              /* requests between dispatch and their end */
    uint64_t accept_paused_until;
};

#endif
