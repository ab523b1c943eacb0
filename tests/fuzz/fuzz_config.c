/* libFuzzer target for the configuration loader (src/config/): any bytes as a YAML file must
 * load without crashing, leaking, hanging or using unbounded memory. Build and run:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc \
 *     tests/fuzz/fuzz_config.c src/config/[a-z]*.c src/core/arena.c src/core/strmap.c \
 *     src/core/common.c src/core/log.c -lyaml -o build/fuzz_config
 *   build/fuzz_config -max_len=65536 tests/fuzz/corpus/config */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/load.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    struct pt_resources *r = pt_config_load_string(text, "fuzz.yaml", NULL);
    pt_resources_free(r);
    free(text);
    return 0;
}
