/*
 * test_robustness.c - hostile inputs through the real binary.
 *
 * A malformed-input corpus is generated here, in a temporary directory, from
 * tiny valid files written by this test and from copies of the generated
 * and real fixtures: truncations at every structure boundary, lying lengths
 * and counts, overflowing shapes, offsets past the end, overlapping tensors,
 * unknown types, bad UTF-8, shard path traversal, config.json and recipe
 * garbage (aliases, nesting, huge numbers, wrong types), lying imatrix
 * counts. Every file goes through the command a user would run on it
 * (inspect, recipe check, quant --imatrix) under RLIMIT_CPU and RLIMIT_AS
 * (no address-space limit under ASan), and must end with exit status 2 and
 * exactly one stderr line "mergescope: ..." naming the file and, for binary
 * files and recipes, the place (offset N or LINE:COL); no signal, no hang.
 *
 * Each valid starting file is also run and must succeed, so a failure is
 * caused by the mutation and nothing else. The --max-memory budget and an
 * address-space-limited streaming run are tested at the end.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "robust_run.h"
#include "testutil.h"
#include "mergescope/model.h"
#include "mergescope/stream.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* ==== the verdict on one run ==== */

typedef enum place_kind {
    PL_NONE,     /* the file must be named; no place required */
    PL_OFFSET,   /* "offset N" */
    PL_LINECOL,  /* "FILE:LINE:COL:" */
    PL_ANY       /* either */
} place_kind;

typedef struct corpus {
    char *dir;        /* temporary directory of the generated files */
    int n_cases, n_failed, n_known;
    double worst_wall;
} corpus;

/*
 * Known library bugs, reported and owned elsewhere: a case whose label
 * contains one of these is logged as a warning instead of failing, unless
 * MS_ROBUST_STRICT is set in the environment. Crashes, signals and hangs are
 * never excused. Remove an entry when its bug is fixed.
 */
static const struct { const char *label, *owner; } KNOWN[] = {
    /* none open: add {label part, owner and bug} here, ending with NULLs */
    {NULL, NULL},
};

static const char *known_bug(const char *label, const rb_result *r)
{
    if (getenv("MS_ROBUST_STRICT") || r->sig || r->timed_out)
        return NULL;
    for (size_t i = 0; KNOWN[i].label; i++)
        if (strstr(label, KNOWN[i].label))
            return KNOWN[i].owner;
    return NULL;
}

static void corpus_init(corpus *c)
{
    memset(c, 0, sizeof(*c));
    c->dir = ms_test_tmpdir();
    cr_assert(c->dir, "cannot make a temporary directory");
}

static void corpus_done(corpus *c, int min_cases)
{
    cr_log_info("%d hostile inputs, slowest run %.2f s, %d known bugs", c->n_cases,
                c->worst_wall, c->n_known);
    cr_expect_geq(c->n_cases, min_cases, "corpus smaller than expected (%d)", c->n_cases);
    cr_expect_eq(c->n_failed, 0, "%d of %d hostile inputs were mishandled", c->n_failed,
                 c->n_cases);
    rb_rmtree(c->dir);
    free(c->dir);
}

static char *cpath(const corpus *c, const char *name)
{
    return ms_path_join(c->dir, name);
}

static bool has_offset(const char *s)
{
    for (const char *p = strstr(s, "offset "); p; p = strstr(p + 1, "offset "))
        if (p[7] >= '0' && p[7] <= '9')
            return true;
    return false;
}

/* "NAME:LINE:COL:" right after the file name. */
static bool has_linecol(const char *s, const char *name)
{
    for (const char *p = strstr(s, name); p; p = strstr(p + 1, name)) {
        const char *q = p + strlen(name);
        int fields = 0;
        while (*q == ':' && q[1] >= '0' && q[1] <= '9') {
            q++;
            while (*q >= '0' && *q <= '9')
                q++;
            fields++;
        }
        if (fields == 2 && *q == ':')
            return true;
    }
    return false;
}

/* Why the run is not the one-line exit-2 error wanted, or NULL. */
static const char *verdict(const rb_result *r, const char *file, place_kind pk)
{
    const char *e = r->err;
    const char *nl = strchr(e, '\n');
    if (r->timed_out)
        return "did not finish in time";
    if (r->sig)
        return "killed by a signal";
    if (r->status != 2)
        return "exit status is not 2";
    if (strncmp(e, "mergescope: ", 12) != 0)
        return "stderr does not start with 'mergescope: '";
    if (!nl || nl[1] != '\0')
        return "stderr is not exactly one line";
    if (!strstr(e, file))
        return "the message does not name the file";
    if ((pk == PL_OFFSET && !has_offset(e)) || (pk == PL_LINECOL && !has_linecol(e, file)) ||
        (pk == PL_ANY && !has_offset(e) && !has_linecol(e, file)))
        return "the message gives no place";
    return NULL;
}

/* Run argv and check it fails cleanly; `file` is the name the message must
 * contain (usually the basename of the hostile file). */
static void expect_bad(corpus *c, const char *label, const char *const *argv,
                       const char *file, place_kind pk)
{
    rb_result r;
    rb_run(argv, NULL, &r);
    const char *why = verdict(&r, file, pk);
    c->n_cases++;
    if (r.wall > c->worst_wall)
        c->worst_wall = r.wall;
    const char *known = why ? known_bug(label, &r) : NULL;
    if (known) {
        c->n_known++;
        rb_note("KNOWN BUG, not failing: %s: %s (status %d): %s", label, why, r.status,
                    known);
    } else if (why) {
        c->n_failed++;
        cr_expect_fail("%s: %s (status %d, signal %d, %.2f s); stderr: %.600s", label, why,
                       r.status, r.sig, r.wall, r.err);
    }
    rb_free(&r);
}

/* The valid starting point must work, or the corpus proves nothing. */
static void expect_good(const char *label, const char *const *argv)
{
    rb_result r;
    rb_run(argv, NULL, &r);
    cr_assert_eq(r.status, 0, "%s: the valid file fails (status %d): %.600s", label,
                 r.status, r.err);
    rb_free(&r);
}

static void write_file(const char *path, const void *data, size_t len)
{
    cr_assert(ms_test_write(path, data, len), "cannot write %s", path);
}

static inline void write_text(const char *path, const char *text)
{
    write_file(path, text, strlen(text));
}

/* inspect FILE on a hostile file with these bytes. */
static void inspect_bytes(corpus *c, const char *label, const char *name, const void *data,
                          size_t len, place_kind pk)
{
    char *p = cpath(c, name);
    write_file(p, data, len);
    const char *argv[] = {"inspect", "--quiet", p, NULL};
    expect_bad(c, label, argv, name, pk);
    unlink(p);
    free(p);
}

/* ==== little-endian byte buffers ==== */

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void sb_le(ms_sb *b, uint64_t v, int n)
{
    uint8_t t[8];
    put_le(t, v, n);
    ms_sb_addn(b, (const char *)t, (size_t)n);
}

static void sb_gstr(ms_sb *b, const char *s)
{
    sb_le(b, strlen(s), 8);
    ms_sb_add(b, s);
}

static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    cr_assert(d);
    memcpy(d, p, n);
    return d;
}

/* ==== safetensors ==== */

#define ST_A "\"model.embed_tokens.weight\""
#define ST_B "\"model.norm.weight\""
#define ST_META "\"__metadata__\":{\"format\":\"pt\"}"
#define ST_GOOD "{" ST_META "," ST_A ":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[0,96]}," \
    ST_B ":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[96,108]}}"

/* 8-byte length, header padded to 8 with spaces, then data_len bytes. */
static uint8_t *st_build(const char *header, size_t data_len, size_t *len)
{
    ms_sb b = MS_SB_INIT;
    size_t hl = strlen(header), pad = (8 - hl % 8) % 8;
    sb_le(&b, hl + pad, 8);
    ms_sb_add(&b, header);
    for (size_t i = 0; i < pad; i++)
        ms_sb_addc(&b, ' ');
    for (size_t i = 0; i < data_len; i++)
        ms_sb_addc(&b, (char)(i % 3 == 0 ? 0x3c : 0));
    *len = b.len;
    return (uint8_t *)ms_sb_detach(&b);
}

static void st_case(corpus *c, const char *label, const char *header, size_t data_len)
{
    size_t n;
    uint8_t *d = st_build(header, data_len, &n);
    inspect_bytes(c, label, "bad.safetensors", d, n, PL_OFFSET);
    free(d);
}

static void st_truncations(corpus *c, const uint8_t *good, size_t n, uint64_t hlen,
                           const uint64_t *ends, size_t n_ends, const char *what)
{
    uint64_t cuts[64];
    size_t nc = 0;
    const uint64_t fixed[] = {0, 1, 7, 8, 9, 8 + hlen / 2, 8 + hlen - 1, 8 + hlen};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        cuts[nc++] = fixed[i];
    for (size_t i = 0; i < n_ends && nc + 2 < 64; i++) {
        cuts[nc++] = 8 + hlen + ends[i] - 1;
        if (ends[i] > 1)
            cuts[nc++] = 8 + hlen + ends[i] / 2;
    }
    for (size_t i = 0; i < nc; i++) {
        char label[128];
        if (cuts[i] >= n)
            continue;
        snprintf(label, sizeof(label), "%s truncated to %llu bytes", what,
                 (unsigned long long)cuts[i]);
        inspect_bytes(c, label, "cut.safetensors", good, (size_t)cuts[i], PL_OFFSET);
    }
}

Test(robust, safetensors_corpus, .timeout = 300)
{
    corpus c;
    corpus_init(&c);
    size_t n;
    uint8_t *good = st_build(ST_GOOD, 108, &n);
    char *gp = cpath(&c, "good.safetensors");
    write_file(gp, good, n);
    const char *gargv[] = {"inspect", "--quiet", gp, NULL};
    expect_good("tiny safetensors", gargv);
    free(gp);

    uint64_t hlen = get_le(good, 8);
    const uint64_t ends[] = {96, 108};
    st_truncations(&c, good, n, hlen, ends, 2, "tiny safetensors");

    /* lying header lengths */
    const uint64_t lies[] = {0, 1, 2, hlen - 1, hlen + 1, n - 8, n - 7, n, UINT64_MAX,
                             (uint64_t)1 << 63, ((uint64_t)1 << 32) + hlen};
    for (size_t i = 0; i < sizeof(lies) / sizeof(lies[0]); i++) {
        char label[96];
        uint8_t *d = dup_bytes(good, n);
        put_le(d, lies[i], 8);
        snprintf(label, sizeof(label), "header length %llu (true %llu)",
                 (unsigned long long)lies[i], (unsigned long long)hlen);
        inspect_bytes(&c, label, "len.safetensors", d, n, PL_OFFSET);
        free(d);
    }

    static const struct { const char *label, *header; } hdrs[] = {
        {"header is an array", "[1,2,3]"},
        {"header is a string", "\"hello\""},
        {"header is not JSON", "{\"a\": nope}"},
        {"header is cut JSON", "{" ST_META "," ST_A ":{\"dtype\":\"F32\",\"sha"},
        {"tensor entry is a number", "{" ST_A ":5}"},
        {"missing dtype", "{" ST_A ":{\"shape\":[4,6],\"data_offsets\":[0,96]}}"},
        {"missing shape", "{" ST_A ":{\"dtype\":\"F32\",\"data_offsets\":[0,96]}}"},
        {"missing offsets", "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4,6]}}"},
        {"unknown dtype", "{" ST_A ":{\"dtype\":\"F7\",\"shape\":[4,6],\"data_offsets\":[0,96]}}"},
        {"empty dtype", "{" ST_A ":{\"dtype\":\"\",\"shape\":[4,6],\"data_offsets\":[0,96]}}"},
        {"dtype is a number", "{" ST_A ":{\"dtype\":32,\"shape\":[4,6],\"data_offsets\":[0,96]}}"},
        {"ggml type as dtype", "{" ST_A ":{\"dtype\":\"Q4_0\",\"shape\":[4,6],\"data_offsets\":[0,96]}}"},
        {"negative dim", "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[-4,-6],\"data_offsets\":[0,96]}}"},
        {"fractional dim", "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4.5,6],\"data_offsets\":[0,96]}}"},
        {"string dim", "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[\"4\",6],\"data_offsets\":[0,96]}}"},
        {"huge dim", "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[1e30,6],\"data_offsets\":[0,96]}}"},
        {"dims overflow u64 to zero bytes",
         "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}"},
        {"dims product overflows u64",
         "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                 "\"data_offsets\":[0,96]}}"},
        {"element count times size overflows",
         "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}"},
        {"shape is a number", "{" ST_A ":{\"dtype\":\"F32\",\"shape\":24,\"data_offsets\":[0,96]}}"},
        {"offsets past the end",
         "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[1000000000,1000000096]}}"},
        {"end before begin", "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[96,0]}}"},
        {"negative offset", "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[-8,88]}}"},
        {"offsets disagree with the shape",
         "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[0,100]}}"},
        {"offsets as strings",
         "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[\"0\",\"96\"]}}"},
        {"one offset", "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[0]}}"},
        {"huge offsets",
         "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[1e300,1e300]}}"},
        {"offset near 2^64",
         "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4,6],"
                 "\"data_offsets\":[18446744073709551520,18446744073709551615]}}"},
        {"second tensor runs past the end",
         "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[0,96]},"
             ST_B ":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[96,120]}}"},
        {"overlapping tensors",
         "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[0,96]},"
             ST_B ":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[72,96]}}"},
        {"two tensors on the same bytes",
         "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[0,96]},"
             ST_B ":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[0,96]}}"},
        {"duplicate tensor name",
         "{" ST_A ":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[0,96]},"
             ST_A ":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[96,108]}}"},
        {"embedded NUL makes two names one",
         "{\"model.norm.weight\\u0000x\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[96,108]},"
             ST_B ":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[96,108]}}"},
        {"newline and escape in a tensor name (control chars)",
         "{\"a\\nmergescope: forged\\u001b[2J\":{\"dtype\":\"F7\",\"shape\":[4,6],"
         "\"data_offsets\":[0,96]}}"},
        {"metadata is an array", "{\"__metadata__\":[1]," ST_A
             ":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[0,96]}}"},
        {"metadata value is an object", "{\"__metadata__\":{\"format\":{\"x\":1}}," ST_A
             ":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[0,96]}}"},
    };
    for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++)
        st_case(&c, hdrs[i].label, hdrs[i].header, 108);

    /* bad UTF-8 in a tensor name and in metadata (same lengths as valid ones) */
    static const char *const bad_utf8[] = {"\xff\xfe", "\xc0\xaf", "\xed\xa0\x80", "\xc3"};
    for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
        char h[512], label[96];
        snprintf(h, sizeof(h), "{" ST_META ",\"model.%s.weight\":{\"dtype\":\"F32\",\"shape\":[4,6],"
                 "\"data_offsets\":[0,96]}," ST_B ":{\"dtype\":\"F16\",\"shape\":[6],"
                 "\"data_offsets\":[96,108]}}", bad_utf8[i]);
        snprintf(label, sizeof(label), "bad UTF-8 #%zu in a tensor name", i);
        st_case(&c, label, h, 108);
        snprintf(h, sizeof(h), "{\"__metadata__\":{\"format\":\"p%st\"}," ST_A ":{\"dtype\":\"F32\","
                 "\"shape\":[4,6],\"data_offsets\":[0,96]}}", bad_utf8[i]);
        snprintf(label, sizeof(label), "bad UTF-8 #%zu in metadata", i);
        st_case(&c, label, h, 96);
    }

    /* deep nesting in metadata, and a header of a million brackets */
    ms_sb deep = MS_SB_INIT;
    ms_sb_add(&deep, "{\"__metadata__\":{\"x\":");
    for (int i = 0; i < 100000; i++)
        ms_sb_addc(&deep, '[');
    for (int i = 0; i < 100000; i++)
        ms_sb_addc(&deep, ']');
    ms_sb_add(&deep, "}}");
    st_case(&c, "metadata nested 100000 deep", ms_sb_str(&deep), 0);
    ms_sb_reset(&deep);
    for (int i = 0; i < 1000000; i++)
        ms_sb_addc(&deep, '[');
    st_case(&c, "a million open brackets", ms_sb_str(&deep), 0);
    ms_sb_free(&deep);
    free(good);

    /* a real checkpoint: truncations at every tensor boundary, lying lengths */
    char *real = ms_test_shared("real-gguf/source/model-f32.safetensors");
    if (real) {
        uint8_t *d;
        size_t rn;
        cr_assert(rb_read(real, &d, &rn));
        uint64_t rh = get_le(d, 8);
        cJSON *h = cJSON_ParseWithLength((const char *)d + 8, (size_t)rh);
        cr_assert(h, "real safetensors header does not parse");
        uint64_t rends[48];
        size_t ne = 0;
        const cJSON *t;
        cJSON_ArrayForEach(t, h) {
            const cJSON *off = cJSON_GetObjectItem(t, "data_offsets");
            if (cJSON_IsArray(off) && ne < 48)
                rends[ne++] = (uint64_t)cJSON_GetArrayItem(off, 1)->valuedouble;
        }
        cJSON_Delete(h);
        st_truncations(&c, d, rn, rh, rends, ne < 24 ? ne : 24, "real safetensors");
        put_le(d, rh + 4096, 8);
        inspect_bytes(&c, "real safetensors with a lying header length", "lie.safetensors",
                      d, rn, PL_OFFSET);
        free(d);
        free(real);
    } else {
        rb_note("../shared/fixtures absent: real safetensors part skipped");
    }
    corpus_done(&c, 80);
}

/* ==== GGUF ==== */

enum { GT_U8, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STR, GT_ARR,
       GT_U64, GT_I64, GT_F64 };

#define GW_MAX_KV 128
#define GW_MAX_T 512
#define GW_MAX_CUTS 4096

/* Where every field of a GGUF file is, found by an independent walk. */
typedef struct gwalk {
    size_t n_kv, n_t;
    size_t kv_key[GW_MAX_KV], kv_type[GW_MAX_KV], kv_val[GW_MAX_KV];
    size_t t_name[GW_MAX_T], t_ndim[GW_MAX_T], t_ne0[GW_MAX_T], t_type[GW_MAX_T],
        t_off[GW_MAX_T];
    size_t align_val;   /* position of general.alignment's value, 0 if none */
    size_t arr_count;   /* position of the first array's count, 0 if none */
    size_t str_val;     /* position of a string value (not the architecture) */
    uint64_t alignment, data_start;
    size_t cuts[GW_MAX_CUTS], n_cuts;
} gwalk;

typedef struct gcur {
    const uint8_t *p;
    size_t n, at;
    gwalk *w;
} gcur;

static void gw_cut(gcur *c)
{
    if (c->w->n_cuts < GW_MAX_CUTS)
        c->w->cuts[c->w->n_cuts++] = c->at;
}

static bool gw_take(gcur *c, size_t k, uint64_t *v)
{
    if (c->n - c->at < k)
        return false;
    if (v)
        *v = get_le(c->p + c->at, (int)k);
    c->at += k;
    return true;
}

static bool gw_str(gcur *c, bool cut)
{
    uint64_t len;
    if (!gw_take(c, 8, &len))
        return false;
    if (cut)
        gw_cut(c);
    if (len > c->n - c->at)
        return false;
    c->at += (size_t)len;
    return true;
}

static size_t gw_scalar(uint64_t type)
{
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type < 13 ? sz[type] : 0;
}

static bool gw_value(gcur *c, uint64_t type, int depth)
{
    if (type == GT_STR)
        return gw_str(c, false);
    if (type == GT_ARR && depth < 4) {
        uint64_t et, cnt;
        if (!gw_take(c, 4, &et))
            return false;
        if (!c->w->arr_count)
            c->w->arr_count = c->at;
        if (!gw_take(c, 8, &cnt))
            return false;
        gw_cut(c);
        for (uint64_t i = 0; i < cnt; i++)
            if (!gw_value(c, et, depth + 1))
                return false;
        return true;
    }
    size_t k = gw_scalar(type);
    return k && gw_take(c, k, NULL);
}

static bool gw_walk(const uint8_t *p, size_t n, gwalk *w)
{
    gcur c = {p, n, 0, w};
    uint64_t ver = 0, nt = 0, nkv = 0;
    memset(w, 0, sizeof(*w));
    w->alignment = 32;
    if (n < 24 || memcmp(p, "GGUF", 4) != 0)
        return false;
    c.at = 4;
    gw_cut(&c);
    gw_take(&c, 4, &ver);
    gw_cut(&c);
    gw_take(&c, 8, &nt);
    gw_cut(&c);
    gw_take(&c, 8, &nkv);
    gw_cut(&c);
    if (nkv > GW_MAX_KV || nt > GW_MAX_T)
        return false;
    for (uint64_t i = 0; i < nkv; i++) {
        uint64_t type;
        size_t key = c.at;
        w->kv_key[i] = key;
        if (!gw_str(&c, true))
            return false;
        gw_cut(&c);
        w->kv_type[i] = c.at;
        if (!gw_take(&c, 4, &type))
            return false;
        gw_cut(&c);
        w->kv_val[i] = c.at;
        if (get_le(p + key, 8) == 17 && !memcmp(p + key + 8, "general.alignment", 17)) {
            w->align_val = c.at;
            w->alignment = get_le(p + c.at, 4);
        }
        if (type == GT_STR && !w->str_val && get_le(p + c.at, 8) > 0 &&
            memcmp(p + key + 8, "general.architecture", 20) != 0)
            w->str_val = c.at;
        if (!gw_value(&c, type, 0))
            return false;
        gw_cut(&c);
    }
    w->n_kv = (size_t)nkv;
    for (uint64_t i = 0; i < nt; i++) {
        uint64_t nd;
        w->t_name[i] = c.at;
        if (!gw_str(&c, true))
            return false;
        gw_cut(&c);
        w->t_ndim[i] = c.at;
        if (!gw_take(&c, 4, &nd) || nd > 4)
            return false;
        gw_cut(&c);
        w->t_ne0[i] = c.at;
        for (uint64_t d = 0; d < nd; d++) {
            if (!gw_take(&c, 8, NULL))
                return false;
            gw_cut(&c);
        }
        w->t_type[i] = c.at;
        if (!gw_take(&c, 4, NULL))
            return false;
        gw_cut(&c);
        w->t_off[i] = c.at;
        if (!gw_take(&c, 8, NULL))
            return false;
        gw_cut(&c);
    }
    w->n_t = (size_t)nt;
    if (!w->alignment)
        return false;
    w->data_start = (c.at + w->alignment - 1) / w->alignment * w->alignment;
    for (size_t i = 0; i < w->n_t; i++) {
        uint64_t off = get_le(p + w->t_off[i], 8);
        if (w->n_cuts < GW_MAX_CUTS && w->data_start + off < n)
            w->cuts[w->n_cuts++] = (size_t)(w->data_start + off);
    }
    return true;
}

/* A tiny llama-ish GGUF: a few keys (string, u32, array) and three
 * tensors (F32, F32, Q8_0). */
static uint8_t *gguf_build(size_t *len)
{
    ms_sb b = MS_SB_INIT;
    ms_sb_add(&b, "GGUF");
    sb_le(&b, 3, 4);
    sb_le(&b, 3, 8);
    sb_le(&b, 5, 8);
    sb_gstr(&b, "general.architecture");
    sb_le(&b, GT_STR, 4);
    sb_gstr(&b, "llama");
    sb_gstr(&b, "general.alignment");
    sb_le(&b, GT_U32, 4);
    sb_le(&b, 32, 4);
    sb_gstr(&b, "general.name");
    sb_le(&b, GT_STR, 4);
    sb_gstr(&b, "tiny");
    sb_gstr(&b, "llama.block_count");
    sb_le(&b, GT_U32, 4);
    sb_le(&b, 1, 4);
    sb_gstr(&b, "tokenizer.ggml.tokens");
    sb_le(&b, GT_ARR, 4);
    sb_le(&b, GT_STR, 4);
    sb_le(&b, 3, 8);
    sb_gstr(&b, "a");
    sb_gstr(&b, "b");
    sb_gstr(&b, "c");
    /* token_embd F32 [8, 2] at 0; blk.0.attn_norm F32 [8] at 64; output
     * Q8_0 [32, 2] (2 blocks of 34 bytes) at 96 */
    static const struct { const char *name; uint32_t nd; uint64_t ne[2]; uint32_t type;
                          uint64_t off; } ts[] = {
        {"token_embd.weight", 2, {8, 2}, 0, 0},
        {"blk.0.attn_norm.weight", 1, {8, 0}, 0, 64},
        {"output.weight", 2, {32, 2}, 8, 96},
    };
    for (size_t i = 0; i < 3; i++) {
        sb_gstr(&b, ts[i].name);
        sb_le(&b, ts[i].nd, 4);
        for (uint32_t d = 0; d < ts[i].nd; d++)
            sb_le(&b, ts[i].ne[d], 8);
        sb_le(&b, ts[i].type, 4);
        sb_le(&b, ts[i].off, 8);
    }
    while (b.len % 32)
        ms_sb_addc(&b, 0);
    for (size_t i = 0; i < 96 / 4; i++) /* f32 0.5 */
        sb_le(&b, 0x3f000000u, 4);
    for (size_t blk = 0; blk < 2; blk++) {
        sb_le(&b, 0x2c00, 2); /* f16 scale 1/16 */
        for (int q = 0; q < 32; q++)
            ms_sb_addc(&b, (char)(q - 16));
    }
    *len = b.len;
    return (uint8_t *)ms_sb_detach(&b);
}

typedef struct gpatch {
    const char *label;
    int field;          /* which field (below) */
    size_t index;       /* kv or tensor index */
    uint64_t value;
    int width;          /* bytes */
} gpatch;

enum { GF_MAGIC, GF_VERSION, GF_NT, GF_NKV, GF_KEYLEN, GF_VTYPE, GF_VSTRLEN, GF_ALIGN,
       GF_ARRCOUNT, GF_ARRTYPE, GF_TNAMELEN, GF_TNAME0, GF_NDIM, GF_NE0, GF_NE1, GF_TTYPE,
       GF_TOFF, GF_TOFF_COPY, GF_TOFF_PLUS, GF_KEY0, GF_VSTR0 };

/* Byte position of a patch's field, or SIZE_MAX when the file lacks it. */
static size_t gpatch_pos(const gwalk *w, const gpatch *pt)
{
    size_t i = pt->index;
    switch (pt->field) {
    case GF_MAGIC: return 0;
    case GF_VERSION: return 4;
    case GF_NT: return 8;
    case GF_NKV: return 16;
    case GF_KEYLEN: return i < w->n_kv ? w->kv_key[i] : SIZE_MAX;
    case GF_VTYPE: return i < w->n_kv ? w->kv_type[i] : SIZE_MAX;
    case GF_VSTRLEN: return i < w->n_kv ? w->kv_val[i] : SIZE_MAX;
    case GF_KEY0: return i < w->n_kv ? w->kv_key[i] + 8 : SIZE_MAX;
    case GF_VSTR0: return w->str_val ? w->str_val + 8 : SIZE_MAX;
    case GF_ALIGN: return w->align_val ? w->align_val : SIZE_MAX;
    case GF_ARRCOUNT: return w->arr_count ? w->arr_count : SIZE_MAX;
    case GF_ARRTYPE: return w->arr_count ? w->arr_count - 4 : SIZE_MAX;
    case GF_TNAMELEN: return i < w->n_t ? w->t_name[i] : SIZE_MAX;
    case GF_TNAME0: return i < w->n_t ? w->t_name[i] + 8 : SIZE_MAX;
    case GF_NDIM: return i < w->n_t ? w->t_ndim[i] : SIZE_MAX;
    case GF_NE0: return i < w->n_t ? w->t_ne0[i] : SIZE_MAX;
    case GF_NE1: return i < w->n_t ? w->t_ne0[i] + 8 : SIZE_MAX;
    case GF_TTYPE: return i < w->n_t ? w->t_type[i] : SIZE_MAX;
    case GF_TOFF: case GF_TOFF_COPY: case GF_TOFF_PLUS:
        return i < w->n_t ? w->t_off[i] : SIZE_MAX;
    default: return SIZE_MAX;
    }
}

static void gguf_patches(corpus *c, const uint8_t *good, size_t n, const gwalk *w,
                         const char *what)
{
    const uint64_t big = (uint64_t)1 << 62, top = UINT64_MAX;
    const size_t last = w->n_t ? w->n_t - 1 : 0;
    const gpatch ps[] = {
        {"bad magic", GF_MAGIC, 0, 0x58554747, 4},
        {"version 0", GF_VERSION, 0, 0, 4},
        {"version 1", GF_VERSION, 0, 1, 4},
        {"version 4", GF_VERSION, 0, 4, 4},
        {"version 2^32-1", GF_VERSION, 0, 0xffffffffu, 4},
        {"tensor count 2^62", GF_NT, 0, big, 8},
        {"tensor count 2^64-1", GF_NT, 0, top, 8},
        {"tensor count one too many", GF_NT, 0, w->n_t + 1, 8},
        {"key count 2^62", GF_NKV, 0, big, 8},
        {"key count one too many", GF_NKV, 0, w->n_kv + 1, 8},
        {"key length 2^64-1", GF_KEYLEN, 0, top, 8},
        {"key length past the end", GF_KEYLEN, 0, n, 8},
        {"key length 0", GF_KEYLEN, 0, 0, 8},
        {"value type 13", GF_VTYPE, 0, 13, 4},
        {"value type 2^32-1", GF_VTYPE, 0, 0xffffffffu, 4},
        {"value type array in place of a string", GF_VTYPE, 0, GT_ARR, 4},
        {"string value length 2^63", GF_VSTRLEN, 0, (uint64_t)1 << 63, 8},
        {"string value length past the end", GF_VSTRLEN, 0, n, 8},
        {"alignment 0", GF_ALIGN, 0, 0, 4},
        {"alignment 3", GF_ALIGN, 0, 3, 4},
        {"alignment 2^31", GF_ALIGN, 0, (uint64_t)1 << 31, 4},
        {"array count 2^62", GF_ARRCOUNT, 0, big, 8},
        {"array count 2^64-1", GF_ARRCOUNT, 0, top, 8},
        {"array of arrays", GF_ARRTYPE, 0, GT_ARR, 4},
        {"array of unknown type", GF_ARRTYPE, 0, 77, 4},
        {"array of u64 instead of strings", GF_ARRTYPE, 0, GT_U64, 4},
        {"tensor name length 2^64-1", GF_TNAMELEN, 0, top, 8},
        {"tensor name length past the end", GF_TNAMELEN, last, n, 8},
        {"empty tensor name", GF_TNAMELEN, 0, 0, 8},
        {"bad UTF-8 in a tensor name (gguf)", GF_TNAME0, 0, 0xff, 1},
        {"overlong UTF-8 in a tensor name (gguf)", GF_TNAME0, 0, 0xc0, 1},
        {"bad UTF-8 in a key (gguf)", GF_KEY0, 2, 0xfe, 1},
        /* a string value that is not UTF-8 is kept and escaped where shown
         * (tested in test_cli), as llama.cpp keeps it: no case here */
        {"0 dimensions", GF_NDIM, 0, 0, 4},
        {"5 dimensions", GF_NDIM, 0, 5, 4},
        {"2^32-1 dimensions", GF_NDIM, 0, 0xffffffffu, 4},
        {"zero extent", GF_NE0, 0, 0, 8},
        {"extent 2^62", GF_NE0, 0, big, 8},
        {"extent 2^64-1", GF_NE0, 0, top, 8},
        {"extents whose product overflows u64", GF_NE1, 0, (uint64_t)1 << 61, 8},
        {"quantized row not a whole block", GF_NE0, last, 33, 8},
        {"unknown ggml type 99", GF_TTYPE, 0, 99, 4},
        {"ggml type 2^32-1", GF_TTYPE, 0, 0xffffffffu, 4},
        {"removed ggml type Q4_2", GF_TTYPE, 0, 4, 4},
        {"offset past the end", GF_TOFF, last, n, 8},
        {"offset 2^64-8", GF_TOFF, last, top - 7, 8},
        {"misaligned offset", GF_TOFF_PLUS, last, 1, 8},
        {"overlapping tensors", GF_TOFF_COPY, last, 0, 8},
    };
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        const gpatch *pt = &ps[i];
        size_t at = gpatch_pos(w, pt);
        if (at == SIZE_MAX || at + (size_t)pt->width > n)
            continue;
        uint8_t *d = dup_bytes(good, n);
        uint64_t v = pt->value;
        if (pt->field == GF_TOFF_COPY && w->n_t > 1)
            v = get_le(good + w->t_off[pt->index - 1], 8);
        else if (pt->field == GF_TOFF_PLUS)
            v = get_le(good + at, 8) + pt->value;
        put_le(d + at, v, pt->width);
        char label[160];
        snprintf(label, sizeof(label), "%s: %s", what, pt->label);
        inspect_bytes(c, label, "bad.gguf", d, n, PL_OFFSET);
        free(d);
    }
}

static void gguf_truncations(corpus *c, const uint8_t *good, size_t n, const gwalk *w,
                             const char *what, size_t max_cuts, bool inside)
{
    size_t step = w->n_cuts > max_cuts ? (w->n_cuts + max_cuts - 1) / max_cuts : 1;
    for (size_t i = 0; i < w->n_cuts; i += step) {
        size_t cut = w->cuts[i];
        if (cut >= n)
            continue;
        char label[160];
        snprintf(label, sizeof(label), "%s truncated at boundary %zu (%zu bytes)", what, i, cut);
        inspect_bytes(c, label, "cut.gguf", good, cut, PL_OFFSET);
        if (cut > 0 && i % 3 == 0 && inside) {
            snprintf(label, sizeof(label), "%s truncated inside field %zu (%zu bytes)", what, i,
                     cut - 1);
            inspect_bytes(c, label, "cut.gguf", good, cut - 1, PL_OFFSET);
        }
    }
}

/* GGUF-specific values the walker does not patch: nested array bombs and
 * bools that are not 0/1, appended as an extra key. */
static void gguf_extra_keys(corpus *c, const uint8_t *good, size_t n, const gwalk *w)
{
    for (int kind = 0; kind < 3; kind++) {
        ms_sb b = MS_SB_INIT;
        ms_sb_addn(&b, (const char *)good, w->kv_key[0]);
        put_le((uint8_t *)b.buf + 16, w->n_kv + 1, 8);
        sb_gstr(&b, "x.extra");
        const char *label;
        if (kind == 0) {
            label = "array of 2^40 empty arrays";
            sb_le(&b, GT_ARR, 4);
            sb_le(&b, GT_ARR, 4);
            sb_le(&b, (uint64_t)1 << 40, 8);
            for (int i = 0; i < 64; i++) {
                sb_le(&b, GT_U8, 4);
                sb_le(&b, 0, 8);
            }
        } else if (kind == 1) {
            label = "arrays nested 10000 deep";
            sb_le(&b, GT_ARR, 4);
            for (int i = 0; i < 10000; i++) {
                sb_le(&b, GT_ARR, 4);
                sb_le(&b, 1, 8);
            }
        } else {
            label = "bool value 7";
            sb_le(&b, GT_BOOL, 4);
            ms_sb_addc(&b, 7);
        }
        ms_sb_addn(&b, (const char *)good + w->kv_key[0], n - w->kv_key[0]);
        inspect_bytes(c, label, "extra.gguf", b.buf, b.len, PL_OFFSET);
        ms_sb_free(&b);
    }
}

static void gguf_file_corpus(corpus *c, const uint8_t *d, size_t n, const char *what,
                             size_t max_cuts)
{
    gwalk *w = calloc(1, sizeof(*w));
    cr_assert(w);
    cr_assert(gw_walk(d, n, w), "%s: the test's walker cannot read it", what);
    char *gp = cpath(c, "good.gguf");
    write_file(gp, d, n);
    const char *gargv[] = {"inspect", "--quiet", gp, NULL};
    expect_good(what, gargv);
    unlink(gp);
    free(gp);
    gguf_truncations(c, d, n, w, what, max_cuts, max_cuts == GW_MAX_CUTS);
    gguf_patches(c, d, n, w, what);
    free(w);
}

Test(robust, gguf_corpus, .timeout = 300)
{
    corpus c;
    corpus_init(&c);
    size_t n;
    uint8_t *good = gguf_build(&n);
    gguf_file_corpus(&c, good, n, "tiny gguf", GW_MAX_CUTS);
    gwalk *w = calloc(1, sizeof(*w));
    cr_assert(w && gw_walk(good, n, w));
    gguf_extra_keys(&c, good, n, w);
    free(w);
    free(good);

    /* split sets named by the first file: missing parts, a repeated part */
    char *first = cpath(&c, "m-00001-of-00002.gguf"), *second = cpath(&c, "m-00002-of-00002.gguf");
    char *huge = cpath(&c, "n-00001-of-99999.gguf");
    char *q8 = ms_test_gen("tiny/gguf/base-Q8_0.gguf");
    cr_assert(rb_copy(q8, first) && rb_copy(q8, huge));
    const char *split_argv[] = {"inspect", "--quiet", first, NULL};
    expect_bad(&c, "split set without its second part", split_argv, "m-0000", PL_NONE);
    cr_assert(rb_copy(q8, second));
    expect_bad(&c, "split set whose parts repeat the tensors", split_argv, "m-0000", PL_NONE);
    const char *huge_argv[] = {"inspect", "--quiet", huge, NULL};
    expect_bad(&c, "split set of 99999 parts", huge_argv, "n-0000", PL_NONE);
    free(first);
    free(second);
    free(huge);
    free(q8);

    static const char *const reals[] = {"real-gguf/gguf/model-Q8_0.gguf",
                                        "real-gguf/gguf/model-IQ2_XXS.gguf",
                                        "real-gguf/gguf/model-Q4_K_M.gguf"};
    for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
        char *p = ms_test_shared(reals[i]);
        if (!p) {
            rb_note("../shared/fixtures absent: %s skipped", reals[i]);
            continue;
        }
        uint8_t *d;
        cr_assert(rb_read(p, &d, &n));
        gguf_file_corpus(&c, d, n, reals[i], i == 0 ? 60 : 16);
        free(d);
        free(p);
    }
    corpus_done(&c, 100);
}

/* ==== model folders: index.json and config.json ==== */

static void copy_into(const char *from_dir, const char *name, const char *to_dir)
{
    char *a = ms_path_join(from_dir, name), *b = ms_path_join(to_dir, name);
    cr_assert(rb_copy(a, b), "cannot copy %s", a);
    free(a);
    free(b);
}

static void inspect_dir(corpus *c, const char *label, const char *dir, const char *file,
                        place_kind pk)
{
    const char *argv[] = {"inspect", "--quiet", dir, NULL};
    expect_bad(c, label, argv, file, pk);
}

typedef enum idx_op { IX_SHARD, IX_ADD, IX_WEIGHT_MAP, IX_RAW } idx_op;

typedef struct idx_case {
    const char *label;
    idx_op op;
    const char *arg;     /* shard name, tensor name, weight_map JSON or raw text */
    place_kind pk;
} idx_case;

/* The original index with one change; caller frees. */
static char *idx_mutate(const char *orig, const idx_case *ic, const char *dir)
{
    if (ic->op == IX_RAW)
        return ms_strdup(ic->arg);
    cJSON *j = cJSON_Parse(orig);
    cr_assert(j);
    cJSON *wm = cJSON_GetObjectItem(j, "weight_map");
    if (ic->op == IX_SHARD) {
        char abs[1200];
        const char *shard = ic->arg;
        if (!strcmp(shard, "ABS")) {
            snprintf(abs, sizeof(abs), "%s/outside.safetensors", dir);
            shard = abs;
        }
        cJSON_ReplaceItemInObject(wm, "lm_head.weight", cJSON_CreateString(shard));
    } else if (ic->op == IX_ADD) {
        cJSON_AddStringToObject(wm, ic->arg, "model-00001-of-00003.safetensors");
    } else {
        cJSON_ReplaceItemInObject(j, "weight_map", cJSON_Parse(ic->arg));
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    char *r = ms_strdup(s);
    cJSON_free(s);
    return r;
}

Test(robust, model_folder_corpus, .timeout = 300)
{
    corpus c;
    corpus_init(&c);
    char *src = ms_test_gen("tiny/base-sharded");
    char *m = cpath(&c, "m");
    cr_assert(mkdir(m, 0755) == 0);
    static const char *const files[] = {
        "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors", "model.safetensors.index.json", "config.json"};
    for (size_t i = 0; i < 5; i++)
        copy_into(src, files[i], m);
    char *single = ms_test_gen("tiny/base/model.safetensors");
    char *decoy = cpath(&c, "outside.safetensors");
    cr_assert(rb_copy(single, decoy));
    char *idx = ms_path_join(m, "model.safetensors.index.json");
    uint8_t *orig;
    size_t on;
    cr_assert(rb_read(idx, &orig, &on));
    const char *gargv[] = {"inspect", "--quiet", m, NULL};
    expect_good("sharded tiny model", gargv);

    ms_sb deep = MS_SB_INIT;
    ms_sb_add(&deep, "{\"weight_map\":");
    for (int i = 0; i < 200000; i++)
        ms_sb_addc(&deep, '[');
    const idx_case cases[] = {
        {"shard '../outside'", IX_SHARD, "../outside.safetensors", PL_ANY},
        {"shard 'sub/../../outside'", IX_SHARD, "sub/../../outside.safetensors", PL_ANY},
        {"shard '..'", IX_SHARD, "..", PL_NONE},
        {"absolute shard path", IX_SHARD, "ABS", PL_ANY},
        {"shard '/etc/passwd'", IX_SHARD, "/etc/passwd", PL_ANY},
        {"empty shard name", IX_SHARD, "", PL_NONE},
        {"shard '.'", IX_SHARD, ".", PL_NONE},
        {"missing shard", IX_SHARD, "model-00009-of-00009.safetensors", PL_NONE},
        {"tensor in the wrong shard", IX_SHARD, "model-00003-of-00003.safetensors", PL_NONE},
        {"index lists a tensor no shard has", IX_ADD, "model.layers.9.mlp.up_proj.weight",
         PL_NONE},
        {"weight_map is an array", IX_WEIGHT_MAP, "[\"a\"]", PL_NONE},
        {"weight_map is a number", IX_WEIGHT_MAP, "5", PL_NONE},
        {"weight_map is empty", IX_WEIGHT_MAP, "{}", PL_NONE},
        {"shard name is a number", IX_WEIGHT_MAP, "{\"lm_head.weight\":5}", PL_NONE},
        {"shard name is null", IX_WEIGHT_MAP, "{\"lm_head.weight\":null}", PL_NONE},
        {"index is not JSON", IX_RAW, "{{{", PL_ANY},
        {"index is empty", IX_RAW, "", PL_NONE},
        {"index is an array", IX_RAW, "[1]", PL_NONE},
        {"index has no weight_map", IX_RAW, "{\"metadata\":{}}", PL_NONE},
        {"index nested 200000 deep", IX_RAW, ms_sb_str(&deep), PL_NONE},
        {"duplicate tensor in weight_map", IX_RAW,
         "{\"weight_map\":{\"lm_head.weight\":\"model-00001-of-00003.safetensors\","
         "\"lm_head.weight\":\"model-00002-of-00003.safetensors\"}}", PL_NONE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *text = idx_mutate((const char *)orig, &cases[i], c.dir);
        write_text(idx, text);
        free(text);
        inspect_dir(&c, cases[i].label, m, "model.safetensors.index.json", cases[i].pk);
    }
    ms_sb_free(&deep);
    /* the index cut at a few places, and a shard name that is not UTF-8 */
    for (size_t k = 1; k < 8; k++) {
        char label[64];
        write_file(idx, orig, on * k / 8);
        snprintf(label, sizeof(label), "index truncated to %zu/8", k);
        inspect_dir(&c, label, m, "model.safetensors.index.json", PL_NONE);
    }
    char *bad = (char *)dup_bytes(orig, on + 1);
    bad[on] = '\0';
    char *hit = strstr(bad, "00003.safetensors\"");
    cr_assert(hit);
    hit[4] = (char)0xff;
    write_text(idx, bad);
    inspect_dir(&c, "shard name that is not UTF-8", m, "model.safetensors.index.json",
                PL_NONE);
    free(bad);
    write_file(idx, orig, on);
    free(orig);
    free(idx);
    corpus_done(&c, 29);
    free(m);
    free(decoy);
    free(single);
    free(src);
}

Test(robust, config_json_corpus, .timeout = 300)
{
    corpus c;
    corpus_init(&c);
    char *src = ms_test_gen("tiny/base");
    char *m = cpath(&c, "m");
    cr_assert(mkdir(m, 0755) == 0);
    copy_into(src, "model.safetensors", m);
    copy_into(src, "config.json", m);
    const char *gargv[] = {"inspect", "--quiet", m, NULL};
    expect_good("tiny model with config.json", gargv);
    char *cfg = ms_path_join(m, "config.json");

    ms_sb deep = MS_SB_INIT, deepobj = MS_SB_INIT;
    for (int i = 0; i < 200000; i++)
        ms_sb_addc(&deep, '[');
    for (int i = 0; i < 50000; i++)
        ms_sb_add(&deepobj, "{\"a\":");
    static const char *const wrong[][2] = {
        {"config syntax: garbage", "{{{"},
        {"config syntax: cut", "{\"model_type\": \"lla"},
        {"config syntax: trailing comma", "{\"model_type\": \"llama\",}"},
        {"config: empty file", ""},
        {"config: an array", "[]"},
        {"config: a string", "\"llama\""},
        {"config: layers as a string", "{\"num_hidden_layers\": \"four\"}"},
        {"config: negative layers", "{\"num_hidden_layers\": -1}"},
        {"config: fractional layers", "{\"num_hidden_layers\": 4.5}"},
        {"config: layers 1e300", "{\"num_hidden_layers\": 1e300}"},
        {"config: layers past 2^64", "{\"num_hidden_layers\": 99999999999999999999999}"},
        {"config: layers 1e999 (inf)", "{\"num_hidden_layers\": 1e999}"},
        {"config: negative vocab", "{\"vocab_size\": -5}"},
        {"config: architectures is a number (wrong type)", "{\"architectures\": 5}"},
        {"config: model_type is a number (wrong type)", "{\"model_type\": 7}"},
        {"config: model_type is not UTF-8 (wrong type)", "{\"model_type\": \"ll\xff" "ama\"}"},
    };
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        write_text(cfg, wrong[i][1]);
        inspect_dir(&c, wrong[i][0], m, "config.json",
                    strstr(wrong[i][0], "syntax") ? PL_ANY : PL_NONE);
    }
    write_text(cfg, ms_sb_str(&deep));
    inspect_dir(&c, "config syntax: 200000 open brackets", m, "config.json", PL_NONE);
    write_text(cfg, ms_sb_str(&deepobj));
    inspect_dir(&c, "config syntax: objects nested 50000 deep", m, "config.json", PL_NONE);
    ms_sb_free(&deep);
    ms_sb_free(&deepobj);
    free(cfg);
    free(m);
    free(src);
    corpus_done(&c, 18);
}

/* ==== importance matrices ==== */

typedef struct imx {
    corpus *c;
    const char *model, *ref;  /* quant MODEL --reference REF */
} imx;

static void imatrix_bad(const imx *x, const char *label, const char *name, const void *data,
                        size_t len, place_kind pk)
{
    char *p = cpath(x->c, name);
    write_file(p, data, len);
    const char *argv[] = {"quant", "--quiet", x->model, "--reference", x->ref, "--imatrix", p,
                          NULL};
    expect_bad(x->c, label, argv, name, pk);
    unlink(p);
    free(p);
}

static void imatrix_good(const imx *x, const char *label, const void *data, size_t len)
{
    char *p = cpath(x->c, "good-imatrix");
    write_file(p, data, len);
    const char *argv[] = {"quant", "--quiet", x->model, "--reference", x->ref, "--imatrix", p,
                          NULL};
    expect_good(label, argv);
    unlink(p);
    free(p);
}

/* Field positions of a legacy .dat, found by an independent walk. */
typedef struct dwalk {
    size_t name_len[64], ncall[64], nval[64], vals[64], n;
    size_t trailer;      /* position of chunk_count, 0 if none */
    size_t cuts[512], n_cuts;
} dwalk;

static bool dat_walk(const uint8_t *p, size_t n, dwalk *w)
{
    memset(w, 0, sizeof(*w));
    if (n < 4)
        return false;
    int32_t ne = (int32_t)get_le(p, 4);
    size_t at = 4;
    if (ne < 0 || ne > 64)
        return false;
    w->cuts[w->n_cuts++] = 4;
    for (int32_t i = 0; i < ne; i++) {
        if (n - at < 4)
            return false;
        int32_t nl = (int32_t)get_le(p + at, 4);
        w->name_len[i] = at;
        at += 4;
        w->cuts[w->n_cuts++] = at;
        if (nl < 0 || (size_t)nl > n - at || n - at - (size_t)nl < 8)
            return false;
        at += (size_t)nl;
        w->cuts[w->n_cuts++] = at;
        w->ncall[i] = at;
        at += 4;
        w->cuts[w->n_cuts++] = at;
        w->nval[i] = at;
        int32_t nv = (int32_t)get_le(p + at, 4);
        at += 4;
        w->cuts[w->n_cuts++] = at;
        if (nv < 0 || (size_t)nv > (n - at) / 4)
            return false;
        w->vals[i] = at;
        if (nv > 1)
            w->cuts[w->n_cuts++] = at + 4 * (size_t)(nv / 2);
        at += 4 * (size_t)nv;
        w->cuts[w->n_cuts++] = at;
    }
    w->n = (size_t)ne;
    if (at < n) {
        w->trailer = at;
        w->cuts[w->n_cuts++] = at + 4;
        w->cuts[w->n_cuts++] = at + 8;
    }
    return true;
}

static void sb_f32(ms_sb *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    sb_le(b, u, 4);
}

/* A legacy .dat for the tiny Q8_0 GGUF: attn_q (64 columns) and ffn_down
 * (176 columns), ten calls, then the chunk-count trailer. */
static uint8_t *dat_build(size_t *len)
{
    static const struct { const char *name; int cols; } es[] = {
        {"blk.0.attn_q.weight", 64}, {"blk.0.ffn_down.weight", 176}};
    ms_sb b = MS_SB_INIT;
    sb_le(&b, 2, 4);
    for (size_t i = 0; i < 2; i++) {
        sb_le(&b, strlen(es[i].name), 4);
        ms_sb_add(&b, es[i].name);
        sb_le(&b, 10, 4);
        sb_le(&b, (uint64_t)es[i].cols, 4);
        for (int j = 0; j < es[i].cols; j++)
            sb_f32(&b, 10.0f * (float)(1 + j % 5));
    }
    sb_le(&b, 10, 4);
    sb_le(&b, 4, 4);
    ms_sb_add(&b, "wiki");
    *len = b.len;
    return (uint8_t *)ms_sb_detach(&b);
}

static void dat_corpus(const imx *x, const uint8_t *good, size_t n, const char *what)
{
    dwalk w;
    cr_assert(dat_walk(good, n, &w), "%s: the test's walker cannot read it", what);
    imatrix_good(x, what, good, n);
    char label[160];
    for (size_t i = 0; i < w.n_cuts; i++) {
        if (w.cuts[i] >= n)
            continue;
        if (w.cuts[i] == w.trailer) { /* the trailer is optional */
            imatrix_good(x, "imatrix.dat without its trailer", good, w.cuts[i]);
            continue;
        }
        snprintf(label, sizeof(label), "%s truncated at boundary %zu (%zu bytes)%s", what, i,
                 w.cuts[i], w.trailer && w.cuts[i] > w.trailer ? " (imatrix trailer)" : "");
        imatrix_bad(x, label, "cut.dat", good, w.cuts[i], PL_OFFSET);
    }
    const float nan = NAN, inf = INFINITY, neg = -1.0f;
    uint32_t bits_nan, bits_inf, bits_neg;
    memcpy(&bits_nan, &nan, 4);
    memcpy(&bits_inf, &inf, 4);
    memcpy(&bits_neg, &neg, 4);
    const size_t last = w.n - 1;
    const struct { const char *label; size_t at; uint64_t v; } ps[] = {
        {"entry count -1", 0, 0xffffffffu},
        {"entry count 2^31-1", 0, 0x7fffffffu},
        {"entry count one too many", 0, w.n + 1},
        {"name length -1", w.name_len[0], 0xffffffffu},
        {"name length 2^31-1", w.name_len[0], 0x7fffffffu},
        {"name length past the end", w.name_len[last], n},
        {"name length 0", w.name_len[0], 0},
        {"ncall -1", w.ncall[0], 0xffffffffu},
        {"value count -1", w.nval[0], 0xffffffffu},
        {"value count 2^31-1", w.nval[0], 0x7fffffffu},
        {"value count past the end", w.nval[last], n},
        {"value count 0", w.nval[0], 0},
        {"a NaN value", w.vals[0], bits_nan},
        {"an infinite value", w.vals[0], bits_inf},
        {"a negative value", w.vals[last], bits_neg},
        {"name that is not UTF-8", w.name_len[0] + 4, 0xff},
        {"name length 2^31-1 (imatrix trailer)", w.trailer ? w.trailer + 4 : SIZE_MAX,
         0x7fffffffu},
        {"name length -1 (imatrix trailer)", w.trailer ? w.trailer + 4 : SIZE_MAX,
         0xffffffffu},
    };
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        int width = strstr(ps[i].label, "UTF-8") ? 1 : 4;
        if (ps[i].at == SIZE_MAX || ps[i].at + (size_t)width > n)
            continue;
        uint8_t *d = dup_bytes(good, n);
        put_le(d + ps[i].at, ps[i].v, width);
        snprintf(label, sizeof(label), "%s: %s", what, ps[i].label);
        imatrix_bad(x, label, "bad.dat", d, n, strstr(ps[i].label, "UTF-8") ? PL_NONE : PL_ANY);
        free(d);
    }
}

/* A GGUF imatrix with one weight; ne_sum2 / ne_counts / values varied. */
static uint8_t *gimx_build(uint64_t cols, uint64_t n_mat, uint64_t cnt_ne1, float sum2,
                           float count, bool with_counts, size_t *len)
{
    ms_sb b = MS_SB_INIT;
    const char *base = "blk.0.attn_q.weight";
    char n1[64], n2[64];
    snprintf(n1, sizeof(n1), "%s.in_sum2", base);
    snprintf(n2, sizeof(n2), "%s.counts", base);
    ms_sb_add(&b, "GGUF");
    sb_le(&b, 3, 4);
    sb_le(&b, with_counts ? 2 : 1, 8);
    sb_le(&b, 1, 8);
    sb_gstr(&b, "general.type");
    sb_le(&b, GT_STR, 4);
    sb_gstr(&b, "imatrix");
    uint64_t sum_bytes = cols * n_mat * 4, pad = (32 - sum_bytes % 32) % 32;
    sb_gstr(&b, n1);
    sb_le(&b, 2, 4);
    sb_le(&b, cols, 8);
    sb_le(&b, n_mat, 8);
    sb_le(&b, 0, 4);
    sb_le(&b, 0, 8);
    if (with_counts) {
        sb_gstr(&b, n2);
        sb_le(&b, 2, 4);
        sb_le(&b, 1, 8);
        sb_le(&b, cnt_ne1, 8);
        sb_le(&b, 0, 4);
        sb_le(&b, sum_bytes + pad, 8);
    }
    while (b.len % 32)
        ms_sb_addc(&b, 0);
    for (uint64_t i = 0; i < cols * n_mat; i++)
        sb_f32(&b, sum2);
    for (uint64_t i = 0; i < pad; i++)
        ms_sb_addc(&b, 0);
    for (uint64_t i = 0; with_counts && i < cnt_ne1; i++)
        sb_f32(&b, count);
    *len = b.len;
    return (uint8_t *)ms_sb_detach(&b);
}

Test(robust, imatrix_corpus, .timeout = 300)
{
    corpus c;
    corpus_init(&c);
    char *model = ms_test_gen("tiny/gguf/base-Q8_0.gguf"), *ref = ms_test_gen("tiny/base");
    imx x = {&c, model, ref};
    size_t n;
    uint8_t *good = dat_build(&n);
    dat_corpus(&x, good, n, "tiny imatrix.dat");
    free(good);

    good = gimx_build(64, 1, 1, 100.0f, 10.0f, true, &n);
    imatrix_good(&x, "tiny imatrix.gguf", good, n);
    free(good);
    const struct { const char *label; uint64_t cols, n_mat, cnt; float sum2, count;
                   bool with_counts; } gs[] = {
        {"no counts tensor", 64, 1, 1, 100.0f, 10.0f, false},
        {"counts for two matrices, sums for one", 64, 1, 2, 100.0f, 10.0f, true},
        {"columns disagree with the model", 63, 1, 1, 100.0f, 10.0f, true},
        {"negative count", 64, 1, 1, 100.0f, -10.0f, true},
        {"NaN count", 64, 1, 1, 100.0f, NAN, true},
        {"negative sums", 64, 1, 1, -100.0f, 10.0f, true},
        {"infinite sums", 64, 1, 1, INFINITY, 10.0f, true},
    };
    for (size_t i = 0; i < sizeof(gs) / sizeof(gs[0]); i++) {
        uint8_t *d = gimx_build(gs[i].cols, gs[i].n_mat, gs[i].cnt, gs[i].sum2, gs[i].count,
                                gs[i].with_counts, &n);
        imatrix_bad(&x, gs[i].label, "bad-imatrix.gguf", d, n, PL_NONE);
        free(d);
    }

    /* the real imatrix files of the real GGUF fixtures */
    char *rmodel = ms_test_shared("real-gguf/gguf/model-Q8_0.gguf");
    char *rref = ms_test_shared("real-gguf/source/model-f32.safetensors");
    char *rdat = ms_test_shared("real-gguf/source/imatrix.dat");
    char *rgguf = ms_test_shared("real-gguf/source/imatrix.gguf");
    if (rmodel && rref && rdat && rgguf) {
        imx rx = {&c, rmodel, rref};
        uint8_t *d;
        cr_assert(rb_read(rdat, &d, &n));
        dat_corpus(&rx, d, n, "real imatrix.dat");
        free(d);
        cr_assert(rb_read(rgguf, &d, &n));
        imatrix_good(&rx, "real imatrix.gguf", d, n);
        gwalk *w = calloc(1, sizeof(*w));
        cr_assert(w && gw_walk(d, n, w));
        size_t step = w->n_cuts > 40 ? w->n_cuts / 40 : 1;
        for (size_t i = 0; i < w->n_cuts; i += step) {
            char label[96];
            if (w->cuts[i] >= n)
                continue;
            snprintf(label, sizeof(label), "real imatrix.gguf truncated to %zu bytes",
                     w->cuts[i]);
            imatrix_bad(&rx, label, "cut-imatrix.gguf", d, w->cuts[i], PL_OFFSET);
        }
        free(w);
        free(d);
    } else {
        rb_note("../shared/fixtures absent: real imatrix part skipped");
    }
    free(rmodel);
    free(rref);
    free(rdat);
    free(rgguf);
    free(model);
    free(ref);
    corpus_done(&c, 40);
}

/* ==== recipes ==== */

static void recipe_bad(corpus *c, const char *label, const char *text, size_t len,
                       const char *sub)
{
    char *p = cpath(c, "bad.yml");
    write_file(p, text, len);
    const char *argv[] = {"recipe", sub, "--quiet", p, "--layers", "4", NULL};
    if (!strcmp(sub, "check"))
        argv[4] = NULL;
    expect_bad(c, label, argv, "bad.yml", PL_LINECOL);
    unlink(p);
    free(p);
}

#define RCP_HEAD "merge_method: linear\nmodels:\n"

Test(robust, recipe_corpus, .timeout = 300)
{
    corpus c;
    corpus_init(&c);
    char *good = ms_test_gen("tiny/recipes/linear.yml");
    const char *gargv[] = {"recipe", "check", "--quiet", good, NULL};
    expect_good("generated linear recipe", gargv);
    const char *eargv[] = {"recipe", "explain", "--quiet", good, "--layers", "4", NULL};
    expect_good("generated linear recipe explained", eargv);
    uint8_t *gtext;
    size_t gn;
    cr_assert(rb_read(good, &gtext, &gn));
    free(good);

    static const char *const texts[][2] = {
        {"recursive alias", RCP_HEAD "  - &m\n    model: a\n    parameters: {weight: *m}\n"},
        {"alias of a list inside itself", "merge_method: linear\nmodels: &m\n  - model: a\n"
                                          "    parameters: {weight: *m}\n"},
        {"undefined alias", RCP_HEAD "  - model: *nowhere\n"},
        {"anchor on a key reused as a value", RCP_HEAD "  - &k model: a\n    parameters: {weight: *k}\n"},
        {"merge key recursion", "base: &b\n  <<: *b\n" RCP_HEAD "  - model: a\n"},
        {"tab indentation", RCP_HEAD "\t- model: a\n"},
        {"unterminated quote", RCP_HEAD "  - model: \"a\n"},
        {"unterminated flow list", RCP_HEAD "  - model: a\n    parameters: {weight: [1, 2\n"},
        {"duplicate merge_method", "merge_method: linear\nmerge_method: slerp\nmodels:\n  - model: a\n"},
        {"empty file", ""},
        {"only a document marker", "---\n"},
        {"a bare scalar", "linear\n"},
        {"a list at the top", "- merge_method: linear\n"},
        {"models is a number", "merge_method: linear\nmodels: 5\n"},
        {"models is a string", "merge_method: linear\nmodels: a, b\n"},
        {"model is a list", RCP_HEAD "  - model: [a]\n"},
        {"model is a mapping with no path", RCP_HEAD "  - model: {lora: x}\n"},
        {"merge_method is a list", "merge_method: [linear]\nmodels:\n  - model: a\n"},
        {"unknown merge_method", "merge_method: averagee\nmodels:\n  - model: a\n"},
        {"parameters is a list", RCP_HEAD "  - model: a\n    parameters: [1, 2]\n"},
        {"weight is text", RCP_HEAD "  - model: a\n    parameters: {weight: heavy}\n"},
        {"weight is 1e999", RCP_HEAD "  - model: a\n    parameters: {weight: 1e999}\n"},
        {"weight is .inf", RCP_HEAD "  - model: a\n    parameters: {weight: .inf}\n"},
        {"weight is .nan", RCP_HEAD "  - model: a\n    parameters: {weight: .nan}\n"},
        {"gradient of texts", RCP_HEAD "  - model: a\n    parameters: {weight: [a, b, c]}\n"},
        {"empty gradient", RCP_HEAD "  - model: a\n    parameters: {weight: []}\n"},
        {"filter value is a list of lists",
         RCP_HEAD "  - model: a\n    parameters:\n      weight:\n        - filter: [[x]]\n          value: 1\n"},
        {"density 1e308 squared", "merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n"
                                  "    parameters: {weight: 1, density: 1e616}\n"},
        {"layer_range beyond 2^64", "merge_method: passthrough\nslices:\n  - sources:\n"
                                    "      - model: a\n        layer_range: [0, 99999999999999999999999]\n"},
        {"negative layer_range", "merge_method: passthrough\nslices:\n  - sources:\n"
                                 "      - model: a\n        layer_range: [-4, 2]\n"},
        {"reversed layer_range", "merge_method: passthrough\nslices:\n  - sources:\n"
                                 "      - model: a\n        layer_range: [4, 2]\n"},
        {"layer_range as text", "merge_method: passthrough\nslices:\n  - sources:\n"
                                "      - model: a\n        layer_range: 0-4\n"},
        {"layer_range of three", "merge_method: passthrough\nslices:\n  - sources:\n"
                                 "      - model: a\n        layer_range: [0, 1, 2]\n"},
        {"slices is a mapping", "merge_method: passthrough\nslices: {sources: x}\n"},
        {"sources is a number", "merge_method: passthrough\nslices:\n  - sources: 7\n"},
        {"stage cycle", "name: a\nmerge_method: linear\nmodels:\n  - model: b\n---\n"
                        "name: b\nmerge_method: linear\nmodels:\n  - model: a\n---\n"
                        "name: a\nmerge_method: linear\nmodels:\n  - model: b\n"},
        {"stage names itself", "name: a\nmerge_method: linear\nmodels:\n  - model: a\n"},
        {"model name with control chars (control chars)",
         RCP_HEAD "  - model: \"a\\nmergescope: forged\\e[2J\"\n    parameters: {weight: x}\n"},
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        recipe_bad(&c, texts[i][0], texts[i][1], strlen(texts[i][1]), "check");
        if (i % 4 == 0) {
            char label[128];
            snprintf(label, sizeof(label), "%s (explain)", texts[i][0]);
            recipe_bad(&c, label, texts[i][1], strlen(texts[i][1]), "explain");
        }
    }

    /* generated ones: billion laughs, deep nesting, bytes that are not YAML */
    ms_sb b = MS_SB_INIT;
    ms_sb_add(&b, "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 10; i++) {
        ms_sb_addf(&b, "l%d: &l%d [", i, i);
        for (int k = 0; k < 10; k++)
            ms_sb_addf(&b, "%s*l%d", k ? ", " : "", i - 1);
        ms_sb_add(&b, "]\n");
    }
    ms_sb_add(&b, RCP_HEAD "  - model: a\n    parameters: {weight: *l9}\n");
    recipe_bad(&c, "billion laughs", b.buf, b.len, "check");
    recipe_bad(&c, "billion laughs (explain)", b.buf, b.len, "explain");
    ms_sb_reset(&b);
    ms_sb_add(&b, RCP_HEAD "  - model: a\n    parameters: {weight: ");
    for (int i = 0; i < 100000; i++)
        ms_sb_addc(&b, '[');
    recipe_bad(&c, "100000 open brackets", b.buf, b.len, "check");
    ms_sb_reset(&b);
    for (int i = 0; i < 3000; i++)
        ms_sb_addf(&b, "%*sk:\n", 2 * i, "");
    recipe_bad(&c, "block mappings nested 3000 deep", b.buf, b.len, "check");
    ms_sb_reset(&b);
    for (int i = 0; i < 3000; i++)
        ms_sb_addf(&b, "%*s-\n", 2 * i, "");
    recipe_bad(&c, "block lists nested 3000 deep", b.buf, b.len, "check");
    ms_sb_reset(&b);
    for (int i = 0; i < 20000; i++)
        ms_sb_add(&b, "---\nmerge_method: linear\n");
    recipe_bad(&c, "20000 documents without models", b.buf, b.len, "check");
    ms_sb_reset(&b);
    ms_sb_add(&b, RCP_HEAD "  - model: ");
    for (int i = 0; i < (1 << 22); i++)
        ms_sb_addc(&b, 'a');
    ms_sb_add(&b, "\n    parameters: {weight: x}\n");
    recipe_bad(&c, "4 MiB model name", b.buf, b.len, "check");
    ms_sb_free(&b);

    static const char *const raw[][2] = {
        {"not UTF-8", RCP_HEAD "  - model: caf\xe9\n"},
        {"overlong UTF-8", RCP_HEAD "  - model: \xc0\xaf" "etc\n"},
        {"UTF-16 surrogate in UTF-8", RCP_HEAD "  - model: \xed\xa0\x80\n"},
        {"a control character", RCP_HEAD "  - model: a\x01" "b\n"},
    };
    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++)
        recipe_bad(&c, raw[i][0], raw[i][1], strlen(raw[i][1]), "check");
    const char nul[] = RCP_HEAD "  - model: a\0b\n";
    recipe_bad(&c, "a NUL byte", nul, sizeof(nul) - 1, "check");
    size_t gg;
    uint8_t *gguf = gguf_build(&gg);
    recipe_bad(&c, "a GGUF given as a recipe", (const char *)gguf, gg, "check");
    free(gguf);
    /* the valid recipe cut at every line */
    for (size_t i = 1; i < gn; i++) {
        if (gtext[i - 1] != '\n' || i + 1 >= gn)
            continue;
        char label[64];
        snprintf(label, sizeof(label), "recipe cut after byte %zu", i);
        char *p = cpath(&c, "cut.yml");
        write_file(p, gtext, i);
        const char *argv[] = {"recipe", "check", "--quiet", p, NULL};
        rb_result r;
        rb_run(argv, NULL, &r);
        /* a prefix may be a valid recipe; it must never crash or hang */
        cr_expect(!r.sig && !r.timed_out && (r.status == 0 || !verdict(&r, "cut.yml", PL_LINECOL)),
                  "%s: status %d signal %d: %s", label, r.status, r.sig, r.err);
        c.n_cases++;
        rb_free(&r);
        unlink(p);
        free(p);
    }
    free(gtext);
    corpus_done(&c, 60);
}

/* ==== the memory budget ==== */

typedef struct budget_probe {
    const ms_stream_opts *opts;
    const ms_stream_job *job;
    atomic_int max_worker;
    atomic_llong max_chunk;   /* elements of the largest chunk seen */
    atomic_int bad_rows;      /* chunks not cut as rows_per_chunk says */
} budget_probe;

static ms_status probe_fn(void *p, const ms_stream_chunk *c, ms_error *err)
{
    budget_probe *b = p;
    (void)err;
    const ms_tensor *t = b->job->tensors[c->slot * b->job->k];
    int64_t r = ms_stream_rows_per_chunk(b->opts, t->n_rows, t->n_cols);
    if (c->row0 % r != 0 || (c->nrows != r && c->row0 + c->nrows != t->n_rows))
        b->bad_rows++;
    long long e = (long long)c->nrows * c->n_cols, cur = b->max_chunk;
    while (e > cur && !atomic_compare_exchange_weak(&b->max_chunk, &cur, e))
        ;
    int w = b->max_worker;
    while (c->worker > w && !atomic_compare_exchange_weak(&b->max_worker, &w, c->worker))
        ;
    return MS_OK;
}

static void open_models(const char *const *rels, size_t k, ms_model **m)
{
    for (size_t i = 0; i < k; i++) {
        char *p = ms_test_gen(rels[i]);
        ms_error e;
        ms_error_clear(&e);
        cr_assert_eq(ms_model_open(p, &m[i], &e), MS_OK, "%s: %s", p, e.msg);
        free(p);
    }
}

Test(robust, memory_budget_bounds_chunk_buffers)
{
    static const char *const rels[] = {"demo/base", "demo/donor1", "demo/donor2"};
    ms_model *m[3];
    open_models(rels, 3, m);
    for (size_t k = 2; k <= 3; k++) {
        const ms_tensor **slots;
        ms_stream_skip *skip;
        size_t n_slots, n_skip;
        ms_error e;
        ms_error_clear(&e);
        cr_assert_eq(ms_stream_match((const ms_model *const *)m, k, &slots, &n_slots, &skip,
                                     &n_skip, &e), MS_OK);
        int64_t widest = 0;
        for (size_t s = 0; s < n_slots; s++)
            if (slots[s * k]->n_cols > widest)
                widest = slots[s * k]->n_cols;
        ms_stream_job job = {(const ms_model *const *)m, k, slots, n_slots};
        const uint64_t budgets[] = {64 << 10, 256 << 10, 1 << 20, 4 << 20, 64 << 20};
        for (size_t bi = 0; bi < sizeof(budgets) / sizeof(budgets[0]); bi++) {
            for (int threads = 1; threads <= 3; threads++) {
                ms_stream_opts o = {.threads = threads, .max_memory = budgets[bi]};
                budget_probe b = {.opts = &o, .job = &job};
                ms_error_clear(&e);
                ms_status st = ms_stream_run(&job, &o, probe_fn, NULL, &b, &e);
                uint64_t one_row = (uint64_t)k * (uint64_t)widest * 4;
                if (st == MS_ERR_NOMEM) {
                    /* only allowed when the rows a worker needs do not fit */
                    uint64_t need = (uint64_t)k * 4 *
                        (uint64_t)ms_stream_rows_per_chunk(&o, 1 << 30, widest) * (uint64_t)widest;
                    cr_expect_gt(need, budgets[bi], "k %zu budget %llu: refused though %llu fit",
                                 k, (unsigned long long)budgets[bi], (unsigned long long)need);
                    cr_expect(strstr(e.msg, "memory limit"), "unclear message: %s", e.msg);
                    continue;
                }
                cr_assert_eq(st, MS_OK, "k %zu budget %llu threads %d: %s", k,
                             (unsigned long long)budgets[bi], threads, e.msg);
                uint64_t used = (uint64_t)(b.max_worker + 1) * k * (uint64_t)b.max_chunk * 4;
                cr_expect_leq(used, budgets[bi],
                              "k %zu, %d workers x %lld-element chunks exceed %llu bytes", k,
                              b.max_worker + 1, (long long)b.max_chunk,
                              (unsigned long long)budgets[bi]);
                cr_expect_eq(b.bad_rows, 0, "chunks not cut as ms_stream_rows_per_chunk says");
                if (k == 2)
                    cr_expect_leq(one_row, budgets[bi], "pairs always fit these budgets");
            }
        }
        /* below one row of the widest tensor: a clear refusal */
        ms_stream_opts tiny = {.threads = 2, .max_memory = (uint64_t)k * (uint64_t)widest * 4 - 1};
        budget_probe b = {.opts = &tiny, .job = &job};
        ms_error_clear(&e);
        cr_expect_eq(ms_stream_run(&job, &tiny, probe_fn, NULL, &b, &e), MS_ERR_NOMEM);
        cr_expect(strstr(e.msg, "memory limit"), "unclear message: %s", e.msg);
        cr_expect_eq(b.max_chunk, 0, "nothing streamed");
        free(slots);
        free(skip);
    }
    for (size_t i = 0; i < 3; i++)
        ms_model_close(m[i]);
}

static cJSON *parse_json_file(const char *path)
{
    uint8_t *d;
    size_t n;
    if (!rb_read(path, &d, &n))
        return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)d, n);
    free(d);
    return j;
}

static double pair_cosine(const cJSON *j)
{
    const cJSON *p = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "pairs"), 0);
    const cJSON *c = cJSON_GetObjectItem(p, "cosine");
    return cJSON_IsNumber(c) ? c->valuedouble : NAN;
}

Test(robust, max_memory_on_the_command_line)
{
    char *dir = ms_test_tmpdir();
    char *a = ms_test_gen("demo/base"), *b = ms_test_gen("demo/donor1");
    char *j0 = ms_path_join(dir, "free.json"), *j1 = ms_path_join(dir, "tight.json");
    const char *free_argv[] = {"compare", "-q", "--threads", "2", a, b, "--json", j0, NULL};
    const char *tight_argv[] = {"compare", "-q", "--threads", "2", "--max-memory", "96K",
                                a, b, "--json", j1, NULL};
    rb_result r;
    rb_run(free_argv, NULL, &r);
    cr_assert_eq(r.status, 0, "%s", r.err);
    rb_free(&r);
    rb_run(tight_argv, NULL, &r);
    cr_assert_eq(r.status, 0, "compare under --max-memory 96K: %s", r.err);
    rb_free(&r);
    cJSON *f = parse_json_file(j0), *t = parse_json_file(j1);
    cr_assert(f && t);
    double cf = pair_cosine(f), ct = pair_cosine(t);
    cr_expect(fabs(cf - ct) <= 1e-9 * fabs(cf) + 1e-12,
              "a budget changes only the chunking, not the figures (%.17g vs %.17g)", cf, ct);
    cJSON_Delete(f);
    cJSON_Delete(t);

    /* far too small, and malformed */
    const char *none_argv[] = {"compare", "-q", "--max-memory", "1K", a, b, NULL};
    rb_run(none_argv, NULL, &r);
    cr_expect_eq(r.status, 1, "a budget below one row is a failure to run (exit 1)");
    cr_expect(!strncmp(r.err, "mergescope: ", 12) && strstr(r.err, "memory limit") &&
              strchr(r.err, '\n') == r.err + strlen(r.err) - 1, "stderr: %s", r.err);
    rb_free(&r);
    const char *bad_argv[] = {"compare", "-q", "--max-memory", "lots", a, b, NULL};
    rb_run(bad_argv, NULL, &r);
    cr_expect_eq(r.status, 2, "a malformed --max-memory is a usage error");
    rb_free(&r);
    free(j0);
    free(j1);
    free(a);
    free(b);
    rb_rmtree(dir);
    free(dir);
}

/*
 * compare of two F16 models under RLIMIT_AS: the limit holds the mapped
 * files plus a fixed allowance for the program (code, libraries, the
 * OpenBLAS buffer of the calling thread, stacks), which is less than the
 * models would take decoded to float32. Streaming must get through.
 */
Test(robust, compare_under_an_address_space_limit, .timeout = 300)
{
    if (RB_ASAN)
        cr_skip_test("RLIMIT_AS cannot be combined with ASan's shadow memory");
    const int layers = 12, rows = 4096, cols = 1024;
    const uint64_t file_bytes = (uint64_t)layers * rows * cols * 2;
    const uint64_t allowance = (uint64_t)256 << 20;
    cr_assert_lt(allowance, 2 * file_bytes * 2, "the f32 models must not fit the allowance");
    char *dir = ms_test_tmpdir();
    char *a = ms_path_join(dir, "a.safetensors"), *b = ms_path_join(dir, "b.safetensors");
    cr_assert(rb_write_big_model(a, layers, rows, cols, 1));
    cr_assert(rb_write_big_model(b, layers, rows, cols, 2));
    rb_limits lim = {.cpu_s = 60, .as_bytes = 2 * file_bytes + allowance, .wall_s = 120};
    const char *argv[] = {"compare", "-q", "--threads", "1", "--max-memory", "16M", a, b,
                          "--json", "-", NULL};
    rb_result r;
    rb_run(argv, &lim, &r);
    cr_expect_eq(r.status, 0, "compare of 2 x %llu MiB under a %llu MiB address-space limit: "
                 "status %d signal %d timed out %d: %s", (unsigned long long)(file_bytes >> 20),
                 (unsigned long long)(lim.as_bytes >> 20), r.status, r.sig, r.timed_out, r.err);
    cJSON *j = cJSON_Parse(r.out);
    cr_expect(j && isfinite(pair_cosine(j)), "no result on stdout");
    cJSON_Delete(j);
    rb_free(&r);
    /* the limit is real: below the mapped files the same run cannot work */
    rb_limits low = {.cpu_s = 20, .as_bytes = file_bytes, .wall_s = 30};
    rb_run(argv, &low, &r);
    cr_expect_neq(r.status, 0, "compare ran under a limit below its mapped inputs");
    cr_expect(!r.sig && !r.timed_out, "out of address space: signal %d, timed out %d", r.sig,
              r.timed_out);
    rb_free(&r);
    free(a);
    free(b);
    rb_rmtree(dir);
    free(dir);
}

/*
 * OpenBLAS, with more than one thread, retries its 128 MiB per-thread
 * buffer forever under an address-space limit that leaves no room for it,
 * and exit() then waits: even `inspect` never returned. mergescope runs
 * OpenBLAS single-threaded unless OPENBLAS_NUM_THREADS says otherwise
 * (cli/main.c), so with the variable unset it must finish.
 */
Test(robust, tight_address_space_limit_does_not_hang)
{
    if (RB_ASAN)
        cr_skip_test("RLIMIT_AS cannot be combined with ASan's shadow memory");
    if (getenv("OPENBLAS_NUM_THREADS"))
        cr_skip_test("OPENBLAS_NUM_THREADS is set in the test environment");
    char *m = ms_test_gen("tiny/base");
    rb_limits lim = {.cpu_s = 5, .as_bytes = (uint64_t)160 << 20, .wall_s = 10};
    const char *argv[] = {"inspect", "-q", m, NULL};
    rb_result r;
    rb_run(argv, &lim, &r);
    cr_expect(!r.timed_out && !r.sig && r.status == 0,
              "inspect under a 160 MiB address-space limit: status %d, signal %d, "
              "timed out %d: %s", r.status, r.sig, r.timed_out, r.err);
    rb_free(&r);
    free(m);
}
