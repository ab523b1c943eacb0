/* Strict, zero-copy HTTP/1.1 parser (RFC 9112, RFC 9110): request and response heads, head-end
 * scanning for incremental reads, and a chunked-body scanner for forwarding bodies unchanged.
 * Nothing here allocates or does I/O; all results are slices of the caller's buffer. */
#ifndef PT_HTTP_H1_H
#define PT_HTTP_H1_H

#include "http/h1-t.h"

/* pt_h1_parse_request: parses the request head at the start of <buf> (<len> bytes, which may
 * hold more than one pipelined request) into <req>, storing up to <max_hdrs> headers into <hdrs>,
 * under <lim> (NULL: defaults). Returns the head length (> 0, through the blank line, including
 * the one empty line tolerated before the request line), PT_AGAIN if the head is incomplete,
 * PT_BADMSG if it is malformed (answer 400 and close), PT_NOTSUP for a Transfer-Encoding other
 * than exactly "chunked" (501 and close), or PT_TOOBIG when the head does not fit
 * in lim->max_head_bytes or has more headers than min(<max_hdrs>, lim->max_headers) (431).
 * Rejects, among others: bare CR or LF, obs-fold, bad tokens or field bytes, any duplicate
 * Content-Length, a Transfer-Encoding with Content-Length or in HTTP/1.0, duplicate or invalid Host, and HTTP/1.1 without Host. <req> is meaningful
 * only after a return > 0. Costs O(head), plus a backwards memrchr over any bytes after the
 * head (up to lim->max_head_bytes), and re-parses from the start on every call: when reading
 * piecemeal, wait for pt_h1_find_head_end() to return > 0 instead of calling this after every
 * read, and pass it the head length it returned. */
int pt_h1_parse_request(const char *buf, size_t len, struct pt_h1_request *req,
                        struct pt_header *hdrs, size_t max_hdrs, const struct pt_h1_limits *lim);

/* pt_h1_parse_response: as pt_h1_parse_request() for a response head. Status must be three
 * digits 100..599; the reason phrase may be empty and the SP before it may be missing. Equal
 * duplicate Content-Length headers are accepted, differing ones are PT_BADMSG. Both
 * Content-Length and Transfer-Encoding is PT_BADMSG (Envoy's strict default; RFC 9112 §6.3
 * would let chunked win). Whether the response has a body at all depends on the request: see
 * pt_h1_response_has_body(); without a body length the body runs to connection close. */
int pt_h1_parse_response(const char *buf, size_t len, struct pt_h1_response *res,
                         struct pt_header *hdrs, size_t max_hdrs,
                         const struct pt_h1_limits *lim);

/* pt_h1_find_head_end: looks for the blank line that ends a head in <buf>, resuming at
 * <*scanned> (0 on the first call for a message; updated on PT_AGAIN) so that calling it after
 * every read costs O(new bytes). <buf> must still hold the bytes from the start of the message.
 * Returns the head length (> 0), PT_AGAIN, PT_BADMSG on an LF without CR before it, or
 * PT_TOOBIG when no head end lies within lim->max_head_bytes (<lim> may be NULL). A head it
 * finds may still be rejected by the parser. */
int pt_h1_find_head_end(const char *buf, size_t len, size_t *scanned,
                        const struct pt_h1_limits *lim);

/* pt_h1_chunked_scan: consumes up to <len> bytes of a chunked body (sizes, extensions, data,
 * CRLFs, trailers) with state <st>, and sets <*consumed>. Returns 1 when the final chunk and the
 * trailer section have been consumed (<*consumed> then ends just after the final CRLF; the rest
 * of <buf> belongs to the next message), 0 when all <len> bytes were consumed and more are
 * needed, PT_BADMSG on malformed framing (bad hex, size above PT_H1_CHUNK_SIZE_MAX, missing CRLF, bare LF,
 * invalid trailer byte), or PT_TOOBIG when a chunk-size line exceeds PT_H1_CHUNK_LINE_MAX or the
 * trailers PT_H1_TRAILERS_MAX. Errors are sticky. Chunk data is skipped in one step. */
int pt_h1_chunked_scan(struct pt_h1_chunked *st, const char *buf, size_t len, size_t *consumed);

/* pt_h1_chunked_decode: as pt_h1_chunked_scan(), but stops after the first run of chunk data
 * and returns it in <*data> (empty when the call consumed only framing). Returns 1 at the end of
 * the body, 0 when the caller should call again with the bytes after <*consumed> (or with more
 * bytes once all were consumed), or an error as pt_h1_chunked_scan(). */
int pt_h1_chunked_decode(struct pt_h1_chunked *st, const char *buf, size_t len, size_t *consumed,
                         struct pt_str *data);

/* pt_h1_chunk_head: writes the chunk-size line for <n> data bytes ("1f4\r\n") into <out>, which
 * has room for PT_H1_CHUNK_HEAD_MAX bytes, and returns its length. A body re-framed by Portico
 * is a series of such chunks followed by PT_H1_LAST_CHUNK (no extensions, no trailers). */
size_t pt_h1_chunk_head(char *out, uint64_t n);

/* pt_h1_response_has_body: false for responses that never have a body: to a HEAD request
 * (<request_method_is_head> non-zero), and with status 1xx, 204 or 304 (RFC 9110 §6.4.1). A 2xx
 * to CONNECT has no body either; the caller knows it switched to a tunnel. */
bool pt_h1_response_has_body(int request_method_is_head, int status);

/* pt_h1_chunked_remaining: chunk-data bytes the scanner expects before the next framing byte;
 * 0 unless it is inside chunk data. */
static inline uint64_t pt_h1_chunked_remaining(const struct pt_h1_chunked *st)
{
    return st->_state == PT_H1_CHUNKED_DATA ? st->remaining : 0;
}

/* pt_h1_chunked_skip: tells <st> that the caller moved <n> bytes of chunk data itself (e.g. with
 * splice); <n> must not exceed pt_h1_chunked_remaining(). */
static inline void pt_h1_chunked_skip(struct pt_h1_chunked *st, uint64_t n)
{
    st->remaining -= n;
    st->data_total += n;
    if (st->remaining == 0 && st->_state == PT_H1_CHUNKED_DATA)
        st->_state = PT_H1_CHUNKED_DATA_CR;
}

/* pt_http_method_id: the well-known method <method> names (case-sensitive), or OTHER. */
enum pt_h1_method pt_http_method_id(struct pt_str method);

/* pt_http_token: <s> is a non-empty RFC 9110 token (a method, a field name). */
bool pt_http_token(struct pt_str s);

/* pt_h1_request_rebase: the slices of <req> that lie in [<lo>, <lo> + <len>) now point at the
 * same offsets from <to> (the caller copied those bytes there). */
void pt_h1_request_rebase(struct pt_h1_request *req, const char *lo, size_t len, char *to);

#endif
