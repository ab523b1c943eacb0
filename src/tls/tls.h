/* The tls module: OpenSSL contexts for TLS termination (chosen by SNI) and origination, built
 * on the control thread when a configuration compiles; the certificates they load (Secrets,
 * files, the Istio certificate directory, a self-signed fallback); and Envoy-compatible error
 * texts. Contexts are reference-counted by OpenSSL and immutable once built, so a snapshot can
 * hand them to every worker; the only state shared at run time is the session-ticket key ring
 * (locked) and each client context's session cache (locked).
 *
 * The contexts own some OpenSSL callbacks (ALPN selection, ticket keys, new-session and info
 * callbacks on clients, ClientHello and servername on an attached listener context): callers
 * must not replace them. Every context ignores a missing close_notify
 * (SSL_OP_IGNORE_UNEXPECTED_EOF: HTTP framing tells a truncated body, as in Envoy) and refuses
 * renegotiation.
 *
 * Files: context.c (server and client contexts), certs.c (loading and checking certificates),
 * tickets.c (ticket keys), sni.c (SNI map), istio.c (Istio directory), selfsigned.c (fallback),
 * error.c (TLS_error text). */
#ifndef PT_TLS_TLS_H
#define PT_TLS_TLS_H

#include "model/resource-t.h"
#include "core/common.h"
#include "tls/tls-t.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

struct pt_loop;

/* ---- contexts (context.c) ------------------------------------------------------------------- */

/* pt_tls_server_ctx_new: a termination context for a TLSContext or a Host's inline tls, or the
 * self-signed fallback when <s> is NULL. <r> holds the Secrets; a `secret` of "name.ns" names
 * another namespace unless s->secret_namespacing is false, otherwise it is looked up in <ns>
 * (the namespace of the TLSContext or Host). The certificate comes from `secret` (tls.crt and
 * tls.key; cert-chain.pem and key.pem are also read) or from cert_chain_file and
 * private_key_file; the key must match the certificate. Settings: min/max_tls_version
 * ("v1.0".."v1.3"; default TLS 1.2..1.3; a minimum below 1.2 also lowers OpenSSL's security
 * level to 0, as those versions need SHA-1), cipher_suites (names with "TLS_" are TLS 1.3
 * suites, the others TLS 1.2 ciphers; BoringSSL's "[A|B]" groups are accepted; each name is
 * checked, an unknown one is an error; default: OpenSSL's lists), ecdh_curves (default
 * X25519:P-256:P-384),
 * alpn_protocols (comma-separated, server preference; default "http/1.1"; no overlap means no
 * ALPN, as Envoy), ca_secret (its ca.crt, else tls.crt as Emissary reads it) or
 * cacert_chain_file (client certificates are then requested and verified against it) and
 * cert_required (a client certificate is then mandatory; needs a CA). Sessions
 * resume with stateless tickets only (no server cache), encrypted with the process-wide key ring
 * of tickets.c; each context has its own session id context, so a ticket never resumes on a
 * Host with another certificate or client-certificate policy. crl_secret and crl_file are
 * refused (not supported yet) rather than ignored. <m> (may be NULL) receives the certificate's
 * description. Returns a new context (SSL_CTX_free it), or NULL with a one-line message in
 * <err> (<errlen> bytes). Control thread only. */
SSL_CTX *pt_tls_server_ctx_new(const struct pt_tls_settings *s, const struct pt_resources *r,
                               const char *ns, struct pt_tls_material *m, char *err,
                               size_t errlen);

/* pt_tls_client_ctx_new: an origination context for a Mapping's `tls:` context, or the null
 * context (no settings, as Emissary's `tls: true` or an https:// service) when <s> is NULL. A
 * client certificate is loaded like pt_tls_server_ctx_new's, when given. The upstream is
 * verified only when ca_secret or cacert_chain_file is given (chain only, no name check, as
 * Envoy without match_subject_alt_names); otherwise nothing is verified, as Emissary. ALPN
 * offers the comma-separated alpn_protocols (e.g. "istio"), nothing by default. Versions
 * default to TLS 1.2..1.3 (Envoy's client maximum is 1.2; Portico allows 1.3). Sessions are
 * cached per upstream by pt_tls_client_ssl_new. Returns a new context or NULL with <err>. */
SSL_CTX *pt_tls_client_ctx_new(const struct pt_tls_settings *s, const struct pt_resources *r,
                               const char *ns, char *err, size_t errlen);

/* pt_tls_client_ctx_sni: the server name a client context sends: the TLSContext's `sni`, or
 * NULL when it has none (Emissary sends no SNI then). Valid while <ctx> lives. */
const char *pt_tls_client_ctx_sni(const SSL_CTX *ctx);

/* pt_tls_client_ssl_new: a client connection object on <ctx> (connect state, SNI set), with
 * the last session saved for <peer> (any stable key for the upstream, e.g. "10.0.0.7:443")
 * offered for resumption; new sessions the server sends are saved under <peer> (NULL: no
 * resumption). <peer> is not kept. Returns NULL when OpenSSL cannot allocate. Any thread. */
SSL *pt_tls_client_ssl_new(SSL_CTX *ctx, const char *peer);

/* pt_tls_ctx_not_after: the earliest notAfter of the certificate and chain of <ctx>, or 0 when
 * it has no certificate. For expiry metrics and diag. */
time_t pt_tls_ctx_not_after(const SSL_CTX *ctx);

/* ---- SNI (sni.c) ---------------------------------------------------------------------------- */

/* pt_tls_sni_map_new: an empty map. Aborts when memory is exhausted (config code). */
struct pt_tls_sni_map *pt_tls_sni_map_new(void);

/* pt_tls_sni_map_add: maps <hostname> to <ctx> (the map takes a reference). <hostname> is a
 * Host's hostname: exact ("a.example.com"), a suffix glob ("*.example.com", also "*example.com"),
 * a prefix glob ("a.example.*") or "*"; case does not matter and a ":port" is dropped. Returns
 * 0, or PT_INVAL for an empty or malformed name (a '*' in the middle) or one already mapped
 * (the first stays). */
int pt_tls_sni_map_add(struct pt_tls_sni_map *map, const char *hostname, SSL_CTX *ctx);

/* pt_tls_sni_map_lookup: the context for the server name <name>: an exact match, else the
 * longest matching suffix glob, else the longest matching prefix glob, else "*", else NULL.
 * Case-insensitive; a trailing '.' is ignored. A NULL <name> (no SNI) gives the "*" context, as
 * Envoy's filter chain without server_names. Any thread (the map is read-only once built). */
SSL_CTX *pt_tls_sni_map_lookup(const struct pt_tls_sni_map *map, const char *name);

/* pt_tls_sni_map_attach: makes <listener_ctx> choose its per-connection context from <map>:
 * installs pt_tls_sni_cb as its servername callback and an early ClientHello callback that
 * switches before the protocol version, session ticket and ciphers are chosen, so each Host's
 * versions, ciphers, ALPN, client-certificate policy and tickets apply. Without a match the
 * connection keeps <listener_ctx>. <listener_ctx> must be this listener's own context (not one
 * added to a map, since the callbacks are per context) and <map> must outlive it. */
void pt_tls_sni_map_attach(struct pt_tls_sni_map *map, SSL_CTX *listener_ctx);

/* pt_tls_sni_cb: the servername callback (SSL_CTX_set_tlsext_servername_callback, <arg> the
 * map): switches <ssl> to the mapped context (SSL_set_SSL_CTX plus the per-connection settings
 * it does not copy: verify mode, versions, ciphers, curves, client CA names). Returns
 * SSL_TLSEXT_ERR_OK when the client's name matched, else SSL_TLSEXT_ERR_NOACK (the handshake
 * goes on, with the "*" context when there is one, else the current one). Used alone, it
 * switches too late for the versions and the session ticket: use pt_tls_sni_map_attach. */
int pt_tls_sni_cb(SSL *ssl, int *al, void *arg);

/* pt_tls_sni_map_free: drops the map's context references and frees it. NULL is allowed. */
void pt_tls_sni_map_free(struct pt_tls_sni_map *map);

/* ---- session tickets (tickets.c) ------------------------------------------------------------ */

/* pt_tls_ticket_rotate: a new random ticket key becomes current; the previous two still
 * decrypt (tickets they sealed are accepted and renewed). Keys also rotate by themselves every
 * hour. Any thread. */
void pt_tls_ticket_rotate(void);

/* ---- certificates (certs.c, selfsigned.c) --------------------------------------------------- */

/* pt_tls_cert_not_after: notAfter of <cert> as a time_t (UTC), or 0 when it cannot be read. */
time_t pt_tls_cert_not_after(const X509 *cert);

/* pt_tls_find_secret: the Secret a TLS setting names: <ref> is "name" or "name.namespace" (split
 * on the last '.' when <namespacing>), looked up in <ns> otherwise. NULL when absent. */
const struct pt_secret_res *pt_tls_find_secret(const struct pt_resources *r, const char *ref,
                                               bool namespacing, const char *ns);

/* pt_tls_selfsigned: an ECDSA P-256 certificate for CN=<cn> (NULL: "localhost") with SAN
 * DNS:localhost (and DNS:<cn>), valid for a year from an hour ago, signed by itself. Generated
 * once per process for each <cn> and then cached; <*key> and <*cert> are new references for the
 * caller to free. Returns 0 or PT_NOMEM (OpenSSL failure). Any thread. */
int pt_tls_selfsigned(EVP_PKEY **key, X509 **cert, const char *cn);

/* ---- errors (error.c) ----------------------------------------------------------------------- */

/* pt_tls_error_string: drains this thread's OpenSSL error queue into Envoy's transport failure
 * text, "TLS_error:|<code>:<lib>:<func>:<reason>|...:TLS_error_end" ("" when the queue is
 * empty). Envoy runs on BoringSSL, so for the texts users alert on this writes BoringSSL's
 * numbers and names (CERTIFICATE_VERIFY_FAILED is 268435581), "OPENSSL_internal" as the
 * function, and reasons upper-cased with '_' (BoringSSL's style); other errors keep OpenSSL's
 * packed code. System errors read "<33554432+errno>:system library:OPENSSL_internal:<strerror>".
 * The ":<cert detail>" Envoy may add after CERTIFICATE_VERIFY_FAILED is not produced. Always
 * NUL-terminates <out> (<n> > 0) and keeps the text well-formed: errors that do not fit whole
 * (with the closing ":TLS_error_end") are left out, and with no room for one "" is written.
 * PT_TLS_ERROR_MAX is the <n> the data plane uses (and what its replies leave room for). */
#define PT_TLS_ERROR_MAX 1024
void pt_tls_error_string(char *out, size_t n);

/* ---- Istio certificate directory (istio.c) -------------------------------------------------- */

/* pt_istio_certs_start: watches <dir> (AMBASSADOR_ISTIO_SECRET_DIR) on <loop> for Istio's
 * key.pem, cert-chain.pem and root-cert.pem. Loads what is there before returning (no callback
 * for that one; an empty or missing directory just means no pair yet). After each burst of
 * changes (debounced 100 ms) the files are read again; a pair is taken only when the key and
 * the whole chain parse, the key matches the first certificate and root-cert.pem (optional)
 * parses; otherwise the previous pair stays, the reason is kept and the load is retried every
 * second, 10 times at most, and again on the next change. Each new, different good pair calls
 * <on_change>(<arg>) on <loop>'s thread. One watcher per process. Returns 0, PT_INVAL when
 * already started, or PT_IO when inotify is unavailable. */
int pt_istio_certs_start(struct pt_loop *loop, const char *dir, void (*on_change)(void *),
                         void *arg);

/* pt_istio_certs_get: copies the current good pair into <out> (which the caller frees with
 * pt_istio_pair_free) and returns true; false when there is none yet (then only out->error is
 * set, "" when nothing was tried). out->error is the last refusal even when a pair is returned. */
bool pt_istio_certs_get(struct pt_istio_pair *out);

/* pt_istio_pair_free: frees the strings of <p>; <p> is an empty pair again. */
void pt_istio_pair_free(struct pt_istio_pair *p);

/* pt_istio_inject_secret: adds to <r> the Secret `istio-certs` in <ns> (AMBASSADOR_NAMESPACE),
 * type kubernetes.io/tls, tls.crt = cert-chain.pem, tls.key = key.pem and, when present,
 * ca.crt = root-cert.pem; a Secret of that name and namespace already in <r> is replaced (the
 * directory wins, as in Emissary). Nothing is added while there is no good pair. Everything is
 * copied into r's arena. Returns 1 when the Secret was added, 0 when there was no pair,
 * PT_INVAL when <r> has no arena. Call it before compiling <r>. */
int pt_istio_inject_secret(struct pt_resources *r, const char *ns);

/* pt_istio_certs_stop: stops watching and forgets the pair (tests, shutdown). */
void pt_istio_certs_stop(void);

/* ---- module --------------------------------------------------------------------------------- */

/* pt_tls_shutdown: frees the process-wide caches (self-signed certificates); for leak checks at
 * exit. No context built earlier may be used afterwards. */
void pt_tls_shutdown(void);

/* ---- internal, shared by the files of this module ------------------------------------------- */

/* A certificate with its chain and key. All-zero is empty. */
struct pt_tls__keypair {
    X509 *cert;
    STACK_OF(X509) *chain; /* intermediates after the leaf; may be NULL */
    EVP_PKEY *key;
};

int pt_tls__parse_certs(const char *pem, size_t len, X509 **leaf, STACK_OF(X509) **rest,
                        char *err, size_t errlen);
int pt_tls__parse_key(const char *pem, size_t len, EVP_PKEY **key, char *err, size_t errlen);
int pt_tls__load_keypair(const struct pt_tls_settings *s, const struct pt_resources *r,
                         const char *ns, struct pt_tls__keypair *kp, char *source,
                         size_t sourcelen, char *err, size_t errlen);
int pt_tls__load_ca(const struct pt_tls_settings *s, const struct pt_resources *r, const char *ns,
                    STACK_OF(X509) **cas, char *err, size_t errlen);
void pt_tls__keypair_clear(struct pt_tls__keypair *kp);
void pt_tls__serial_hex(const X509 *cert, char *out, size_t n);
void pt_tls__ticket_setup(SSL_CTX *ctx);
void pt_tls__ticket_set_interval(uint64_t ms); /* tests: 0 restores the hour */
int pt_tls__add_secret(struct pt_resources *r, const char *name, const char *ns,
                       const char *origin, bool replace, const char *const *keys,
                       const char *const *vals, const size_t *lens, size_t n);
void pt_tls__selfsigned_free_all(void);
void pt_tls__sni_switch(SSL *ssl, SSL_CTX *ctx);

#endif
