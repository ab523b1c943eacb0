/* `portico check` (control/check.c). */
#ifndef PT_CONTROL_CHECK_H
#define PT_CONTROL_CHECK_H

#include <stdio.h>

/* pt_config_check: `portico check DIR`. Loads <dir> with the environment's settings, compiles
 * it as `run` would, prints every diagnostic (errors and notices) to <out>, and returns 1 if
 * there was any error, else 0. Applies nothing. */
int pt_config_check(const char *dir, FILE *out);

#endif
