/* libFuzzer target for the configuration loader (src/config/): any bytes as a YAML file must
 * load without crashing, leaking, hanging or using unbounded memory. It links every object of
 * src/ (no fuzz-sources line). Built and run by tests/fuzz/run.sh (`make fuzz`) over the seeds
 * in tests/fuzz/corpus/config/; alone: FUZZ_TARGETS=config FUZZ_SECONDS=30 make fuzz. */
// fuzz-options: -max_len=16384
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
