/* The gRPC counters of the Module's grpc_stats (Envoy's grpc_stats filter): types only; the
 * functions are observe/grpcstats.h. Each worker keeps, per cluster stats index, one table: a
 * generic entry (Envoy's cluster.<c>.grpc.<stat>, the calls that get no series of their own)
 * and PT_GRPCSTATS_SLOTS named entries ("service/method"), claimed by the worker as calls end
 * and never renamed, so a client cannot create unbounded series. */
#ifndef PT_OBSERVE_GRPCSTATS_T_H
#define PT_OBSERVE_GRPCSTATS_T_H

#include <stdbool.h>
#include <stdint.h>

#include "observe/stats-t.h"
#include "http/grpcmsg.h"
#include "model/snapshot-t.h" /* struct pt_grpcstats_cfg, PT_GRPCSTATS_SLOTS */

/* The statistics of one series, as X-macro lists (metrics.c makes the families from them):
 * envoy_cluster_grpc_<field>. */
#define PT_GRPC_COUNTERS(X)                                                                        \
    X(success)                 /* calls that ended with grpc-status 0 */                           \
    X(failure)                 /* calls that ended with another grpc-status */                     \
    X(total)                   /* calls that ended with a grpc-status */                           \
    X(request_message_count)   /* messages the client sent */                                      \
    X(response_message_count)  /* messages the server sent */

struct pt_grpc_counts {
    PT_GRPC_COUNTERS(PT_STATS_U64_FIELD)
    struct pt_hist upstream_rq_time; /* only with upstream_stats */
};

/* One named series of a worker's table. <len> is stored (release) after <name>; 0: free. */
struct pt_grpc_slot {
    uint32_t len;
    char name[PT_GRPCSTATS_NAME_MAX];
    struct pt_grpc_counts c;
};

/* One cluster's table in one worker. */
struct pt_grpc_table {
    struct pt_grpc_counts generic;
    struct pt_grpc_slot slot[PT_GRPCSTATS_SLOTS];
};

/* A request's gRPC counting (struct pt_stream gs). */
struct pt_grpc_call {
    bool on;                       /* a gRPC request counted by grpc_stats */
    bool generic;                  /* counted in the generic series whatever its method */
    int16_t status;                /* the final grpc-status; -1: none seen yet */
    struct pt_grpc_msgs req, resp; /* the messages of each direction (http/grpcmsg.h) */
};

#endif
