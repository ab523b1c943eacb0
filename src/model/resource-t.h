/* Typed configuration resources, as read from YAML (config/load.c) or the Kubernetes API.
 * Types only. Every string is owned by the pt_resources arena that holds the resource
 * (freed all at once by pt_resources_free). They sit low (model/) because the libraries that
 * config/compile.c calls read them (tls/ its TLSContexts and Secrets, route/ a Mapping's
 * matches, cluster/ Services and Endpoints, observe/ the TracingService and log formats); the
 * data plane never sees them: it reads the snapshot (model/snapshot-t.h). */
#ifndef PT_MODEL_RESOURCE_T_H
#define PT_MODEL_RESOURCE_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/cidr.h"
#include "model/upconn-t.h"

/* Where a resource came from, for `FILE:LINE: Kind/ns/name: message`. */
struct pt_origin {
    const char *file; /* path as given, or "kubernetes" */
    int line;         /* 1-based line of the document's first key */
};

struct pt_meta {
    const char *kind;      /* "Mapping", "Host", ... */
    const char *name;
    const char *namespace; /* "default" when absent */
    const char *ambassador_id_first; /* informational: first spec.ambassador_id, or NULL */
    struct pt_kv *labels;
    size_t nlabels;
    struct pt_origin origin;
};

struct pt_kv {
    const char *key;
    const char *value;
};

/* A header or query-parameter match on a Mapping. value NULL = must be present. */
struct pt_match_kv {
    const char *name;
    const char *value;
    bool regex; /* value is a regex (headers with regex_headers / query_parameters regex) */
};

/* A header to add: value, and whether it appends (Envoy append: true is the default). */
struct pt_add_header {
    const char *name;
    const char *value;
    bool append;
};

enum pt_insecure_action { PT_INSECURE_REDIRECT = 0, PT_INSECURE_ROUTE, PT_INSECURE_REJECT };
enum pt_listener_proto { PT_PROTO_HTTP = 0, PT_PROTO_HTTPS, PT_PROTO_HTTPPROXY, PT_PROTO_HTTPSPROXY,
                         PT_PROTO_TCP, PT_PROTO_TLS };
enum pt_security_model { PT_SECURITY_XFP = 0, PT_SECURITY_SECURE, PT_SECURITY_INSECURE };

struct pt_listener_res {
    struct pt_meta meta;
    int port;
    enum pt_listener_proto protocol;
    enum pt_security_model security_model;
    const char *stats_prefix; /* NULL: ingress_http / ingress_https */
    int l7_depth;
    int h2_max_streams;      /* http2MaxConcurrentStreams; 0: absent (the default) */
    /* hostBinding: namespace.from = SELF|ALL|SELECTOR, selector labels */
    bool bind_ns_all;        /* from: ALL (also the default when hostBinding is missing) */
    bool bind_ns_self;       /* from: SELF; both false: SELECTOR or no namespace.from */
    struct pt_kv *bind_selector; /* hostBinding.selector.matchLabels */
    size_t nbind_selector;
};

/* TLS settings shared by TLSContext and Host.tls. Strings are NULL when absent. */
struct pt_tls_settings {
    const char *secret;          /* name[.namespace] */
    bool secret_namespacing;     /* default true */
    const char *cert_chain_file;
    const char *private_key_file;
    const char *ca_secret;
    const char *cacert_chain_file;
    const char *crl_secret;
    const char *crl_file;
    const char *alpn_protocols;  /* comma-separated */
    const char *sni;
    const char *min_tls_version; /* v1.0..v1.3 */
    const char *max_tls_version;
    const char **cipher_suites;
    size_t ncipher_suites;
    const char **ecdh_curves;
    size_t necdh_curves;
    bool cert_required;
    bool redirect_cleartext_from_set;
    int redirect_cleartext_from;  /* port; valid when redirect_cleartext_from_set */
};

struct pt_host_res {
    struct pt_meta meta;
    const char *hostname;             /* default "*" */
    const char *tls_secret_name;      /* tlsSecret.name */
    const char *tls_secret_namespace; /* tlsSecret.namespace; NULL: the Host's namespace */
    const char *tls_context;          /* tlsContext.name */
    bool has_tls;                     /* inline tls: {...} */
    struct pt_tls_settings tls;
    enum pt_insecure_action insecure_action;
    int insecure_additional_port;     /* -1 none */
    struct pt_kv *selector;           /* mappingSelector.matchLabels */
    size_t nselector;
};

struct pt_tlscontext_res {
    struct pt_meta meta;
    const char **hosts;
    size_t nhosts;
    struct pt_tls_settings tls;
};

/* One rate-limit label (Emissary's MappingLabelSpecifier, Envoy's RateLimit.Action). */
enum pt_rl_label_kind {
    PT_RL_GENERIC_KEY = 0,    /* key (default "generic_key") = value */
    PT_RL_REQUEST_HEADERS,    /* key = the request's header <header>; absent: no descriptor */
    PT_RL_REMOTE_ADDRESS,     /* remote_address = the client's address */
    PT_RL_SOURCE_CLUSTER,     /* source_cluster = Portico's own cluster name */
    PT_RL_DESTINATION_CLUSTER, /* destination_cluster = the route's cluster */
};

struct pt_rl_label {
    enum pt_rl_label_kind kind;
    const char *key;
    const char *value;            /* generic_key's value, or request_headers' header name */
};

/* A label group: one descriptor sent to the RateLimitService (Envoy's RateLimit). */
struct pt_rl_group {
    const char *name;
    struct pt_rl_label *labels;
    size_t nlabels;
};

/* A domain's label groups (Mapping labels, Module default_labels). */
struct pt_rl_domain {
    const char *domain;
    struct pt_rl_group *groups;
    size_t ngroups;
};

/* A CORS policy (Mapping `cors`, Module `ambassador` `cors`), as Emissary's ircors.py reads it
 * for Envoy's CorsPolicy. The lists are joined with ", " when compiled (http/cors.h). */
struct pt_cors_res {
    const char **origins;         /* exact origins ("*" allows any); a string is split at ',' */
    size_t norigins;
    const char **methods;         /* Access-Control-Allow-Methods */
    size_t nmethods;
    const char **headers;         /* Access-Control-Allow-Headers */
    size_t nheaders;
    const char **exposed_headers; /* Access-Control-Expose-Headers */
    size_t nexposed_headers;
    bool credentials;             /* Access-Control-Allow-Credentials: true */
    const char *max_age;          /* Access-Control-Max-Age, as written; NULL: none */
};

/* One error_response_overrides rule (Module or Mapping), as read: exactly one of text_format,
 * json_format, text_format_source (read into text_format by config/kinds.c). */
/* A retry_policy as written (Mapping or Module). */
struct pt_retry_policy_res {
    const char *retry_on;         /* NULL: no retry_policy */
    int num_retries;              /* -1 unset: 1 */
    const char *per_try_timeout;  /* a duration: "0.5s", "250ms" */
    unsigned on;                  /* retry_on read: PT_RETRY_* (model/traffic-t.h) */
    int per_try_timeout_ms;       /* per_try_timeout read; 0: none */
    int *retriable_status_codes;  /* for retry_on retriable-status-codes (Envoy's field) */
    size_t nretriable_status_codes;
};

/* One circuit_breakers entry as written; -1: unset (Envoy's default). */
struct pt_breaker_res {
    const char *priority;         /* "default" (or absent), "high": only default is used */
    int max_connections, max_pending_requests, max_requests, max_retries;
};

struct pt_error_override_res {
    int on_status_code;           /* 400..599 */
    const char *text_format;
    struct pt_kv *json_format;    /* key -> format string */
    size_t njson_format;
    bool json;                    /* json_format was given */
    const char *text_format_source; /* the file's name, as written */
    const char *content_type;     /* NULL: text/plain, or application/json for json_format */
};

/* An expected status range of an HTTP health check, both ends included. */
struct pt_status_range_res {
    int min, max;
};

/* One entry of a Mapping's health_checks (Emissary's HealthCheck), as read; config/compile.c
 * turns it into a struct pt_health_cfg (cluster/health-t.h). */
struct pt_health_check_res {
    const char *timeout;          /* a Go duration; NULL: 3s */
    const char *interval;         /* NULL: 5s */
    int healthy_threshold;        /* 0: unset (1) */
    int unhealthy_threshold;      /* 0: unset (2) */
    bool http, grpc;              /* which health_check was given (exactly one) */
    const char *path;             /* http: required */
    const char *hostname;         /* http: the Host; NULL: the cluster's name */
    struct pt_add_header *add_request_headers;
    size_t nadd_request_headers;
    const char **remove_request_headers;
    size_t nremove_request_headers;
    struct pt_status_range_res *expected_statuses;
    size_t nexpected_statuses;
    const char *upstream_name;    /* grpc: required */
    const char *authority;        /* grpc: NULL: the cluster's name */
};

/* A load_balancer (Mapping, Module `ambassador` default) as Emissary's validate_load_balancer
 * accepts it: round_robin or least_request alone; ring_hash or maglev with exactly one of a
 * cookie (name required), a header or source_ip. */
struct pt_load_balancer_res {
    const char *policy;           /* "round_robin", "least_request", "ring_hash", "maglev" */
    const char *cookie_name;      /* cookie.name; NULL: no cookie */
    const char *cookie_path;      /* cookie.path; NULL: none */
    long cookie_ttl_s;            /* cookie.ttl in seconds ("60s"); -1: no ttl */
    const char *header;           /* the header hashed; NULL: none */
    bool has_source_ip;           /* source_ip is given ... */
    bool source_ip;               /* ... with this value (false: no hash) */
};

struct pt_mapping_res {
    struct pt_meta meta;
    const char *prefix;
    bool prefix_regex;
    bool prefix_exact;
    bool case_sensitive;          /* default true */
    const char *rewrite;          /* default "/"; NULL when `rewrite: ""` */
    const char *regex_rewrite_pattern;
    const char *regex_rewrite_substitution;
    const char *hostname;         /* glob; NULL when absent ("*" for v2 Mappings without host) */
    const char *host;             /* exact (or regex with host_regex) */
    bool host_regex;
    const char *method;           /* NULL: any */
    bool method_regex;
    struct pt_match_kv *headers;
    size_t nheaders;
    struct pt_match_kv *query_parameters;
    size_t nquery_parameters;
    const char *service;          /* as written */
    int timeout_ms;               /* -1 unset (Module cluster_request_timeout_ms, else 3000); 0 disables */
    int connect_timeout_ms;       /* default 3000 */
    int idle_timeout_ms;          /* -1 unset */
    int precedence;
    int weight;                   /* -1 unset */
    struct pt_add_header *add_request_headers;
    size_t nadd_request_headers;
    struct pt_add_header *add_response_headers;
    size_t nadd_response_headers;
    const char **remove_request_headers;
    size_t nremove_request_headers;
    const char **remove_response_headers;
    size_t nremove_response_headers;
    const char *host_rewrite;
    bool auto_host_rewrite;
    const char *tls;              /* TLSContext name, or "true" for null context; NULL none */
    const char *stats_name;
    const char **allow_upgrade;   /* protocols a request may upgrade to ("websocket") */
    size_t nallow_upgrade;
    bool use_websocket;           /* deprecated spelling of allow_upgrade: [websocket] */
    bool bypass_auth;             /* no AuthService check for its requests */
    bool grpc;                    /* the service speaks HTTP/2 (h2c, or ALPN h2 with TLS) */
    struct pt_kv *auth_context_extensions; /* given to a gRPC AuthService (context_extensions) */
    size_t nauth_context_extensions;
    struct pt_rl_domain *labels;  /* rate-limit label groups, by domain */
    size_t nlabels;
    struct pt_cors_res *cors;     /* NULL: the Module's, if any */
    /* host_redirect: answered with a redirect to `service` (no cluster); the rest only then */
    bool host_redirect;
    const char *path_redirect;    /* replaces the path */
    const char *prefix_redirect;  /* replaces the matched prefix */
    const char *regex_redirect_pattern;      /* rewrites the path (RE2 substitution syntax) */
    const char *regex_redirect_substitution;
    int redirect_response_code;   /* 301 (default), 302, 303, 307 or 308 */
    struct pt_error_override_res *error_response_overrides; /* replace the Module's */
    size_t nerror_response_overrides;
    bool bypass_error_response_overrides;
    struct pt_health_check_res *health_checks; /* active checks of its cluster's endpoints */
    size_t nhealth_checks;
    struct pt_retry_policy_res retry_policy; /* retry_on NULL: the Module's */
    struct pt_breaker_res *circuit_breakers; /* NULL: the Module's */
    size_t ncircuit_breakers;
    struct pt_load_balancer_res *load_balancer; /* NULL: the Module's, else round robin */
    /* shadow: its requests are not routed here: its canary group's (the Mappings of the same
     * match keys) are mirrored to its service, `weight` percent of them (default 100) */
    bool shadow;
    /* Upstream connections (config/upconn.c; 0 and unset: the Module's, else the defaults) */
    struct pt_keepalive_res keepalive;       /* set false: the Module's */
    int cluster_idle_timeout_ms;             /* 0: unset */
    int cluster_max_connection_lifetime_ms;  /* 0: unset */
    uint8_t dns_type;                        /* enum pt_dns_type (model/upconn-t.h) */
    bool respect_dns_ttl;                    /* refresh DNS answers at their TTL */
};

struct pt_service_port {
    const char *name;    /* may be NULL */
    int port;
    int target_port;     /* numeric targetPort, or 0 when target_port_name is used */
    const char *target_port_name;
    const char *protocol;
};

struct pt_service_res {
    struct pt_meta meta;
    struct pt_service_port *ports;
    size_t nports;
    const char *cluster_ip;
};

struct pt_endpoint_addr {
    const char *ip;
};

struct pt_endpoint_port {
    const char *name;
    int port;
};

struct pt_endpoint_subset {
    struct pt_endpoint_addr *addresses; /* ready addresses only */
    size_t naddresses;
    struct pt_endpoint_port *ports;
    size_t nports;
};

struct pt_endpoints_res {
    struct pt_meta meta;
    struct pt_endpoint_subset *subsets;
    size_t nsubsets;
};

/* One endpoint of an EndpointSlice (discovery.k8s.io/v1). */
struct pt_slice_endpoint {
    const char **addresses; /* the first is used (Kubernetes: they are fungible) */
    size_t naddresses;
    bool not_ready;         /* conditions.ready is false (absent means ready) */
};

/* An EndpointSlice: load.c folds the slices of a Service into its Endpoints (one subset each),
 * so the rest of the configuration sees Endpoints only. */
struct pt_endpointslice_res {
    struct pt_meta meta;
    const char *service;      /* label kubernetes.io/service-name */
    const char *address_type; /* IPv4, IPv6 (used) or FQDN (not) */
    struct pt_slice_endpoint *endpoints;
    size_t nendpoints;
    struct pt_endpoint_port *ports;
    size_t nports;
};

struct pt_secret_res {
    struct pt_meta meta;
    const char *type;   /* kubernetes.io/tls, istio.io/key-and-cert, Opaque... */
    struct pt_kv *data; /* base64-decoded values (stringData merged); values NUL-terminated */
    size_t *data_len;   /* length of each decoded value */
    size_t ndata;
};

struct pt_custom_tag {
    const char *tag;
    const char *literal;        /* literal.value */
    const char *env_name;       /* environment.name */
    const char *env_default;    /* environment.default_value */
    const char *header_name;    /* request_header.name */
    const char *header_default; /* request_header.default_value */
};

struct pt_tracing_res {
    struct pt_meta meta;
    const char *service;
    const char *driver;
    const char *collector_endpoint;   /* default /api/v2/spans */
    const char *collector_endpoint_version; /* default HTTP_JSON */
    const char *collector_hostname;
    bool trace_id_128bit;             /* default true */
    bool shared_span_context;         /* default true */
    double sampling_overall, sampling_random, sampling_client; /* percent, default 100 */
    struct pt_custom_tag *custom_tags;
    size_t ncustom_tags;
    const char **tag_headers;
    size_t ntag_headers;
};

/* AuthService (Envoy's ext_authz as Emissary configures it). */
#define PT_AUTH_MAX_BODY (16 * 1024 * 1024) /* include_body.max_bytes at most */
struct pt_authservice_res {
    struct pt_meta meta;
    const char *auth_service;     /* [scheme://]host[:port] (required) */
    const char *path_prefix;      /* HTTP: put before the request's path */
    const char *tls;              /* TLSContext name, "true" (no context); NULL: cleartext */
    const char *proto;            /* "http" (default) or "grpc" */
    const char *protocol_version; /* "v2" (default) or "v3"; grpc needs v3 */
    int timeout_ms;               /* default 5000 */
    const char **allowed_request_headers;
    size_t nallowed_request_headers;
    const char **allowed_authorization_headers;
    size_t nallowed_authorization_headers;
    struct pt_kv *add_auth_headers;
    size_t nadd_auth_headers;
    bool allow_request_body;      /* old spelling of include_body {4096, allow_partial} */
    int include_body_max_bytes;   /* include_body.max_bytes; -1: no include_body */
    bool include_body_allow_partial;
    bool failure_mode_allow;
    int status_on_error;          /* status_on_error.code; default 403 */
    const char *stats_name;
    bool add_linkerd_headers;
};

/* RateLimitService (Envoy's ratelimit filter as Emissary configures it). */
struct pt_ratelimitservice_res {
    struct pt_meta meta;
    const char *service;          /* required */
    const char *domain;           /* NULL: the Module's default_label_domain, else "ambassador" */
    const char *tls;
    const char *protocol_version; /* must be v3 */
    int timeout_ms;               /* default 20 */
    bool failure_mode_deny;
    bool use_resource_exhausted_code; /* grpc.use_resource_exhausted_code */
    const char *stats_name;
};

/* One entry of the Module's grpc_stats.services (Envoy's individual_method_stats_allowlist). */
struct pt_grpc_stats_service {
    const char *name;           /* the gRPC service, e.g. "helloworld.Greeter" */
    const char **method_names;  /* its methods, e.g. "SayHello" */
    size_t nmethod_names;
};

/* The `ambassador` Module: only the fields Portico uses. */
struct pt_module_res {
    struct pt_meta meta;
    const char *envoy_log_type;   /* text|json|typed_json */
    const char *envoy_log_format;  /* a string (text); NULL when given as a mapping */
    struct pt_kv *envoy_log_json_format; /* envoy_log_format given as a mapping (json) */
    size_t nenvoy_log_json_format;
    const char *envoy_log_path;
    int cluster_request_timeout_ms; /* -1 unset */
    int listener_idle_timeout_ms;   /* -1 unset */
    bool enable_http10;
    bool merge_slashes;
    bool reject_requests_with_escaped_slashes;
    bool enable_grpc_web;
    bool grpc_stats;                /* grpc_stats is given: the gRPC counters are on */
    bool grpc_stats_all_methods;    /* grpc_stats.all_methods */
    bool grpc_stats_upstream;       /* grpc_stats.upstream_stats */
    struct pt_grpc_stats_service *grpc_stats_services; /* grpc_stats.services */
    size_t ngrpc_stats_services;
    const char *default_label_domain; /* NULL: "ambassador" */
    struct pt_rl_domain *default_labels; /* by domain; each has one group ("defaults") */
    size_t ndefault_labels;
    struct pt_cors_res *cors;       /* the default CORS policy of Mappings without one */
    struct pt_error_override_res *error_response_overrides;
    size_t nerror_response_overrides;
    struct pt_retry_policy_res retry_policy; /* the default of Mappings without one */
    struct pt_breaker_res *circuit_breakers; /* the default of Mappings without them */
    size_t ncircuit_breakers;
    struct pt_load_balancer_res *load_balancer; /* the default of Mappings without one */
    struct pt_keepalive_res keepalive;       /* the default of Mappings without one */
    int cluster_idle_timeout_ms;             /* 0: unset */
    int cluster_max_connection_lifetime_ms;  /* 0: unset */
};

/* The ambassador Module's ip_allow / ip_deny: Envoy's RBAC filter as Emissary configures it. */
enum pt_ip_action {
    PT_IP_NONE,     /* no policy */
    PT_IP_ALLOW,    /* ip_allow: a request matching no rule gets 403 */
    PT_IP_DENY,     /* ip_deny: a request matching a rule gets 403 */
    PT_IP_DENY_ALL, /* a policy that could not be read: every request gets 403 (fail closed) */
};

struct pt_ip_rule {
    struct pt_cidr range;
    bool remote; /* `remote:` the client address after l7Depth (Envoy's remote_ip); else `peer:`,
                  * the connection's peer (direct_remote_ip) */
};

struct pt_ip_policy {
    enum pt_ip_action action;
    struct pt_ip_rule *rules;
    size_t nrules;
};

/* A problem found while loading or validating. */
enum pt_diag_severity { PT_DIAG_NOTICE, PT_DIAG_ERROR };

struct pt_diag_entry {
    enum pt_diag_severity severity;
    struct pt_origin origin;
    char *object;  /* "Kind/ns/name", or NULL for file-level problems */
    char *message;
};

struct pt_diag {
    struct pt_diag_entry *entries;
    size_t n, cap;
    size_t nerrors;
    size_t nfile_errors; /* files (or their rest) that could not be read: a reload is refused */
};

/* Every valid resource of one configuration load. Invalid resources are left out and reported
 * in diag. Owned by one arena (pt_resources_free). */
struct pt_resources {
    struct pt_listener_res *listeners;  size_t nlisteners;
    struct pt_host_res *hosts;          size_t nhosts;
    struct pt_tlscontext_res *tlscontexts; size_t ntlscontexts;
    struct pt_mapping_res *mappings;    size_t nmappings;
    struct pt_service_res *services;    size_t nservices;
    struct pt_endpoints_res *endpoints; size_t nendpoints;
    struct pt_endpointslice_res *endpointslices; size_t nendpointslices;
    struct pt_secret_res *secrets;      size_t nsecrets;
    struct pt_tracing_res *tracing;     size_t ntracing;
    struct pt_module_res *modules;      size_t nmodules;
    struct pt_authservice_res *authservices; size_t nauthservices;
    struct pt_ratelimitservice_res *ratelimitservices; size_t nratelimitservices;
    /* An AuthService for this Portico that could not be read: every request gets Emissary's
     * 500 "AuthService is misconfigured" (fail closed; each is an error in diag). */
    size_t nauth_invalid;
    /* The ambassador Module's ip_allow / ip_deny (read even when the rest of the Module is
     * rejected; PT_IP_DENY_ALL when it cannot be read). */
    struct pt_ip_policy ip_policy;
    struct pt_diag diag;
    void *_arena;
};

#endif
