/* The compiled configuration that workers run on: immutable once published, shared by all
 * workers, freed when the last holder releases it. Types only: config/compile.c builds it,
 * config/snapshot.h has its lifetime (ref/release), control/ publishes it, proxy/ reads it.
 * No OpenSSL header: TLS contexts are `struct ssl_ctx_st *` (OpenSSL's SSL_CTX), used through
 * tls/tls.h. */
#ifndef PT_MODEL_SNAPSHOT_T_H
#define PT_MODEL_SNAPSHOT_T_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <sys/socket.h>

#include "core/common.h"
#include "model/resource-t.h"
#include "model/traffic-t.h"
#include "model/upconn-t.h"

struct ssl_ctx_st; /* SSL_CTX */
struct pt_health_cfg; /* cluster/health-t.h */
struct pt_health;
struct pt_lb_table; /* cluster/lb-t.h */

#define PT_MAX_WORKERS 64

/* A backend address. */
struct pt_endpoint {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char name[64]; /* "ip:port", for logs and %UPSTREAM_HOST% */
};

/* An upstream cluster, named and counted as Emissary names it (reference/envoy-compat.md §1.6). */
struct pt_cluster {
    uint32_t id;             /* index in snapshot->clusters */
    char *name;              /* "cluster_quote_default" */
    char *stats_name;        /* alt_stat_name: "quote" */
    char *service;           /* as written in the Mapping */
    char *host;              /* service host name, for auto_host_rewrite */
    int port;
    bool tls;                /* originate TLS */
    bool http2;              /* speak HTTP/2 to it (Mapping grpc: true; proxy/h2client.c) */
    struct ssl_ctx_st *tls_ctx; /* origination context (owned reference) */
    char *sni;               /* SNI to send, only when the TLSContext sets `sni` */
    struct pt_endpoint *endpoints;
    uint32_t nendpoints;
    uint32_t connect_timeout_ms;
    uint32_t stats_idx;      /* pt_stats_cluster_index(stats_name); set when applied, 0 before */
    bool dns_pending;        /* its name has not had a first DNS answer yet */
    /* Mapping health_checks (cluster/health.h): the checks (owned; nchecks 0: none, the
     * cluster is not checked and nothing ejects its endpoints), and its endpoints' health, a
     * reference given when the snapshot is applied (pt_health_attach), NULL before. */
    struct pt_health_cfg *checks;
    uint32_t nchecks;
    struct pt_health *health;
    struct pt_breakers *breakers; /* its circuit breakers (cluster/breakers.h: one block per
                                   * cluster name, not owned); NULL: none counted */
    uint8_t lb_policy;       /* enum pt_lb_policy (cluster/lb-t.h): its load_balancer policy */
    struct pt_lb_table *lb_table; /* ring_hash, maglev: built once by compile, read by every
                                   * worker (cluster/lb.h; owned); else NULL */
    struct pt_up_opts up_opts;    /* keepalive, idle timeout, max lifetime of its connections
                                   * (model/upconn-t.h): part of the pool's key */
    uint8_t dns_type;             /* enum pt_dns_type: a DNS name's addresses, or its first */
    bool respect_dns_ttl;         /* its DNS name is refreshed at the answer's TTL, not every
                                   * 5 s (cluster/dns.h) */
};

struct pt_logfmt;

/* A route's hash policy for a ring_hash or maglev cluster (Envoy's RouteAction.HashPolicy as
 * Emissary writes it from load_balancer), compiled; proxy/lbhash.c evaluates it. One block,
 * strings behind it. */
enum pt_lb_hash_kind {
    PT_LB_HASH_NONE = 0,    /* source_ip: false: no hash (a random pick) */
    PT_LB_HASH_COOKIE,      /* the cookie <name>'s value */
    PT_LB_HASH_HEADER,      /* the header <name>'s value */
    PT_LB_HASH_SOURCE_IP,   /* the client's address, without its port */
};

struct pt_lb_hash {
    uint8_t kind;               /* enum pt_lb_hash_kind */
    bool generate;              /* cookie with a ttl: a request without it gets one made, sent
                                 * back in a Set-Cookie */
    struct pt_str name;         /* the cookie's name, or the header's (lower case) */
    struct pt_str set_prefix;   /* the Set-Cookie value before the 16 hex digits: `name="` */
    struct pt_str set_suffix;   /* ... and after: `"; Max-Age=60; Path=/; HttpOnly` */
};

struct pt_hdr_op {
    struct pt_str name;
    struct pt_str value;        /* the text as configured */
    bool append;
    struct pt_logfmt *fmt;      /* the value has %...% operators: compiled (owned); NULL: the
                                 * value is plain text, written as it is */
};

/* error_response_overrides, compiled: a response (upstream or local) whose status is one of
 * these gets the rule's body instead of its own (proxy/format.c). */
struct pt_error_override {
    int status;
    struct pt_logfmt *body;     /* owned */
    char *content_type;         /* owned */
};

struct pt_error_overrides {
    struct pt_error_override *rules;
    uint32_t n;
    /* Request headers (lower case, beyond those every request keeps) that the bodies or the
     * response headers read with %REQ()%: kept when the request starts (owned). */
    struct pt_str *keep;
    uint32_t nkeep;
};

/* One entry of a rate-limit descriptor (Envoy's RateLimit.Action, compiled from a label). */
struct pt_rl_entry {
    uint8_t kind;               /* enum pt_rl_label_kind */
    struct pt_str key;
    struct pt_str value;        /* generic_key's value; request_headers' header name */
};

/* A descriptor a request sends its RateLimitService: one label group of the Mapping, the
 * Module's default labels first. */
struct pt_rl_descriptor {
    struct pt_rl_entry *entries;
    uint32_t nentries;
};

/* A route's CORS policy, compiled once from a Mapping's (or the Module's) `cors` by
 * http/cors.c as Envoy's CorsPolicy: one block, strings behind the struct. */
struct pt_cors {
    struct pt_str *origins;      /* exact, case-sensitive */
    uint32_t norigins;
    bool any_origin;             /* "*" is one of them: every Origin is allowed (and echoed) */
    bool credentials;            /* Access-Control-Allow-Credentials: true */
    struct pt_str allow_methods; /* "GET, POST"; "*": the preflight's own method is echoed */
    struct pt_str allow_headers; /* likewise; "*": Access-Control-Request-Headers is echoed */
    struct pt_str expose_headers;
    struct pt_str max_age;       /* empty: none */
};

/* A host_redirect Mapping's answer, Envoy's RedirectAction as Emissary writes it: Location is
 * <scheme><host><path><query>, and no upstream is contacted. One block, strings behind it. */
struct pt_redirect {
    int status;           /* 301 (default), 302, 303, 307, 308 */
    struct pt_str scheme; /* "http://" or "https://" from the service; empty: the request's */
    struct pt_str host;   /* the service without its scheme: host[:port] */
    struct pt_str path;   /* path_redirect ("/" in front when it had none); empty: none */
    bool path_has_query;  /* path_redirect carries its own query: the request's is dropped */
    bool rewrite;         /* prefix_redirect / regex_redirect: the route's rewrite makes the path */
};

/* What a matched route does: the route module returns it as the opaque action. */
struct pt_route_action {
    struct pt_cluster *cluster;
    uint32_t timeout_ms;       /* 0: none */
    uint32_t idle_timeout_ms;  /* 0: default */
    struct pt_str host_rewrite;
    bool auto_host_rewrite;
    struct pt_hdr_op *add_req;   uint32_t nadd_req;
    struct pt_str *remove_req;   uint32_t nremove_req;
    struct pt_hdr_op *add_resp;  uint32_t nadd_resp;
    struct pt_str *remove_resp;  uint32_t nremove_resp;
    struct pt_str *upgrades;     uint32_t nupgrades; /* allow_upgrade, lowercase */
    bool bypass_auth;           /* no AuthService check */
    struct pt_hdr_op *auth_ctx;  uint32_t nauth_ctx; /* auth_context_extensions */
    struct pt_rl_descriptor *rl; uint32_t nrl;       /* labels of the RateLimitService's domain */
    const char *mapping;        /* "ns/name", for diag */
    struct pt_cors *cors;       /* the Mapping's CORS policy, else the Module's; NULL: none
                                 * (owned; http/cors.h) */
    struct pt_redirect *redirect; /* host_redirect: answered with this; cluster is NULL (owned) */
    bool dynamic_req;           /* some add_req value has operators (fmt) */
    /* The error_response_overrides its responses get: its own, the Module's, or none
     * (bypass_error_response_overrides); also what add_resp's %REQ()% keeps. NULL: none. */
    const struct pt_error_overrides *error_overrides;
    struct pt_error_overrides own_overrides; /* the Mapping's own, when it has any */
    struct pt_str *resp_keep;   /* request headers its response side reads (add_resp and
                                 * error_overrides %REQ()%), kept when it is routed (owned) */
    uint32_t nresp_keep;
    struct pt_retry_policy *retry; /* retry_policy (the Mapping's, else the Module's); NULL:
                                    * none (owned) */
    struct pt_lb_hash *lb_hash; /* its hash policy (ring_hash, maglev); NULL: none (owned) */
    /* A shadow Mapping's action (route/ gives it to its group's routes as their `shadow`): the
     * percentage of their requests mirrored to `cluster` (Emissary's weight, default 100). */
    uint8_t shadow_percent;
};

/* A Host as bound to a Listener: its hostname glob, what to do with cleartext, its routes. */
struct pt_vhost {
    const char *hostname;
    enum pt_insecure_action insecure_action;
    struct pt_route_table *routes;
    struct ssl_ctx_st *tls_ctx; /* termination context for this Host (owned), or NULL */
    bool tls_tried;             /* compile: tls_ctx was built (or failed) already */
    bool synthesized;           /* the default Host made when none exists */
};

/* Listening sockets shared between snapshots (one fd per worker, SO_REUSEPORT): a worker
 * accepts on fds[its id]. The control layer binds them (control/listen.c) after compiling and
 * drops its reference when the last snapshot that uses them is freed. */
struct pt_listen_sock {
    int port;
    int refcnt;          /* guarded by control/listen.c's registry lock */
    int nfds;
    int fds[];           /* one per worker */
};

#define PT_H2_MAX_STREAMS_DEFAULT 100 /* Listener http2MaxConcurrentStreams when absent */

struct pt_listener {
    char *name;                 /* "ns/name" */
    int port;
    enum pt_listener_proto protocol;
    enum pt_security_model security_model;
    int l7_depth;
    uint32_t h2_max_streams;    /* SETTINGS_MAX_CONCURRENT_STREAMS of its HTTP/2 connections */
    char *stats_prefix;         /* ingress_http / ingress_https / statsPrefix */
    uint32_t stats_prefix_idx;  /* pt_stats_prefix_index(stats_prefix); set when applied, 0 before */
    uint32_t stats_idx;         /* pt_stats_listener_index("0.0.0.0_<port>"); likewise */
    struct pt_vhost **vhosts;   /* sorted for lookup: exact, then suffix globs longest first, ... '*' last */
    uint32_t nvhosts;
    struct pt_listen_sock *sock; /* bound by the control layer (control/apply.c); NULL until the
                                  * snapshot is applied, and in `portico check` */
    struct ssl_ctx_st *tls_ctx; /* HTTPS: the context a handshake starts with (owned); SNI
                                 * switches to the matching Host's context */
    struct pt_tls_sni_map *sni; /* Host contexts by name (owned) */
};

struct pt_logfmt;

/* HTTP options of the `ambassador` Module that the request path reads. All-zero is Emissary's
 * default. */
#define PT_GRPCSTATS_SLOTS 32u     /* named series per cluster and worker; also the most
                                    * service/method pairs grpc_stats.services may list */
#define PT_GRPCSTATS_NAME_MAX 128u /* "service/method", longer ones count as generic */

/* The Module's grpc_stats, compiled (in the snapshot's pt_http_opts). */
struct pt_grpcstats_cfg {
    bool on;                       /* grpc_stats is given */
    bool all_methods;              /* every method gets its series (first come, bounded) */
    bool upstream_stats;           /* upstream_rq_time too */
    uint8_t n;                     /* allowlisted methods in m */
    struct {
        uint16_t len;
        char name[PT_GRPCSTATS_NAME_MAX]; /* "service/method", not NUL-terminated */
    } m[PT_GRPCSTATS_SLOTS];
};

/* The AuthService, compiled (proxy/auth.c runs it). Names are lowercase. */
struct pt_auth_config {
    struct pt_cluster *cluster;  /* the auth service (in snapshot->clusters) */
    bool grpc;                   /* envoy.service.auth.v3.Authorization/Check; else HTTP */
    bool failure_mode_allow;     /* an error lets the request through */
    bool allow_partial;          /* a body over max_body is cut (else 413) */
    uint16_t status_on_error;    /* the answer when the check fails (default 403) */
    uint32_t timeout_ms;         /* 0: none */
    int32_t max_body;            /* include_body.max_bytes; -1: the body is not sent */
    struct pt_str path_prefix;
    struct pt_str *allowed_req;  uint32_t nallowed_req;  /* request headers an HTTP check gets */
    struct pt_str *allowed_auth; uint32_t nallowed_auth; /* answer headers the request (allowed)
                                                          * or the client (denied) gets */
    struct pt_hdr_op *add;       uint32_t nadd;          /* add_auth_headers, l5d-dst-override */
};

/* The RateLimitService, compiled (proxy/ratelimit.c). */
struct pt_rls_config {
    struct pt_cluster *cluster;  /* in snapshot->clusters */
    struct pt_str domain;
    uint32_t timeout_ms;         /* 0: none */
    bool failure_mode_deny;      /* an error answers 500 (else the request passes) */
    bool resource_exhausted;     /* gRPC clients get RESOURCE_EXHAUSTED (else UNAVAILABLE) */
    struct pt_str source_cluster; /* "<AMBASSADOR_ID>-<namespace>", Envoy's node cluster */
};

struct pt_http_opts {
    bool enable_http10;          /* serve HTTP/1.0 requests (else 426 Upgrade Required) */
    bool merge_slashes;          /* "//" in a path becomes "/" before matching */
    bool reject_escaped_slashes; /* a path with %2F or %5C gets 400 */
    bool enable_grpc_web;        /* gRPC-Web requests are translated to gRPC (proxy/grpcweb.c) */
    struct pt_grpcstats_cfg grpc_stats; /* Module grpc_stats (observe/grpcstats.h counts) */
    uint32_t listener_idle_timeout_ms; /* keep-alive idle of client connections; 0: the
                                        * --idle-timeout-ms default */
    struct pt_auth_config *auth; /* the AuthService; NULL: none */
    struct pt_rls_config *rls;   /* the RateLimitService; NULL: none */
    bool auth_broken;            /* an AuthService is invalid: 500 "AuthService is misconfigured"
                                  * (fail closed; reported by config/resources.c) */
    struct pt_ip_policy ip;      /* Module ip_allow / ip_deny: 403 "RBAC: access denied" (rules
                                  * owned) */
};

/* Access log settings (the `ambassador` Module). */
struct pt_log_conf {
    bool json;
    char *format;               /* envoy_log_format as written; NULL: none or a mapping */
    char *path;                 /* the file to append to; NULL: stdout (none, "", /dev/fd/1 or
                                 * /dev/stdout) */
    struct pt_logfmt *fmt;      /* compiled format (owned); NULL: Emissary's default text line */
    int fd;                     /* path opened for append by the control layer when it applied
                                 * the snapshot (> 2, closed by its on_free hook); 0: stdout */
};

/* A worker's count of requests in flight on a snapshot; padded so workers never share a line. */
struct pt_snapshot_wref {
    uint64_t inflight;
    char _pad[56];
};

/* Resource kinds counted in a snapshot for /metrics (portico_resources{kind}). */
#define PT_RESOURCE_KINDS(X)                                                                       \
    X(LISTENER, "Listener")                                                                        \
    X(HOST, "Host")                                                                                \
    X(MAPPING, "Mapping")                                                                          \
    X(TLSCONTEXT, "TLSContext")                                                                    \
    X(TRACINGSERVICE, "TracingService")                                                            \
    X(MODULE, "Module")                                                                            \
    X(SERVICE, "Service")                                                                          \
    X(ENDPOINTS, "Endpoints")                                                                      \
    X(ENDPOINTSLICE, "EndpointSlice")                                                              \
    X(SECRET, "Secret")

enum pt_resource_kind {
#define PT_RESOURCE_KIND_ENUM(id, name) PT_RK_##id,
    PT_RESOURCE_KINDS(PT_RESOURCE_KIND_ENUM)
#undef PT_RESOURCE_KIND_ENUM
    PT_RK__COUNT
};

struct pt_snapshot {
    atomic_int refcnt;
    uint64_t generation;
    struct pt_listener *listeners; uint32_t nlisteners;
    struct pt_cluster **clusters;  uint32_t nclusters;
    struct pt_vhost **vhosts;      uint32_t nvhosts;   /* owned list, for freeing */
    struct pt_route_action **actions; uint32_t nactions;
    struct pt_log_conf log;
    struct pt_http_opts http;
    struct pt_error_overrides error_overrides; /* the Module's error_response_overrides */
    struct pt_trace_config *tracing;  /* the TracingService (owned reference), NULL: off */
    struct pt_cluster *tracing_cluster; /* its collector (owned) */
    char *diag_json;            /* diag document of this configuration (admin) */
    double compile_ms;
    time_t cert_not_after;      /* earliest expiry of the certificates served; 0: none */
    uint32_t nresources[PT_RK__COUNT]; /* valid resources in force, by kind (compile; /metrics) */
    uint32_t ninvalid;          /* resources this load rejected (compile; /metrics) */
    struct pt_snapshot_wref wref[PT_MAX_WORKERS];
    /* Releases what the control layer attached when it applied the snapshot (listening sockets,
     * the log file); called first when the snapshot is freed, on whichever thread that is.
     * NULL: nothing attached (not applied). */
    void (*on_free)(struct pt_snapshot *s);
};

#endif
