/* TLS failures as Envoy words them, for the "transport failure reason" of local replies and
 * access logs (envoy-compat.md §2.1): "TLS_error:|<code>:<lib>:<func>:<reason>:TLS_error_end".
 * Envoy links BoringSSL, whose error codes, function field ("OPENSSL_internal") and reason
 * names (upper case) differ from OpenSSL 3's, and users alert on those texts. So this file
 * translates: reasons are upper-cased with '_' (OpenSSL's "certificate verify failed" becomes
 * BoringSSL's CERTIFICATE_VERIFY_FAILED; alert reasons already share numbers and names), and
 * the codes of the reasons an edge proxy meets are BoringSSL's. Called by the data plane when a
 * handshake or read fails, on the worker thread whose error queue holds the errors. */
#include "tls/tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#define BSSL_LIB_SYS 2
#define BSSL_LIB_SSL 16
#define BSSL_ALERT_OFFSET 1000 /* SSL_AD_REASON_OFFSET in both libraries */

/* BoringSSL's numbers for the SSL reasons a proxy sees (BoringSSL include/openssl/ssl.h). */
static const struct { const char *name; int code; } bssl_reasons[] = {
    { "CERTIFICATE_VERIFY_FAILED", 125 },
    { "DECODE_ERROR", 137 },
    { "DECRYPTION_FAILED_OR_BAD_RECORD_MAC", 139 },
    { "EXCESSIVE_MESSAGE_SIZE", 150 },
    { "HTTP_REQUEST", 156 },
    { "HTTPS_PROXY_REQUEST", 155 },
    { "NO_CIPHERS_AVAILABLE", 175 },
    { "NO_SHARED_CIPHER", 184 },
    { "PEER_DID_NOT_RETURN_A_CERTIFICATE", 192 },
    { "RECORD_TOO_LARGE", 200 },
    { "UNEXPECTED_MESSAGE", 223 },
    { "UNEXPECTED_RECORD", 225 },
    { "UNKNOWN_PROTOCOL", 233 },
    { "UNSUPPORTED_PROTOCOL", 240 },
    { "WRONG_VERSION_NUMBER", 247 },
    { "NO_APPLICATION_PROTOCOL", 307 },
};

/* upper_reason: <reason> upper-cased, spaces as '_' (BoringSSL's SSL_R_ names). */
static void upper_reason(const char *reason, char *out, size_t n)
{
    size_t i = 0;

    for (; reason[i] != '\0' && i + 1 < n; i++)
        out[i] = reason[i] == ' ' ? '_' : (char)(reason[i] >= 'a' && reason[i] <= 'z'
                                                     ? reason[i] - 'a' + 'A'
                                                     : reason[i]);
    out[i] = '\0';
}

/* translate: the BoringSSL-style code and reason text of one OpenSSL error. */
static unsigned long translate(unsigned long e, char *reason, size_t n)
{
    const char *r = ERR_reason_error_string(e);
    int lib = ERR_GET_LIB(e), rc = ERR_GET_REASON(e);

    if (ERR_SYSTEM_ERROR(e)) { /* errno; OpenSSL's text is strerror's, as BoringSSL's */
        snprintf(reason, n, "%s", r ? r : strerror(rc));
        return ((unsigned long)BSSL_LIB_SYS << 24) | (unsigned long)rc;
    }
    upper_reason(r ? r : "", reason, n);
    if (lib != ERR_LIB_SSL)
        return e;
    if (strcmp(reason, "TLSV13_ALERT_CERTIFICATE_REQUIRED") == 0)
        snprintf(reason, n, "TLSV1_ALERT_CERTIFICATE_REQUIRED");
    if (rc >= BSSL_ALERT_OFFSET)
        return ((unsigned long)BSSL_LIB_SSL << 24) | (unsigned long)rc;
    for (size_t i = 0; i < PT_ARRAY_SIZE(bssl_reasons); i++)
        if (strcmp(reason, bssl_reasons[i].name) == 0)
            return ((unsigned long)BSSL_LIB_SSL << 24) | (unsigned long)bssl_reasons[i].code;
    return e;
}

void pt_tls_error_string(char *out, size_t n)
{
    static const char end[] = ":TLS_error_end";
    size_t len = 0;
    unsigned long e;

    if (n == 0)
        return;
    out[0] = '\0';
    while ((e = ERR_get_error_all(NULL, NULL, NULL, NULL, NULL)) != 0) {
        char reason[160], entry[256];
        unsigned long code = translate(e, reason, sizeof(reason));
        const char *lib = ERR_SYSTEM_ERROR(e) ? "system library" : ERR_lib_error_string(e);
        int w = snprintf(entry, sizeof(entry), "%s|%lu:%s:OPENSSL_internal:%s",
                         len == 0 ? "TLS_error:" : "", code, lib ? lib : "", reason);
        /* Whole entries only, with room left for the end marker and the NUL; the rest of the
         * queue is still drained. */
        if (w <= 0 || (size_t)w >= sizeof(entry) || len + (size_t)w + sizeof(end) > n)
            continue;
        memcpy(out + len, entry, (size_t)w);
        len += (size_t)w;
    }
    if (len > 0)
        memcpy(out + len, end, sizeof(end)); /* fits: reserved above, NUL included */
    else
        out[0] = '\0';
}
