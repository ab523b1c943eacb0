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

/* One error_response_overrides rule (Module or Mapping), as read: exactly one of text_format,
 * json_format, text_format_source (read into text_format by config/kinds.c). */
struct pt_error_override_res {
    int on_status_code;           /* 400..599 */
    const char *text_format;
    struct pt_kv *json_format;    /* key -> format string */
    size_t njson_format;
    bool json;                    /* json_format was given */
    const char *text_format_source; /* the file's name, as written */
    const char *content_type;     /* NULL: text/plain, or application/json for json_format */
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
    bool bypass_auth;             /* requests pass while an AuthService denies (fail closed) */
    bool grpc;                    /* the service speaks HTTP/2 (h2c, or ALPN h2 with TLS) */
    struct pt_error_override_res *error_response_overrides; /* replace the Module's */
    size_t nerror_response_overrides;
    bool bypass_error_response_overrides;
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
    struct pt_error_override_res *error_response_overrides;
    size_t nerror_response_overrides;
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
    /* What Portico cannot enforce yet, so must fail closed on (each is also an error in diag):
     * AuthServices for this Portico, valid or not (requests without bypass_auth get 403), and
     * whether the ambassador Module sets ip_allow or ip_deny (every request gets 403). */
    size_t nauthservices;
    bool ip_policy;
    struct pt_diag diag;
    void *_arena;
};

#endif
