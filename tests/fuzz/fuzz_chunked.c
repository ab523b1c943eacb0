/* libFuzzer target for the chunked-body decoder (pt_h1_chunked_scan, pt_h1_chunked_decode and
 * pt_h1_chunked_skip in src/http/h1.c). The first input byte picks the mode: even, the rest is
 * a raw body; odd, the rest drives a generator of a valid chunked body (sizes, extensions,
 * trailers, then bytes of a next message) whose decoded bytes and end are known. For every
 * body, the verdict, the end of the body, the decoded bytes and data_total must be the same
 * whether the body comes in one call, one byte per call, or pieces cut at pseudo-random
 * boundaries (some moved with pt_h1_chunked_skip as a splice would), and scan and decode must
 * agree. Any violation aborts. Built and run by tests/fuzz/run.sh. */
// fuzz-sources: src/http/h1.c src/core/common.c
#include <stdio.h>
#include <stdlib.h>

#include "http/h1.h"
#include "fuzz.h"

#define MAXBUF 16384


/* One way of reading a body: its verdict, where it ended, what it decoded. */
struct outcome {
    int r;
    size_t end;          /* bytes consumed in total */
    uint64_t data_total; /* the decoder's own count */
    size_t ndata;
    char data[MAXBUF];
};

static uint32_t next(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* feed: reads <buf> in pieces of at most <max_piece> bytes (1: byte by byte; 0: one call),
 * sizes drawn from <seed> when <random>. With <skip>, chunk data at the start of a piece is
 * moved with pt_h1_chunked_skip instead of decoded. With <scan>, uses scan, which returns no
 * data; <o>->data stays empty then. */
static void feed(const char *buf, size_t len, size_t max_piece, bool random, uint32_t seed,
                 bool skip, bool scan, struct outcome *o)
{
    struct pt_h1_chunked st = { 0 };
    size_t off = 0;
    int r = 0;

    o->ndata = 0;
    while (off < len || (len == 0 && off == 0)) {
        size_t piece = len - off;
        if (max_piece && random)
            piece = next(&seed) % (max_piece + 1); /* 0-byte reads happen too */
        else if (max_piece)
            piece = max_piece;
        piece = piece < len - off ? piece : len - off;
        const char *p = buf + off;
        size_t left = piece, c;
        uint64_t rem = pt_h1_chunked_remaining(&st);
        if (skip && rem && left) {
            size_t n = rem < left ? (size_t)rem : left;
            n = n > 1 && (seed & 1) ? n / 2 : n;
            memcpy(o->data + o->ndata, p, n);
            o->ndata += n;
            pt_h1_chunked_skip(&st, n);
            CHECK(pt_h1_chunked_remaining(&st) == rem - n);
            p += n;
            left -= n;
            off += n;
        }
        do {
            struct pt_str d = { 0 };
            r = scan ? pt_h1_chunked_scan(&st, p, left, &c)
                     : pt_h1_chunked_decode(&st, p, left, &c, &d);
            CHECK(c <= left);
            CHECK(r == 0 || r == 1 || r == PT_BADMSG || r == PT_TOOBIG);
            if (r == 0 && !scan && d.len == 0)
                CHECK(c == left || c > 0);
            if (r == 0 && scan)
                CHECK(c == left);
            if (d.len) {
                CHECK(d.ptr >= p && d.ptr + d.len <= p + c);
                memcpy(o->data + o->ndata, d.ptr, d.len);
                o->ndata += d.len;
            }
            CHECK(pt_h1_chunked_remaining(&st) <= PT_H1_CHUNK_SIZE_MAX);
            p += c;
            left -= c;
            off += c;
        } while (r == 0 && left > 0);
        if (r != 0 || len == 0)
            break;
    }
    o->r = r;
    o->end = off;
    o->data_total = st.data_total;
    if (r != 0) { /* the end and errors are sticky */
        size_t c = 1;
        int again = pt_h1_chunked_scan(&st, buf, len, &c);
        CHECK(c == 0 && again == (r == 1 ? 1 : PT_BADMSG));
    }
}

static void same(const struct outcome *a, const struct outcome *b, bool data)
{
    CHECK(a->r == b->r);
    CHECK(a->end == b->end);
    CHECK(a->data_total == b->data_total);
    if (data)
        CHECK(a->ndata == b->ndata && memcmp(a->data, b->data, a->ndata) == 0);
}

/* gen_ext: appends chunk extensions (with BWS, tokens and quoted strings) to <out>. */
static size_t gen_ext(char *out, uint32_t *s)
{
    static const char *const ext[] = { ";a", ";a=b", " ;name=\"q \\\" s\"", ";x=1;y=2",
                                       "\t; k = v", ";e=\"\"" };
    const char *e = ext[next(s) % (sizeof(ext) / sizeof(ext[0]))];
    size_t n = strlen(e);

    memcpy(out, e, n);
    return n;
}

/* gen: writes a valid chunked body built from <in> into <out>, the bytes it carries into
 * <want>, and bytes of a next message after it. Returns the body's length (the end). */
static size_t gen(const uint8_t *in, size_t inlen, char *out, size_t *outlen, char *want,
                  size_t *wantlen)
{
    uint32_t s = inlen ? in[0] * 7919u + (uint32_t)inlen : 3;
    size_t o = 0, w = 0, i = inlen ? 1 : 0;

    while (i < inlen && o < MAXBUF / 2) {
        size_t n = 1 + next(&s) % 64;
        n = n < inlen - i ? n : inlen - i;
        o += (size_t)sprintf(out + o, (next(&s) & 1) ? "%zx" : "%zX", n);
        if (next(&s) % 4 == 0)
            o += gen_ext(out + o, &s);
        memcpy(out + o, "\r\n", 2);
        memcpy(out + o + 2, in + i, n);
        memcpy(want + w, in + i, n);
        memcpy(out + o + 2 + n, "\r\n", 2);
        o += n + 4;
        w += n;
        i += n;
    }
    out[o++] = '0';
    if (next(&s) % 3 == 0)
        o += gen_ext(out + o, &s);
    o += (size_t)sprintf(out + o, "\r\n");
    if (next(&s) % 2)
        o += (size_t)sprintf(out + o, "Trailer-A: 1\r\nx-t:\r\n");
    o += (size_t)sprintf(out + o, "\r\n");
    size_t end = o;
    o += (size_t)sprintf(out + o, "GET /next HTTP/1.1\r\n");
    *outlen = o;
    *wantlen = w;
    return end;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct outcome one, split, bytes, skipped, scanned;
    static char genbuf[MAXBUF + 256], want[MAXBUF];
    const char *buf = (const char *)data + (size ? 1 : 0);
    size_t len = size ? size - 1 : 0, end = 0, wantlen = 0;
    bool generated = size && (data[0] & 1);
    uint32_t seed = size ? (uint32_t)data[size - 1] * 2654435761u ^ (uint32_t)size : 7;

    if (len > MAXBUF / 2)
        return 0;
    if (generated) {
        end = gen(data + 1, len, genbuf, &len, want, &wantlen);
        buf = genbuf;
    }
    feed(buf, len, 0, false, 0, false, false, &one);
    CHECK(one.data_total == one.ndata);
    CHECK(one.r != 0 || one.end == len);
    if (generated) {
        CHECK(one.r == 1 && one.end == end);
        CHECK(one.ndata == wantlen && memcmp(one.data, want, wantlen) == 0);
    }
    feed(buf, len, 1, false, 0, false, false, &bytes);
    same(&one, &bytes, true);
    for (int k = 0; k < 4; k++) {
        feed(buf, len, 1 + next(&seed) % 64, true, next(&seed), false, false, &split);
        same(&one, &split, true);
        feed(buf, len, 1 + next(&seed) % 64, true, next(&seed), true, false, &skipped);
        same(&one, &skipped, true);
    }
    feed(buf, len, 0, false, 0, false, true, &scanned);
    same(&one, &scanned, false);
    feed(buf, len, 1 + next(&seed) % 16, true, next(&seed), false, true, &scanned);
    same(&one, &scanned, false);
    return 0;
}
