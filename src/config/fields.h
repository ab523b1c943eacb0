/* Declarative field tables (name, type, offset, range), the generic reader that applies them to a
 * YAML mapping (fields.c), and the kind descriptions built from them (kinds.c). Internal to
 * config/: resources.c looks kinds up and reads objects with them. The reader does the type
 * checks, defaults-by-absence, unknown-field notices and `FILE:LINE: Kind/ns/name: path: message`
 * errors. */
#ifndef PT_CONFIG_FIELDS_H
#define PT_CONFIG_FIELDS_H

#include "config/ynode.h"
#include "core/arena.h"

#include <stdbool.h>
#include <stddef.h>

/* One object being read: where it is, what to call it, and how many errors it has so far. */
struct pt_config__obj {
    struct pt_arena *arena; /* the resources' arena: everything kept is copied here */
    struct pt_diag *diag;
    const char *file;
    int line;               /* the document's (or List item's) first line */
    const char *object;     /* "Kind/ns/name", or NULL */
    bool v2;                /* read from getambassador.io/v2 or v1 */
    int nerrors;            /* > 0: the object is rejected */
};

enum pt_config__ftype {
    PT_F_END = 0,  /* table terminator */
    PT_F_STR,      /* const char *; any scalar, copied */
    PT_F_BOOL,     /* bool */
    PT_F_INT,      /* int within [min, max] */
    PT_F_DOUBLE,   /* double within [min, max] */
    PT_F_ENUM,     /* int-sized enum: index of the value in <names> */
    PT_F_STRENUM,  /* const char *: one of <names> */
    PT_F_STRLIST,  /* const char ** at off, size_t count at off_n; a single string is a list of one */
    PT_F_KVMAP,    /* struct pt_kv * at off, size_t count at off_n; scalar values */
    PT_F_OBJECT,   /* a nested mapping read with table <sub> into base + off */
    PT_F_OBJLIST,  /* a list of mappings, each read with <sub> into an array of <elem>-byte items */
    PT_F_INLINE,   /* <sub>'s fields are accepted at this level too, read into base + off */
    PT_F_CUSTOM,   /* <fn> reads the value */
    PT_F_IGNORE,   /* known, accepted, unused */
};

#define PT_F_REQUIRED 0x1u   /* missing or null: "<path>: required" */
#define PT_F_DEPRECATED 0x2u /* the alias spelling gives a "deprecated" notice */

struct pt_config__field;

/* A custom reader: <val> is never null; <path> names the field in messages. */
typedef void (*pt_config__field_fn)(struct pt_config__obj *c, const struct pt_config__field *f,
                                    const struct pt_ynode *key, const struct pt_ynode *val,
                                    void *base, const char *path);

struct pt_config__field {
    const char *name;
    const char *alias;       /* other accepted spelling (camelCase, deprecated name), or NULL */
    enum pt_config__ftype type;
    unsigned flags;          /* PT_F_REQUIRED, PT_F_DEPRECATED */
    size_t off;              /* offset of the value in the base struct */
    size_t off_n;            /* STRLIST, KVMAP, OBJLIST: offset of the size_t count */
    size_t elem;             /* OBJLIST: element size */
    long min, max;           /* INT, DOUBLE range */
    const char *const *names; /* ENUM, STRENUM: accepted values, NULL-terminated */
    const struct pt_config__field *sub; /* OBJECT, OBJLIST, INLINE */
    pt_config__field_fn fn;  /* CUSTOM */
    int arg;                 /* CUSTOM: free for the reader's use */
};

/* pt_config__read_fields: reads the MAP <map> with table <tab> into <base>. <path> is the field
 * path of <map> ("" at the top). Unknown keys give a notice, wrong types and missing required
 * fields an error (counted in c->nerrors). Null values count as absent. */
void pt_config__read_fields(struct pt_config__obj *c, const struct pt_ynode *map,
                            const struct pt_config__field *tab, void *base, const char *path);

/* pt_config__err, pt_config__notice: a diagnostic about <c> at <at>'s line (NULL: c->line). */
void pt_config__err(struct pt_config__obj *c, const struct pt_ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void pt_config__notice(struct pt_config__obj *c, const struct pt_ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* pt_config__path: "<prefix>.<name>" (or "<name>" when prefix is "") into <out> (truncated). */
void pt_config__path(char *out, size_t cap, const char *prefix, const char *name);

/* pt_config__string: <val> as a string copied into the arena; on a non-scalar (or a string
 * with a NUL byte) reports "<path>: expected a string" at <at> and returns NULL. */
const char *pt_config__string(struct pt_config__obj *c, const struct pt_ynode *at,
                              const struct pt_ynode *val, const char *path);

/* pt_config__kvmap: the MAP <val> (scalar keys and values; null values read as "") into an
 * arena array *dst of *n pairs; errors (non-map, non-string, duplicate keys) name <path>. */
void pt_config__kvmap(struct pt_config__obj *c, const struct pt_ynode *key,
                      const struct pt_ynode *val, struct pt_kv **dst, size_t *n, const char *path);

/* pt_config__scalar_bool, pt_config__scalar_long: parse a scalar; false when it is not one. */
bool pt_config__scalar_bool(const struct pt_ynode *n, bool *out);
bool pt_config__scalar_long(const struct pt_ynode *n, long *out);

/* pt_config__is_string: a scalar usable as a string (no embedded NUL). */
bool pt_config__is_string(const struct pt_ynode *n);

/* Checks of values Portico writes into an HTTP head (wire.c). Each returns true when <s> may be
 * written, else reports "<path>: ..." at <at> (an error: the object is rejected) and returns
 * false. The value is shown escaped in the message.
 * pt_config__wire_name: an RFC 9110 token that is not a header Portico manages itself
 * (content-length, transfer-encoding, connection, te, upgrade, keep-alive, proxy-connection,
 * host); <adding> picks the wording (added or removed).
 * pt_config__wire_value: a field value: no CR, LF, NUL or other control but HTAB, and no
 * leading or trailing SP or HTAB.
 * pt_config__wire_target: only request-target bytes (VCHAR except '#').
 * pt_config__wire_host: a non-empty host[:port] of RFC 3986 bytes (no '/', '?', '#', '@', space).
 * pt_config__wire_service: only host[:port] bytes and '/' (for "scheme://"): a service's host
 * becomes the Host header with auto_host_rewrite.
 * pt_config__wire_no_ctl: no control byte (0x00-0x1f, 0x7f). */
bool pt_config__wire_name(struct pt_config__obj *c, const struct pt_ynode *at, const char *path,
                          const char *name, bool adding);
bool pt_config__wire_value(struct pt_config__obj *c, const struct pt_ynode *at, const char *path,
                           const char *value);
bool pt_config__wire_target(struct pt_config__obj *c, const struct pt_ynode *at, const char *path,
                            const char *s);
bool pt_config__wire_host(struct pt_config__obj *c, const struct pt_ynode *at, const char *path,
                          const char *s);
bool pt_config__wire_service(struct pt_config__obj *c, const struct pt_ynode *at,
                             const char *path, const char *s);
bool pt_config__wire_no_ctl(struct pt_config__obj *c, const struct pt_ynode *at, const char *path,
                            const char *s);

/* One kind Portico reads (kinds.c): where its fields are, how they read, where valid objects go.
 * Every resource struct starts with its struct pt_meta. */
struct pt_config__kind {
    const char *name;
    bool core;            /* a Kubernetes kind (else getambassador.io) ... */
    const char *api;      /* ... of this apiVersion: "v1", "discovery.k8s.io/v1" */
    bool root_body;       /* fields at the document root (Endpoints, Secret), not under spec */
    bool global_names;    /* names are unique across namespaces (TLSContext) */
    const struct pt_config__field *fields;
    size_t size;
    size_t arr_off, n_off; /* the array and its count in struct pt_resources */
    void (*init)(void *obj); /* defaults, before the fields are read */
    void (*check)(struct pt_config__obj *c, void *obj, const struct pt_ynode *body);
};

#define PT_CONFIG__NKINDS 12

/* Scratch space that holds any one resource while it is read. */
union pt_config__any_res {
    struct pt_listener_res listener;
    struct pt_host_res host;
    struct pt_tlscontext_res tlscontext;
    struct pt_mapping_res mapping;
    struct pt_tracing_res tracing;
    struct pt_module_res module;
    struct pt_service_res service;
    struct pt_endpoints_res endpoints;
    struct pt_endpointslice_res endpointslice;
    struct pt_secret_res secret;
    struct pt_authservice_res authservice;
    struct pt_ratelimitservice_res ratelimitservice;
};

/* pt_config__find_kind: the kind called <name>, or NULL. */
const struct pt_config__kind *pt_config__find_kind(const char *name);

/* pt_config__unimplemented: <name> is a getambassador.io kind Portico knows of but does not
 * implement (kinds.c). */
bool pt_config__unimplemented(const char *name);

/* pt_config__kind_index: <k>'s position, 0 .. PT_CONFIG__NKINDS - 1. */
size_t pt_config__kind_index(const struct pt_config__kind *k);

#define PT_PATH_MAX 256

/* ---- field tables (kinds.c, policy.c) -------------------------------------------------- */

/* Entries of a field table, by type: F_STR("name", struct, member) and so on. */
#define OFF(T, m) offsetof(T, m)
#define F_STR(n, T, m) { .name = n, .type = PT_F_STR, .off = OFF(T, m) }
#define F_STR_REQ(n, T, m) { .name = n, .type = PT_F_STR, .flags = PT_F_REQUIRED, .off = OFF(T, m) }
#define F_BOOL(n, T, m) { .name = n, .type = PT_F_BOOL, .off = OFF(T, m) }
#define F_INT(n, T, m, lo, hi) { .name = n, .type = PT_F_INT, .off = OFF(T, m), .min = lo, .max = hi }
#define F_LIST(n, T, m, cnt) { .name = n, .type = PT_F_STRLIST, .off = OFF(T, m), .off_n = OFF(T, cnt) }
#define F_KV(n, T, m, cnt) { .name = n, .type = PT_F_KVMAP, .off = OFF(T, m), .off_n = OFF(T, cnt) }
#define F_OBJ(n, tab) { .name = n, .type = PT_F_OBJECT, .sub = tab }
#define F_OBJLIST(n, T, m, cnt, E, tab)                                                          \
    { .name = n, .type = PT_F_OBJLIST, .off = OFF(T, m), .off_n = OFF(T, cnt), .elem = sizeof(E), \
      .sub = tab }
#define F_FN(n, f, a) { .name = n, .type = PT_F_CUSTOM, .fn = f, .arg = a }
#define F_IGN(n) { .name = n, .type = PT_F_IGNORE }
#define F_END { .type = PT_F_END }

/* pt_config__added_headers: a map of header name -> "value" or {value, append} (append true
 * unless said) into an arena array *out; each name and value checked for a head (wire.c), and
 * with <formats>, a value with '%' checked as an Envoy format. Returns the count. (kinds.c) */
struct pt_add_header;
size_t pt_config__added_headers(struct pt_config__obj *c, const struct pt_ynode *key, const struct pt_ynode *val,
                                const char *path, bool formats, struct pt_add_header **out);

/* The readers and checks of the Mapping's (and the Module's) policy fields (policy.c): the
 * field tables of kinds.c name them. */
struct pt_mapping_res;
struct pt_error_override_res;
void pt_config__read_labels(struct pt_config__obj *c, const struct pt_config__field *f,
                            const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                            const char *path);
void pt_config__read_cors(struct pt_config__obj *c, const struct pt_config__field *f,
                          const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                          const char *path);
void pt_config__read_load_balancer(struct pt_config__obj *c, const struct pt_config__field *f,
                                   const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                                   const char *path);
/* pt_config__check_error_overrides: the rules Emissary accepts (<list>: the YAML sequence, for
 * lines); pt_config__check_health_checks: a Mapping's checks are complete and fit for a head. */
void pt_config__check_error_overrides(struct pt_config__obj *c, const struct pt_error_override_res *r, size_t n,
                                      const struct pt_ynode *list);
void pt_config__check_health_checks(struct pt_config__obj *c, const struct pt_mapping_res *m,
                                    const struct pt_ynode *body);
extern const struct pt_config__field pt_config__error_override_fields[];
extern const struct pt_config__field pt_config__health_check_fields[];

#endif
