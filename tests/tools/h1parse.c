/* h1parse: reads HTTP/1 requests with Portico's own strict parser (pt_h1_parse_request and the
 * chunked decoder of src/http/h1.c) and prints what it read as one JSON line, so tests can see
 * a byte stream as Portico does (tests/integration/test_framing_property.py). Not part of the
 * proxy; built by the Makefile as build/tests/h1parse.
 *
 *   h1parse < bytes           one stream: every request in it, in order
 *   h1parse --batch < recs    records "<length>\n<bytes>", one JSON line per record
 *
 * Output: {"requests": [{"method", "target", "version", "path", "authority", "headers":
 * [[name, value], ...], "framing": "none"|"length"|"chunked", "body", "consumed"}], "status":
 * "end" (nothing left), "again" (an incomplete request is left), "badmsg" or "toobig" (the
 * rest is invalid), "rest": the bytes after the last complete request}. Strings carry bytes:
 * each byte is one code point U+0000..U+00FF (Python: s.encode("latin-1")). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1.h"

#define MAXH 128

static void put_bytes(const char *p, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            putchar(c);
        else
            printf("\\u%04x", c);
    }
    putchar('"');
}

static void put_str(struct pt_str s)
{
    put_bytes(s.ptr ? s.ptr : "", s.len);
}

/* body: reads the body of <req> from <p> (<n> bytes) into <out>; returns the bytes consumed,
 * or a negative status (PT_AGAIN, PT_BADMSG, PT_TOOBIG). */
static long body(const struct pt_h1_request *req, const char *p, size_t n, char *out,
                 size_t *outlen)
{
    *outlen = 0;
    if (req->chunked) {
        struct pt_h1_chunked st = { 0 };
        size_t off = 0, c;
        int r;
        do {
            struct pt_str d;
            r = pt_h1_chunked_decode(&st, p + off, n - off, &c, &d);
            memcpy(out + *outlen, d.ptr ? d.ptr : "", d.len);
            *outlen += d.len;
            off += c;
        } while (r == 0 && off < n);
        if (r == 1)
            return (long)off;
        return r == 0 ? PT_AGAIN : r;
    }
    if (req->content_length > 0) {
        if ((uint64_t)req->content_length > n)
            return PT_AGAIN;
        memcpy(out, p, (size_t)req->content_length);
        *outlen = (size_t)req->content_length;
        return (long)req->content_length;
    }
    return 0;
}

static const char *status_name(int r)
{
    return r == PT_AGAIN ? "again" : r == PT_TOOBIG ? "toobig" : "badmsg";
}

static void parse_stream(const char *buf, size_t len)
{
    static struct pt_header hdrs[MAXH];
    static char out[1 << 20];
    size_t off = 0;
    const char *status = "end";
    bool first = true;

    printf("{\"requests\": [");
    while (off < len) {
        struct pt_h1_request req;
        size_t blen;
        int r = pt_h1_parse_request(buf + off, len - off, &req, hdrs, MAXH, NULL);
        if (r <= 0) {
            status = status_name(r);
            break;
        }
        long b = body(&req, buf + off + r, len - off - (size_t)r, out, &blen);
        if (b < 0) {
            status = status_name((int)b);
            break;
        }
        printf("%s{\"method\": ", first ? "" : ", ");
        first = false;
        put_str(req.method);
        printf(", \"target\": ");
        put_str(req.target);
        printf(", \"path\": ");
        put_str(req.path);
        printf(", \"authority\": ");
        put_str(req.authority);
        printf(", \"version\": %d, \"headers\": [", req.minor_version);
        for (size_t i = 0; i < req.nheaders; i++) {
            printf("%s[", i ? ", " : "");
            put_str(req.headers[i].name);
            printf(", ");
            put_str(req.headers[i].value);
            printf("]");
        }
        printf("], \"framing\": \"%s\", \"body\": ",
               req.chunked ? "chunked" : req.content_length >= 0 ? "length" : "none");
        put_bytes(out, blen);
        printf(", \"consumed\": %ld}", (long)r + b);
        off += (size_t)r + (size_t)b;
    }
    printf("], \"status\": \"%s\", \"rest\": ", off < len ? status : "end");
    put_bytes(buf + off, len - off);
    printf("}\n");
}

static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap);

    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap && (buf = realloc(buf, cap *= 2)) == NULL)
            break;
    }
    if (buf == NULL) {
        fprintf(stderr, "h1parse: out of memory\n");
        exit(2);
    }
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    size_t len;
    char *buf = read_all(stdin, &len);

    if (len > (1 << 20)) {
        fprintf(stderr, "h1parse: input above 1 MiB\n");
        return 2;
    }

    if (argc > 1 && strcmp(argv[1], "--batch") == 0) {
        size_t off = 0;
        while (off < len) {
            char *end;
            unsigned long n = strtoul(buf + off, &end, 10);
            if (end == buf + off || *end != '\n' || n > len - (size_t)(end + 1 - buf)) {
                fprintf(stderr, "h1parse: bad record at byte %zu\n", off);
                return 2;
            }
            parse_stream(end + 1, n);
            off = (size_t)(end + 1 - buf) + n;
        }
    } else if (argc > 1) {
        fprintf(stderr, "usage: h1parse [--batch] < input\n");
        return 2;
    } else {
        parse_stream(buf, len);
    }
    free(buf);
    return 0;
}
