/* Temporary: Envoy-style TLS error text until tls/ lands. */
#include <openssl/err.h>
#include <stdio.h>

void pt_tls_error_string(char *out, size_t n);

void pt_tls_error_string(char *out, size_t n)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    snprintf(out, n, "TLS_error:|%lu:%s:TLS_error_end", e, buf);
}
