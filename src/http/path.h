/* Request-path normalization as Emissary's Envoy does it before route matching
 * (HttpConnectionManager `normalize_path: true`, which Emissary always sets, plus the Module's
 * `merge_slashes` and `reject_requests_with_escaped_slashes`). Pure functions: no I/O, no
 * allocation; the caller gives the output buffer. Called by proxy/session.c. */
#ifndef PT_HTTP_PATH_H
#define PT_HTTP_PATH_H

#include "core/common.h"

/* Flags of pt_path_needs_normalizing() and pt_path_normalize(). */
#define PT_PATH_MERGE_SLASHES          0x1u /* Module merge_slashes: runs of '/' become one '/' */
#define PT_PATH_REJECT_ESCAPED_SLASHES 0x2u /* Module reject_requests_with_escaped_slashes:
                                             * %2F or %5C (any case) makes the path invalid */

/* pt_path_needs_normalizing: false when pt_path_normalize(<path>, <flags>) would return <path>
 * unchanged for certain, so that the caller can skip the copy: <path> starts with '/' and has no
 * '%', no '\\', no "/." (and no "//" under PT_PATH_MERGE_SLASHES), and no byte that Envoy
 * percent-encodes. One pass over <path>; <path> is the path alone, without '?' and query. */
bool pt_path_needs_normalizing(struct pt_str path, unsigned flags);

/* pt_path_normalize: writes into <out> (<cap> bytes, not NUL-terminated) what Envoy's
 * normalize_path makes of <path> (without '?' and query, which Envoy never touches):
 * - percent-encoded unreserved characters (ALPHA DIGIT - . _ ~) are decoded (%41 is A, %7e is ~);
 *   every other escape is kept as it was written, hex case included (%2f stays %2f);
 * - '\\' becomes '/'; bytes that may not appear in a path (controls, space, " # < > ^ ` { | },
 *   DEL, bytes >= 0x80) are percent-encoded with upper-case hex;
 * - dot segments are removed (RFC 3986 §5.2.4), "%2e" counting as a dot; ".." at the root stays
 *   at the root ("/../a" is "/a");
 * - a path that does not start with '/' gets one ("a/b" is "/a/b");
 * then, under PT_PATH_MERGE_SLASHES, runs of '/' are merged ("/a//b" is "/a/b"). A '%' that is
 * not followed by two hex digits is kept, except that it becomes "%25" when decoding the
 * characters after it would otherwise form a new escape ("%%34%31" is "%%2541"), so that a second
 * normalization changes nothing. Returns the length written, PT_BADMSG when Envoy rejects the path
 * (a NUL byte, %00, or %2F/%5C under PT_PATH_REJECT_ESCAPED_SLASHES: answer 400), or PT_TOOBIG
 * when the work does not fit in <cap>. The result, and the work (dot segments are written before
 * they are removed), are never longer than <path> plus one byte (the '/' added in front) plus two
 * bytes per byte that had to be percent-encoded: a <cap> of that size always suffices. */
int pt_path_normalize(struct pt_str path, unsigned flags, char *out, size_t cap);

#endif
