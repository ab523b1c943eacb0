/* Diagnostics: the errors and notices that loading and compiling a configuration produce
 * (model/diag.c). The types are in model/resource-t.h (struct pt_diag, held by pt_resources). */
#ifndef PT_MODEL_DIAG_H
#define PT_MODEL_DIAG_H

#include <stdarg.h>
#include <stdio.h>

#include "model/resource-t.h"

/* pt_diag_add: appends one diagnostic to <d>. <o> (may be NULL) is copied, but o->file is
 * borrowed and must outlive <d> (resources keep file names in their arena). <object> is
 * "Kind/namespace/name", or NULL for a file-level problem; it is copied. The message is
 * printf-formatted. Errors are counted in d->nerrors. Aborts when memory is exhausted. */
void pt_diag_add(struct pt_diag *d, enum pt_diag_severity sev, const struct pt_origin *o,
                 const char *object, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* pt_diag_vadd: pt_diag_add with a va_list. */
void pt_diag_vadd(struct pt_diag *d, enum pt_diag_severity sev, const struct pt_origin *o,
                  const char *object, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

/* pt_diag_print: writes every entry of <d> to <out>, in the order added, one line each:
 *   errors   "FILE:LINE: Kind/namespace/name: message"
 *   notices  "FILE:LINE: Kind/namespace/name: notice: message"
 * ":LINE" is left out when the line is unknown (0) and "Kind/namespace/name: " when there is no
 * object. Messages never contain newlines (control bytes are printed as '?'). */
void pt_diag_print(const struct pt_diag *d, FILE *out);

/* pt_diag_free: frees the entries of <d> (not <d> itself); <d> is empty again. */
void pt_diag_free(struct pt_diag *d);

#endif
