/* Mirrors (Mapping shadow: true, Envoy's request_mirror_policies): a copy of a routed request
 * sent fire-and-forget to the shadow Mapping's cluster, its Host suffixed "-shadow", its
 * response read and dropped. A mirror never answers, delays or fails the request it copies:
 * what the shadow cannot take as fast as the primary drops the mirror. Internal to src/proxy/:
 * session.c starts it with the primary's head, stream.c hands it the body and tells it when
 * the request ends. */
#ifndef PT_PROXY_SHADOW_H
#define PT_PROXY_SHADOW_H

#include <sys/uio.h>

#include "proxy/proxy.h"

#define PT_SHADOW_PENDING_MAX (256 * 1024) /* request bytes a mirror may hold for its socket
                                            * (or its connect); more drops the mirror */
#define PT_SHADOW_TIMEOUT_MS 300000        /* a mirror's bound when its route has no timeout */

/* pt_shadow_start: the request of <st>, routed with shadow action <sa>, is mirrored when the
 * draw of sa->shadow_percent says so: the upstream head <head> (<hlen> bytes, as session.c
 * wrote it for the primary; copied) goes to an endpoint of sa->cluster with its Host suffixed
 * "-shadow" (before a port). Sets PT_SF_SHADOWED, and st->shadow to the mirror or NULL. Never
 * fails the request: a mirror that cannot start is counted and forgotten. CONNECT, upgrades and
 * gRPC-Web translations are not mirrored. Called once per request, on its first try. */
void pt_shadow_start(struct pt_stream *st, const struct pt_route_action *sa, const char *head, size_t hlen);

/* pt_shadow_body: <n> pieces of <st>'s request body (unframed, valid during the call), <done>
 * when they end it, as the primary takes them: framed for the mirror and handed on, or the
 * mirror is dropped (retry_or_shadow_abandoned on the primary's cluster) when its connection
 * would hold more than PT_SHADOW_PENDING_MAX. No-op without a mirror. */
void pt_shadow_body(struct pt_stream *st, const struct iovec *data, int n, bool done);

/* pt_shadow_detach: <st> ends. A mirror whose request was all handed over goes on alone
 * (reading and dropping its response, bounded by its timeout, holding its snapshot); one whose
 * request is incomplete is cancelled (its connection closed). */
void pt_shadow_detach(struct pt_stream *st);

#endif
