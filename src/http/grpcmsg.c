/* gRPC message counting across body pieces (http/grpcmsg.h): a byte-at-a-time walk through the
 * prefixes and a jump over each payload, so the cost is per message, not per byte. */
#include "http/grpcmsg.h"

void pt_grpc_msgs_feed(struct pt_grpc_msgs *m, const uint8_t *p, size_t len)
{
    while (len > 0) {
        if (m->left > 0) { /* inside a payload */
            size_t skip = m->left < len ? (size_t)m->left : len;
            m->left -= skip;
            p += skip;
            len -= skip;
            continue;
        }
        if (m->hdr == 0) { /* the flag byte starts a message */
            m->count++;
            m->len = 0;
        } else {
            m->len = (m->len << 8) | *p;
        }
        m->hdr++;
        p++;
        len--;
        if (m->hdr == 5) {
            m->left = m->len;
            m->hdr = 0;
        }
    }
}
