/* gRPC-Web (grpc/grpc doc/PROTOCOL-WEB.md), the pieces of the translation that are pure: which
 * gRPC-Web kind a content-type is, base64 decoding and encoding that resume across body pieces
 * (the "-text" kinds: a body may arrive cut anywhere, and a client may join separately padded
 * base64 chunks), and the trailer frame that carries a response's trailers in its body (flag
 * 0x80, a 4-byte length, "name:value\r\n" lines). No I/O, no allocation. Called by the proxy's
 * gRPC-Web translation (Module enable_grpc_web); fuzzed by tests/fuzz/fuzz_grpcweb.c. */
#ifndef PT_HTTP_GRPCWEB_H
#define PT_HTTP_GRPCWEB_H

#include "core/common.h"

enum pt_grpcweb_kind {
    PT_GRPCWEB_NONE = 0, /* not gRPC-Web */
    PT_GRPCWEB_BINARY,   /* application/grpc-web, application/grpc-web+proto ... */
    PT_GRPCWEB_TEXT,     /* application/grpc-web-text[+...]: the body is base64 */
};

/* pt_grpcweb_kind: the gRPC-Web kind of a request's content-type <ct> (case-insensitive type,
 * optional "+format" and ";parameters"). */
enum pt_grpcweb_kind pt_grpcweb_kind(struct pt_str ct);

/* Base64 decoding across pieces. All-zero is the start. */
struct pt_b64dec {
    uint8_t q[4];
    uint8_t nq;   /* characters of the current quantum */
    uint8_t pads; /* '=' in it: only more '=' may follow, and it must end the quantum */
};

/* pt_b64dec_run: decodes <len> characters at <in> into <out> (room for 3 * (len + 3) / 4 bytes).
 * Returns the bytes written, or PT_BADMSG for a character outside the alphabet (whitespace
 * included) or padding in the wrong place. A padded quantum may be followed by a new one
 * (separately encoded pieces joined). */
int64_t pt_b64dec_run(struct pt_b64dec *d, const char *in, size_t len, uint8_t *out);

/* pt_b64dec_done: the body ended: true when it ended on a quantum boundary. */
static inline bool pt_b64dec_done(const struct pt_b64dec *d)
{
    return d->nq == 0;
}

/* Base64 encoding across pieces. All-zero is the start. */
struct pt_b64enc {
    uint8_t carry[2];
    uint8_t ncarry;
};

/* pt_b64enc_run: encodes <len> bytes at <in> into <out> (room for 4 * ((len + 2) / 3 + 1)
 * characters); with <end>, the last group is padded. Bytes that do not fill a group wait for
 * the next call. Returns the characters written. */
size_t pt_b64enc_run(struct pt_b64enc *e, const uint8_t *in, size_t len, bool end, char *out);

/* pt_grpcweb_trailers: the trailer frame for <n> trailers <t> into <out> (<cap> bytes): 0x80,
 * the length (big-endian), then "name:value\r\n" per trailer with the name in lower case.
 * Returns its length, or PT_TOOBIG. */
int64_t pt_grpcweb_trailers(const struct pt_header *t, size_t n, uint8_t *out, size_t cap);

#endif
