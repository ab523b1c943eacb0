/* What configuration may put on the wire. Mapping and TracingService values that Portico writes
 * into an HTTP head (header names and values, host_rewrite, the service's host that
 * auto_host_rewrite sends, rewrite, regex_rewrite, the collector's Host and path) are checked here against RFC 9110/9112 so that no resource can
 * inject bytes (CR, LF, NUL) or reframe a message shared on a pooled upstream connection: one
 * namespace's Mapping must not reach another's requests. Each check reports its own error on
 * the resource (which is then rejected alone) with the offending value escaped, so a bad value
 * cannot inject lines into the log or diag either. Called by kinds.c; knows no kind itself. */
#include "config/fields.h"

#include "core/common.h"

#include <stdio.h>
#include <strings.h>

/* tchar (RFC 9110 §5.6.2): field names. */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

/* field-vchar plus SP and HTAB (RFC 9110 §5.5): VCHAR and obs-text. */
static const unsigned char field_char[256] = {
    ['\t'] = 1, [' ' ... '~'] = 1, [0x80 ... 0xff] = 1,
};

/* request-target bytes as the HTTP/1 parser accepts them (http/h1.c): VCHAR except '#'. */
static const unsigned char target_char[256] = {
    ['!' ... '"'] = 1, ['$' ... '~'] = 1,
};

/* host[:port] bytes (RFC 3986 §3.2.2): reg-name (unreserved, pct-encoded, sub-delims), an
 * IP-literal's brackets and colons, and the port's colon. No '/', '?', '#', '@' or space, which
 * would move the authority's end or add userinfo. */
static const unsigned char host_char[256] = {
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
    ['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1, ['%'] = 1,
    ['!'] = 1, ['$'] = 1, ['&'] = 1, ['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1,
    [','] = 1, [';'] = 1, ['='] = 1, [':'] = 1, ['['] = 1, [']'] = 1,
};

/* Header names a Mapping may neither add nor remove: the framing and connection management
 * that Portico writes from what it parsed, and Host (host_rewrite sets that). */
static const char *const managed_headers[] = {
    "content-length", "transfer-encoding", "connection", "te", "upgrade", "keep-alive",
    "proxy-connection", "host", NULL,
};

/* escaped: <s> for a message, in double quotes: printable ASCII as is, '"' and '\' with a
 * backslash, everything else as \xHH (so no CR or LF reaches a log line); at most 64 bytes of
 * <s>, then "...". <out> needs 4 * 64 + 8 bytes. */
#define ESCAPED_MAX (4 * 64 + 8)
static const char *escaped(char *out, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i;

    out[o++] = '"';
    for (i = 0; s[i] != '\0' && i < 64; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch >= 0x20 && ch < 0x7f) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o++] = '"';
    if (s[i] != '\0') {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

/* all_in: whether every byte of <s> is in <table>. */
static bool all_in(const unsigned char *table, const char *s)
{
    for (; *s != '\0'; s++)
        if (!table[(unsigned char)*s])
            return false;
    return true;
}

bool pt_config__wire_name(struct pt_config__obj *c, const struct pt_ynode *at, const char *path,
                          const char *name, bool adding)
{
    char e[ESCAPED_MAX];

    if (name[0] == '\0' || !all_in(tchar, name)) {
        pt_config__err(c, at, "%s: header name %s is not a token (RFC 9110 §5.6.2)", path,
                       escaped(e, name));
        return false;
    }
    for (size_t i = 0; managed_headers[i] != NULL; i++) {
        if (strcasecmp(name, managed_headers[i]) != 0)
            continue;
        if (strcmp(managed_headers[i], "host") == 0 && adding)
            pt_config__err(c, at, "%s: header %s cannot be set here; use host_rewrite", path,
                           name);
        else
            pt_config__err(c, at, "%s: header %s is managed by Portico and cannot be %s by a "
                           "Mapping", path, name, adding ? "added" : "removed");
        return false;
    }
    return true;
}

bool pt_config__wire_value(struct pt_config__obj *c, const struct pt_ynode *at, const char *path,
                           const char *value)
{
    char e[ESCAPED_MAX];
    size_t n = strlen(value);

    if (!all_in(field_char, value)) {
        pt_config__err(c, at, "%s: value %s has a byte not allowed in a field value (CR, LF, "
                       "NUL and other controls; RFC 9110 §5.5)", path, escaped(e, value));
        return false;
    }
    if (n > 0 && (value[0] == ' ' || value[0] == '\t' || value[n - 1] == ' ' ||
                  value[n - 1] == '\t')) {
        pt_config__err(c, at, "%s: value %s starts or ends with whitespace, which a recipient "
                       "strips (RFC 9110 §5.5)", path, escaped(e, value));
        return false;
    }
    return true;
}

bool pt_config__wire_service(struct pt_config__obj *c, const struct pt_ynode *at,
                             const char *path, const char *s)
{
    char e[ESCAPED_MAX];

    for (const char *p = s; *p != '\0'; p++)
        if (!host_char[(unsigned char)*p] && *p != '/') {
            pt_config__err(c, at, "%s: %s has a byte not allowed in [scheme://]host[:port] "
                           "(RFC 3986 §3.2.2)", path, escaped(e, s));
            return false;
        }
    return true;
}

bool pt_config__wire_target(struct pt_config__obj *c, const struct pt_ynode *at, const char *path,
                            const char *s)
{
    char e[ESCAPED_MAX];

    if (all_in(target_char, s))
        return true;
    pt_config__err(c, at, "%s: %s has a byte not allowed in a request-target (space, '#', "
                   "controls, non-ASCII; RFC 9112 §3.2)", path, escaped(e, s));
    return false;
}

bool pt_config__wire_host(struct pt_config__obj *c, const struct pt_ynode *at, const char *path,
                          const char *s)
{
    char e[ESCAPED_MAX];

    if (s[0] != '\0' && all_in(host_char, s))
        return true;
    pt_config__err(c, at, "%s: %s is not a host[:port] (RFC 3986 §3.2.2)", path, escaped(e, s));
    return false;
}

bool pt_config__wire_no_ctl(struct pt_config__obj *c, const struct pt_ynode *at, const char *path,
                            const char *s)
{
    char e[ESCAPED_MAX];

    for (const char *p = s; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            pt_config__err(c, at, "%s: %s has a control character (CR, LF, ...), which no "
                           "request path contains", path, escaped(e, s));
            return false;
        }
    return true;
}
