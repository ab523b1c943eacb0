/* Status-code messages and the aborting allocators used by start-up and config code. */
#include "core/common.h"

#include <stdio.h>
#include <stdlib.h>

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
