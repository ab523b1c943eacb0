/* An HTTP/2 request head (RFC 9113 §8.3) turned into the request the proxy routes: the fields
 * of a HEADERS block are checked and copied one by one into the caller's storage, then read as
 * a struct pt_h1_request (the proxy's request type for every protocol): :method, :path (split
 * into path and query), :authority (Host's role), and the regular fields, with several cookie
 * fields joined into one (§8.2.3) for an HTTP/1.1 upstream. No I/O, no allocation: the caller
 * grows the storage when PT_TOOBIG says so. Called by proxy/h2conn.c; fuzzed by
 * tests/fuzz/fuzz_h2req.c. */
#ifndef PT_HTTP_H2REQ_H
#define PT_HTTP_H2REQ_H

#include "http/h1-t.h"

/* A request head being received. Names and values are kept as offsets into the storage until
 * pt_h2req_finish, so the caller may move the storage between fields. All-zero but for
 * hdrs/max_hdrs is a new head. */
struct pt_h2req {
    struct pt_header *hdrs; /* the caller's array for regular fields */
    size_t max_hdrs, nhdrs;
    size_t used;            /* bytes of the storage in use */
    uint32_t method[2], path[2], authority[2], scheme[2]; /* offset, length; length 0: absent */
    uint32_t pseudo;        /* pseudo-fields seen, one bit each */
    uint32_t ncookies, cookie_bytes;
    bool regular;           /* a regular field was seen: no pseudo-field may follow */
};

/* pt_h2req_add: appends the field <name>: <value> of the head to <r>, copying both into
 * <store> (<cap> bytes). Returns 0; PT_TOOBIG when <store> has no room for it (grow it, keeping
 * its first r->used bytes, and call again) or the head has more fields than r->max_hdrs;
 * PT_BADMSG when the field is malformed (§8.2: an upper-case or invalid name, a value with
 * control bytes or surrounding whitespace, a connection-specific field, TE other than
 * "trailers", an unknown, repeated or late pseudo-field). */
int pt_h2req_add(struct pt_h2req *r, char *store, size_t cap, struct pt_str name, struct pt_str value);

/* pt_h2req_finish: the head is complete: fills <req> (its slices point into <store>, which must
 * not move any more). Cookie fields are joined with "; " into one (may need room: PT_TOOBIG as
 * above). Returns 0, or PT_BADMSG for a request without :method, :path (but CONNECT) or
 * :scheme, or with a :path that is neither origin-form nor "*" for OPTIONS. */
int pt_h2req_finish(struct pt_h2req *r, char *store, size_t cap, struct pt_h1_request *req);

#endif
