/* Certificates for the TLS contexts: finding the Secret a TLS setting names, reading PEM from a
 * Secret or a file, checking that a key matches its certificate, reading a CA bundle, and small
 * facts about a certificate (expiry, serial). Also adds synthetic Secrets (the Istio pair, the
 * self-signed fallback) to a pt_resources. No OpenSSL context is built here: context.c calls
 * these while compiling a configuration, istio.c and selfsigned.c call the Secret helper. */
#include "tls/tls.h"

#include "core/arena.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#define PT_TLS_MAX_PEM_FILE (1u << 20) /* 1 MiB: far more than any certificate chain */

/* no_password: refuses encrypted keys instead of letting OpenSSL prompt on the terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

/* first_error: the reason of the oldest queued OpenSSL error ("unknown" when none); clears the
 * queue, since config code reports one line per problem. */
static const char *first_error(void)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown error";
}

int pt_tls__parse_certs(const char *pem, size_t len, X509 **leaf, STACK_OF(X509) **rest,
                        char *err, size_t errlen)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    STACK_OF(X509) *all = sk_X509_new_null();
    int rc = -1;

    ERR_clear_error();
    for (X509 *x; b != NULL && all != NULL && (x = PEM_read_bio_X509(b, NULL, no_password, NULL));)
        sk_X509_push(all, x);
    unsigned long e = ERR_peek_last_error();
    if (b == NULL || all == NULL)
        snprintf(err, errlen, "out of memory");
    else if (sk_X509_num(all) == 0)
        snprintf(err, errlen, "no PEM certificate found");
    else if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE)
        snprintf(err, errlen, "certificate %d does not parse: %s", sk_X509_num(all) + 1,
                 first_error());
    else
        rc = 0;
    ERR_clear_error();
    BIO_free(b);
    if (rc == 0) {
        *leaf = sk_X509_shift(all);
        if (rest != NULL && sk_X509_num(all) > 0) {
            *rest = all;
            return 0;
        }
        if (rest != NULL)
            *rest = NULL;
    }
    sk_X509_pop_free(all, X509_free);
    return rc;
}

int pt_tls__parse_key(const char *pem, size_t len, EVP_PKEY **key, char *err, size_t errlen)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);

    ERR_clear_error();
    *key = b ? PEM_read_bio_PrivateKey(b, NULL, no_password, NULL) : NULL;
    BIO_free(b);
    if (*key == NULL) {
        snprintf(err, errlen, "private key does not parse: %s", first_error());
        return -1;
    }
    return 0;
}

/* read_file: the whole of <path> into a new NUL-terminated buffer; NULL with <err> set. */
static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;

    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    buf = pt_xmalloc(PT_TLS_MAX_PEM_FILE + 1);
    n = fread(buf, 1, PT_TLS_MAX_PEM_FILE + 1, f);
    if (ferror(f) || n > PT_TLS_MAX_PEM_FILE) {
        snprintf(err, errlen, "cannot read %s: %s", path,
                 ferror(f) ? strerror(errno) : "larger than 1 MiB");
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

const struct pt_secret_res *pt_tls_find_secret(const struct pt_resources *r, const char *ref,
                                               bool namespacing, const char *ns)
{
    const char *dot = namespacing ? strrchr(ref, '.') : NULL;
    size_t nlen = dot ? (size_t)(dot - ref) : strlen(ref);
    const char *sns = dot ? dot + 1 : ns;

    for (size_t i = 0; r != NULL && i < r->nsecrets; i++) {
        const struct pt_meta *m = &r->secrets[i].meta;
        if (strlen(m->name) == nlen && memcmp(m->name, ref, nlen) == 0 &&
            strcmp(m->namespace, sns) == 0)
            return &r->secrets[i];
    }
    return NULL;
}

/* secret_value: the value of <key> in <s>, or NULL. */
static const char *secret_value(const struct pt_secret_res *s, const char *key, size_t *len)
{
    for (size_t i = 0; i < s->ndata; i++) {
        if (strcmp(s->data[i].key, key) == 0 && s->data_len[i] > 0) {
            *len = s->data_len[i];
            return s->data[i].value;
        }
    }
    return NULL;
}

/* secret_first: the value of the first of <keys> that <s> has, or NULL. */
static const char *secret_first(const struct pt_secret_res *s, const char *const *keys,
                                size_t *len)
{
    for (; *keys != NULL; keys++) {
        const char *v = secret_value(s, *keys, len);
        if (v != NULL)
            return v;
    }
    return NULL;
}

static const struct pt_secret_res *lookup_secret(const struct pt_resources *r, const char *ref,
                                                 bool namespacing, const char *ns, char *err,
                                                 size_t errlen)
{
    const struct pt_secret_res *sec = pt_tls_find_secret(r, ref, namespacing, ns);
    const char *dot = namespacing ? strrchr(ref, '.') : NULL;

    if (sec == NULL)
        snprintf(err, errlen, "secret %.*s not found in namespace %s",
                 dot ? (int)(dot - ref) : (int)strlen(ref), ref, dot ? dot + 1 : ns);
    return sec;
}

static const char *const cert_keys[] = { "tls.crt", "cert-chain.pem", NULL };
static const char *const key_keys[] = { "tls.key", "key.pem", NULL };

/* keypair_from_secret: parses the certificate and key of the Secret <ref>. */
static int keypair_from_secret(const struct pt_tls_settings *s, const struct pt_resources *r,
                               const char *ns, struct pt_tls__keypair *kp, char *source,
                               size_t sourcelen, char *err, size_t errlen)
{
    const struct pt_secret_res *sec =
        lookup_secret(r, s->secret, s->secret_namespacing, ns, err, errlen);
    const char *crt, *key;
    size_t crt_len = 0, key_len = 0;
    char why[200];

    if (sec == NULL)
        return -1;
    snprintf(source, sourcelen, "secret %s/%s", sec->meta.namespace, sec->meta.name);
    crt = secret_first(sec, cert_keys, &crt_len);
    key = secret_first(sec, key_keys, &key_len);
    if (crt == NULL || key == NULL) {
        snprintf(err, errlen, "%s has no %s", source, crt == NULL ? "tls.crt" : "tls.key");
        return -1;
    }
    if (pt_tls__parse_certs(crt, crt_len, &kp->cert, &kp->chain, why, sizeof(why)) < 0 ||
        pt_tls__parse_key(key, key_len, &kp->key, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: %s", source, why);
        return -1;
    }
    return 0;
}

/* keypair_from_files: parses cert_chain_file and private_key_file. */
static int keypair_from_files(const struct pt_tls_settings *s, struct pt_tls__keypair *kp,
                              char *source, size_t sourcelen, char *err, size_t errlen)
{
    char *crt = NULL, *key = NULL;
    size_t crt_len = 0, key_len = 0;
    char why[200];
    int rc = -1;

    snprintf(source, sourcelen, "file %s", s->cert_chain_file);
    if (s->private_key_file == NULL)
        snprintf(err, errlen, "cert_chain_file %s needs private_key_file", s->cert_chain_file);
    else if ((crt = read_file(s->cert_chain_file, &crt_len, err, errlen)) == NULL ||
             (key = read_file(s->private_key_file, &key_len, err, errlen)) == NULL)
        ; /* err set */
    else if (pt_tls__parse_certs(crt, crt_len, &kp->cert, &kp->chain, why, sizeof(why)) < 0)
        snprintf(err, errlen, "%s: %s", s->cert_chain_file, why);
    else if (pt_tls__parse_key(key, key_len, &kp->key, why, sizeof(why)) < 0)
        snprintf(err, errlen, "%s: %s", s->private_key_file, why);
    else
        rc = 0;
    if (key != NULL)
        OPENSSL_cleanse(key, key_len);
    free(crt);
    free(key);
    return rc;
}

int pt_tls__load_keypair(const struct pt_tls_settings *s, const struct pt_resources *r,
                         const char *ns, struct pt_tls__keypair *kp, char *source,
                         size_t sourcelen, char *err, size_t errlen)
{
    int rc;

    if (s->secret != NULL && s->cert_chain_file != NULL) {
        snprintf(err, errlen, "exactly one of secret and cert_chain_file");
        return -1;
    }
    if (s->secret != NULL)
        rc = keypair_from_secret(s, r, ns, kp, source, sourcelen, err, errlen);
    else if (s->cert_chain_file != NULL)
        rc = keypair_from_files(s, kp, source, sourcelen, err, errlen);
    else if (s->private_key_file != NULL) {
        snprintf(err, errlen, "private_key_file %s needs cert_chain_file", s->private_key_file);
        return -1;
    } else
        return 0;
    if (rc == 0 && X509_check_private_key(kp->cert, kp->key) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "%s: the private key does not match the certificate", source);
        rc = -1;
    }
    if (rc < 0) {
        pt_tls__keypair_clear(kp);
        return -1;
    }
    return 1;
}

static const char *const ca_keys[] = { "ca.crt", "tls.crt", "root-cert.pem", NULL };

int pt_tls__load_ca(const struct pt_tls_settings *s, const struct pt_resources *r, const char *ns,
                    STACK_OF(X509) **cas, char *err, size_t errlen)
{
    const char *pem, *what;
    char *file = NULL, why[200];
    size_t len = 0;
    X509 *first = NULL;

    if (s->ca_secret != NULL) {
        const struct pt_secret_res *sec =
            lookup_secret(r, s->ca_secret, s->secret_namespacing, ns, err, errlen);
        if (sec == NULL)
            return -1;
        what = s->ca_secret;
        if ((pem = secret_first(sec, ca_keys, &len)) == NULL) {
            snprintf(err, errlen, "ca_secret %s has no ca.crt or tls.crt", what);
            return -1;
        }
    } else if (s->cacert_chain_file != NULL) {
        what = s->cacert_chain_file;
        if ((pem = file = read_file(what, &len, err, errlen)) == NULL)
            return -1;
    } else {
        return 0;
    }
    int rc = pt_tls__parse_certs(pem, len, &first, cas, why, sizeof(why));
    free(file);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", what, why);
        return -1;
    }
    if (*cas == NULL)
        *cas = sk_X509_new_null();
    if (*cas == NULL || !sk_X509_unshift(*cas, first)) {
        X509_free(first);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 1;
}

void pt_tls__keypair_clear(struct pt_tls__keypair *kp)
{
    X509_free(kp->cert);
    sk_X509_pop_free(kp->chain, X509_free);
    EVP_PKEY_free(kp->key);
    *kp = (struct pt_tls__keypair){ 0 };
}

time_t pt_tls_cert_not_after(const X509 *cert)
{
    struct tm tm;

    if (cert == NULL || !ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm))
        return 0;
    return timegm(&tm);
}

void pt_tls__serial_hex(const X509 *cert, char *out, size_t n)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;

    snprintf(out, n, "%s", hex ? hex : "");
    OPENSSL_free(hex);
    BN_free(bn);
}

/* ---- synthetic Secrets ---------------------------------------------------------------------- */

/* secret_slot: the Secret <name> in <ns> of <r>, or a new zeroed one appended (the array is
 * copied into a larger arena array: the old one stays valid but is no longer r's). */
static struct pt_secret_res *secret_slot(struct pt_resources *r, struct pt_arena *a,
                                         const char *name, const char *ns, bool *existed)
{
    for (size_t i = 0; i < r->nsecrets; i++) {
        struct pt_secret_res *s = &r->secrets[i];
        if (strcmp(s->meta.name, name) == 0 && strcmp(s->meta.namespace, ns) == 0) {
            *existed = true;
            return s;
        }
    }
    *existed = false;
    r->secrets = pt_arena_grow(a, r->secrets, r->nsecrets, r->nsecrets + 1, sizeof(*r->secrets));
    return &r->secrets[r->nsecrets++];
}

int pt_tls__add_secret(struct pt_resources *r, const char *name, const char *ns,
                       const char *origin, bool replace, const char *const *keys,
                       const char *const *vals, const size_t *lens, size_t n)
{
    struct pt_arena *a = r->_arena;
    bool existed;

    if (a == NULL)
        return PT_INVAL;
    struct pt_secret_res *s = secret_slot(r, a, name, ns, &existed);
    if (existed && !replace)
        return 0;
    *s = (struct pt_secret_res){ 0 };
    s->meta.kind = "Secret";
    s->meta.name = pt_arena_strdup(a, name);
    s->meta.namespace = pt_arena_strdup(a, ns);
    s->meta.origin.file = pt_arena_strdup(a, origin);
    s->type = "kubernetes.io/tls";
    s->data = pt_arena_alloc_array(a, n, sizeof(*s->data));
    s->data_len = pt_arena_alloc_array(a, n, sizeof(*s->data_len));
    for (size_t i = 0; i < n; i++) {
        s->data[i] = (struct pt_kv){ pt_arena_strdup(a, keys[i]),
                                     pt_arena_strndup(a, vals[i], lens[i]) };
        s->data_len[i] = lens[i];
    }
    s->ndata = n;
    return 1;
}
