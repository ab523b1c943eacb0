/* The readers and checks of the policy fields of a Mapping (and of the `ambassador` Module,
 * where it gives their default): rate-limit `labels` and `default_labels`, `cors`,
 * `error_response_overrides`, `load_balancer` and `health_checks`, as Emissary reads them. The
 * field tables that name them, and the rest of each kind, are in kinds.c. */
#include "config/fields.h"
#include "config/load.h"
#include "config/ynode.h"

#include "cluster/health.h"
#include "core/arena.h"
#include "core/common.h"
#include "observe/logformat.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- rate-limit labels (Mapping labels, Module default_labels) ------------------------------ */

static const char *const label_kinds[] = { "generic_key", "request_headers", "remote_address",
                                           "source_cluster", "destination_cluster", NULL };

/* read_label: one label specifier (Emissary's MappingLabelSpecifier) into <out>: a one-key
 * mapping {generic_key: {key?, value}}, {request_headers: {key, header_name,
 * omit_if_not_present?}}, {remote_address | source_cluster | destination_cluster: {key}}; or a
 * getambassador.io/v2 shorthand, as Emissary converts them: a string ("remote_address",
 * "source_cluster", "destination_cluster", else a generic_key value), or {name: {header,
 * omit_if_not_present?}} (request_headers with key name). False after reporting why not. */
static bool read_label(struct pt_config__obj *c, const struct pt_ynode *n, struct pt_rl_label *out,
                       const char *path)
{
    const struct pt_ynode *k, *v, *x;
    const char *name;
    int kind = -1;

    memset(out, 0, sizeof(*out));
    if (n->type == PT_YNODE_SCALAR) {
        if ((name = pt_config__string(c, n, n, path)) == NULL)
            return false;
        for (int i = PT_RL_REMOTE_ADDRESS; i <= PT_RL_DESTINATION_CLUSTER && kind < 0; i++)
            if (strcmp(name, label_kinds[i]) == 0)
                kind = i;
        out->kind = kind < 0 ? PT_RL_GENERIC_KEY : (enum pt_rl_label_kind)kind;
        out->key = kind < 0 ? "generic_key" : label_kinds[kind];
        out->value = name;
        return true;
    }
    if (n->type != PT_YNODE_MAP || n->npairs != 1 || n->pairs[0].value->type != PT_YNODE_MAP) {
        pt_config__err(c, n, "%s: expected a mapping with one key (generic_key, request_headers, "
                       "remote_address, source_cluster or destination_cluster)", path);
        return false;
    }
    k = n->pairs[0].key;
    v = n->pairs[0].value;
    if ((name = pt_config__string(c, k, k, path)) == NULL)
        return false;
    for (int i = 0; label_kinds[i] != NULL && kind < 0; i++)
        if (strcmp(name, label_kinds[i]) == 0)
            kind = i;
    if (kind < 0 && (x = pt_ynode_get(v, "header")) != NULL) { /* v2: {name: {header: X}} */
        out->kind = PT_RL_REQUEST_HEADERS;
        out->key = name;
        out->value = pt_config__string(c, x, x, path);
        return out->value != NULL;
    }
    if (kind < 0) {
        pt_config__err(c, k, "%s: unknown label \"%s\" (generic_key, request_headers, remote_address, "
                       "source_cluster or destination_cluster)", path, name);
        return false;
    }
    out->kind = (enum pt_rl_label_kind)kind;
    x = pt_ynode_get(v, "key");
    out->key = x != NULL && !pt_ynode_is_null(x) ? pt_config__string(c, x, x, path) : label_kinds[kind];
    if (out->key == NULL)
        return false;
    if (kind == PT_RL_GENERIC_KEY || kind == PT_RL_REQUEST_HEADERS) {
        const char *field = kind == PT_RL_GENERIC_KEY ? "value" : "header_name";
        x = pt_ynode_get(v, field);
        if (x == NULL || pt_ynode_is_null(x)) {
            pt_config__err(c, v, "%s.%s.%s: required", path, name, field);
            return false;
        }
        out->value = pt_config__string(c, x, x, path);
        return out->value != NULL;
    }
    if (strcmp(out->key, label_kinds[kind]) != 0) {
        pt_config__err(c, x, "%s.%s.key: must be \"%s\"", path, name, label_kinds[kind]);
        return false;
    }
    return true;
}

/* read_label_list: a list of label specifiers into the group <g>. */
static void read_label_list(struct pt_config__obj *c, const struct pt_ynode *list, struct pt_rl_group *g,
                            const char *path)
{
    char p[PT_PATH_MAX];

    if (list->type != PT_YNODE_SEQ) {
        pt_config__err(c, list, "%s: expected a list of labels", path);
        return;
    }
    g->labels = pt_arena_alloc_array(c->arena, list->nitems, sizeof(*g->labels));
    for (size_t i = 0; i < list->nitems; i++) {
        snprintf(p, sizeof(p), "%.200s[%zu]", path, i);
        if (read_label(c, list->items[i], &g->labels[g->nlabels], p))
            g->nlabels++;
    }
}

/* pt_config__read_labels: `labels` of a Mapping (f->arg 0: domain -> list of {group name: [labels]}) or
 * `default_labels` of the Module (f->arg 1: domain -> {defaults: [labels]}). */
void pt_config__read_labels(struct pt_config__obj *c, const struct pt_config__field *f,
                        const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                        const char *path)
{
    struct pt_rl_domain *d;
    char p[PT_PATH_MAX], gp[PT_PATH_MAX];

    if (val->type != PT_YNODE_MAP) {
        pt_config__err(c, key, "%s: expected a mapping of domain to label groups", path);
        return;
    }
    d = pt_arena_alloc_array(c->arena, val->npairs, sizeof(*d));
    for (size_t i = 0; i < val->npairs; i++) {
        const struct pt_ynode *dk = val->pairs[i].key, *groups = val->pairs[i].value;
        d[i].domain = pt_config__string(c, dk, dk, path);
        pt_config__path(p, sizeof(p), path, d[i].domain ? d[i].domain : "?");
        if (f->arg) { /* Module: {defaults: [...]} */
            const struct pt_ynode *l = pt_ynode_get(groups, "defaults");
            if (groups->type != PT_YNODE_MAP || l == NULL || pt_ynode_is_null(l)) {
                pt_config__err(c, dk, "%s: expected {defaults: [labels]}", p);
                continue;
            }
            d[i].groups = pt_arena_alloc_array(c->arena, 1, sizeof(*d[i].groups));
            d[i].groups[0].name = "defaults";
            d[i].ngroups = 1;
            pt_config__path(gp, sizeof(gp), p, "defaults");
            read_label_list(c, l, &d[i].groups[0], gp);
            continue;
        }
        if (groups->type != PT_YNODE_SEQ) {
            pt_config__err(c, dk, "%s: expected a list of label groups", p);
            continue;
        }
        d[i].groups = pt_arena_alloc_array(c->arena, groups->nitems, sizeof(*d[i].groups));
        for (size_t g = 0; g < groups->nitems; g++) {
            const struct pt_ynode *gn = groups->items[g];
            char ip[PT_PATH_MAX];
            snprintf(ip, sizeof(ip), "%.200s[%zu]", p, g);
            if (gn->type != PT_YNODE_MAP || gn->npairs != 1) {
                pt_config__err(c, gn, "%s: expected a mapping with one key (the group's name)", ip);
                continue;
            }
            struct pt_rl_group *rg = &d[i].groups[d[i].ngroups++];
            rg->name = pt_config__string(c, gn->pairs[0].key, gn->pairs[0].key, ip);
            pt_config__path(gp, sizeof(gp), ip, rg->name ? rg->name : "?");
            read_label_list(c, gn->pairs[0].value, rg, gp);
        }
    }
    if (f->arg) {
        struct pt_module_res *m = base;
        m->default_labels = d;
        m->ndefault_labels = val->npairs;
    } else {
        struct pt_mapping_res *m = base;
        m->labels = d;
        m->nlabels = val->npairs;
    }
}

/* ---- CORS (Mapping and Module) -------------------------------------------------------------- */

/* cors.origins: a list of origins, or one string of them separated by ',' (Emissary's
 * CommaSeparated form). Blanks around each are dropped, and so are empty ones. */
static void read_cors_origins(struct pt_config__obj *c, const struct pt_config__field *f,
                              const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                              const char *path)
{
    struct pt_cors_res *cr = base;
    char p[PT_PATH_MAX];

    if (val->type == PT_YNODE_SEQ) {
        cr->origins = pt_arena_alloc_array(c->arena, val->nitems, sizeof(*cr->origins));
        for (size_t i = 0; i < val->nitems; i++) {
            int n = snprintf(p, sizeof(p), "%s[%zu]", path, i);
            const char *o = pt_config__string(c, val->items[i], val->items[i],
                                              n > 0 && (size_t)n < sizeof(p) ? p : path);
            if (o != NULL && *o != '\0')
                cr->origins[cr->norigins++] = o;
        }
        return;
    }
    const char *s = pt_config__string(c, key, val, path);
    if (s == NULL)
        return;
    cr->origins = pt_arena_alloc_array(c->arena, strlen(s) / 2 + 1, sizeof(*cr->origins));
    for (const char *q = s;;) {
        const char *end = strchr(q, ','), *stop = end ? end : q + strlen(q);
        while (q < stop && (*q == ' ' || *q == '\t'))
            q++;
        while (stop > q && (stop[-1] == ' ' || stop[-1] == '\t'))
            stop--;
        if (stop > q)
            cr->origins[cr->norigins++] = pt_arena_strndup(c->arena, q, (size_t)(stop - q));
        if (end == NULL)
            break;
        q = end + 1;
    }
}

#define T struct pt_cors_res
static const struct pt_config__field cors_fields[] = {
    F_FN("origins", read_cors_origins, 0),
    F_LIST("methods", T, methods, nmethods),
    F_LIST("headers", T, headers, nheaders),
    F_LIST("exposed_headers", T, exposed_headers, nexposed_headers),
    F_BOOL("credentials", T, credentials),
    F_STR("max_age", T, max_age),
    F_END,
};
#undef T

/* ---- error_response_overrides (Mapping and Module) ------------------------------------------ */

#define PT_ERROR_BODY_FILE_MAX (64 * 1024) /* text_format_source: the largest file read */

/* text_format_source: {filename}; the file is read now, into text_format (Emissary reads it when
 * it builds the configuration too). */
static void read_format_source(struct pt_config__obj *c, const struct pt_config__field *f,
                               const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                               const char *path)
{
    struct pt_error_override_res *r = base;
    const struct pt_ynode *fn = val->type == PT_YNODE_MAP ? pt_ynode_get(val, "filename") : NULL;
    const char *name = fn != NULL && pt_config__is_string(fn) ? pt_config__string(c, fn, fn, path) : NULL;
    char *text;
    size_t n;
    FILE *fp;

    if (name == NULL || val->npairs != 1) {
        pt_config__err(c, key, "%s: must be an object with a single filename field", path);
        return;
    }
    r->text_format_source = name;
    if ((fp = fopen(name, "rb")) == NULL) {
        pt_config__err(c, key, "%s: text_format_source field references a file that does not exist "
                       "or cannot be read (%.128s)", path, name);
        return;
    }
    text = pt_arena_alloc(c->arena, PT_ERROR_BODY_FILE_MAX + 1);
    n = fread(text, 1, PT_ERROR_BODY_FILE_MAX + 1, fp);
    fclose(fp);
    if (n > PT_ERROR_BODY_FILE_MAX) {
        pt_config__err(c, key, "%s: %.128s is larger than %d bytes", path, name, PT_ERROR_BODY_FILE_MAX);
        return;
    }
    text[n] = '\0';
    if (memchr(text, '\0', n) != NULL) {
        pt_config__err(c, key, "%s: %.128s holds a NUL byte", path, name);
        return;
    }
    r->text_format = text;
}

static void read_json_format(struct pt_config__obj *c, const struct pt_config__field *f,
                             const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                             const char *path)
{
    struct pt_error_override_res *r = base;
    if (val->type != PT_YNODE_MAP) {
        pt_config__err(c, key, "%s: json_format field must be an object", path);
        return;
    }
    r->json = true;
    pt_config__kvmap(c, key, val, &r->json_format, &r->njson_format, path);
}

#define T struct pt_error_override_res
static const struct pt_config__field error_body_fields[] = {
    F_STR("text_format", T, text_format),
    F_FN("json_format", read_json_format, 0),
    F_FN("text_format_source", read_format_source, 0),
    F_STR("content_type", T, content_type),
    F_END,
};

const struct pt_config__field pt_config__error_override_fields[] = {
    { .name = "on_status_code", .type = PT_F_INT, .flags = PT_F_REQUIRED, .off = OFF(T, on_status_code),
      .min = 400, .max = 599 },
    { .name = "body", .type = PT_F_OBJECT, .flags = PT_F_REQUIRED, .sub = error_body_fields },
    F_END,
};
#undef T

/* cors_wire: each value of <cr> that is written into a response head must be a field value
 * (config/wire.c). */
static void cors_wire(struct pt_config__obj *c, const struct pt_ynode *val,
                      const struct pt_cors_res *cr, const char *path)
{
    static const char *const names[] = { "methods", "headers", "exposed_headers" };
    const char *const *lists[] = { cr->methods, cr->headers, cr->exposed_headers };
    size_t counts[] = { cr->nmethods, cr->nheaders, cr->nexposed_headers };
    char p[PT_PATH_MAX];

    for (size_t k = 0; k < 3; k++) {
        for (size_t i = 0; i < counts[k]; i++) {
            int n = snprintf(p, sizeof(p), "%s.%s[%zu]", path, names[k], i);
            const struct pt_ynode *at = pt_ynode_get(val, names[k]);
            if (at != NULL && at->type == PT_YNODE_SEQ && i < at->nitems)
                at = at->items[i]; /* the item's own line */
            if (lists[k][i] != NULL && n > 0 && (size_t)n < sizeof(p))
                pt_config__wire_value(c, at, p, lists[k][i]);
        }
    }
    if (cr->max_age != NULL) {
        pt_config__path(p, sizeof(p), path, "max_age");
        pt_config__wire_value(c, pt_ynode_get(val, "max_age"), p, cr->max_age);
    }
}

/* cors: a CORS policy (Envoy's CorsPolicy); f->arg 0 = a Mapping's, 1 = the Module's default. */
void pt_config__read_cors(struct pt_config__obj *c, const struct pt_config__field *f,
                      const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                      const char *path)
{
    struct pt_cors_res *cr;

    if (val->type != PT_YNODE_MAP) {
        pt_config__err(c, key, "%s: expected a mapping", path);
        return;
    }
    cr = pt_arena_alloc(c->arena, sizeof(*cr));
    pt_config__read_fields(c, val, cors_fields, cr, path);
    cors_wire(c, val, cr, path);
    if (f->arg)
        ((struct pt_module_res *)base)->cors = cr;
    else
        ((struct pt_mapping_res *)base)->cors = cr;
}

/* pt_config__check_error_overrides: the rules Emissary's IRErrorResponse accepts: one body
 * format each, every operator known (the formats compile), a content type fit for a header. <list> is the
 * YAML sequence, for lines. Any bad rule rejects the resource. */
void pt_config__check_error_overrides(struct pt_config__obj *c, const struct pt_error_override_res *r, size_t n,
                                      const struct pt_ynode *list)
{
    for (size_t i = 0; i < n; i++) {
        const struct pt_ynode *at = list && list->type == PT_YNODE_SEQ && i < list->nitems ? list->items[i] : list;
        int formats = (r[i].text_format != NULL && r[i].text_format_source == NULL) + r[i].json +
                      (r[i].text_format_source != NULL);
        char p[64], err[256];
        struct pt_logfmt *f;

        snprintf(p, sizeof(p), "error_response_overrides[%zu]", i);
        if (r[i].on_status_code == 0)
            continue; /* reported: required */
        if (formats > 1) {
            pt_config__err(c, at, "%s.body: only one of \"text_format\", \"json_format\", or "
                           "\"text_format_source\" may be set, found %d of these fields set", p, formats);
            continue;
        }
        if (formats == 0) {
            if (pt_ynode_get(at, "body") != NULL && r[i].text_format_source == NULL)
                pt_config__err(c, at, "%s.body: could not find a valid format field (text_format, "
                               "json_format or text_format_source)", p);
            continue;
        }
        if (r[i].content_type != NULL)
            pt_config__wire_value(c, at, "content_type", r[i].content_type);
        if (r[i].json)
            f = pt_logfmt_compile_json_value(r[i].json_format, r[i].njson_format, PT_LOGFMT_LIVE, err, sizeof(err));
        else if (r[i].text_format != NULL)
            f = pt_logfmt_compile_value(r[i].text_format, PT_LOGFMT_LIVE, err, sizeof(err));
        else
            continue; /* text_format_source that could not be read: reported */
        if (f == NULL)
            pt_config__err(c, at, "%s.body: %s", p, err);
        pt_logfmt_free(f);
    }
}

/* ---- load_balancer (Mapping and Module) ----------------------------------------------------- */

/* py_repr: <n> as Python prints what yaml.safe_load makes of it ({'policy': 'maglev'}), for
 * Emissary's "Invalid load_balancer specified: ..." message, into <out> (<cap> bytes, cut with
 * "..." when it does not fit). Returns the bytes written. */
static size_t py_repr(const struct pt_ynode *n, char *out, size_t cap, int depth)
{
    size_t o = 0;
    bool b;
    long v;

#define PUT(str)                                                                                  \
    do {                                                                                          \
        for (const char *q_ = (str); *q_ && o + 4 < cap; q_++)                                    \
            out[o++] = *q_;                                                                       \
    } while (0)
    if (cap < 8)
        return 0;
    if (depth > 4) {
        PUT("...");
    } else if (n->type == PT_YNODE_MAP || n->type == PT_YNODE_SEQ) {
        bool map = n->type == PT_YNODE_MAP;
        size_t k = map ? n->npairs : n->nitems;
        PUT(map ? "{" : "[");
        for (size_t i = 0; i < k && o + 8 < cap; i++) {
            if (i)
                PUT(", ");
            if (map) {
                o += py_repr(n->pairs[i].key, out + o, cap - o, depth + 1);
                PUT(": ");
            }
            o += py_repr(map ? n->pairs[i].value : n->items[i], out + o, cap - o, depth + 1);
        }
        PUT(map ? "}" : "]");
    } else if (n->plain && pt_ynode_is_null(n)) {
        PUT("None");
    } else if (n->plain && pt_config__scalar_bool(n, &b)) {
        PUT(b ? "True" : "False");
    } else if (n->plain && pt_config__scalar_long(n, &v)) {
        PUT(n->str);
    } else {
        char quote = strchr(n->str, '\'') && !strchr(n->str, '"') ? '"' : '\'';
        out[o++] = quote;
        for (size_t i = 0; i < n->len && o + 6 < cap; i++) {
            unsigned char ch = (unsigned char)n->str[i];
            if (ch == '\\' || ch == (unsigned char)quote)
                out[o++] = '\\';
            out[o++] = ch >= 0x20 && ch != 0x7f ? (char)ch : '?';
        }
        out[o++] = quote;
    }
#undef PUT
    out[o] = '\0';
    return o;
}

/* lb_valid: Emissary's IRHTTPMapping.validate_load_balancer. */
static bool lb_valid(const struct pt_ynode *lb)
{
    const struct pt_ynode *policy = pt_ynode_get(lb, "policy"), *cookie;
    const char *p = policy && pt_config__is_string(policy) && !pt_ynode_is_null(policy) ? policy->str : "";

    if (strcmp(p, "round_robin") == 0 || strcmp(p, "least_request") == 0)
        return lb->npairs == 1;
    if (strcmp(p, "ring_hash") != 0 && strcmp(p, "maglev") != 0)
        return false;
    if (lb->npairs != 2)
        return false;
    if ((cookie = pt_ynode_get(lb, "cookie")) != NULL)
        return cookie->type == PT_YNODE_MAP && pt_ynode_get(cookie, "name") != NULL;
    return pt_ynode_get(lb, "header") != NULL || pt_ynode_get(lb, "source_ip") != NULL;
}

/* is_token: an RFC 9110 token (a header name, a cookie name). */
static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return false;
    return true;
}

/* cookie.ttl: a protobuf Duration as Envoy reads it ("60s", "1.5s"), in whole seconds. */
static void read_cookie_ttl(struct pt_config__obj *c, const struct pt_config__field *f,
                            const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                            const char *path)
{
    struct pt_load_balancer_res *lb = base;
    const char *s = pt_config__is_string(val) ? val->str : "";
    size_t i = 0, digits = 0, frac = 0;
    unsigned long long secs = 0;

    for (; isdigit((unsigned char)s[i]) && digits < 13; i++, digits++)
        secs = secs * 10 + (unsigned)(s[i] - '0');
    if (s[i] == '.')
        for (i++; isdigit((unsigned char)s[i]) && frac < 9; i++)
            frac++;
    if (digits == 0 || digits >= 13 || s[i] != 's' || s[i + 1] != '\0' || (s[digits] == '.' && frac == 0)) {
        pt_config__err(c, key, "%s: expected a duration in seconds such as \"60s\"", path);
        return;
    }
    lb->cookie_ttl_s = (long)secs;
}

#define T struct pt_load_balancer_res
static const struct pt_config__field lb_cookie_fields[] = {
    F_STR_REQ("name", T, cookie_name),
    F_STR("path", T, cookie_path),
    F_FN("ttl", read_cookie_ttl, 0),
    F_END,
};
#undef T

/* lb_hash_fields: the hash policy's values: a cookie name that can be sent back in a
 * Set-Cookie, a path that adds no attribute to it, a header name, source_ip a boolean. */
static void lb_hash_fields(struct pt_config__obj *c, const struct pt_ynode *val,
                           struct pt_load_balancer_res *lb, const char *path)
{
    const struct pt_ynode *cookie = pt_ynode_get(val, "cookie"), *hdr = pt_ynode_get(val, "header");
    const struct pt_ynode *sip = pt_ynode_get(val, "source_ip");
    char p[PT_PATH_MAX];

    if (cookie != NULL) {
        pt_config__path(p, sizeof(p), path, "cookie");
        pt_config__read_fields(c, cookie, lb_cookie_fields, lb, p);
        if (lb->cookie_name != NULL && (!is_token(lb->cookie_name) || strlen(lb->cookie_name) > 128))
            pt_config__err(c, pt_ynode_get(cookie, "name"), "%s.name: not a cookie name (a token of at "
                           "most 128 characters)", p);
        if (lb->cookie_path != NULL &&
            pt_config__wire_value(c, pt_ynode_get(cookie, "path"), "load_balancer.cookie.path", lb->cookie_path) &&
            (strchr(lb->cookie_path, ';') != NULL || strlen(lb->cookie_path) > 256))
            pt_config__err(c, pt_ynode_get(cookie, "path"), "%s.path: not a cookie path (no ';', at "
                           "most 256 characters)", p);
    } else if (hdr != NULL) {
        lb->header = pt_config__string(c, hdr, hdr, "load_balancer.header");
        if (lb->header != NULL && !is_token(lb->header))
            pt_config__err(c, hdr, "%s.header: not a header name", path);
    } else if (sip != NULL) {
        lb->has_source_ip = true;
        if (!pt_config__scalar_bool(sip, &lb->source_ip))
            pt_config__err(c, sip, "%s.source_ip: expected true or false", path);
    }
}

/* load_balancer: Emissary's policies and hash policies; f->arg 0 = a Mapping's, 1 = the
 * Module's default. What Emissary's validate_load_balancer refuses gets its message. */
void pt_config__read_load_balancer(struct pt_config__obj *c, const struct pt_config__field *f,
                               const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                               const char *path)
{
    struct pt_load_balancer_res *lb;
    char repr[400];

    if (val->type != PT_YNODE_MAP) {
        pt_config__err(c, key, "%s: expected a mapping", path);
        return;
    }
    if (!lb_valid(val)) {
        py_repr(val, repr, sizeof(repr), 0);
        pt_config__err(c, key, f->arg ? "Invalid load_balancer specified: %s"
                                      : "Invalid load_balancer specified: %s, invalidating mapping", repr);
        return;
    }
    lb = pt_arena_alloc(c->arena, sizeof(*lb));
    lb->cookie_ttl_s = -1;
    lb->policy = pt_config__string(c, key, pt_ynode_get(val, "policy"), "load_balancer.policy");
    lb_hash_fields(c, val, lb, path);
    if (f->arg)
        ((struct pt_module_res *)base)->load_balancer = lb;
    else
        ((struct pt_mapping_res *)base)->load_balancer = lb;
}

/* ---- health_checks (Mapping) ----------------------------------------------------------------- */

/* health_checks[].health_check.http.add_request_headers: name -> "value" or {value, append}
 * (append is read and has no effect: a check request has no header of that name to add to). */
static void read_hc_headers(struct pt_config__obj *c, const struct pt_config__field *f,
                            const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                            const char *path)
{
    struct pt_health_check_res *hc = base;

    hc->nadd_request_headers = pt_config__added_headers(c, key, val, path, false, &hc->add_request_headers);
}

#define T struct pt_status_range_res
static const struct pt_config__field hc_range_fields[] = {
    { .name = "min", .type = PT_F_INT, .flags = PT_F_REQUIRED, .off = OFF(T, min), .min = 100, .max = 599 },
    { .name = "max", .type = PT_F_INT, .flags = PT_F_REQUIRED, .off = OFF(T, max), .min = 100, .max = 599 },
    F_END,
};
#undef T

#define T struct pt_health_check_res
static const struct pt_config__field hc_http_fields[] = {
    F_STR_REQ("path", T, path),
    F_STR("hostname", T, hostname),
    F_FN("add_request_headers", read_hc_headers, 0),
    F_LIST("remove_request_headers", T, remove_request_headers, nremove_request_headers),
    F_OBJLIST("expected_statuses", T, expected_statuses, nexpected_statuses, struct pt_status_range_res,
              hc_range_fields),
    F_END,
};

static const struct pt_config__field hc_grpc_fields[] = {
    F_STR_REQ("upstream_name", T, upstream_name),
    F_STR("authority", T, authority),
    F_END,
};

/* health_check: {http: {...}} or {grpc: {...}}; f->arg 1 = grpc. */
static void read_hc_location(struct pt_config__obj *c, const struct pt_config__field *f,
                             const struct pt_ynode *key, const struct pt_ynode *val, void *base,
                             const char *path)
{
    struct pt_health_check_res *hc = base;

    if (val->type != PT_YNODE_MAP) {
        pt_config__err(c, key, "%s: expected a mapping", path);
        return;
    }
    pt_config__read_fields(c, val, f->arg ? hc_grpc_fields : hc_http_fields, hc, path);
    if (f->arg)
        hc->grpc = true;
    else
        hc->http = true;
}

static const struct pt_config__field hc_location_fields[] = {
    F_FN("http", read_hc_location, 0),
    F_FN("grpc", read_hc_location, 1),
    F_END,
};

const struct pt_config__field pt_config__health_check_fields[] = {
    F_STR("timeout", T, timeout),
    F_STR("interval", T, interval),
    F_INT("healthy_threshold", T, healthy_threshold, 1, 1000000),
    F_INT("unhealthy_threshold", T, unhealthy_threshold, 1, 1000000),
    { .name = "health_check", .type = PT_F_OBJECT, .flags = PT_F_REQUIRED, .sub = hc_location_fields },
    F_END,
};
#undef T

/* check_hc_duration: <s> (NULL: absent) is a positive Go duration. */
static void check_hc_duration(struct pt_config__obj *c, const struct pt_ynode *at, const char *path,
                              const char *name, const char *s)
{
    uint32_t ms;

    if (s != NULL && (pt_health_parse_duration(s, &ms) != 0 || ms == 0))
        pt_config__err(c, at, "%s.%s: expected a positive duration such as \"5s\" or \"100ms\" (got \"%.64s\")",
                       path, name, s);
}

/* pt_config__check_health_checks: each of a Mapping's health_checks names exactly one kind of
 * check with what it needs, durations that parse, ranges in order, and values fit for a request head; a
 * gRPC check speaks HTTP/2, so its Mapping must be grpc. Any bad check rejects the Mapping. */
void pt_config__check_health_checks(struct pt_config__obj *c, const struct pt_mapping_res *m,
                                    const struct pt_ynode *body)
{
    const struct pt_ynode *list = pt_ynode_get(body, "health_checks");

    if (m->nhealth_checks > PT_HEALTH_MAX_CHECKS)
        pt_config__err(c, list, "health_checks: at most %u checks", PT_HEALTH_MAX_CHECKS);
    for (size_t i = 0; i < m->nhealth_checks; i++) {
        const struct pt_health_check_res *hc = &m->health_checks[i];
        const struct pt_ynode *at = list && list->type == PT_YNODE_SEQ && i < list->nitems ? list->items[i] : list;
        char p[64];

        snprintf(p, sizeof(p), "health_checks[%zu]", i);
        check_hc_duration(c, at, p, "timeout", hc->timeout);
        check_hc_duration(c, at, p, "interval", hc->interval);
        if (hc->http == hc->grpc && pt_ynode_get(at, "health_check") != NULL)
            pt_config__err(c, at, "%s.health_check: exactly one of http or grpc must be given", p);
        if (hc->grpc && !m->grpc)
            pt_config__err(c, at, "%s.health_check.grpc: needs grpc: true on the Mapping (the check "
                           "speaks HTTP/2)", p);
        if (hc->path != NULL)
            pt_config__wire_target(c, at, p, hc->path);
        if (hc->path != NULL && hc->path[0] != '/')
            pt_config__err(c, at, "%s.health_check.http.path: must start with '/'", p);
        if (hc->hostname != NULL)
            pt_config__wire_host(c, at, p, hc->hostname);
        if (hc->authority != NULL)
            pt_config__wire_host(c, at, p, hc->authority);
        if (hc->upstream_name != NULL)
            pt_config__wire_no_ctl(c, at, p, hc->upstream_name);
        for (size_t k = 0; k < hc->nexpected_statuses; k++)
            if (hc->expected_statuses[k].min > hc->expected_statuses[k].max)
                pt_config__err(c, at, "%s.health_check.http.expected_statuses[%zu]: min %d is above max %d", p,
                               k, hc->expected_statuses[k].min, hc->expected_statuses[k].max);
        for (size_t k = 0; k < hc->nremove_request_headers; k++)
            if (hc->remove_request_headers[k] != NULL)
                pt_config__wire_name(c, at, p, hc->remove_request_headers[k], false);
    }
}
