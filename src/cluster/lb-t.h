/* Load balancing: the types of the per-worker state that chooses an endpoint of a cluster and
 * hears how the request on it ended. Types only (see cluster/lb.h); the fields that start with
 * '_' belong to cluster/lb.c. */
#ifndef PT_CLUSTER_LB_T_H
#define PT_CLUSTER_LB_T_H

#include <stdbool.h>
#include <stdint.h>

#include "core/common.h" /* struct pt_str: the core vocabulary has no -t.h */

struct pt_cluster;

/* Envoy's healthy_panic_threshold default: when fewer than this percentage of a cluster's
 * endpoints are healthy, health is ignored and every endpoint is picked. */
#define PT_LB_PANIC_PERCENT 50

/* How a cluster chooses among its endpoints (Emissary's Mapping `load_balancer.policy`; a
 * cluster's is pt_cluster.lb_policy, set by compile). */
enum pt_lb_policy {
    PT_LB_ROUND_ROBIN = 0, /* each healthy endpoint in turn; Emissary's default */
    PT_LB_LEAST_REQUEST,   /* the one with fewer active requests of two random choices (P2C) */
    PT_LB_RING_HASH,       /* consistent hash of pt_lb_ctx.hash on Envoy's ring (ketama) */
    PT_LB_MAGLEV,          /* consistent hash through a Maglev lookup table */
};

/* Envoy's defaults for the hash tables (RingHashLbConfig.minimum_ring_size, MaglevLbConfig
 * table_size, a prime). */
#define PT_LB_RING_MIN_SIZE 1024u
#define PT_LB_MAGLEV_SIZE 65537u

/* One point of a hash ring: the endpoint that owns the hashes up to <hash>. */
struct pt_lb_ring_point {
    uint64_t hash;
    uint32_t endpoint;     /* index in the cluster's endpoints */
};

/* A ring_hash or maglev cluster's lookup table, built once per snapshot from its endpoints'
 * addresses (pt_lb_table_build) and shared by every worker: read-only once built. One block. */
struct pt_lb_table {
    enum pt_lb_policy policy;          /* PT_LB_RING_HASH or PT_LB_MAGLEV */
    uint32_t size;                     /* ring points, or PT_LB_MAGLEV_SIZE slots */
    struct pt_lb_ring_point *ring;     /* ring_hash: sorted by hash; else NULL */
    uint32_t *maglev;                  /* maglev: the endpoint of each slot; else NULL */
};

/* An endpoint's health as the worker sees it. A new endpoint is healthy. */
enum pt_lb_health {
    PT_LB_HEALTHY = 0,
    PT_LB_UNHEALTHY,       /* skipped by pick, unless the cluster is in panic */
};

/* How a request on a picked endpoint ended (pt_lb_release). */
enum pt_lb_outcome {
    PT_LB_SUCCESS = 0,     /* a response below 500 came back whole */
    PT_LB_CONNECT_FAILURE, /* no connection: refused, unreachable, connect timeout (UF) */
    PT_LB_HTTP_5XX,        /* the endpoint answered 5xx */
    PT_LB_RESET,           /* the connection ended or broke the protocol before the response
                            * was whole (UC, UPE) */
    PT_LB_TIMEOUT,         /* the route timeout ran out waiting for it (UT) */
    PT_LB_CANCELLED,       /* it ended for a reason that says nothing about the endpoint: the
                            * client left, a local reply, a tunnel closed */
};

/* What a policy may need of the request. All-zero is "nothing": round robin needs nothing. */
struct pt_lb_ctx {
    uint64_t hash;         /* ring_hash/maglev: the request's hash (its route's hash policy:
                            * xxHash64 of a cookie, a header, the client address) ... */
    bool has_hash;         /* ... when it has one; without, such policies pick at random */
};

/* One pick, kept by the request until pt_lb_release. All-zero is "nothing to release". */
struct pt_lb_pick {
    uint32_t cluster_id;   /* the cluster's id in its snapshot */
    uint32_t endpoint;     /* index in the cluster's endpoints */
    uint32_t epoch;        /* the cluster state it was counted in; 0: counted nowhere */
};

/* What a worker knows of one endpoint. */
struct pt_lb_endpoint {
    uint32_t active;               /* picks not yet released (for least_request) */
    uint32_t consecutive_failures; /* connect failures, 5xx, resets and timeouts since the last
                                    * success, on this worker (passive health counts over
                                    * all workers, in the cluster's pt_health) */
    uint8_t health;                /* enum pt_lb_health */
};

/* A worker's state for one cluster of the snapshot it adopted. */
struct pt_lb_cluster {
    const struct pt_cluster *_cluster; /* in the adopted snapshot */
    struct pt_lb_endpoint *_endpoints; /* _cluster->nendpoints of them, in pt_lb_state._endpoints */
    uint32_t _epoch;                   /* changes when the state is reset (pt_lb_pick.epoch) */
    uint32_t _next;                    /* round robin: the index to try first */
    uint32_t _nhealthy;                /* endpoints whose health is PT_LB_HEALTHY */
    enum pt_lb_policy _policy;
};

/* A worker's load-balancing state: one pt_lb_cluster per cluster of the adopted snapshot,
 * indexed by cluster id. Touched by its worker's thread only. All-zero is a valid state that
 * has adopted nothing (every pick is then random). */
struct pt_lb_state {
    struct pt_lb_cluster *_clusters;   /* owned; each points into the adopted snapshot, which
                                        * the worker holds until the next pt_lb_adopt */
    uint32_t _nclusters;
    struct pt_lb_endpoint *_endpoints; /* owned: the endpoints of all clusters, in cluster order */
    uint32_t _last_epoch;              /* the last epoch given to a cluster state */
    uint64_t _rng;                     /* splitmix64 state: random starts and picks */
};

#endif
