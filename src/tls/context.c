/* OpenSSL contexts built from TLS settings (a TLSContext, or a Host's inline tls): one server
 * context per terminating Host, one client context per origination TLSContext. This file turns
 * the Emissary fields into OpenSSL calls (versions, ciphers, curves, ALPN, client-certificate
 * policy, sessions) and keeps, in each context's ex_data, what a connection needs later: the
 * ALPN list, the settings that SNI switching must copy by hand (sni.c calls
 * pt_tls__sni_switch), and a client's SNI and per-upstream session cache. Certificates come
 * from certs.c, ticket keys from tickets.c. Called by the config compiler on the control
 * thread; the contexts are then read-only and shared by the workers (which call
 * pt_tls_client_ssl_new). */
#include "tls/tls.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#define PT_TLS_DEFAULT_GROUPS "X25519:P-256:P-384"
#define PT_TLS_DEFAULT_ALPN "h2,http/1.1" /* terminating: HTTP/2 first, as browsers expect */
#define PT_TLS_SESSION_TIMEOUT 7200 /* s: tickets outlive at most two key rotations */
#define PT_TLS_CLIENT_SLOTS 64      /* saved client sessions per context, by upstream */

/* What a server context keeps for its connections: the ALPN list it selects from, and the
 * settings SSL_set_SSL_CTX does not copy when SNI moves a connection to this context. */
struct server_data {
    unsigned char *alpn; /* wire format: length-prefixed names, server preference */
    size_t alpn_len;
    char *cipher_list;  /* TLS 1.2 and below, as given to SSL_CTX_set_cipher_list */
    char *ciphersuites; /* TLS 1.3 */
    char *groups;
};

/* A saved session for one upstream (direct-mapped by the hash of its peer key). */
struct client_slot {
    uintptr_t peer; /* hash of the peer key; 0 = empty */
    SSL_SESSION *sess;
};

struct client_data {
    char *sni; /* NULL: no SNI */
    pthread_mutex_t lock;
    struct client_slot slots[PT_TLS_CLIENT_SLOTS];
};

static int server_idx = -1, client_idx = -1, peer_idx = -1;
static pthread_once_t idx_once = PTHREAD_ONCE_INIT;

static void server_data_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                             void *argp)
{
    struct server_data *d = ptr;

    if (d == NULL)
        return;
    free(d->alpn);
    free(d->cipher_list);
    free(d->ciphersuites);
    free(d->groups);
    free(d);
}

static void client_data_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                             void *argp)
{
    struct client_data *d = ptr;

    if (d == NULL)
        return;
    for (size_t i = 0; i < PT_TLS_CLIENT_SLOTS; i++)
        SSL_SESSION_free(d->slots[i].sess);
    pthread_mutex_destroy(&d->lock);
    free(d->sni);
    free(d);
}

static void register_indexes(void)
{
    server_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, server_data_free);
    client_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, client_data_free);
    peer_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* ---- settings shared by both sides ---------------------------------------------------------- */

/* parse_version: "v1.0".."v1.3" (NULL: <dflt>) into an OpenSSL version. */
static int parse_version(const char *v, int dflt, const char *what, int *out, char *err,
                         size_t errlen)
{
    static const struct { const char *name; int version; } versions[] = {
        { "v1.0", TLS1_VERSION }, { "v1.1", TLS1_1_VERSION },
        { "v1.2", TLS1_2_VERSION }, { "v1.3", TLS1_3_VERSION },
    };

    *out = dflt;
    if (v == NULL)
        return 0;
    for (size_t i = 0; i < PT_ARRAY_SIZE(versions); i++) {
        if (strcmp(v, versions[i].name) == 0) {
            *out = versions[i].version;
            return 0;
        }
    }
    snprintf(err, errlen, "%s: %s is not one of v1.0, v1.1, v1.2, v1.3", what, v);
    return -1;
}

static int set_versions(SSL_CTX *ctx, const struct pt_tls_settings *s, char *err, size_t errlen)
{
    int min, max;

    if (parse_version(s ? s->min_tls_version : NULL, TLS1_2_VERSION, "min_tls_version", &min,
                      err, errlen) < 0 ||
        parse_version(s ? s->max_tls_version : NULL, TLS1_3_VERSION, "max_tls_version", &max,
                      err, errlen) < 0)
        return -1;
    if (min > max) {
        snprintf(err, errlen, "min_tls_version %s is above max_tls_version %s",
                 s->min_tls_version ? s->min_tls_version : "v1.2",
                 s->max_tls_version ? s->max_tls_version : "v1.3");
        return -1;
    }
    if (min < TLS1_2_VERSION)
        SSL_CTX_set_security_level(ctx, 0); /* TLS 1.0 and 1.1 sign with SHA-1 */
    SSL_CTX_set_min_proto_version(ctx, min);
    SSL_CTX_set_max_proto_version(ctx, max);
    return 0;
}

/* join: appends ":" <name> (<n> bytes) to the malloc'ed string *<dst>. */
static void join(char **dst, const char *name, size_t n)
{
    size_t len = *dst ? strlen(*dst) : 0;

    *dst = pt_xrealloc(*dst, len + n + 2);
    if (len > 0)
        (*dst)[len++] = ':';
    memcpy(*dst + len, name, n);
    (*dst)[len + n] = '\0';
}

/* add_cipher: checks one cipher name alone and appends it to the TLS 1.2 or 1.3 list. */
static int add_cipher(SSL_CTX *ctx, const char *name, size_t n, char **c12, char **c13,
                      char *err, size_t errlen)
{
    char one[128];
    bool v13;
    int ok;

    snprintf(one, sizeof(one), "%.*s", (int)n, name);
    v13 = strstr(one, "TLS_") != NULL;
    ok = v13 ? SSL_CTX_set_ciphersuites(ctx, one) : SSL_CTX_set_cipher_list(ctx, one);
    ERR_clear_error();
    if (!ok || n >= sizeof(one)) {
        snprintf(err, errlen, "cipher_suites: unknown cipher %s", one);
        return -1;
    }
    join(v13 ? c13 : c12, one, strlen(one));
    return 0;
}

/* build_ciphers: splits cipher_suites into TLS 1.2 ciphers and TLS 1.3 suites. BoringSSL's
 * equal-preference groups "[A|B]" (valid in Envoy) become "A:B". */
static int build_ciphers(SSL_CTX *ctx, const struct pt_tls_settings *s, char **c12, char **c13,
                         char *err, size_t errlen)
{
    for (size_t i = 0; s != NULL && i < s->ncipher_suites; i++) {
        const char *p = s->cipher_suites[i];
        while (*p != '\0') {
            p += strspn(p, "[]| \t");
            size_t n = strcspn(p, "[]| \t");
            if (n > 0 && add_cipher(ctx, p, n, c12, c13, err, errlen) < 0)
                return -1;
            p += n;
        }
    }
    if (*c12 == NULL)
        *c12 = pt_xstrdup(OSSL_default_cipher_list());
    if (*c13 == NULL)
        *c13 = pt_xstrdup(OSSL_default_ciphersuites());
    return 0;
}

/* set_params: versions, ciphers and curves. The effective strings are kept in <sd> (servers)
 * for SNI switching. */
static int set_params(SSL_CTX *ctx, const struct pt_tls_settings *s, struct server_data *sd,
                      char *err, size_t errlen)
{
    char *c12 = NULL, *c13 = NULL, *groups = NULL;
    int rc = -1;

    if (set_versions(ctx, s, err, errlen) < 0 ||
        build_ciphers(ctx, s, &c12, &c13, err, errlen) < 0)
        goto out;
    for (size_t i = 0; s != NULL && i < s->necdh_curves; i++)
        join(&groups, s->ecdh_curves[i], strlen(s->ecdh_curves[i]));
    if (groups == NULL)
        groups = pt_xstrdup(PT_TLS_DEFAULT_GROUPS);
    if (!SSL_CTX_set_cipher_list(ctx, c12) || !SSL_CTX_set_ciphersuites(ctx, c13))
        snprintf(err, errlen, "cipher_suites: no usable cipher");
    else if (!SSL_CTX_set1_groups_list(ctx, groups))
        snprintf(err, errlen, "ecdh_curves: unknown curve in %s", groups);
    else
        rc = 0;
    ERR_clear_error();
    if (rc == 0 && sd != NULL) {
        sd->cipher_list = c12, sd->ciphersuites = c13, sd->groups = groups;
        return 0;
    }
out:
    free(c12);
    free(c13);
    free(groups);
    return rc;
}

/* alpn_wire: "a, b" into the length-prefixed form; NULL list gives <dflt> (NULL: none). */
static int alpn_wire(const char *list, const char *dflt, unsigned char **out, size_t *outlen,
                     char *err, size_t errlen)
{
    const char *p = list ? list : dflt;
    unsigned char *w;
    size_t n = 0;

    *out = NULL, *outlen = 0;
    if (p == NULL)
        return 0;
    w = pt_xmalloc(strlen(p) + 1);
    while (*p != '\0') {
        p += strspn(p, ", \t");
        size_t len = strcspn(p, ", \t");
        if (len > 255) {
            snprintf(err, errlen, "alpn_protocols: a protocol name is longer than 255 bytes");
            free(w);
            return -1;
        }
        if (len > 0) {
            w[n++] = (unsigned char)len;
            memcpy(w + n, p, len);
            n += len;
        }
        p += len;
    }
    if (n == 0) {
        snprintf(err, errlen, "alpn_protocols: no protocol in \"%s\"", list);
        free(w);
        return -1;
    }
    *out = w, *outlen = n;
    return 0;
}

static int use_keypair(SSL_CTX *ctx, const struct pt_tls__keypair *kp, char *err,
                       size_t errlen)
{
    if (SSL_CTX_use_certificate(ctx, kp->cert) == 1 && SSL_CTX_use_PrivateKey(ctx, kp->key) == 1 &&
        (kp->chain == NULL || SSL_CTX_set1_chain(ctx, kp->chain) == 1) &&
        SSL_CTX_check_private_key(ctx) == 1)
        return 0;
    const char *why = ERR_reason_error_string(ERR_peek_error());
    snprintf(err, errlen, "certificate not usable: %s", why ? why : "unknown error");
    ERR_clear_error();
    return -1;
}

/* trust: adds <cas> to the context's verification store. */
static void trust(SSL_CTX *ctx, STACK_OF(X509) *cas)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);

    for (int i = 0; i < sk_X509_num(cas); i++)
        X509_STORE_add_cert(store, sk_X509_value(cas, i));
    ERR_clear_error(); /* a CA listed twice */
}

static SSL_CTX *new_ctx(bool server, char *err, size_t errlen)
{
    SSL_CTX *ctx;

    pthread_once(&idx_once, register_indexes);
    ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "cannot create an OpenSSL context");
        ERR_clear_error();
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (server) {
        SSL_CTX_set_ex_data(ctx, server_idx, pt_xcalloc(1, sizeof(struct server_data)));
    } else {
        struct client_data *d = pt_xcalloc(1, sizeof(*d));
        pthread_mutex_init(&d->lock, NULL);
        SSL_CTX_set_ex_data(ctx, client_idx, d);
    }
    return ctx;
}

static bool refuse_crl(const struct pt_tls_settings *s, char *err, size_t errlen)
{
    if (s == NULL || (s->crl_secret == NULL && s->crl_file == NULL))
        return false;
    snprintf(err, errlen, "%s: certificate revocation lists are not supported yet",
             s->crl_secret ? "crl_secret" : "crl_file");
    return true;
}

time_t pt_tls_ctx_not_after(const SSL_CTX *ctx)
{
    STACK_OF(X509) *chain = NULL;
    time_t min = pt_tls_cert_not_after(SSL_CTX_get0_certificate(ctx));

    SSL_CTX_get0_chain_certs((SSL_CTX *)ctx, &chain);
    for (int i = 0; min != 0 && i < sk_X509_num(chain); i++) {
        time_t t = pt_tls_cert_not_after(sk_X509_value(chain, i));
        if (t != 0 && t < min)
            min = t;
    }
    return min;
}

/* ---- termination ---------------------------------------------------------------------------- */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    const struct server_data *d = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), server_idx);
    unsigned char *sel = NULL, sellen = 0;

    if (d == NULL || d->alpn == NULL ||
        SSL_select_next_proto(&sel, &sellen, d->alpn, (unsigned int)d->alpn_len, in, inlen) !=
            OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel, *outlen = sellen;
    return SSL_TLSEXT_ERR_OK;
}

/* server_verify: client certificates, when a CA is given. <cas> receives the CAs. */
static int server_verify(SSL_CTX *ctx, const struct pt_tls_settings *s,
                         const struct pt_resources *r, const char *ns, STACK_OF(X509) **cas,
                         char *err, size_t errlen)
{
    int rc = s ? pt_tls__load_ca(s, r, ns, cas, err, errlen) : 0;
    STACK_OF(X509_NAME) *names;

    if (rc <= 0) {
        if (rc == 0 && s != NULL && s->cert_required) {
            snprintf(err, errlen, "cert_required needs ca_secret or cacert_chain_file");
            return -1;
        }
        return rc;
    }
    trust(ctx, *cas);
    names = sk_X509_NAME_new_null();
    for (int i = 0; names != NULL && i < sk_X509_num(*cas); i++)
        sk_X509_NAME_push(names, X509_NAME_dup(X509_get_subject_name(sk_X509_value(*cas, i))));
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (s->cert_required ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                       NULL);
    return 0;
}

static void digest_cert(EVP_MD_CTX *md, const X509 *cert)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (cert != NULL && X509_digest(cert, EVP_sha256(), d, &n) == 1)
        EVP_DigestUpdate(md, d, n);
}

/* server_sessions: stateless tickets only, with a session id context that names the
 * certificate and the client-certificate policy: a ticket from one Host never resumes on
 * another that has a different certificate or stricter client verification. */
static void server_sessions(SSL_CTX *ctx, const struct pt_tls__keypair *kp,
                            STACK_OF(X509) *cas)
{
    unsigned char sid[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int mode = SSL_CTX_get_verify_mode(ctx);
    EVP_MD_CTX *md = EVP_MD_CTX_new();

    if (md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
        digest_cert(md, kp->cert);
        EVP_DigestUpdate(md, &mode, sizeof(mode));
        for (int i = 0; i < sk_X509_num(cas); i++)
            digest_cert(md, sk_X509_value(cas, i));
        EVP_DigestFinal_ex(md, sid, &n);
    }
    EVP_MD_CTX_free(md);
    if (n > SSL_MAX_SID_CTX_LENGTH)
        n = SSL_MAX_SID_CTX_LENGTH;
    SSL_CTX_set_session_id_context(ctx, n ? sid : (const unsigned char *)"portico", n ? n : 7);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_timeout(ctx, PT_TLS_SESSION_TIMEOUT);
    SSL_CTX_set_num_tickets(ctx, 1);
    pt_tls__ticket_setup(ctx);
}

/* describe: what pt_tls_material reports about <kp>. */
static void describe(struct pt_tls_material *m, const struct pt_tls__keypair *kp,
                     const char *source, bool self_signed)
{
    BIO *b = BIO_new(BIO_s_mem());
    int n;

    m->not_after = pt_tls_cert_not_after(kp->cert);
    for (int i = 0; i < sk_X509_num(kp->chain); i++) {
        time_t t = pt_tls_cert_not_after(sk_X509_value(kp->chain, i));
        if (t != 0 && t < m->not_after)
            m->not_after = t;
    }
    pt_tls__serial_hex(kp->cert, m->serial, sizeof(m->serial));
    if (b != NULL && X509_NAME_print_ex(b, X509_get_subject_name(kp->cert), 0, XN_FLAG_RFC2253) >= 0 &&
        (n = BIO_read(b, m->subject, sizeof(m->subject) - 1)) > 0)
        m->subject[n] = '\0';
    BIO_free(b);
    snprintf(m->source, sizeof(m->source), "%s", source);
    m->self_signed = self_signed;
}

/* server_keypair: the certificate of <s>, or the self-signed one for NULL. */
static int server_keypair(const struct pt_tls_settings *s, const struct pt_resources *r,
                          const char *ns, struct pt_tls__keypair *kp, char *source,
                          size_t sourcelen, char *err, size_t errlen)
{
    int rc;

    if (s == NULL) {
        snprintf(source, sourcelen, "self-signed");
        if (pt_tls_selfsigned(&kp->key, &kp->cert, NULL) == 0)
            return 0;
        snprintf(err, errlen, "cannot generate the self-signed certificate");
        return -1;
    }
    if (refuse_crl(s, err, errlen) ||
        (rc = pt_tls__load_keypair(s, r, ns, kp, source, sourcelen, err, errlen)) < 0)
        return -1;
    if (rc == 0) {
        snprintf(err, errlen, "no certificate: set secret, or cert_chain_file and private_key_file");
        return -1;
    }
    return 0;
}

SSL_CTX *pt_tls_server_ctx_new(const struct pt_tls_settings *s, const struct pt_resources *r,
                               const char *ns, struct pt_tls_material *m, char *err,
                               size_t errlen)
{
    struct pt_tls__keypair kp = { 0 };
    STACK_OF(X509) *cas = NULL;
    char source[sizeof(m->source)];
    SSL_CTX *ctx = NULL;
    struct server_data *sd;

    if (m != NULL)
        *m = (struct pt_tls_material){ 0 };
    if (server_keypair(s, r, ns, &kp, source, sizeof(source), err, errlen) < 0)
        return NULL;
    if ((ctx = new_ctx(true, err, errlen)) == NULL)
        goto out;
    sd = SSL_CTX_get_ex_data(ctx, server_idx);
    if (set_params(ctx, s, sd, err, errlen) < 0 || use_keypair(ctx, &kp, err, errlen) < 0 ||
        server_verify(ctx, s, r, ns, &cas, err, errlen) < 0 ||
        alpn_wire(s ? s->alpn_protocols : NULL, PT_TLS_DEFAULT_ALPN, &sd->alpn, &sd->alpn_len,
                  err, errlen) < 0) {
        SSL_CTX_free(ctx);
        ctx = NULL;
        goto out;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    server_sessions(ctx, &kp, cas);
    if (m != NULL)
        describe(m, &kp, source, s == NULL);
out:
    pt_tls__keypair_clear(&kp);
    sk_X509_pop_free(cas, X509_free);
    return ctx;
}

/* changed: whether two optional strings differ. */
static bool changed(const char *a, const char *b)
{
    return a == NULL || b == NULL || strcmp(a, b) != 0;
}

void pt_tls__sni_switch(SSL *ssl, SSL_CTX *ctx)
{
    SSL_CTX *old = SSL_get_SSL_CTX(ssl);
    const struct server_data *d = SSL_CTX_get_ex_data(ctx, server_idx);
    const struct server_data *od = SSL_CTX_get_ex_data(old, server_idx);
    STACK_OF(X509_NAME) *names = SSL_CTX_get_client_CA_list(ctx);

    if (old == ctx || d == NULL)
        return;
    SSL_set_SSL_CTX(ssl, ctx);
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
    SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx));
    SSL_set_min_proto_version(ssl, SSL_CTX_get_min_proto_version(ctx));
    SSL_set_max_proto_version(ssl, SSL_CTX_get_max_proto_version(ctx));
    SSL_set_security_level(ssl, SSL_CTX_get_security_level(ctx));
    if (od == NULL || changed(od->cipher_list, d->cipher_list))
        SSL_set_cipher_list(ssl, d->cipher_list);
    if (od == NULL || changed(od->ciphersuites, d->ciphersuites))
        SSL_set_ciphersuites(ssl, d->ciphersuites);
    if (od == NULL || changed(od->groups, d->groups))
        SSL_set1_groups_list(ssl, d->groups);
    if (names != NULL || SSL_get_client_CA_list(ssl) != NULL)
        SSL_set_client_CA_list(ssl, names ? SSL_dup_CA_list(names) : NULL);
    ERR_clear_error();
}

/* ---- origination ---------------------------------------------------------------------------- */

static uintptr_t peer_hash(const char *peer)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */

    for (; *peer != '\0'; peer++)
        h = (h ^ (unsigned char)*peer) * 1099511628211ull;
    return (uintptr_t)h ? (uintptr_t)h : 1;
}

/* save_session: keeps a copy of <sess> as the newest session of the connection's upstream. A
 * copy, because OpenSSL marks a connection's own session not resumable when the connection is
 * freed without SSL_shutdown (an upstream closed mid-response, an idle timeout), which says
 * nothing about the ticket. */
static void save_session(const SSL *ssl, SSL_SESSION *sess)
{
    struct client_data *d = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), client_idx);
    uintptr_t peer = (uintptr_t)SSL_get_ex_data(ssl, peer_idx);
    SSL_SESSION *copy, *old;

    if (d == NULL || peer == 0 || sess == NULL || (copy = SSL_SESSION_dup(sess)) == NULL)
        return;
    struct client_slot *slot = &d->slots[peer % PT_TLS_CLIENT_SLOTS];
    pthread_mutex_lock(&d->lock);
    old = slot->sess;
    slot->peer = peer;
    slot->sess = copy;
    pthread_mutex_unlock(&d->lock);
    SSL_SESSION_free(old);
}

/* client_new_session: a new session or TLS 1.3 ticket. Returns 0: OpenSSL keeps its reference. */
static int client_new_session(SSL *ssl, SSL_SESSION *sess)
{
    save_session(ssl, sess);
    return 0;
}

/* client_info: OpenSSL does not report a TLS 1.2 ticket renewed on resumption as a new session,
 * so a resumed TLS 1.2 connection saves its session at the end of the handshake. */
static void client_info(const SSL *ssl, int where, int ret)
{
    if ((where & SSL_CB_HANDSHAKE_DONE) && SSL_session_reused(ssl) &&
        SSL_version(ssl) < TLS1_3_VERSION)
        save_session(ssl, SSL_get0_session(ssl));
}

SSL *pt_tls_client_ssl_new(SSL_CTX *ctx, const char *peer)
{
    struct client_data *d = SSL_CTX_get_ex_data(ctx, client_idx);
    SSL *ssl = SSL_new(ctx);
    SSL_SESSION *sess = NULL;

    if (ssl == NULL || d == NULL)
        return ssl;
    SSL_set_connect_state(ssl);
    if (d->sni != NULL && !SSL_set_tlsext_host_name(ssl, d->sni))
        goto fail;
    if (peer == NULL)
        return ssl;
    uintptr_t h = peer_hash(peer);
    if (!SSL_set_ex_data(ssl, peer_idx, (void *)h))
        goto fail;
    struct client_slot *slot = &d->slots[h % PT_TLS_CLIENT_SLOTS];
    pthread_mutex_lock(&d->lock); /* a copy: this connection may end up marking it unusable */
    if (slot->peer == h && slot->sess != NULL && SSL_SESSION_is_resumable(slot->sess))
        sess = SSL_SESSION_dup(slot->sess);
    pthread_mutex_unlock(&d->lock);
    if (sess != NULL)
        SSL_set_session(ssl, sess);
    SSL_SESSION_free(sess);
    return ssl;
fail:
    ERR_clear_error();
    SSL_free(ssl);
    return NULL;
}

const char *pt_tls_client_ctx_sni(const SSL_CTX *ctx)
{
    const struct client_data *d = SSL_CTX_get_ex_data(ctx, client_idx);

    return d ? d->sni : NULL;
}

/* client_setup: everything after the certificate; <cas> (may be NULL) turns verification on. */
static int client_setup(SSL_CTX *ctx, const struct pt_tls_settings *s, STACK_OF(X509) *cas,
                        char *err, size_t errlen)
{
    struct client_data *d = SSL_CTX_get_ex_data(ctx, client_idx);
    unsigned char *alpn = NULL;
    size_t alpn_len = 0;

    if (set_params(ctx, s, NULL, err, errlen) < 0 ||
        alpn_wire(s ? s->alpn_protocols : NULL, NULL, &alpn, &alpn_len, err, errlen) < 0)
        return -1;
    if (alpn != NULL && SSL_CTX_set_alpn_protos(ctx, alpn, (unsigned int)alpn_len) != 0) {
        snprintf(err, errlen, "alpn_protocols: not accepted by OpenSSL");
        free(alpn);
        return -1;
    }
    free(alpn);
    if (cas != NULL) {
        trust(ctx, cas);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    d->sni = s && s->sni && *s->sni ? pt_xstrdup(s->sni) : NULL;
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, client_new_session);
    SSL_CTX_set_info_callback(ctx, client_info);
    return 0;
}

SSL_CTX *pt_tls_client_ctx_new(const struct pt_tls_settings *s, const struct pt_resources *r,
                               const char *ns, char *err, size_t errlen)
{
    struct pt_tls__keypair kp = { 0 };
    STACK_OF(X509) *cas = NULL;
    char source[320];
    SSL_CTX *ctx = NULL;

    if (refuse_crl(s, err, errlen))
        return NULL;
    if (s != NULL && (pt_tls__load_keypair(s, r, ns, &kp, source, sizeof(source), err, errlen) < 0 ||
                      pt_tls__load_ca(s, r, ns, &cas, err, errlen) < 0))
        goto out;
    if ((ctx = new_ctx(false, err, errlen)) == NULL)
        goto out;
    if ((kp.cert != NULL && use_keypair(ctx, &kp, err, errlen) < 0) ||
        client_setup(ctx, s, cas, err, errlen) < 0) {
        SSL_CTX_free(ctx);
        ctx = NULL;
    }
out:
    pt_tls__keypair_clear(&kp);
    sk_X509_pop_free(cas, X509_free);
    return ctx;
}

void pt_tls_shutdown(void)
{
    pt_tls__selfsigned_free_all();
}
