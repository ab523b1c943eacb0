/* Test certificates made with OpenSSL at run time (nothing checked in expires): a CA, server
 * certificates, and Istio-like workload certificates (empty subject, critical SPIFFE URI SAN,
 * RSA-2048, server+client EKU), plus PEM and file helpers. Shared by test_tls.c and
 * test_tls_istio.c; every function is static so each test includes its own copy. */
#ifndef PT_TESTS_TLS_CERTGEN_H
#define PT_TESTS_TLS_CERTGEN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#define TH_FN static __attribute__((unused))

TH_FN EVP_PKEY *th_rsa(void)
{
    EVP_PKEY *k = EVP_RSA_gen(2048);
    if (k == NULL)
        abort();
    return k;
}

TH_FN void th_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (e == NULL || X509_add_ext(x, e, -1) != 1)
        abort();
    X509_EXTENSION_free(e);
}

/* th_cert: a certificate for <key>. <cn> NULL gives an empty subject (Istio); <san> is a
 * subjectAltName value ("DNS:a,URI:b", may start with "critical,"); <issuer> NULL self-signs.
 * <days_before>/<days_after>: validity around now. */
TH_FN X509 *th_cert(EVP_PKEY *key, const char *cn, const char *san, bool ca, X509 *issuer,
                    EVP_PKEY *issuer_key, long days_before, long days_after)
{
    static long serial = 1000;
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -86400L * days_before - 120);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * days_after);
    if (cn != NULL)
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                                   (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
    X509_set_pubkey(x, key);
    X509 *iss = issuer ? issuer : x;
    if (ca) {
        th_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE");
        th_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        th_ext(x, iss, NID_key_usage, "critical,digitalSignature,keyEncipherment");
        th_ext(x, iss, NID_ext_key_usage, "serverAuth,clientAuth");
    }
    th_ext(x, iss, NID_subject_key_identifier, "hash");
    if (san != NULL)
        th_ext(x, iss, NID_subject_alt_name, san);
    if (X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) <= 0)
        abort();
    return x;
}

/* th_pem_cert / th_pem_key: PEM text (malloc'ed). */
TH_FN char *th_bio_text(BIO *b)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
    return out;
}

TH_FN char *th_pem_certs(X509 *a, X509 *b)
{
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, a);
    if (b != NULL)
        PEM_write_bio_X509(bio, b);
    return th_bio_text(bio);
}

/* th_pem_key: PKCS#1 for RSA keys (what Istio writes by default), PKCS#8 otherwise. */
TH_FN char *th_pem_key(EVP_PKEY *k)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA)
        PEM_write_bio_PrivateKey_traditional(bio, k, NULL, NULL, 0, NULL, NULL);
    else
        PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL);
    return th_bio_text(bio);
}

/* th_write: <dir>/<name> = <text>, atomically (temp file + rename) as istio-agent does. */
TH_FN void th_write(const char *dir, const char *name, const char *text)
{
    char tmp[512], path[512];
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(tmp, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        abort();
}

/* th_mkdtemp: a new temporary directory (path in <buf>). */
TH_FN void th_mkdtemp(char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/pt-tls-XXXXXX");
    if (mkdtemp(buf) == NULL)
        abort();
}

/* th_rmdir: removes <dir> and the plain files in it. */
TH_FN void th_rmdir(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        abort();
}

/* th_yaml_block: appends "    <line>\n" for every line of <pem> to <out>. */
TH_FN void th_yaml_block(char *out, size_t n, const char *pem)
{
    size_t len = strlen(out);
    for (const char *p = pem; *p != '\0';) {
        size_t l = strcspn(p, "\n");
        len += (size_t)snprintf(out + len, n - len, "    %.*s\n", (int)l, p);
        p += l + (p[l] == '\n');
    }
}

/* th_secret_yaml: appends a kubernetes.io/tls Secret with stringData to <out>. Any of the
 * values may be NULL. */
TH_FN void th_secret_yaml(char *out, size_t n, const char *name, const char *ns, const char *crt,
                          const char *key, const char *ca)
{
    size_t len = strlen(out);
    snprintf(out + len, n - len,
             "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: %s\n"
             "type: kubernetes.io/tls\nstringData:\n", name, ns);
    const char *keys[] = { "tls.crt", "tls.key", "ca.crt" };
    const char *vals[] = { crt, key, ca };
    for (int i = 0; i < 3; i++) {
        if (vals[i] == NULL)
            continue;
        len = strlen(out);
        snprintf(out + len, n - len, "  %s: |\n", keys[i]);
        th_yaml_block(out, n, vals[i]);
    }
}

#endif
