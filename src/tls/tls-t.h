/* Types of the tls module: what a built context reports about its certificate, the Istio
 * certificate pair as read from disk, and the SNI map. Types only; prototypes are in tls.h. */
#ifndef PT_TLS_TLS_T_H
#define PT_TLS_TLS_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Where a server context's certificate came from and when it expires, for diag and metrics.
 * Filled by pt_tls_server_ctx_new. Fixed-size strings (truncated when longer), so an all-zero
 * struct is a valid empty one and nothing needs freeing. */
struct pt_tls_material {
    time_t not_after;   /* earliest notAfter of the certificate and its chain; 0 unknown */
    char serial[80];    /* serial of the leaf, upper-case hex */
    char subject[256];  /* subject of the leaf, one line (RFC 2253) */
    char source[320];   /* "secret NS/NAME", "file PATH" or "self-signed" */
    bool self_signed;   /* the generated fallback certificate */
};

/* One certificate pair from the Istio certificate directory (istio.c), as copied out by
 * pt_istio_certs_get. The PEM strings are NUL-terminated and owned by the struct (free with
 * pt_istio_pair_free). An all-zero struct is a valid empty pair. */
struct pt_istio_pair {
    char *key_pem;       /* key.pem */
    size_t key_len;
    char *chain_pem;     /* cert-chain.pem: the workload certificate first */
    size_t chain_len;
    char *root_pem;      /* root-cert.pem; NULL when the file is absent */
    size_t root_len;
    time_t not_after;    /* notAfter of the workload certificate */
    char serial[80];     /* serial of the workload certificate, upper-case hex */
    char error[256];     /* why the last attempt to load was refused; "" when it was loaded */
    uint64_t generation; /* 1 for the first good pair, +1 for each different good pair */
};

/* Hostname -> server context, for choosing a certificate by SNI (sni.c). Opaque. */
struct pt_tls_sni_map;

#endif
