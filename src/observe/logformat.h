/* Access-log formats: an Envoy format string (envoy_log_type: text) or a JSON key -> format map
 * (json, typed_json), compiled once per configuration into a small program of literal chunks
 * and command operators that observe/accesslog.c runs for every request. config/compile.c
 * compiles the `ambassador` Module's settings; the snapshot owns the result.
 *
 * Values follow Envoy 1.37 (what Emissary 4 ships): in text an unset value prints `-`; in JSON
 * a value that is exactly one operator is typed (RESPONSE_CODE, BYTES_*, DURATION are numbers,
 * an unset value is null) and a value that mixes text and operators is a string with `-` for
 * unset parts. Keys are written sorted, as Envoy's JSON formatter does since 1.33. */
#ifndef PT_OBSERVE_LOGFORMAT_H
#define PT_OBSERVE_LOGFORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "model/resource-t.h"

/* Emissary's default text line (reference/envoy-compat.md §2.3), without its newline. */
#define PT_LOGFMT_EMISSARY_TEXT                                                                    \
    "ACCESS [%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "      \
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "                   \
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "       \
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\""

/* Request headers a format may name beyond the ones Portico keeps anyway (pt_logreq). */
#define PT_LOGFMT_MAX_HEADERS 16

/* Steps of a compiled format. */
enum pt_logop {
    PT_LOGOP_TEXT = 0,                  /* literal bytes: text[off, off + len) */
    PT_LOGOP_KEY,                       /* JSON: `{"key":` or `,"key":` (text), then nvalue items */
    PT_LOGOP_START_TIME,                /* len 0: Envoy's default; else a strftime pattern */
    PT_LOGOP_REQ,                       /* field (enum pt_logreq), alt: the `?` alternative */
    PT_LOGOP_RESP,                      /* field (enum pt_logresp) */
    PT_LOGOP_PROTOCOL,
    PT_LOGOP_RESPONSE_CODE,
    PT_LOGOP_RESPONSE_FLAGS,
    PT_LOGOP_BYTES_RECEIVED,
    PT_LOGOP_BYTES_SENT,
    PT_LOGOP_DURATION,
    PT_LOGOP_UPSTREAM_HOST,
    PT_LOGOP_UPSTREAM_CLUSTER,          /* the stats (alt_stat_name) name, as Envoy */
    PT_LOGOP_UPSTREAM_CLUSTER_RAW,      /* the cluster's own name */
    PT_LOGOP_UPSTREAM_LOCAL_ADDRESS,
    PT_LOGOP_UPSTREAM_TRANSPORT_FAILURE_REASON,
    PT_LOGOP_DOWNSTREAM_REMOTE_ADDRESS,
    PT_LOGOP_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT,
    PT_LOGOP_DOWNSTREAM_LOCAL_ADDRESS,
    PT_LOGOP_DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT,
    PT_LOGOP_REQUESTED_SERVER_NAME,
    PT_LOGOP_DYNAMIC_METADATA,          /* never set in Portico */
    PT_LOGOP_DOWNSTREAM_LOCAL_PORT,
    PT_LOGOP_DOWNSTREAM_REMOTE_PORT,
    PT_LOGOP_UPSTREAM_REMOTE_ADDRESS,   /* unset in request headers: no upstream chosen yet */
    PT_LOGOP_UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT,
    PT_LOGOP_UPSTREAM_REMOTE_PORT,
};

/* What %REQ(X)% reads. The first ones are kept for every request (proxy/session.c); names
 * beyond them get a header slot: PT_LOGREQ_HEADER + i names headers[i]. */
enum pt_logreq {
    PT_LOGREQ_NONE = 0,
    PT_LOGREQ_METHOD,                   /* :method */
    PT_LOGREQ_PATH,                     /* :path and x-envoy-original-path: the target as received */
    PT_LOGREQ_AUTHORITY,                /* :authority and host */
    PT_LOGREQ_SCHEME,                   /* :scheme: https on TLS connections, else http */
    PT_LOGREQ_XFF,                      /* x-forwarded-for as forwarded (client address appended) */
    PT_LOGREQ_USER_AGENT,
    PT_LOGREQ_REQUEST_ID,               /* x-request-id, the generated one when the client sent none */
    PT_LOGREQ_HEADER,
};

/* What %RESP(X)% reads: the headers Portico writes or keeps; any other name is never set. */
enum pt_logresp {
    PT_LOGRESP_OTHER = 0,
    PT_LOGRESP_SERVICE_TIME,            /* x-envoy-upstream-service-time */
    PT_LOGRESP_SERVER,                  /* server: always "envoy" (Emissary's server_name) */
    PT_LOGRESP_CONTENT_TYPE,
    PT_LOGRESP_HEADER,                  /* PT_LOGFMT_LIVE: + i names headers[i] */
};

/* One step. */
struct pt_logitem {
    uint8_t op;                         /* enum pt_logop */
    uint8_t field, alt;                 /* REQ: enum pt_logreq (+ slot); RESP: enum pt_logresp */
    uint16_t max_len;                   /* `:N` truncation of string values; 0: none */
    uint16_t nvalue;                    /* KEY: how many items the value has */
    uint32_t off, len;                  /* TEXT, KEY, START_TIME pattern: bytes in text */
};

/* A compiled format; read-only once built, shared by every worker. */
struct pt_logfmt {
    bool json;
    struct pt_logitem *items;
    uint32_t nitems;
    char *text;                         /* literal chunks, keys, time patterns, header names */
    struct pt_str headers[PT_LOGFMT_MAX_HEADERS]; /* lower-case names (in text) of REQ() slots */
    uint16_t header_max[PT_LOGFMT_MAX_HEADERS];   /* bytes of each kept: the largest `:N`, or 256 */
    uint8_t nheaders;
    uint8_t needs;                      /* PT_LOGFMT_NEEDS_*: what the proxy must look up */
    uint8_t flags;                      /* PT_LOGFMT_LIVE, PT_LOGFMT_OMIT_EMPTY */
};

/* How a value format (pt_logfmt_compile_value) reads and writes. */
#define PT_LOGFMT_LIVE       0x01 /* REQ()/RESP() of any header, read from the message itself
                                   * (struct pt_logctx) or from the record's kept copies */
#define PT_LOGFMT_OMIT_EMPTY 0x02 /* an unset value is empty, not "-" (Envoy's header values) */

/* What a value format reads beyond the request's record (pt_logfmt_render). */
struct pt_logctx {
    const struct pt_header *req;  /* the request's headers; NULL: only what the record kept */
    size_t nreq;
    const struct pt_header *resp; /* the response's headers; NULL: none (yet) */
    size_t nresp;
    bool no_upstream;             /* request headers: Envoy has chosen no upstream host yet */
};

struct pt_req_record;

/* Values a format uses that cost a system call: the proxy fills them into the request's record
 * (struct pt_req_record) only when its format says so. */
#define PT_LOGFMT_NEEDS_LOCAL_ADDR          0x01 /* the address the client connected to */
#define PT_LOGFMT_NEEDS_UPSTREAM_LOCAL_ADDR 0x02 /* the upstream connection's local address */

/* pt_logfmt_compile_text: compiles an Envoy format string <format>; a newline is appended when
 * it does not end with one. Returns the program (free it with pt_logfmt_free), or NULL with a
 * message in <err> (unknown operator, bad syntax: the byte position is given). On success <err>
 * is empty or holds a notice (e.g. a RESP() header Portico never sees). */
struct pt_logfmt *pt_logfmt_compile_text(const char *format, char *err, size_t errlen);

/* pt_logfmt_compile_json: compiles <n> key -> format pairs into one JSON object per line, keys
 * sorted byte-wise. Errors and notices as pt_logfmt_compile_text, the message naming the key. */
struct pt_logfmt *pt_logfmt_compile_json(const struct pt_kv *kv, size_t n, char *err, size_t errlen);

/* pt_logfmt_compile_value: compiles <value> as a header value or a response body: Envoy's
 * format string, nothing appended, with <flags> (PT_LOGFMT_LIVE, PT_LOGFMT_OMIT_EMPTY). Operators
 * Portico cannot fill (UPSTREAM_METADATA, DYNAMIC_METADATA, CLUSTER_METADATA, FILTER_STATE) are
 * errors here; ENVIRONMENT(X) and HOSTNAME are read now and become text. Returns NULL with a
 * message in <err>, or the program; a value without any operator compiles too (the caller
 * keeps those as text: pt_logfmt_is_text). */
struct pt_logfmt *pt_logfmt_compile_value(const char *value, unsigned flags, char *err, size_t errlen);

/* pt_logfmt_compile_json_value: pt_logfmt_compile_json with the <flags> and the operator rules
 * of pt_logfmt_compile_value (an error response's json_format body). */
struct pt_logfmt *pt_logfmt_compile_json_value(const struct pt_kv *kv, size_t n, unsigned flags, char *err,
                                               size_t errlen);

/* pt_logfmt_is_text: whether <f> is only literal text (no operator): then <text> (NULL allowed)
 * receives it. */
bool pt_logfmt_is_text(const struct pt_logfmt *f, struct pt_str *text);

/* pt_logfmt_render: writes <f> for <rec> (and <ctx>, NULL: the access log's values only) into
 * <out> (<cap> bytes); returns the length, and sets *<cut> when the value did not fit (the bytes
 * that fit are there). No allocation. */
size_t pt_logfmt_render(struct pt_req_record *rec, const struct pt_logfmt *f, const struct pt_logctx *ctx,
                        char *out, size_t cap, bool *cut);

/* pt_logfmt_emissary_json: the keys Emissary logs for envoy_log_type json with no format
 * (reference/envoy-compat.md §2.3; the Datadog trace keys are left out). Never NULL. */
struct pt_logfmt *pt_logfmt_emissary_json(void);

/* pt_logfmt_free: frees <f>; NULL is allowed. */
void pt_logfmt_free(struct pt_logfmt *f);

/* pt_logfmt_time: writes <ms> (Unix time in ms, UTC) as the START_TIME pattern <pat> (<plen>
 * bytes) into <out> (<cap> bytes, at most 256 used) and returns the length. strftime's
 * conversions plus Envoy's: %s (epoch seconds), %f and %1f..%9f (fraction digits), %E1S..%E9S
 * and %E*S (seconds with a fraction), %E1f..%E9f, %Ez (+00:00). The part that only changes once
 * a second is cached per thread. */
size_t pt_logfmt_time(const char *pat, size_t plen, uint64_t ms, char *out, size_t cap);

struct pt_header;
struct pt_req_record;
struct pt_logsink;
struct pt_str_off;

/* The access log (observe/accesslog.c): it reads only the request's record. */

/* pt_accesslog_request: appends the line of <rec> (in rec->snap's format, Emissary's default
 * line when it has none) to <sink>, which is written when it fills or half a second later. A
 * record whose log_len is 0 (nothing to log) is skipped; log_len is 0 afterwards. */
void pt_accesslog_request(struct pt_logsink *sink, struct pt_req_record *rec);

/* pt_accesslog_flush: writes what <sink> holds to sink->fd (errors are ignored: a log that
 * cannot be written must not stop the proxy). */
void pt_accesslog_flush(struct pt_logsink *sink);

/* pt_accesslog_capture: copies the request headers (<n> at <h>) named by rec->snap's format
 * into rec->log (bounded, long values cut) so they outlive the head buffer. The proxy calls it
 * when the request starts, after the fields every format uses, when the format has header
 * slots. */
void pt_accesslog_capture(struct pt_req_record *rec, const struct pt_header *h, size_t n);

/* pt_accesslog_capture_response: keeps the response's content-type for %RESP(CONTENT-TYPE)%
 * from the <n> parsed upstream headers <h>. Call it once the response head is parsed. */
void pt_accesslog_capture_response(struct pt_req_record *rec, const struct pt_header *h, size_t n);

/* pt_accesslog_keep: copies <s> (cut to 256 bytes; less when rec->log is nearly full) behind
 * what rec->log already keeps and records where it went in <at> (one of rec's lf_* fields). */
void pt_accesslog_keep(struct pt_req_record *rec, struct pt_str s, struct pt_str_off *at);

#endif
