/*
 * safetensors.c - validating reader for .safetensors files and for
 * model.safetensors.index.json.
 *
 * The header is untrusted: its length is checked against the file and a cap
 * before cJSON sees it, every number is checked to be a non-negative integer
 * that a double holds exactly, every size is computed with overflow checks,
 * and the tensors are sorted by data offset so overlap is one linear pass.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/safetensors.h"
#include "mergescope/banned.h"

/* Integers above 2^53 are not exact in a double; no real offset or dim is. */
#define ST_MAX_EXACT 9007199254740992.0
/* JSON values a header or index may hold. cJSON spends ~64 bytes a value,
 * so this bounds its memory (256 MiB) whatever the text; real headers hold
 * about ten values per tensor. */
#define ST_MAX_JSON_VALUES (4u << 20)

typedef struct st_ctx {
    const char *path;
    const uint8_t *data;
    uint64_t size;
    uint64_t data_start;
    ms_error *err;
} st_ctx;

/* ==== small helpers ==== */

static uint64_t read_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* An upper bound on the values in JSON text: every value but the first
 * follows a '[', ',' or ':' outside a string. */
static uint64_t json_value_bound(const char *s, size_t n)
{
    uint64_t count = 1;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch == '[' || ch == ',' || ch == ':') {
            count++;
        }
    }
    return count;
}

/* A JSON number that is a non-negative integer held exactly by a double. */
static bool json_uint(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double d = item->valuedouble;
    if (!(d >= 0.0) || d > ST_MAX_EXACT || d != (double)(uint64_t)d)
        return false;
    *out = (uint64_t)d;
    return true;
}

static ms_status fmt_err(st_ctx *c, int64_t off, const char *what, const char *name)
{
    return ms_error_set(c->err, MS_ERR_FORMAT, c->path, off, "tensor '%s': %s", name, what);
}

/* ==== header entries ==== */

static ms_status parse_metadata(st_ctx *c, const cJSON *obj, ms_st_file *f)
{
    if (!cJSON_IsObject(obj))
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, 8,
                            "__metadata__ is not an object");
    size_t n = (size_t)cJSON_GetArraySize(obj);
    if (n == 0)
        return MS_OK;
    f->metadata = ms_zalloc_array(n, sizeof(*f->metadata));
    if (!f->metadata)
        return ms_error_set(c->err, MS_ERR_NOMEM, c->path, -1, "out of memory");
    for (const cJSON *kv = obj->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return ms_error_set(c->err, MS_ERR_FORMAT, c->path, 8,
                                "__metadata__ value of '%s' is not a string", kv->string);
        ms_st_kv *m = &f->metadata[f->n_metadata];
        m->key = ms_strdup(kv->string);
        m->value = ms_strdup(kv->valuestring);
        f->n_metadata++;
        if (!m->key || !m->value)
            return ms_error_set(c->err, MS_ERR_NOMEM, c->path, -1, "out of memory");
    }
    return MS_OK;
}

static ms_status parse_shape(st_ctx *c, const cJSON *shape, ms_st_tensor *t)
{
    if (!cJSON_IsArray(shape))
        return fmt_err(c, 8, "shape is missing or not an array", t->name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > MS_MAX_DIMS)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, 8,
                            "tensor '%s': %d dims, at most %d supported", t->name, nd,
                            MS_MAX_DIMS);
    t->ndim = nd;
    uint64_t n = 1;
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return fmt_err(c, 8, "shape entry is not a non-negative integer", t->name);
        if (!ms_mul_u64(n, v, &n))
            return fmt_err(c, 8, "element count overflows", t->name);
        t->shape[i] = (int64_t)v;
    }
    t->n_elems = n;
    return MS_OK;
}

static ms_status parse_tensor(st_ctx *c, const cJSON *obj, ms_st_tensor *t)
{
    t->name = ms_strdup(obj->string);
    if (!t->name)
        return ms_error_set(c->err, MS_ERR_NOMEM, c->path, -1, "out of memory");
    if (!cJSON_IsObject(obj))
        return fmt_err(c, 8, "entry is not an object", t->name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
    if (!cJSON_IsString(dt))
        return fmt_err(c, 8, "dtype is missing or not a string", t->name);
    t->dtype = ms_dtype_from_safetensors(dt->valuestring);
    if (t->dtype == MS_DTYPE_INVALID)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, 8,
                            "tensor '%s': unknown dtype '%.40s'", t->name, dt->valuestring);
    ms_status st = parse_shape(c, cJSON_GetObjectItemCaseSensitive(obj, "shape"), t);
    if (st)
        return st;
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(obj, "data_offsets");
    uint64_t begin, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !json_uint(offs->child, &begin) || !json_uint(offs->child->next, &end))
        return fmt_err(c, 8, "data_offsets is not two non-negative integers", t->name);
    /* begin <= 2^53 and data_start < 2^27, so the sum cannot overflow. */
    t->offset = c->data_start + begin;
    if (end < begin)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)t->offset,
                            "tensor '%s': data ends (%llu) before it begins (%llu)", t->name,
                            (unsigned long long)end, (unsigned long long)begin);
    t->nbytes = end - begin;
    uint64_t want;
    if (!ms_dtype_nbytes(t->dtype, t->n_elems, &want))
        return fmt_err(c, 8, "byte size overflows", t->name);
    if (want != t->nbytes)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)t->offset,
                            "tensor '%s': %llu bytes of data for %llu elements of %s "
                            "(expected %llu)", t->name, (unsigned long long)t->nbytes,
                            (unsigned long long)t->n_elems, ms_dtype_name(t->dtype),
                            (unsigned long long)want);
    if (end > c->size - c->data_start)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)t->offset,
                            "tensor '%s': data [%llu, %llu) runs past the end of the file "
                            "(%llu bytes of data)", t->name, (unsigned long long)begin,
                            (unsigned long long)end,
                            (unsigned long long)(c->size - c->data_start));
    return MS_OK;
}

static int cmp_offset(const void *a, const void *b)
{
    const ms_st_tensor *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_name_ptr(const void *a, const void *b)
{
    const ms_st_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Sort by offset, then reject overlap and duplicate names. */
static ms_status check_layout(st_ctx *c, ms_st_file *f)
{
    if (f->n_tensors == 0)
        return MS_OK;
    qsort(f->tensors, f->n_tensors, sizeof(*f->tensors), cmp_offset);
    uint64_t max_end = 0;
    const char *owner = NULL;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const ms_st_tensor *t = &f->tensors[i];
        if (t->nbytes == 0)
            continue; /* occupies no bytes, cannot overlap */
        if (owner && t->offset < max_end)
            return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)t->offset,
                                "tensor '%s' overlaps tensor '%s'", t->name, owner);
        max_end = t->offset + t->nbytes;
        owner = t->name;
    }
    const ms_st_tensor **by_name = ms_alloc_array(f->n_tensors, sizeof(*by_name));
    if (!by_name)
        return ms_error_set(c->err, MS_ERR_NOMEM, c->path, -1, "out of memory");
    for (size_t i = 0; i < f->n_tensors; i++)
        by_name[i] = &f->tensors[i];
    qsort(by_name, f->n_tensors, sizeof(*by_name), cmp_name_ptr);
    ms_status st = MS_OK;
    for (size_t i = 1; i < f->n_tensors && !st; i++)
        if (!strcmp(by_name[i - 1]->name, by_name[i]->name))
            st = ms_error_set(c->err, MS_ERR_FORMAT, c->path, 8,
                              "tensor '%s' appears twice in the header", by_name[i]->name);
    free(by_name);
    return st;
}

static ms_status parse_header(st_ctx *c, const cJSON *root, ms_st_file *f)
{
    if (!cJSON_IsObject(root))
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, 8,
                            "header is not a JSON object");
    size_t n = (size_t)cJSON_GetArraySize(root);
    if (n) {
        f->tensors = ms_zalloc_array(n, sizeof(*f->tensors));
        if (!f->tensors)
            return ms_error_set(c->err, MS_ERR_NOMEM, c->path, -1, "out of memory");
    }
    bool seen_meta = false;
    for (const cJSON *it = root->child; it; it = it->next) {
        ms_status st;
        if (!strcmp(it->string, "__metadata__")) {
            if (seen_meta)
                return ms_error_set(c->err, MS_ERR_FORMAT, c->path, 8,
                                    "__metadata__ appears twice in the header");
            seen_meta = true;
            st = parse_metadata(c, it, f);
        } else {
            st = parse_tensor(c, it, &f->tensors[f->n_tensors++]);
        }
        if (st)
            return st;
    }
    return check_layout(c, f);
}

/* Skip the header's trailing padding: writers pad with spaces (some with
 * NULs) to align the data region. Anything else after the JSON is junk. */
static bool only_padding(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != '\0')
            return false;
    return true;
}

static ms_status validate(st_ctx *c, ms_st_file *f)
{
    if (c->size < 8)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)c->size,
                            "file truncated: %llu bytes, too short for a safetensors "
                            "header", (unsigned long long)c->size);
    uint64_t n = read_u64le(c->data);
    f->header_len = n;
    if (n > MS_ST_MAX_HEADER)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, 0,
                            "header length %llu exceeds the %u byte limit",
                            (unsigned long long)n, MS_ST_MAX_HEADER);
    if (n > c->size - 8)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)c->size,
                            "file truncated: header length %llu but only %llu bytes follow",
                            (unsigned long long)n, (unsigned long long)(c->size - 8));
    if (n < 2)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, 8,
                            "header of %llu bytes cannot hold a JSON object",
                            (unsigned long long)n);
    c->data_start = f->data_start = 8 + n;
    const char *text = (const char *)c->data + 8;
    size_t bad;
    if (!ms_utf8_valid((const uint8_t *)text, (size_t)n, &bad))
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, (int64_t)(8 + bad),
                            "header is not valid UTF-8");
    if (json_value_bound(text, (size_t)n) > ST_MAX_JSON_VALUES)
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, 8,
                            "header holds more than %u JSON values", ST_MAX_JSON_VALUES);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    if (!root) {
        int64_t off = end && end >= text && end <= text + n ? 8 + (end - text) : 8;
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, off,
                            "header is not valid JSON");
    }
    if (!only_padding(end, text + n)) {
        cJSON_Delete(root);
        return ms_error_set(c->err, MS_ERR_FORMAT, c->path, 8 + (end - text),
                            "unexpected bytes after the JSON header");
    }
    ms_status st = parse_header(c, root, f);
    cJSON_Delete(root);
    return st;
}

/* ==== public API ==== */

static ms_status open_common(const uint8_t *data, uint64_t size, const char *label,
                             ms_st_file *f, ms_error *err)
{
    f->path = ms_strdup(label ? label : "");
    if (!f->path)
        return ms_error_set(err, MS_ERR_NOMEM, label, -1, "out of memory");
    f->data = data;
    f->size = size;
    st_ctx c = {f->path, data, size, 0, err};
    return validate(&c, f);
}

ms_status ms_st_open_mem(const void *buf, size_t len, const char *label,
                         ms_st_file **out, ms_error *err)
{
    *out = NULL;
    ms_st_file *f = calloc(1, sizeof(*f));
    if (!f)
        return ms_error_set(err, MS_ERR_NOMEM, label, -1, "out of memory");
    f->map.fd = -1;
    ms_status st = open_common(buf, len, label, f, err);
    if (st) {
        ms_st_close(f);
        return st;
    }
    *out = f;
    return MS_OK;
}

ms_status ms_st_open(const char *path, ms_st_file **out, ms_error *err)
{
    *out = NULL;
    ms_st_file *f = calloc(1, sizeof(*f));
    if (!f)
        return ms_error_set(err, MS_ERR_NOMEM, path, -1, "out of memory");
    ms_status st = ms_map_open(path, &f->map, err);
    if (st) {
        free(f);
        return st;
    }
    st = open_common(f->map.data, f->map.size, path, f, err);
    if (st) {
        ms_st_close(f);
        return st;
    }
    *out = f;
    return MS_OK;
}

void ms_st_close(ms_st_file *f)
{
    if (!f)
        return;
    if (f->map.data || f->map.fd >= 0)
        ms_map_close(&f->map);
    for (size_t i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    for (size_t i = 0; i < f->n_metadata; i++) {
        free(f->metadata[i].key);
        free(f->metadata[i].value);
    }
    free(f->metadata);
    free(f->path);
    free(f);
}

const ms_st_tensor *ms_st_find(const ms_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name))
            return &f->tensors[i];
    return NULL;
}

/* ==== model.safetensors.index.json ==== */

/* Byte offset of the first occurrence of s in text, for error messages. */
static int64_t find_offset(const char *text, size_t len, const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > len)
        return 0;
    for (size_t i = 0; i + n <= len; i++)
        if (!memcmp(text + i, s, n))
            return (int64_t)i;
    return 0;
}

/* NULL when file is a plain relative name inside the model directory,
 * otherwise why it is not. */
static const char *shard_name_problem(const char *file)
{
    if (!*file)
        return "is empty";
    if (file[0] == '/')
        return "is an absolute path";
    if (strchr(file, '\\'))
        return "contains a backslash";
    for (const char *p = file;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0)
            return "has an empty path component";
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return "leaves the model directory ('..')";
        if (!slash)
            return NULL;
        p = slash + 1;
    }
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static ms_status index_fill(const char *text, size_t len, const char *label,
                            const cJSON *wm, char **names, char **files, size_t *n,
                            ms_error *err)
{
    for (const cJSON *it = wm->child; it; it = it->next) {
        if (!cJSON_IsString(it))
            return ms_error_set(err, MS_ERR_FORMAT, label, find_offset(text, len, it->string),
                                "weight_map value of '%s' is not a string", it->string);
        const char *why = shard_name_problem(it->valuestring);
        /* the value as written, or its key when escapes make it differ */
        int64_t at = find_offset(text, len, it->valuestring);
        if (why && at == 0)
            at = find_offset(text, len, it->string);
        if (why)
            return ms_error_set(err, MS_ERR_FORMAT, label, at,
                                "shard name '%s' of tensor '%s' %s", it->valuestring,
                                it->string, why);
        names[*n] = ms_strdup(it->string);
        files[*n] = ms_strdup(it->valuestring);
        (*n)++;
        if (!names[*n - 1] || !files[*n - 1])
            return ms_error_set(err, MS_ERR_NOMEM, label, -1, "out of memory");
    }
    char **sorted = ms_alloc_array(*n, sizeof(*sorted));
    if (!sorted)
        return ms_error_set(err, MS_ERR_NOMEM, label, -1, "out of memory");
    memcpy(sorted, names, *n * sizeof(*sorted));
    qsort(sorted, *n, sizeof(*sorted), cmp_str_ptr);
    ms_status st = MS_OK;
    for (size_t i = 1; i < *n && !st; i++)
        if (!strcmp(sorted[i - 1], sorted[i]))
            st = ms_error_set(err, MS_ERR_FORMAT, label, find_offset(text, len, sorted[i]),
                              "tensor '%s' appears twice in weight_map", sorted[i]);
    free(sorted);
    return st;
}

ms_status ms_st_index_parse(const char *text, size_t len, const char *label,
                            char ***names, char ***files, size_t *n, ms_error *err)
{
    *names = *files = NULL;
    *n = 0;
    if (json_value_bound(text, len) > ST_MAX_JSON_VALUES)
        return ms_error_set(err, MS_ERR_FORMAT, label, 0,
                            "index holds more than %u JSON values", ST_MAX_JSON_VALUES);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        int64_t off = end && end >= text && end <= text + len ? end - text : 0;
        return ms_error_set(err, MS_ERR_FORMAT, label, off, "index is not valid JSON");
    }
    ms_status st = MS_OK;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    size_t count = cJSON_IsObject(wm) ? (size_t)cJSON_GetArraySize(wm) : 0;
    if (!only_padding(end, text + len))
        st = ms_error_set(err, MS_ERR_FORMAT, label, end - text,
                          "unexpected bytes after the JSON index");
    else if (!cJSON_IsObject(root))
        st = ms_error_set(err, MS_ERR_FORMAT, label, 0, "index is not a JSON object");
    else if (!cJSON_IsObject(wm))
        st = ms_error_set(err, MS_ERR_FORMAT, label, 0,
                          "index has no weight_map object");
    else if (count == 0)
        st = ms_error_set(err, MS_ERR_FORMAT, label, find_offset(text, len, "weight_map"),
                          "weight_map is empty");
    if (!st) {
        *names = ms_zalloc_array(count, sizeof(char *));
        *files = ms_zalloc_array(count, sizeof(char *));
        if (!*names || !*files)
            st = ms_error_set(err, MS_ERR_NOMEM, label, -1, "out of memory");
        else
            st = index_fill(text, len, label, wm, *names, *files, n, err);
    }
    cJSON_Delete(root);
    if (st) {
        ms_st_index_free(*names, *files, *n);
        *names = *files = NULL;
        *n = 0;
    }
    return st;
}

void ms_st_index_free(char **names, char **files, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (names)
            free(names[i]);
        if (files)
            free(files[i]);
    }
    free(names);
    free(files);
}
