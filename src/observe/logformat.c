/* Compiling Envoy access-log formats (logformat.h): a format string, or a JSON key -> format map,
 * becomes a flat array of steps (literal chunks and command operators) checked once at config
 * time, so the per-request work in observe/accesslog.c is a loop over that array with no parsing.
 * Also formats %START_TIME(...)% patterns. Called by config/compile.c (compile) and
 * observe/accesslog.c (time). Not the place that reads request values: accesslog.c does. */
#include "observe/logformat.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_HEADER_MAX 256
#define LIMIT_HEADER_MAX 1024

/* How an operator takes a parameter in parentheses. */
enum arg_rule { ARG_NONE, ARG_OPTIONAL, ARG_REQUIRED };

static const struct {
    const char *name;
    uint8_t op;
    uint8_t arg; /* enum arg_rule */
} operators[] = {
    { "START_TIME", PT_LOGOP_START_TIME, ARG_OPTIONAL },
    { "REQ", PT_LOGOP_REQ, ARG_REQUIRED },
    { "RESP", PT_LOGOP_RESP, ARG_REQUIRED },
    { "PROTOCOL", PT_LOGOP_PROTOCOL, ARG_NONE },
    { "RESPONSE_CODE", PT_LOGOP_RESPONSE_CODE, ARG_NONE },
    { "RESPONSE_FLAGS", PT_LOGOP_RESPONSE_FLAGS, ARG_NONE },
    { "BYTES_RECEIVED", PT_LOGOP_BYTES_RECEIVED, ARG_NONE },
    { "BYTES_SENT", PT_LOGOP_BYTES_SENT, ARG_NONE },
    { "DURATION", PT_LOGOP_DURATION, ARG_NONE },
    { "UPSTREAM_HOST", PT_LOGOP_UPSTREAM_HOST, ARG_NONE },
    { "UPSTREAM_CLUSTER", PT_LOGOP_UPSTREAM_CLUSTER, ARG_NONE },
    { "UPSTREAM_CLUSTER_RAW", PT_LOGOP_UPSTREAM_CLUSTER_RAW, ARG_NONE },
    { "UPSTREAM_LOCAL_ADDRESS", PT_LOGOP_UPSTREAM_LOCAL_ADDRESS, ARG_NONE },
    { "UPSTREAM_TRANSPORT_FAILURE_REASON", PT_LOGOP_UPSTREAM_TRANSPORT_FAILURE_REASON, ARG_NONE },
    { "DOWNSTREAM_REMOTE_ADDRESS", PT_LOGOP_DOWNSTREAM_REMOTE_ADDRESS, ARG_NONE },
    { "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", PT_LOGOP_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT, ARG_NONE },
    { "DOWNSTREAM_LOCAL_ADDRESS", PT_LOGOP_DOWNSTREAM_LOCAL_ADDRESS, ARG_NONE },
    { "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", PT_LOGOP_DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT, ARG_NONE },
    { "REQUESTED_SERVER_NAME", PT_LOGOP_REQUESTED_SERVER_NAME, ARG_NONE },
    { "DYNAMIC_METADATA", PT_LOGOP_DYNAMIC_METADATA, ARG_REQUIRED },
    { "DOWNSTREAM_LOCAL_PORT", PT_LOGOP_DOWNSTREAM_LOCAL_PORT, ARG_NONE },
    { "DOWNSTREAM_REMOTE_PORT", PT_LOGOP_DOWNSTREAM_REMOTE_PORT, ARG_NONE },
    /* Portico takes no PROXY protocol and trusts no X-Forwarded-For for the address: the
     * direct peer is the remote address. */
    { "DOWNSTREAM_DIRECT_REMOTE_ADDRESS", PT_LOGOP_DOWNSTREAM_REMOTE_ADDRESS, ARG_NONE },
    { "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT", PT_LOGOP_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT, ARG_NONE },
    { "DOWNSTREAM_DIRECT_REMOTE_PORT", PT_LOGOP_DOWNSTREAM_REMOTE_PORT, ARG_NONE },
    { "UPSTREAM_REMOTE_ADDRESS", PT_LOGOP_UPSTREAM_REMOTE_ADDRESS, ARG_NONE },
    { "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", PT_LOGOP_UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT, ARG_NONE },
    { "UPSTREAM_REMOTE_PORT", PT_LOGOP_UPSTREAM_REMOTE_PORT, ARG_NONE },
};

/* Operators read once, when the format is compiled: their value becomes text (Envoy reads
 * them when it builds the formatter too). */
enum folded_op { FOLD_HOSTNAME = 1, FOLD_ENVIRONMENT };

static const struct {
    const char *name;
    uint8_t fold;
    uint8_t arg; /* enum arg_rule */
} folded[] = {
    { "HOSTNAME", FOLD_HOSTNAME, ARG_NONE },
    { "ENVIRONMENT", FOLD_ENVIRONMENT, ARG_REQUIRED },
};

/* Envoy operators whose data Portico does not have: errors in value formats, so a header or
 * body never silently lacks what the configuration asked for. */
static const char *const unsupported_ops[] = {
    "UPSTREAM_METADATA", "CLUSTER_METADATA", "FILTER_STATE", "UPSTREAM_FILTER_STATE",
    "PER_REQUEST_STATE", "DYNAMIC_METADATA",
};

/* Request fields every format can read without a header slot. */
static const struct {
    const char *name;
    uint8_t field;
} req_fields[] = {
    { ":method", PT_LOGREQ_METHOD },
    { ":path", PT_LOGREQ_PATH },
    { "x-envoy-original-path", PT_LOGREQ_PATH },
    { ":authority", PT_LOGREQ_AUTHORITY },
    { "host", PT_LOGREQ_AUTHORITY },
    { ":scheme", PT_LOGREQ_SCHEME },
    { "x-forwarded-for", PT_LOGREQ_XFF },
    { "user-agent", PT_LOGREQ_USER_AGENT },
    { "x-request-id", PT_LOGREQ_REQUEST_ID },
};

static const struct {
    const char *name;
    uint8_t field;
} resp_fields[] = {
    { "x-envoy-upstream-service-time", PT_LOGRESP_SERVICE_TIME },
    { "server", PT_LOGRESP_SERVER },
    { "content-type", PT_LOGRESP_CONTENT_TYPE },
};

/* A format being compiled. */
struct compiler {
    struct pt_logfmt *f;
    uint32_t items_cap;
    size_t text_len, text_cap;
    const char *key;   /* JSON: the key whose value is compiled, for messages */
    unsigned flags;    /* PT_LOGFMT_LIVE, PT_LOGFMT_OMIT_EMPTY: a value format */
    char *err;
    size_t errlen;
    bool failed;
};

static void fail(struct compiler *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct compiler *c, const char *fmt, ...)
{
    va_list ap;
    int n = 0;

    if (c->failed)
        return;
    c->failed = true;
    if (c->key != NULL)
        n = snprintf(c->err, c->errlen, "key \"%.64s\": ", c->key);
    if (n < 0 || (size_t)n >= c->errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static void notice(struct compiler *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void notice(struct compiler *c, const char *fmt, ...)
{
    va_list ap;

    if (c->err[0] != '\0')
        return; /* the first notice is enough */
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
}

/* Appends <n> bytes to the text area; returns their offset. */
static uint32_t text_add(struct compiler *c, const char *s, size_t n)
{
    size_t off = c->text_len;

    if (c->text_len + n + 1 > c->text_cap) {
        c->text_cap = (c->text_len + n + 1) * 2;
        c->f->text = pt_xrealloc(c->f->text, c->text_cap);
    }
    memcpy(c->f->text + off, s, n);
    c->text_len += n;
    c->f->text[c->text_len] = '\0';
    return (uint32_t)off;
}

static struct pt_logitem *item_add(struct compiler *c, uint8_t op)
{
    struct pt_logfmt *f = c->f;

    if (f->nitems == c->items_cap) {
        c->items_cap = c->items_cap ? c->items_cap * 2 : 16;
        f->items = pt_xrealloc(f->items, c->items_cap * sizeof(*f->items));
    }
    f->items[f->nitems] = (struct pt_logitem){ .op = op };
    return &f->items[f->nitems++];
}

/* Appends <s> as JSON string contents (no quotes) to the text area. */
static void text_add_json(struct compiler *c, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\', esc[1] = (char)ch;
            text_add(c, esc, 2);
        } else if (ch < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            text_add(c, esc, 6);
        } else {
            text_add(c, (const char *)&ch, 1);
        }
    }
}

/* A literal chunk: merged into the previous one when they touch. In JSON values the literal is
 * stored escaped, so rendering only copies it. */
static void literal(struct compiler *c, const char *s, size_t n)
{
    struct pt_logfmt *f = c->f;
    size_t start = c->text_len;

    if (n == 0)
        return;
    if (f->json)
        text_add_json(c, s, n);
    else
        text_add(c, s, n);
    if (f->nitems > 0 && f->items[f->nitems - 1].op == PT_LOGOP_TEXT &&
        f->items[f->nitems - 1].off + f->items[f->nitems - 1].len == start) {
        f->items[f->nitems - 1].len += (uint32_t)(c->text_len - start);
        return;
    }
    struct pt_logitem *it = item_add(c, PT_LOGOP_TEXT);
    it->off = (uint32_t)start;
    it->len = (uint32_t)(c->text_len - start);
}

static void lower_copy(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = pt_lower(src[i]);
    dst[n] = '\0';
}

/* The header slot of <name> (lower case): its index in headers[], added when new; -1 after
 * fail(). REQ() and RESP() of one name share a slot. */
static int header_slot(struct compiler *c, const char *name, uint16_t keep)
{
    struct pt_logfmt *f = c->f;
    size_t len = strlen(name);
    uint8_t i;

    for (i = 0; i < f->nheaders; i++) /* names are still offsets into text (see finish()) */
        if (f->headers[i].len == len && memcmp(f->text + (uintptr_t)f->headers[i].ptr, name, len) == 0)
            break;
    if (i == f->nheaders) {
        if (f->nheaders == PT_LOGFMT_MAX_HEADERS) {
            fail(c, "more than %d distinct %s", PT_LOGFMT_MAX_HEADERS,
                 (c->flags & PT_LOGFMT_LIVE) ? "headers in REQ() and RESP()" : "request headers in REQ()");
            return -1;
        }
        /* Offsets, not pointers: the text area may still move. Fixed up in finish(). */
        f->headers[i] = (struct pt_str){ (const char *)(uintptr_t)text_add(c, name, len), len };
        f->header_max[i] = 0;
        f->nheaders++;
    }
    if (f->header_max[i] < keep)
        f->header_max[i] = keep;
    return i;
}

/* The field REQ() reads for the header <name> (lower case), adding a header slot if needed. */
static uint8_t req_field(struct compiler *c, const char *name, uint16_t max_len)
{
    uint16_t keep = max_len ? max_len : DEFAULT_HEADER_MAX;
    int slot;

    if (keep > LIMIT_HEADER_MAX)
        keep = LIMIT_HEADER_MAX;
    for (uint8_t i = 0; i < PT_ARRAY_SIZE(req_fields); i++)
        if (strcmp(req_fields[i].name, name) == 0)
            return req_fields[i].field;
    slot = header_slot(c, name, keep);
    return slot < 0 ? PT_LOGREQ_NONE : (uint8_t)(PT_LOGREQ_HEADER + slot);
}

static uint8_t resp_field(struct compiler *c, const char *name)
{
    for (size_t i = 0; i < PT_ARRAY_SIZE(resp_fields); i++)
        if (strcmp(resp_fields[i].name, name) == 0 &&
            (!(c->flags & PT_LOGFMT_LIVE) || resp_fields[i].field != PT_LOGRESP_CONTENT_TYPE))
            return resp_fields[i].field;
    if (c->flags & PT_LOGFMT_LIVE) { /* any header of the response itself */
        int slot = header_slot(c, name, 0);
        return slot < 0 ? PT_LOGRESP_OTHER : (uint8_t)(PT_LOGRESP_HEADER + slot);
    }
    notice(c, "%%RESP(%s)%% is always unset: Portico keeps x-envoy-upstream-service-time, server "
              "and content-type", name);
    return PT_LOGRESP_OTHER;
}

/* REQ(X), REQ(X?Y), RESP(...): the header names of <arg>. */
static void header_args(struct compiler *c, struct pt_logitem *it, const char *cmd, struct pt_str arg)
{
    const char *q = memchr(arg.ptr, '?', arg.len);
    struct pt_str names[2] = { arg, { 0 } };
    uint8_t fields[2] = { 0, 0 };

    if (q != NULL) {
        names[0] = pt_str_make(arg.ptr, (size_t)(q - arg.ptr));
        names[1] = pt_str_make(q + 1, arg.len - names[0].len - 1);
        if (memchr(names[1].ptr, '?', names[1].len) != NULL) {
            fail(c, "more than one alternative header in %%%s(%.*s)%%", cmd, (int)arg.len, arg.ptr);
            return;
        }
    }
    for (int i = 0; i < (q ? 2 : 1); i++) {
        char name[256];
        if (names[i].len == 0 || names[i].len >= sizeof(name)) {
            fail(c, "%%%s(%.*s)%%: a header name is empty or too long", cmd, (int)arg.len, arg.ptr);
            return;
        }
        lower_copy(name, names[i].ptr, names[i].len);
        fields[i] = it->op == PT_LOGOP_REQ ? req_field(c, name, it->max_len) : resp_field(c, name);
    }
    it->field = fields[0];
    it->alt = fields[1];
}

static bool name_is(struct pt_str name, const char *s)
{
    return strlen(s) == name.len && memcmp(s, name.ptr, name.len) == 0;
}

/* unsupported: fails and returns true when <name> is an operator Portico has no data for. */
static bool unsupported(struct compiler *c, struct pt_str name, size_t pos)
{
    for (size_t i = 0; i < PT_ARRAY_SIZE(unsupported_ops); i++)
        if (name_is(name, unsupported_ops[i])) {
            fail(c, "%%%s%% is not supported by Portico (it keeps no such metadata or state) at "
                    "position %zu", unsupported_ops[i], pos);
            return true;
        }
    return false;
}

/* An unset folded value: nothing, or "-" as the other operators print it. */
static void literal_unset(struct compiler *c)
{
    if (!(c->flags & PT_LOGFMT_OMIT_EMPTY))
        literal(c, "-", 1);
}

/* fold: when <name> is HOSTNAME or ENVIRONMENT(X), its value (cut to max_len) becomes text;
 * returns whether it was one (after fail() for a bad parameter). */
static bool fold(struct compiler *c, struct pt_str name, const struct pt_str *arg, uint32_t max_len, size_t pos)
{
    size_t i;
    char buf[256];
    const char *v = NULL;

    for (i = 0; i < PT_ARRAY_SIZE(folded); i++)
        if (name_is(name, folded[i].name))
            break;
    if (i == PT_ARRAY_SIZE(folded))
        return false;
    if ((folded[i].arg == ARG_NONE) != (arg == NULL) || (arg != NULL && (arg->len == 0 || arg->len >= sizeof(buf)))) {
        fail(c, "%%%s%% %s (position %zu)", folded[i].name,
             folded[i].arg == ARG_NONE ? "takes no parameter" : "needs a parameter", pos);
        return true;
    }
    if (folded[i].fold == FOLD_HOSTNAME) {
        if (gethostname(buf, sizeof(buf)) == 0) {
            buf[sizeof(buf) - 1] = '\0';
            v = buf;
        }
    } else {
        memcpy(buf, arg->ptr, arg->len);
        buf[arg->len] = '\0';
        v = getenv(buf);
    }
    if (v == NULL || *v == '\0') {
        literal_unset(c);
        return true;
    }
    size_t n = strlen(v);
    literal(c, v, max_len && n > max_len ? max_len : n);
    return true;
}

/* One operator: name, optional (arg), optional :N; checks the parameter rule. */
static void command(struct compiler *c, struct pt_str name, const struct pt_str *arg, uint32_t max_len,
                    size_t pos)
{
    size_t i;
    struct pt_logitem *it;

    if ((c->flags & PT_LOGFMT_LIVE) && unsupported(c, name, pos))
        return;
    if (fold(c, name, arg, max_len, pos))
        return;
    for (i = 0; i < PT_ARRAY_SIZE(operators); i++)
        if (strlen(operators[i].name) == name.len && memcmp(operators[i].name, name.ptr, name.len) == 0)
            break;
    if (i == PT_ARRAY_SIZE(operators)) {
        fail(c, "unknown command operator %%%.*s%% at position %zu", (int)name.len, name.ptr, pos);
        return;
    }
    if (operators[i].arg == ARG_NONE && arg != NULL) {
        fail(c, "%%%s%% takes no parameter (position %zu)", operators[i].name, pos);
        return;
    }
    if (operators[i].arg == ARG_REQUIRED && (arg == NULL || arg->len == 0)) {
        fail(c, "%%%s(...)%% needs a parameter (position %zu)", operators[i].name, pos);
        return;
    }
    it = item_add(c, operators[i].op);
    it->max_len = (uint16_t)max_len;
    if (it->op == PT_LOGOP_REQ || it->op == PT_LOGOP_RESP) {
        header_args(c, it, operators[i].name, *arg);
    } else if (it->op == PT_LOGOP_START_TIME && arg != NULL && arg->len > 0) {
        it->off = text_add(c, arg->ptr, arg->len);
        it->len = (uint32_t)arg->len;
    }
}

static bool is_name_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
}

/* Parses one command starting at s[i] == '%' (Envoy's grammar:
 * %NAME[(param)][:N]%, the param running to the first ')'). Returns the index after it, or 0
 * after fail(). */
static size_t parse_command(struct compiler *c, const char *s, size_t n, size_t i)
{
    size_t j = i + 1, name_end;
    struct pt_str arg = { 0 };
    bool has_arg = false;
    uint32_t max_len = 0;

    while (j < n && is_name_char(s[j]))
        j++;
    name_end = j;
    if (j < n && s[j] == '(') {
        const char *close = memchr(s + j + 1, ')', n - j - 1);
        if (close == NULL)
            goto bad;
        arg = pt_str_make(s + j + 1, (size_t)(close - s - j - 1));
        has_arg = true;
        j = (size_t)(close - s) + 1;
    }
    if (j < n && s[j] == ':') {
        size_t d = ++j;
        while (j < n && s[j] >= '0' && s[j] <= '9' && max_len <= 65535)
            max_len = max_len * 10 + (uint32_t)(s[j++] - '0');
        if (j == d || max_len > 65535)
            goto bad;
    }
    if (name_end == i + 1 || j >= n || s[j] != '%')
        goto bad;
    command(c, pt_str_make(s + i + 1, name_end - i - 1), has_arg ? &arg : NULL, max_len, i);
    return c->failed ? 0 : j + 1;
bad:
    fail(c, "bad syntax at position %zu: no valid command operator in \"%.*s\" (write %%%% for a "
            "literal %%)", i, (int)(n - i > 40 ? 40 : n - i), s + i);
    return 0;
}

/* Compiles the format string <s> (<n> bytes) into items. */
static bool compile_string(struct compiler *c, const char *s, size_t n)
{
    size_t i = 0, lit = 0;

    while (i < n) {
        if (s[i] != '%') {
            i++;
            continue;
        }
        literal(c, s + lit, i - lit);
        if (i + 1 < n && s[i + 1] == '%') {
            literal(c, "%", 1);
            i += 2;
        } else if ((i = parse_command(c, s, n, i)) == 0) {
            return false;
        }
        lit = i;
    }
    literal(c, s + lit, n - lit);
    return !c->failed;
}

static struct pt_logfmt *start(struct compiler *c, bool json, char *err, size_t errlen)
{
    static char dummy[1];

    *c = (struct compiler){ .err = errlen ? err : dummy, .errlen = errlen ? errlen : 1 };
    c->err[0] = '\0';
    c->f = pt_xcalloc(1, sizeof(*c->f));
    c->f->json = json;
    text_add(c, "", 0);
    return c->f;
}

/* Turns header name offsets into pointers now that the text area stays put. */
static struct pt_logfmt *finish(struct compiler *c)
{
    struct pt_logfmt *f = c->f;

    if (c->failed) {
        pt_logfmt_free(f);
        return NULL;
    }
    for (uint8_t i = 0; i < f->nheaders; i++)
        f->headers[i].ptr = f->text + (uintptr_t)f->headers[i].ptr;
    for (uint32_t i = 0; i < f->nitems; i++) {
        uint8_t op = f->items[i].op;
        if (op == PT_LOGOP_DOWNSTREAM_LOCAL_ADDRESS || op == PT_LOGOP_DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT)
            f->needs |= PT_LOGFMT_NEEDS_LOCAL_ADDR;
        else if (op == PT_LOGOP_DOWNSTREAM_LOCAL_PORT)
            f->needs |= PT_LOGFMT_NEEDS_LOCAL_ADDR;
        else if (op == PT_LOGOP_UPSTREAM_LOCAL_ADDRESS)
            f->needs |= PT_LOGFMT_NEEDS_UPSTREAM_LOCAL_ADDR;
    }
    return f;
}

struct pt_logfmt *pt_logfmt_compile_text(const char *format, char *err, size_t errlen)
{
    struct compiler c;
    size_t n = strlen(format);

    start(&c, false, err, errlen);
    if (compile_string(&c, format, n) && (n == 0 || format[n - 1] != '\n'))
        literal(&c, "\n", 1);
    return finish(&c);
}

struct pt_logfmt *pt_logfmt_compile_value(const char *value, unsigned flags, char *err, size_t errlen)
{
    struct compiler c;

    start(&c, false, err, errlen);
    c.flags = flags;
    c.f->flags = (uint8_t)flags;
    compile_string(&c, value, strlen(value));
    return finish(&c);
}

bool pt_logfmt_is_text(const struct pt_logfmt *f, struct pt_str *text)
{
    if (f->json || f->nitems > 1 || (f->nitems == 1 && f->items[0].op != PT_LOGOP_TEXT))
        return false;
    if (text != NULL)
        *text = f->nitems ? pt_str_make(f->text + f->items[0].off, f->items[0].len) : (struct pt_str){ "", 0 };
    return true;
}

static int cmp_kv_key(const void *a, const void *b)
{
    return strcmp((*(const struct pt_kv *const *)a)->key, (*(const struct pt_kv *const *)b)->key);
}

struct pt_logfmt *pt_logfmt_compile_json(const struct pt_kv *kv, size_t n, char *err, size_t errlen)
{
    return pt_logfmt_compile_json_value(kv, n, 0, err, errlen);
}

struct pt_logfmt *pt_logfmt_compile_json_value(const struct pt_kv *kv, size_t n, unsigned flags, char *err,
                                               size_t errlen)
{
    struct compiler c;
    const struct pt_kv **sorted = pt_xcalloc(n + 1, sizeof(*sorted));

    start(&c, true, err, errlen);
    c.flags = flags;
    c.f->flags = (uint8_t)flags;
    for (size_t i = 0; i < n; i++)
        sorted[i] = &kv[i];
    qsort(sorted, n, sizeof(*sorted), cmp_kv_key);
    for (size_t i = 0; i < n && !c.failed; i++) {
        size_t start_off = c.text_len, key_item = c.f->nitems;
        const char *value = sorted[i]->value ? sorted[i]->value : "";
        text_add(&c, i == 0 ? "{\"" : ",\"", 2);
        text_add_json(&c, sorted[i]->key, strlen(sorted[i]->key));
        text_add(&c, "\":", 2);
        struct pt_logitem *it = item_add(&c, PT_LOGOP_KEY);
        it->off = (uint32_t)start_off;
        it->len = (uint32_t)(c.text_len - start_off);
        c.key = sorted[i]->key;
        compile_string(&c, value, strlen(value));
        c.f->items[key_item].nvalue = (uint16_t)(c.f->nitems - key_item - 1);
        if (c.f->nitems - key_item - 1 > UINT16_MAX)
            fail(&c, "too many parts");
    }
    c.key = NULL;
    {
        struct pt_logitem *end = item_add(&c, PT_LOGOP_TEXT);
        end->off = text_add(&c, n ? "}\n" : "{}\n", n ? 2 : 3);
        end->len = n ? 2 : 3;
    }
    free(sorted);
    return finish(&c);
}

struct pt_logfmt *pt_logfmt_emissary_json(void)
{
    static const struct pt_kv keys[] = {
        { "start_time", "%START_TIME%" },
        { "method", "%REQ(:METHOD)%" },
        { "path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%" },
        { "protocol", "%PROTOCOL%" },
        { "response_code", "%RESPONSE_CODE%" },
        { "response_flags", "%RESPONSE_FLAGS%" },
        { "bytes_received", "%BYTES_RECEIVED%" },
        { "bytes_sent", "%BYTES_SENT%" },
        { "duration", "%DURATION%" },
        { "upstream_service_time", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%" },
        { "x_forwarded_for", "%REQ(X-FORWARDED-FOR)%" },
        { "user_agent", "%REQ(USER-AGENT)%" },
        { "request_id", "%REQ(X-REQUEST-ID)%" },
        { "authority", "%REQ(:AUTHORITY)%" },
        { "upstream_host", "%UPSTREAM_HOST%" },
        { "upstream_cluster", "%UPSTREAM_CLUSTER%" },
        { "upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%" },
        { "downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%" },
        { "downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%" },
        { "requested_server_name", "%REQUESTED_SERVER_NAME%" },
        { "istio_policy_status", "%DYNAMIC_METADATA(istio.mixer:status)%" },
        { "upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%" },
    };
    char err[256];

    return pt_logfmt_compile_json(keys, PT_ARRAY_SIZE(keys), err, sizeof(err));
}

void pt_logfmt_free(struct pt_logfmt *f)
{
    if (f == NULL)
        return;
    free(f->items);
    free(f->text);
    free(f);
}

/* ---- START_TIME patterns ---------------------------------------------------------------------- */

/* In a cached template, FRAC_MARK + digit count stands for the fraction of the second. */
#define FRAC_MARK '\x01'
#define TIME_MAX 256

struct time_cache {
    const char *pat;
    size_t plen;
    time_t sec;
    uint16_t len;
    char buf[TIME_MAX];
};

/* strftime of the <n>-byte piece <s> (a plain pattern) appended at out[*len]. */
static void put_strftime(const char *s, size_t n, const struct tm *tm, char *out, size_t *len)
{
    char pat[TIME_MAX];

    if (n == 0 || n >= sizeof(pat))
        return;
    memcpy(pat, s, n);
    pat[n] = '\0';
    *len += strftime(out + *len, TIME_MAX - *len, pat, tm);
}

static void put_raw(const char *s, size_t n, char *out, size_t *len)
{
    if (n > TIME_MAX - *len)
        n = TIME_MAX - *len;
    memcpy(out + *len, s, n);
    *len += n;
}

/* The length of Envoy's extension to strftime at p[0] == '%' (<left> bytes), 0: not one. */
static size_t envoy_spec_len(const char *p, size_t left)
{
    if (left >= 2 && (p[1] == 's' || p[1] == 'f'))
        return 2;
    if (left >= 3 && ((p[1] >= '1' && p[1] <= '9' && p[2] == 'f') || (p[1] == 'E' && p[2] == 'z')))
        return 3;
    if (left >= 4 && p[1] == 'E' && ((p[2] >= '1' && p[2] <= '9') || p[2] == '*') &&
        (p[3] == 'S' || p[3] == 'f'))
        return 4;
    return 0;
}

/* Writes Envoy's extension <p> (<n> bytes, from envoy_spec_len) at out[*len]; the fraction of the
 * second becomes FRAC_MARK + its digit count. */
static void put_envoy_spec(const char *p, size_t n, time_t sec, const struct tm *tm, char *out, size_t *len)
{
    char mark[2] = { FRAC_MARK, 9 };
    char num[24];

    if (p[1] == 's') {
        put_raw(num, (size_t)snprintf(num, sizeof(num), "%lld", (long long)sec), out, len);
        return;
    }
    if (n == 3 && p[1] == 'E') {
        put_raw("+00:00", 6, out, len);
        return;
    }
    if (n == 3)
        mark[1] = (char)(p[1] - '0');
    if (n == 4) {
        mark[1] = (char)(p[2] == '*' ? 3 : p[2] - '0'); /* times are kept in ms */
        if (p[3] == 'S') {
            put_strftime("%S", 2, tm, out, len);
            put_raw(".", 1, out, len);
        }
    }
    put_raw(mark, 2, out, len);
}

/* Builds the template of second <sec>: everything but the fraction of the second. Plain
 * strftime pieces between Envoy's extensions go to strftime whole. */
static size_t build_template(const char *pat, size_t plen, time_t sec, char *out)
{
    struct tm tm;
    size_t len = 0, piece = 0, i = 0;

    gmtime_r(&sec, &tm);
    while (i < plen) {
        size_t n;
        if (pat[i] != '%') {
            i++;
            continue;
        }
        if ((n = envoy_spec_len(pat + i, plen - i)) == 0) {
            i += 2; /* a strftime conversion, or %%: stays in the piece */
            continue;
        }
        put_strftime(pat + piece, i - piece, &tm, out, &len);
        put_envoy_spec(pat + i, n, sec, &tm, out, &len);
        i += n;
        piece = i;
    }
    if (piece < plen)
        put_strftime(pat + piece, plen - piece, &tm, out, &len);
    return len;
}

size_t pt_logfmt_time(const char *pat, size_t plen, uint64_t ms, char *out, size_t cap)
{
    static __thread struct time_cache cache[4];
    struct time_cache *tc = &cache[((uintptr_t)pat >> 3) & 3];
    time_t sec = (time_t)(ms / 1000);
    unsigned frac = (unsigned)(ms % 1000);
    size_t n = 0;

    if (tc->pat != pat || tc->plen != plen || tc->sec != sec) {
        tc->len = (uint16_t)build_template(pat, plen, sec, tc->buf);
        tc->pat = pat;
        tc->plen = plen;
        tc->sec = sec;
    }
    for (size_t i = 0; i < tc->len && n < cap; i++) {
        if (tc->buf[i] != FRAC_MARK || i + 1 >= tc->len) {
            out[n++] = tc->buf[i];
            continue;
        }
        /* ms, then zeros: the clock has no finer resolution than that. */
        char digits[9] = { (char)('0' + frac / 100), (char)('0' + frac / 10 % 10), (char)('0' + frac % 10),
                           '0', '0', '0', '0', '0', '0' };
        size_t nd = (size_t)tc->buf[++i];
        for (size_t d = 0; d < nd && n < cap; d++)
            out[n++] = digits[d];
    }
    return n;
}
