/* Parsing a Mapping's service and resolving it to endpoints (see service.h). Emissary's rules:
 * a bare name is qualified with the Mapping's namespace when that differs from Portico's; the
 * default port is 80, or 443 when originating TLS; a Service with exactly one port gives that
 * port when the Mapping names none. Runs on the control thread while compiling. */
#include "cluster/service.h"
#include "cluster/dns.h"
#include "model/diag.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pt_service_parse(const char *service, const char *mapping_ns, const char *amb_ns, bool tls,
                     struct pt_service_ref *ref, char *err, size_t errlen)
{
    const char *p = service, *s, *colon;
    struct in6_addr a6;
    size_t hl;

    memset(ref, 0, sizeof(*ref));
    if ((s = strstr(p, "://")) != NULL) {
        size_t sl = (size_t)(s - p);
        if (sl == 4 && strncmp(p, "http", 4) == 0)
            strcpy(ref->scheme, "http");
        else if (sl == 5 && strncmp(p, "https", 5) == 0)
            strcpy(ref->scheme, "https");
        else {
            snprintf(err, errlen, "unknown scheme in %s", service);
            return -1;
        }
        p = s + 3;
    }
    ref->tls = tls || strcmp(ref->scheme, "https") == 0;
    if (*p == '[') { /* [v6]:port */
        const char *e = strchr(p, ']');
        if (e == NULL || (size_t)(e - p - 1) >= sizeof(ref->host)) {
            snprintf(err, errlen, "bad IPv6 address in %s", service);
            return -1;
        }
        memcpy(ref->host, p + 1, (size_t)(e - p - 1));
        colon = e[1] == ':' ? e + 1 : NULL;
        if (e[1] != '\0' && e[1] != ':') {
            snprintf(err, errlen, "extra characters after the address in %s", service);
            return -1;
        }
    } else {
        colon = strrchr(p, ':');
        hl = colon ? (size_t)(colon - p) : strlen(p);
        if (hl == 0 || hl >= sizeof(ref->host)) {
            snprintf(err, errlen, "no host in %s", service);
            return -1;
        }
        memcpy(ref->host, p, hl);
    }
    if (strpbrk(ref->host, "/?#@ ") != NULL) {
        snprintf(err, errlen, "extra URL components in %s", service);
        return -1;
    }
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end != '\0' || port < 1 || port > 65535) {
            snprintf(err, errlen, "invalid port in %s", service);
            return -1;
        }
        ref->port = (int)port;
    }
    ref->is_ip = inet_pton(AF_INET6, ref->host, &a6) == 1 || inet_pton(AF_INET, ref->host, &a6) == 1;
    {
        const char *dot = strchr(ref->host, '.');
        size_t nl = dot && !ref->is_ip ? (size_t)(dot - ref->host) : strlen(ref->host);
        memcpy(ref->name, ref->host, nl);
        if (dot && !ref->is_ip) {
            const char *nsend = strchr(dot + 1, '.');
            size_t nsl = nsend ? (size_t)(nsend - dot - 1) : strlen(dot + 1);
            if (nsl >= sizeof(ref->namespace))
                nsl = sizeof(ref->namespace) - 1;
            memcpy(ref->namespace, dot + 1, nsl);
        } else {
            snprintf(ref->namespace, sizeof(ref->namespace), "%s", mapping_ns);
        }
    }
    {
        bool qualify = !ref->is_ip && strchr(ref->host, '.') == NULL && strcmp(ref->host, "localhost") != 0 &&
                       strcmp(mapping_ns, amb_ns) != 0;
        char portbuf[16] = "";
        if (ref->port)
            snprintf(portbuf, sizeof(portbuf), ":%d", ref->port);
        bool v6 = strchr(ref->host, ':') != NULL;
        snprintf(ref->qualified, sizeof(ref->qualified), "%s%s%s%s%s%s%s%s", ref->scheme, ref->scheme[0] ? "://" : "",
                 v6 ? "[" : "", ref->host, v6 ? "]" : "", qualify ? "." : "", qualify ? mapping_ns : "", portbuf);
    }
    return 0;
}

static void add_endpoint(struct pt_cluster *cl, const struct sockaddr_storage *ss, socklen_t len, int port)
{
    struct pt_endpoint *e;
    char ip[INET6_ADDRSTRLEN];

    cl->endpoints = realloc(cl->endpoints, (cl->nendpoints + 1) * sizeof(*cl->endpoints));
    if (cl->endpoints == NULL)
        abort();
    e = &cl->endpoints[cl->nendpoints++];
    memset(e, 0, sizeof(*e));
    memcpy(&e->addr, ss, len);
    e->addrlen = len;
    if (ss->ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&e->addr;
        s6->sin6_port = htons((uint16_t)port);
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(e->name, sizeof(e->name), "[%s]:%d", ip, port);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&e->addr;
        s4->sin_port = htons((uint16_t)port);
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(e->name, sizeof(e->name), "%s:%d", ip, port);
    }
}

static bool parse_ip(const char *ip, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
        ss->ss_family = AF_INET;
        *len = sizeof(struct sockaddr_in);
        return true;
    }
    if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
        ss->ss_family = AF_INET6;
        *len = sizeof(struct sockaddr_in6);
        return true;
    }
    return false;
}

void pt_service_index_build(struct pt_service_index *ix, const struct pt_resources *r)
{
    size_t need = 1, off = 0;

    memset(ix, 0, sizeof(*ix));
    for (size_t i = 0; i < r->nservices; i++)
        need += strlen(r->services[i].meta.namespace) + strlen(r->services[i].meta.name) + 2;
    for (size_t i = 0; i < r->nendpoints; i++)
        need += strlen(r->endpoints[i].meta.namespace) + strlen(r->endpoints[i].meta.name) + 2;
    ix->keys = pt_xmalloc(need);
#define INDEX(map, arr, n)                                                                   \
    for (size_t i = 0; i < (n); i++) {                                                       \
        char *k = ix->keys + off;                                                            \
        int l = sprintf(k, "%s/%s", (arr)[i].meta.namespace, (arr)[i].meta.name);            \
        off += (size_t)l + 1;                                                                \
        if (pt_strmap_get(&ix->map, k, (size_t)l) == NULL)                                   \
            pt_strmap_put(&ix->map, k, (size_t)l, (void *)&(arr)[i]);                        \
    }
    INDEX(services, r->services, r->nservices)
    INDEX(endpoints, r->endpoints, r->nendpoints)
#undef INDEX
}

void pt_service_index_free(struct pt_service_index *ix)
{
    pt_strmap_free(&ix->services);
    pt_strmap_free(&ix->endpoints);
    free(ix->keys);
    memset(ix, 0, sizeof(*ix));
}

static const void *ix_find(const struct pt_strmap *m, const char *name, const char *ns)
{
    char key[600];
    int l = snprintf(key, sizeof(key), "%s/%s", ns, name);
    return l > 0 && l < (int)sizeof(key) ? pt_strmap_get(m, key, (size_t)l) : NULL;
}

/* The Endpoints port of a subset for the Service port chosen (or the Mapping's port when there
 * is no Service). Endpoints ports carry the Service port's name and the pod's target port
 * number, so a named Service port is found by that name, an unnamed one as the only port.
 * 0 when this subset does not serve it (its addresses are then skipped). */
static int subset_port(const struct pt_endpoint_subset *ss, const struct pt_service_port *sp, int want, int dflt)
{
    if (sp == NULL && want == 0)
        want = ss->nports == 1 ? ss->ports[0].port : dflt; /* the only port, else the default */
    for (size_t k = 0; k < ss->nports; k++) {
        const struct pt_endpoint_port *ep = &ss->ports[k];
        if (sp != NULL && sp->name != NULL) {
            if (ep->name != NULL && strcmp(ep->name, sp->name) == 0)
                return ep->port;
        } else if (sp != NULL) {
            if (ss->nports == 1 || (!sp->target_port_name && ep->port == sp->target_port))
                return ep->port;
        } else if (ep->port == want) {
            return ep->port;
        }
    }
    return 0;
}

void pt_service_resolve(const struct pt_service_ref *ref, const struct pt_resources *r, struct pt_cluster *cl,
                        struct pt_diag *diag, const struct pt_meta *owner)
{
    struct pt_service_index ix;
    pt_service_index_build(&ix, r);
    pt_service_resolve_indexed(ref, r, &ix, cl, diag, owner);
    pt_service_index_free(&ix);
}

void pt_service_resolve_indexed(const struct pt_service_ref *ref, const struct pt_resources *r,
                                const struct pt_service_index *ix, struct pt_cluster *cl,
                                struct pt_diag *diag, const struct pt_meta *owner)
{
    int dflt = ref->tls ? 443 : 80;
    struct sockaddr_storage ss;
    socklen_t len;

    if (ref->is_ip) {
        if (parse_ip(ref->host, &ss, &len))
            add_endpoint(cl, &ss, len, ref->port ? ref->port : dflt);
        cl->port = ref->port ? ref->port : dflt;
        return;
    }
    const struct pt_endpoints_res *eps = ix_find(&ix->endpoints, ref->name, ref->namespace);
    if (eps != NULL) {
        const struct pt_service_res *svc = ix_find(&ix->services, ref->name, ref->namespace);
        const struct pt_service_port *sp = NULL;
        if (svc != NULL) {
            for (size_t i = 0; i < svc->nports && sp == NULL; i++)
                if (ref->port ? svc->ports[i].port == ref->port : svc->nports == 1)
                    sp = &svc->ports[i];
            if (sp == NULL && ref->port == 0) {
                for (size_t i = 0; i < svc->nports && sp == NULL; i++)
                    if (svc->ports[i].port == dflt)
                        sp = &svc->ports[i];
            }
            if (sp == NULL) {
                char obj[512];
                snprintf(obj, sizeof(obj), "%s/%s/%s", owner->kind, owner->namespace, owner->name);
                pt_diag_add(diag, PT_DIAG_NOTICE, &owner->origin, obj,
                            "Service %s.%s has no port %d; no endpoints", ref->name, ref->namespace,
                            ref->port ? ref->port : dflt);
                return;
            }
            cl->port = sp->port;
        }
        for (size_t i = 0; i < eps->nsubsets; i++) {
            const struct pt_endpoint_subset *sub = &eps->subsets[i];
            int port = subset_port(sub, sp, ref->port, dflt);
            if (port == 0 && sp == NULL && sub->nports == 0)
                port = ref->port ? ref->port : dflt; /* Endpoints without ports */
            if (port == 0)
                continue;
            for (size_t k = 0; k < sub->naddresses; k++)
                if (parse_ip(sub->addresses[k].ip, &ss, &len))
                    add_endpoint(cl, &ss, len, port);
        }
        return;
    }
    /* DNS: the cache answers now, or a lookup starts and the config is compiled again. */
    {
        struct pt_dns_addr addrs[16];
        char fq[600] = "";
        int n = 0;
        cl->port = ref->port ? ref->port : dflt;
        bool ttl = cl->respect_dns_ttl; /* else refreshed every 5 s, as Envoy's dns_refresh_rate */
        if (strchr(ref->host, '.') == NULL && strcmp(ref->host, "localhost") != 0) {
            /* name.namespace first (resolv.conf search does the rest), then name */
            snprintf(fq, sizeof(fq), "%s.%s", ref->host, ref->namespace);
            n = pt_dns_lookup_refresh(fq, addrs, 16, ttl);
        }
        if (n == 0)
            n = pt_dns_lookup_refresh(ref->host, addrs, 16, ttl);
        if (n == 0 && pt_dns_answered(ref->host)) /* localhost and hosts files answer at once */
            n = pt_dns_lookup_refresh(ref->host, addrs, 16, ttl);
        cl->dns_pending = n == 0 && (!pt_dns_answered(ref->host) || (fq[0] && !pt_dns_answered(fq)));
        /* IPv4 only when the name has IPv4 addresses, as Emissary (dns_lookup_family V4_ONLY
         * unless enable_ipv6): "localhost" must not alternate between 127.0.0.1 and ::1. */
        int n4 = 0;
        for (int i = 0; i < n; i++)
            if (addrs[i].addr.ss_family == AF_INET)
                addrs[n4++] = addrs[i];
        if (n4 > 0)
            n = n4;
        if (cl->dns_type == PT_DNS_LOGICAL && n > 1)
            n = 1; /* logical_dns: the first address (in the cache's order) is the one endpoint */
        for (int i = 0; i < n; i++)
            add_endpoint(cl, &addrs[i].addr, addrs[i].len, cl->port);
    }
}
