/*
 * fuzz_safetensors.c - libFuzzer target: one safetensors file image.
 * Anything the reader accepts must satisfy the header's promises: tensors
 * inside the file, sorted, disjoint, sizes consistent; then the start of
 * every tensor is decoded.
 */
#include <stdint.h>

#include "fuzz_common.h"
#include "mergescope/safetensors.h"
#include "mergescope/banned.h"

static void check(const ms_st_file *f, size_t size)
{
    uint64_t prev_end = f->data_start;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const ms_st_tensor *t = &f->tensors[i];
        MS_FUZZ_CHECK(t->offset >= f->data_start);
        MS_FUZZ_CHECK(t->offset <= size && t->nbytes <= size - t->offset);
        MS_FUZZ_CHECK(t->ndim >= 0 && t->ndim <= MS_MAX_DIMS);
        uint64_t n = 1;
        for (int d = 0; d < t->ndim; d++) {
            MS_FUZZ_CHECK(t->shape[d] >= 0);
            n *= (uint64_t)t->shape[d];
        }
        MS_FUZZ_CHECK(n == t->n_elems);
        if (t->nbytes) {
            MS_FUZZ_CHECK(t->offset >= prev_end);
            prev_end = t->offset + t->nbytes;
        }
        MS_FUZZ_CHECK(ms_st_find(f, t->name) != NULL);
        ms_fuzz_decode(t->dtype, f->data + t->offset, t->nbytes, t->n_elems);
    }
    for (size_t i = 0; i < f->n_metadata; i++)
        MS_FUZZ_CHECK(f->metadata[i].key && f->metadata[i].value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ms_st_file *f;
    ms_error e;
    ms_error_clear(&e);
    if (ms_st_open_mem(data, size, "fuzz.safetensors", &f, &e) == MS_OK) {
        check(f, size);
        ms_st_close(f);
    } else {
        MS_FUZZ_CHECK(e.code != MS_OK && e.msg[0]);
        MS_FUZZ_CHECK(e.offset >= -1 && (e.code != MS_ERR_FORMAT || e.offset >= 0));
    }
    return 0;
}
