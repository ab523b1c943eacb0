/* Types of the HTTP/1.1 parser (src/http/h1.c): limits, parsed request and response heads, and
 * the resumable state of the chunked-body scanner. Prototypes are in http/h1.h. */
#ifndef PT_HTTP_H1_T_H
#define PT_HTTP_H1_T_H

/* struct pt_str and struct pt_header: the core vocabulary has no separate -t.h. */
#include "core/common.h"

#define PT_H1_DEFAULT_MAX_HEAD_BYTES (60 * 1024) /* request line + headers + blank line */
#define PT_H1_DEFAULT_MAX_HEADERS 100
#define PT_H1_CHUNK_SIZE_MAX ((uint64_t)0x7fffffff) /* largest chunk-size accepted: fits any
                                                     * 32-bit signed reader */
#define PT_H1_CHUNK_LINE_MAX 4096                /* chunk-size line, extensions included */
#define PT_H1_TRAILERS_MAX (60 * 1024)           /* whole trailer section */
#define PT_H1_CHUNK_HEAD_MAX 20                  /* a chunk-size line Portico writes */
#define PT_H1_LAST_CHUNK "0\r\n\r\n"             /* the end of a body Portico frames */
#define PT_H1_CHUNK_END "\r\n"                     /* after each chunk's data */
#define PT_H1_CONTINUE "HTTP/1.1 100 Continue\r\n\r\n" /* the interim answer to Expect */

/* Limits of one parse. A zero field means its default, so an all-zero struct is valid. */
struct pt_h1_limits {
    size_t max_head_bytes; /* start line + headers + blank line; default 60 KiB */
    size_t max_headers;    /* header lines; default 100 */
};

/* Well-known methods, so callers need not compare strings. */
enum pt_h1_method {
    PT_H1_METHOD_OTHER = 0, /* a valid token that is none of the below */
    PT_H1_METHOD_GET,
    PT_H1_METHOD_HEAD,
    PT_H1_METHOD_POST,
    PT_H1_METHOD_PUT,
    PT_H1_METHOD_DELETE,
    PT_H1_METHOD_CONNECT,
    PT_H1_METHOD_OPTIONS,
    PT_H1_METHOD_TRACE,
    PT_H1_METHOD_PATCH,
};

/* A parsed request head. Every pt_str points into the parsed buffer, except path, which is the
 * static string "/" for an absolute-form target with an empty path. Valid only after a parse
 * that returned > 0, and only as long as that buffer is. */
struct pt_h1_request {
    struct pt_str method;
    struct pt_str target;    /* the request-target as received; the proxy replaces its path
                              * with the normalized one (proxy/session.c) */
    struct pt_str path;      /* target up to '?'; "*" for OPTIONS *; empty for CONNECT */
    struct pt_str query;     /* after '?', without it; ptr NULL when there is no '?' */
    struct pt_str authority; /* host[:port] of an absolute-form or CONNECT target, else empty;
                              * when set it takes precedence over Host (RFC 9112 §3.2.2) */
    enum pt_h1_method method_id;
    int minor_version; /* 0 or 1 */

    struct pt_header *headers; /* the caller's array, filled in receive order */
    size_t nheaders;

    struct pt_str host;     /* value of the Host header, empty when there is none */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked (the only accepted form) */
    bool keep_alive;        /* per version and the Connection close / keep-alive options */
    bool expect_continue;   /* HTTP/1.1 and Expect: 100-continue */
    bool upgrade;           /* HTTP/1.1, Connection: upgrade and an Upgrade header */
    bool conn_options;      /* some Connection header names more than close / keep-alive: the
                             * headers it names are not forwarded (RFC 9110 §7.6.1) */

    /* Index into headers[] of the first header of each kind, -1 when absent. */
    int idx_connection;
    int idx_te_header; /* "TE", not Transfer-Encoding */
    int idx_x_forwarded_for;
    int idx_x_forwarded_proto;
    int idx_x_request_id;
    int idx_user_agent;
    int idx_host;
    int idx_content_length;
    int idx_transfer_encoding;
    int idx_upgrade;
    int idx_content_type;
};

/* A parsed response head; same lifetime rules as struct pt_h1_request. */
struct pt_h1_response {
    int status; /* 100..599 */
    int minor_version;
    struct pt_str reason; /* may be empty */

    struct pt_header *headers;
    size_t nheaders;

    int64_t content_length; /* -1 when absent (always with Transfer-Encoding) */
    bool chunked;
    bool keep_alive;

    int idx_connection;
    int idx_content_length;
    int idx_transfer_encoding;
};

/* States of the chunked-body scanner (RFC 9112 §7.1). */
enum pt_h1_chunked_state {
    PT_H1_CHUNKED_SIZE = 0,        /* first hex digit of a chunk-size */
    PT_H1_CHUNKED_SIZE_MORE,       /* more hex digits, or what ends the size */
    PT_H1_CHUNKED_SIZE_BWS,        /* whitespace after the size, which only ';' may follow */
    PT_H1_CHUNKED_EXT,             /* chunk extensions, up to CR */
    PT_H1_CHUNKED_EXT_QUOTED,      /* inside a quoted-string extension value */
    PT_H1_CHUNKED_EXT_QUOTED_PAIR, /* the byte after a backslash in a quoted-string */
    PT_H1_CHUNKED_SIZE_LF,         /* LF that ends the chunk-size line */
    PT_H1_CHUNKED_DATA,            /* chunk data: `remaining` bytes left */
    PT_H1_CHUNKED_DATA_CR,         /* CR after the chunk data */
    PT_H1_CHUNKED_DATA_LF,         /* LF after the chunk data */
    PT_H1_CHUNKED_TRAILER,         /* start of a trailer line, or the CR of the final CRLF */
    PT_H1_CHUNKED_TRAILER_NAME,    /* trailer field name, up to ':' */
    PT_H1_CHUNKED_TRAILER_VALUE,   /* trailer field value, up to CR */
    PT_H1_CHUNKED_TRAILER_LF,      /* LF that ends a trailer line */
    PT_H1_CHUNKED_END_LF,          /* LF of the final CRLF */
    PT_H1_CHUNKED_DONE,            /* the whole body has been seen */
    PT_H1_CHUNKED_ERROR,           /* malformed; every later call fails */
};

/* Resumable state of one chunked body. All-zero is the start of a body. */
struct pt_h1_chunked {
    uint64_t remaining; /* data bytes left in the current chunk (state DATA), read-only */
    uint64_t data_total; /* chunk data bytes so far (the body without its framing), read-only */
    uint64_t _size;     /* chunk-size being accumulated */
    uint32_t _count;    /* bytes of the current chunk-size line, or of the trailer section */
    uint8_t _state;     /* enum pt_h1_chunked_state */
};

#define PT_BODY_RUNS 8 /* pieces of body data handed on in one go (one writev) */

/* How a message body is delimited (http/body.h). */
enum pt_body_kind {
    PT_BODY_NONE = 0,
    PT_BODY_LENGTH,      /* Content-Length: <remaining> bytes left */
    PT_BODY_CHUNKED,     /* chunked: taken out of its framing */
    PT_BODY_UNTIL_CLOSE, /* up to the connection's end (a response without a length, a tunnel) */
};

/* A body being passed on. All-zero is a body that has none. */
struct pt_body {
    enum pt_body_kind kind;
    uint64_t remaining;         /* PT_BODY_LENGTH */
    struct pt_h1_chunked chunk; /* PT_BODY_CHUNKED */
    uint64_t payload;           /* data bytes taken so far, without framing: what Envoy's
                                 * BYTES_RECEIVED / BYTES_SENT count */
};

#endif
