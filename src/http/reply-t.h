/* Types of the local-reply head builder (src/http/reply.c): what the head of a response that
 * Portico makes itself says. Types only; prototypes are in http/reply.h. */
#ifndef PT_HTTP_REPLY_T_H
#define PT_HTTP_REPLY_T_H

#include "core/common.h"

/* The Connection header a reply carries. */
enum pt_http_reply_conn {
    PT_HTTP_REPLY_CONN_NONE = 0,   /* none: HTTP/1.1 persistence */
    PT_HTTP_REPLY_CONN_CLOSE,      /* connection: close */
    PT_HTTP_REPLY_CONN_KEEP_ALIVE, /* connection: keep-alive (an HTTP/1.0 client that asked) */
};

/* The head of one local reply. Every slice is the caller's and only read. */
struct pt_http_reply {
    int status;                 /* 100..999 */
    struct pt_str reason;       /* reason phrase; empty: the standard one */
    uint64_t content_length;    /* the body's exact length; written except for 204 and 304 */
    bool text_plain;            /* content-type: text/plain */
    struct pt_str date;         /* IMF-fixdate; empty: no date header */
    struct pt_str location[4];  /* written joined as one location header; all empty: none */
    enum pt_http_reply_conn connection;
    /* A gRPC request's local reply (Envoy's): trailers-only, content-type application/grpc,
     * with grpc-status and grpc-message (percent-encoded already; empty: none). */
    bool grpc;
    int grpc_status;
    struct pt_str grpc_message;
    struct pt_str grpc_content_type; /* empty: application/grpc (gRPC-Web: its own) */
    struct pt_str content_type; /* not gRPC: written instead of text/plain (an
                                 * error_response_overrides body's); empty: text_plain decides */
    /* More fields, written after location in this order: a policy service's (an AuthService's
     * denial, a RateLimitService's 429) or a CORS policy's (http/cors.h). Lowercase token
     * names, values checked like the rest; the caller leaves out framing and hop-by-hop fields.
     * A content-type among them replaces text/plain. At most PT_HTTP_REPLY_EXTRA_MAX. */
    const struct pt_header *extra;
    size_t nextra;
};

#define PT_HTTP_REPLY_EXTRA_MAX 64

#endif
