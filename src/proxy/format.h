/* Envoy format strings on the request path (proxy/format.c): header values with %...%
 * operators (add_request_headers, add_response_headers) and the bodies of
 * error_response_overrides, both compiled by observe/logformat.c and rendered here for one
 * request with no allocation. */
#ifndef PT_PROXY_FORMAT_H
#define PT_PROXY_FORMAT_H

#include "proxy/proxy-t.h"

#define PT_FORMAT_VALUE_MAX 4096  /* bytes of one rendered header value; a longer one is left out */
#define PT_FORMAT_BODY_MAX 16384  /* bytes of a rendered error body; a longer one is cut */

/* pt_format_header: renders the value of <op> (op->fmt != NULL) for <st> into <buf> (<cap>
 * bytes) and points <out> at it. Request headers (<resp> NULL) read the request's own headers
 * and no upstream address (Envoy has chosen none yet); response headers read the response's
 * <nresp> headers <resp> and the request headers kept by pt_format_keep. Returns false when
 * the header must not be written: the value is empty (Envoy adds no empty header), longer than
 * <cap>, or holds CR, LF or NUL. */
bool pt_format_header(struct pt_stream *st, const struct pt_hdr_op *op, const struct pt_header *resp, size_t nresp,
                      char *buf, size_t cap, struct pt_str *out);

/* pt_format_keep: copies the values of the request headers named by <names> (<n>, lower case)
 * into st->rec, for the response side's %REQ()% (the request's head may be gone by then). Names
 * kept already are skipped; at most PT_RECORD_XHEADERS. */
void pt_format_keep(struct pt_stream *st, const struct pt_str *names, uint32_t n);

/* pt_format_override: the error_response_overrides rule a response of <status> gets on <st>:
 * its route's (its Mapping's own, else the Module's; none with bypass), or before a route is
 * chosen the Module's. NULL: none. */
const struct pt_error_override *pt_format_override(const struct pt_stream *st, int status);

/* pt_format_error_body: renders <o>'s body for <st> (st->rec.status set) into <buf> (<cap>
 * bytes, cut there); <resp>/<nresp>: the upstream response's headers, or NULL for a local
 * reply. Returns its length. */
size_t pt_format_error_body(struct pt_stream *st, const struct pt_error_override *o, const struct pt_header *resp,
                            size_t nresp, char *buf, size_t cap);

#endif
