/* Types of the data plane: the worker, the client connection (pt_conn), the request it carries
 * (pt_stream), the upstream connection and its per-worker pool. Types only (see proxy/proxy.h). */
#ifndef PT_PROXY_PROXY_T_H
#define PT_PROXY_PROXY_T_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/buf.h"
#include "core/loop.h"
#include "cluster/lb-t.h"
#include "model/snapshot-t.h"
#include "http/h1-t.h"
#include "http/h2req.h"
#include "http/grpcweb.h"
#include "observe/trace-t.h"
#include "observe/stats-t.h"
#include "observe/grpcstats-t.h"
#include "observe/record-t.h"

#define PT_MAX_HEADERS_DEFAULT 100
#define PT_MAX_HEAD_BYTES_DEFAULT (60 * 1024)
#define PT_CORS_ORIGIN_MAX 320 /* the longest Origin echoed when a CORS policy allows any (an
                                * origin is scheme://host:port; a longer one is not allowed) */
#define PT_LINGER_MS 2000 /* reading what a client still sends after our last response */
#define PT_REPLY_WAIT_MAX_MS 300000 /* a local reply waiting for its client, when stream idle
                                     * timeouts are off (--stream-idle-timeout-ms 0) */

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
    uint32_t max_idle_per_endpoint; /* pooled upstream connections per endpoint and worker */
    uint32_t upstream_max_lifetime_ms; /* an upstream connection is not reused after this; 0:
                                        * no limit */
    uint32_t max_connections;     /* per worker */
};

struct pt_worker;
struct pt_conn;
struct pt_stream;

/* Client connection states (proxy/conn.c). */
enum pt_conn_state {
    PT_CONN_HEAD = 0,   /* between requests, or reading a request head */
    PT_CONN_TLS_DETECT, /* HTTPS listener: TLS or cleartext? (first byte) */
    PT_CONN_HANDSHAKE,  /* TLS handshake in progress */
    PT_CONN_STREAM,     /* a request is in progress (conn->stream) */
    PT_CONN_CLOSING,    /* flushing the last bytes and lingering, then close */
    PT_CONN_H2,         /* HTTP/2: streams come and go on it (conn->h2, proxy/h2conn.c) */
};

/* Client connection flags, one bit each. */
#define PT_CF_RD_PENDING  0x0001 /* the socket may have unread bytes (edge-triggered) */
#define PT_CF_WR_BLOCKED  0x0002 /* a write hit EAGAIN; waiting for EPOLLOUT */
#define PT_CF_PEER_CLOSED 0x0004 /* the client's FIN was reported (EPOLLRDHUP): read to the end */
#define PT_CF_TLS         0x0008 /* the connection is TLS */
#define PT_CF_DEAD        0x0010 /* closed, freed after this loop iteration */
#define PT_CF_CLOSE_AFTER 0x0020 /* close once the current response is out */
#define PT_CF_HEAD_TIMER  0x0040 /* the header timeout runs for the head being received */
#define PT_CF_READY       0x0080 /* on the worker's ready list: read the next head soon */
#define PT_CF_PEER_INTERNAL 0x0100 /* the peer's address is internal as Envoy counts it (RFC 1918,
                                    * 127.0.0.1, fd00::/8, ::1): see pt_session_internal */
#define PT_CF_STALLED     0x0200 /* nothing moved (a stream idle timeout cut the response, or
                                  * a second linger saw the client take nothing): what the
                                  * client has not taken is dropped with a reset (pt_conn_close) */
#define PT_CF_LINGER_AGAIN 0x0400 /* the linger ran out with bytes not taken: one more, to see
                                   * whether the client reads (conn_on_timer) */

struct pt_http_reply;

/* The response head a stream sends its client, as the proxy decided it (proxy/session.c); the
 * connection's protocol writes it (an HTTP/1 head, or an HTTP/2 HEADERS frame). Every slice is
 * valid during the call that takes it only. */
struct pt_resp_head {
    int status;
    struct pt_str reason;             /* HTTP/1's reason phrase; empty: the standard one */
    const struct pt_header *headers;  /* end-to-end headers, in order */
    size_t nheaders;
    int64_t content_length;           /* of the body that follows; -1: not known */
    bool body;                        /* a body follows (not for HEAD, 1xx, 204, 304) */
    bool close_delimited;             /* the upstream ends the body by closing (HTTP/1) */
    struct pt_str upgrade;            /* 101: the protocol switched to */
};

/* What a stream needs from the client connection that carries it, one table per protocol
 * (HTTP/1: proxy/conn.c), so that streams, routing, observe/ and the upstream side are the same
 * for every protocol. Each takes the stream; none calls back into it. */
struct pt_down_ops {
    /* body: request body data that is here, framing removed: up to PT_BODY_RUNS pieces into
     * <data> (<*n> set), <*done> when it ends the body. Returns the amount to give to
     * body_consume once the data was used (0: nothing now; the stream hears
     * pt_stream_on_client_readable when more comes), PT_IO when the client went away, or
     * PT_BADMSG when the body's framing is broken. */
    int64_t (*body)(struct pt_stream *st, struct iovec *data, int *n, bool *done);
    void (*body_consume)(struct pt_stream *st, int64_t used);
    /* expect_continue: the request waits for "100 Continue" before sending its body.
     * 0 or PT_IO. */
    int (*expect_continue)(struct pt_stream *st);
    /* head: the response head; it may wait to leave with the first data. 0, or PT_BADMSG
     * when it cannot be written (too large). */
    int (*head)(struct pt_stream *st, const struct pt_resp_head *h);
    /* data: response body data (after head); <end> ends the response. 0 (all taken), PT_AGAIN
     * (taken, but the client is slow: pt_stream_on_client_writable follows once it is out), or
     * PT_IO (the client is gone). */
    int (*data)(struct pt_stream *st, const struct iovec *iov, int n, bool end);
    /* blocked: what the stream gave is not all out yet. */
    bool (*blocked)(const struct pt_stream *st);
    /* reply: a whole local response, head <r> and <body>. 0, PT_AGAIN, PT_IO as data, or
     * PT_BADMSG / PT_TOOBIG when <r> cannot be written (nothing was sent). */
    int (*reply)(struct pt_stream *st, struct pt_http_reply *r, struct pt_str body);
    /* trailers: the response's trailer fields <h> (<n>), before the data call that ends it;
     * valid during the call only. 0, or PT_IO when the client is gone. NULL: the protocol has
     * no trailers to give (HTTP/1: they are dropped, as Envoy does for HTTP/1 clients). */
    int (*trailers)(struct pt_stream *st, const struct pt_header *h, size_t n);
    /* req_trailers: the request's trailer fields, once body gave <done>, into <out> (at most
     * <max>, valid until the stream ends). Returns how many. NULL: the protocol has none to
     * give (HTTP/1: a chunked body's trailers are dropped, as Envoy does). */
    size_t (*req_trailers)(struct pt_stream *st, struct pt_header *out, size_t max);
    /* end: the stream is over and freed after this call. <how>: PT_DOWN_DONE (the response
     * is out), PT_DOWN_CLOSE (done, and the connection closes after it) or PT_DOWN_ABORT (cut
     * short: the client must not take it for complete). */
    void (*end)(struct pt_stream *st, int how);
};

enum { PT_DOWN_DONE = 0, PT_DOWN_CLOSE, PT_DOWN_ABORT };

/* A client connection: what an idle keep-alive connection needs and nothing more. Buffers
 * exist only while bytes move (the worker's buffer pool); the request lives in its stream. */
struct pt_conn {
    struct pt_io io;
    struct pt_worker *w;
    SSL *ssl;                       /* NULL: cleartext */
    const struct pt_down_ops *down; /* its protocol, as its streams see it */
    struct pt_stream *stream;       /* the request in progress (HTTP/1: one at a time) */
    struct pt_h2conn *h2;           /* HTTP/2 state (proxy/h2conn.c); NULL: HTTP/1 */
    struct pt_buf in;               /* bytes from the client (owned; released when empty) */
    struct pt_buf out;              /* bytes for the client not yet written (owned) */
    struct pt_timer timer;          /* TLS detect/handshake and head timeout, keep-alive idle,
                                     * linger */
    struct pt_conn *next;           /* the worker's dead, free or ready list */
    uint64_t accepted_ms;
    uint32_t flags;                 /* PT_CF_* */
    union {
        uint32_t head_scanned;      /* PT_CONN_HEAD: head-end scan resume point */
        uint32_t linger_unsent;     /* PT_CONN_CLOSING with PT_CF_LINGER_AGAIN: what the client
                                     * had not taken when the linger first ran out */
    };
    uint32_t lst_idx, http_idx;     /* stats: listener address and HTTP prefix */
    uint16_t port;                  /* the listener port it arrived on */
    uint16_t peer_port;
    uint8_t state;                  /* enum pt_conn_state */
    uint8_t peer_ip_len;
    char peer_ip[46];               /* INET6_ADDRSTRLEN */
};

/* Request (stream) flags, one bit each. */
#define PT_SF_REQ_DONE     0x0001 /* the whole request (head + body) was read */
#define PT_SF_REQ_SENT     0x0002 /* ...and written upstream */
#define PT_SF_RESP_HEAD    0x0004 /* response head sent to the client */
#define PT_SF_RESP_DONE    0x0008 /* the whole response was received */
#define PT_SF_HEAD_METHOD  0x0010 /* request method is HEAD */
#define PT_SF_SECURE       0x0080 /* the request counts as secure (TLS, or XFP https) */
#define PT_SF_UP_ACTIVE    0x0100 /* counted in the cluster's upstream_rq_active */
#define PT_SF_UPGRADE      0x0200 /* an Upgrade the route allows was forwarded */
#define PT_SF_TUNNEL       0x0400 /* upgraded (101): bytes flow both ways until a side closes */
#define PT_SF_CLOSE_AFTER  0x0800 /* the connection must close after this response */
#define PT_SF_ENDED        0x1000 /* observed and logged; only freeing is left */
#define PT_SF_RQ_COUNTED   0x2000 /* counted in downstream_rq_total/_active */
#define PT_SF_PARSED       0x4000 /* st->req holds a parsed request (dispatched) */
#define PT_SF_GRPC_DEADLINE 0x8000 /* the route timer is the request's grpc-timeout (shorter than
                                    * the route timeout): its expiry is gRPC's DEADLINE_EXCEEDED */
#define PT_SF_CONTINUED   0x10000 /* "100 Continue" was sent (the AuthService wanted the body) */
#define PT_SF_CORS     0x80000000u /* the route's CORS policy allowed the Origin: st->cors_origin
                                    * is echoed in the response head (proxy/cors.c) */
#define PT_SF_BODY_REPLACED 0x20000 /* error_response_overrides sent another body whole: the
                                     * upstream's is read and dropped (proxy/session.c) */
#define PT_SF_RETRY_WAIT 0x01000000 /* a retry waits out its back-off (st->try_timer; state
                                     * PT_ST_RETRY, not on the ready list: proxy/retry.c) */
#define PT_SF_NO_REPLAY  0x02000000 /* the request body outgrew PT_RETRY_BODY_MAX (or could not
                                     * be kept): it cannot be sent again */
#define PT_SF_LB_COOKIE 0x00100000 /* its hash policy made a cookie (st->lb_cookie): the upstream's
                                    * response head gets it in a Set-Cookie (proxy/lbhash.c) */
#define PT_SF_SHADOWED  0x08000000 /* its route has a shadow, and the draw was made (once):
                                    * st->shadow is its mirror, or NULL (proxy/shadow.h) */
#define PT_SF_CX_WAIT   0x04000000 /* pending: it waits for a connection of its cluster, whose
                                    * max_connections are open (state PT_ST_RETRY, on
                                    * st->cxw_entry's wait list: proxy/upstream.c) */
#define PT_SF_CX_WOKEN  0x10000000 /* ... and a connection was freed: it goes again, on the
                                    * ready list */

/* What a stream is doing (proxy/stream.c). */
enum pt_stream_state {
    PT_ST_ROUTING = 0, /* head parsed, being routed */
    PT_ST_UPSTREAM,    /* forwarding: the request goes up, the response comes down */
    PT_ST_RETRY,       /* its pooled upstream connection died unused: it goes again, once */
    PT_ST_REPLIED,     /* a local reply is being written */
    PT_ST_POLICY,      /* its AuthService or RateLimitService decides (proxy/policy.h) */
};

/* Upstream connection states. */
enum pt_up_state { PT_UP_CONNECTING = 0, PT_UP_HANDSHAKE, PT_UP_BUSY, PT_UP_IDLE };

/* How an upstream connection reports to the one using it (a stream; later an auth or health
 * check call). Each is called from the connection's event handler, never from inside a call
 * the owner made, and the owner may release the connection from inside any of them. */
struct pt_up_ops {
    void (*on_readable)(void *owner);   /* response bytes in up->in, or up->eof */
    void (*on_writable)(void *owner);   /* what was sent is out: more may follow */
    /* the connection failed: Envoy's reset <reason>, transport failure <tfr> (or NULL), and the
     * response <flags>; the connection is already closed and no longer the owner's */
    void (*on_error)(void *owner, const char *reason, const char *tfr, const char *flags);
};

struct pt_pool_entry;

struct pt_upstream {
    struct pt_io io;
    struct pt_worker *w;
    SSL *ssl;                       /* NULL: plaintext */
    enum pt_up_state state;
    struct pt_pool_entry *pool;     /* the endpoint's pool */
    struct pt_upstream *idle_next, *idle_prev;
    const struct pt_up_ops *ops;    /* the owner's callbacks while busy */
    void *owner;                    /* NULL: idle or dead */
    struct pt_buf in;               /* response bytes */
    struct pt_buf out;              /* request bytes not yet written */
    struct pt_timer timer;          /* connect timeout, or idle timeout when pooled */
    bool rd_pending, wr_blocked, dead, eof;
    bool queued;                    /* on the worker's ready list */
    struct pt_upstream *ready_next;
    bool peer_closed;               /* the backend's FIN was reported (EPOLLRDHUP): read to the
                                     * end, and never pool the connection */
    uint32_t cst_idx;               /* stats: the cluster it was opened for */
    uint64_t connect_start_ms;
    uint32_t requests;              /* served on this connection */
    uint64_t created_ms;            /* opened (the pool's max lifetime counts from here) */
    struct pt_breakers *cb;         /* counted in these breakers' connections; NULL: not */
};

/* The states of an exchange of the upstream HTTP client (proxy/httpclient.c). */
enum pt_hc_state {
    PT_HC_IDLE = 0, /* not started, or finished */
    PT_HC_HEAD,     /* waiting for the response head */
    PT_HC_BODY,     /* delivering the response body */
    PT_HC_TUNNEL,   /* after a 101: bytes both ways until a side closes */
    PT_HC_DONE,     /* the response is complete */
};

/* What the upstream HTTP client reports to the one that made the call (proxy/httpclient.h). */
struct pt_hc_ops {
    /* on_head: the final response head (1xx are skipped, but an allowed 101); <res> and its
     * headers are valid during the call only. 0 to go on; PT_CLOSED when the owner finished the
     * exchange (pt_hc_finish). */
    int (*on_head)(void *owner, const struct pt_h1_response *res);
    /* on_body: <n> pieces of body data without their framing (in a tunnel: the bytes as they
     * come), valid during the call; <end>: the response is complete. Called at least once right
     * after on_head, maybe with nothing. 0 or PT_CLOSED, as on_head. */
    int (*on_body)(void *owner, const struct iovec *iov, int n, bool end);
    /* on_trailers: the response's trailer fields (HTTP/2 upstreams), after the last body data
     * and before the on_body that ends the response; valid during the call. 0 or PT_CLOSED, as
     * on_head. */
    int (*on_trailers)(void *owner, const struct pt_header *h, size_t n);
    /* on_writable: what pt_hc_send kept is written; more may follow. */
    void (*on_writable)(void *owner);
    /* on_error: the exchange failed: Envoy's reset <reason>, the transport failure <tfr> (or
     * NULL) and the response <flags>. The connection is gone. */
    void (*on_error)(void *owner, const char *reason, const char *tfr, const char *flags);
};

struct pt_h2x;
struct pt_h2up;
struct pt_call;
struct pt_health_worker;
struct pt_shadow;

/* One request/response exchange on an upstream connection. All-zero is an idle exchange. */
struct pt_hc {
    struct pt_upstream *up;      /* its connection while it has one (HTTP/1.1) */
    struct pt_h2x *h2;           /* its stream while it has one (HTTP/2: proxy/h2client.c) */
    const struct pt_hc_ops *ops;
    void *owner;
    struct pt_body body;         /* how the response body is delimited */
    uint8_t state;               /* enum pt_hc_state */
    bool head_request;           /* the request is HEAD: no response body */
    bool allow_101;              /* a 101 may switch to a tunnel */
    bool reused;                 /* the connection came from the pool */
    bool paused;                 /* the owner takes no body bytes now */
    bool keepalive;              /* the response lets the connection be reused */
};

/* Per-endpoint pool of idle upstream connections, in a per-worker open hash. */
struct pt_pool_entry {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    SSL_CTX *tls;                   /* origination context (part of the key); NULL: plaintext */
    struct pt_upstream idle_head;   /* circular list of idle connections (sentinel) */
    uint32_t nidle;
    struct pt_h2up *h2_conns;       /* its HTTP/2 connections, busy or idle (proxy/h2client.c) */
    struct pt_up_opts opts;         /* its cluster's connection settings (part of the key) */
    uint32_t nopen;                 /* its HTTP/1 connections of this worker: connecting, busy, idle */
    struct pt_stream *wait_head, *wait_tail; /* requests waiting for one (PT_SF_CX_WAIT), FIFO */
};

/* HTTP/2 stream flags (struct pt_h2s). */
#define PT_H2S_HEAD_BAD     0x0001 /* the request head is malformed: answered 400 at its end */
#define PT_H2S_HEAD_BIG     0x0002 /* ... or too large */
#define PT_H2S_DISPATCH     0x0004 /* the head is complete: route it (from the connection's run) */
#define PT_H2S_ROUTED       0x0008 /* dispatched: the stream has the request */
#define PT_H2S_IN_END       0x0010 /* the client's END_STREAM arrived */
#define PT_H2S_READABLE     0x0020 /* body data or its end arrived since the stream last read */
#define PT_H2S_OUT_END      0x0040 /* the response's end was given */
#define PT_H2S_OUT_END_SENT 0x0080 /* ... and framed (END_STREAM) */
#define PT_H2S_NOTIFY       0x0100 /* tell the stream when nothing it gave is pending */
#define PT_H2S_CLOSED       0x0200 /* nghttp2 closed the stream (reset, or both ends done) */
#define PT_H2S_RESET        0x0400 /* ... before the stream was over: abort it */
#define PT_H2S_HEAD_SUBMIT  0x0800 /* a response head was submitted */
#define PT_H2S_NO_BODY      0x1000 /* the request's HEADERS ended the stream */

/* A stream's side of its HTTP/2 connection (proxy/h2conn.c); unused on HTTP/1. */
struct pt_h2s {
    int32_t id;
    uint16_t flags;                 /* PT_H2S_* */
    struct pt_buf head;             /* the request head's fields (http/h2req.h): the request's
                                     * slices point here until the stream ends */
    struct pt_buf in;               /* request body data not yet sent upstream */
    struct pt_buf out;              /* response body data not yet framed */
    struct pt_buf trailers;         /* the response's trailers until the body's end is framed:
                                     * [u32 name length][u32 value length][name][value]... */
    uint32_t ntrailers;
    struct pt_buf req_trailers;     /* the request's trailers (same layout), for an HTTP/2 upstream */
    uint32_t nreq_trailers;
    struct pt_stream *next;         /* the connection's streams */
    struct pt_h2req req;            /* the head being received */
};

/* A gRPC-Web request's translation (Module enable_grpc_web, proxy/grpcweb.c); kind NONE: the
 * request is not translated. */
struct pt_gw {
    uint8_t kind;                   /* enum pt_grpcweb_kind of the request's body */
    bool text_resp;                 /* the response body goes base64 (-text asked for) */
    struct pt_b64dec dec;           /* the request body's base64, across pieces */
    struct pt_b64enc enc;           /* the response body's, across pieces */
};

/* A request: everything that lives as long as one request does, freed as one when it ends
 * (proxy/stream.c). It talks to its client connection through conn.c's functions and to its
 * upstream connection through the callbacks it gives upstream.c. */
struct pt_stream {
    struct pt_conn *conn;           /* the client connection that carries it */
    struct pt_worker *w;
    struct pt_snapshot *snap;       /* the snapshot it runs on (a reference counted in wref) */
    struct pt_listener *listener;
    uint32_t flags;                 /* PT_SF_* */
    uint8_t state;                  /* enum pt_stream_state */
    uint8_t retries;                /* sent again on a new connection (at most once) */
    struct pt_h1_request req;       /* slices of conn->in, which is not compacted meanwhile */
    const struct pt_route *route;   /* the matched route (NULL before, or a local reply) */
    struct pt_body req_body;        /* the request body's framing (the response's: hc.body) */
    struct pt_hc hc;                /* its upstream exchange (proxy/httpclient.h) */
    struct pt_gw gw;                /* gRPC-Web translation state */
    struct pt_grpc_call gs;         /* Module grpc_stats: this call's counting */
    uint32_t resp_head_len;         /* the client's response head, waiting in w->scratch for
                                     * the first body bytes; 0: sent */
    bool resp_chunked;              /* the body goes to the client chunked (framed here) */
    struct pt_timer timer;          /* the route timeout */
    struct pt_timer idle_timer;     /* the stream idle timeout (idle_ms) */
    uint32_t idle_ms;               /* Mapping idle_timeout_ms, else the stream idle timeout, or
                                     * the tunnel's; 0: none */
    uint64_t active_ms;             /* when bytes last moved (pt_stream_touch) */
    uint64_t upstream_start_ms;
    struct pt_lb_pick lb_pick;      /* the endpoint pick to release when the request ends */
    const struct pt_trace_config *trace_cfg; /* set while a trace context is active */
    struct pt_trace_ctx trace;
    struct pt_req_record rec;       /* what observe/ logs and traces */
    struct pt_stream *next_free;
    struct pt_h2s h2;               /* HTTP/2 only; set by proxy/h2conn.c */
    struct pt_header hdrs[PT_MAX_HEADERS_DEFAULT];
    /* CORS (proxy/cors.c), valid only under PT_SF_CORS: the allowed Origin, a slice of the
     * route's policy (an exact origin) or of cors_buf (a copy, when any origin is allowed): the
     * request's head may move before the response comes. */
    struct pt_str cors_origin;
    char cors_buf[PT_CORS_ORIGIN_MAX];
    /* retry_policy and circuit breakers (proxy/retry.c); set by stream_new: */
    struct pt_timer try_timer;      /* the per-try timeout while a try runs, or the back-off
                                     * before the next (PT_SF_RETRY_WAIT) */
    uint8_t tries;                  /* retries sent under the route's retry_policy */
    uint8_t cb_held;                /* PT_CB_* the request holds in its cluster's breakers */
    uint8_t retry_flag;             /* 1: retries ran out (URX); 2: max_retries overflowed (UO) */
    char *replay;                   /* the request body as sent, for a retry (malloc'd, at most
                                     * PT_RETRY_BODY_MAX; only when the route has retry_policy) */
    uint32_t replay_len, replay_cap;
    /* Load balancing (proxy/lbhash.c), valid only under PT_SF_LB_COOKIE: the value of the
     * cookie its hash policy made (16 hex digits, Envoy's). */
    char lb_cookie[16];
    /* AuthService and RateLimitService (proxy/policy.h). Not zeroed per request: empty when
     * the stream is made, and emptied by its end (pt_policy_end, stream_end). */
    struct pt_call *call;           /* the policy call running, or NULL */
    struct pt_call *edits[2];       /* ended calls whose header edits apply: [0] the
                                     * AuthService's, [1] the RateLimitService's */
    char *held;                     /* request body taken from the client for the AuthService,
                                     * sent upstream before the rest (malloc'd) */
    uint32_t held_len, held_cap;
    bool held_end;                  /* the body ended within it */
    char *head_copy;                /* the request's head, copied while the checks run or it
                                     * waits for a connection (its slices point here then;
                                     * malloc'd) */
    /* Under PT_SF_CX_WAIT: the pool entry whose wait list it is on, and its neighbours. */
    struct pt_pool_entry *cxw_entry;
    struct pt_stream *cxw_prev, *cxw_next;
    /* The mirror of the request (Mapping shadow, proxy/shadow.h), valid only under
     * PT_SF_SHADOWED; NULL when none was drawn or it is gone. */
    struct pt_shadow *shadow;
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
    struct pt_conn *free_conns, *dead_conns, *ready_conns;
    struct pt_stream *free_streams, *ready_streams;
    struct pt_upstream *free_up, *dead_up, *ready_ups;
    struct pt_call *free_calls;     /* policy calls (proxy/call.h) */
    uint32_t nfree_calls;
    struct pt_h2up *ready_h2ups;    /* HTTP/2 upstream connections with work, or dead to free */
    struct pt_h2x *free_h2x;        /* HTTP/2 upstream streams (proxy/h2client.c) */
    struct pt_pool_entry **pools;   /* open hash of endpoints */
    uint32_t npools_cap, npools_used;
    struct pt_lb_state lb;          /* load balancing for the clusters of snap (cluster/lb.h) */
    struct nghttp2_session_callbacks *h2cbs; /* HTTP/2 (proxy/h2conn.c); made at first use */
    struct nghttp2_option *h2opt;
    struct nghttp2_session_callbacks *h2up_cbs; /* HTTP/2 upstreams (proxy/h2client.c) */
    struct nghttp2_option *h2up_opt;
    uint64_t rng[2];
    char scratch[PT_MAX_HEAD_BYTES_DEFAULT + 8192]; /* heads being built */
    /* The headers of the response head being handled (session.c pt_session_response_head):
     * never the request's array, which a retry rebuilds the request from. A head is handled
     * in one call, so one array per worker serves every connection. */
    struct pt_header resp_hdrs[PT_MAX_HEADERS_DEFAULT];
    /* The headers of the response head being sent to a client (struct pt_resp_head): the
     * upstream's that pass, and those the proxy adds. */
    struct pt_header out_hdrs[PT_MAX_HEADERS_DEFAULT + 64];
    char tls_scratch[16384];        /* gathers a TLS write into one record */
    char pathbuf[8192];             /* a request path with its dot segments removed */
    /* gRPC-Web (proxy/grpcweb.c): [0] a request body piece decoded from base64, or a response's
     * trailer frame; [1] response bytes encoded in base64. Filled and handed on (copied) in one
     * call. */
    uint8_t gwbuf[2][16384];
    struct pt_stats_worker *st;     /* this worker's counters (observe/stats.h) */
    struct pt_trace_worker *trace;  /* this worker's span ring */
    struct pt_logsink log;          /* access log lines waiting for write */
    bool draining;
    uint32_t nconns;
    uint32_t inflight;              /* requests between dispatch and their end */
    struct pt_health_worker *health; /* the health checks this worker runs (proxy/health.c);
                                      * NULL: none yet */
    bool cx_overflow;               /* the last pt_up_acquire was refused by its cluster's
                                     * max_connections (proxy/upstream.c) */
    struct pt_pool_entry *cx_wait;  /* ... and a request may wait for a connection there: the
                                     * entry has some (Envoy's pending request) */
    struct pt_shadow *free_shadows; /* mirrors (proxy/shadow.c) */
};

#endif
