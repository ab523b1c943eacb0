/* Types of portico-quote, the bundled example backend (build/portico-quote). Types, limits and
 * flags only; the functions are in quote.h. The backend is standalone (libc + pthread): it shares
 * no code with the proxy, so that a proxy bug can never hide behind the same bug in the backend. */
#ifndef PT_QUOTE_T_H
#define PT_QUOTE_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define PT_QUOTE_MAX_HEAD     (64 * 1024) /* request line + header fields, else 431 */
#define PT_QUOTE_MAX_LINE     (16 * 1024) /* request line, else 414 */
#define PT_QUOTE_MAX_HEADERS  128         /* header fields per request, else 431 */
#define PT_QUOTE_MAX_TRAILER  (16 * 1024) /* chunk extensions + trailer section, else 400 */
#define PT_QUOTE_BODY_PREFIX  64          /* request body bytes kept for /echo */
#define PT_QUOTE_MAX_DELAY_MS (10 * 60 * 1000)
#define PT_QUOTE_MAX_SIZE     (1ULL << 40) /* /size/N and /chunked/N */

/* Results of the parsers. Errors are the negated HTTP status the backend answers with
 * (-400, -414, -417, -431, -501, -505), so a caller can reply without a mapping table. */
#define PT_QUOTE_AGAIN (-1) /* need more bytes */

/* A slice of the connection's input buffer as offsets, so the buffer may move when it grows. */
struct pt_quote_span {
    uint32_t off;
    uint32_t len;
};

struct pt_quote_header {
    struct pt_quote_span name;
    struct pt_quote_span value;
};

/* Where the request-head parser is. */
enum pt_quote_head_state {
    PT_QUOTE_HEAD_START = 0, /* before the request line; empty lines are skipped (RFC 9112 2.2) */
    PT_QUOTE_HEAD_FIELDS,    /* after the request line: header field lines up to the empty line */
};

/* One request head, filled by pt_quote_head_parse. All-zero is a fresh parser. */
struct pt_quote_req {
    enum pt_quote_head_state state;
    uint32_t pos;  /* bytes of the buffer consumed by complete lines */
    uint32_t scan; /* bytes of the current incomplete line already checked */

    struct pt_quote_span method;
    struct pt_quote_span target; /* request-target as received */
    int minor;                   /* HTTP/1.<minor> */
    uint32_t nheaders;

    uint64_t content_length;
    uint32_t nhost;         /* Host fields seen */
    uint32_t te_codings;    /* transfer codings listed over all Transfer-Encoding fields */
    bool has_content_length;
    bool te_last_chunked;   /* the last coding listed is "chunked" */
    bool conn_close;        /* Connection: close */
    bool conn_keep_alive;   /* Connection: keep-alive */
    bool expect_other;      /* an Expect other than 100-continue: 417 */

    /* Decided when the head is complete. */
    bool chunked;         /* body is chunked */
    bool expect_continue; /* HTTP/1.1 Expect: 100-continue */
    bool keep_alive;      /* the client allows another request on this connection */
    bool is_head;         /* method HEAD: no response body */

    /* Last, so that a reset can stop at offsetof(struct pt_quote_req, headers). */
    struct pt_quote_header headers[PT_QUOTE_MAX_HEADERS];
};

/* Where the chunked-body decoder is (RFC 9112 7.1). */
enum pt_quote_chunk_state {
    PT_QUOTE_CHUNK_SIZE = 0,     /* first hex digit of a chunk size */
    PT_QUOTE_CHUNK_SIZE_MORE,    /* more hex digits, ';' (extension) or CR */
    PT_QUOTE_CHUNK_EXT,          /* inside chunk extensions, up to CR */
    PT_QUOTE_CHUNK_SIZE_LF,      /* LF ending the size line */
    PT_QUOTE_CHUNK_DATA,         /* <left> data bytes */
    PT_QUOTE_CHUNK_DATA_CR,      /* CR after the data */
    PT_QUOTE_CHUNK_DATA_LF,      /* LF after the data */
    PT_QUOTE_CHUNK_TRAILER,      /* start of a trailer line, or CR of the final empty line */
    PT_QUOTE_CHUNK_TRAILER_LINE, /* inside a trailer field line, up to CR */
    PT_QUOTE_CHUNK_TRAILER_LF,   /* LF ending a trailer field line */
    PT_QUOTE_CHUNK_END_LF,       /* LF of the final empty line */
    PT_QUOTE_CHUNK_DONE,         /* the body is complete */
};

/* A chunked-body decoder. All-zero is a fresh decoder. */
struct pt_quote_chunked {
    enum pt_quote_chunk_state state;
    uint64_t left;   /* data bytes left in the current chunk */
    uint32_t digits; /* hex digits of the current size */
    uint32_t extra;  /* extension and trailer bytes seen, bounded by PT_QUOTE_MAX_TRAILER */
};

/* What the backend remembers of a request body: its length and first bytes. */
struct pt_quote_body {
    uint64_t len;
    uint32_t prefix_len;
    char prefix[PT_QUOTE_BODY_PREFIX];
};

/* What a request asks for, decided from its path. */
enum pt_quote_kind {
    PT_QUOTE_KIND_QUOTE = 0, /* any other path: a quote */
    PT_QUOTE_KIND_ECHO,      /* /echo, /echo/...: a description of the request */
    PT_QUOTE_KIND_STATUS,    /* /status/NNN: that status */
    PT_QUOTE_KIND_DELAY,     /* /delay/MS: a quote after MS milliseconds */
    PT_QUOTE_KIND_SIZE,      /* /size/N: an N-byte body with content-length */
    PT_QUOTE_KIND_CHUNKED,   /* /chunked/N: an N-byte body in chunks */
};

struct pt_quote_route {
    enum pt_quote_kind kind;
    uint64_t arg; /* status, milliseconds or byte count */
};

/* A growable output buffer: bytes [off, len) are waiting to be written. All-zero is empty. */
struct pt_quote_buf {
    char *ptr;
    size_t off;
    size_t len;
    size_t cap;
};

/* A response body generated while it is written (/size/, /chunked/), so that a large body
 * never sits in memory. All-zero is inactive. */
struct pt_quote_stream {
    bool active;
    bool chunked;
    uint32_t chunk; /* chunk size for chunked bodies */
    uint64_t left;  /* body bytes still to generate */
    uint64_t sent;  /* body bytes generated so far (position in the pattern) */
};

/* Per-worker clock cache: the formatted second changes once a second, not per request. */
struct pt_quote_clock {
    time_t sec;
    long nsec;
    char iso[24];  /* "2026-01-02T03:04:05" */
    char date[40]; /* "Fri, 02 Jan 2026 03:04:05 GMT" (IMF-fixdate) */
    size_t date_len;
};

/* Command-line options, read-only once the workers start. */
struct pt_quote_opts {
    const char *bind;   /* address to listen on */
    int port;
    int threads;
    bool close_always;  /* --close: one response per connection */
    bool echo_all;      /* --echo: every path answers like /echo */
    char name[256];     /* --name, default: host name */
    char name_json[256 * 6]; /* the name escaped for a JSON string */
    size_t name_json_len;
};

/* What a worker's replies need: shared options and the worker's own mutable state. */
struct pt_quote_server {
    const struct pt_quote_opts *opts;
    struct pt_quote_clock clock;
    uint32_t quote_next;        /* rotates through the quotes */
    struct pt_quote_buf scratch; /* /echo bodies are built here before their head is known */
};

/* Everything a reply is built from. */
struct pt_quote_exchange {
    const char *in; /* the buffer the request's spans point into */
    const struct pt_quote_req *req;
    const struct pt_quote_body *body;
    const struct pt_quote_route *route;
    const char *client; /* "addr:port" of the peer */
    bool close;         /* the connection closes after this response */
};

/* A timer in a worker's min-heap; embedded in what it wakes. All-zero is disarmed. */
struct pt_quote_timer {
    uint64_t at_ms; /* CLOCK_MONOTONIC deadline */
    size_t slot;    /* index in the heap + 1; 0 = not armed */
};

/* Something registered with a worker's epoll: the first member of listeners and connections. */
struct pt_quote_handle;
typedef void (*pt_quote_event_cb)(struct pt_quote_handle *h, uint32_t events);

struct pt_quote_handle {
    int fd;
    pt_quote_event_cb on_event;
};

struct pt_quote_conn;

/* One worker thread: its epoll, listener, connections and timers. Touched by its thread only,
 * except wake (written by the main thread to stop it). */
struct pt_quote_worker {
    int id;
    int epfd;
    struct pt_quote_handle listener;
    struct pt_quote_handle wake; /* eventfd: stop */
    bool stopping;
    uint64_t now_ms;
    struct pt_quote_timer **heap;
    size_t nheap;
    size_t heap_cap;
    struct pt_quote_conn *conns; /* live connections, for shutdown */
    struct pt_quote_server server;
};

#endif
