/*
 * imatrix.c - llama.cpp importance matrices (GGUF and legacy .dat).
 */
#include <stdlib.h>
#include <string.h>

#include "mergescope/gguf.h"
#include "mergescope/imatrix.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* No real model has more; a bound keeps a hostile count from driving
 * allocation. */
#define MAX_ENTRIES 1000000u

const char *ms_imatrix_format_name(ms_imatrix_format f)
{
    return f == MS_IMATRIX_GGUF ? "gguf" : "dat";
}

void ms_imatrix_free(ms_imatrix *im)
{
    if (!im)
        return;
    for (size_t i = 0; i < im->n_entries; i++) {
        free(im->entries[i].name);
        free(im->entries[i].w);
    }
    free(im->entries);
    free(im->path);
    free(im->dataset);
    free(im);
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const ms_imatrix_entry *)a)->name, ((const ms_imatrix_entry *)b)->name);
}

const ms_imatrix_entry *ms_imatrix_find(const ms_imatrix *im, const char *gguf_name)
{
    ms_imatrix_entry key = {0};
    key.name = (char *)gguf_name;
    return bsearch(&key, im->entries, im->n_entries, sizeof(key), entry_cmp);
}

/* Sort, and refuse duplicate names (a merged or corrupt file). */
static ms_status finish(ms_imatrix *im, const char *label, ms_error *err)
{
    qsort(im->entries, im->n_entries, sizeof(*im->entries), entry_cmp);
    for (size_t i = 1; i < im->n_entries; i++)
        if (!strcmp(im->entries[i - 1].name, im->entries[i].name))
            return ms_error_set(err, MS_ERR_FORMAT, label, -1,
                                "duplicate imatrix entry '%s'", im->entries[i].name);
    return MS_OK;
}

/* ==== legacy .dat ==== */

typedef struct rd {
    const uint8_t *p;
    size_t len, pos;
    const char *label;
} rd;

static ms_status rd_i32(rd *r, int32_t *v, const char *what, ms_error *err)
{
    if (r->len - r->pos < 4)
        return ms_error_set(err, MS_ERR_FORMAT, r->label, (int64_t)r->pos,
                            "truncated imatrix: %s", what);
    uint32_t u = (uint32_t)r->p[r->pos] | (uint32_t)r->p[r->pos + 1] << 8 |
                 (uint32_t)r->p[r->pos + 2] << 16 | (uint32_t)r->p[r->pos + 3] << 24;
    memcpy(v, &u, 4);
    r->pos += 4;
    return MS_OK;
}

static ms_status dat_entry(rd *r, ms_imatrix_entry *e, ms_error *err)
{
    int32_t name_len = 0, ncall = 0, nval = 0;
    size_t at = r->pos;
    ms_status st = rd_i32(r, &name_len, "name length", err);
    if (st)
        return st;
    if (name_len <= 0 || (size_t)name_len > r->len - r->pos || name_len > 4096)
        return ms_error_set(err, MS_ERR_FORMAT, r->label, (int64_t)at,
                            "bad imatrix entry name length %d", (int)name_len);
    e->name = ms_strndup((const char *)r->p + r->pos, (size_t)name_len);
    if (!e->name)
        return ms_error_set(err, MS_ERR_NOMEM, r->label, -1, "out of memory");
    if (strlen(e->name) != (size_t)name_len)
        return ms_error_set(err, MS_ERR_FORMAT, r->label, (int64_t)r->pos,
                            "imatrix entry name contains a NUL byte");
    r->pos += (size_t)name_len;
    at = r->pos;
    if ((st = rd_i32(r, &ncall, "call count", err)) || (st = rd_i32(r, &nval, "value count", err)))
        return st;
    if (ncall < 0 || nval <= 0 || (size_t)nval > (r->len - r->pos) / 4)
        return ms_error_set(err, MS_ERR_FORMAT, r->label, (int64_t)at,
                            "bad imatrix entry '%s': ncall %d, %d values", e->name,
                            (int)ncall, (int)nval);
    e->n_cols = (uint32_t)nval;
    e->n_mat = 1;
    e->count = ncall;
    e->w = malloc((size_t)nval * sizeof(float));
    if (!e->w)
        return ms_error_set(err, MS_ERR_NOMEM, r->label, -1, "out of memory");
    for (int32_t j = 0; j < nval; j++) {
        float v;
        memcpy(&v, r->p + r->pos + 4 * (size_t)j, 4);
        /* stored as mean * ncall; llama-quantize divides by ncall */
        double w = ncall > 0 ? (double)v / ncall : 1.0;
        if (!(w >= 0) || w > 3.4e38)
            return ms_error_set(err, MS_ERR_FORMAT, r->label,
                                (int64_t)(r->pos + 4 * (size_t)j),
                                "imatrix entry '%s' has a negative or non-finite value",
                                e->name);
        e->w[j] = (float)w;
    }
    r->pos += 4 * (size_t)nval;
    return MS_OK;
}

static ms_status load_dat(const uint8_t *p, size_t len, ms_imatrix *im, ms_error *err)
{
    rd r = {p, len, 0, im->path};
    int32_t n = 0;
    ms_status st = rd_i32(&r, &n, "entry count", err);
    if (st)
        return st;
    /* each entry needs at least 17 bytes */
    if (n <= 0 || (uint32_t)n > MAX_ENTRIES || (size_t)n > (len - 4) / 17)
        return ms_error_set(err, MS_ERR_FORMAT, im->path, 0,
                            "bad imatrix entry count %d", (int)n);
    im->entries = calloc((size_t)n, sizeof(*im->entries));
    if (!im->entries)
        return ms_error_set(err, MS_ERR_NOMEM, im->path, -1, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        im->n_entries++;
        if ((st = dat_entry(&r, &im->entries[i], err)))
            return st;
    }
    /* optional trailer: chunk count, dataset name length, the name; when
     * present it must account for every remaining byte */
    size_t at = r.pos;
    if (len == r.pos)
        return MS_OK;
    int32_t chunks = 0, dlen = 0;
    if ((st = rd_i32(&r, &chunks, "chunk count", err)) ||
        (st = rd_i32(&r, &dlen, "dataset name length", err)))
        return st;
    if (chunks < 0 || dlen < 0 || (size_t)dlen != len - r.pos)
        return ms_error_set(err, MS_ERR_FORMAT, im->path, (int64_t)at,
                            "bad imatrix trailer: %d chunks, dataset name of %d bytes "
                            "with %zu bytes left", (int)chunks, (int)dlen, len - r.pos);
    im->chunk_count = chunks;
    if (dlen > 0 && !(im->dataset = ms_strndup((const char *)p + r.pos, (size_t)dlen)))
        return ms_error_set(err, MS_ERR_NOMEM, im->path, -1, "out of memory");
    return MS_OK;
}

/* ==== GGUF ==== */

static const ms_gguf_tensor *f32_tensor(const ms_gguf_file *f, const char *base,
                                        const char *suffix, ms_error *err)
{
    char name[512];
    int n = snprintf(name, sizeof(name), "%s%s", base, suffix);
    const ms_gguf_tensor *t = n > 0 && (size_t)n < sizeof(name) ? ms_gguf_find_tensor(f, name) : NULL;
    if (!t) {
        ms_error_set(err, MS_ERR_FORMAT, f->path, -1, "imatrix tensor '%s%s' is missing",
                     base, suffix);
        return NULL;
    }
    if (t->dtype != MS_DTYPE_F32) {
        ms_error_set(err, MS_ERR_FORMAT, f->path, (int64_t)t->info_offset,
                     "imatrix tensor '%s' is %s, not F32", t->name, ms_dtype_name(t->dtype));
        return NULL;
    }
    return t;
}

static ms_status gguf_entry(const ms_gguf_file *f, const ms_gguf_tensor *sum2,
                            ms_imatrix_entry *e, ms_error *err)
{
    size_t blen = strlen(sum2->name) - strlen(".in_sum2");
    e->name = ms_strndup(sum2->name, blen);
    if (!e->name)
        return ms_error_set(err, MS_ERR_NOMEM, f->path, -1, "out of memory");
    const ms_gguf_tensor *cnt = f32_tensor(f, e->name, ".counts", err);
    if (!cnt)
        return err->code;
    int64_t n_mat = sum2->n_dims > 1 ? sum2->ne[1] : 1;
    if (sum2->n_dims > 2 || sum2->ne[0] <= 0 || sum2->ne[0] > UINT32_MAX || n_mat <= 0 ||
        n_mat > 65536 || cnt->n_elems != (uint64_t)n_mat)
        return ms_error_set(err, MS_ERR_FORMAT, f->path, (int64_t)sum2->info_offset,
                            "imatrix tensors of '%s' have inconsistent shapes", e->name);
    e->n_cols = (uint32_t)sum2->ne[0];
    e->n_mat = (uint32_t)n_mat;
    e->w = ms_alloc_array(sum2->n_elems, sizeof(float));
    if (!e->w)
        return ms_error_set(err, MS_ERR_NOMEM, f->path, -1, "out of memory");
    const uint8_t *s = f->data + sum2->offset, *c = f->data + cnt->offset;
    for (int64_t m = 0; m < n_mat; m++) {
        float count;
        memcpy(&count, c + 4 * m, 4);
        if (!(count >= 0) || count > 3.4e38f)
            return ms_error_set(err, MS_ERR_FORMAT, f->path, (int64_t)(cnt->offset + 4 * m),
                                "imatrix count of '%s' is negative or not finite", e->name);
        if (m == 0)
            e->count = count;
        for (uint32_t j = 0; j < e->n_cols; j++) {
            float v;
            size_t k = (size_t)m * e->n_cols + j;
            memcpy(&v, s + 4 * k, 4);
            /* llama.cpp's loader: in_sum2 / counts, 1 where nothing was seen */
            double w = count > 0 ? (double)v / count : 1.0;
            if (!(w >= 0) || w > 3.4e38)
                return ms_error_set(err, MS_ERR_FORMAT, f->path, (int64_t)(sum2->offset + 4 * k),
                                    "imatrix value of '%s' is negative or not finite", e->name);
            e->w[k] = (float)w;
        }
    }
    return MS_OK;
}

static ms_status load_gguf(const uint8_t *p, size_t len, ms_imatrix *im, ms_error *err)
{
    ms_gguf_file *f = NULL;
    ms_status st = ms_gguf_open_mem(p, len, im->path, &f, err);
    if (st)
        return st;
    char *type = ms_gguf_get_str(f, "general.type");
    if (!type || strcmp(type, "imatrix")) {
        st = ms_error_set(err, MS_ERR_FORMAT, im->path, -1,
                          "not an imatrix GGUF (general.type is '%s')", type ? type : "");
        goto out;
    }
    int64_t chunks;
    im->chunk_count = ms_gguf_get_int(f, "imatrix.chunk_count", &chunks) ? chunks : -1;
    const ms_gguf_kv *ds = ms_gguf_find_kv(f, "imatrix.datasets");
    if (ds && ds->value.type == MS_GGUF_ARRAY && ds->value.v.arr.elem_type == MS_GGUF_STRING &&
        ds->value.v.arr.count > 0)
        im->dataset = ms_strndup(ds->value.v.arr.items[0].v.s.ptr,
                                 (size_t)ds->value.v.arr.items[0].v.s.len);
    size_t n = 0;
    for (size_t i = 0; i < f->n_tensors; i++)
        n += ms_str_endswith(f->tensors[i].name, ".in_sum2");
    im->entries = ms_zalloc_array(n ? n : 1, sizeof(*im->entries));
    if (!im->entries) {
        st = ms_error_set(err, MS_ERR_NOMEM, im->path, -1, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < f->n_tensors && !st; i++) {
        if (!ms_str_endswith(f->tensors[i].name, ".in_sum2"))
            continue;
        st = gguf_entry(f, &f->tensors[i], &im->entries[im->n_entries++], err);
    }
    if (!st && !im->n_entries)
        st = ms_error_set(err, MS_ERR_FORMAT, im->path, -1, "imatrix GGUF has no entries");
out:
    free(type);
    ms_gguf_close(f);
    return st;
}

ms_status ms_imatrix_load_mem(const void *buf, size_t len, const char *label,
                              ms_imatrix **out, ms_error *err)
{
    *out = NULL;
    ms_imatrix *im = calloc(1, sizeof(*im));
    if (!im || !(im->path = ms_strdup(label ? label : "<imatrix>"))) {
        free(im);
        return ms_error_set(err, MS_ERR_NOMEM, label, -1, "out of memory");
    }
    im->chunk_count = -1;
    ms_status st;
    if (len >= 4 && !memcmp(buf, "GGUF", 4)) {
        im->format = MS_IMATRIX_GGUF;
        st = load_gguf(buf, len, im, err);
    } else {
        im->format = MS_IMATRIX_DAT;
        st = load_dat(buf, len, im, err);
    }
    if (!st)
        st = finish(im, im->path, err);
    if (st) {
        ms_imatrix_free(im);
        return st;
    }
    *out = im;
    return MS_OK;
}

ms_status ms_imatrix_load(const char *path, ms_imatrix **out, ms_error *err)
{
    ms_map map;
    *out = NULL;
    ms_status st = ms_map_open(path, &map, err);
    if (st)
        return st;
    if (map.size > SIZE_MAX) {
        ms_map_close(&map);
        return ms_error_set(err, MS_ERR_FORMAT, path, -1, "imatrix file too large");
    }
    st = ms_imatrix_load_mem(map.data, (size_t)map.size, path, out, err);
    ms_map_close(&map);
    return st;
}
