/* Choosing a Host's server context by the SNI a client sends: a map from Host hostnames
 * (exact names and globs) to contexts, and the OpenSSL callbacks that consult it. Precedence
 * is exact, then the longest "*suffix", then the longest "prefix*", then "*". Lookups hash the
 * exact name and each suffix of it, so their cost grows with the name's length, not with the
 * number of Hosts. The config compiler builds one map per HTTPS listener on the control thread;
 * workers only read it, from inside OpenSSL's handshake callbacks. */
#include "tls/tls.h"

#include "core/strmap.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#define PT_TLS_MAX_NAME 255

enum glob_kind { GLOB_EXACT, GLOB_SUFFIX, GLOB_PREFIX, GLOB_ANY };

struct sni_entry {
    char *lit; /* lower-case name without the '*' (owned; the maps borrow it) */
    size_t len;
    enum glob_kind kind;
    SSL_CTX *ctx;
};

struct pt_tls_sni_map {
    struct sni_entry *entries;
    size_t n, cap;
    struct pt_strmap exact;  /* lit -> entry index + 1 */
    struct pt_strmap suffix; /* lit ("*" removed) -> entry index + 1 */
    size_t nsuffix;          /* suffix globs */
    size_t any;              /* entry index + 1 of "*", 0 none */
};

struct pt_tls_sni_map *pt_tls_sni_map_new(void)
{
    return pt_xcalloc(1, sizeof(struct pt_tls_sni_map));
}

/* normalize: <name> lower-cased into <out> without ":port" (<port>) or a trailing '.'; its
 * length, or 0 when empty or too long. */
static size_t normalize(const char *name, bool port, char out[PT_TLS_MAX_NAME + 1])
{
    size_t n = port ? strcspn(name, ":") : strlen(name);

    if (n > 0 && name[n - 1] == '.')
        n--;
    if (n == 0 || n > PT_TLS_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++)
        out[i] = pt_lower(name[i]);
    out[n] = '\0';
    return n;
}

/* classify: the kind of glob <name> is, with its literal part; false when malformed. */
static bool classify(char *name, size_t n, enum glob_kind *kind, char **lit, size_t *litlen)
{
    char *star = memchr(name, '*', n);

    *lit = name, *litlen = n, *kind = GLOB_EXACT;
    if (star == NULL)
        return true;
    if (n == 1) {
        *kind = GLOB_ANY;
        return true;
    }
    if (memchr(star + 1, '*', n - (size_t)(star - name) - 1) != NULL)
        return false;
    if (star == name) {
        *kind = GLOB_SUFFIX, *lit = name + 1, *litlen = n - 1;
        return true;
    }
    if (star == name + n - 1) {
        *kind = GLOB_PREFIX, *litlen = n - 1;
        name[n - 1] = '\0';
        return true;
    }
    return false;
}

/* duplicate: whether a glob of this kind and literal is already mapped. */
static bool duplicate(const struct pt_tls_sni_map *map, enum glob_kind kind, const char *lit,
                      size_t len)
{
    if (kind == GLOB_EXACT)
        return pt_strmap_get(&map->exact, lit, len) != NULL;
    if (kind == GLOB_SUFFIX)
        return pt_strmap_get(&map->suffix, lit, len) != NULL;
    if (kind == GLOB_ANY)
        return map->any != 0;
    for (size_t i = 0; i < map->n; i++)
        if (map->entries[i].kind == GLOB_PREFIX && map->entries[i].len == len &&
            memcmp(map->entries[i].lit, lit, len) == 0)
            return true;
    return false;
}

int pt_tls_sni_map_add(struct pt_tls_sni_map *map, const char *hostname, SSL_CTX *ctx)
{
    char name[PT_TLS_MAX_NAME + 1], *lit;
    size_t n = normalize(hostname, true, name), len;
    enum glob_kind kind;

    if (n == 0 || !classify(name, n, &kind, &lit, &len) || duplicate(map, kind, lit, len))
        return PT_INVAL;
    if (map->n == map->cap) {
        map->cap = map->cap ? map->cap * 2 : 8;
        map->entries = pt_xrealloc(map->entries, map->cap * sizeof(*map->entries));
    }
    struct sni_entry *e = &map->entries[map->n++];
    *e = (struct sni_entry){ .lit = pt_xstrndup(lit, len), .len = len, .kind = kind, .ctx = ctx };
    SSL_CTX_up_ref(ctx);
    void *at = (void *)(uintptr_t)map->n;
    if (kind == GLOB_EXACT)
        pt_strmap_put(&map->exact, e->lit, len, at);
    else if (kind == GLOB_SUFFIX)
        pt_strmap_put(&map->suffix, e->lit, len, at), map->nsuffix++;
    else if (kind == GLOB_ANY)
        map->any = map->n;
    return 0;
}

/* longest_prefix: the entry of the longest "prefix*" glob matching <name>, or NULL. */
static const struct sni_entry *longest_prefix(const struct pt_tls_sni_map *map,
                                              const char *name, size_t n)
{
    const struct sni_entry *best = NULL;

    for (size_t i = 0; i < map->n; i++) {
        const struct sni_entry *e = &map->entries[i];
        if (e->kind == GLOB_PREFIX && e->len < n && memcmp(e->lit, name, e->len) == 0 &&
            (best == NULL || e->len > best->len))
            best = e;
    }
    return best;
}

SSL_CTX *pt_tls_sni_map_lookup(const struct pt_tls_sni_map *map, const char *name)
{
    char low[PT_TLS_MAX_NAME + 1];
    size_t n = name ? normalize(name, false, low) : 0;
    uintptr_t at;

    if (n == 0)
        return map->any ? map->entries[map->any - 1].ctx : NULL;
    if ((at = (uintptr_t)pt_strmap_get(&map->exact, low, n)) != 0)
        return map->entries[at - 1].ctx;
    for (size_t i = 1; i < n && map->nsuffix > 0; i++) /* longest suffix first */
        if ((at = (uintptr_t)pt_strmap_get(&map->suffix, low + i, n - i)) != 0)
            return map->entries[at - 1].ctx;
    const struct sni_entry *p = longest_prefix(map, low, n);
    if (p != NULL)
        return p->ctx;
    return map->any ? map->entries[map->any - 1].ctx : NULL;
}

int pt_tls_sni_cb(SSL *ssl, int *al, void *arg)
{
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    SSL_CTX *ctx;

    if (arg == NULL || (ctx = pt_tls_sni_map_lookup(arg, name)) == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    pt_tls__sni_switch(ssl, ctx);
    return name != NULL ? SSL_TLSEXT_ERR_OK : SSL_TLSEXT_ERR_NOACK;
}

/* hello_server_name: the host_name of a raw server_name extension (RFC 6066 §3) into <out>. */
static bool hello_server_name(const unsigned char *p, size_t len, char *out, size_t outlen)
{
    size_t list, n;

    if (len < 5 || (list = (size_t)p[0] << 8 | p[1]) != len - 2 || p[2] != 0 /* host_name */)
        return false;
    n = (size_t)p[3] << 8 | p[4];
    if (n == 0 || n + 5 > len || n >= outlen || memchr(p + 5, '\0', n) != NULL)
        return false;
    memcpy(out, p + 5, n);
    out[n] = '\0';
    return true;
}

/* client_hello: switches context before OpenSSL picks the version, the ticket and the cipher,
 * which happens before the servername callback runs. */
static int client_hello(SSL *ssl, int *al, void *arg)
{
    const unsigned char *p;
    size_t len;
    char name[PT_TLS_MAX_NAME + 1];
    SSL_CTX *ctx;

    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) != 1)
        ctx = pt_tls_sni_map_lookup(arg, NULL); /* no SNI: the "*" Host */
    else if (hello_server_name(p, len, name, sizeof(name)))
        ctx = pt_tls_sni_map_lookup(arg, name);
    else
        ctx = NULL;
    if (ctx != NULL)
        pt_tls__sni_switch(ssl, ctx);
    return SSL_CLIENT_HELLO_SUCCESS;
}

void pt_tls_sni_map_attach(struct pt_tls_sni_map *map, SSL_CTX *listener_ctx)
{
    SSL_CTX_set_client_hello_cb(listener_ctx, client_hello, map);
    SSL_CTX_set_tlsext_servername_callback(listener_ctx, pt_tls_sni_cb);
    SSL_CTX_set_tlsext_servername_arg(listener_ctx, map);
}

void pt_tls_sni_map_free(struct pt_tls_sni_map *map)
{
    if (map == NULL)
        return;
    for (size_t i = 0; i < map->n; i++) {
        SSL_CTX_free(map->entries[i].ctx);
        free(map->entries[i].lit);
    }
    free(map->entries);
    pt_strmap_free(&map->exact);
    pt_strmap_free(&map->suffix);
    free(map);
}
