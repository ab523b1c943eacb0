/* Where the Kubernetes API server is and how to authenticate to it: the pod's service account,
 * or a kubeconfig file, as kubectl would find them. Used by sources/kubernetes.c at start-up;
 * sources/kubehttp.c turns the result into libcurl options. */
#ifndef PT_SOURCES_KUBECONFIG_H
#define PT_SOURCES_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* The service-account directory a pod gets (token, ca.crt, namespace). */
#define PT_KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* Connection settings. Every string is owned (malloc) or NULL; an all-zero struct is empty.
 * "_pem" members hold decoded *-data fields (PEM bytes, not NUL-terminated in general). */
struct pt_kube_creds {
    char *server;  /* "https://host:port", without a trailing slash */
    char *ca_file; /* certificate-authority, or the pod's ca.crt */
    char *ca_pem;  /* certificate-authority-data, decoded */
    size_t ca_pem_len;
    bool insecure;              /* insecure-skip-tls-verify: true */
    char *token;                /* a bearer token */
    char *token_file;           /* a bearer token read again for every request (tokens rotate) */
    char *cert_file, *key_file; /* client-certificate, client-key */
    char *cert_pem, *key_pem;   /* client-certificate-data, client-key-data, decoded */
    size_t cert_pem_len, key_pem_len;
    char *username, *password; /* basic authentication */
    char *origin;              /* "in-cluster (...)" or "kubeconfig PATH context NAME", for logs */
};

/* pt_kubeconfig_load: fills <c> the way kubectl finds its cluster:
 *   1. KUBECONFIG (a ':'-separated list of files, merged as kubectl does: the first file that
 *      sets current-context, and for each named cluster/user the first file that defines it);
 *   2. inside a pod (KUBERNETES_SERVICE_HOST set and a token in the service-account
 *      directory): https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT with the
 *      service-account token and ca.crt. PORTICO_SERVICEACCOUNT_DIR replaces PT_KUBE_SA_DIR
 *      (tests use it);
 *   3. ~/.kube/config.
 * From a kubeconfig: the current context's cluster (server, certificate-authority(-data),
 * insecure-skip-tls-verify) and user (token, tokenFile, client-certificate(-data),
 * client-key(-data), username/password). Relative paths are relative to the file that names
 * them. exec and auth-provider plugins are refused: Portico runs no helper programs.
 * Returns 0, or -1 with a one-line reason in <err> (and <c> empty). */
int pt_kubeconfig_load(struct pt_kube_creds *c, char *err, size_t errlen);

/* pt_kube_creds_token: the bearer token to send now, or NULL: token_file read again (trailing
 * whitespace cut) when set, else <token>. The result is malloc'd; the caller frees it. */
char *pt_kube_creds_token(const struct pt_kube_creds *c);

/* pt_kube_creds_free: frees every member; <c> is empty again. */
void pt_kube_creds_free(struct pt_kube_creds *c);

/* pt_kube__b64_decode: pt_b64_decode into a new NUL-terminated buffer of *<outlen> bytes, or
 * NULL when <s> is not base64 (or memory is short). Shared with tests. */
char *pt_kube__b64_decode(const char *s, size_t len, size_t *outlen);

#endif
