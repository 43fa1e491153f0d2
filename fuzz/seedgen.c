/*
 * seedgen.c - make small, valid seed inputs for the fuzz targets: usage
 * `ms-fuzz-seedgen SHARED_FIXTURES OUTDIR [GEN_DIR]`.
 *
 * Real files are megabytes; libFuzzer wants kilobytes. Each GGUF keeps its
 * whole metadata (tokenizer included) verbatim and each tensor keeps its
 * name, type and number of dims, with every dim shrunk to a block or two
 * and the first real bytes of its data, so the seeds are valid files with
 * realistic metadata and real quantized blocks. Safetensors files are
 * shrunk the same way. Recipes, config.json and imatrix.dat files are
 * copied. An optional GEN_DIR (the test fixtures that ms-fixtures
 * generates) adds its models, recipes, configs and indexes. A missing
 * fixture folder is skipped: the hand-written seeds still work.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mergescope/gguf.h"
#include "mergescope/safetensors.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        if (!b->p) {
            fprintf(stderr, "seedgen: out of memory\n");
            exit(1);
        }
    }
    if (n)
        memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_le(buf *b, uint64_t v, int n)
{
    uint8_t t[8];
    for (int i = 0; i < n; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, (size_t)n);
}

static void pad_to(buf *b, uint64_t align)
{
    static const uint8_t zero = 0;
    while (b->n % align)
        put(b, &zero, 1);
}

static int write_out(const char *dir, const char *name, const void *p, size_t n)
{
    char *path = ms_path_join(dir, name);
    FILE *fp = path ? fopen(path, "wb") : NULL;
    int ok = fp && fwrite(p, 1, n, fp) == n;
    if (fp && fclose(fp))
        ok = 0;
    if (!ok)
        fprintf(stderr, "seedgen: cannot write %s\n", path ? path : name);
    free(path);
    return ok;
}

/* ==== GGUF ==== */

/* How far a GGUF is shrunk: row length in blocks (plain types: elements)
 * and rows per higher dimension. */
typedef struct shrink {
    uint64_t blocks, plain, rows;
} shrink;

static uint64_t small_ne0(const ms_gguf_tensor *t, const shrink *s)
{
    uint64_t blk = ms_dtype_get(t->dtype)->block_elems;
    uint64_t want = blk == 1 ? s->plain : s->blocks * blk;
    return (uint64_t)t->ne[0] < want ? (uint64_t)t->ne[0] : want;
}

static int shrink_gguf_as(const char *src, const char *outdir, const char *name,
                          const shrink *s)
{
    ms_gguf_file *f;
    ms_error e;
    ms_error_clear(&e);
    if (ms_gguf_open(src, &f, &e) != MS_OK) {
        fprintf(stderr, "seedgen: %s: %s\n", src, e.msg);
        return 0;
    }
    buf b = {0};
    uint64_t meta_end = f->n_tensors ? f->tensors[0].info_offset : f->data_start;
    put(&b, f->data, (size_t)meta_end);
    uint64_t *size = calloc(f->n_tensors + 1, sizeof(*size));
    uint64_t off = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const ms_gguf_tensor *t = &f->tensors[i];
        uint64_t ne[4] = {small_ne0(t, s), 1, 1, 1}, n = ne[0];
        for (int d = 1; d < t->n_dims; d++) {
            ne[d] = (uint64_t)t->ne[d] < s->rows ? (uint64_t)t->ne[d] : s->rows;
            n *= ne[d];
        }
        ms_dtype_nbytes(t->dtype, n, &size[i]);
        put_le(&b, strlen(t->name), 8);
        put(&b, t->name, strlen(t->name));
        put_le(&b, (uint64_t)t->n_dims, 4);
        for (int d = 0; d < t->n_dims; d++)
            put_le(&b, ne[d], 8);
        put_le(&b, t->ggml_type, 4);
        put_le(&b, off, 8);
        off += size[i];
        off += (f->alignment - off % f->alignment) % f->alignment;
    }
    pad_to(&b, f->alignment);
    for (size_t i = 0; i < f->n_tensors; i++) {
        /* the first bytes of the real data: whole real blocks */
        uint64_t n = size[i] <= f->tensors[i].nbytes ? size[i] : f->tensors[i].nbytes;
        put(&b, f->data + f->tensors[i].offset, (size_t)n);
        pad_to(&b, f->alignment);
    }
    int ok = write_out(outdir, name, b.p, b.n);
    free(size);
    free(b.p);
    ms_gguf_close(f);
    return ok;
}

/* Parser seeds: two blocks by two rows. */
static int shrink_gguf(const char *src, const char *outdir, const char *name)
{
    const shrink s = {2, 64, 2};
    return shrink_gguf_as(src, outdir, name, &s);
}

/* Model seeds: 16 rows, enough for the Q/K head permutation to apply with
 * the files' head counts; one block per row to stay small. */
static int shrink_gguf_rows(const char *src, const char *outdir, const char *name)
{
    const shrink s = {1, 8, 16};
    return shrink_gguf_as(src, outdir, name, &s);
}

/* ==== safetensors ==== */

static int shrink_st(const char *src, const char *outdir, const char *name)
{
    ms_st_file *f;
    ms_error e;
    ms_error_clear(&e);
    if (ms_st_open(src, &f, &e) != MS_OK) {
        fprintf(stderr, "seedgen: %s: %s\n", src, e.msg);
        return 0;
    }
    cJSON *root = cJSON_CreateObject();
    if (f->n_metadata) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (size_t i = 0; i < f->n_metadata; i++)
            cJSON_AddStringToObject(meta, f->metadata[i].key, f->metadata[i].value);
    }
    uint64_t off = 0;
    uint64_t *size = calloc(f->n_tensors + 1, sizeof(*size));
    for (size_t i = 0; i < f->n_tensors; i++) {
        const ms_st_tensor *t = &f->tensors[i];
        cJSON *o = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(o, "dtype", ms_dtype_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        uint64_t n = 1;
        for (int d = 0; d < t->ndim; d++) {
            int64_t v = t->shape[d] < 4 ? t->shape[d] : 4;
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)v));
            n *= (uint64_t)v;
        }
        ms_dtype_nbytes(t->dtype, n, &size[i]);
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + size[i])));
        off += size[i];
    }
    char *json = cJSON_PrintUnformatted(root);
    buf b = {0};
    size_t hl = strlen(json), padded = (hl + 7) / 8 * 8;
    put_le(&b, padded, 8);
    put(&b, json, hl);
    while (b.n < 8 + padded)
        put(&b, " ", 1);
    for (size_t i = 0; i < f->n_tensors; i++)
        put(&b, f->data + f->tensors[i].offset, (size_t)size[i]);
    int ok = write_out(outdir, name, b.p, b.n);
    free(b.p);
    free(json);
    free(size);
    cJSON_Delete(root);
    ms_st_close(f);
    return ok;
}

/* ==== copies ==== */

static int copy_file(const char *src, const char *outdir, const char *name)
{
    char *text;
    size_t len;
    ms_error e;
    ms_error_clear(&e);
    if (ms_read_file(src, 1u << 20, &text, &len, &e) != MS_OK) {
        fprintf(stderr, "seedgen: %s: %s\n", src, e.msg);
        return 0;
    }
    int ok = write_out(outdir, name, text, len);
    free(text);
    return ok;
}

typedef int (*seed_fn)(const char *src, const char *outdir, const char *name);

/* Apply fn to every file in shared/rel whose name ends with suffix; the
 * seed is named prefix + file name. Recurses one level of folders. */
static int each(const char *shared, const char *rel, const char *suffix, const char *outdir,
                const char *prefix, seed_fn fn, int depth)
{
    char *dir = ms_path_join(shared, rel);
    DIR *d = dir ? opendir(dir) : NULL;
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *path = ms_path_join(dir, de->d_name);
        if (depth > 0 && ms_path_is_dir(path)) {
            char sub[512], pre[256];
            snprintf(sub, sizeof(sub), "%s/%s", rel, de->d_name);
            snprintf(pre, sizeof(pre), "%s%s-", prefix, de->d_name);
            n += each(shared, sub, suffix, outdir, pre, fn, depth - 1);
        } else if (ms_str_endswith(de->d_name, suffix)) {
            char name[512];
            snprintf(name, sizeof(name), "%s%s", prefix, de->d_name);
            n += fn(path, outdir, name);
        }
        free(path);
    }
    if (d)
        closedir(d);
    free(dir);
    return n;
}

static char *subdir(const char *out, const char *name)
{
    char *p = ms_path_join(out, name);
    if (p)
        mkdir(p, 0777);
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: ms-fuzz-seedgen SHARED_FIXTURES OUTDIR [GEN_DIR]\n");
        return 2;
    }
    const char *sh = argv[1];
    mkdir(argv[2], 0777);
    char *gg = subdir(argv[2], "gguf"), *st = subdir(argv[2], "safetensors");
    char *rc = subdir(argv[2], "recipe"), *cf = subdir(argv[2], "config");
    char *im = subdir(argv[2], "imatrix"), *mg = subdir(argv[2], "model_gguf");
    int n = 0;
    n += each(sh, "real-gguf/gguf", ".gguf", gg, "", shrink_gguf, 0);
    n += each(sh, "real-gguf/source", ".gguf", gg, "", shrink_gguf, 0);
    n += each(sh, "real-models/stories260K-family", ".gguf", gg, "", shrink_gguf, 0);
    n += each(sh, "real-gguf/source", ".safetensors", st, "", shrink_st, 0);
    n += each(sh, "real-models/stories260K-family", ".safetensors", st, "", shrink_st, 0);
    n += each(sh, "recipes", ".yml", rc, "", copy_file, 2);
    n += each(sh, "recipes", ".yaml", rc, "", copy_file, 2);
    n += each(sh, "real-gguf/source", "config.json", cf, "real-gguf-", copy_file, 0);
    n += each(sh, "real-models/stories260K-family", "config.json", cf, "stories-", copy_file,
              0);
    n += each(sh, "real-gguf/gguf", ".gguf", mg, "", shrink_gguf_rows, 0);
    n += each(sh, "real-models/stories260K-family", ".gguf", mg, "", shrink_gguf_rows, 0);
    n += each(sh, "real-gguf/source", "imatrix.gguf", im, "", shrink_gguf, 0);
    n += each(sh, "real-gguf/source", "imatrix.dat", im, "", copy_file, 0);
    if (argc == 4) {
        char *si = subdir(argv[2], "st_index");
        static const char *const fams[] = {"tiny", "demo"};
        for (size_t i = 0; i < MS_ARRAY_SIZE(fams); i++) {
            char pre[32];
            snprintf(pre, sizeof(pre), "%s-", fams[i]);
            n += each(argv[3], fams[i], ".safetensors", st, pre, shrink_st, 1);
            n += each(argv[3], fams[i], ".gguf", gg, pre, shrink_gguf, 1);
            n += each(argv[3], fams[i], ".gguf", mg, pre, shrink_gguf_rows, 1);
            n += each(argv[3], fams[i], ".yml", rc, pre, copy_file, 1);
            n += each(argv[3], fams[i], "config.json", cf, pre, copy_file, 1);
            n += each(argv[3], fams[i], "index.json", si, pre, copy_file, 1);
        }
        free(si);
    }
    printf("seedgen: %d seeds from %s%s%s\n", n, sh, argc == 4 ? " and " : "",
           argc == 4 ? argv[3] : "");
    free(gg);
    free(st);
    free(rc);
    free(cf);
    free(im);
    free(mg);
    return 0;
}
