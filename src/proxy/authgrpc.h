/* The messages of a gRPC AuthService (envoy.service.auth.v3.Authorization/Check, proto/): the
 * CheckRequest built from a request as Envoy fills it, and the CheckResponse read into what
 * proxy/auth.c decides with. Internal to src/proxy/. */
#ifndef PT_PROXY_AUTHGRPC_H
#define PT_PROXY_AUTHGRPC_H

#include "proxy/call.h"
#include "http/reply-t.h"

/* What a CheckResponse says. */
struct pt_authgrpc_answer {
    bool ok;                    /* status OK: the request goes on (its edits are in the call) */
    int status;                 /* denied: the HTTP status (403 unless the answer gives one) */
    struct pt_header headers[PT_HTTP_REPLY_EXTRA_MAX]; /* denied: for the client */
    size_t nheaders;
    struct pt_str body;         /* denied: for the client */
};

/* pt_authgrpc_check: starts the Check call of <st> (body <body>, cut when <partial>); the
 * answer goes to pt_auth_grpc_done. NULL when it could not start; <*unbuilt> then says
 * whether the request itself could not be put in a CheckRequest (no memory for it). */
struct pt_call *pt_authgrpc_check(struct pt_stream *st, const struct pt_auth_config *ac, struct pt_str body,
                                  bool partial, bool *unbuilt);

/* pt_authgrpc_read: reads the answer of an ended Check call into <a> (an OK answer's header
 * changes become the call's edits). -1 when it is not a CheckResponse Portico can apply: the
 * check failed. */
int pt_authgrpc_read(struct pt_call *call, struct pt_authgrpc_answer *a);

/* pt_auth_grpc_done: the Check call ended (proxy/auth.c). */
void pt_auth_grpc_done(struct pt_stream *st, struct pt_call *call, int result);

#endif
