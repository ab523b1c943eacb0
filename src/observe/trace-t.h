/* Types of Zipkin tracing (observe/trace.c on the workers, observe/zipkin.c on the control
 * thread): the compiled TracingService, the per-request trace context, what the data plane
 * reports when a request ends, and the per-worker span ring between the two threads.
 * Types only; prototypes are in observe/trace.h. */
#ifndef PT_OBSERVE_TRACE_T_H
#define PT_OBSERVE_TRACE_T_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* struct pt_str and struct pt_header: the core vocabulary has no separate -t.h. */
#include "core/common.h"

/* Only pointed to here, so that model/snapshot-t.h may include this file. */
struct pt_tracing_res;
struct pt_cluster;

#define PT_TRACE_MAX_HDR_TAGS 16    /* custom_tags request_header + tag_headers, per config */
#define PT_TRACE_MAX_FIXED_TAGS 16  /* custom_tags literal + environment, per config */
#define PT_TRACE_CAPTURE_BYTES 1024 /* header values kept from the request head for tags */
#define PT_TRACE_INJECT_MAX 160     /* the four x-b3-* lines at their longest, with slack */
#define PT_TRACE_RING_SLOTS 1024    /* finished requests per worker between two drains */
#define PT_TRACE_REC_BYTES 3072     /* strings of one finished request */
#define PT_TRACE_PATH_MAX 256       /* http.url path cut, Envoy's max_path_tag_length */
#define PT_TRACE_ABSENT 0xffff      /* pt_trace_ctx.tag_len: the header was not in the request */

/* Where a header tag takes its value: a request header, or an HTTP/2-style pseudo-header that
 * HTTP/1 carries elsewhere (request line, Host). */
enum pt_trace_pseudo {
    PT_TRACE_HDR = 0,       /* a real header, by name */
    PT_TRACE_PSEUDO_AUTHORITY, /* ":authority": the Host (or absolute-form authority) */
    PT_TRACE_PSEUDO_PATH,   /* ":path": the request target as received */
    PT_TRACE_PSEUDO_METHOD, /* ":method" */
    PT_TRACE_PSEUDO_SCHEME, /* ":scheme" */
};

/* A tag whose value is known at compile time (custom_tags literal and environment). */
struct pt_trace_fixed_tag {
    struct pt_str name;
    struct pt_str value;
};

/* A tag taken from a request header (custom_tags request_header and tag_headers). */
struct pt_trace_hdr_tag {
    struct pt_str name;     /* the tag */
    struct pt_str header;   /* lowercased header name */
    struct pt_str dflt;     /* default_value; empty: no tag when the header is absent */
    enum pt_trace_pseudo pseudo;
};

/* A resolved collector address. */
struct pt_trace_collector {
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

/* A compiled TracingService (driver zipkin): immutable, reference-counted, shared by the
 * snapshot that workers read and by the exporter. Built by pt_trace_config_new. */
struct pt_trace_config {
    atomic_int _refcnt;
    uint32_t client_per10k;  /* sampling.client as a share of 10000 (Envoy's FractionalPercent) */
    uint32_t random_per10k;  /* sampling.random */
    uint32_t overall_per10k; /* sampling.overall */
    bool trace_id_128bit;    /* new traces get a 128-bit id (default true, as Emissary) */
    bool shared_span_context; /* kept for completeness: only SERVER spans share, we emit CLIENT */
    char *collector_endpoint; /* path, default "/api/v2/spans" */
    char *collector_host;     /* Host header: collector_hostname, else the cluster name */
    char *cluster_name;       /* the collector's Emissary cluster name, for logs */
    char *service_name;       /* localEndpoint.serviceName: "<AMBASSADOR_ID|ambassador>-<ns>",
                               * lowercase */
    char local_ip[INET6_ADDRSTRLEN]; /* localEndpoint.ipv4 (or ipv6) */
    bool local_ipv6;
    struct pt_trace_collector *collectors;
    uint32_t ncollectors;
    struct pt_trace_fixed_tag *fixed;
    uint32_t nfixed;
    struct pt_trace_hdr_tag *hdr;
    uint32_t nhdr;
};

/* What pt_trace_config_new builds from. Only <res> is required. */
struct pt_trace_params {
    const struct pt_tracing_res *res;
    const char *ambassador_id;        /* AMBASSADOR_ID as set; NULL or "": "ambassador" */
    const char *ambassador_namespace; /* AMBASSADOR_NAMESPACE; NULL or "": "default" */
    const struct pt_cluster *collector; /* the TracingService's cluster: name and endpoints
                                         * (may have none yet while DNS answers); NULL: none */
    const char *local_ip;             /* localEndpoint address; NULL: the first non-loopback
                                       * IPv4 of the host, as Envoy's getLocalAddress */
};

/* The request head as pt_trace_start sees it. The slices need only live during the call. */
struct pt_trace_head {
    const struct pt_header *headers;
    size_t nheaders;
    struct pt_str method;
    struct pt_str authority; /* Host, or the absolute-form authority */
    struct pt_str path;      /* the request target as received (":path") */
    struct pt_str scheme;    /* "http" or "https" (":scheme") */
};

/* Trace context flags, one bit each. */
#define PT_TRACE_F_ACTIVE  0x01 /* a context exists: inject x-b3-*, call pt_trace_finish */
#define PT_TRACE_F_SAMPLED 0x02 /* the spans will be reported */
#define PT_TRACE_F_PARENT  0x04 /* the request carried a span context: the HCM span has a parent */
#define PT_TRACE_F_DEBUG   0x08 /* the b3 header's sampling flag was 'd' */
/* Record flags only (struct pt_trace_record, never a context): */
#define PT_TRACE_F_CALL    0x10 /* a call span (pt_trace_call_end), not a request's two spans */
#define PT_TRACE_F_CALL_HTTP 0x20 /* ... of an HTTP call (else gRPC): the tags of Envoy's HTTP
                                   * async client instead of its gRPC client's */
#define PT_TRACE_F_ERROR   0x40 /* ... that failed: error=true */

/* Why a request is traced, as Envoy's trace reason (x-request-id character 14). */
enum pt_trace_reason {
    PT_TRACE_REASON_NONE = 0, /* not selected by sampling (the B3 flag may still say sampled) */
    PT_TRACE_REASON_SAMPLING, /* random sampling */
    PT_TRACE_REASON_CLIENT,   /* x-client-trace-id with client sampling */
};

/* The trace state of one request, embedded in the downstream session. Only <flags> needs to be
 * zero for an idle context: pt_trace_start fills the rest. */
struct pt_trace_ctx {
    uint64_t trace_hi, trace_lo; /* trace_hi 0: a 64-bit trace id */
    uint64_t parent_id;          /* the incoming span id (PT_TRACE_F_PARENT) */
    uint64_t span_id;            /* the HCM span */
    uint64_t child_id;           /* the router span: what the upstream sees in x-b3-spanid */
    uint64_t start_us;           /* epoch microseconds of the request start (sampled only) */
    uint64_t start_mono_us;      /* the same instant on the monotonic clock */
    uint64_t up_start_mono_us;   /* upstream request begun; 0: never (no router span) */
    uint64_t up_end_mono_us;     /* upstream response complete or failed; 0: not yet */
    uint32_t flags;              /* PT_TRACE_F_* */
    uint8_t reason;              /* enum pt_trace_reason */
    uint8_t ntags;               /* header tag values captured, in config->hdr order */
    uint16_t used;               /* bytes of buf in use */
    uint16_t ctid_off, ctid_len; /* x-client-trace-id; ctid_len PT_TRACE_ABSENT: none */
    uint16_t tag_off[PT_TRACE_MAX_HDR_TAGS];
    uint16_t tag_len[PT_TRACE_MAX_HDR_TAGS]; /* PT_TRACE_ABSENT: header not present */
    char buf[PT_TRACE_CAPTURE_BYTES];
};

/* The trace context of one call that a request makes to a policy service (AuthService,
 * RateLimitService), set by pt_trace_call_begin and owned by the caller's call object: a copy of
 * what the call span needs, so that the span does not depend on the request's context (a call
 * may end before or after its request's spans are recorded). All-zero: not traced. */
struct pt_trace_call {
    uint64_t trace_hi, trace_lo; /* the request's trace id */
    uint64_t parent_id;          /* the request's HCM span: the call span's parent */
    uint64_t span_id;            /* the call span: what the service sees in x-b3-spanid */
    uint64_t start_us;           /* epoch microseconds of the call start (sampled only) */
    uint64_t start_mono_us;      /* the same instant on the monotonic clock */
    uint64_t end_mono_us;        /* 0: pt_trace_call_end ends the span when it is called */
    uint32_t flags;              /* PT_TRACE_F_ACTIVE, _SAMPLED, _DEBUG of the request */
};

/* Which of Envoy's async clients a call span looks like: its tags. */
enum pt_trace_call_kind {
    PT_TRACE_CALL_GRPC = 0, /* the gRPC client (ext_authz gRPC, ratelimit): upstream_cluster,
                             * upstream_address (when given), component, the caller's tags, error */
    PT_TRACE_CALL_HTTP,     /* the HTTP client (ext_authz HTTP): the caller's tags, then the
                             * router span's upstream tags */
};

#define PT_TRACE_CALL_TAGS 4 /* caller tags per call span */

/* What the caller knows when a call ends. Slices need only live during pt_trace_call_end;
 * empty ones are left out of the span (or written as Envoy's default, noted per field). */
struct pt_trace_call_info {
    struct pt_str cluster;          /* Envoy's cluster name ("cluster_extauth_auth_default"):
                                     * the span is "async <cluster> egress", tag upstream_cluster */
    struct pt_str upstream_address; /* "ip:port" of the endpoint used; empty: none (no
                                     * connection). gRPC: upstream_address; HTTP: also
                                     * peer.address, as the router span */
    struct pt_str stats_name;       /* HTTP: upstream_cluster.name; empty: <cluster> */
    struct pt_str response_flags;   /* HTTP: Envoy short flags (UF, UT); empty: "-" */
    int status;                     /* HTTP: the answer's status (http.status_code); 0: none */
    uint8_t kind;                   /* enum pt_trace_call_kind */
    bool error;                     /* error=true (HTTP: also for status 0 and 5xx, as Envoy) */
    int ntags;                      /* caller tags, 0..PT_TRACE_CALL_TAGS; an empty value is
                                     * left out */
    struct pt_str tag_key[PT_TRACE_CALL_TAGS], tag_value[PT_TRACE_CALL_TAGS];
};

/* What the data plane knows when a request ends. Slices need only live during pt_trace_finish;
 * empty ones are left out of the spans (or written as Envoy's default, noted per field). */
struct pt_trace_request_info {
    struct pt_str method;
    struct pt_str authority;     /* the request's Host: the HCM span name and http.url host */
    struct pt_str path;          /* original :path with query, before any rewrite */
    struct pt_str scheme;        /* x-forwarded-proto as forwarded: "http" / "https" */
    struct pt_str protocol;      /* "HTTP/1.1", "HTTP/1.0", "HTTP/2" */
    struct pt_str user_agent;    /* empty: "-" */
    struct pt_str request_id;    /* x-request-id as forwarded upstream */
    struct pt_str peer_ip;       /* downstream client IP (no port) */
    struct pt_str upstream_address;  /* "ip:port" of the endpoint used; empty: none */
    struct pt_str upstream_protocol; /* empty: same as protocol */
    struct pt_str cluster_name;  /* "cluster_quote_default"; empty: no route/cluster */
    struct pt_str stats_name;    /* the cluster's alt_stat_name: "quote" */
    struct pt_str response_flags; /* Envoy short flags; empty: "-" */
    int status;                  /* status sent to the client; 0: none */
    int upstream_status;         /* status the upstream answered; 0: none (timeout, reset) */
    uint64_t bytes_received;     /* request bytes from the client (request_size) */
    uint64_t bytes_sent;         /* response bytes to the client (response_size) */
};

/* String fields of a finished request in the ring. */
enum pt_trace_field {
    PT_TRF_METHOD = 0,
    PT_TRF_AUTHORITY,
    PT_TRF_PATH,
    PT_TRF_SCHEME,
    PT_TRF_PROTOCOL,
    PT_TRF_USER_AGENT,
    PT_TRF_REQUEST_ID,
    PT_TRF_CLIENT_TRACE_ID,
    PT_TRF_PEER_IP,
    PT_TRF_UP_ADDRESS,
    PT_TRF_UP_PROTOCOL,
    PT_TRF_CLUSTER,
    PT_TRF_STATS_NAME,
    PT_TRF_FLAGS,
    PT_TRF_COUNT
};

#define PT_TRACE_MAX_TAGS (PT_TRACE_MAX_FIXED_TAGS + PT_TRACE_MAX_HDR_TAGS)

/* One finished, sampled request (both spans' data) or, with PT_TRACE_F_CALL, one call span,
 * strings copied into buf. Written by the worker into its ring slot, read in place by the
 * exporter. A call record uses the child fields for the call span (span_id is its parent, the
 * HCM span), upstream_status for the HTTP status, and the CLUSTER, STATS_NAME, UP_ADDRESS and
 * FLAGS strings; its tags are the caller's. */
struct pt_trace_record {
    uint64_t trace_hi, trace_lo, parent_id, span_id, child_id;
    uint64_t start_us, duration_us;             /* HCM span */
    uint64_t child_start_us, child_duration_us; /* router span; child_duration_us 0: none */
    uint64_t bytes_received, bytes_sent;
    int32_t status, upstream_status;
    uint32_t flags;                             /* PT_TRACE_F_* of the context, and record flags */
    uint16_t used;
    uint16_t ntags;
    uint16_t str_off[PT_TRF_COUNT], str_len[PT_TRF_COUNT];
    uint16_t tag_off[2 * PT_TRACE_MAX_TAGS], tag_len[2 * PT_TRACE_MAX_TAGS]; /* key, value */
    char buf[PT_TRACE_REC_BYTES];
};

/* A worker's tracing state: its id generator and a single-producer (the worker) single-consumer
 * (the exporter) ring of finished requests. head and tail sit on their own cache lines. */
struct pt_trace_worker {
    _Alignas(64) _Atomic uint32_t _head; /* next slot the worker writes */
    uint64_t _rng;                       /* splitmix64 state */
    _Atomic uint64_t _dropped;           /* spans dropped because the ring was full */
    _Alignas(64) _Atomic uint32_t _tail; /* next slot the exporter reads */
    _Alignas(64) int id;
    struct pt_trace_record *_slots;      /* PT_TRACE_RING_SLOTS */
};

#endif
