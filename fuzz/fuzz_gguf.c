/*
 * fuzz_gguf.c - libFuzzer target: one GGUF file image. Anything accepted
 * must keep the header's promises (strings and tensors inside the file,
 * aligned, disjoint, sizes consistent); then every metadata value is walked
 * with the typed getters and the start of every tensor is dequantized.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mergescope/gguf.h"
#include "mergescope/banned.h"

static void walk(const ms_gguf_value *v, const uint8_t *data, size_t size, int depth)
{
    MS_FUZZ_CHECK(depth < 16);
    if (v->type == MS_GGUF_STRING) {
        const uint8_t *p = (const uint8_t *)v->v.s.ptr;
        MS_FUZZ_CHECK(p >= data && p <= data + size);
        MS_FUZZ_CHECK(v->v.s.len <= (uint64_t)(data + size - p));
    } else if (v->type == MS_GGUF_ARRAY) {
        MS_FUZZ_CHECK(v->v.arr.count == 0 || v->v.arr.items);
        for (uint64_t i = 0; i < v->v.arr.count; i++) {
            MS_FUZZ_CHECK(v->v.arr.items[i].type == v->v.arr.elem_type);
            walk(&v->v.arr.items[i], data, size, depth + 1);
        }
    }
}

static void check(const ms_gguf_file *f, const uint8_t *data, size_t size)
{
    MS_FUZZ_CHECK(f->version == 2 || f->version == 3);
    MS_FUZZ_CHECK(f->alignment && !(f->alignment & (f->alignment - 1)));
    MS_FUZZ_CHECK(f->data_start <= size);
    uint64_t n_tensors, n_kv;
    memcpy(&n_tensors, data + 8, 8);
    memcpy(&n_kv, data + 16, 8);
    MS_FUZZ_CHECK(n_tensors == f->n_tensors && n_kv == f->n_kvs);
    for (size_t i = 0; i < f->n_kvs; i++) {
        const ms_gguf_kv *kv = &f->kvs[i];
        MS_FUZZ_CHECK(ms_gguf_find_kv(f, kv->key) == kv);
        walk(&kv->value, data, size, 0);
        int64_t iv;
        double dv;
        (void)ms_gguf_get_int(f, kv->key, &iv);
        (void)ms_gguf_get_float(f, kv->key, &dv);
        free(ms_gguf_get_str(f, kv->key));
        (void)ms_gguf_type_name(kv->value.type);
    }
    for (size_t i = 0; i < f->n_tensors; i++) {
        const ms_gguf_tensor *t = &f->tensors[i];
        MS_FUZZ_CHECK(ms_gguf_find_tensor(f, t->name) == t);
        MS_FUZZ_CHECK(t->n_dims >= 1 && t->n_dims <= 4);
        uint64_t n = 1;
        for (int d = 0; d < 4; d++) {
            MS_FUZZ_CHECK(t->ne[d] > 0);
            n *= (uint64_t)t->ne[d];
        }
        MS_FUZZ_CHECK(n == t->n_elems);
        MS_FUZZ_CHECK(t->offset >= f->data_start);
        MS_FUZZ_CHECK((t->offset - f->data_start) % f->alignment == 0);
        MS_FUZZ_CHECK(t->offset <= size && t->nbytes <= size - t->offset);
        ms_fuzz_decode(t->dtype, data + t->offset, t->nbytes, t->n_elems);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ms_gguf_file *f;
    ms_error e;
    ms_error_clear(&e);
    if (ms_gguf_open_mem(data, size, "fuzz.gguf", &f, &e) == MS_OK) {
        check(f, data, size);
        ms_gguf_close(f);
    } else {
        MS_FUZZ_CHECK(e.code != MS_OK && e.msg[0]);
        /* every GGUF error points at a field inside the input */
        MS_FUZZ_CHECK(e.code != MS_ERR_FORMAT || e.offset >= 0);
        MS_FUZZ_CHECK(e.offset <= (int64_t)size);
    }
    return 0;
}
