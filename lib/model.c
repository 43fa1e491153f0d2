/*
 * model.c - open a model in any supported layout, describe its tensors
 * under canonical names, and read rows as float32 in HF order.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mergescope/model.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

#define CONFIG_MAX (16u * 1024u * 1024u)
#define INDEX_MAX (64u * 1024u * 1024u)
#define NAME_CAP 512

const char *ms_format_name(ms_format f)
{
    return f == MS_FORMAT_GGUF ? "gguf" : "safetensors";
}

const ms_gguf_file *ms_model_gguf(const ms_model *m)
{
    return (m && m->gguf && m->n_files) ? m->gguf[0] : NULL;
}

void ms_model_close(ms_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_tensors; i++) {
        free(m->tensors[i].name);
        free(m->tensors[i].source_name);
    }
    free(m->tensors);
    for (size_t i = 0; i < m->n_files; i++) {
        if (m->st)
            ms_st_close(m->st[i]);
        if (m->gguf)
            ms_gguf_close(m->gguf[i]);
        if (m->files)
            free(m->files[i]);
    }
    free(m->st);
    free(m->gguf);
    free(m->files);
    cJSON_Delete(m->config);
    free(m->architecture);
    free(m->path);
    free(m->name);
    free(m);
}

/* ==== tensors ==== */

static ms_status add_tensor(ms_model *m, size_t *cap, ms_tensor **out,
                            ms_error *err)
{
    if (m->n_tensors == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        ms_tensor *t = ms_realloc_array(m->tensors, nc, sizeof(*t));
        if (!t)
            return ms_error_set(err, MS_ERR_NOMEM, m->path, -1,
                                "out of memory listing tensors");
        m->tensors = t;
        *cap = nc;
    }
    *out = &m->tensors[m->n_tensors++];
    memset(*out, 0, sizeof(**out));
    return MS_OK;
}

/* Fill the derived fields: classification, rows and columns. */
static void describe(ms_tensor *t)
{
    ms_names_classify(t->name, &t->layer, &t->kind, &t->filter);
    t->n_cols = t->ndim > 0 ? t->shape[t->ndim - 1] : 1;
    t->n_rows = 1;
    for (int d = 0; d + 1 < t->ndim; d++)
        t->n_rows *= t->shape[d];
    t->row_bytes = t->n_rows > 0 ? t->nbytes / (uint64_t)t->n_rows : 0;
}

static int tensor_cmp(const void *a, const void *b)
{
    const ms_tensor *x = a, *y = b;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);
}

static ms_status sort_and_check(ms_model *m, ms_error *err)
{
    if (m->n_tensors > 1)
        qsort(m->tensors, m->n_tensors, sizeof(ms_tensor), tensor_cmp);
    m->n_params = 0;
    m->data_bytes = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const ms_tensor *t = &m->tensors[i];
        /* layer is a function of the name, so duplicates are adjacent */
        if (i > 0 && strcmp(t->name, m->tensors[i - 1].name) == 0
            && strcmp(t->source_name, m->tensors[i - 1].source_name) == 0)
            return ms_error_set(err, MS_ERR_FORMAT, m->files[t->file_index],
                                (int64_t)t->file_offset,
                                "tensor '%s' appears twice", t->source_name);
        if (i > 0 && strcmp(t->name, m->tensors[i - 1].name) == 0)
            return ms_error_set(err, MS_ERR_FORMAT, m->files[t->file_index],
                                (int64_t)t->file_offset,
                                "tensors '%s' and '%s' both map to '%s'",
                                m->tensors[i - 1].source_name,
                                t->source_name, t->name);
        m->n_params += t->n_elems;
        m->data_bytes += t->nbytes;
    }
    return MS_OK;
}

const ms_tensor *ms_model_find(const ms_model *m, const char *name)
{
    ms_tensor key;
    if (!m || !name || !m->n_tensors)
        return NULL;
    memset(&key, 0, sizeof(key));
    key.name = (char *)name;
    ms_names_classify(name, &key.layer, NULL, NULL);
    return bsearch(&key, m->tensors, m->n_tensors, sizeof(ms_tensor),
                   tensor_cmp);
}

/* ==== config.json ==== */

/* A non-negative integer field; 0 when absent. */
static ms_status config_int(const cJSON *obj, const char *key,
                            const char *path, int64_t *out, ms_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v))
        return MS_OK;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (!(d >= 0 && d <= 1e12) || d != (double)(int64_t)d)
        return ms_error_set(err, MS_ERR_FORMAT, path, -1,
                            "'%s' must be a non-negative integer", key);
    *out = (int64_t)d;
    return MS_OK;
}

/* "LlamaForCausalLM" -> "llama"; "gemma3_text" -> "gemma3". */
static char *arch_from_config(const cJSON *cfg)
{
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    if (cJSON_IsString(mt) && mt->valuestring[0]) {
        const char *s = mt->valuestring;
        size_t n = strlen(s);
        if (ms_str_endswith(s, "_text"))
            n -= 5;
        return ms_strndup(s, n);
    }
    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(cfg, "architectures");
    const cJSON *a0 = cJSON_IsArray(ar) ? cJSON_GetArrayItem(ar, 0) : NULL;
    if (cJSON_IsString(a0) && a0->valuestring[0]) {
        const char *s = a0->valuestring, *f = strstr(s, "For");
        size_t n = f && f > s ? (size_t)(f - s) : strlen(s);
        char *r = ms_strndup(s, n);
        for (char *p = r; p && *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        return r;
    }
    return NULL;
}

/* model_type must be a UTF-8 string and architectures a list of them, when
 * present: they name the architecture, and a wrong type means a broken
 * file, not an unknown model. */
static ms_status config_string_ok(const cJSON *v, const char *key, const char *path,
                                  ms_error *err)
{
    if (!cJSON_IsString(v) || !v->valuestring)
        return ms_error_set(err, MS_ERR_FORMAT, path, -1, "'%s' must be a string", key);
    if (!ms_utf8_valid((const uint8_t *)v->valuestring, strlen(v->valuestring), NULL))
        return ms_error_set(err, MS_ERR_FORMAT, path, -1, "'%s' is not valid UTF-8", key);
    return MS_OK;
}

static ms_status config_names_ok(const cJSON *cfg, const char *path, ms_error *err)
{
    const cJSON *txt = cJSON_GetObjectItemCaseSensitive(cfg, "text_config");
    const cJSON *objs[2] = {cfg, cJSON_IsObject(txt) ? txt : NULL};
    for (int i = 0; i < 2 && objs[i]; i++) {
        const cJSON *mt = cJSON_GetObjectItemCaseSensitive(objs[i], "model_type");
        const cJSON *ar = cJSON_GetObjectItemCaseSensitive(objs[i], "architectures");
        ms_status st;
        if (mt && !cJSON_IsNull(mt) && (st = config_string_ok(mt, "model_type", path, err)))
            return st;
        if (!ar || cJSON_IsNull(ar))
            continue;
        if (!cJSON_IsArray(ar))
            return ms_error_set(err, MS_ERR_FORMAT, path, -1,
                                "'architectures' must be a list of strings");
        const cJSON *a;
        cJSON_ArrayForEach(a, ar)
            if ((st = config_string_ok(a, "architectures", path, err)))
                return st;
    }
    return MS_OK;
}

static ms_status read_config(ms_model *m, const char *path, ms_error *err)
{
    char *text = NULL;
    size_t len = 0;
    ms_status st = ms_read_file(path, CONFIG_MAX, &text, &len, err);
    if (st)
        return st;
    const char *end = NULL;
    cJSON *cfg = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    int64_t where = cfg || !end ? 0 : (int64_t)(end - text);
    free(text);
    if (!cfg)
        return ms_error_set(err, MS_ERR_FORMAT, path, where, "invalid JSON");
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return ms_error_set(err, MS_ERR_FORMAT, path, 0, "not a JSON object");
    }
    if ((st = config_names_ok(cfg, path, err))) {
        cJSON_Delete(cfg);
        return st;
    }
    m->config = cfg;
    /* multimodal checkpoints keep the language model's sizes here */
    const cJSON *txt = cJSON_GetObjectItemCaseSensitive(cfg, "text_config");
    const cJSON *dims = cJSON_IsObject(txt) ? txt : cfg;
    int64_t layers = 0;
    if ((st = config_int(dims, "num_hidden_layers", path, &layers, err))
        || (st = config_int(dims, "hidden_size", path, &m->hidden_size, err))
        || (st = config_int(dims, "num_attention_heads", path, &m->n_heads, err))
        || (st = config_int(dims, "num_key_value_heads", path, &m->n_kv_heads, err))
        || (st = config_int(dims, "vocab_size", path, &m->vocab_size, err)))
        return st;
    if (!m->vocab_size && dims != cfg
        && (st = config_int(cfg, "vocab_size", path, &m->vocab_size, err)))
        return st;
    if (!m->n_kv_heads)
        m->n_kv_heads = m->n_heads;
    m->n_layers = layers > 1000000 ? 0 : (int)layers;
    free(m->architecture);
    m->architecture = arch_from_config(dims);
    if (!m->architecture && dims != cfg)
        m->architecture = arch_from_config(cfg);
    return MS_OK;
}

/* ==== safetensors ==== */

static ms_status add_st_tensor(ms_model *m, size_t *cap, int fi,
                               const ms_st_tensor *s, ms_error *err)
{
    ms_tensor *t = NULL;
    ms_status st = add_tensor(m, cap, &t, err);
    if (st)
        return st;
    t->name = ms_strdup(s->name);
    t->source_name = ms_strdup(s->name);
    if (!t->name || !t->source_name)
        return ms_error_set(err, MS_ERR_NOMEM, m->path, -1, "out of memory");
    t->dtype = s->dtype;
    t->ndim = s->ndim;
    memcpy(t->shape, s->shape, sizeof(t->shape));
    t->n_elems = s->n_elems;
    t->nbytes = s->nbytes;
    t->file_index = fi;
    t->file_offset = s->offset;
    t->data = m->st[fi]->data + s->offset;
    describe(t);
    return MS_OK;
}

static ms_status alloc_files(ms_model *m, size_t n, bool gguf, ms_error *err)
{
    m->files = ms_zalloc_array(n, sizeof(char *));
    if (gguf)
        m->gguf = ms_zalloc_array(n, sizeof(ms_gguf_file *));
    else
        m->st = ms_zalloc_array(n, sizeof(ms_st_file *));
    if (!m->files || (gguf ? !m->gguf : !m->st))
        return ms_error_set(err, MS_ERR_NOMEM, m->path, -1, "out of memory");
    m->n_files = n;
    return MS_OK;
}

static ms_status open_st_single(ms_model *m, const char *file, ms_error *err)
{
    size_t cap = 0;
    ms_status st = alloc_files(m, 1, false, err);
    if (st)
        return st;
    if (!(m->files[0] = ms_strdup(file)))
        return ms_error_set(err, MS_ERR_NOMEM, file, -1, "out of memory");
    if ((st = ms_st_open(file, &m->st[0], err)))
        return st;
    for (size_t i = 0; i < m->st[0]->n_tensors; i++)
        if ((st = add_st_tensor(m, &cap, 0, &m->st[0]->tensors[i], err)))
            return st;
    return MS_OK;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The distinct shard names, sorted (the shard order). */
static char **unique_files(char **files, size_t n, size_t *n_out)
{
    char **u = ms_alloc_array(n ? n : 1, sizeof(char *));
    if (!u)
        return NULL;
    if (n == 0) {
        *n_out = 0;
        return u;
    }
    memcpy(u, files, n * sizeof(char *));
    qsort(u, n, sizeof(char *), str_cmp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || strcmp(u[k - 1], u[i]) != 0)
            u[k++] = u[i];
    *n_out = k;
    return u;
}

static int file_index(char **u, size_t n, const char *f)
{
    char *const *hit = bsearch(&f, u, n, sizeof(char *), str_cmp);
    return hit ? (int)(hit - u) : -1;
}

static ms_status open_st_shards(ms_model *m, const char *dir,
                                const char *index, ms_error *err)
{
    char *text = NULL, **names = NULL, **files = NULL, **u = NULL;
    size_t len = 0, n = 0, nu = 0, cap = 0;
    ms_status st = ms_read_file(index, INDEX_MAX, &text, &len, err);
    if (st)
        return st;
    st = ms_st_index_parse(text, len, index, &names, &files, &n, err);
    free(text);
    if (st)
        return st;
    if (!(u = unique_files(files, n, &nu))) {
        st = ms_error_set(err, MS_ERR_NOMEM, index, -1, "out of memory");
        goto done;
    }
    if ((st = alloc_files(m, nu, false, err)))
        goto done;
    for (size_t i = 0; i < nu; i++) {
        if (!(m->files[i] = ms_path_join(dir, u[i]))) {
            st = ms_error_set(err, MS_ERR_NOMEM, index, -1, "out of memory");
            goto done;
        }
        if (!ms_path_is_file(m->files[i])) {
            st = ms_error_set(err, MS_ERR_NOTFOUND, index, -1,
                              "shard '%s' does not exist", u[i]);
            goto done;
        }
        if ((st = ms_st_open(m->files[i], &m->st[i], err)))
            goto done;
    }
    for (size_t i = 0; i < n; i++) {
        int fi = file_index(u, nu, files[i]);
        const ms_st_tensor *s = fi >= 0 ? ms_st_find(m->st[fi], names[i]) : NULL;
        if (!s) {
            st = ms_error_set(err, MS_ERR_FORMAT, index, -1,
                              "tensor '%s' is listed in the index but not in "
                              "shard '%s'", names[i], files[i]);
            goto done;
        }
        if ((st = add_st_tensor(m, &cap, fi, s, err)))
            goto done;
    }
done:
    free(u);
    ms_st_index_free(names, files, n);
    return st;
}

/* ==== GGUF ==== */

/* "NAME-00001-of-00003.gguf": the split count and the 1-based index. */
static bool parse_split(const char *path, size_t *prefix_len, int *idx,
                        int *count)
{
    size_t n = strlen(path);
    const char *tail = "-00000-of-00000.gguf";
    size_t tl = strlen(tail);
    if (n < tl)
        return false;
    const char *s = path + n - tl;
    for (size_t i = 0; i < tl; i++) {
        bool digit = tail[i] == '0';
        if (digit ? !(s[i] >= '0' && s[i] <= '9') : s[i] != tail[i])
            return false;
    }
    *idx = 0;
    *count = 0;
    for (int i = 1; i <= 5; i++)
        *idx = *idx * 10 + (s[i] - '0');
    for (int i = 10; i <= 14; i++)
        *count = *count * 10 + (s[i] - '0');
    *prefix_len = n - tl;
    return *idx >= 1 && *count >= 1 && *idx <= *count;
}

static void gguf_dims(ms_model *m, const ms_gguf_file *g)
{
    char key[160];
    const char *a = m->architecture;
    int64_t v;
    snprintf(key, sizeof(key), "%s.block_count", a);
    if (ms_gguf_get_int(g, key, &v) && v >= 0 && v <= 1000000)
        m->n_layers = (int)v;
    snprintf(key, sizeof(key), "%s.embedding_length", a);
    if (ms_gguf_get_int(g, key, &v) && v > 0)
        m->hidden_size = v;
    snprintf(key, sizeof(key), "%s.attention.head_count", a);
    if (ms_gguf_get_int(g, key, &v) && v > 0)
        m->n_heads = v;
    snprintf(key, sizeof(key), "%s.attention.head_count_kv", a);
    if (ms_gguf_get_int(g, key, &v) && v > 0)
        m->n_kv_heads = v;
    else
        m->n_kv_heads = m->n_heads;
    snprintf(key, sizeof(key), "%s.vocab_size", a);
    if (ms_gguf_get_int(g, key, &v) && v > 0) {
        m->vocab_size = v;
    } else {
        const ms_gguf_kv *kv = ms_gguf_find_kv(g, "tokenizer.ggml.tokens");
        if (kv && kv->value.type == MS_GGUF_ARRAY)
            m->vocab_size = (int64_t)kv->value.v.arr.count;
    }
}

/* convert_hf_to_gguf stores every "*norm.weight" of Gemma 1-3 as w + 1
 * (Gemma3n and Gemma4 do not); reading subtracts it again. */
static bool gemma_plus_one(const char *arch)
{
    return strcmp(arch, "gemma") == 0 || strcmp(arch, "gemma2") == 0
        || strcmp(arch, "gemma3") == 0;
}

static ms_status add_gguf_tensor(ms_model *m, size_t *cap, int fi,
                                 const ms_gguf_tensor *g, ms_error *err)
{
    char name[NAME_CAP];
    ms_tensor *t = NULL;
    ms_status st = add_tensor(m, cap, &t, err);
    if (st)
        return st;
    ms_names_from_gguf(m->architecture, g->name, name, sizeof(name));
    t->name = ms_strdup(name[0] ? name : g->name);
    t->source_name = ms_strdup(g->name);
    if (!t->name || !t->source_name)
        return ms_error_set(err, MS_ERR_NOMEM, m->path, -1, "out of memory");
    t->dtype = g->dtype;
    t->ndim = g->n_dims;
    for (int d = 0; d < g->n_dims && d < 4; d++)
        t->shape[d] = g->ne[g->n_dims - 1 - d];
    t->n_elems = g->n_elems;
    t->nbytes = g->nbytes;
    t->file_index = fi;
    t->file_offset = g->offset;
    t->data = m->gguf[fi]->data + g->offset;
    describe(t);
    if (gemma_plus_one(m->architecture) && ms_str_endswith(t->name, "norm.weight"))
        t->value_offset = -1.0f;
    if (ms_names_gguf_permuted(m->architecture, t->kind)) {
        int64_t n = t->kind == MS_KIND_ATTN_Q ? m->n_heads : m->n_kv_heads;
        /* -1: permuted, but the head count is unknown (reads fail) */
        t->permute_heads = n > 0 && n <= 1000000 ? (int)n : -1;
    }
    return MS_OK;
}

static ms_status open_gguf_split(ms_model *m, int i, const char *file,
                                 int count, ms_error *err)
{
    ms_status st;
    if (!(m->files[i] = ms_strdup(file)))
        return ms_error_set(err, MS_ERR_NOMEM, file, -1, "out of memory");
    if (!ms_path_is_file(file))
        return ms_error_set(err, MS_ERR_NOTFOUND, file, -1,
                            "split %d of %d does not exist", i + 1, count);
    if ((st = ms_gguf_open(file, &m->gguf[i], err)))
        return st;
    int64_t v;
    if (ms_gguf_get_int(m->gguf[i], "split.count", &v) && v != count)
        return ms_error_set(err, MS_ERR_FORMAT, file,
                            (int64_t)ms_gguf_find_kv(m->gguf[i], "split.count")->offset,
                            "split.count is %lld but the file name says %d",
                            (long long)v, count);
    if (ms_gguf_get_int(m->gguf[i], "split.no", &v) && v != i)
        return ms_error_set(err, MS_ERR_FORMAT, file,
                            (int64_t)ms_gguf_find_kv(m->gguf[i], "split.no")->offset,
                            "split.no is %lld, expected %d", (long long)v, i);
    return MS_OK;
}

static ms_status open_gguf(ms_model *m, const char *path, ms_error *err)
{
    size_t plen = 0, cap = 0;
    int idx = 1, count = 1;
    bool split = parse_split(path, &plen, &idx, &count);
    if (!split)
        count = 1;
    ms_status st = alloc_files(m, (size_t)count, true, err);
    if (st)
        return st;
    for (int i = 0; i < count; i++) {
        char buf[4096];
        if (split) {
            if (plen > sizeof(buf) - 32)
                return ms_error_set(err, MS_ERR_USAGE, path, -1, "path too long");
            snprintf(buf, sizeof(buf), "%.*s-%05d-of-%05d.gguf", (int)plen,
                     path, i + 1, count);
        }
        if ((st = open_gguf_split(m, i, split ? buf : path, count, err)))
            return st;
    }
    const ms_gguf_file *g0 = m->gguf[0];
    char *arch = ms_gguf_get_str(g0, "general.architecture");
    m->architecture = arch ? arch : ms_strdup("unknown");
    if (!m->architecture)
        return ms_error_set(err, MS_ERR_NOMEM, path, -1, "out of memory");
    gguf_dims(m, g0);
    for (int i = 0; i < count; i++)
        for (size_t k = 0; k < m->gguf[i]->n_tensors; k++)
            if ((st = add_gguf_tensor(m, &cap, i, &m->gguf[i]->tensors[k], err)))
                return st;
    return MS_OK;
}

/* ==== open ==== */

static bool file_is_gguf(const char *path)
{
    if (ms_str_endswith(path, ".gguf"))
        return true;
    FILE *fp = fopen(path, "rb");
    char magic[4] = {0};
    if (!fp)
        return false;
    size_t n = fread(magic, 1, 4, fp);
    fclose(fp);
    return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

/*
 * A folder of GGUF files (a "-GGUF" repository snapshot): the one model in
 * it, a split counting once by its first file. *out is NULL when there is
 * none; MS_ERR_USAGE names them when there are several.
 */
static ms_status find_dir_gguf(const char *dir, char **out, ms_error *err)
{
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    ms_status st = MS_OK;
    *out = NULL;
    if (!d)
        return MS_OK;
    while ((e = readdir(d)) != NULL) {
        size_t plen;
        int idx, count;
        if (!ms_str_endswith(e->d_name, ".gguf")
            || (parse_split(e->d_name, &plen, &idx, &count) && idx != 1))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            char **g = ms_realloc_array(names, nc, sizeof(char *));
            if (!g)
                break;
            names = g;
            cap = nc;
        }
        if (!(names[n] = ms_strdup(e->d_name)))
            break;
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(char *), str_cmp);
    if (n == 1) {
        *out = ms_path_join(dir, names[0]);
    } else if (n > 1) {
        ms_sb sb = MS_SB_INIT;
        for (size_t i = 0; i < n; i++) {
            ms_sb_add(&sb, i ? ", " : "");
            ms_sb_add(&sb, names[i]);
        }
        st = ms_error_set(err, MS_ERR_USAGE, dir, -1,
                          "the folder holds %zu GGUF models (%s): name one",
                          n, ms_sb_str(&sb));
        ms_sb_free(&sb);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return st;
}

static ms_status open_dir(ms_model *m, const char *dir, ms_error *err)
{
    char *index = ms_path_join(dir, "model.safetensors.index.json");
    char *single = ms_path_join(dir, "model.safetensors");
    char *config = ms_path_join(dir, "config.json");
    char *gguf = NULL;
    ms_status st = MS_OK;
    if (!index || !single || !config) {
        st = ms_error_set(err, MS_ERR_NOMEM, dir, -1, "out of memory");
        goto done;
    }
    bool st_model = ms_path_is_file(index) || ms_path_is_file(single);
    if (!st_model) {
        if ((st = find_dir_gguf(dir, &gguf, err)))
            goto done;
        if (gguf) {
            m->format = MS_FORMAT_GGUF;
            st = open_gguf(m, gguf, err);
            goto done;
        }
        st = ms_error_set(err, MS_ERR_NOTFOUND, dir, -1,
                          "no model.safetensors, model.safetensors.index.json "
                          "or .gguf file in this directory");
        goto done;
    }
    if (ms_path_is_file(config) && (st = read_config(m, config, err)))
        goto done;
    if (ms_path_is_file(index))
        st = open_st_shards(m, dir, index, err);
    else
        st = open_st_single(m, single, err);
done:
    free(index);
    free(single);
    free(config);
    free(gguf);
    return st;
}

/* A config.json beside a single file describes it only if the layer counts
 * agree; otherwise it belongs to something else in that folder. */
static void sibling_config(ms_model *m, const char *file)
{
    char *dir = ms_path_dirname(file);
    char *config = dir ? ms_path_join(dir, "config.json") : NULL;
    if (config && ms_path_is_file(config)) {
        ms_error e;
        ms_error_clear(&e);
        if (read_config(m, config, &e) != MS_OK) {
            cJSON_Delete(m->config);
            m->config = NULL;
            m->n_layers = 0;
            m->hidden_size = m->n_heads = m->n_kv_heads = m->vocab_size = 0;
            free(m->architecture);
            m->architecture = NULL;
        }
    }
    free(config);
    free(dir);
}

static int max_layer(const ms_model *m)
{
    int mx = -1;
    for (size_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].layer > mx)
            mx = m->tensors[i].layer;
    return mx;
}

static void finish_dims(ms_model *m, bool sibling)
{
    int layers = max_layer(m) + 1;
    if (sibling && m->config && m->n_layers != layers) {
        cJSON_Delete(m->config);
        m->config = NULL;
        m->hidden_size = m->n_heads = m->n_kv_heads = m->vocab_size = 0;
        free(m->architecture);
        m->architecture = NULL;
        m->n_layers = 0;
    }
    if (m->n_layers < layers)
        m->n_layers = layers;
}

static ms_status open_path(ms_model *m, const char *path, ms_error *err)
{
    ms_status st;
    bool sibling = false;
    if (ms_path_is_dir(path)) {
        st = open_dir(m, path, err);
    } else if (!ms_path_is_file(path)) {
        return ms_error_set(err, MS_ERR_NOTFOUND, path, -1,
                            "no such file or directory");
    } else if (file_is_gguf(path)) {
        m->format = MS_FORMAT_GGUF;
        st = open_gguf(m, path, err);
    } else {
        sibling_config(m, path);
        sibling = true;
        st = open_st_single(m, path, err);
    }
    if (st)
        return st;
    finish_dims(m, sibling);
    if (!m->architecture && !(m->architecture = ms_strdup("unknown")))
        return ms_error_set(err, MS_ERR_NOMEM, path, -1, "out of memory");
    return sort_and_check(m, err);
}

ms_status ms_model_open(const char *path, ms_model **out, ms_error *err)
{
    *out = NULL;
    ms_model *m = calloc(1, sizeof(*m));
    if (!m)
        return ms_error_set(err, MS_ERR_NOMEM, path, -1, "out of memory");
    m->format = MS_FORMAT_SAFETENSORS;
    m->path = ms_strdup(path);
    m->name = ms_strdup(path);
    if (!m->path || !m->name) {
        ms_model_close(m);
        return ms_error_set(err, MS_ERR_NOMEM, path, -1, "out of memory");
    }
    ms_status st = open_path(m, path, err);
    if (st) {
        ms_model_close(m);
        return st;
    }
    *out = m;
    return MS_OK;
}

ms_status ms_model_open_name(const char *name, const ms_resolve_opts *opts,
                             ms_model **out, ms_error *err)
{
    char *path = NULL;
    *out = NULL;
    ms_status st = ms_model_resolve(name, opts, &path, err);
    if (st)
        return st;
    st = ms_model_open(path, out, err);
    free(path);
    if (st)
        return st;
    char *n = ms_strdup(name);
    if (!n) {
        ms_model_close(*out);
        *out = NULL;
        return ms_error_set(err, MS_ERR_NOMEM, name, -1, "out of memory");
    }
    free((*out)->name);
    (*out)->name = n;
    return MS_OK;
}

/* ==== reading rows ==== */

/* The GGUF row holding HF row r of a tensor permuted over n heads of hd
 * rows: GGUF row h*hd + 2i + j = HF row h*hd + j*hd/2 + i. */
static int64_t gguf_row(int64_t r, int64_t hd)
{
    int64_t h = r / hd, rem = r % hd, half = hd / 2;
    return h * hd + 2 * (rem % half) + rem / half;
}

static ms_status decode_err(const ms_model *m, const ms_tensor *t,
                            ms_status st, ms_error *err)
{
    if (st == MS_ERR_UNSUPPORTED)
        return ms_error_set(err, st, m->files[t->file_index],
                            (int64_t)t->file_offset,
                            "tensor '%s': cannot decode type %s yet",
                            t->source_name, ms_dtype_name(t->dtype));
    return ms_error_set(err, st, m->files[t->file_index],
                        (int64_t)t->file_offset, "tensor '%s': decode failed",
                        t->source_name);
}

/* Head size of a permuted tensor over `len` rows (or vector elements). */
static ms_status head_dim(const ms_model *m, const ms_tensor *t, int64_t len,
                          int64_t *hd, ms_error *err)
{
    int64_t n = t->permute_heads;
    if (n <= 0)
        return ms_error_set(err, MS_ERR_UNSUPPORTED, m->files[t->file_index],
                            -1, "tensor '%s': the head count needed to undo "
                            "the q/k permutation is missing from the metadata",
                            t->source_name);
    if (len % n || (len / n) % 2)
        return ms_error_set(err, MS_ERR_FORMAT, m->files[t->file_index],
                            (int64_t)t->file_offset,
                            "tensor '%s': %lld rows do not split into %lld "
                            "heads of even size", t->source_name,
                            (long long)len, (long long)n);
    *hd = len / n;
    return MS_OK;
}

static ms_status read_permuted(const ms_model *m, const ms_tensor *t,
                               int64_t row0, int64_t nrows, float *dst,
                               ms_error *err)
{
    int64_t hd;
    ms_status st;
    if (t->ndim == 1) {
        /* a bias: the permutation runs over its elements */
        float *tmp = ms_alloc_array((size_t)t->n_cols, sizeof(float));
        if (!tmp)
            return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        st = head_dim(m, t, t->n_cols, &hd, err);
        if (!st && (st = ms_dtype_to_f32(t->dtype, t->data, (size_t)t->n_cols, tmp)))
            decode_err(m, t, st, err);
        if (st) {
            free(tmp);
            return st;
        }
        for (int64_t e = 0; e < t->n_cols; e++)
            dst[e] = tmp[gguf_row(e, hd)];
        free(tmp);
        return MS_OK;
    }
    if ((st = head_dim(m, t, t->n_rows, &hd, err)))
        return st;
    for (int64_t r = 0; r < nrows; r++) {
        int64_t g = gguf_row(row0 + r, hd);
        st = ms_dtype_to_f32(t->dtype, t->data + (uint64_t)g * t->row_bytes,
                             (size_t)t->n_cols, dst + r * t->n_cols);
        if (st)
            return decode_err(m, t, st, err);
    }
    return MS_OK;
}

static void add_offset(const ms_tensor *t, float *dst, int64_t nrows)
{
    if (t->value_offset == 0.0f)
        return;
    size_t n = (size_t)(nrows * t->n_cols);
    for (size_t i = 0; i < n; i++)
        dst[i] += t->value_offset;
}

static ms_status read_rows(const ms_model *m, const ms_tensor *t,
                           int64_t row0, int64_t nrows, float *dst,
                           ms_error *err)
{
    if (row0 < 0 || nrows < 0 || row0 > t->n_rows || nrows > t->n_rows - row0)
        return ms_error_set(err, MS_ERR_USAGE, NULL, -1,
                            "tensor '%s': rows [%lld, %lld) out of range "
                            "(%lld rows)", t->name, (long long)row0,
                            (long long)(row0 + nrows), (long long)t->n_rows);
    if (nrows == 0)
        return MS_OK;
    if (!ms_dtype_can_decode(t->dtype))
        return decode_err(m, t, MS_ERR_UNSUPPORTED, err);
    if (t->permute_heads != 0)
        return read_permuted(m, t, row0, nrows, dst, err);
    ms_status st = ms_dtype_to_f32(t->dtype,
                                   t->data + (uint64_t)row0 * t->row_bytes,
                                   (size_t)(nrows * t->n_cols), dst);
    return st ? decode_err(m, t, st, err) : MS_OK;
}

ms_status ms_model_read_rows(const ms_model *m, const ms_tensor *t,
                             int64_t row0, int64_t nrows, float *dst,
                             ms_error *err)
{
    ms_status st = read_rows(m, t, row0, nrows, dst, err);
    if (!st)
        add_offset(t, dst, nrows);
    return st;
}

/* The mapped file holding t, when it has a descriptor to pread from. */
static const ms_map *tensor_map(const ms_model *m, const ms_tensor *t)
{
    const ms_map *mp = NULL;
    if (t->file_index < 0 || (size_t)t->file_index >= m->n_files)
        return NULL;
    if (m->st && m->st[t->file_index])
        mp = &m->st[t->file_index]->map;
    else if (m->gguf && m->gguf[t->file_index])
        mp = &m->gguf[t->file_index]->map;
    /* opened from memory: the map is zeroed (fd 0 is not ours) */
    if (!mp || !mp->data || mp->fd < 0 || t->data < mp->data ||
        t->nbytes > mp->size || (uint64_t)(t->data - mp->data) > mp->size - t->nbytes)
        return NULL;
    return mp;
}

static bool pread_all(int fd, uint8_t *dst, uint64_t len, uint64_t off)
{
    while (len > 0) {
        size_t want = len > ((size_t)1 << 30) ? (size_t)1 << 30 : (size_t)len;
        ssize_t got = pread(fd, dst, want, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        dst += got;
        off += (uint64_t)got;
        len -= (uint64_t)got;
    }
    return true;
}

bool ms_model_pread_bytes(const ms_model *m, const ms_tensor *t, int64_t row0,
                          int64_t nrows, void *dst)
{
    if (t->permute_heads != 0 || row0 < 0 || nrows < 0 || row0 > t->n_rows ||
        nrows > t->n_rows - row0)
        return false;
    const ms_map *mp = tensor_map(m, t);
    uint64_t at = (uint64_t)row0 * t->row_bytes, len = (uint64_t)nrows * t->row_bytes;
    if (!mp || at > t->nbytes || len > t->nbytes - at)
        return false;
    return pread_all(mp->fd, dst, len, (uint64_t)(t->data - mp->data) + at);
}

ms_status ms_model_pread_rows(const ms_model *m, const ms_tensor *t, int64_t row0,
                              int64_t nrows, float *dst, void *scratch,
                              size_t scratch_bytes, bool *mapped, ms_error *err)
{
    *mapped = true;
    uint64_t len = nrows > 0 ? (uint64_t)nrows * t->row_bytes : 0;
    size_t n = nrows > 0 ? (size_t)nrows * (size_t)t->n_cols : 0;
    if (len == 0 || !ms_dtype_can_decode(t->dtype))
        return ms_model_read_rows(m, t, row0, nrows, dst, err);
    if (t->dtype == MS_DTYPE_F32 && len == (uint64_t)n * 4) {
        if (!ms_model_pread_bytes(m, t, row0, nrows, dst))
            return ms_model_read_rows(m, t, row0, nrows, dst, err);
    } else {
        if (len > scratch_bytes || !ms_model_pread_bytes(m, t, row0, nrows, scratch))
            return ms_model_read_rows(m, t, row0, nrows, dst, err);
        ms_status st = ms_dtype_to_f32(t->dtype, scratch, n, dst);
        if (st)
            return decode_err(m, t, st, err);
    }
    *mapped = false;
    add_offset(t, dst, nrows);
    return MS_OK;
}

void ms_model_release_rows(const ms_model *m, const ms_tensor *t,
                           int64_t row0, int64_t nrows)
{
    (void)m;
    if (row0 < 0 || nrows <= 0 || row0 > t->n_rows || nrows > t->n_rows - row0)
        return;
    if (t->permute_heads > 0 && t->ndim > 1) {
        /* rows move only within a head: release the whole heads covered */
        int64_t hd = t->n_rows / t->permute_heads;
        if (hd <= 0)
            return;
        int64_t first = (row0 + hd - 1) / hd * hd;
        int64_t end = (row0 + nrows) / hd * hd;
        if (end <= first)
            return;
        row0 = first;
        nrows = end - first;
    } else if (t->permute_heads != 0) {
        return;
    }
    ms_map_release(t->data + (uint64_t)row0 * t->row_bytes,
                   (uint64_t)nrows * t->row_bytes);
}
