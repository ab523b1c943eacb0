/* Micro-benchmark of src/http/h1.c: ns per parse of a typical 400-byte browser request, and of
 * a small response, plus chunked-scan throughput. Not part of `make unit`. Build and run:
 *   cc -O2 -std=gnu11 -D_GNU_SOURCE -Isrc tests/unit/bench_h1.c src/http/h1.c \
 *       src/core/common.c -o build/bench_h1 && build/bench_h1 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "http/h1.h"

static const char request[] =
    "GET /api/v1/users/12345/profile?fields=name,email&lang=en HTTP/1.1\r\n"
    "Host: api.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0\r\n"
    "Accept: application/json, text/plain, */*\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Connection: keep-alive\r\n"
    "X-Request-Id: 6f1c2a9e-0b7d-4c1e-9a55-3f2d8e7b1c40\r\n"
    "Cookie: session=abc123\r\n"
    "\r\n";

static const char response[] = "HTTP/1.1 200 OK\r\n"
                               "Date: Mon, 27 Jul 2009 12:28:53 GMT\r\n"
                               "Server: quote\r\n"
                               "Content-Type: application/json\r\n"
                               "Content-Length: 1234\r\n"
                               "\r\n";

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double bench_request(long iters)
{
    struct pt_header hdrs[32];
    struct pt_h1_request req;
    long sum = 0;
    double t0 = now_ns();

    for (long i = 0; i < iters; i++) {
        sum += pt_h1_parse_request(request, sizeof(request) - 1, &req, hdrs, 32, NULL);
        __asm__ volatile("" : : "r"(&req) : "memory");
    }
    double ns = (now_ns() - t0) / iters;
    if (sum != iters * (long)(sizeof(request) - 1))
        abort();
    return ns;
}

static double bench_response(long iters)
{
    struct pt_header hdrs[32];
    struct pt_h1_response res;
    long sum = 0;
    double t0 = now_ns();

    for (long i = 0; i < iters; i++) {
        sum += pt_h1_parse_response(response, sizeof(response) - 1, &res, hdrs, 32, NULL);
        __asm__ volatile("" : : "r"(&res) : "memory");
    }
    double ns = (now_ns() - t0) / iters;
    if (sum != iters * (long)(sizeof(response) - 1))
        abort();
    return ns;
}

/* chunked_body: <n> chunks of <size> bytes and the last chunk, into a new buffer. */
static char *chunked_body(size_t n, size_t size, size_t *len)
{
    char *b = malloc(n * (size + 32) + 16), *p = b;

    for (size_t i = 0; i < n; i++) {
        p += sprintf(p, "%zx\r\n", size);
        memset(p, 'x', size);
        p += size;
        p += sprintf(p, "\r\n");
    }
    p += sprintf(p, "0\r\n\r\n");
    *len = (size_t)(p - b);
    return b;
}

static void bench_chunked(size_t size)
{
    size_t len, c, rounds = 200;
    char *b = chunked_body((1 << 20) / size, size, &len);
    double t0 = now_ns();

    for (size_t i = 0; i < rounds; i++) {
        struct pt_h1_chunked st = { 0 };
        if (pt_h1_chunked_scan(&st, b, len, &c) != 1 || c != len)
            abort();
    }
    double ns = now_ns() - t0;
    printf("chunked scan, %5zu-byte chunks: %8.2f GB/s\n", size, (double)len * rounds / ns);
    free(b);
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 2000000;

    bench_request(iters / 10); /* warm up */
    printf("request  (%zu bytes, 9 headers): %6.1f ns/parse\n", sizeof(request) - 1,
           bench_request(iters));
    printf("response (%zu bytes, 4 headers): %6.1f ns/parse\n", sizeof(response) - 1,
           bench_response(iters));
    bench_chunked(16);
    bench_chunked(1024);
    bench_chunked(16384);
    return 0;
}
