/*
 * fuzz_imatrix.c - libFuzzer target: an importance matrix in either format
 * (GGUF or legacy .dat, detected by content). Anything accepted must keep
 * the header's promises: entries sorted by name and findable, weights
 * readable and non-negative.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "mergescope/imatrix.h"
#include "mergescope/banned.h"

static void check(const ms_imatrix *im)
{
    for (size_t i = 0; i < im->n_entries; i++) {
        const ms_imatrix_entry *en = &im->entries[i];
        MS_FUZZ_CHECK(en->name != NULL);
        if (i)
            MS_FUZZ_CHECK(strcmp(im->entries[i - 1].name, en->name) <= 0);
        MS_FUZZ_CHECK(ms_imatrix_find(im, en->name) != NULL);
        uint64_t n = (uint64_t)en->n_cols * en->n_mat;
        MS_FUZZ_CHECK(n == 0 || en->w != NULL);
        for (uint64_t k = 0; k < n; k++)
            MS_FUZZ_CHECK(!(en->w[k] < 0.0f));
    }
    (void)ms_imatrix_format_name(im->format);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ms_imatrix *im;
    ms_error e;
    ms_error_clear(&e);
    if (ms_imatrix_load_mem(data, size, "fuzz.imatrix", &im, &e) == MS_OK) {
        check(im);
        ms_imatrix_free(im);
    } else {
        MS_FUZZ_CHECK(e.code != MS_OK && e.msg[0]);
    }
    return 0;
}
