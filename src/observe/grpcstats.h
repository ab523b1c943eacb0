/* The Module's grpc_stats (Envoy's grpc_stats filter): per cluster, the calls that ended with a
 * grpc-status (success, failure, total), the messages each way, and with upstream_stats the
 * upstream time, as Envoy's cluster.<c>.grpc[.<service>.<method>].<stat>. A call gets a series
 * of its own when its method is allowlisted (grpc_stats.services) or, with all_methods, while
 * its cluster's table in the worker has a free slot (PT_GRPCSTATS_SLOTS); every other call is
 * counted in the cluster's generic series. A call is counted when it ends, once.
 *
 * The proxy calls, for one request: pt_grpcstats_begin at dispatch, pt_grpcstats_feed with
 * each body piece either way, pt_grpcstats_status with the response head, its trailers or the
 * local reply's grpc-status, and pt_grpcstats_end when the request ends. The /metrics renderer
 * (observe/metrics.c) reads pt_grpcstats__sum. */
#ifndef PT_OBSERVE_GRPCSTATS_H
#define PT_OBSERVE_GRPCSTATS_H

#include <sys/uio.h>

#include "core/common.h"
#include "observe/grpcstats-t.h"

/* pt_grpcstats_begin: starts counting request <gc> when <cfg> is on and the request is gRPC
 * (<grpc>: its content-type is application/grpc[+...], or gRPC-Web being translated).
 * <path_kept>: the request's path stays valid until the request ends (false: a normalized path
 * in a shared buffer; the call then counts in the generic series). */
static inline void pt_grpcstats_begin(struct pt_grpc_call *gc, const struct pt_grpcstats_cfg *cfg, bool grpc,
                                      bool path_kept)
{
    if (cfg->on && grpc) {
        gc->on = true;
        gc->generic = !path_kept;
        gc->status = -1;
    }
}

/* pt_grpcstats_local: a local reply with grpc-status <status> answered the call. */
static inline void pt_grpcstats_local(struct pt_grpc_call *gc, int status)
{
    if (gc->on)
        gc->status = status == 0 ? 0 : 2;
}

/* pt_grpcstats_feed: <n> body pieces <iov> of the request (<up>) or the response. */
void pt_grpcstats_feed(struct pt_grpc_call *gc, bool up, const struct iovec *iov, int n);

/* pt_grpcstats_status: the grpc-status among headers <h> (<n>), if any, becomes the call's. */
void pt_grpcstats_status(struct pt_grpc_call *gc, const struct pt_header *h, size_t n);

/* pt_grpcstats_end: the call is over: counts it for cluster stats index <cluster_idx> in
 * worker block <w>. <path> is the request's :path ("/service/method"); <upstream_ms> the
 * upstream time, negative when no upstream answered. Worker thread. */
void pt_grpcstats_end(struct pt_stats_worker *w, const struct pt_grpcstats_cfg *cfg, struct pt_grpc_call *gc,
                      uint32_t cluster_idx, struct pt_str path, double upstream_ms);

/* pt_grpcstats__free: frees the tables of worker block <w> (observe/stats.c, with the block). */
void pt_grpcstats__free(struct pt_stats_worker *w);

/* A cluster's gRPC series summed over the workers, for the renderer. */
struct pt_grpcstats_ent {
    char name[PT_GRPCSTATS_NAME_MAX + 1]; /* "service/method", NUL-terminated */
    uint32_t svc_len;                     /* the service's length in name */
    struct pt_grpc_counts c;
};
struct pt_grpcstats_sum {
    struct pt_grpc_counts generic;
    uint32_t n;                           /* entries, sorted by name */
    struct pt_grpcstats_ent ent[];
};

/* pt_grpcstats__sum: cluster stats index <idx> summed over the registered workers; malloc'ed,
 * or NULL when no worker has counted a gRPC call for it (or memory is short). Control thread. */
struct pt_grpcstats_sum *pt_grpcstats__sum(uint32_t idx);

#endif
