/* Diagnostics: the list of errors and notices that a configuration load produces, and their
 * one-line-per-problem printing (`FILE:LINE: Kind/namespace/name: message`, the format that
 * `portico check` promises and editors can jump to). Filled by config/ (load.c, resources.c,
 * compile.c), cluster/service.c and control/apply.c; printed by control/check.c; the diag
 * document (config/compile.c) reads the entries directly. */
#include "model/diag.h"

#include "core/common.h"

#include <stdio.h>
#include <stdlib.h>

void pt_diag_vadd(struct pt_diag *d, enum pt_diag_severity sev, const struct pt_origin *o,
                  const char *object, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    char *msg = pt_xmalloc(n > 0 ? (size_t)n + 1 : 1);
    if (n > 0)
        vsnprintf(msg, (size_t)n + 1, fmt, ap);
    else
        msg[0] = '\0';

    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 16;
        d->entries = pt_xrealloc(d->entries, d->cap * sizeof(*d->entries));
    }
    struct pt_diag_entry *e = &d->entries[d->n++];
    e->severity = sev;
    e->origin = o ? *o : (struct pt_origin){ NULL, 0 };
    e->object = object ? pt_xstrdup(object) : NULL;
    e->message = msg;
    if (sev == PT_DIAG_ERROR)
        d->nerrors++;
}

void pt_diag_add(struct pt_diag *d, enum pt_diag_severity sev, const struct pt_origin *o,
                 const char *object, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pt_diag_vadd(d, sev, o, object, fmt, ap);
    va_end(ap);
}

/* put_clean: <s> with control bytes replaced, so one entry is always one line. */
static void put_clean(const char *s, FILE *out)
{
    for (; *s; s++)
        fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, out);
}

void pt_diag_print(const struct pt_diag *d, FILE *out)
{
    for (size_t i = 0; i < d->n; i++) {
        const struct pt_diag_entry *e = &d->entries[i];
        put_clean(e->origin.file ? e->origin.file : "-", out);
        if (e->origin.line > 0)
            fprintf(out, ":%d", e->origin.line);
        fputs(": ", out);
        if (e->object != NULL) {
            put_clean(e->object, out);
            fputs(": ", out);
        }
        if (e->severity == PT_DIAG_NOTICE)
            fputs("notice: ", out);
        put_clean(e->message, out);
        fputc('\n', out);
    }
}

void pt_diag_free(struct pt_diag *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->entries[i].object);
        free(d->entries[i].message);
    }
    free(d->entries);
    *d = (struct pt_diag){ 0 };
}
