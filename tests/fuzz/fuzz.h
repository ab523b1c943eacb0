/* What every libFuzzer target of tests/fuzz/ shares: CHECK(cond), an invariant that aborts
 * (so libFuzzer keeps the input as a crash) with the file, line and condition. */
#ifndef PT_TESTS_FUZZ_H
#define PT_TESTS_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);      \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

#endif
