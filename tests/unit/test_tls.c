/* Unit tests for src/tls/ (contexts, SNI, tickets, certificates, self-signed fallback, error
 * text): certificates are generated at start (tls-helpers/certgen.h), published both as
 * Secrets (loaded through the real YAML loader) and as files, and every behaviour is checked
 * with a real handshake between two SSL objects joined by a BIO pair, in memory. The Istio
 * directory watcher has its own file, test_tls_istio.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>

#include "config/load.h"
#include "core/common.h"
#include "tls/tls.h"

#include "tls-helpers/certgen.h"

/* ---- fixture: one PKI for the whole file (RSA key generation is slow) ------------------------ */

static struct {
    EVP_PKEY *ca_key, *srv_key, *cli_key;
    X509 *ca, *srv, *cli, *host_a, *host_w, *host_d, *leaf_long, *ca_short;
    char dir[64];
    char path_ca[128], path_srv[128], path_srv_key[128], path_cli_key[128];
    struct pt_resources *r;
} pki;

#define SPIFFE "spiffe://cluster.local/ns/ambassador/sa/portico"

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void make_resources(void)
{
    static char yaml[200000];
    char *ca = th_pem_certs(pki.ca, NULL), *srv = th_pem_certs(pki.srv, pki.ca);
    char *cli = th_pem_certs(pki.cli, NULL), *srv_key = th_pem_key(pki.srv_key);
    char *cli_key = th_pem_key(pki.cli_key);
    char *a = th_pem_certs(pki.host_a, NULL), *w = th_pem_certs(pki.host_w, NULL);
    char *d = th_pem_certs(pki.host_d, NULL), *lng = th_pem_certs(pki.leaf_long, pki.ca_short);

    yaml[0] = '\0';
    th_secret_yaml(yaml, sizeof(yaml), "srv", "default", srv, srv_key, NULL);
    th_secret_yaml(yaml, sizeof(yaml), "cli", "default", cli, cli_key, NULL);
    th_secret_yaml(yaml, sizeof(yaml), "ca", "default", NULL, NULL, ca);
    th_secret_yaml(yaml, sizeof(yaml), "mismatch", "default", srv, cli_key, NULL);
    th_secret_yaml(yaml, sizeof(yaml), "nokey", "default", srv, NULL, NULL);
    th_secret_yaml(yaml, sizeof(yaml), "host-a", "default", a, srv_key, NULL);
    th_secret_yaml(yaml, sizeof(yaml), "host-w", "default", w, srv_key, NULL);
    th_secret_yaml(yaml, sizeof(yaml), "host-d", "default", d, srv_key, NULL);
    th_secret_yaml(yaml, sizeof(yaml), "long", "default", lng, srv_key, NULL);
    th_secret_yaml(yaml, sizeof(yaml), "srv.dotted", "other", srv, srv_key, NULL);
    th_secret_yaml(yaml, sizeof(yaml), "srv-other", "other", srv, srv_key, NULL);
    pki.r = pt_config_load_string(yaml, "secrets.yaml", NULL);
    if (pki.r->diag.nerrors > 0)
        pt_diag_print(&pki.r->diag, stderr);
    assert_int_equal(pki.r->diag.nerrors, 0);
    assert_int_equal(pki.r->nsecrets, 11);

    snprintf(pki.path_ca, sizeof(pki.path_ca), "%s/ca.pem", pki.dir);
    snprintf(pki.path_srv, sizeof(pki.path_srv), "%s/srv.pem", pki.dir);
    snprintf(pki.path_srv_key, sizeof(pki.path_srv_key), "%s/srv.key", pki.dir);
    snprintf(pki.path_cli_key, sizeof(pki.path_cli_key), "%s/cli.key", pki.dir);
    write_file(pki.path_ca, ca);
    write_file(pki.path_srv, srv);
    write_file(pki.path_srv_key, srv_key);
    write_file(pki.path_cli_key, cli_key);
    free(ca), free(srv), free(cli), free(srv_key), free(cli_key), free(a), free(w), free(d);
    free(lng);
}

static int setup_pki(void **state)
{
    pki.ca_key = th_rsa();
    pki.srv_key = th_rsa();
    pki.cli_key = th_rsa();
    pki.ca = th_cert(pki.ca_key, "Test Root CA", NULL, true, NULL, NULL, 1, 3650);
    pki.srv = th_cert(pki.srv_key, "localhost", "DNS:localhost", false, pki.ca, pki.ca_key, 1, 365);
    pki.cli = th_cert(pki.cli_key, NULL, "critical,URI:" SPIFFE, false, pki.ca, pki.ca_key, 1, 1);
    pki.host_a = th_cert(pki.srv_key, "a.example.com", NULL, false, pki.ca, pki.ca_key, 1, 30);
    pki.host_w = th_cert(pki.srv_key, "wild.example.com", NULL, false, pki.ca, pki.ca_key, 1, 30);
    pki.host_d = th_cert(pki.srv_key, "default.example.com", NULL, false, pki.ca, pki.ca_key, 1, 30);
    pki.leaf_long = th_cert(pki.srv_key, "long", NULL, false, pki.ca, pki.ca_key, 1, 800);
    pki.ca_short = th_cert(pki.ca_key, "Test Root CA", NULL, true, NULL, NULL, 1, 20);
    th_mkdtemp(pki.dir, sizeof(pki.dir));
    make_resources();
    return 0;
}

static int teardown_pki(void **state)
{
    EVP_PKEY_free(pki.ca_key), EVP_PKEY_free(pki.srv_key), EVP_PKEY_free(pki.cli_key);
    X509 *all[] = { pki.ca, pki.srv, pki.cli, pki.host_a, pki.host_w, pki.host_d, pki.leaf_long,
                    pki.ca_short };
    for (size_t i = 0; i < PT_ARRAY_SIZE(all); i++)
        X509_free(all[i]);
    pt_resources_free(pki.r);
    th_rmdir(pki.dir);
    pt_tls_shutdown();
    return 0;
}

/* ---- helpers -------------------------------------------------------------------------------- */

static struct pt_tls_settings settings(const char *secret)
{
    return (struct pt_tls_settings){ .secret = secret, .secret_namespacing = true };
}

static SSL_CTX *server_ctx(const struct pt_tls_settings *s)
{
    char err[256] = "";
    SSL_CTX *ctx = pt_tls_server_ctx_new(s, pki.r, "default", NULL, err, sizeof(err));
    if (ctx == NULL)
        fail_msg("server ctx: %s", err);
    return ctx;
}

static SSL_CTX *client_ctx(const struct pt_tls_settings *s)
{
    char err[256] = "";
    SSL_CTX *ctx = pt_tls_client_ctx_new(s, pki.r, "default", err, sizeof(err));
    if (ctx == NULL)
        fail_msg("client ctx: %s", err);
    return ctx;
}

/* One in-memory connection: results of both sides, and the SSL objects to inspect. */
struct conn {
    SSL *c, *s;
    bool cdone, sdone, cfail, sfail;
    char cerr[512], serr[512];
};

static void step(SSL *ssl, bool *done, bool *failed, char *err)
{
    if (*done || *failed)
        return;
    int r = SSL_do_handshake(ssl);
    if (r == 1) {
        *done = true;
        return;
    }
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return;
    *failed = true;
    pt_tls_error_string(err, 512);
}

/* exchange: "ping" server to client (the client also reads the TLS 1.3 tickets), "pong" back. */
static bool exchange(struct conn *k)
{
    char b[8];
    if (SSL_write(k->s, "ping", 4) != 4)
        return false;
    int n = SSL_read(k->c, b, sizeof(b));
    if (n <= 0) {
        k->cfail = true;
        pt_tls_error_string(k->cerr, sizeof(k->cerr));
        return false;
    }
    return n == 4 && memcmp(b, "ping", 4) == 0 && SSL_write(k->c, "pong", 4) == 4 &&
           SSL_read(k->s, b, sizeof(b)) == 4 && memcmp(b, "pong", 4) == 0;
}

/* run: handshakes <c> (a client SSL) with a server SSL on <sctx>; true when both sides
 * completed and exchanged data. The SSLs stay in <k> (conn_free). */
static bool run(struct conn *k, SSL *c, SSL_CTX *sctx)
{
    BIO *bc, *bs;

    *k = (struct conn){ .c = c, .s = SSL_new(sctx) };
    assert_non_null(k->c);
    assert_non_null(k->s);
    assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
    SSL_set_bio(k->c, bc, bc);
    SSL_set_bio(k->s, bs, bs);
    SSL_set_accept_state(k->s);
    for (int i = 0; i < 100 && !((k->cdone || k->cfail) && (k->sdone || k->sfail)); i++) {
        step(k->c, &k->cdone, &k->cfail, k->cerr);
        step(k->s, &k->sdone, &k->sfail, k->serr);
    }
    if (k->cdone && k->sfail) { /* TLS 1.3: the client learns of the refusal when it reads */
        char b[8];
        if (SSL_read(k->c, b, sizeof(b)) <= 0) {
            k->cfail = true;
            pt_tls_error_string(k->cerr, sizeof(k->cerr));
        }
    }
    return k->cdone && k->sdone && !k->cfail && !k->sfail && exchange(k);
}

static void conn_free(struct conn *k)
{
    SSL_free(k->c);
    SSL_free(k->s);
    ERR_clear_error();
}

static const char *peer_cn(SSL *ssl, char *buf, size_t n)
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    buf[0] = '\0';
    if (peer != NULL)
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, buf, (int)n);
    return buf;
}

static SSL *client_ssl(SSL_CTX *ctx, const char *sni)
{
    SSL *ssl = pt_tls_client_ssl_new(ctx, NULL);
    if (sni != NULL)
        SSL_set_tlsext_host_name(ssl, sni);
    return ssl;
}

/* ---- context building ----------------------------------------------------------------------- */

static void test_server_ctx_material(void **state)
{
    struct pt_tls_settings s = settings("srv");
    struct pt_tls_material m;
    char err[256];
    SSL_CTX *ctx = pt_tls_server_ctx_new(&s, pki.r, "default", &m, err, sizeof(err));
    char serial[80];

    assert_non_null(ctx);
    assert_string_equal(m.source, "secret default/srv");
    assert_string_equal(m.subject, "CN=localhost");
    pt_tls__serial_hex(pki.srv, serial, sizeof(serial));
    assert_string_equal(m.serial, serial);
    assert_false(m.self_signed);
    assert_int_equal(m.not_after, pt_tls_cert_not_after(pki.srv));
    assert_int_equal(pt_tls_ctx_not_after(ctx), m.not_after);
    long days = (long)(m.not_after - time(NULL)) / 86400;
    assert_true(days >= 364 && days <= 365);
    SSL_CTX_free(ctx);

    /* the same certificate from files */
    s = (struct pt_tls_settings){ .cert_chain_file = pki.path_srv,
                                  .private_key_file = pki.path_srv_key };
    ctx = pt_tls_server_ctx_new(&s, NULL, "default", &m, err, sizeof(err));
    assert_non_null(ctx);
    assert_string_equal(m.serial, serial);
    assert_true(strncmp(m.source, "file ", 5) == 0);
    SSL_CTX_free(ctx);
}

/* The chain's earliest expiry wins, for the "certificate expires in" metric. */
static void test_not_after_earliest(void **state)
{
    struct pt_tls_settings s = settings("long");
    struct pt_tls_material m;
    char err[256];
    SSL_CTX *ctx = pt_tls_server_ctx_new(&s, pki.r, "default", &m, err, sizeof(err));

    assert_non_null(ctx);
    assert_int_equal(m.not_after, pt_tls_cert_not_after(pki.ca_short));
    assert_int_equal(pt_tls_ctx_not_after(ctx), m.not_after);
    assert_true(pt_tls_cert_not_after(pki.leaf_long) > m.not_after + 700L * 86400);
    SSL_CTX_free(ctx);
    assert_int_equal(pt_tls_cert_not_after(NULL), 0);
}

static void expect_server_error(struct pt_tls_settings s, const char *want)
{
    char err[256] = "";
    SSL_CTX *ctx = pt_tls_server_ctx_new(&s, pki.r, "default", NULL, err, sizeof(err));
    if (ctx != NULL || strstr(err, want) == NULL)
        fail_msg("want error containing \"%s\", got %s \"%s\"", want, ctx ? "a context" : "",
                 err);
    assert_int_equal(ERR_peek_error(), 0); /* the error queue is left clean */
}

static void test_key_mismatch(void **state)
{
    expect_server_error(settings("mismatch"),
                        "secret default/mismatch: the private key does not match the certificate");
    struct pt_tls_settings s = { .cert_chain_file = pki.path_srv,
                                 .private_key_file = pki.path_cli_key };
    expect_server_error(s, "the private key does not match the certificate");

    char err[256] = "";
    s = settings("mismatch");
    assert_null(pt_tls_client_ctx_new(&s, pki.r, "default", err, sizeof(err)));
    assert_non_null(strstr(err, "does not match"));
}

static void test_settings_errors(void **state)
{
    struct pt_tls_settings s;
    const char *bad_cipher[] = { "ECDHE-RSA-AES128-GCM-SHA256", "NOT-A-CIPHER" };
    const char *bad_suite[] = { "TLS_NOT_A_SUITE" };
    const char *bad_curve[] = { "bogus" };

    expect_server_error(settings("missing"), "secret missing not found in namespace default");
    expect_server_error(settings("missing.elsewhere"),
                        "secret missing not found in namespace elsewhere");
    expect_server_error(settings("nokey"), "secret default/nokey has no tls.key");
    expect_server_error((struct pt_tls_settings){ .secret_namespacing = true },
                        "no certificate");
    expect_server_error((struct pt_tls_settings){ .cert_chain_file = "/nonexistent/x.pem",
                                                  .private_key_file = "/nonexistent/x.key" },
                        "cannot read /nonexistent/x.pem: No such file or directory");
    expect_server_error((struct pt_tls_settings){ .cert_chain_file = pki.path_srv },
                        "needs private_key_file");
    expect_server_error((struct pt_tls_settings){ .cert_chain_file = pki.path_srv_key,
                                                  .private_key_file = pki.path_srv_key },
                        "no PEM certificate found");
    s = settings("srv"), s.min_tls_version = "v1.4";
    expect_server_error(s, "min_tls_version: v1.4 is not one of v1.0, v1.1, v1.2, v1.3");
    s = settings("srv"), s.min_tls_version = "v1.3", s.max_tls_version = "v1.2";
    expect_server_error(s, "min_tls_version v1.3 is above max_tls_version v1.2");
    s = settings("srv"), s.cipher_suites = bad_cipher, s.ncipher_suites = 2;
    expect_server_error(s, "cipher_suites: unknown cipher NOT-A-CIPHER");
    s = settings("srv"), s.cipher_suites = bad_suite, s.ncipher_suites = 1;
    expect_server_error(s, "cipher_suites: unknown cipher TLS_NOT_A_SUITE");
    s = settings("srv"), s.ecdh_curves = bad_curve, s.necdh_curves = 1;
    expect_server_error(s, "ecdh_curves: unknown curve in bogus");
    s = settings("srv"), s.alpn_protocols = " , ";
    expect_server_error(s, "alpn_protocols: no protocol");
    s = settings("srv"), s.cert_required = true;
    expect_server_error(s, "cert_required needs ca_secret or cacert_chain_file");
    s = settings("srv"), s.ca_secret = "nope";
    expect_server_error(s, "secret nope not found");
    s = settings("srv"), s.crl_file = "/x.crl";
    expect_server_error(s, "crl_file: certificate revocation lists are not supported yet");
    s = settings("srv"), s.cert_chain_file = pki.path_srv;
    expect_server_error(s, "exactly one of secret and cert_chain_file");
}

static void test_secret_namespacing(void **state)
{
    struct pt_tls_settings s = settings("srv-other.other");
    SSL_CTX *ctx = server_ctx(&s);
    SSL_CTX_free(ctx);

    /* a dotted name needs secret_namespacing: false, and is then looked up in <ns> */
    s = settings("srv.dotted"), s.secret_namespacing = false;
    char err[256];
    ctx = pt_tls_server_ctx_new(&s, pki.r, "other", NULL, err, sizeof(err));
    assert_non_null(ctx);
    SSL_CTX_free(ctx);
    s.secret_namespacing = true; /* now "srv" in namespace "dotted" */
    expect_server_error(s, "secret srv not found in namespace dotted");
    assert_non_null(pt_tls_find_secret(pki.r, "ca", true, "default"));
    assert_null(pt_tls_find_secret(pki.r, "ca", true, "other"));
}

/* ---- handshakes ----------------------------------------------------------------------------- */

static void test_handshake_default_alpn(void **state)
{
    struct pt_tls_settings s = settings("srv");
    SSL_CTX *sctx = server_ctx(&s), *cctx = client_ctx(NULL);
    struct conn k;
    const unsigned char *alpn;
    unsigned int len;
    char cn[64];

    /* the null context offers no ALPN and verifies nothing (Emissary's tls: true) */
    assert_null(pt_tls_client_ctx_sni(cctx));
    assert_int_equal(SSL_CTX_get_verify_mode(cctx), SSL_VERIFY_NONE);
    assert_true(run(&k, client_ssl(cctx, NULL), sctx));
    SSL_get0_alpn_selected(k.s, &alpn, &len);
    assert_int_equal(len, 0);
    assert_string_equal(peer_cn(k.c, cn, sizeof(cn)), "localhost");
    assert_string_equal(SSL_get_version(k.c), "TLSv1.3");
    conn_free(&k);

    /* a client offering http/1.1 and h2 gets h2: the default server list prefers it */
    SSL *c = client_ssl(cctx, NULL);
    SSL_set_alpn_protos(c, (const unsigned char *)"\x08http/1.1\x02h2", 12);
    assert_true(run(&k, c, sctx));
    SSL_get0_alpn_selected(k.c, &alpn, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(alpn, "h2", 2);
    conn_free(&k);
    /* ... and one offering only http/1.1 gets it */
    c = client_ssl(cctx, NULL);
    SSL_set_alpn_protos(c, (const unsigned char *)"\x08http/1.1", 9);
    assert_true(run(&k, c, sctx));
    SSL_get0_alpn_selected(k.c, &alpn, &len);
    assert_int_equal(len, 8);
    assert_memory_equal(alpn, "http/1.1", 8);
    conn_free(&k);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

/* Istio's sidecar only terminates mTLS for the istio ALPNs (envoy-compat.md §5.1). */
static void test_alpn_istio(void **state)
{
    struct pt_tls_settings ss = settings("srv"), cs = { .alpn_protocols = "istio" };
    struct conn k;
    const unsigned char *alpn;
    unsigned int len;

    ss.alpn_protocols = "istio-http/1.1, istio,http/1.1";
    SSL_CTX *sctx = server_ctx(&ss), *cctx = client_ctx(&cs);
    assert_true(run(&k, client_ssl(cctx, NULL), sctx));
    SSL_get0_alpn_selected(k.c, &alpn, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(alpn, "istio", 5);
    SSL_get0_alpn_selected(k.s, &alpn, &len);
    assert_int_equal(len, 5);
    conn_free(&k);
    SSL_CTX_free(sctx);

    /* a server that does not offer it: no ALPN, the handshake still succeeds (Envoy) */
    ss.alpn_protocols = NULL;
    sctx = server_ctx(&ss);
    assert_true(run(&k, client_ssl(cctx, NULL), sctx));
    SSL_get0_alpn_selected(k.c, &alpn, &len);
    assert_int_equal(len, 0);
    conn_free(&k);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

static void test_sni_client_setting(void **state)
{
    struct pt_tls_settings ss = settings("srv"), cs = { .sni = "quote.default.svc" };
    SSL_CTX *sctx = server_ctx(&ss), *cctx = client_ctx(&cs);
    struct conn k;

    assert_string_equal(pt_tls_client_ctx_sni(cctx), "quote.default.svc");
    assert_true(run(&k, pt_tls_client_ssl_new(cctx, "10.0.0.1:443"), sctx));
    assert_string_equal(SSL_get_servername(k.s, TLSEXT_NAMETYPE_host_name), "quote.default.svc");
    conn_free(&k);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

static void test_sni_map_lookup(void **state)
{
    struct pt_tls_settings s = settings("srv");
    SSL_CTX *a = server_ctx(&s), *b = server_ctx(&s), *c = server_ctx(&s), *d = server_ctx(&s),
            *e = server_ctx(&s), *f = server_ctx(&s);
    struct pt_tls_sni_map *map = pt_tls_sni_map_new();

    assert_null(pt_tls_sni_map_lookup(map, "a.example.com"));
    assert_int_equal(pt_tls_sni_map_add(map, "A.Example.com:8443", a), 0);
    assert_int_equal(pt_tls_sni_map_add(map, "*.example.com", b), 0);
    assert_int_equal(pt_tls_sni_map_add(map, "*.b.example.com", c), 0);
    assert_int_equal(pt_tls_sni_map_add(map, "api.*", e), 0);
    assert_int_equal(pt_tls_sni_map_add(map, "api.internal.*", f), 0);
    assert_null(pt_tls_sni_map_lookup(map, "other.org")); /* no "*" yet */
    assert_null(pt_tls_sni_map_lookup(map, NULL));
    assert_int_equal(pt_tls_sni_map_add(map, "*", d), 0);
    assert_int_equal(pt_tls_sni_map_add(map, "a.example.com", d), PT_INVAL); /* duplicate */
    assert_int_equal(pt_tls_sni_map_add(map, "*.example.com", d), PT_INVAL);
    assert_int_equal(pt_tls_sni_map_add(map, "*", d), PT_INVAL);
    assert_int_equal(pt_tls_sni_map_add(map, "a.*.com", d), PT_INVAL);
    assert_int_equal(pt_tls_sni_map_add(map, "*.a.*", d), PT_INVAL);
    assert_int_equal(pt_tls_sni_map_add(map, "", d), PT_INVAL);

    assert_ptr_equal(pt_tls_sni_map_lookup(map, "a.example.com"), a);
    assert_ptr_equal(pt_tls_sni_map_lookup(map, "A.EXAMPLE.COM."), a);
    assert_ptr_equal(pt_tls_sni_map_lookup(map, "x.example.com"), b);
    assert_ptr_equal(pt_tls_sni_map_lookup(map, "x.a.example.com"), b);
    assert_ptr_equal(pt_tls_sni_map_lookup(map, "x.b.example.com"), c); /* longest suffix */
    assert_ptr_equal(pt_tls_sni_map_lookup(map, "example.com"), d);     /* "*." needs a label */
    assert_ptr_equal(pt_tls_sni_map_lookup(map, "api.internal.net"), f);
    assert_ptr_equal(pt_tls_sni_map_lookup(map, "api.example.org"), e);
    assert_ptr_equal(pt_tls_sni_map_lookup(map, "api.example.com"), b); /* suffix beats prefix */
    assert_ptr_equal(pt_tls_sni_map_lookup(map, "other.org"), d);
    assert_ptr_equal(pt_tls_sni_map_lookup(map, NULL), d);
    SSL_CTX *all[] = { a, b, c, d, e, f };
    for (size_t i = 0; i < PT_ARRAY_SIZE(all); i++)
        SSL_CTX_free(all[i]); /* the map holds its own references */
    assert_ptr_equal(pt_tls_sni_map_lookup(map, "a.example.com"), a);
    pt_tls_sni_map_free(map);
    pt_tls_sni_map_free(NULL);
}

/* A listener: its own context (self-signed here), and Hosts chosen by SNI. */
struct listener {
    SSL_CTX *ctx, *a, *w, *d;
    struct pt_tls_sni_map *map;
};

static void listener_new(struct listener *l, bool with_default, const char *a_min)
{
    struct pt_tls_settings sa = settings("host-a"), sw = settings("host-w"),
                           sd = settings("host-d");
    sa.min_tls_version = a_min;
    sa.alpn_protocols = "h2,http/1.1";
    l->ctx = server_ctx(NULL);
    l->a = server_ctx(&sa), l->w = server_ctx(&sw), l->d = server_ctx(&sd);
    l->map = pt_tls_sni_map_new();
    assert_int_equal(pt_tls_sni_map_add(l->map, "a.example.com", l->a), 0);
    assert_int_equal(pt_tls_sni_map_add(l->map, "*.example.com", l->w), 0);
    if (with_default)
        assert_int_equal(pt_tls_sni_map_add(l->map, "*", l->d), 0);
    pt_tls_sni_map_attach(l->map, l->ctx);
}

static void listener_free(struct listener *l)
{
    SSL_CTX_free(l->ctx), SSL_CTX_free(l->a), SSL_CTX_free(l->w), SSL_CTX_free(l->d);
    pt_tls_sni_map_free(l->map);
}

static void expect_cn(SSL_CTX *cctx, SSL_CTX *listener, const char *sni, const char *cn)
{
    struct conn k;
    char got[64];

    assert_true(run(&k, client_ssl(cctx, sni), listener));
    if (strcmp(peer_cn(k.c, got, sizeof(got)), cn) != 0)
        fail_msg("SNI %s: got certificate %s, want %s", sni ? sni : "(none)", got, cn);
    conn_free(&k);
}

static void test_sni_handshake(void **state)
{
    struct listener l;
    SSL_CTX *cctx = client_ctx(NULL);
    struct conn k;
    const unsigned char *alpn;
    unsigned int len;

    listener_new(&l, true, NULL);
    expect_cn(cctx, l.ctx, "a.example.com", "a.example.com");
    expect_cn(cctx, l.ctx, "A.Example.COM", "a.example.com");
    expect_cn(cctx, l.ctx, "x.example.com", "wild.example.com");
    expect_cn(cctx, l.ctx, "deep.x.example.com", "wild.example.com");
    expect_cn(cctx, l.ctx, "other.org", "default.example.com");
    expect_cn(cctx, l.ctx, NULL, "default.example.com");

    /* the chosen Host's ALPN list applies */
    SSL *c = client_ssl(cctx, "a.example.com");
    SSL_set_alpn_protos(c, (const unsigned char *)"\x08http/1.1\x02h2", 12);
    assert_true(run(&k, c, l.ctx));
    SSL_get0_alpn_selected(k.c, &alpn, &len);
    assert_int_equal(len, 2); /* "h2,http/1.1" as written: the server's order wins */
    assert_memory_equal(alpn, "h2", 2);
    conn_free(&k);
    listener_free(&l);

    /* without "*", unknown names keep the listener's own (self-signed) certificate */
    listener_new(&l, false, NULL);
    expect_cn(cctx, l.ctx, "other.org", "localhost");
    expect_cn(cctx, l.ctx, NULL, "localhost");
    expect_cn(cctx, l.ctx, "x.example.com", "wild.example.com");
    listener_free(&l);
    SSL_CTX_free(cctx);
}

/* The chosen Host's version bounds apply, which needs the switch before version selection. */
static void test_sni_versions(void **state)
{
    struct listener l;
    struct pt_tls_settings cs = { .max_tls_version = "v1.2" };
    SSL_CTX *cctx = client_ctx(&cs);
    struct conn k;

    listener_new(&l, true, "v1.3");
    assert_false(run(&k, client_ssl(cctx, "a.example.com"), l.ctx));
    assert_true(k.sfail);
    assert_non_null(strstr(k.serr, "UNSUPPORTED_PROTOCOL"));
    conn_free(&k);
    expect_cn(cctx, l.ctx, "x.example.com", "wild.example.com"); /* TLS 1.2 elsewhere */
    listener_free(&l);
    SSL_CTX_free(cctx);
}

static void test_versions(void **state)
{
    struct pt_tls_settings ss = settings("srv"), cs = { .max_tls_version = "v1.2" };
    SSL_CTX *sctx, *cctx = client_ctx(&cs);
    struct conn k;

    ss.min_tls_version = "v1.3";
    sctx = server_ctx(&ss);
    assert_false(run(&k, client_ssl(cctx, NULL), sctx));
    assert_true(k.sfail && k.cfail);
    assert_string_equal(k.serr, "TLS_error:|268435696:SSL routines:OPENSSL_internal:"
                                "UNSUPPORTED_PROTOCOL:TLS_error_end");
    assert_string_equal(k.cerr, "TLS_error:|268436526:SSL routines:OPENSSL_internal:"
                                "TLSV1_ALERT_PROTOCOL_VERSION:TLS_error_end");
    conn_free(&k);
    SSL_CTX_free(sctx);

    /* TLS 1.2 when both allow it */
    sctx = server_ctx(&(struct pt_tls_settings){ .secret = "srv", .secret_namespacing = true });
    assert_true(run(&k, client_ssl(cctx, NULL), sctx));
    assert_string_equal(SSL_get_version(k.s), "TLSv1.2");
    conn_free(&k);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

static void test_cipher_suites(void **state)
{
    const char *c12[] = { "[ECDHE-RSA-AES256-GCM-SHA384|ECDHE-RSA-CHACHA20-POLY1305]" };
    const char *c13[] = { "TLS_CHACHA20_POLY1305_SHA256" };
    const char *curves[] = { "P-384" };
    struct pt_tls_settings ss = settings("srv"), cs = { .max_tls_version = "v1.2" };
    SSL_CTX *sctx, *cctx = client_ctx(&cs), *cctx13 = client_ctx(NULL);
    struct conn k;

    ss.cipher_suites = c12, ss.ncipher_suites = 1;
    ss.ecdh_curves = curves, ss.necdh_curves = 1;
    sctx = server_ctx(&ss);
    assert_true(run(&k, client_ssl(cctx, NULL), sctx));
    assert_string_equal(SSL_get_cipher_name(k.c), "ECDHE-RSA-AES256-GCM-SHA384");
    conn_free(&k);
    SSL_CTX_free(sctx);

    ss.cipher_suites = c13;
    sctx = server_ctx(&ss);
    assert_true(run(&k, client_ssl(cctx13, NULL), sctx)); /* P-384 after a retry request */
    assert_string_equal(SSL_get_cipher_name(k.c), "TLS_CHACHA20_POLY1305_SHA256");
    conn_free(&k);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    SSL_CTX_free(cctx13);
}

/* Client certificates: required, verified against the CA, Istio-style SPIFFE identity. */
static void test_client_cert_required(void **state)
{
    struct pt_tls_settings ss = settings("srv"), with = settings("cli"), without = { 0 };
    SSL_CTX *sctx, *c_with, *c_without;
    struct conn k;

    ss.cacert_chain_file = pki.path_ca;
    ss.cert_required = true;
    sctx = server_ctx(&ss);
    assert_int_equal(SSL_CTX_get_verify_mode(sctx),
                     SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
    c_with = client_ctx(&with), c_without = client_ctx(&without);

    assert_false(run(&k, client_ssl(c_without, NULL), sctx));
    assert_true(k.sfail);
    assert_string_equal(k.serr, "TLS_error:|268435648:SSL routines:OPENSSL_internal:"
                                "PEER_DID_NOT_RETURN_A_CERTIFICATE:TLS_error_end");
    assert_true(k.cfail);
    assert_string_equal(k.cerr, "TLS_error:|268436572:SSL routines:OPENSSL_internal:"
                                "TLSV1_ALERT_CERTIFICATE_REQUIRED:TLS_error_end");
    conn_free(&k);

    assert_true(run(&k, client_ssl(c_with, NULL), sctx));
    X509 *peer = SSL_get0_peer_certificate(k.s);
    assert_non_null(peer);
    assert_int_equal(X509_cmp(peer, pki.cli), 0);
    assert_int_equal(SSL_get_verify_result(k.s), X509_V_OK);
    GENERAL_NAMES *sans = X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL);
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, 0);
    assert_int_equal(gn->type, GEN_URI);
    assert_string_equal((const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier),
                        SPIFFE);
    GENERAL_NAMES_free(sans);
    conn_free(&k);
    SSL_CTX_free(sctx);

    /* a CA without cert_required: a certificate is asked for but optional */
    ss.cert_required = false;
    ss.cacert_chain_file = NULL, ss.ca_secret = "ca";
    sctx = server_ctx(&ss);
    assert_int_equal(SSL_CTX_get_verify_mode(sctx), SSL_VERIFY_PEER);
    assert_true(run(&k, client_ssl(c_without, NULL), sctx));
    conn_free(&k);
    assert_true(run(&k, client_ssl(c_with, NULL), sctx));
    assert_non_null(SSL_get0_peer_certificate(k.s));
    conn_free(&k);
    SSL_CTX_free(sctx);
    SSL_CTX_free(c_with);
    SSL_CTX_free(c_without);
}

/* Origination verifies only with a CA; a failure reads as Envoy's text. */
static void test_upstream_verify(void **state)
{
    struct pt_tls_settings ss = settings("srv"), cs = { .ca_secret = "ca",
                                                        .secret_namespacing = true };
    SSL_CTX *trusted = server_ctx(&ss), *self = server_ctx(NULL), *cctx = client_ctx(&cs);
    struct conn k;

    assert_int_equal(SSL_CTX_get_verify_mode(cctx), SSL_VERIFY_PEER);
    assert_true(run(&k, client_ssl(cctx, NULL), trusted));
    assert_int_equal(SSL_get_verify_result(k.c), X509_V_OK);
    conn_free(&k);

    assert_false(run(&k, client_ssl(cctx, NULL), self));
    assert_true(k.cfail);
    assert_string_equal(k.cerr, "TLS_error:|268435581:SSL routines:OPENSSL_internal:"
                                "CERTIFICATE_VERIFY_FAILED:TLS_error_end");
    conn_free(&k);
    SSL_CTX_free(trusted);
    SSL_CTX_free(self);
    SSL_CTX_free(cctx);
}

/* ---- sessions ------------------------------------------------------------------------------- */

/* resume: one connection to <sctx> as <peer>; whether it resumed. */
static bool resume(SSL_CTX *cctx, SSL_CTX *sctx, const char *peer)
{
    struct conn k;
    assert_true(run(&k, pt_tls_client_ssl_new(cctx, peer), sctx));
    bool reused = SSL_session_reused(k.c) && SSL_session_reused(k.s);
    conn_free(&k);
    return reused;
}

static void check_resumption(SSL_CTX *cctx, SSL_CTX *sctx)
{
    assert_false(resume(cctx, sctx, "10.0.0.1:443"));
    assert_true(resume(cctx, sctx, "10.0.0.1:443"));
    assert_false(resume(cctx, sctx, "10.0.0.2:443")); /* sessions are per upstream */
    assert_true(resume(cctx, sctx, "10.0.0.2:443"));

    pt_tls_ticket_rotate(); /* the previous key still opens the ticket, which is renewed */
    assert_true(resume(cctx, sctx, "10.0.0.1:443"));
    pt_tls_ticket_rotate();
    pt_tls_ticket_rotate(); /* the renewed ticket's key is now the oldest: still fine */
    assert_true(resume(cctx, sctx, "10.0.0.1:443"));
    pt_tls_ticket_rotate();
    pt_tls_ticket_rotate();
    pt_tls_ticket_rotate(); /* out of the ring: full handshake */
    assert_false(resume(cctx, sctx, "10.0.0.1:443"));
    assert_true(resume(cctx, sctx, "10.0.0.1:443"));
}

static void test_ticket_resumption(void **state)
{
    struct pt_tls_settings ss = settings("srv"), c12 = { .max_tls_version = "v1.2" };
    SSL_CTX *sctx = server_ctx(&ss), *sctx2 = server_ctx(&ss), *cctx = client_ctx(NULL);
    SSL_CTX *cctx12 = client_ctx(&c12);

    assert_int_equal(SSL_CTX_get_session_cache_mode(sctx), SSL_SESS_CACHE_OFF);
    check_resumption(cctx, sctx);   /* TLS 1.3 */
    check_resumption(cctx12, sctx); /* TLS 1.2 */
    /* keys are shared by every server context: a reload's new context resumes old tickets */
    assert_false(resume(cctx, sctx, "10.0.0.3:443"));
    assert_true(resume(cctx, sctx2, "10.0.0.3:443"));
    SSL_CTX_free(sctx);
    SSL_CTX_free(sctx2);
    SSL_CTX_free(cctx);
    SSL_CTX_free(cctx12);
}

/* Keys rotate by themselves (every hour; 200 ms here): one rotation keeps tickets good, a
 * whole ring of them retires every key. */
static void test_ticket_rotation_by_time(void **state)
{
    struct pt_tls_settings ss = settings("srv");
    SSL_CTX *sctx = server_ctx(&ss), *cctx = client_ctx(NULL);
    struct timespec pause = { 0, 250 * 1000 * 1000 }, pause3 = { 0, 700 * 1000 * 1000 };

    pt_tls__ticket_set_interval(200);
    assert_false(resume(cctx, sctx, "peer"));
    nanosleep(&pause, NULL);
    assert_true(resume(cctx, sctx, "peer")); /* sealed again with the new key */
    nanosleep(&pause3, NULL);                /* three periods: the whole ring is new */
    assert_false(resume(cctx, sctx, "peer"));
    pt_tls__ticket_set_interval(0);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

/* A ticket never resumes on a context with a different certificate or client policy. */
static void test_ticket_scoped_to_context(void **state)
{
    struct pt_tls_settings a = settings("host-a"), strict = settings("host-a");
    SSL_CTX *sa, *sstrict, *cctx = client_ctx(&(struct pt_tls_settings){
                                       .secret = "cli", .secret_namespacing = true });

    strict.ca_secret = "ca", strict.cert_required = true;
    sa = server_ctx(&a), sstrict = server_ctx(&strict);
    assert_false(resume(cctx, sa, "peer"));
    assert_true(resume(cctx, sa, "peer"));
    assert_false(resume(cctx, sstrict, "peer"));
    assert_true(resume(cctx, sstrict, "peer"));
    SSL_CTX_free(sa);
    SSL_CTX_free(sstrict);
    SSL_CTX_free(cctx);
}

/* ---- self-signed fallback ------------------------------------------------------------------- */

static void test_selfsigned(void **state)
{
    EVP_PKEY *k1, *k2;
    X509 *c1, *c2;
    char cn[64], err[256];
    struct pt_tls_material m;

    assert_int_equal(pt_tls_selfsigned(&k1, &c1, NULL), 0);
    assert_int_equal(pt_tls_selfsigned(&k2, &c2, "localhost"), 0);
    assert_ptr_equal(c1, c2); /* cached */
    assert_int_equal(EVP_PKEY_get_base_id(k1), EVP_PKEY_EC);
    assert_int_equal(X509_check_private_key(c1, k1), 1);
    assert_int_equal(X509_check_host(c1, "localhost", 0, 0, NULL), 1);
    X509_NAME_get_text_by_NID(X509_get_subject_name(c1), NID_commonName, cn, sizeof(cn));
    assert_string_equal(cn, "localhost");
    long days = (long)(pt_tls_cert_not_after(c1) - time(NULL)) / 86400;
    assert_true(days >= 364 && days <= 365);
    EVP_PKEY_free(k2), X509_free(c2);

    assert_int_equal(pt_tls_selfsigned(&k2, &c2, "portico.example.com"), 0);
    assert_ptr_not_equal(c1, c2);
    assert_int_equal(X509_check_host(c2, "portico.example.com", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(c2, "localhost", 0, 0, NULL), 1);
    EVP_PKEY_free(k1), X509_free(c1), EVP_PKEY_free(k2), X509_free(c2);

    SSL_CTX *ctx = pt_tls_server_ctx_new(NULL, NULL, NULL, &m, err, sizeof(err));
    assert_non_null(ctx);
    assert_true(m.self_signed);
    assert_string_equal(m.source, "self-signed");
    SSL_CTX_free(ctx);
}

/* ---- error text ----------------------------------------------------------------------------- */

static void test_error_string(void **state)
{
    char out[512];

    ERR_clear_error();
    pt_tls_error_string(out, sizeof(out));
    assert_string_equal(out, "");

    ERR_raise(ERR_LIB_SYS, ECONNRESET);
    pt_tls_error_string(out, sizeof(out));
    assert_string_equal(out, "TLS_error:|33554536:system library:OPENSSL_internal:"
                             "Connection reset by peer:TLS_error_end");

    ERR_raise(ERR_LIB_SSL, SSL_R_WRONG_VERSION_NUMBER);
    ERR_raise(ERR_LIB_SSL, SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE);
    pt_tls_error_string(out, sizeof(out));
    assert_string_equal(out, "TLS_error:|268435703:SSL routines:OPENSSL_internal:"
                             "WRONG_VERSION_NUMBER|268436496:SSL routines:OPENSSL_internal:"
                             "SSLV3_ALERT_HANDSHAKE_FAILURE:TLS_error_end");
    assert_int_equal(ERR_peek_error(), 0);

    ERR_raise(ERR_LIB_SSL, SSL_R_UNEXPECTED_EOF_WHILE_READING); /* no BoringSSL twin */
    pt_tls_error_string(out, sizeof(out));
    char want[200];
    snprintf(want, sizeof(want), "TLS_error:|%lu:SSL routines:OPENSSL_internal:"
             "UNEXPECTED_EOF_WHILE_READING:TLS_error_end",
             (unsigned long)ERR_PACK(ERR_LIB_SSL, 0, SSL_R_UNEXPECTED_EOF_WHILE_READING));
    assert_string_equal(out, want);

    for (size_t n = 1; n < 40; n++) { /* truncation is safe */
        char small[40];
        memset(small, 'x', sizeof(small));
        ERR_raise(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED);
        pt_tls_error_string(small, n);
        assert_true(strlen(small) < n);
        assert_int_equal(small[n], 'x');
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_ctx_material),
        cmocka_unit_test(test_not_after_earliest),
        cmocka_unit_test(test_key_mismatch),
        cmocka_unit_test(test_settings_errors),
        cmocka_unit_test(test_secret_namespacing),
        cmocka_unit_test(test_handshake_default_alpn),
        cmocka_unit_test(test_alpn_istio),
        cmocka_unit_test(test_sni_client_setting),
        cmocka_unit_test(test_sni_map_lookup),
        cmocka_unit_test(test_sni_handshake),
        cmocka_unit_test(test_sni_versions),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_cipher_suites),
        cmocka_unit_test(test_client_cert_required),
        cmocka_unit_test(test_upstream_verify),
        cmocka_unit_test(test_ticket_resumption),
        cmocka_unit_test(test_ticket_rotation_by_time),
        cmocka_unit_test(test_ticket_scoped_to_context),
        cmocka_unit_test(test_selfsigned),
        cmocka_unit_test(test_error_string),
    };
    return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
