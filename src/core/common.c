/* Status-code messages and the aborting allocators used by start-up and config code. */
#include "core/common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

const char pt_hex_pairs[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

size_t pt_u64_dec(uint64_t v, char *out)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536"
                                "37383940414243444546474849505152535455565758596061626364656667686970717273"
                                "7475767778798081828384858687888990919293949596979899";
    char b[20];
    size_t i = sizeof(b);

    while (v >= 100) { /* two digits per division */
        i -= 2;
        memcpy(b + i, pairs + 2 * (v % 100), 2);
        v /= 100;
    }
    if (v >= 10) {
        i -= 2;
        memcpy(b + i, pairs + 2 * v, 2);
    } else {
        b[--i] = (char)('0' + v);
    }
    memcpy(out, b + i, sizeof(b) - i);
    return sizeof(b) - i;
}

const char *pt_strerror(int status)
{
    switch (status) {
    case PT_OK:
        return "success";
#define PT_ERR_CASE(name, val, msg) case PT_##name: return msg;
        PT_ERRNO_MAP(PT_ERR_CASE)
#undef PT_ERR_CASE
    }
    return "unknown error";
}

static void *oom(size_t n)
{
    fprintf(stderr, "portico: out of memory allocating %zu bytes\n", n);
    abort();
}

void *pt_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    return p ? p : oom(n);
}

void *pt_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    return p ? p : oom(n * size);
}

void *pt_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom(n);
}

char *pt_xstrdup(const char *s)
{
    return pt_xstrndup(s, strlen(s));
}

char *pt_xstrndup(const char *s, size_t n)
{
    char *p = pt_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static int b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

bool pt_b64_decode(const char *s, size_t len, unsigned char *out, size_t *outlen)
{
    size_t n = 0, symbols = 0, pad = 0;
    uint32_t acc = 0;
    int bits = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        int v;
        if (ch == '\n' || ch == '\r' || ch == ' ' || ch == '\t')
            continue;
        if (ch == '=') {
            pad++;
            continue;
        }
        if ((v = b64_value(ch)) < 0 || pad > 0)
            return false;
        symbols++;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    /* one dangling symbol cannot encode a byte; padding, when there, completes the quantum */
    if (symbols % 4 == 1 || pad > 2 || (pad > 0 && (symbols + pad) % 4 != 0))
        return false;
    out[n] = '\0';
    *outlen = n;
    return true;
}

static char *put_dec(char *p, unsigned v)
{
    char tmp[12], *q = tmp + sizeof(tmp);
    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(p, q, (size_t)(tmp + sizeof(tmp) - q));
    return p + (tmp + sizeof(tmp) - q);
}

static char *put_ipv4(char *p, const unsigned char *ip)
{
    for (int i = 0; i < 4; i++) {
        p = put_dec(p, ip[i]);
        *p++ = '.';
    }
    return p - 1;
}

void pt_sockaddr_format(const struct sockaddr_storage *sa, char *out)
{
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    char *p = out;

    if (sa->ss_family == AF_INET) {
        p = put_ipv4(p, (const unsigned char *)&s4->sin_addr);
    } else if (sa->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
        p = put_ipv4(p, &s6->sin6_addr.s6_addr[12]);
    } else if (sa->ss_family == AF_INET6) {
        *p++ = '[';
        inet_ntop(AF_INET6, &s6->sin6_addr, p, INET6_ADDRSTRLEN);
        p += strlen(p);
        *p++ = ']';
    } else {
        *out = '\0';
        return;
    }
    *p++ = ':';
    p = put_dec(p, ntohs(sa->ss_family == AF_INET ? s4->sin_port : s6->sin6_port));
    *p = '\0';
}
