/*
 * gguf.c - validating reader for GGUF v2/v3 files.
 *
 * A cursor walks the mapped bytes; every read first checks that the bytes
 * are there, and every count is checked against the bytes that remain
 * (times the smallest size one element can have) before anything is
 * allocated, so a lying count fails at once instead of allocating.
 */
#include <stdlib.h>
#include <string.h>

#include "mergescope/gguf.h"
#include "mergescope/banned.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_NAME 64         /* ggml's GGML_MAX_NAME, NUL included */
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NESTING 8       /* arrays of arrays, deeper is hostile */
/* Decoded metadata values a file may hold in all its arrays: 8 Mi values
 * (256 MiB of ms_gguf_value), several times what the largest real
 * tokenizers need (~260k tokens plus scores, types and merges). */
#define GGUF_MAX_ITEMS (1u << 23)

/* Smallest encodings: a key/value is a key length, a type and one byte;
 * a tensor info is a name length, n_dims, one dim, a type and an offset. */
#define GGUF_MIN_KV_BYTES (8u + 4u + 1u)
#define GGUF_MIN_TENSOR_BYTES (8u + 4u + 8u + 4u + 8u)

typedef struct cursor {
    const uint8_t *data;
    uint64_t size;
    uint64_t pos;
    const char *path;
    ms_error *err;
    uint64_t items; /* decoded array items so far */
} cursor;

/* ==== low-level reads ==== */

static ms_status truncated(cursor *c, uint64_t need, const char *what)
{
    return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)c->pos,
                        "file truncated: %s needs %llu bytes, %llu remain", what,
                        (unsigned long long)need, (unsigned long long)(c->size - c->pos));
}

static bool have(const cursor *c, uint64_t n)
{
    return n <= c->size - c->pos;
}

static ms_status rd(cursor *c, void *out, size_t n, const char *what)
{
    if (!have(c, n))
        return truncated(c, n, what);
    /* The file is little-endian and so is every host we build for
     * (checked in ms_gguf_open_mem), so a copy is a decode. */
    memcpy(out, c->data + c->pos, n);
    c->pos += n;
    return MS_OK;
}

static ms_status rd_u32(cursor *c, uint32_t *v, const char *what)
{
    return rd(c, v, 4, what);
}

static ms_status rd_u64(cursor *c, uint64_t *v, const char *what)
{
    return rd(c, v, 8, what);
}

/* A GGUF string: u64 length then the bytes, left in the map. */
static ms_status rd_str(cursor *c, ms_gguf_str *s, const char *what)
{
    uint64_t at = c->pos, len = 0;
    ms_status st = rd_u64(c, &len, what);
    if (st)
        return st;
    if (!have(c, len)) {
        c->pos = at;
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)at,
                            "%s of %llu bytes runs past the end of the file "
                            "(%llu bytes remain)", what, (unsigned long long)len,
                            (unsigned long long)(c->size - c->pos - 8));
    }
    s->ptr = (const char *)c->data + c->pos;
    s->len = len;
    c->pos += len;
    return MS_OK;
}

/* ==== metadata values ==== */

/* Bytes a scalar of type t occupies; 0 for string, array and unknown. */
static uint64_t scalar_size(uint32_t t)
{
    switch (t) {
    case MS_GGUF_UINT8: case MS_GGUF_INT8: case MS_GGUF_BOOL: return 1;
    case MS_GGUF_UINT16: case MS_GGUF_INT16: return 2;
    case MS_GGUF_UINT32: case MS_GGUF_INT32: case MS_GGUF_FLOAT32: return 4;
    case MS_GGUF_UINT64: case MS_GGUF_INT64: case MS_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static bool type_known(uint32_t t)
{
    return t <= MS_GGUF_FLOAT64;
}

/* The fewest bytes one value of type t can take in the file. */
static uint64_t min_size(uint32_t t)
{
    if (t == MS_GGUF_STRING)
        return 8;
    if (t == MS_GGUF_ARRAY)
        return 12;
    return scalar_size(t);
}

static ms_status rd_scalar(cursor *c, uint32_t t, ms_gguf_value *v)
{
    uint64_t at = c->pos;
    uint8_t b[8];
    ms_status st = rd(c, b, (size_t)scalar_size(t), "metadata value");
    if (st)
        return st;
    uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
    float f32;
    switch (t) {
    case MS_GGUF_UINT8: memcpy(&u8, b, 1); v->v.u = u8; break;
    case MS_GGUF_INT8: memcpy(&i8, b, 1); v->v.i = i8; break;
    case MS_GGUF_UINT16: memcpy(&u16, b, 2); v->v.u = u16; break;
    case MS_GGUF_INT16: memcpy(&i16, b, 2); v->v.i = i16; break;
    case MS_GGUF_UINT32: memcpy(&u32, b, 4); v->v.u = u32; break;
    case MS_GGUF_INT32: memcpy(&i32, b, 4); v->v.i = i32; break;
    case MS_GGUF_FLOAT32: memcpy(&f32, b, 4); v->v.f = f32; break;
    case MS_GGUF_UINT64: memcpy(&v->v.u, b, 8); break;
    case MS_GGUF_INT64: memcpy(&v->v.i, b, 8); break;
    case MS_GGUF_FLOAT64: memcpy(&v->v.f, b, 8); break;
    case MS_GGUF_BOOL:
        if (b[0] > 1)
            return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)at,
                                "bool value %u is neither 0 nor 1", b[0]);
        v->v.u = b[0];
        break;
    default:
        break;
    }
    return MS_OK;
}

static ms_status rd_value(cursor *c, uint32_t t, int depth, ms_gguf_value *v);

static ms_status rd_array(cursor *c, int depth, ms_gguf_value *v)
{
    uint64_t at = c->pos;
    uint32_t et = 0;
    uint64_t count = 0;
    ms_status st = rd_u32(c, &et, "array element type");
    if (!st)
        st = rd_u64(c, &count, "array count");
    if (st)
        return st;
    if (!type_known(et))
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)at,
                            "unknown array element type %u", et);
    if (et == MS_GGUF_ARRAY && depth + 1 >= GGUF_MAX_NESTING)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)at,
                            "arrays nested deeper than %d levels", GGUF_MAX_NESTING);
    v->v.arr.elem_type = (ms_gguf_type)et;
    uint64_t need;
    if (!ms_mul_u64(count, min_size(et), &need) || !have(c, need))
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)at,
                            "array of %llu %s values cannot fit in the %llu bytes that "
                            "remain", (unsigned long long)count,
                            ms_gguf_type_name((ms_gguf_type)et),
                            (unsigned long long)(c->size - c->pos));
    if (count > GGUF_MAX_ITEMS - c->items)
        return ms_error_set(c->err, MS_ERR_UNSUPPORTED, c->path, (int64_t)at,
                            "metadata arrays hold more than %u values", GGUF_MAX_ITEMS);
    if (count == 0)
        return MS_OK;
    c->items += count;
    v->v.arr.items = ms_zalloc_array((size_t)count, sizeof(ms_gguf_value));
    if (!v->v.arr.items)
        return ms_error_set(c->err, MS_ERR_NOMEM, c->path, (int64_t)at, "out of memory");
    /* count is set as items are decoded so a failure frees only those. */
    for (uint64_t i = 0; i < count; i++) {
        st = rd_value(c, et, depth + 1, &v->v.arr.items[i]);
        v->v.arr.count = i + 1;
        if (st)
            return st;
    }
    return MS_OK;
}

static ms_status rd_value(cursor *c, uint32_t t, int depth, ms_gguf_value *v)
{
    v->type = (ms_gguf_type)t;
    if (t == MS_GGUF_STRING)
        return rd_str(c, &v->v.s, "string value");
    if (t == MS_GGUF_ARRAY)
        return rd_array(c, depth, v);
    return rd_scalar(c, t, v);
}

static void free_value(ms_gguf_value *v)
{
    if (v->type != MS_GGUF_ARRAY || !v->v.arr.items)
        return;
    for (uint64_t i = 0; i < v->v.arr.count; i++)
        free_value(&v->v.arr.items[i]);
    free(v->v.arr.items);
    v->v.arr.items = NULL;
}

/* A NUL-terminated copy of a name from the file; names with a NUL inside
 * would alias other names, so they are refused, and so are names that are
 * not UTF-8: keys and tensor names are matched, mapped and written to JSON
 * as text (string values are kept as they are and escaped where shown). */
static ms_status copy_name(cursor *c, uint64_t at, const ms_gguf_str *s, const char *what,
                           char **out)
{
    size_t bad = 0;
    if (memchr(s->ptr, '\0', (size_t)s->len))
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)at,
                            "%s contains a NUL byte", what);
    if (!ms_utf8_valid((const uint8_t *)s->ptr, (size_t)s->len, &bad))
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)(at + 8 + bad),
                            "%s is not valid UTF-8", what);
    *out = ms_strndup(s->ptr, (size_t)s->len);
    if (!*out)
        return ms_error_set(c->err, MS_ERR_NOMEM, c->path, (int64_t)at, "out of memory");
    return MS_OK;
}

static ms_status rd_kv(cursor *c, ms_gguf_kv *kv)
{
    kv->offset = c->pos;
    ms_gguf_str key;
    ms_status st = rd_str(c, &key, "key");
    if (!st)
        st = copy_name(c, kv->offset, &key, "key", &kv->key);
    if (st)
        return st;
    uint64_t at = c->pos;
    uint32_t t = 0;
    st = rd_u32(c, &t, "value type");
    if (st)
        return st;
    if (!type_known(t))
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)at,
                            "key '%s': unknown value type %u", kv->key, t);
    return rd_value(c, t, 0, &kv->value);
}

/* ==== names: duplicate detection ==== */

static int cmp_cstr_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Set *dup to a name that appears twice among n names, NULL if none. The
 * names are char* fields stride bytes apart, starting at first. */
static ms_status find_duplicate(char *const *first, size_t n, size_t stride,
                                const char **dup, ms_error *err, const char *path)
{
    *dup = NULL;
    if (n < 2)
        return MS_OK;
    char **names = ms_alloc_array(n, sizeof(*names));
    if (!names)
        return ms_error_set(err, MS_ERR_NOMEM, path, -1, "out of memory");
    for (size_t i = 0; i < n; i++)
        names[i] = *(char *const *)((const char *)first + i * stride);
    qsort(names, n, sizeof(*names), cmp_cstr_ptr);
    for (size_t i = 1; i < n && !*dup; i++)
        if (!strcmp(names[i - 1], names[i]))
            *dup = names[i];
    free(names);
    return MS_OK;
}

/* ==== tensor infos ==== */

static ms_status tensor_shape(cursor *c, ms_gguf_tensor *t)
{
    uint64_t at = c->pos;
    uint32_t nd = 0;
    ms_status st = rd_u32(c, &nd, "n_dims");
    if (st)
        return st;
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)at,
                            "tensor '%s': %u dims, expected 1 to %d", t->name, nd,
                            GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t n = 1;
    for (uint32_t i = 0; i < nd; i++) {
        at = c->pos;
        uint64_t ne = 0;
        if ((st = rd_u64(c, &ne, "dimension")))
            return st;
        if (ne == 0 || ne > INT64_MAX)
            return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)at,
                                "tensor '%s': dimension %u is %lld, must be positive",
                                t->name, i, (long long)ne);
        if (!ms_mul_u64(n, ne, &n) || n > INT64_MAX)
            return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)at,
                                "tensor '%s': element count overflows", t->name);
        t->ne[i] = (int64_t)ne;
    }
    for (uint32_t i = nd; i < GGUF_MAX_DIMS; i++)
        t->ne[i] = 1;
    t->n_elems = n;
    return MS_OK;
}

static ms_status tensor_type(cursor *c, ms_gguf_tensor *t)
{
    uint64_t at = c->pos;
    ms_status st = rd_u32(c, &t->ggml_type, "ggml type");
    if (st)
        return st;
    t->dtype = ms_dtype_from_ggml(t->ggml_type);
    if (t->dtype == MS_DTYPE_INVALID)
        return ms_error_set(c->err, MS_ERR_UNSUPPORTED, c->path, (int64_t)at,
                            "tensor '%s': unknown ggml type %u", t->name, t->ggml_type);
    const ms_dtype_info *in = ms_dtype_get(t->dtype);
    if ((uint64_t)t->ne[0] % in->block_elems)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)at,
                            "tensor '%s': row length %lld is not a multiple of the %s "
                            "block size %u", t->name, (long long)t->ne[0], in->name,
                            in->block_elems);
    if (!ms_dtype_nbytes(t->dtype, t->n_elems, &t->nbytes))
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)at,
                            "tensor '%s': byte size overflows", t->name);
    return MS_OK;
}

static ms_status rd_tensor_info(cursor *c, ms_gguf_tensor *t)
{
    t->info_offset = c->pos;
    ms_gguf_str name = {NULL, 0};
    ms_status st = rd_str(c, &name, "tensor name");
    if (st)
        return st;
    if (name.len >= GGUF_MAX_NAME)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)t->info_offset,
                            "tensor name of %llu bytes is longer than ggml's limit of %d",
                            (unsigned long long)name.len, GGUF_MAX_NAME - 1);
    if ((st = copy_name(c, t->info_offset, &name, "tensor name", &t->name)))
        return st;
    if ((st = tensor_shape(c, t)) || (st = tensor_type(c, t)))
        return st;
    /* offset is kept relative here and made absolute once data_start is known */
    return rd_u64(c, &t->offset, "tensor offset");
}

static int cmp_tensor_ptr_offset(const void *a, const void *b)
{
    const ms_gguf_tensor *x = *(const ms_gguf_tensor *const *)a;
    const ms_gguf_tensor *y = *(const ms_gguf_tensor *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Make offsets absolute, check each lies aligned inside the file, then
 * check no two overlap. */
static ms_status place_tensors(cursor *c, ms_gguf_file *f)
{
    for (size_t i = 0; i < f->n_tensors; i++) {
        ms_gguf_tensor *t = &f->tensors[i];
        uint64_t rel = t->offset, end;
        /* the offset field is the last 8 bytes of the info */
        int64_t field = (int64_t)(t->info_offset + 8 + strlen(t->name) + 4 +
                                  8 * (uint64_t)t->n_dims + 4);
        if (rel % f->alignment)
            return ms_error_set(c->err, MS_ERR_FORMAT, c->path, field,
                                "tensor '%s': data offset %llu is not a multiple of the "
                                "alignment %u", t->name, (unsigned long long)rel,
                                f->alignment);
        if (!ms_add_u64(f->data_start, rel, &t->offset) ||
            !ms_add_u64(t->offset, t->nbytes, &end) || end > c->size)
            return ms_error_set(c->err, MS_ERR_FORMAT, c->path, field,
                                "tensor '%s': data [%llu, +%llu) runs past the end of the "
                                "file (%llu bytes)", t->name, (unsigned long long)rel,
                                (unsigned long long)t->nbytes, (unsigned long long)c->size);
    }
    if (f->n_tensors < 2)
        return MS_OK;
    ms_gguf_tensor **by_off = ms_alloc_array(f->n_tensors, sizeof(*by_off));
    if (!by_off)
        return ms_error_set(c->err, MS_ERR_NOMEM, c->path, -1, "out of memory");
    for (size_t i = 0; i < f->n_tensors; i++)
        by_off[i] = &f->tensors[i];
    qsort(by_off, f->n_tensors, sizeof(*by_off), cmp_tensor_ptr_offset);
    ms_status st = MS_OK;
    for (size_t i = 1; i < f->n_tensors && !st; i++) {
        const ms_gguf_tensor *a = by_off[i - 1], *b = by_off[i];
        if (b->offset < a->offset + a->nbytes)
            st = ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)b->info_offset,
                              "tensor '%s' overlaps tensor '%s'", b->name, a->name);
    }
    free(by_off);
    return st;
}

/* ==== file structure ==== */

static ms_status rd_header(cursor *c, ms_gguf_file *f, uint64_t *n_tensors, uint64_t *n_kv)
{
    char magic[4];
    ms_status st = rd(c, magic, 4, "magic");
    if (st)
        return st;
    if (memcmp(magic, GGUF_MAGIC, 4))
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, 0, "not a GGUF file (bad magic)");
    if ((st = rd_u32(c, &f->version, "version")))
        return st;
    /* A big-endian file's version reads as v << 24 here. */
    if (f->version && !(f->version & 0xFFFF))
        return ms_error_set(c->err, MS_ERR_UNSUPPORTED, c->path, 4,
                            "big-endian GGUF files are not supported");
    if (f->version != 2 && f->version != 3)
        return ms_error_set(c->err, f->version == 1 || f->version > 3 ?
                            MS_ERR_UNSUPPORTED : MS_ERR_FORMAT, c->path, 4,
                            "GGUF version %u is not supported (only 2 and 3)", f->version);
    if ((st = rd_u64(c, n_tensors, "tensor count")) || (st = rd_u64(c, n_kv, "key count")))
        return st;
    uint64_t need_kv, need_t, need;
    if (!ms_mul_u64(*n_kv, GGUF_MIN_KV_BYTES, &need_kv) || !have(c, need_kv))
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, 16,
                            "key count %llu cannot fit in a file of %llu bytes",
                            (unsigned long long)*n_kv, (unsigned long long)c->size);
    if (!ms_mul_u64(*n_tensors, GGUF_MIN_TENSOR_BYTES, &need_t) ||
        !ms_add_u64(need_t, need_kv, &need) || !have(c, need))
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, 8,
                            "tensor count %llu cannot fit in a file of %llu bytes",
                            (unsigned long long)*n_tensors, (unsigned long long)c->size);
    return MS_OK;
}

static ms_status rd_kvs(cursor *c, ms_gguf_file *f, uint64_t n)
{
    if (n == 0)
        return MS_OK;
    f->kvs = ms_zalloc_array((size_t)n, sizeof(*f->kvs));
    if (!f->kvs)
        return ms_error_set(c->err, MS_ERR_NOMEM, c->path, -1, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        ms_status st = rd_kv(c, &f->kvs[f->n_kvs++]);
        if (st)
            return st;
    }
    const char *dup;
    ms_status st = find_duplicate(&f->kvs[0].key, f->n_kvs, sizeof(*f->kvs), &dup, c->err,
                                  c->path);
    if (st)
        return st;
    if (dup)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path,
                            (int64_t)ms_gguf_find_kv(f, dup)->offset,
                            "key '%s' appears twice", dup);
    return MS_OK;
}

static ms_status rd_alignment(cursor *c, ms_gguf_file *f)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const ms_gguf_kv *kv = ms_gguf_find_kv(f, "general.alignment");
    if (!kv)
        return MS_OK;
    if (kv->value.type != MS_GGUF_UINT32)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)kv->offset,
                            "general.alignment is %s, must be u32",
                            ms_gguf_type_name(kv->value.type));
    uint64_t a = kv->value.v.u;
    if (a == 0 || (a & (a - 1)))
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)kv->offset,
                            "general.alignment %llu is not a power of two",
                            (unsigned long long)a);
    f->alignment = (uint32_t)a;
    return MS_OK;
}

static ms_status rd_tensors(cursor *c, ms_gguf_file *f, uint64_t n)
{
    if (n) {
        f->tensors = ms_zalloc_array((size_t)n, sizeof(*f->tensors));
        if (!f->tensors)
            return ms_error_set(c->err, MS_ERR_NOMEM, c->path, -1, "out of memory");
    }
    for (uint64_t i = 0; i < n; i++) {
        ms_status st = rd_tensor_info(c, &f->tensors[f->n_tensors++]);
        if (st)
            return st;
    }
    if (n) {
        const char *dup;
        ms_status st = find_duplicate(&f->tensors[0].name, f->n_tensors, sizeof(*f->tensors),
                                      &dup, c->err, c->path);
        if (st)
            return st;
        if (dup)
            return ms_error_set(c->err, MS_ERR_FORMAT, c->path,
                                (int64_t)ms_gguf_find_tensor(f, dup)->info_offset,
                                "tensor '%s' appears twice", dup);
    }
    /* data starts at the next multiple of the alignment */
    uint64_t pad = (f->alignment - c->pos % f->alignment) % f->alignment;
    f->data_start = c->pos + pad;
    if (f->data_start > c->size) {
        if (n)
            return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)c->size,
                                "file truncated before the data section (at %llu)",
                                (unsigned long long)f->data_start);
        f->data_start = c->size;
    }
    return place_tensors(c, f);
}

static ms_status parse(cursor *c, ms_gguf_file *f)
{
    uint64_t n_tensors = 0, n_kv = 0;
    ms_status st = rd_header(c, f, &n_tensors, &n_kv);
    if (!st)
        st = rd_kvs(c, f, n_kv);
    if (!st)
        st = rd_alignment(c, f);
    if (!st)
        st = rd_tensors(c, f, n_tensors);
    return st;
}

/* ==== public API ==== */

static bool host_is_little_endian(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static ms_status open_common(ms_gguf_file *f, const char *label, ms_error *err)
{
    f->path = ms_strdup(label ? label : "");
    if (!f->path)
        return ms_error_set(err, MS_ERR_NOMEM, label, -1, "out of memory");
    if (!host_is_little_endian())
        return ms_error_set(err, MS_ERR_UNSUPPORTED, f->path, -1,
                            "reading GGUF needs a little-endian host");
    cursor c = {f->data, f->size, 0, f->path, err, 0};
    return parse(&c, f);
}

ms_status ms_gguf_open_mem(const void *buf, size_t len, const char *label,
                           ms_gguf_file **out, ms_error *err)
{
    *out = NULL;
    ms_gguf_file *f = calloc(1, sizeof(*f));
    if (!f)
        return ms_error_set(err, MS_ERR_NOMEM, label, -1, "out of memory");
    f->map.fd = -1;
    f->data = buf;
    f->size = len;
    ms_status st = open_common(f, label, err);
    if (st) {
        ms_gguf_close(f);
        return st;
    }
    *out = f;
    return MS_OK;
}

ms_status ms_gguf_open(const char *path, ms_gguf_file **out, ms_error *err)
{
    *out = NULL;
    ms_gguf_file *f = calloc(1, sizeof(*f));
    if (!f)
        return ms_error_set(err, MS_ERR_NOMEM, path, -1, "out of memory");
    ms_status st = ms_map_open(path, &f->map, err);
    if (st) {
        free(f);
        return st;
    }
    f->data = f->map.data;
    f->size = f->map.size;
    st = open_common(f, path, err);
    if (st) {
        ms_gguf_close(f);
        return st;
    }
    *out = f;
    return MS_OK;
}

void ms_gguf_close(ms_gguf_file *f)
{
    if (!f)
        return;
    if (f->map.data || f->map.fd >= 0)
        ms_map_close(&f->map);
    for (size_t i = 0; i < f->n_kvs; i++) {
        free(f->kvs[i].key);
        free_value(&f->kvs[i].value);
    }
    free(f->kvs);
    for (size_t i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    free(f->path);
    free(f);
}

const ms_gguf_kv *ms_gguf_find_kv(const ms_gguf_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_kvs; i++)
        if (f->kvs[i].key && !strcmp(f->kvs[i].key, key))
            return &f->kvs[i];
    return NULL;
}

const ms_gguf_tensor *ms_gguf_find_tensor(const ms_gguf_file *f, const char *name)
{
    for (size_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].name && !strcmp(f->tensors[i].name, name))
            return &f->tensors[i];
    return NULL;
}

static bool is_unsigned(ms_gguf_type t)
{
    return t == MS_GGUF_UINT8 || t == MS_GGUF_UINT16 || t == MS_GGUF_UINT32 ||
           t == MS_GGUF_UINT64;
}

static bool is_signed(ms_gguf_type t)
{
    return t == MS_GGUF_INT8 || t == MS_GGUF_INT16 || t == MS_GGUF_INT32 ||
           t == MS_GGUF_INT64;
}

bool ms_gguf_get_int(const ms_gguf_file *f, const char *key, int64_t *out)
{
    const ms_gguf_kv *kv = ms_gguf_find_kv(f, key);
    if (!kv)
        return false;
    if (is_signed(kv->value.type)) {
        *out = kv->value.v.i;
        return true;
    }
    if (is_unsigned(kv->value.type) && kv->value.v.u <= INT64_MAX) {
        *out = (int64_t)kv->value.v.u;
        return true;
    }
    return false;
}

bool ms_gguf_get_float(const ms_gguf_file *f, const char *key, double *out)
{
    const ms_gguf_kv *kv = ms_gguf_find_kv(f, key);
    if (!kv)
        return false;
    ms_gguf_type t = kv->value.type;
    if (t == MS_GGUF_FLOAT32 || t == MS_GGUF_FLOAT64)
        *out = kv->value.v.f;
    else if (is_signed(t))
        *out = (double)kv->value.v.i;
    else if (is_unsigned(t))
        *out = (double)kv->value.v.u;
    else
        return false;
    return true;
}

char *ms_gguf_get_str(const ms_gguf_file *f, const char *key)
{
    const ms_gguf_kv *kv = ms_gguf_find_kv(f, key);
    if (!kv || kv->value.type != MS_GGUF_STRING)
        return NULL;
    return ms_strndup(kv->value.v.s.ptr, (size_t)kv->value.v.s.len);
}

const char *ms_gguf_type_name(ms_gguf_type t)
{
    static const char *const names[] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr",
        "u64", "i64", "f64",
    };
    if ((unsigned)t < MS_ARRAY_SIZE(names))
        return names[t];
    return "unknown";
}
