/*
 * cmd_audit.c - `mergescope audit RECIPE`: every donor's share of the merged
 * delta under the recipe's method, task-vector statistics, conflicts,
 * fingerprints, and with --suggest a reweighted recipe.
 *
 * Text and JSON both come from the one ms_audit result.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <cjson/cJSON.h>

#include "cli.h"
#include "mergescope/audit.h"
#include "mergescope/recipe.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

#define DOMINANT 0.5

static const char *const usage_lines[] = {
    "mergescope audit [OPTIONS] RECIPE",
    "  shares of every donor in the merge RECIPE describes, task-vector statistics,",
    "  sign conflicts and fingerprints; --suggest writes a reweighted recipe",
    NULL,
};

typedef struct audit_args {
    ms_common c;
    const char *suggest, *target, *per, *stage;
    double tol, sample;
    long seed, replicates, max_iter, chunk_elems;
    int64_t max_memory;      /* bytes of --max-memory, 0: no limit */
    bool stats_only, exact_select;
} audit_args;

/* ==== text output ==== */

static void fmt_share(char *buf, size_t cap, const ms_audit_figs *f)
{
    if (f->has_share)
        snprintf(buf, cap, "%.4f", f->share);
    else
        snprintf(buf, cap, "-");
}

/* The donor's worst sign conflict with another donor: "0.4053 donor2". */
static void worst_conflict(const ms_audit_result *r, size_t d, char *buf, size_t cap)
{
    double worst = -1.0;
    size_t with = 0;
    for (size_t p = 0; p < r->n_pairs; p++) {
        const ms_audit_pair *x = &r->pairs[p];
        if (!x->has_conflict || (x->a != d && x->b != d) || x->sign_conflict <= worst)
            continue;
        worst = x->sign_conflict;
        with = x->a == d ? x->b : x->a;
    }
    if (worst < 0.0)
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.4f %s", worst, r->donors[with].name);
}

static void print_donors(const ms_audit_result *r)
{
    printf("%-28s %7s %9s %7s %7s %8s %8s %9s  %-22s %s\n", "donor", "share", "self_attn",
           "mlp", "other", "rel_norm", "sparsity", "discarded", "worst_conflict",
           "fingerprints");
    for (size_t d = 0; d < r->n_donors; d++) {
        const ms_audit_donor *x = &r->donors[d];
        char sh[32], f0[32], f1[32], f2[32], rn[32] = "-", sp[32] = "-", dc[32] = "-";
        fmt_share(sh, sizeof(sh), &x->all);
        fmt_share(f0, sizeof(f0), &x->by_filter[MS_FILTER_SELF_ATTN]);
        fmt_share(f1, sizeof(f1), &x->by_filter[MS_FILTER_MLP]);
        fmt_share(f2, sizeof(f2), &x->by_filter[MS_FILTER_OTHER]);
        if (x->all.has_tv) {
            snprintf(rn, sizeof(rn), "%.4f", x->all.rel_norm);
            snprintf(sp, sizeof(sp), "%.4f", x->all.sparsity);
        }
        if (x->has_discarded)
            snprintf(dc, sizeof(dc), "%.4f", x->discarded);
        char wc[128];
        worst_conflict(r, d, wc, sizeof(wc));
        printf("%-28s %7s %9s %7s %7s %8s %8s %9s  %-22s ", x->name, sh, f0, f1, f2, rn, sp, dc,
               wc);
        if (x->n_fps == 0)
            printf("-");
        for (size_t i = 0; i < x->n_fps; i++)
            printf("%s%s", i ? "," : "", x->fps[i].kind);
        printf("\n");
    }
    if (r->random || r->sample < 1.0) {
        printf("\nshare intervals (%s%s%s):\n", r->sample < 1.0 ? "sampled rows" : "",
               r->sample < 1.0 && r->random ? " and " : "", r->random ? "random drops" : "");
        for (size_t d = 0; d < r->n_donors; d++)
            if (r->donors[d].all.has_share)
                printf("  %-28s [%.4f, %.4f]\n", r->donors[d].name, r->donors[d].all.share_lo,
                       r->donors[d].all.share_hi);
    }
}

static void print_pairs(const ms_audit_result *r)
{
    bool any = false;
    for (size_t p = 0; p < r->n_pairs; p++)
        any |= r->pairs[p].has_cosine;
    if (!any)
        return;
    printf("\n%-28s %-28s %7s %8s %8s\n", "donor a", "donor b", "cosine", "conflict",
           "kept_cf");
    for (size_t p = 0; p < r->n_pairs; p++) {
        const ms_audit_pair *x = &r->pairs[p];
        char kc[32] = "-";
        if (x->has_ties_conflict)
            snprintf(kc, sizeof(kc), "%.4f", x->ties_conflict);
        printf("%-28s %-28s %7.4f %8.4f %8s\n", r->donors[x->a].name, r->donors[x->b].name,
               x->cosine, x->sign_conflict, kc);
    }
}

static void print_layers(const ms_audit_result *r)
{
    size_t n = 0;
    for (size_t l = 0; l < r->n_layers; l++)
        for (size_t d = 0; d < r->n_donors; d++)
            if (r->layers[l].donors[d].has_share && r->layers[l].donors[d].share >= DOMINANT &&
                r->n_donors > 1) {
                if (n++ == 0)
                    printf("\nlayers where one donor dominates (share >= %.2f):\n", DOMINANT);
                printf("  layer %-4d %-28s %.4f\n", r->layers[l].layer, r->donors[d].name,
                       r->layers[l].donors[d].share);
            }
    if (n == 0 && r->simulated && r->n_donors > 1)
        printf("\nno layer is dominated by one donor (share >= %.2f)\n", DOMINANT);
}

static void print_fingerprints(const ms_audit_result *r)
{
    bool head = false;
    for (size_t d = 0; d < r->n_donors; d++)
        for (size_t i = 0; i < r->donors[d].n_fps; i++) {
            const ms_audit_fp *f = &r->donors[d].fps[i];
            if (!head)
                printf("\nfingerprints:\n");
            head = true;
            printf("  %s: %s (%zu tensors)\n    %s\n", r->donors[d].name, f->kind,
                   f->n_tensors, f->evidence ? f->evidence : "");
        }
}

static void print_result(const ms_audit_result *r)
{
    printf("audit: %s merge, base %s, %zu donors%s", r->method, r->base ? r->base : "(none)",
           r->n_donors, r->simulated ? "" : ", not simulated");
    if (r->random)
        printf(", seed %llu, %d extra draws", (unsigned long long)r->seed, r->replicates);
    if (r->sample < 1.0)
        printf(", %.3g of the rows", r->sample);
    printf("\n\n");
    print_donors(r);
    print_pairs(r);
    print_layers(r);
    print_fingerprints(r);
    for (size_t i = 0; i < r->n_notes; i++)
        printf("%snote: %s\n", i ? "" : "\n", r->notes[i]);
}

/* With --json - stdout carries the JSON only. */
static bool json_stdout(const audit_args *o)
{
    return o->c.json && strcmp(o->c.json, "-") == 0;
}

/* ==== --suggest ==== */

static int parse_target(const char *spec, const ms_audit_result *r, double *target)
{
    size_t nd = r->n_donors;
    if (!spec || strcmp(spec, "equal") == 0) {
        for (size_t d = 0; d < nd; d++)
            target[d] = 1.0 / (double)nd;
        return 0;
    }
    for (size_t d = 0; d < nd; d++)
        target[d] = -1.0;
    char *copy = ms_strdup(spec);
    if (!copy)
        return ms_die_usage("out of memory");
    double sum = 0.0;
    size_t unset = nd;
    for (char *p = copy; p && *p;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        char *eq = strrchr(p, '=');
        char *end = NULL;
        double v = eq ? strtod(eq + 1, &end) : 0.0;
        if (!eq || end == eq + 1 || *end || !(v >= 0.0 && v <= 1.0)) {
            free(copy);
            return ms_die_usage("--target: expected NAME=SHARE with SHARE in [0, 1], got '%s'", p);
        }
        *eq = '\0';
        size_t d = 0;
        while (d < nd && strcmp(r->donors[d].name, p) != 0)
            d++;
        if (d == nd) {
            int rc = ms_die_usage("--target: '%s' is not a donor of this merge", p);
            free(copy);
            return rc;
        }
        if (target[d] < 0)
            unset--;
        target[d] = v;
        sum += v;
        p = comma ? comma + 1 : NULL;
    }
    free(copy);
    if (sum > 1.0 + 1e-9)
        return ms_die_usage("--target: shares add up to %.4f (more than 1)", sum);
    for (size_t d = 0; d < nd; d++)
        if (target[d] < 0)
            target[d] = unset ? (1.0 - sum) / (double)unset : 0.0;
    return 0;
}

static int run_suggest(ms_audit *a, const ms_recipe *recipe, const audit_args *o,
                       cJSON *json)
{
    const ms_audit_result *r = ms_audit_get(a);
    ms_audit_per per = MS_AUDIT_PER_DONOR;
    if (o->per && strcmp(o->per, "filter") == 0)
        per = MS_AUDIT_PER_FILTER;
    else if (o->per && strcmp(o->per, "layer") == 0)
        per = MS_AUDIT_PER_LAYER;
    else if (o->per && strcmp(o->per, "donor") != 0)
        return ms_die_usage("--per: expected donor, filter or layer, got '%s'", o->per);
    size_t nd = r->n_donors, ns = ms_audit_n_scopes(a, per);
    double *target = calloc(nd + 1, sizeof(double));
    double *scale = calloc(nd * ns + 1, sizeof(double));
    double *after = calloc(nd + 1, sizeof(double));
    double *weights = calloc(nd + 1, sizeof(double));
    if (!target || !scale || !after || !weights) {
        free(target), free(scale), free(after), free(weights);
        return ms_die_usage("out of memory");
    }
    int rc = parse_target(o->target, r, target);
    ms_error err;
    ms_error_clear(&err);
    double achieved = 0.0;
    int iters = 0;
    const ms_recipe_change *ch = NULL;
    size_t nch = 0;
    ms_status st = MS_OK;
    if (!rc)
        st = ms_audit_rebalance(a, per, target, o->tol, (int)o->max_iter, scale, &achieved,
                                &iters, &err);
    if (!rc && !st)
        st = ms_audit_simulate(a, per, scale, after, NULL, &err);
    if (!rc && !st)
        st = ms_audit_changes(a, per, scale, &ch, &nch, weights, &err);
    char header[512];
    snprintf(header, sizeof(header), "reweighted by mergescope audit --suggest (target %s, "
             "per %s): simulated shares within %.4f of the target",
             o->target ? o->target : "equal", o->per ? o->per : "donor", achieved);
    if (!rc && !st)
        st = ms_recipe_write(recipe, ch, nch, header, o->suggest, &err);
    if (!rc && st)
        rc = ms_report_error(&err);
    if (!rc && !json_stdout(o)) {
        printf("\nsuggestion (%s, per %s): %s, %d simulations, largest deviation %.4f\n",
               o->target ? o->target : "equal", o->per ? o->per : "donor", o->suggest, iters,
               achieved);
        printf("  %-28s %7s %7s %7s %9s\n", "donor", "target", "before", "after", "weight");
        for (size_t d = 0; d < nd; d++)
            printf("  %-28s %7.4f %7.4f %7.4f %9.4f\n", r->donors[d].name, target[d],
                   r->donors[d].all.share, after[d], weights[d]);
    }
    if (!rc) {
        if (achieved > o->tol)
            ms_warn("the target was not reached within %g after %d simulations", o->tol, iters);
        cJSON *s = cJSON_AddObjectToObject(json, "suggestion");
        cJSON_AddStringToObject(s, "recipe", o->suggest);
        cJSON_AddStringToObject(s, "per", o->per ? o->per : "donor");
        cJSON_AddNumberToObject(s, "tolerance", o->tol);
        cJSON_AddNumberToObject(s, "deviation", achieved);
        cJSON_AddNumberToObject(s, "simulations", iters);
        cJSON *w = cJSON_AddObjectToObject(s, "weights");
        cJSON *t = cJSON_AddObjectToObject(s, "target");
        cJSON *sa = cJSON_AddObjectToObject(s, "shares_after");
        for (size_t d = 0; d < nd; d++) {
            cJSON_AddNumberToObject(w, r->donors[d].name, weights[d]);
            cJSON_AddNumberToObject(t, r->donors[d].name, target[d]);
            cJSON_AddNumberToObject(sa, r->donors[d].name, after[d]);
        }
    }
    free(target), free(scale), free(after), free(weights);
    return rc;
}

/* ==== the command ==== */

static int audit_main(audit_args *o, const char *path)
{
    ms_error err;
    ms_error_clear(&err);
    ms_recipe *recipe = NULL;
    ms_audit *a = NULL;
    char *dir = ms_path_dirname(path);
    ms_resolve_opts ro;
    ms_common_resolve_opts(&o->c, &ro);
    ro.base_dir = dir;
    ms_progress pg;
    ms_progress_init(&pg, "audit", o->c.quiet);
    ms_audit_opts ao = {0};
    ao.threads = ms_common_threads(&o->c);
    ao.seed = (uint64_t)o->seed;
    ao.replicates = (int)o->replicates;
    ao.sample = o->sample;
    ao.stats_only = o->stats_only;
    ao.exact_select = o->exact_select;
    ao.chunk_elems = (size_t)o->chunk_elems;
    ao.max_memory = (uint64_t)o->max_memory;
    ao.stage = MS_RECIPE_NONE;
    ao.resolve = &ro;
    ao.progress = ms_progress_update;
    ao.progress_ctx = &pg;
    int rc = 0;
    /* the audit's workers split the tensors; its BLAS calls are small
     * (a few rows), so BLAS threads would only contend with them */
    openblas_set_num_threads(1);
    ms_status st = ms_recipe_load(path, &recipe, &err);
    if (!st && o->stage && (ao.stage = ms_recipe_find_stage(recipe, o->stage)) == MS_RECIPE_NONE)
        st = ms_error_set(&err, MS_ERR_USAGE, path, -1, "no stage named '%s'", o->stage);
    if (!st)
        for (size_t i = 0; i < recipe->n_warnings; i++)
            ms_warn("%s:%d:%d: %s", path, recipe->warnings[i].line, recipe->warnings[i].col,
                    recipe->warnings[i].msg);
    if (!st)
        st = ms_audit_open(recipe, &ao, &a, &err);
    if (!st)
        st = ms_audit_run(a, &err);
    ms_progress_finish(&pg);
    if (st) {
        rc = ms_report_error(&err);
    } else {
        cJSON *json = ms_json_result_new("audit");
        ms_audit_to_json(a, json);
        /* with --json - stdout carries the JSON only */
        if (!json_stdout(o))
            print_result(ms_audit_get(a));
        if (o->suggest)
            rc = run_suggest(a, recipe, o, json);
        if (!rc)
            rc = ms_write_json_result(&o->c, json);
        cJSON_Delete(json);
    }
    ms_audit_free(a);
    ms_recipe_free(recipe);
    free(dir);
    return rc;
}

int cmd_audit(int argc, char **argv)
{
    audit_args o;
    memset(&o, 0, sizeof(o));
    o.tol = 0.01;
    o.replicates = -1;
    o.max_iter = 30;
    const ms_option opts[] = {
        MS_OPT_GROUP_("audit options"),
        MS_OPT_INT_(0, "seed", &o.seed, "N", "seed of the DARE/DELLA draws (default 0)", 0, 2147483647L),
        MS_OPT_INT_(0, "replicates", &o.replicates, "N",
                    "extra DARE/DELLA draws for the share intervals (default 8)", 0, 64),
        MS_OPT_DOUBLE_(0, "sample", &o.sample, "F",
                       "read only this fraction of each tensor's row chunks (quick look)"),
        MS_OPT_BOOL_(0, "stats-only", &o.stats_only, "statistics only, no merge simulation"),
        MS_OPT_BOOL_(0, "exact-select", &o.exact_select,
                     "find trim cuts with two exact passes (slower, same result)"),
        MS_OPT_STRING_(0, "stage", &o.stage, "NAME", "the stage of a multi-document recipe"),
        MS_OPT_INT_(0, "chunk-elems", &o.chunk_elems, "N",
                    "elements per model in one row chunk (default 32768)", 1, 1L << 26),
        MS_OPT_GROUP_("rebalancing"),
        MS_OPT_STRING_(0, "suggest", &o.suggest, "OUT.yml", "write a reweighted recipe"),
        MS_OPT_STRING_(0, "target", &o.target, "SPEC",
                       "wanted shares: equal (default) or NAME=SHARE,..."),
        MS_OPT_STRING_(0, "per", &o.per, "WHAT", "weights per donor (default), filter or layer"),
        MS_OPT_DOUBLE_(0, "tolerance", &o.tol, "F", "largest share deviation (default 0.01)"),
        MS_OPT_INT_(0, "max-iter", &o.max_iter, "N", "simulations at most (default 30)", 1, 1000),
        MS_COMMON_OPTIONS(&o.c),
        MS_OPT_END_,
    };
    ms_strlist pos = {0};
    int code = 0;
    if (ms_parse_options(argc, argv, opts, usage_lines, &pos, &code))
        return code;
    int rc;
    if (pos.n != 1)
        rc = ms_die_usage("audit: expected one RECIPE, got %zu arguments", pos.n);
    else if (o.sample < 0.0 || o.sample > 1.0)
        rc = ms_die_usage("--sample: expected a fraction in (0, 1], got %g", o.sample);
    else if (!(o.tol > 0.0))
        rc = ms_die_usage("--tolerance: expected a positive number");
    else if (o.stats_only && o.suggest)
        rc = ms_die_usage("--suggest needs the simulation (drop --stats-only)");
    else if ((o.max_memory = ms_common_max_memory(&o.c)) < 0)
        rc = ms_die_usage("bad --max-memory '%s' (e.g. 512M)", o.c.max_memory);
    else
        rc = audit_main(&o, pos.items[0]);
    free(pos.items);
    free(o.c.model_map.items);
    return rc;
}
