/* Rendering Envoy format strings for one request: header values with %...% operators and
 * error_response_overrides bodies (format.h). The formats were compiled once with the
 * configuration (observe/logformat.c); here they only run, into the caller's buffer. Values
 * without operators never come here: the session writes them as they are. Called by
 * proxy/session.c (headers, overrides of upstream responses) and proxy/reply.c (overrides of
 * local replies). */
#include "proxy/format.h"
#include "proxy/sockio.h"
#include "observe/logformat.h"

#include <string.h>

/* need_addresses: looks up what the format needs that costs a system call, once a request. */
static void need_addresses(struct pt_stream *st, const struct pt_logfmt *f)
{
    if ((f->needs & PT_LOGFMT_NEEDS_LOCAL_ADDR) && st->rec.local_addr[0] == '\0')
        pt_fd_local_addr(st->conn->io.fd, st->rec.local_addr);
}

/* wire_safe: no byte that would end or split a header line. */
static bool wire_safe(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return false;
    return true;
}

bool pt_format_header(struct pt_stream *st, const struct pt_hdr_op *op, const struct pt_header *resp, size_t nresp,
                      char *buf, size_t cap, struct pt_str *out)
{
    struct pt_logctx ctx = { 0 };
    bool cut;
    size_t n;

    if (resp == NULL) {
        ctx.req = st->req.headers;
        ctx.nreq = st->req.nheaders;
        ctx.no_upstream = true;
    } else {
        ctx.resp = resp;
        ctx.nresp = nresp;
    }
    need_addresses(st, op->fmt);
    n = pt_logfmt_render(&st->rec, op->fmt, &ctx, buf, cap, &cut);
    if (n == 0 || cut || !wire_safe(buf, n))
        return false;
    *out = pt_str_make(buf, n);
    return true;
}

void pt_format_keep(struct pt_stream *st, const struct pt_str *names, uint32_t n)
{
    struct pt_req_record *rec = &st->rec;

    for (uint32_t i = 0; i < n && rec->nx < PT_RECORD_XHEADERS; i++) {
        const struct pt_header *h;
        uint8_t k = 0;
        while (k < rec->nx && !pt_str_eq(rec->x_name[k], names[i]))
            k++;
        if (k < rec->nx)
            continue;
        h = pt_header_find(st->req.headers, st->req.nheaders, names[i]);
        rec->x_name[rec->nx] = names[i];
        pt_accesslog_keep(rec, h ? h->value : (struct pt_str){ 0 }, &rec->x_val[rec->nx]);
        rec->nx++;
    }
}

const struct pt_error_override *pt_format_override(const struct pt_stream *st, int status)
{
    const struct pt_error_overrides *o = st->rec.action ? st->rec.action->error_overrides
                                         : st->snap ? &st->snap->error_overrides : NULL;

    for (uint32_t i = 0; o != NULL && i < o->n; i++)
        if (o->rules[i].status == status)
            return &o->rules[i];
    return NULL;
}

size_t pt_format_error_body(struct pt_stream *st, const struct pt_error_override *o, const struct pt_header *resp,
                            size_t nresp, char *buf, size_t cap)
{
    struct pt_logctx ctx = { .resp = resp, .nresp = nresp };
    bool cut;

    need_addresses(st, o->body);
    return pt_logfmt_render(&st->rec, o->body, &ctx, buf, cap, &cut);
}
