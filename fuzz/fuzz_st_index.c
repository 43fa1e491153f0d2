/*
 * fuzz_st_index.c - libFuzzer target: model.safetensors.index.json text.
 * An accepted index must name only shard files inside the model directory.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "mergescope/safetensors.h"
#include "mergescope/banned.h"

/* Independent of the reader: split on '/' and look at each component. */
static int escapes(const char *file)
{
    if (file[0] == '/' || strchr(file, '\\'))
        return 1;
    for (const char *p = file;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || (len == 2 && p[0] == '.' && p[1] == '.'))
            return 1;
        if (!slash)
            return 0;
        p = slash + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char **names, **files;
    size_t n;
    ms_error e;
    ms_error_clear(&e);
    if (ms_st_index_parse((const char *)data, size, "fuzz.index.json", &names, &files, &n,
                          &e) == MS_OK) {
        MS_FUZZ_CHECK(n > 0);
        for (size_t i = 0; i < n; i++) {
            MS_FUZZ_CHECK(names[i] && files[i]);
            MS_FUZZ_CHECK(!escapes(files[i]));
        }
        ms_st_index_free(names, files, n);
    } else {
        MS_FUZZ_CHECK(e.code != MS_OK && e.msg[0]);
    }
    return 0;
}
