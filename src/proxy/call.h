/* A policy call: a request a stream makes on its way, to a service that decides about it (the
 * AuthService, the RateLimitService), before it is sent on. One exchange of the upstream client
 * (proxy/httpclient.h, so pooled HTTP/1.1 connections or multiplexed HTTP/2 streams), an
 * endpoint from the service's cluster (cluster/lb.h), a timeout, and the whole answer collected
 * (status, headers, body up to a bound, trailers) before the caller hears of it, once, through
 * its done callback. Calls live on a per-worker free list, as streams do. Internal to src/proxy/: used by
 * auth.c and ratelimit.c. */
#ifndef PT_PROXY_CALL_H
#define PT_PROXY_CALL_H

#include "proxy/proxy.h"
#include "observe/trace-t.h"

/* How a call ended. */
enum pt_call_result {
    PT_CALL_OK = 0,    /* an answer came: status, headers, body, trailers are in the call */
    PT_CALL_TIMEOUT,   /* no whole answer within the timeout */
    PT_CALL_FAILED,    /* no connection, a reset, a malformed or too large answer */
};

#define PT_CALL_MAX_ANSWER (64 * 1024) /* head fields, body and trailers of an answer */
#define PT_CALL_MAX_FIELDS 64          /* headers, and trailers, kept of an answer */

struct pt_call;

/* A header change an answer asks for (op: enum pt_edit_op of proxy/policy.h). */
struct pt_call_edit {
    struct pt_str name, value;  /* lowercase name */
    uint8_t op;
};

/* done: <call> ended with <result> (enum pt_call_result). Called from the call's connection
 * or timer, never from inside pt_call_start; the caller frees the call (pt_call_free) when it
 * is done reading it, in done or later. The call's span is recorded when done returns, with
 * the tags done gave it. */
typedef void (*pt_call_done_fn)(struct pt_stream *st, struct pt_call *call, int result);

struct pt_call {
    struct pt_hc hc;
    struct pt_stream *st;         /* the stream that made it */
    pt_call_done_fn done;
    const struct pt_cluster *cluster;
    const struct pt_endpoint *ep;
    struct pt_lb_pick pick;
    struct pt_timer timer;
    uint64_t start_ms;
    bool ended;                   /* done was called (or is about to be) */
    bool send_failed;             /* the request could not be handed over: fails at once */
    bool retried;                 /* sent again on a new connection (the pooled one was stale) */
    bool in_done;                 /* done runs: a pt_call_free waits until it returned */
    bool free_pending;
    bool head_request;            /* a HEAD (the HTTP AuthService keeps the client's method) */
    struct pt_trace_call trace;   /* the call's span (observe/trace.h); all-zero: not traced */
    uint8_t ntags;                /* the span's tags the caller gave (pt_call_tag) */
    const char *tag_key[PT_TRACE_CALL_TAGS];
    struct pt_str tag_value[PT_TRACE_CALL_TAGS];
    char *req;                    /* the request's bytes, until the answer (malloc'd, kept) */
    uint32_t req_len, req_cap, req_head; /* req_head: the head's length, the body after it */
    /* The answer: */
    int status;
    struct pt_header headers[PT_CALL_MAX_FIELDS];
    uint32_t nheaders;
    struct pt_header trailers[PT_CALL_MAX_FIELDS];
    uint32_t ntrailers;
    struct pt_str body;           /* in mem */
    struct pt_call_edit edits[PT_CALL_MAX_FIELDS]; /* what the caller read of the answer */
    uint32_t nedits;
    char *mem;                    /* what the slices above point into (PT_CALL_MAX_ANSWER) */
    uint32_t used;
    struct pt_call *next_free;
};

/* pt_call_start: a call to <c> for <st>: sends <head> (an HTTP/1.1 request head; an HTTP/2
 * cluster reads its fields from it) and <body>, bounded by <timeout_ms> (0: none), and reports
 * to <done>. Returns the call, or NULL when none could be started (no endpoint, no connection,
 * no memory): nothing follows then. */
struct pt_call *pt_call_start(struct pt_stream *st, const struct pt_cluster *c, struct pt_str head,
                              struct pt_str body, uint32_t timeout_ms, pt_call_done_fn done);

/* pt_call_header: the value of the answer's first header <name> (lowercase), empty if none. */
struct pt_str pt_call_header(const struct pt_call *call, struct pt_str name);

/* pt_call_trailer: the same for a trailer (grpc-status), or for a trailers-only gRPC answer's
 * header. */
struct pt_str pt_call_trailer(const struct pt_call *call, struct pt_str name);

/* pt_call_grpc_head: the request head of a gRPC call to <c>'s method <path>
 * ("/package.Service/Method") with the deadline <timeout_ms> (0: none), into <out> (<cap>
 * bytes). 0 when it does not fit. */
size_t pt_call_grpc_head(const struct pt_cluster *c, struct pt_str path, uint32_t timeout_ms, char *out, size_t cap);

/* pt_call_grpc_unpack: the answer of an ended gRPC call, when it is a success (HTTP 200,
 * grpc-status 0) carrying one uncompressed message of type <d>, unpacked by protobuf-c into the
 * call's spare memory (no malloc; it lives as long as the call). NULL otherwise. */
struct ProtobufCMessageDescriptor;
void *pt_call_grpc_unpack(struct pt_call *call, const struct ProtobufCMessageDescriptor *d);

/* pt_call_edit: appends an edit (<op>, <name>, <value>) to <call>, its strings copied into the
 * call (the name lowercased). False when it does not fit. */
bool pt_call_edit(struct pt_call *call, int op, struct pt_str name, struct pt_str value);

/* pt_call_tag: a tag for the call's span (at most PT_TRACE_CALL_TAGS; <value> must live until
 * the call is freed, as the call's own answer does), given in done. */
void pt_call_tag(struct pt_call *call, const char *key, struct pt_str value);

/* pt_call_cancel: the stream ends while its call runs: the exchange is given up (its
 * connection closed), no callback follows, and the call is freed. */
void pt_call_cancel(struct pt_call *call);

/* pt_call_free: the caller is done with an ended call. */
void pt_call_free(struct pt_call *call);

#endif
