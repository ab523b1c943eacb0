/* Configuration loading, first half: finds the YAML files of a configuration directory, reads
 * them, and turns libyaml's event stream into a small node tree per document (config/ynode.h),
 * which config/resources.c reads resources out of. This file knows files and YAML syntax; it
 * knows nothing about Kubernetes objects. Called by control/reload.c and control/check.c
 * (pt_config_load_dir), by sources/kubernetes.c and the unit tests (pt_config_load_string).
 *
 * Hostile input is expected (`portico check` runs on anything): nesting is capped at 64 levels,
 * an alias may only refer to a node that is complete (so trees have no cycles), and a document
 * whose aliases would expand to more than a million extra nodes is refused ("billion laughs").
 * Nesting past the cap ends the file, because libyaml's scanner slows down quadratically with
 * flow depth ([[[[...), and 100,000 levels would take seconds.
 * A syntax error ends the file: libyaml cannot resume, so documents that ended before the error
 * are kept and the rest of the file is skipped; other files are unaffected. */
#include "config/load.h"

#include "config/ynode.h"
#include "core/arena.h"
#include "core/common.h"
#include "core/log.h"
#include "core/strmap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define MAX_FILE_SIZE ((size_t)32 << 20)
#define MAX_DEPTH 64
#define MAX_DIR_DEPTH 32
#define ALIAS_BUDGET ((size_t)1000000) /* extra nodes aliases may add to one document */
#define WEIGHT_MAX ((size_t)1 << 48)

/* The document being built from events. */
struct builder {
    struct pt_config__loader *l;
    const char *file;
    struct pt_arena tmp;             /* nodes of the current document */
    struct pt_strmap anchors;        /* anchor name -> complete node */
    struct pt_ynode *stack[MAX_DEPTH];   /* open sequences and mappings */
    struct pt_ynode *key[MAX_DEPTH];     /* open mapping: key waiting for its value */
    const char *anchor[MAX_DEPTH];       /* open container's anchor, registered when it closes */
    int depth;
    int skip;                        /* containers opened after the document failed */
    struct pt_ynode *root;
    size_t nnodes;                   /* nodes really written (aliases not expanded) */
    int err_line;                    /* nonzero: the document failed, err says why */
    bool stop;                       /* give up on the file after this document */
    char err[200];
};

static void doc_fail(struct builder *b, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void doc_fail(struct builder *b, int line, const char *fmt, ...)
{
    if (b->err_line != 0)
        return; /* the first problem is the one worth reading */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, sizeof(b->err), fmt, ap);
    va_end(ap);
    b->err_line = line > 0 ? line : 1;
}

static void file_error(struct pt_config__loader *l, const char *file, int line, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

static void file_error(struct pt_config__loader *l, const char *file, int line, const char *fmt,
                       ...)
{
    struct pt_origin o = { file, line };
    va_list ap;
    va_start(ap, fmt);
    pt_diag_vadd(pt_config__diag(l), PT_DIAG_ERROR, &o, NULL, fmt, ap);
    va_end(ap);
    pt_config__diag(l)->nfile_errors++;
}

static int mark_line(const yaml_mark_t *m)
{
    return m->line >= (size_t)INT_MAX ? INT_MAX : (int)m->line + 1;
}

static void builder_reset(struct builder *b)
{
    pt_arena_free_all(&b->tmp);
    pt_strmap_free(&b->anchors);
    b->depth = 0;
    b->skip = 0;
    b->root = NULL;
    b->nnodes = 0;
    b->err_line = 0;
    b->err[0] = '\0';
}

static struct pt_ynode *node_new(struct builder *b, enum pt_ynode_type type, const yaml_mark_t *m)
{
    struct pt_ynode *n = pt_arena_alloc(&b->tmp, sizeof(*n));
    n->type = type;
    n->line = mark_line(m);
    n->weight = 1;
    b->nnodes++;
    return n;
}

static void register_anchor(struct builder *b, const char *name, struct pt_ynode *n)
{
    if (name != NULL)
        pt_strmap_put(&b->anchors, name, strlen(name), n);
}

static const char *copy_anchor(struct builder *b, const yaml_char_t *anchor)
{
    return anchor ? pt_arena_strdup(&b->tmp, (const char *)anchor) : NULL;
}

static void push_item(struct builder *b, struct pt_ynode *seq, struct pt_ynode *n)
{
    if (seq->nitems == seq->_cap) {
        seq->_cap = seq->_cap ? seq->_cap * 2 : 4;
        seq->items = pt_arena_grow(&b->tmp, seq->items, seq->nitems, seq->_cap,
                                   sizeof(*seq->items));
    }
    seq->items[seq->nitems++] = n;
}

static void push_pair(struct builder *b, struct pt_ynode *map, struct pt_ynode *k,
                      struct pt_ynode *v)
{
    if (map->npairs == map->_cap) {
        map->_cap = map->_cap ? map->_cap * 2 : 4;
        map->pairs = pt_arena_grow(&b->tmp, map->pairs, map->npairs, map->_cap,
                                   sizeof(*map->pairs));
    }
    map->pairs[map->npairs].key = k;
    map->pairs[map->npairs].value = v;
    map->npairs++;
}

/* attach: hands a complete node to the open container (or makes it the root). */
static void attach(struct builder *b, struct pt_ynode *n)
{
    if (b->depth == 0) {
        b->root = n;
        return;
    }
    struct pt_ynode *p = b->stack[b->depth - 1];
    p->weight += n->weight;
    if (p->weight > WEIGHT_MAX)
        p->weight = WEIGHT_MAX;
    if (p->type == PT_YNODE_SEQ) {
        push_item(b, p, n);
    } else if (b->key[b->depth - 1] == NULL) {
        b->key[b->depth - 1] = n;
    } else {
        push_pair(b, p, b->key[b->depth - 1], n);
        b->key[b->depth - 1] = NULL;
    }
}

static bool same_scalar(const struct pt_ynode *a, const struct pt_ynode *b)
{
    return a->type == PT_YNODE_SCALAR && b->type == PT_YNODE_SCALAR && a->len == b->len &&
           memcmp(a->str, b->str, a->len) == 0;
}

/* find_dup_key: records the first repeated scalar key of <map> (YAML requires unique keys;
 * Kubernetes rejects repeats, and silently taking one of them would hide a mistake). */
static void find_dup_key(struct pt_ynode *map)
{
    if (map->npairs <= 16) {
        for (size_t i = 1; i < map->npairs && map->dup_key == NULL; i++)
            for (size_t j = 0; j < i; j++)
                if (same_scalar(map->pairs[i].key, map->pairs[j].key)) {
                    map->dup_key = map->pairs[i].key;
                    break;
                }
        return;
    }
    struct pt_strmap seen = { 0 };
    for (size_t i = 0; i < map->npairs; i++) {
        const struct pt_ynode *k = map->pairs[i].key;
        if (k->type != PT_YNODE_SCALAR)
            continue;
        if (pt_strmap_get(&seen, k->str, k->len) != NULL) {
            map->dup_key = k;
            break;
        }
        pt_strmap_put(&seen, k->str, k->len, (void *)k);
    }
    pt_strmap_free(&seen);
}

static void on_scalar(struct builder *b, const yaml_event_t *ev)
{
    if (b->err_line != 0)
        return;
    struct pt_ynode *n = node_new(b, PT_YNODE_SCALAR, &ev->start_mark);
    n->str = pt_arena_strndup(&b->tmp, (const char *)ev->data.scalar.value,
                              ev->data.scalar.length);
    n->len = ev->data.scalar.length;
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && ev->data.scalar.plain_implicit;
    register_anchor(b, copy_anchor(b, ev->data.scalar.anchor), n);
    attach(b, n);
}

static void on_alias(struct builder *b, const yaml_event_t *ev)
{
    if (b->err_line != 0)
        return;
    const char *name = (const char *)ev->data.alias.anchor;
    struct pt_ynode *target = pt_strmap_get(&b->anchors, name, strlen(name));
    if (target == NULL) {
        doc_fail(b, mark_line(&ev->start_mark),
                 "alias *%.64s refers to no complete anchored node (undefined, or recursive)",
                 name);
        return;
    }
    attach(b, target);
}

static void on_start(struct builder *b, const yaml_event_t *ev, enum pt_ynode_type type)
{
    if (b->depth == MAX_DEPTH) {
        /* libyaml's scanner is quadratic in flow nesting depth: stop reading now */
        doc_fail(b, mark_line(&ev->start_mark), "nesting deeper than %d levels", MAX_DEPTH);
        b->stop = true;
        return;
    }
    if (b->err_line != 0) {
        b->skip++;
        return;
    }
    const yaml_char_t *anchor = type == PT_YNODE_MAP ? ev->data.mapping_start.anchor
                                                     : ev->data.sequence_start.anchor;
    struct pt_ynode *n = node_new(b, type, &ev->start_mark);
    b->anchor[b->depth] = copy_anchor(b, anchor);
    b->key[b->depth] = NULL;
    b->stack[b->depth++] = n;
}

static void on_end(struct builder *b)
{
    if (b->skip > 0) {
        b->skip--;
        return;
    }
    if (b->depth == 0)
        return; /* cannot happen with a well-formed event stream */
    struct pt_ynode *n = b->stack[--b->depth];
    if (n->type == PT_YNODE_MAP)
        find_dup_key(n);
    register_anchor(b, b->anchor[b->depth], n);
    attach(b, n);
}

static void on_document_end(struct builder *b)
{
    struct pt_ynode *root = b->root;
    if (b->err_line != 0) {
        file_error(b->l, b->file, b->err_line, "%s; document skipped", b->err);
    } else if (root == NULL || (root->type == PT_YNODE_SCALAR && pt_ynode_is_null(root))) {
        /* an empty document (`---` alone, or comments only) */
    } else if (root->weight > b->nnodes + ALIAS_BUDGET) {
        file_error(b->l, b->file, root->line,
                   "aliases expand to more than %zu nodes; document skipped", ALIAS_BUDGET);
    } else {
        pt_config__add_document(b->l, b->file, root);
    }
    builder_reset(b);
}

static void on_event(struct builder *b, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        builder_reset(b);
        break;
    case YAML_DOCUMENT_END_EVENT:
        on_document_end(b);
        break;
    case YAML_SCALAR_EVENT:
        on_scalar(b, ev);
        break;
    case YAML_ALIAS_EVENT:
        on_alias(b, ev);
        break;
    case YAML_SEQUENCE_START_EVENT:
        on_start(b, ev, PT_YNODE_SEQ);
        break;
    case YAML_MAPPING_START_EVENT:
        on_start(b, ev, PT_YNODE_MAP);
        break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        on_end(b);
        break;
    default:
        break;
    }
}

static int offset_line(const unsigned char *buf, size_t len, size_t off)
{
    int line = 1;
    for (size_t i = 0; i < off && i < len; i++)
        if (buf[i] == '\n' && line < INT_MAX)
            line++;
    return line;
}

static void report_parser_error(struct pt_config__loader *l, const char *file,
                                const yaml_parser_t *p, const unsigned char *buf, size_t len)
{
    const char *problem = p->problem ? p->problem : "unknown problem";
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        file_error(l, file, 0, "out of memory while parsing YAML; rest of file skipped");
        break;
    case YAML_READER_ERROR:
        file_error(l, file, offset_line(buf, len, p->problem_offset),
                   "invalid input: %s (byte offset %zu); rest of file skipped", problem,
                   p->problem_offset);
        break;
    default:
        if (p->context != NULL)
            file_error(l, file, mark_line(&p->problem_mark),
                       "YAML syntax error: %s (%s at line %d); rest of file skipped", problem,
                       p->context, mark_line(&p->context_mark));
        else
            file_error(l, file, mark_line(&p->problem_mark),
                       "YAML syntax error: %s; rest of file skipped", problem);
        break;
    }
}

/* parse_buffer: every document of <buf> into the loader; stops at the first syntax error. */
static void parse_buffer(struct pt_config__loader *l, const char *file, const unsigned char *buf,
                         size_t len)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        file_error(l, file, 0, "out of memory");
        return;
    }
    yaml_parser_set_input_string(&p, buf, len);
    struct builder *b = pt_xcalloc(1, sizeof(*b));
    b->l = l;
    b->file = file;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            report_parser_error(l, file, &p, buf, len);
            break;
        }
        bool done = ev.type == YAML_STREAM_END_EVENT;
        on_event(b, &ev);
        yaml_event_delete(&ev);
        if (b->stop) {
            file_error(l, file, b->err_line, "%s; rest of file skipped", b->err);
            break;
        }
        if (done)
            break;
    }
    builder_reset(b);
    free(b);
    yaml_parser_delete(&p);
}

/* read_file: the whole regular file at <path> (malloc'd, *len bytes), or NULL with errno set. */
static unsigned char *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    int e = 0;
    if (fstat(fd, &st) != 0)
        e = errno;
    else if (!S_ISREG(st.st_mode))
        e = EINVAL;
    else if ((uint64_t)st.st_size > MAX_FILE_SIZE)
        e = EFBIG;
    if (e != 0) {
        close(fd);
        errno = e;
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0; /* +1 notices a file that grew */
    unsigned char *buf = pt_xmalloc(cap);
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    *len = n < cap ? n : cap - 1;
    return buf;
}

static void load_file(struct pt_config__loader *l, const char *path)
{
    const char *file = pt_config__loader_file(l, path);
    size_t len = 0;
    errno = 0;
    unsigned char *buf = read_file(path, &len);
    if (buf == NULL) {
        if (errno == EFBIG)
            file_error(l, file, 0, "file is larger than %zu MiB; skipped", MAX_FILE_SIZE >> 20);
        else
            file_error(l, file, 0, "cannot read: %s", strerror(errno));
        return;
    }
    parse_buffer(l, file, buf, len);
    free(buf);
}

static bool is_yaml_name(const char *name)
{
    size_t n = strlen(name);
    return (n > 5 && strcasecmp(name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcasecmp(name + n - 4, ".yml") == 0);
}

static int name_cmp(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name); /* byte order: locale-independent */
}

static char *path_join(const char *dir, const char *name)
{
    size_t dl = strlen(dir), nl = strlen(name);
    bool slash = dl > 0 && dir[dl - 1] == '/';
    char *p = pt_xmalloc(dl + nl + 2);
    memcpy(p, dir, dl);
    if (!slash)
        p[dl++] = '/';
    memcpy(p + dl, name, nl + 1);
    return p;
}

static void walk(struct pt_config__loader *l, const char *dir, int depth);

static void walk_entry(struct pt_config__loader *l, const char *dir, const char *name, int depth)
{
    char *path = path_join(dir, name);
    struct stat st;
    if (lstat(path, &st) != 0) {
        /* vanished between readdir and lstat: nothing to load */
    } else if (S_ISDIR(st.st_mode)) {
        if (depth < MAX_DIR_DEPTH)
            walk(l, path, depth + 1);
        else
            file_error(l, pt_config__loader_file(l, path), 0,
                       "directory nested deeper than %d levels; skipped", MAX_DIR_DEPTH);
    } else if (is_yaml_name(name)) {
        if (S_ISREG(st.st_mode) || (S_ISLNK(st.st_mode) && stat(path, &st) == 0 &&
                                    S_ISREG(st.st_mode)))
            load_file(l, path);
        else
            pt_debug("config: %s is not a regular file; skipped", path);
    }
    free(path);
}

static void walk(struct pt_config__loader *l, const char *dir, int depth)
{
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, name_cmp);
    if (n < 0) {
        file_error(l, pt_config__loader_file(l, dir), 0, "cannot read directory: %s",
                   strerror(errno));
        return;
    }
    for (int i = 0; i < n; i++) {
        if (ents[i]->d_name[0] != '.')
            walk_entry(l, dir, ents[i]->d_name, depth);
        free(ents[i]);
    }
    free(ents);
}

struct pt_resources *pt_config_load_dir(const char *dir, const struct pt_config_env *env)
{
    struct pt_config__loader *l = pt_config__loader_new(env);
    struct stat st;
    if (dir == NULL || stat(dir, &st) != 0)
        file_error(l, pt_config__loader_file(l, dir ? dir : "(null)"), 0,
                   "cannot read configuration: %s", dir ? strerror(errno) : "no path");
    else if (S_ISDIR(st.st_mode))
        walk(l, dir, 0);
    else if (S_ISREG(st.st_mode))
        load_file(l, dir);
    else
        file_error(l, pt_config__loader_file(l, dir), 0,
                   "cannot read configuration: not a directory or regular file");
    return pt_config__loader_finish(l);
}

struct pt_resources *pt_config_load_string(const char *yaml, const char *filename,
                                           const struct pt_config_env *env)
{
    struct pt_config__loader *l = pt_config__loader_new(env);
    const char *file = pt_config__loader_file(l, filename ? filename : "<string>");
    if (yaml != NULL)
        parse_buffer(l, file, (const unsigned char *)yaml, strlen(yaml));
    return pt_config__loader_finish(l);
}

static bool env_false(const char *v)
{
    return strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0 || strcmp(v, "0") == 0 ||
           strcasecmp(v, "off") == 0;
}

void pt_config_env_from_environ(struct pt_config_env *env)
{
    const char *id = getenv("AMBASSADOR_ID");
    const char *ns = getenv("AMBASSADOR_NAMESPACE");
    const char *single = getenv("AMBASSADOR_SINGLE_NAMESPACE");
    env->ambassador_id = (id && *id) ? id : "default";
    env->ambassador_id_raw = id;
    env->namespace = (ns && *ns) ? ns : "default";
    env->single_namespace = single != NULL && *single != '\0' && !env_false(single);
}

bool pt_ynode_is_null(const struct pt_ynode *n)
{
    if (n == NULL)
        return true;
    if (n->type != PT_YNODE_SCALAR || !n->plain)
        return false;
    return n->len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
           strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0;
}

const struct pt_ynode *pt_ynode_get(const struct pt_ynode *map, const char *key)
{
    if (map == NULL || map->type != PT_YNODE_MAP)
        return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < map->npairs; i++) {
        const struct pt_ynode *k = map->pairs[i].key;
        if (k->type == PT_YNODE_SCALAR && k->len == kl && memcmp(k->str, key, kl) == 0)
            return map->pairs[i].value;
    }
    return NULL;
}
