/* Status-code messages and the aborting allocators used by start-up and config code. */
#include "core/common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

size_t pt_u64_dec(uint64_t v, char *out)
{
    char tmp[20], *q = tmp + sizeof(tmp);
    size_t n;

    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    n = (size_t)(tmp + sizeof(tmp) - q);
    memcpy(out, q, n);
    return n;
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
