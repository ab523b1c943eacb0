/* Message bodies passed on by the proxy (http/body.h): what a body's framing delimits, and the
 * framing written again for the receiver. Called by proxy/stream.c, proxy/session.c and
 * proxy/httpclient.c. */
#include "http/body.h"
#include "http/h1.h"

/* take_chunked: decodes up to PT_BODY_RUNS runs of chunk data. */
static int64_t take_chunked(struct pt_body *b, const char *data, size_t len, struct iovec *iov, int *n,
                            bool *end)
{
    size_t off = 0;

    while (off < len && *n < PT_BODY_RUNS && !*end) {
        struct pt_str run;
        size_t consumed;
        int r = pt_h1_chunked_decode(&b->chunk, data + off, len - off, &consumed, &run);
        if (r < 0)
            return r;
        off += consumed;
        if (run.len)
            iov[(*n)++] = (struct iovec){ (void *)run.ptr, run.len };
        *end = r == 1;
    }
    return (int64_t)off;
}

int64_t pt_body_take(struct pt_body *b, const char *data, size_t len, bool eof, struct iovec *iov,
                     int *n, bool *end)
{
    int64_t used = 0;

    *n = 0;
    *end = false;
    switch (b->kind) {
    case PT_BODY_NONE:
        *end = true;
        break;
    case PT_BODY_LENGTH:
        used = (int64_t)(len < b->remaining ? len : b->remaining);
        b->remaining -= (uint64_t)used;
        *end = b->remaining == 0;
        if (used)
            iov[(*n)++] = (struct iovec){ (void *)data, (size_t)used };
        break;
    case PT_BODY_CHUNKED:
        used = take_chunked(b, data, len, iov, n, end);
        if (used < 0)
            return used;
        break;
    case PT_BODY_UNTIL_CLOSE:
        used = (int64_t)len;
        if (used)
            iov[(*n)++] = (struct iovec){ (void *)data, len };
        *end = eof;
        break;
    }
    for (int i = 0; i < *n; i++)
        b->payload += iov[i].iov_len;
    return used;
}

void pt_body_frame(struct pt_body_frame *f, const struct iovec *data, int n, bool chunked, bool end)
{
    for (int i = 0; i < n; i++) {
        if (chunked) {
            char *h = f->heads[i];
            f->iov[f->n++] = (struct iovec){ h, pt_h1_chunk_head(h, data[i].iov_len) };
            f->iov[f->n++] = data[i];
            f->iov[f->n++] = (struct iovec){ (void *)PT_H1_CHUNK_END, sizeof(PT_H1_CHUNK_END) - 1 };
        } else {
            f->iov[f->n++] = data[i];
        }
    }
    if (end && chunked)
        f->iov[f->n++] = (struct iovec){ (void *)PT_H1_LAST_CHUNK, sizeof(PT_H1_LAST_CHUNK) - 1 };
}
