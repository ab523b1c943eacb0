/* The gRPC-Web translation of a request (Module enable_grpc_web, as Envoy's grpc_web filter):
 * a request whose content-type is gRPC-Web goes upstream as gRPC (content-type
 * application/grpc with its +format, te: trailers, no content-length, a -text body decoded from
 * base64 as it streams), and its response comes back as gRPC-Web (content-type
 * application/grpc-web[-text]+format, the body base64-encoded for -text, the upstream's
 * trailers appended to the body as the trailer frame). State in st->gw; the pure pieces are
 * http/grpcweb.h. Called by proxy/session.c, proxy/stream.c and proxy/reply.c. */
#ifndef PT_PROXY_GRPCWEB_H
#define PT_PROXY_GRPCWEB_H

#include "proxy/proxy-t.h"

/* The grpc-message of a -text request whose body is not base64 (Envoy's words). */
#define PT_GW_BAD_BASE64 "Bad gRPC-web request, invalid base64 data."

/* pt_gw_begin: with the Module's enable_grpc_web, a request whose content-type is gRPC-Web is
 * translated from now on (st->gw.kind set). */
void pt_gw_begin(struct pt_stream *st);

/* pt_gw_upstream_type / pt_gw_response_type: the content-type the upstream request / the
 * client's response gets, into <buf> (64 bytes at least). */
struct pt_str pt_gw_upstream_type(const struct pt_stream *st, char *buf, size_t cap);
struct pt_str pt_gw_response_type(const struct pt_stream *st, char *buf, size_t cap);

/* pt_gw_send: sends <head> (NULL: none) and the request body pieces <data> (<k>) upstream,
 * translated (base64 decoded for -text; chunked for an HTTP/1.1 upstream); <done>: the body
 * ends with them. Returns 0, PT_AGAIN or PT_IO as pt_hc_send, or PT_BADMSG when the body is
 * not base64 (what was decoded before may have gone). */
int pt_gw_send(struct pt_stream *st, const struct iovec *head, const struct iovec *data, int k, bool done);

/* pt_gw_data: response body data for the client (struct pt_down_ops data), base64-encoded for
 * -text (the last group padded at <end>). Returns as the connection's data call. */
int pt_gw_data(struct pt_stream *st, const struct iovec *iov, int n, bool end);

/* pt_gw_trailers: the upstream's trailers <h> (<n>) go to the client as the body's trailer
 * frame. 0, PT_AGAIN, or PT_IO (the client is gone, or the frame cannot be made). */
int pt_gw_trailers(struct pt_stream *st, const struct pt_header *h, size_t n);

#endif
