/* The self-signed fallback certificate: what an HTTPS listener serves when no Host gives a
 * certificate (DESIGN.md "When no Host exists"), so `curl -k https://...` works on a fresh
 * install. ECDSA P-256 because it is generated at start-up and must be fast. Generated once per
 * common name and cached for the life of the process (reloads must not change it, or clients
 * that pinned it for the session would see a new one). Also published as the Secret
 * `fallback-self-signed-cert`, as Emissary names it. Called by context.c and the config
 * compiler, on any thread (the cache is locked). */
#include "tls/tls.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define PT_TLS_SELFSIGNED_DAYS 365

struct cached_cert {
    struct cached_cert *next;
    char *cn;
    EVP_PKEY *key;
    X509 *cert;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cached_cert *cache;

/* dns_name: whether <s> may go into a DNS SAN (letters, digits, '-', '.', '*'). */
static bool dns_name(const char *s)
{
    if (*s == '\0' || strlen(s) > 253)
        return false;
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '.' || *s == '*'))
            return false;
    return true;
}

static bool add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    bool ok;

    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* random_serial: a positive 127-bit serial, as RFC 5280 asks for unpredictable ones. */
static bool random_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    bool ok = bn != NULL && BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
              BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;

    BN_free(bn);
    return ok;
}

static X509 *make_cert(EVP_PKEY *key, const char *cn)
{
    X509 *x = X509_new();
    X509_NAME *name = x ? X509_get_subject_name(x) : NULL;
    char san[300];
    bool ok;

    if (strcmp(cn, "localhost") != 0 && dns_name(cn))
        snprintf(san, sizeof(san), "DNS:localhost,DNS:%s", cn);
    else
        snprintf(san, sizeof(san), "DNS:localhost");
    ok = x != NULL && X509_set_version(x, 2) == 1 && random_serial(x) &&
         X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL && /* clock skew */
         X509_gmtime_adj(X509_getm_notAfter(x), 86400L * PT_TLS_SELFSIGNED_DAYS) != NULL &&
         X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"Portico",
                                    -1, -1, 0) == 1 &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                    -1, 0) == 1 &&
         X509_set_issuer_name(x, name) == 1 && X509_set_pubkey(x, key) == 1 &&
         add_ext(x, NID_basic_constraints, "critical,CA:FALSE") &&
         add_ext(x, NID_key_usage, "critical,digitalSignature") &&
         add_ext(x, NID_ext_key_usage, "serverAuth") &&
         add_ext(x, NID_subject_key_identifier, "hash") &&
         add_ext(x, NID_subject_alt_name, san) && X509_sign(x, key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        ERR_clear_error();
        return NULL;
    }
    return x;
}

/* lookup_or_make: the cached entry for <cn>, made when missing (cache lock held). */
static struct cached_cert *lookup_or_make(const char *cn)
{
    struct cached_cert *c;

    for (c = cache; c != NULL; c = c->next)
        if (strcmp(c->cn, cn) == 0)
            return c;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = key ? make_cert(key, cn) : NULL;
    if (cert == NULL) {
        EVP_PKEY_free(key);
        ERR_clear_error();
        return NULL;
    }
    c = pt_xcalloc(1, sizeof(*c));
    *c = (struct cached_cert){ .next = cache, .cn = pt_xstrdup(cn), .key = key, .cert = cert };
    cache = c;
    return c;
}

int pt_tls_selfsigned(EVP_PKEY **key, X509 **cert, const char *cn)
{
    struct cached_cert *c;

    pthread_mutex_lock(&cache_lock);
    c = lookup_or_make(cn ? cn : "localhost");
    if (c != NULL) {
        EVP_PKEY_up_ref(c->key);
        X509_up_ref(c->cert);
        *key = c->key, *cert = c->cert;
    }
    pthread_mutex_unlock(&cache_lock);
    return c ? 0 : PT_NOMEM;
}

void pt_tls__selfsigned_free_all(void)
{
    pthread_mutex_lock(&cache_lock);
    while (cache != NULL) {
        struct cached_cert *c = cache;
        cache = c->next;
        EVP_PKEY_free(c->key);
        X509_free(c->cert);
        free(c->cn);
        free(c);
    }
    pthread_mutex_unlock(&cache_lock);
}
