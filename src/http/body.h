/* HTTP/1.1 message bodies as the proxy passes them on: taking a body's data out of received
 * bytes (Content-Length, chunked with its framing removed, or up to the close), and framing data
 * again for the receiver (as is, or chunked with sizes of our own, no extensions, no trailers).
 * A body is never copied: the pieces point into the caller's buffer. No I/O, no allocation.
 * Types (struct pt_body) are in http/h1-t.h. */
#ifndef PT_HTTP_BODY_H
#define PT_HTTP_BODY_H

#include <sys/uio.h>

#include "http/h1-t.h"

/* pt_body_take: takes the data of body <b> from the <len> bytes at <data>: up to PT_BODY_RUNS
 * pieces, framing removed, into <iov> (<*n> set), and sets <*end> once the body is complete
 * (for PT_BODY_UNTIL_CLOSE: when <eof>, the peer closed, and all of <data> is taken). Returns
 * the bytes of <data> used (the rest belongs to what follows the body, or to a later call),
 * PT_BADMSG or PT_TOOBIG on broken chunked framing. Counts the data in b->payload. */
int64_t pt_body_take(struct pt_body *b, const char *data, size_t len, bool eof, struct iovec *iov,
                     int *n, bool *end);

/* A body's data framed for its receiver, ready for one writev: the caller may put a head in
 * iov[0] first (n = 1). */
struct pt_body_frame {
    struct iovec iov[1 + 3 * PT_BODY_RUNS + 1];
    int n;
    char heads[PT_BODY_RUNS][PT_H1_CHUNK_HEAD_MAX];
};

/* pt_body_frame: appends the <n> pieces at <data> to <f>, each as a chunk of its own when
 * <chunked> (then, with <end>, the last chunk too), else as they are. */
void pt_body_frame(struct pt_body_frame *f, const struct iovec *data, int n, bool chunked, bool end);

#endif
