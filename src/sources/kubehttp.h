/* A small HTTPS GET client for the Kubernetes API on the control loop: libcurl's multi
 * interface driven by core/loop.c, with the credentials of sources/kubeconfig.h. Bodies are
 * delivered as they arrive, so a watch is an endless GET. Used by sources/kubernetes.c. */
#ifndef PT_SOURCES_KUBEHTTP_H
#define PT_SOURCES_KUBEHTTP_H

#include <stdbool.h>
#include <stddef.h>

struct pt_loop;
struct pt_kube_creds;
struct pt_kubehttp;
struct pt_kubehttp_req;
struct curl_slist;

/* Body bytes as they arrive; req->status holds the HTTP status. Called once with (NULL, 0)
 * when the response head is complete, before any body. Return false to abort the request
 * (on_done then follows with error "aborted"). */
typedef bool (*pt_kubehttp_data_cb)(struct pt_kubehttp_req *req, const char *p, size_t n);

/* The request ended: <error> is NULL when the whole response was received, else why not.
 * req->status is the HTTP status, or 0 when no response came. Called from the loop, never from
 * inside pt_kubehttp_get(); the request may be started again from here. */
typedef void (*pt_kubehttp_done_cb)(struct pt_kubehttp_req *req, const char *error);

/* One request, embedded by its owner. All-zero plus the two callbacks is a valid idle request. */
struct pt_kubehttp_req {
    pt_kubehttp_data_cb on_data;
    pt_kubehttp_done_cb on_done;
    long status;
    void *_easy;
    struct curl_slist *_hdrs;
    char *_url;
    bool _aborted;
    char _err[256];
};

/* A growable byte buffer with a ceiling; all-zero is empty. */
struct pt_kube_bytes {
    char *p;
    size_t len, cap;
};

/* pt_kubehttp_new: a client for the API server in <creds> (borrowed; must outlive the client).
 * Returns NULL when libcurl cannot start. */
struct pt_kubehttp *pt_kubehttp_new(struct pt_loop *loop, const struct pt_kube_creds *creds);

/* pt_kubehttp_free: frees the client; its owner has cancelled every request first. NULL is
 * allowed. */
void pt_kubehttp_free(struct pt_kubehttp *c);

/* pt_kubehttp_get: starts GET <server><path> (<path> carries the query, already escaped).
 * <timeout_ms> bounds the whole transfer (0: none). The token file is read again for each
 * request. Returns 0, or a negative PT_E* code (nothing started, no callback). <req> must be
 * idle. */
int pt_kubehttp_get(struct pt_kubehttp *c, struct pt_kubehttp_req *req, const char *path,
                    long timeout_ms);

/* pt_kubehttp_cancel: ends <req> without calling on_done. Not from inside its callbacks. */
void pt_kubehttp_cancel(struct pt_kubehttp *c, struct pt_kubehttp_req *req);

static inline bool pt_kubehttp_busy(const struct pt_kubehttp_req *req)
{
    return req->_easy != NULL;
}

/* pt_kube_bytes_append: appends <n> bytes (keeping a NUL after them). Returns false, appending
 * nothing, when the result would exceed <max> bytes or memory is short. */
bool pt_kube_bytes_append(struct pt_kube_bytes *b, const char *p, size_t n, size_t max);

/* pt_kube_bytes_free: releases the storage; <b> is empty again. */
void pt_kube_bytes_free(struct pt_kube_bytes *b);

#endif
