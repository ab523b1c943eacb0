/* GET requests to the Kubernetes API server with libcurl's multi interface on the control loop
 * (core/curlm.h). Connections are kept by the multi handle and reused (or multiplexed over
 * HTTP/2) across requests. This file knows HTTP and TLS settings, not Kubernetes;
 * sources/kubernetes.c drives it. */
#include "sources/kubehttp.h"
#include "sources/kubeconfig.h"

#include "core/common.h"
#include "core/curlm.h"
#include "core/log.h"
#include "core/loop.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PT_VERSION
#define PT_VERSION "0.1.0"
#endif

#define KH_CONNECT_TIMEOUT_MS 5000L

struct pt_kubehttp {
    const struct pt_kube_creds *creds;
    struct pt_curlm *curlm;
};

bool pt_kube_bytes_append(struct pt_kube_bytes *b, const char *p, size_t n, size_t max)
{
    if (n == 0)
        return true;
    if (n > max || b->len > max - n)
        return false;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *np;
        while (cap < b->len + n + 1)
            cap *= 2;
        if ((np = realloc(b->p, cap)) == NULL)
            return false;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return true;
}

void pt_kube_bytes_free(struct pt_kube_bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- requests ----------------------------------------------------------------------------- */

/* req_release: forgets the easy handle of <req> (already out of the multi handle or not). */
static void req_release(struct pt_kubehttp *c, struct pt_kubehttp_req *req)
{
    pt_curlm_remove(c->curlm, req->_easy);
    curl_easy_cleanup(req->_easy);
    curl_slist_free_all(req->_hdrs);
    free(req->_url);
    req->_easy = NULL;
    req->_hdrs = NULL;
    req->_url = NULL;
}

/* req_done: finishes a completed transfer and tells its owner. */
static void req_done(void *arg, CURL *easy, CURLcode rc)
{
    struct pt_kubehttp *c = arg;
    struct pt_kubehttp_req *req = NULL;
    char err[sizeof(req->_err)];
    const char *e = NULL;

    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&req);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &req->status);
    if (req->_aborted)
        e = "aborted";
    else if (rc != CURLE_OK)
        e = req->_err[0] ? req->_err : curl_easy_strerror(rc);
    if (e != NULL)
        snprintf(err, sizeof(err), "%s", e);
    req_release(c, req);
    req->on_done(req, e != NULL ? err : NULL);
}

/* ---- requests ------------------------------------------------------------------------------- */

static size_t on_write(char *p, size_t size, size_t nmemb, void *userp)
{
    struct pt_kubehttp_req *req = userp;
    size_t n = size * nmemb;

    curl_easy_getinfo(req->_easy, CURLINFO_RESPONSE_CODE, &req->status);
    if (!req->on_data(req, p, n)) {
        req->_aborted = true;
        return 0; /* CURLE_WRITE_ERROR ends the transfer */
    }
    return n;
}

/* on_header: the end of the response head (an empty line) is reported as on_data(NULL, 0),
 * so a watch is known to be up before its first event. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *userp)
{
    struct pt_kubehttp_req *req = userp;
    size_t n = size * nmemb;

    if (n > 2 || (n > 0 && p[0] != '\r' && p[0] != '\n'))
        return n;
    curl_easy_getinfo(req->_easy, CURLINFO_RESPONSE_CODE, &req->status);
    if (req->status >= 200 && !req->on_data(req, NULL, 0)) {
        req->_aborted = true;
        return 0;
    }
    return n;
}

static void set_blob(CURL *e, CURLoption opt, const char *p, size_t len)
{
    struct curl_blob b = {.data = (void *)p, .len = len, .flags = CURL_BLOB_COPY};
    curl_easy_setopt(e, opt, &b);
}

/* set_tls: the server's CA and our client certificate, as the kubeconfig says. */
static void set_tls(CURL *e, const struct pt_kube_creds *k)
{
    if (k->ca_pem != NULL)
        set_blob(e, CURLOPT_CAINFO_BLOB, k->ca_pem, k->ca_pem_len);
    else if (k->ca_file != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, k->ca_file);
    if (k->ca_pem != NULL || k->ca_file != NULL)
        curl_easy_setopt(e, CURLOPT_CAPATH, NULL); /* that CA only, as client-go */
    if (k->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (k->cert_pem != NULL)
        set_blob(e, CURLOPT_SSLCERT_BLOB, k->cert_pem, k->cert_pem_len);
    else if (k->cert_file != NULL)
        curl_easy_setopt(e, CURLOPT_SSLCERT, k->cert_file);
    if (k->key_pem != NULL)
        set_blob(e, CURLOPT_SSLKEY_BLOB, k->key_pem, k->key_pem_len);
    else if (k->key_file != NULL)
        curl_easy_setopt(e, CURLOPT_SSLKEY, k->key_file);
    if (k->cert_pem != NULL || k->cert_file != NULL)
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
}

/* set_headers: Accept, User-Agent and the bearer token (read now: tokens rotate). */
static int set_headers(CURL *e, struct pt_kubehttp_req *req, const struct pt_kube_creds *k)
{
    char *token = pt_kube_creds_token(k), *auth = NULL;
    const char *lines[3] = {"Accept: application/json", "User-Agent: portico/" PT_VERSION, NULL};
    int rc = 0;

    if (token != NULL && token[0] != '\0' && asprintf(&auth, "Authorization: Bearer %s", token) < 0)
        auth = NULL;
    lines[2] = auth;
    for (size_t i = 0; i < 3 && lines[i] != NULL; i++) {
        struct curl_slist *h = curl_slist_append(req->_hdrs, lines[i]);
        if (h == NULL) {
            rc = PT_NOMEM;
            break;
        }
        req->_hdrs = h;
    }
    if (auth != NULL)
        memset(auth, 0, strlen(auth));
    if (token != NULL)
        memset(token, 0, strlen(token));
    free(auth);
    free(token);
    if (k->username != NULL) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, k->username);
        curl_easy_setopt(e, CURLOPT_PASSWORD, k->password ? k->password : "");
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->_hdrs);
    return rc;
}

int pt_kubehttp_get(struct pt_kubehttp *c, struct pt_kubehttp_req *req, const char *path,
                    long timeout_ms)
{
    CURL *e;

    if (req->_easy != NULL)
        return PT_INVAL;
    req->status = 0;
    req->_aborted = false;
    req->_err[0] = '\0';
    if (asprintf(&req->_url, "%s%s", c->creds->server, path) < 0) {
        req->_url = NULL;
        return PT_NOMEM;
    }
    if ((e = req->_easy = curl_easy_init()) == NULL || set_headers(e, req, c->creds) != 0) {
        req_release(c, req);
        return PT_NOMEM;
    }
    curl_easy_setopt(e, CURLOPT_URL, req->_url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, req);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->_err);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, req);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");           /* never http_proxy from the environment */
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* the API server gzips large lists */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, KH_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    /* A watch can be silent for minutes: keepalive probes find a dead peer in about a minute. */
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 15L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 5L);
    set_tls(e, c->creds);
    if (pt_curlm_add(c->curlm, e) != 0) {
        req_release(c, req);
        return PT_NOMEM;
    }
    return 0;
}

void pt_kubehttp_cancel(struct pt_kubehttp *c, struct pt_kubehttp_req *req)
{
    if (req->_easy != NULL)
        req_release(c, req);
}

struct pt_kubehttp *pt_kubehttp_new(struct pt_loop *loop, const struct pt_kube_creds *creds)
{
    struct pt_kubehttp *c = calloc(1, sizeof(*c));

    if (c == NULL || (c->curlm = pt_curlm_new(loop, "kubernetes", req_done, c)) == NULL) {
        free(c);
        return NULL;
    }
    c->creds = creds;
    return c;
}

void pt_kubehttp_free(struct pt_kubehttp *c)
{
    if (c == NULL)
        return;
    pt_curlm_free(c->curlm);
    free(c);
}
