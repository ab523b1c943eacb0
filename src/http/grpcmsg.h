/* gRPC message counting (grpc/grpc doc/PROTOCOL-HTTP2.md, Length-Prefixed-Message): follows the
 * 5-byte prefixes (a flag byte, a 4-byte big-endian length) of one direction of a call across
 * body pieces cut anywhere, skipping the payloads, and counts the messages. No I/O, no
 * allocation. Called by the Module's grpc_stats (observe/grpcstats.c). */
#ifndef PT_HTTP_GRPCMSG_H
#define PT_HTTP_GRPCMSG_H

#include <stddef.h>
#include <stdint.h>

/* The state of one direction. All-zero is the start. */
struct pt_grpc_msgs {
    uint8_t hdr;    /* prefix bytes seen of the current message (0: at a message boundary) */
    uint32_t len;   /* the length being read from the prefix */
    uint64_t left;  /* payload bytes still to skip once the prefix is whole */
    uint64_t count; /* messages seen, counted at their flag byte (as Envoy's frame inspector) */
};

/* pt_grpc_msgs_feed: follows <len> more body bytes at <p>. */
void pt_grpc_msgs_feed(struct pt_grpc_msgs *m, const uint8_t *p, size_t len);

#endif
