/*
 * cmd_inspect.c - `mergescope inspect MODEL`: format, architecture, layer
 * and parameter counts, bits per weight, the dtype histogram, the tensor
 * table and the file's metadata, as a table and as JSON.
 *
 * The text and the JSON are both rendered from the opened ms_model and
 * one type histogram built from it, so they cannot disagree.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "mergescope/model.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* Arrays longer than this are summarised (type, count, first items). */
#define ARRAY_FULL 16
#define ARRAY_HEAD 8
#define TEXT_ARRAY_HEAD 3
#define TEXT_STR_MAX 120

static const char *const usage_lines[] = {
    "mergescope inspect [OPTIONS] MODEL",
    NULL,
};

/* ==== the type histogram ==== */

typedef struct type_row {
    ms_dtype dtype;
    size_t n_tensors;
    uint64_t n_params;
    uint64_t bytes;
} type_row;

static int type_row_cmp(const void *a, const void *b)
{
    const type_row *x = a, *y = b;
    if (x->n_params != y->n_params)
        return x->n_params > y->n_params ? -1 : 1;
    return strcmp(ms_dtype_name(x->dtype), ms_dtype_name(y->dtype));
}

/* Rows sorted by parameters (most first), then by type name. */
static size_t type_histogram(const ms_model *m, type_row *rows)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const ms_tensor *t = &m->tensors[i];
        size_t k = 0;
        while (k < n && rows[k].dtype != t->dtype)
            k++;
        if (k == n) {
            memset(&rows[n], 0, sizeof(rows[n]));
            rows[n++].dtype = t->dtype;
        }
        rows[k].n_tensors++;
        rows[k].n_params += t->n_elems;
        rows[k].bytes += t->nbytes;
    }
    qsort(rows, n, sizeof(type_row), type_row_cmp);
    return n;
}

/* ==== strings from files: escaped, never trusted to be UTF-8 ==== */

/*
 * Append s (n bytes) to sb. For text, control characters, backslash and
 * invalid UTF-8 become \xNN (and " becomes \"); for JSON (cJSON escapes
 * controls itself) only invalid UTF-8 bytes become \xNN. At most max input
 * bytes are taken (0: all); returns true when s was cut short.
 */
static bool escape(ms_sb *sb, const char *s, uint64_t n, uint64_t max, bool json)
{
    const unsigned char *p = (const unsigned char *)s;
    uint64_t i = 0;
    while (i < n) {
        if (max && i >= max)
            return true;
        size_t len = ms_utf8_seq(p + i, (size_t)(n - i > 4 ? 4 : n - i));
        if (len == 1 && !json && (p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\')) {
            if (p[i] == '\\')
                ms_sb_add(sb, "\\\\");
            else
                ms_sb_addf(sb, "\\x%02x", p[i]);
        } else if (len == 1 && !json && p[i] == '"') {
            ms_sb_add(sb, "\\\"");
        } else if (len == 0) {
            ms_sb_addf(sb, "\\x%02x", p[i]);
            len = 1;
        } else {
            ms_sb_addn(sb, s + i, len);
        }
        i += len;
    }
    return false;
}

/* An escaped copy of a NUL-terminated string from a file (caller frees;
 * NULL only when memory runs out). */
static char *esc(const char *s, bool json)
{
    ms_sb sb = MS_SB_INIT;
    escape(&sb, s, strlen(s), 0, json);
    ms_sb_add(&sb, "");
    return ms_sb_detach(&sb);
}

/* Add a string from a file to a JSON object, made valid UTF-8. */
static void add_file_str(cJSON *o, const char *key, const char *val)
{
    char *k = esc(key, true), *v = esc(val, true);
    if (k && v)
        cJSON_AddStringToObject(o, k, v);
    free(k);
    free(v);
}

/* ==== GGUF metadata ==== */

static const char *value_type_name(ms_gguf_type t)
{
    static const char *const names[] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64",
    };
    return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "unknown";
}

static bool is_unsigned(ms_gguf_type t)
{
    return t == MS_GGUF_UINT8 || t == MS_GGUF_UINT16 || t == MS_GGUF_UINT32
        || t == MS_GGUF_UINT64;
}

static bool is_signed(ms_gguf_type t)
{
    return t == MS_GGUF_INT8 || t == MS_GGUF_INT16 || t == MS_GGUF_INT32
        || t == MS_GGUF_INT64;
}

static cJSON *value_json(const ms_gguf_value *v);

static cJSON *array_json(const ms_gguf_value *v)
{
    uint64_t count = v->v.arr.count;
    bool summarise = count > ARRAY_FULL;
    uint64_t shown = summarise ? ARRAY_HEAD : count;
    cJSON *items = cJSON_CreateArray();
    for (uint64_t i = 0; i < shown && v->v.arr.items; i++)
        cJSON_AddItemToArray(items, value_json(&v->v.arr.items[i]));
    if (!summarise)
        return items;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", value_type_name(v->v.arr.elem_type));
    cJSON_AddNumberToObject(o, "count", (double)count);
    cJSON_AddItemToObject(o, "head", items);
    return o;
}

static cJSON *value_json(const ms_gguf_value *v)
{
    if (is_unsigned(v->type))
        return cJSON_CreateNumber((double)v->v.u);
    if (is_signed(v->type))
        return cJSON_CreateNumber((double)v->v.i);
    switch (v->type) {
    case MS_GGUF_BOOL:
        return cJSON_CreateBool(v->v.u != 0);
    case MS_GGUF_FLOAT32:
    case MS_GGUF_FLOAT64:
        return isfinite(v->v.f) ? cJSON_CreateNumber(v->v.f) : cJSON_CreateNull();
    case MS_GGUF_STRING: {
        ms_sb sb = MS_SB_INIT;
        escape(&sb, v->v.s.ptr, v->v.s.len, 0, true);
        cJSON *s = cJSON_CreateString(ms_sb_str(&sb));
        ms_sb_free(&sb);
        return s;
    }
    case MS_GGUF_ARRAY:
        return array_json(v);
    default:
        return cJSON_CreateNull();
    }
}

/* The shortest decimal that reads back as the same float (or double), so
 * 1e-05 stored as float32 prints as 1e-05, not 9.99999975e-06. */
static void float_text(ms_sb *sb, double v, bool single)
{
    char buf[64];
    int max = single ? 9 : 17;
    if (v == floor(v) && fabs(v) < 1e15) {
        ms_sb_addf(sb, "%.0f", v);
        return;
    }
    for (int p = 1; p <= max; p++) {
        snprintf(buf, sizeof(buf), "%.*g", p, v);
        bool same = single ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v;
        if (same || p == max)
            break;
    }
    ms_sb_add(sb, buf);
}

static void value_text(ms_sb *sb, const ms_gguf_value *v)
{
    if (is_unsigned(v->type)) {
        ms_sb_addf(sb, "%llu", (unsigned long long)v->v.u);
    } else if (is_signed(v->type)) {
        ms_sb_addf(sb, "%lld", (long long)v->v.i);
    } else if (v->type == MS_GGUF_BOOL) {
        ms_sb_add(sb, v->v.u ? "true" : "false");
    } else if (v->type == MS_GGUF_FLOAT32 || v->type == MS_GGUF_FLOAT64) {
        float_text(sb, v->v.f, v->type == MS_GGUF_FLOAT32);
    } else if (v->type == MS_GGUF_STRING) {
        ms_sb_addc(sb, '"');
        bool cut = escape(sb, v->v.s.ptr, v->v.s.len, TEXT_STR_MAX, false);
        ms_sb_addc(sb, '"');
        if (cut)
            ms_sb_addf(sb, "... (%llu bytes)", (unsigned long long)v->v.s.len);
    } else if (v->type == MS_GGUF_ARRAY) {
        uint64_t count = v->v.arr.count;
        bool summarise = count > ARRAY_HEAD;
        uint64_t shown = summarise ? TEXT_ARRAY_HEAD : count;
        if (summarise)
            ms_sb_addf(sb, "array[%llu] of %s: ", (unsigned long long)count,
                       value_type_name(v->v.arr.elem_type));
        ms_sb_addc(sb, '[');
        for (uint64_t i = 0; i < shown && v->v.arr.items; i++) {
            if (i)
                ms_sb_add(sb, ", ");
            value_text(sb, &v->v.arr.items[i]);
        }
        ms_sb_add(sb, summarise ? ", ...]" : "]");
    } else {
        ms_sb_add(sb, "?");
    }
}

/* ==== JSON ==== */

static cJSON *tensor_json(const ms_tensor *t)
{
    cJSON *o = cJSON_CreateObject();
    add_file_str(o, "name", t->name);
    add_file_str(o, "source_name", t->source_name);
    if (t->layer >= 0)
        cJSON_AddNumberToObject(o, "layer", t->layer);
    else
        cJSON_AddNullToObject(o, "layer");
    cJSON_AddStringToObject(o, "kind", ms_kind_name(t->kind));
    cJSON_AddStringToObject(o, "filter", ms_filter_name(t->filter));
    cJSON_AddStringToObject(o, "dtype", ms_dtype_name(t->dtype));
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    for (int d = 0; d < t->ndim; d++)
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
    cJSON_AddNumberToObject(o, "n_params", (double)t->n_elems);
    cJSON_AddNumberToObject(o, "bytes", (double)t->nbytes);
    cJSON_AddNumberToObject(o, "file", t->file_index);
    cJSON_AddNumberToObject(o, "offset", (double)t->file_offset);
    cJSON_AddBoolToObject(o, "permuted", t->permute_heads != 0);
    return o;
}

static cJSON *metadata_json(const ms_model *m)
{
    cJSON *md = cJSON_CreateObject();
    const ms_gguf_file *g = ms_model_gguf(m);
    if (g) {
        for (size_t i = 0; i < g->n_kvs; i++) {
            ms_sb key = MS_SB_INIT;
            escape(&key, g->kvs[i].key, strlen(g->kvs[i].key), 0, true);
            cJSON_AddItemToObject(md, ms_sb_str(&key), value_json(&g->kvs[i].value));
            ms_sb_free(&key);
        }
    } else if (m->st && m->n_files) {
        const ms_st_file *s = m->st[0];
        for (size_t i = 0; i < s->n_metadata; i++)
            add_file_str(md, s->metadata[i].key, s->metadata[i].value);
    }
    return md;
}

static void add_dim(cJSON *o, const char *key, int64_t v)
{
    if (v > 0)
        cJSON_AddNumberToObject(o, key, (double)v);
    else
        cJSON_AddNullToObject(o, key);
}

static cJSON *build_json(const ms_model *m, const type_row *rows, size_t n_rows)
{
    cJSON *root = ms_json_result_new("inspect");
    cJSON_AddStringToObject(root, "model", m->name);
    cJSON_AddStringToObject(root, "format", ms_format_name(m->format));
    cJSON *files = cJSON_AddArrayToObject(root, "files");
    for (size_t i = 0; i < m->n_files; i++)
        cJSON_AddItemToArray(files, cJSON_CreateString(ms_path_basename(m->files[i])));
    add_file_str(root, "architecture", m->architecture);
    cJSON_AddNumberToObject(root, "n_layers", m->n_layers);
    add_dim(root, "hidden_size", m->hidden_size);
    add_dim(root, "n_heads", m->n_heads);
    add_dim(root, "n_kv_heads", m->n_kv_heads);
    add_dim(root, "vocab_size", m->vocab_size);
    cJSON_AddNumberToObject(root, "n_tensors", (double)m->n_tensors);
    cJSON_AddNumberToObject(root, "n_params", (double)m->n_params);
    cJSON_AddNumberToObject(root, "bytes", (double)m->data_bytes);
    if (m->n_params) {
        cJSON_AddNumberToObject(root, "bits_per_weight",
                                8.0 * (double)m->data_bytes / (double)m->n_params);
    } else {
        cJSON_AddNullToObject(root, "bits_per_weight");
        cJSON_AddStringToObject(root, "note", "the model has no parameters");
    }
    cJSON *types = cJSON_AddArrayToObject(root, "types");
    for (size_t i = 0; i < n_rows; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", ms_dtype_name(rows[i].dtype));
        cJSON_AddNumberToObject(o, "n_tensors", (double)rows[i].n_tensors);
        cJSON_AddNumberToObject(o, "n_params", (double)rows[i].n_params);
        cJSON_AddNumberToObject(o, "bytes", (double)rows[i].bytes);
        cJSON_AddNumberToObject(o, "share", m->n_params
                                ? (double)rows[i].n_params / (double)m->n_params : 0.0);
        cJSON_AddItemToArray(types, o);
    }
    cJSON *tensors = cJSON_AddArrayToObject(root, "tensors");
    for (size_t i = 0; i < m->n_tensors; i++)
        cJSON_AddItemToArray(tensors, tensor_json(&m->tensors[i]));
    cJSON_AddItemToObject(root, "metadata", metadata_json(m));
    if (m->config)
        cJSON_AddItemToObject(root, "config", cJSON_Duplicate(m->config, true));
    return root;
}

/* ==== text ==== */

static void shape_text(char *buf, size_t cap, const ms_tensor *t)
{
    size_t n = 0;
    n += (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "",
                              (long long)t->shape[d]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

static void print_summary(const ms_model *m, const char *shown_name)
{
    printf("model:        %s\n", shown_name);
    printf("format:       %s (%zu file%s)\n", ms_format_name(m->format),
           m->n_files, m->n_files == 1 ? "" : "s");
    char *arch = esc(m->architecture, false);
    printf("architecture: %s\n", arch ? arch : "?");
    free(arch);
    printf("layers:       %d\n", m->n_layers);
    if (m->hidden_size || m->n_heads || m->vocab_size)
        printf("dimensions:   hidden %lld, heads %lld, kv heads %lld, vocab %lld\n",
               (long long)m->hidden_size, (long long)m->n_heads,
               (long long)m->n_kv_heads, (long long)m->vocab_size);
    printf("tensors:      %zu\n", m->n_tensors);
    printf("parameters:   %llu\n", (unsigned long long)m->n_params);
    printf("tensor bytes: %llu\n", (unsigned long long)m->data_bytes);
    if (m->n_params)
        printf("bits/weight:  %.4f\n", 8.0 * (double)m->data_bytes / (double)m->n_params);
    else
        printf("bits/weight:  n/a (no parameters)\n");
}

static void print_types(const ms_model *m, const type_row *rows, size_t n)
{
    printf("\n%-10s %8s %14s %14s %8s %7s\n", "type", "tensors", "params",
           "bytes", "share", "bpw");
    for (size_t i = 0; i < n; i++) {
        double share = m->n_params ? 100.0 * (double)rows[i].n_params
                                     / (double)m->n_params : 0.0;
        double bpw = rows[i].n_params ? 8.0 * (double)rows[i].bytes
                                        / (double)rows[i].n_params : 0.0;
        printf("%-10s %8zu %14llu %14llu %7.2f%% %7.4f\n",
               ms_dtype_name(rows[i].dtype), rows[i].n_tensors,
               (unsigned long long)rows[i].n_params,
               (unsigned long long)rows[i].bytes, share, bpw);
    }
}

static void print_tensors(const ms_model *m)
{
    int wn = 4, ws = 6;
    char **names = ms_zalloc_array(2 * m->n_tensors + 1, sizeof(char *));
    if (!names)
        return;
    for (size_t i = 0; i < m->n_tensors; i++) {
        names[2 * i] = esc(m->tensors[i].name, false);
        names[2 * i + 1] = esc(m->tensors[i].source_name, false);
        int a = names[2 * i] ? (int)strlen(names[2 * i]) : 0;
        int b = names[2 * i + 1] ? (int)strlen(names[2 * i + 1]) : 0;
        wn = a > wn ? a : wn;
        ws = b > ws ? b : ws;
    }
    wn = wn > 64 ? 64 : wn;
    ws = ws > 48 ? 48 : ws;
    printf("\n%-*s %-*s %5s %-11s %-8s %-16s %12s\n", wn, "name", ws, "source",
           "layer", "kind", "dtype", "shape", "bytes");
    for (size_t i = 0; i < m->n_tensors; i++) {
        const ms_tensor *t = &m->tensors[i];
        char shape[96], layer[16];
        shape_text(shape, sizeof(shape), t);
        if (t->layer >= 0)
            snprintf(layer, sizeof(layer), "%d", t->layer);
        else
            snprintf(layer, sizeof(layer), "-");
        printf("%-*s %-*s %5s %-11s %-8s %-16s %12llu\n", wn,
               names[2 * i] ? names[2 * i] : "?", ws,
               names[2 * i + 1] ? names[2 * i + 1] : "?", layer,
               ms_kind_name(t->kind), ms_dtype_name(t->dtype), shape,
               (unsigned long long)t->nbytes);
    }
    for (size_t i = 0; i < 2 * m->n_tensors; i++)
        free(names[i]);
    free(names);
}

/* llama_ftype names for general.file_type (llama.cpp src/llama.h). */
static const char *ftype_name(uint64_t v)
{
    static const struct { unsigned id; const char *name; } names[] = {
        {0, "F32"}, {1, "F16"}, {2, "Q4_0"}, {3, "Q4_1"}, {7, "Q8_0"},
        {8, "Q5_0"}, {9, "Q5_1"}, {10, "Q2_K"}, {11, "Q3_K_S"},
        {12, "Q3_K_M"}, {13, "Q3_K_L"}, {14, "Q4_K_S"}, {15, "Q4_K_M"},
        {16, "Q5_K_S"}, {17, "Q5_K_M"}, {18, "Q6_K"}, {19, "IQ2_XXS"},
        {20, "IQ2_XS"}, {21, "Q2_K_S"}, {22, "IQ3_XS"}, {23, "IQ3_XXS"},
        {24, "IQ1_S"}, {25, "IQ4_NL"}, {26, "IQ3_S"}, {27, "IQ3_M"},
        {28, "IQ2_S"}, {29, "IQ2_M"}, {30, "IQ4_XS"}, {31, "IQ1_M"},
        {32, "BF16"}, {36, "TQ1_0"}, {37, "TQ2_0"}, {38, "MXFP4_MOE"},
        {39, "NVFP4"}, {40, "Q1_0"}, {41, "Q2_0"}, {1024, "guessed"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].id == v)
            return names[i].name;
    return NULL;
}

static void print_metadata(const ms_model *m)
{
    const ms_gguf_file *g = ms_model_gguf(m);
    ms_sb sb = MS_SB_INIT;
    if (g && g->n_kvs) {
        printf("\nmetadata (%zu keys):\n", g->n_kvs);
        for (size_t i = 0; i < g->n_kvs; i++) {
            ms_sb_reset(&sb);
            escape(&sb, g->kvs[i].key, strlen(g->kvs[i].key), 0, false);
            ms_sb_add(&sb, " = ");
            value_text(&sb, &g->kvs[i].value);
            const char *ft = NULL;
            if (strcmp(g->kvs[i].key, "general.file_type") == 0
                && is_unsigned(g->kvs[i].value.type))
                ft = ftype_name(g->kvs[i].value.v.u);
            if (ft)
                ms_sb_addf(&sb, " (%s)", ft);
            printf("  %s\n", ms_sb_str(&sb));
        }
    } else if (m->st && m->n_files && m->st[0]->n_metadata) {
        const ms_st_file *s = m->st[0];
        printf("\nmetadata (%zu keys):\n", s->n_metadata);
        for (size_t i = 0; i < s->n_metadata; i++) {
            ms_sb_reset(&sb);
            escape(&sb, s->metadata[i].key, strlen(s->metadata[i].key), 0, false);
            ms_sb_add(&sb, " = \"");
            bool cut = escape(&sb, s->metadata[i].value,
                              strlen(s->metadata[i].value), TEXT_STR_MAX, false);
            ms_sb_addc(&sb, '"');
            if (cut)
                ms_sb_addf(&sb, "... (%zu bytes)", strlen(s->metadata[i].value));
            printf("  %s\n", ms_sb_str(&sb));
        }
    }
    ms_sb_free(&sb);
}

/* ==== the command ==== */

/* A path is shown by its last component (trailing slashes dropped) so the
 * table does not depend on where the model lives; a NAME as given. */
static char *display_name(const char *name, const char *path)
{
    if (strcmp(name, path) != 0)
        return ms_strdup(name);
    size_t n = strlen(name);
    while (n > 1 && name[n - 1] == '/')
        n--;
    char *trim = ms_strndup(name, n);
    char *base = trim ? ms_strdup(ms_path_basename(trim)) : NULL;
    free(trim);
    return base;
}

int cmd_inspect(int argc, char **argv)
{
    ms_common c;
    bool brief = false;
    memset(&c, 0, sizeof(c));
    const ms_option opts[] = {
        MS_OPT_BOOL_(0, "brief", &brief, "summary and types only: no tensor table or metadata"),
        MS_COMMON_OPTIONS(&c),
        MS_OPT_END_,
    };
    ms_strlist pos = {NULL, 0};
    int code;
    if (ms_parse_options(argc, argv, opts, usage_lines, &pos, &code)) {
        free(pos.items);
        return code;
    }
    if (pos.n != 1) {
        free(pos.items);
        free(c.model_map.items);
        return ms_die_usage("inspect takes one MODEL (see 'mergescope inspect --help')");
    }
    const char *name = pos.items[0];
    ms_resolve_opts ro;
    ms_common_resolve_opts(&c, &ro);
    ms_model *m = NULL;
    ms_error err;
    ms_error_clear(&err);
    ms_status st = ms_model_open_name(name, &ro, &m, &err);
    free(pos.items);
    if (st) {
        free(c.model_map.items);
        return ms_report_error(&err);
    }
    char *shown = display_name(name, m->path);

    type_row *rows = ms_alloc_array(m->n_tensors ? m->n_tensors : 1, sizeof(type_row));
    if (!rows) {
        free(shown);
        ms_model_close(m);
        free(c.model_map.items);
        fprintf(stderr, "mergescope: out of memory\n");
        return MS_EXIT_FAIL;
    }
    size_t n_rows = type_histogram(m, rows);
    bool json_stdout = c.json && strcmp(c.json, "-") == 0;
    if (!json_stdout) {
        print_summary(m, shown ? shown : name);
        print_types(m, rows, n_rows);
        if (!brief) {
            print_tensors(m);
            print_metadata(m);
        }
    }
    int rc = MS_EXIT_OK;
    if (c.json) {
        cJSON *root = build_json(m, rows, n_rows);
        rc = root ? ms_write_json_result(&c, root) : MS_EXIT_FAIL;
        cJSON_Delete(root);
    }
    free(rows);
    free(shown);
    ms_model_close(m);
    free(c.model_map.items);
    return rc;
}
