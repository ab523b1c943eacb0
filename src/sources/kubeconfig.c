/* Finding the Kubernetes API server and the credentials for it (kubeconfig.h says in what order).
 * A kubeconfig is read with libyaml's document API into jansson values, every scalar as a
 * string, which is all the few fields used here need. Nothing is contacted here: a server that
 * does not answer is the watcher's business (sources/kubernetes.c), which calls this once at
 * start-up on the control thread. */
#include "sources/kubeconfig.h"

#include "core/common.h"

#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#define KC_MAX_FILES 16
#define KC_MAX_BYTES ((size_t)4 << 20) /* a kubeconfig, a token or a certificate file */
#define KC_MAX_DEPTH 32

/* One kubeconfig file that was read: its tree and the directory relative paths start from. */
struct kc_file {
    json_t *root;
    char dir[PATH_MAX];
    char path[PATH_MAX];
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* read_file: the whole file, NUL-terminated, or NULL (missing, unreadable or too large). */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;

    if (f == NULL)
        return NULL;
    for (;;) {
        if (cap - n < 4096) {
            char *nb = cap < KC_MAX_BYTES ? realloc(buf, cap + 65536) : NULL;
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap += 65536;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* ---- YAML into jansson ---------------------------------------------------------------------- */

static json_t *node_to_json(yaml_document_t *d, yaml_node_t *n, int depth)
{
    json_t *out;

    if (n == NULL || depth > KC_MAX_DEPTH)
        return json_null();
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return json_stringn_nocheck((const char *)n->data.scalar.value, n->data.scalar.length);
    case YAML_SEQUENCE_NODE:
        out = json_array();
        for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
             i++)
            json_array_append_new(out, node_to_json(d, yaml_document_get_node(d, *i), depth + 1));
        return out;
    case YAML_MAPPING_NODE:
        out = json_object();
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(d, p->key);
            if (k == NULL || k->type != YAML_SCALAR_NODE)
                continue;
            json_object_setn_new_nocheck(
                out, (const char *)k->data.scalar.value, k->data.scalar.length,
                node_to_json(d, yaml_document_get_node(d, p->value), depth + 1));
        }
        return out;
    default:
        return json_null();
    }
}

/* parse_yaml: the first document of <text> as a jansson tree, or NULL on a syntax error. */
static json_t *parse_yaml(const char *text, size_t len)
{
    yaml_parser_t p;
    yaml_document_t d;
    json_t *out = NULL;

    if (!yaml_parser_initialize(&p))
        return NULL;
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (yaml_parser_load(&p, &d)) {
        out = node_to_json(&d, yaml_document_get_root_node(&d), 0);
        yaml_document_delete(&d);
    }
    yaml_parser_delete(&p);
    return out;
}

/* ---- helpers -------------------------------------------------------------------------------- */

char *pt_kube__b64_decode(const char *s, size_t len, size_t *outlen)
{
    unsigned char *buf = malloc(PT_B64_DECODED_MAX(len));

    if (buf != NULL && !pt_b64_decode(s, len, buf, outlen)) {
        free(buf);
        buf = NULL;
    }
    return (char *)buf;
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static const char *str_at(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s && s[0] ? s : NULL;
}

/* resolve_path: <p> relative to <dir> unless absolute; malloc'd. */
static char *resolve_path(const char *dir, const char *p)
{
    char *out;

    if (p[0] == '/' || dir[0] == '\0')
        return strdup(p);
    if (asprintf(&out, "%s/%s", dir, p) < 0)
        return NULL;
    return out;
}

char *pt_kube_creds_token(const struct pt_kube_creds *c)
{
    char *t;
    size_t n;

    if (c->token_file == NULL)
        return xstrdup(c->token);
    if ((t = read_file(c->token_file, &n)) == NULL)
        return xstrdup(c->token);
    while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ' || t[n - 1] == '\t'))
        t[--n] = '\0';
    return t;
}

void pt_kube_creds_free(struct pt_kube_creds *c)
{
    char **strs[] = {&c->server,     &c->ca_file,   &c->ca_pem,   &c->token,
                     &c->token_file, &c->cert_file, &c->key_file, &c->cert_pem,
                     &c->key_pem,    &c->username,  &c->password, &c->origin};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        if (*strs[i] != NULL &&
            (strs[i] == &c->key_pem || strs[i] == &c->password || strs[i] == &c->token))
            memset(*strs[i], 0, strlen(*strs[i])); /* secrets do not linger in freed memory */
        free(*strs[i]);
    }
    memset(c, 0, sizeof(*c));
}

/* ---- in a pod ------------------------------------------------------------------------------- */

static int load_in_cluster(struct pt_kube_creds *c, const char *sa, char *err, size_t errlen)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    bool v6 = strchr(host, ':') != NULL;
    char path[PATH_MAX];

    if (port == NULL || port[0] == '\0')
        port = "443";
    if (asprintf(&c->server, "https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port) < 0)
        return fail(err, errlen, "out of memory");
    snprintf(path, sizeof(path), "%s/token", sa);
    c->token_file = strdup(path);
    snprintf(path, sizeof(path), "%s/ca.crt", sa);
    c->ca_file = strdup(path);
    if (asprintf(&c->origin, "in-cluster service account (%s)", sa) < 0)
        c->origin = NULL;
    return 0;
}

/* ---- kubeconfig ----------------------------------------------------------------------------- */

/* named: the entry called <name> in list <section> ("clusters", "users", "contexts") of the
 * first file that has one; its inner object <inner> ("cluster", ...), and that file. */
static const json_t *named(const struct kc_file *f, size_t nf, const char *section,
                           const char *inner, const char *name, const struct kc_file **where)
{
    for (size_t i = 0; i < nf; i++) {
        const json_t *list = json_object_get(f[i].root, section), *e;
        size_t j;
        json_array_foreach (list, j, e) {
            const char *n = str_at(e, "name");
            if (n != NULL && strcmp(n, name) == 0) {
                *where = &f[i];
                return json_object_get(e, inner);
            }
        }
    }
    return NULL;
}

/* take_pem: <obj>[<data_key>] (base64) into *pem, else <obj>[<file_key>] into *file. */
static int take_pem(const json_t *obj, const struct kc_file *f, const char *data_key,
                    const char *file_key, char **pem, size_t *pem_len, char **file, char *err,
                    size_t errlen)
{
    const char *data = str_at(obj, data_key), *path = str_at(obj, file_key);

    if (data != NULL) {
        if ((*pem = pt_kube__b64_decode(data, strlen(data), pem_len)) == NULL)
            return fail(err, errlen, "%s: %s is not base64", f->path, data_key);
    } else if (path != NULL) {
        *file = resolve_path(f->dir, path);
    }
    return 0;
}

static int take_cluster(struct pt_kube_creds *c, const json_t *cl, const struct kc_file *f,
                        char *err, size_t errlen)
{
    const char *server = str_at(cl, "server"), *skip = str_at(cl, "insecure-skip-tls-verify");
    size_t n;

    if (server == NULL)
        return fail(err, errlen, "%s: the cluster has no server", f->path);
    c->server = strdup(server);
    n = strlen(c->server);
    while (n > 0 && c->server[n - 1] == '/')
        c->server[--n] = '\0';
    c->insecure = skip != NULL && strcmp(skip, "true") == 0;
    return take_pem(cl, f, "certificate-authority-data", "certificate-authority", &c->ca_pem,
                    &c->ca_pem_len, &c->ca_file, err, errlen);
}

static int take_user(struct pt_kube_creds *c, const json_t *u, const struct kc_file *f, char *err,
                     size_t errlen)
{
    const char *tf = str_at(u, "tokenFile");

    if (json_object_get(u, "exec") != NULL || json_object_get(u, "auth-provider") != NULL)
        return fail(err, errlen,
                    "%s: the user authenticates with an %s plugin, which Portico does not run; "
                    "use a token, a client certificate or basic authentication",
                    f->path, json_object_get(u, "exec") ? "exec" : "auth-provider");
    c->token = xstrdup(str_at(u, "token"));
    if (tf != NULL)
        c->token_file = resolve_path(f->dir, tf);
    c->username = xstrdup(str_at(u, "username"));
    c->password = xstrdup(str_at(u, "password"));
    if (take_pem(u, f, "client-certificate-data", "client-certificate", &c->cert_pem,
                 &c->cert_pem_len, &c->cert_file, err, errlen) != 0)
        return -1;
    return take_pem(u, f, "client-key-data", "client-key", &c->key_pem, &c->key_pem_len,
                    &c->key_file, err, errlen);
}

/* read_kubeconfigs: the files of the ':'-separated <list> that exist; a file that exists but
 * does not parse is an error (kubectl refuses it too). Returns the count or -1. */
static int read_kubeconfigs(const char *list, struct kc_file *f, char *err, size_t errlen)
{
    char *copy = strdup(list), *save = NULL;
    int nf = 0;

    for (char *p = strtok_r(copy, ":", &save); p != NULL && nf < KC_MAX_FILES;
         p = strtok_r(NULL, ":", &save)) {
        size_t len;
        char *text = read_file(p, &len);
        struct kc_file *k = &f[nf];
        if (text == NULL)
            continue;
        k->root = parse_yaml(text, len);
        free(text);
        if (k->root == NULL || !json_is_object(k->root)) {
            json_decref(k->root);
            fail(err, errlen, "%s: not a kubeconfig (YAML syntax error or not a mapping)", p);
            nf = -1 - nf;
            break;
        }
        snprintf(k->path, sizeof(k->path), "%s", p);
        snprintf(k->dir, sizeof(k->dir), "%s", p);
        char *slash = strrchr(k->dir, '/');
        if (slash != NULL)
            *slash = '\0';
        else
            k->dir[0] = '\0';
        nf++;
    }
    free(copy);
    if (nf < 0) {
        for (int i = 0; i < -1 - nf; i++)
            json_decref(f[i].root);
        return -1;
    }
    return nf;
}

static int load_kubeconfig(struct pt_kube_creds *c, const char *list, char *err, size_t errlen)
{
    struct kc_file files[KC_MAX_FILES];
    const struct kc_file *cf = NULL, *uf = NULL, *xf = NULL;
    const char *current = NULL, *cluster_name, *user_name;
    const json_t *ctx, *cl, *user;
    int nf = read_kubeconfigs(list, files, err, errlen), rc = -1;

    if (nf < 0)
        return -1;
    if (nf == 0)
        return fail(err, errlen, "no kubeconfig found at %s", list);
    for (int i = 0; i < nf && current == NULL; i++)
        current = str_at(files[i].root, "current-context");
    if (current == NULL) {
        fail(err, errlen, "%s: no current-context", list);
        goto out;
    }
    if ((ctx = named(files, (size_t)nf, "contexts", "context", current, &xf)) == NULL) {
        fail(err, errlen, "%s: context %s not found", list, current);
        goto out;
    }
    cluster_name = str_at(ctx, "cluster");
    user_name = str_at(ctx, "user");
    if (cluster_name == NULL ||
        (cl = named(files, (size_t)nf, "clusters", "cluster", cluster_name, &cf)) == NULL) {
        fail(err, errlen, "%s: context %s: cluster %s not found", list, current,
             cluster_name ? cluster_name : "(none)");
        goto out;
    }
    if (take_cluster(c, cl, cf, err, errlen) != 0)
        goto out;
    if (user_name != NULL &&
        (user = named(files, (size_t)nf, "users", "user", user_name, &uf)) != NULL &&
        take_user(c, user, uf, err, errlen) != 0)
        goto out;
    if (asprintf(&c->origin, "kubeconfig %s, context %s", cf->path, current) < 0)
        c->origin = NULL;
    rc = 0;
out:
    for (int i = 0; i < nf; i++)
        json_decref(files[i].root);
    if (rc != 0)
        pt_kube_creds_free(c);
    return rc;
}

int pt_kubeconfig_load(struct pt_kube_creds *c, char *err, size_t errlen)
{
    const char *kc = getenv("KUBECONFIG"), *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *sa = getenv("PORTICO_SERVICEACCOUNT_DIR"), *home = getenv("HOME");
    char path[PATH_MAX];
    struct stat st;

    memset(c, 0, sizeof(*c));
    if (kc != NULL && kc[0] != '\0')
        return load_kubeconfig(c, kc, err, errlen);
    if (sa == NULL || sa[0] == '\0')
        sa = PT_KUBE_SA_DIR;
    snprintf(path, sizeof(path), "%s/token", sa);
    if (host != NULL && host[0] != '\0' && stat(path, &st) == 0)
        return load_in_cluster(c, sa, err, errlen);
    if (home != NULL && home[0] != '\0') {
        snprintf(path, sizeof(path), "%s/.kube/config", home);
        if (stat(path, &st) == 0)
            return load_kubeconfig(c, path, err, errlen);
    }
    return fail(
        err, errlen,
        "no Kubernetes credentials: not in a pod (no KUBERNETES_SERVICE_HOST and %s/token), "
        "no KUBECONFIG and no ~/.kube/config",
        sa);
}
