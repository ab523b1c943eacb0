/* The HTTP/1.1 request head the proxy wrote, read as HTTP/2 fields (http/h2head.h). The head
 * comes from the proxy's own writer (http/h1write.h), so the reader only checks what it relies
 * on: a request line of three parts, lines ending in CRLF, a colon in each field line, and a
 * Host. Called by proxy/h2client.c. */
#include "http/h2head.h"
#include "http/h1write.h"

#include <string.h>

/* next_line: the line at <*p> without its CRLF, <*p> moved past it; false when no CRLF ends it
 * before <end>. */
static bool next_line(char **p, char *end, struct pt_str *line)
{
    char *s = *p, *q = s;

    while (q + 1 < end && !(q[0] == '\r' && q[1] == '\n'))
        q++;
    if (q + 1 >= end)
        return false;
    *line = pt_str_make(s, (size_t)(q - s));
    *p = q + 2;
    return true;
}

/* request_line: :method and :path from "METHOD SP target SP HTTP/1.x". */
static bool request_line(struct pt_str line, struct pt_str *method, struct pt_str *path)
{
    const char *sp1 = memchr(line.ptr, ' ', line.len), *sp2;

    if (sp1 == NULL || sp1 == line.ptr)
        return false;
    sp2 = memchr(sp1 + 1, ' ', (size_t)(line.ptr + line.len - sp1 - 1));
    if (sp2 == NULL || sp2 == sp1 + 1)
        return false;
    *method = pt_str_make(line.ptr, (size_t)(sp1 - line.ptr));
    *path = pt_str_make(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    return true;
}

/* connection_specific: a field HTTP/2 forbids (§8.2.2); TE only when it says more than
 * "trailers". */
static bool connection_specific(struct pt_str name, struct pt_str value)
{
    if (name.len == 2 && pt_str_caseeq(name, PT_STR_LIT("te")))
        return !pt_str_caseeq(value, PT_STR_LIT("trailers"));
    return pt_http_hop_by_hop(name);
}

int pt_h2head_from_h1(char *head, size_t len, bool tls, bool te_trailers, struct pt_header *out,
                      size_t max)
{
    char *p = head, *end = head + len;
    struct pt_str line, method, path, authority = { 0 };
    size_t n = PT_H2HEAD_PSEUDO;
    bool host = false;

    if (max < PT_H2HEAD_PSEUDO + (te_trailers ? 1 : 0))
        return PT_TOOBIG;
    if (!next_line(&p, end, &line) || !request_line(line, &method, &path))
        return PT_BADMSG;
    while (next_line(&p, end, &line) && line.len > 0) {
        const char *colon = memchr(line.ptr, ':', line.len);
        struct pt_str name, value;
        if (colon == NULL || colon == line.ptr)
            return PT_BADMSG;
        name = pt_str_make(line.ptr, (size_t)(colon - line.ptr));
        value = pt_str_make(colon + 1, line.len - name.len - 1);
        while (value.len > 0 && (value.ptr[0] == ' ' || value.ptr[0] == '\t'))
            value.ptr++, value.len--;
        while (value.len > 0 && (value.ptr[value.len - 1] == ' ' || value.ptr[value.len - 1] == '\t'))
            value.len--;
        if (name.len == 4 && pt_str_caseeq(name, PT_STR_LIT("host"))) {
            if (!host)
                authority = value; /* the first: the head has one */
            host = true;
            continue;
        }
        if (connection_specific(name, value))
            continue;
        if (n >= max)
            return PT_TOOBIG;
        char *nm = head + (name.ptr - head); /* the head's own bytes: writable */
        for (size_t i = 0; i < name.len; i++)
            nm[i] = pt_lower(nm[i]);
        if (name.len == 2 && name.ptr[0] == 't' && name.ptr[1] == 'e')
            te_trailers = false; /* there already */
        out[n++] = (struct pt_header){ name, value };
    }
    if (line.len != 0 || !host) /* no blank line ends it, or no Host */
        return PT_BADMSG;
    if (te_trailers) {
        if (n >= max)
            return PT_TOOBIG;
        out[n++] = (struct pt_header){ PT_STR_LIT("te"), PT_STR_LIT("trailers") };
    }
    out[0] = (struct pt_header){ PT_STR_LIT(":method"), method };
    out[1] = (struct pt_header){ PT_STR_LIT(":scheme"), tls ? PT_STR_LIT("https") : PT_STR_LIT("http") };
    out[2] = (struct pt_header){ PT_STR_LIT(":authority"), authority };
    out[3] = (struct pt_header){ PT_STR_LIT(":path"), path };
    return (int)n;
}
