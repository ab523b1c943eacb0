/* The route module: compile route specs (one per Mapping) into an immutable table, match requests
 * against it in O(path length), rewrite the upstream path, and the host-glob helpers Host/Mapping
 * binding needs. Types are in route/route-t.h.
 *
 * Thread model: a table is built on the control thread and is then read-only; any number of
 * worker threads may call pt_route_match() and pt_route_rewrite() on it at once. Regex matching
 * uses one PCRE2 match-data block per thread: call pt_route_thread_init() in each worker's init
 * so that the request path never allocates, and pt_route_thread_fini() when the thread ends. */
#ifndef PT_ROUTE_ROUTE_H
#define PT_ROUTE_ROUTE_H

#include "route/route-t.h"

struct pcre2_real_match_data_8; /* pcre2.h's pcre2_match_data_8 */

/* pt_route_table_build_partial: compiles <n> <specs> into a table, leaving out each spec that is
 * invalid (bad regex, "*" in an exact host, bad hostname glob, bad regex_rewrite substitution,
 * weight below -1, missing prefix...), reported through <on_reject>(<ctx>, index, message) when
 * <on_reject> is not NULL. Never returns NULL (config code: allocation failure aborts). The
 * specs are borrowed for the call only; the returned table is owned by the caller and freed with
 * pt_route_table_free(). Specs whose match keys are identical form one canary group. */
struct pt_route_table *pt_route_table_build_partial(const struct pt_route_spec *specs, size_t n,
                                                    pt_route_reject_cb on_reject, void *ctx);

/* pt_route_table_build: all-or-nothing variant of pt_route_table_build_partial(). Returns the
 * table, or NULL with the first problem written to <err> (<errlen> bytes, NUL-terminated, as
 * "spec N: message") when any spec is invalid. <err> may be NULL when <errlen> is 0. */
struct pt_route_table *pt_route_table_build(const struct pt_route_spec *specs, size_t n, char *err,
                                            size_t errlen);

/* pt_route_table_free: frees <t> and everything it owns. Routes returned by pt_route_match() on
 * it become invalid. NULL is allowed. */
void pt_route_table_free(struct pt_route_table *t);

/* pt_route_table_size: the number of routes (accepted specs) in <t>, canary members included. */
size_t pt_route_table_size(const struct pt_route_table *t);

/* pt_route_match: the best-ranked route of <t> whose every constraint <req> meets, or NULL when
 * none does (the caller answers 404). Rank: descending precedence, prefix length, header weight,
 * query weight, then Emissary's remaining keys (see route.c). When the winner is a canary group,
 * <rnd> (a uniformly random number) picks the member by weight. Thread-safe; does not allocate
 * once pt_route_thread_init() has run on the calling thread. */
const struct pt_route *pt_route_match(const struct pt_route_table *t,
                                      const struct pt_route_req *req, uint32_t rnd);

/* pt_route_action: the spec's opaque action for route <r>. */
void *pt_route_action(const struct pt_route *r);

/* pt_route_spec_index: the position of <r>'s spec in the array given to the build. */
size_t pt_route_spec_index(const struct pt_route *r);

/* pt_route_rewrite: writes the upstream path of <req> as route <r> (returned by pt_route_match()
 * for this <req>) forwards it, plus '?' and the query when the query is not empty, into <out>
 * (<cap> bytes, NUL-terminated). Prefix rewrite replaces the matched prefix (the whole path for
 * exact and regex routes) with the rewrite; regex_rewrite replaces every match of the pattern in
 * the path with the substitution. <*changed> is set when a rewrite rule applied, which is when
 * Envoy adds x-envoy-original-path (even if the result equals the original path). Returns the
 * length written (without the NUL), or PT_TOOBIG when <cap> is too small, PT_NOMEM when the
 * thread has no regex scratch (see pt_route_thread_init()), PT_INVAL when a regex_rewrite hits
 * the backtracking limit or its result is empty or has a byte that a request-target may not
 * hold (CR, LF, NUL, space, '#', other controls, non-ASCII). Thread-safe. */
int pt_route_rewrite(const struct pt_route *r, const struct pt_route_req *req, char *out,
                     size_t cap, bool *changed);

/* pt_route_thread_init: allocates the calling thread's regex scratch. Returns 0 or PT_NOMEM.
 * Optional (the first regex match allocates it otherwise) but keeps requests allocation-free. */
int pt_route_thread_init(void);

/* pt_route_thread_fini: frees the calling thread's regex scratch. */
void pt_route_thread_fini(void);

/* pt_hostglob_match: whether <host> (port already stripped) matches the hostname <glob>, ASCII
 * case-insensitively, with Envoy's virtual-host domain rules: "*" matches everything; a leading
 * "*" is a suffix match and a trailing "*" a prefix match, the "*" standing for at least one
 * byte (it may cross dots: "*.a.com" matches "x.y.a.com" but not "a.com"); anything else is an
 * exact match. Globs with "*" in the middle or at both ends, or starting with ".", match
 * nothing, and so does a host starting with ".". */
bool pt_hostglob_match(const char *glob, struct pt_str host);

/* pt_hostglob_overlap: Emissary's hostglob_matches(<a>, <b>): true when some host name could
 * match both globs (order does not matter). Used to bind Mappings to Hosts. Case-insensitive. */
bool pt_hostglob_overlap(const char *a, const char *b);

/* pt_authority_strip_port: <authority> without a trailing ":<digits>" port. "[v6]:port" keeps
 * its brackets ("[::1]"); a bare IPv6 address ("::1") or a non-numeric port is left alone. */
struct pt_str pt_authority_strip_port(struct pt_str authority);

/* Internal, shared between the files of route/. */

/* pt_hostglob__parse: parses <glob> (<len> bytes) into <out>; out->lit points into <glob>. */
void pt_hostglob__parse(const char *glob, size_t len, struct pt_hostglob *out);

/* pt_hostglob__test: whether <host> matches the parsed glob <g> (see pt_hostglob_match()). */
bool pt_hostglob__test(const struct pt_hostglob *g, struct pt_str host);

/* pt_route__regex_compile: compiles <pattern> for table <t> (which frees it), with PCRE2 options
 * <options>. Returns NULL with a message in <err> when the pattern is invalid. */
struct pcre2_real_code_8 *pt_route__regex_compile(struct pt_route_table *t, const char *pattern,
                                                  uint32_t options, char *err, size_t errlen);

/* pt_route__strndup: a NUL-terminated copy of <s> (<n> bytes) owned by table <t>. */
char *pt_route__strndup(struct pt_route_table *t, const char *s, size_t n);

/* pt_route__match_data: the calling thread's PCRE2 match data (NULL if it cannot be allocated),
 * with room for PT_ROUTE__MAX_GROUPS capture groups. */
struct pcre2_real_match_data_8 *pt_route__match_data(void);

#define PT_ROUTE__MAX_GROUPS 31

/* pt_route__rewrite_setup: fills the rewrite fields of <r> from <spec>, compiling the
 * regex_rewrite pattern into <t>. Returns 0, or PT_INVAL with a message in <err>. */
int pt_route__rewrite_setup(struct pt_route_table *t, struct pt_route *r,
                            const struct pt_route_spec *spec, char *err, size_t errlen);

#endif
