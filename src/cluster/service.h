/* A Mapping's `service:` — parsing `[scheme://]name[.namespace][:port]` and finding its
 * endpoints (IP literal, Endpoints/Service objects, or DNS), as DESIGN.md "Resolution". */
#ifndef PT_CLUSTER_SERVICE_H
#define PT_CLUSTER_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "model/resource-t.h"
#include "model/snapshot-t.h"
#include "core/strmap.h"

struct pt_service_ref {
    char scheme[8];        /* "", "http" or "https" */
    char host[256];        /* as written, without scheme and port */
    char name[256];        /* Kubernetes name (host up to the first '.') */
    char namespace[256];   /* from the host, else the Mapping's namespace */
    char qualified[600];   /* Emissary's normalized service: scheme://host[.ns][:port] */
    int port;              /* 0: none given */
    bool is_ip;
    bool tls;              /* https://, or a tls: context */
};

/* pt_service_parse: parses <service> of a Mapping in <mapping_ns> (Portico runs in <amb_ns>);
 * <tls> says the Mapping names a TLS context. Returns 0, or -1 with a message in <err>. */
int pt_service_parse(const char *service, const char *mapping_ns, const char *amb_ns, bool tls,
                     struct pt_service_ref *ref, char *err, size_t errlen);

/* Service and Endpoints objects of one pt_resources by "namespace/name", so resolving 10,000
 * Mappings stays linear. Built and freed around one compile. */
struct pt_service_index {
    struct pt_strmap services, endpoints;
    char *keys;
};

/* pt_service_index_build / pt_service_index_free: the index of <r>'s Services and Endpoints. */
void pt_service_index_build(struct pt_service_index *ix, const struct pt_resources *r);
void pt_service_index_free(struct pt_service_index *ix);

/* pt_service_resolve_indexed: pt_service_resolve with a prebuilt index of <r>. */
void pt_service_resolve_indexed(const struct pt_service_ref *ref, const struct pt_resources *r,
                                const struct pt_service_index *ix, struct pt_cluster *cl,
                                struct pt_diag *diag, const struct pt_meta *owner);

/* pt_service_resolve: fills <cl>'s endpoints from an IP literal, the Endpoints (and Service) of
 * <r>, or the DNS cache (starting a lookup on a miss; the configuration is compiled again when
 * it answers). Through DNS, <cl>'s dns_type and respect_dns_ttl apply: logical_dns keeps only
 * the first address, and the name is refreshed every 5 s unless the cluster respects the TTL.
 * Problems are reported in <diag> against <owner>. */
void pt_service_resolve(const struct pt_service_ref *ref, const struct pt_resources *r, struct pt_cluster *cl,
                        struct pt_diag *diag, const struct pt_meta *owner);

#endif
