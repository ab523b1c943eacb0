/* Types of the route module: the route specs that config/ compiles from Mappings, the request view
 * that the proxy matches, and the compiled route a match returns. Prototypes are in route/route.h.
 * The compiled table (struct pt_route_table) is opaque: only route/route.c knows its layout. */
#ifndef PT_ROUTE_ROUTE_T_H
#define PT_ROUTE_ROUTE_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/resource-t.h"
#include "core/common.h" /* struct pt_str, struct pt_header: the core vocabulary has no -t.h */

/* The PCRE2 code type, named without pulling pcre2.h into every includer (pcre2.h declares
 * `typedef struct pcre2_real_code_8 pcre2_code_8`). */
struct pcre2_real_code_8;

/* One route to compile, usually one per Mapping, given in any order. Every string is borrowed for
 * the duration of pt_route_table_build*() only: the table keeps copies. NULL or "" means unset. */
struct pt_route_spec {
    const char *prefix;        /* required: literal path prefix, or a regex when prefix_regex */
    bool prefix_regex;         /* prefix is a PCRE2 regex that must match the whole path */
    bool prefix_exact;         /* the whole path must equal prefix (ignored when prefix_regex) */
    bool case_sensitive;       /* false: ASCII case-insensitive prefix/exact compare */
    const char *hostname;      /* host glob ("*", "*.a.com", "a.*", exact); wins over host */
    const char *host;          /* exact host, or a PCRE2 regex when host_regex; wins over an
                                * ":authority" header constraint. Both compare with the authority
                                * without its port, unless they name a port; a host regex may
                                * match either the authority or the host without its port. */
    bool host_regex;
    const char *method;        /* exact, case-sensitive; or a regex when method_regex */
    bool method_regex;
    const struct pt_match_kv *headers; /* name (case-insensitive), value (NULL = present), regex
                                        * (whole value); repeated headers are joined with ','.
                                        * ":authority"/"host" read the authority, ":method" the
                                        * method. */
    size_t nheaders;
    const struct pt_match_kv *query_parameters; /* raw (undecoded) values, names case-sensitive */
    size_t nquery_parameters;
    int precedence;
    int weight;                /* canary share in percent; -1 = unset (takes the remainder) */
    const char *rewrite;       /* Envoy prefix_rewrite; NULL or "" = no prefix rewrite */
    const char *regex_rewrite_pattern;      /* wins over rewrite when set */
    const char *regex_rewrite_substitution; /* RE2 syntax: \0..\9 groups, \\ backslash */
    void *action;              /* opaque to the route module, returned by pt_route_action() */
    bool shadow;               /* a mirror of its canary group (Mapping shadow: true), not a
                                * member: never matched itself; its action becomes the group
                                * routes' `shadow`. The first by input order is kept; another
                                * shadow, or one whose group has no member, is rejected. */
};

/* The request as the router sees it. Slices are borrowed for the duration of the call. The path
 * is the already normalised path without the query; the authority is the Host header or
 * :authority, port included if the client sent one. */
struct pt_route_req {
    struct pt_str method;
    struct pt_str path;      /* no query */
    struct pt_str query;     /* without the '?' */
    struct pt_str authority; /* may include :port, or be [v6]:port */
    const struct pt_header *headers;
    size_t nheaders;
};

/* pt_route_reject_cb: called once per spec that cannot be compiled; <spec_index> is its position
 * in the array given to pt_route_table_build_partial() and <message> says why (valid during the
 * call only). The other specs are still built. */
typedef void (*pt_route_reject_cb)(void *ctx, size_t spec_index, const char *message);

/* One compiled route (one canary member). Lives inside its table; read-only once built. */
struct pt_route {
    void *action;      /* the spec's action */
    size_t spec_index; /* the spec's position in the array given to the build */
    /* private */
    uint32_t _share_end;    /* canary: cumulative share of the group up to and including this */
    uint32_t _matched_len;  /* bytes of the path the match covers; PT_ROUTE__WHOLE_PATH if all */
    const char *_rewrite;   /* prefix_rewrite (table-owned), NULL when none */
    uint32_t _rewrite_len;
    const struct pcre2_real_code_8 *_rr_code; /* regex_rewrite pattern, NULL when none */
    const char *_rr_subst;  /* its substitution in PCRE2 syntax (table-owned) */
    uint32_t _rr_subst_len;
    void *shadow;      /* the action of its group's shadow spec, NULL when none */
};

#define PT_ROUTE__WHOLE_PATH UINT32_MAX

/* A compiled route table: immutable after build, shared by every worker thread. */
struct pt_route_table;

/* A parsed hostname glob (glob.c). The literal is lowercased and owned by whoever parsed it. */
enum pt_hostglob_kind {
    PT_HOSTGLOB_ANY = 0, /* "*" */
    PT_HOSTGLOB_EXACT,   /* "a.example.com" */
    PT_HOSTGLOB_SUFFIX,  /* "*.example.com", "*example.com": "*" matches one or more bytes */
    PT_HOSTGLOB_PREFIX,  /* "example.*": likewise */
    PT_HOSTGLOB_INVALID, /* "*" in the middle or at both ends, leading ".", empty: matches nothing */
};

struct pt_hostglob {
    enum pt_hostglob_kind kind;
    struct pt_str lit; /* the glob without its '*' */
    bool has_port;     /* lit names a port ("a.com:8500"): compare with the full authority */
};

#endif
