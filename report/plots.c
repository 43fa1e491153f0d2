/*
 * plots.c - plots as gnuplot data files plus scripts, and running gnuplot.
 *
 * Nothing read from a result reaches a script: the script text is made of
 * fixed strings, numbers printed here and file names made here. Labels
 * (donor names, layer and type names) are sanitised to [A-Za-z0-9._/-]
 * and travel in the tab-separated data files, read with columnheader()
 * and xtic(), which gnuplot does not evaluate. Terminals are "noenhanced"
 * so a label is drawn as written.
 *
 * gnuplot runs without a shell: fork, execv of the program found on PATH,
 * the script on its stdin through a socket pair (so a gnuplot that dies
 * early cannot SIGPIPE us), in the plots directory, with a CPU alarm.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "report_int.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

#define LABEL_MAX 60

/* ==== the plot set ==== */

static bool name_taken(const ms_rp_plots *ps, const char *name)
{
    for (size_t i = 0; i < ps->n; i++)
        if (!strcmp(ps->p[i]->name, name))
            return true;
    return false;
}

ms_rp_plot *ms_rp_plot_add(ms_rp_plots *ps, ms_rp_plot_kind kind, const char *name, size_t nrow,
                     size_t ncol)
{
    size_t cells;
    if (ps->oom || !ms_mul_size(nrow, ncol, &cells))
        return NULL;
    ms_rp_plot **np = ms_realloc_array(ps->p, ps->n + 1, sizeof(*np));
    ms_rp_plot *p = calloc(1, sizeof(*p));
    if (np)
        ps->p = np;
    if (p) {
        p->row_label = ms_zalloc_array(nrow ? nrow : 1, sizeof(char *));
        p->col_label = ms_zalloc_array(ncol ? ncol : 1, sizeof(char *));
        p->v = ms_alloc_array(cells ? cells : 1, sizeof(double));
    }
    if (!np || !p || !p->row_label || !p->col_label || !p->v) {
        if (p) {
            free(p->row_label);
            free(p->col_label);
            free(p->v);
        }
        free(p);
        ps->oom = true;
        return NULL;
    }
    for (size_t i = 0; i < cells; i++)
        p->v[i] = NAN;
    p->kind = kind;
    p->nrow = nrow;
    p->ncol = ncol;
    snprintf(p->name, sizeof(p->name), "%s", name);
    for (int k = 2; name_taken(ps, p->name) && k < 1000; k++)
        snprintf(p->name, sizeof(p->name), "%.40s_%d", name, k);
    ps->p[ps->n++] = p;
    return p;
}

static void set_label(char **slot, const char *label)
{
    free(*slot);
    *slot = ms_strdup(label ? label : "");
}

void ms_rp_plot_set_row(ms_rp_plot *p, size_t i, const char *label)
{
    if (i < p->nrow)
        set_label(&p->row_label[i], label);
}

void ms_rp_plot_set_col(ms_rp_plot *p, size_t j, const char *label)
{
    if (j < p->ncol)
        set_label(&p->col_label[j], label);
}

void ms_rp_plot_set_groups(ms_rp_plot *p, const char *const *names, size_t n)
{
    p->group = ms_zalloc_array(n ? n : 1, sizeof(char *));
    if (!p->group)
        return;
    p->ngroup = n;
    for (size_t i = 0; i < n; i++)
        set_label(&p->group[i], names[i]);
}

static void plot_free(ms_rp_plot *p)
{
    for (size_t r = 0; r < p->nrow; r++)
        free(p->row_label[r]);
    for (size_t c = 0; c < p->ncol; c++)
        free(p->col_label[c]);
    for (size_t g = 0; g < p->ngroup; g++)
        free(p->group[g]);
    free(p->group);
    free(p->row_label);
    free(p->col_label);
    free(p->v);
    free(p);
}

void ms_rp_plot_drop_last(ms_rp_plots *ps)
{
    if (ps->n)
        plot_free(ps->p[--ps->n]);
}

void ms_rp_plots_free(ms_rp_plots *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        plot_free(ps->p[i]);
    free(ps->p);
    memset(ps, 0, sizeof(*ps));
}

bool ms_rp_plot_has_data(const ms_rp_plot *p)
{
    for (size_t r = 0; r < p->nrow; r++) {
        if (p->kind == RP_PLOT_GROUPS) {
            if (isfinite(p->v[r * 3]) && isfinite(p->v[r * 3 + 1]))
                return true;
            continue;
        }
        for (size_t c = 0; c < p->ncol; c++)
            if (isfinite(p->v[r * p->ncol + c]))
                return true;
    }
    return false;
}

/* ==== data files ==== */

static bool put_label(ms_sb *sb, const char *s)
{
    char lab[LABEL_MAX + 1];
    ms_esc_gnuplot(lab, sizeof(lab), s);
    return ms_sb_add(sb, lab);
}

static bool put_value(ms_sb *sb, double v, bool pct)
{
    if (pct)
        v *= 100.0;
    if (!isfinite(v))
        return ms_sb_add(sb, "?");
    return ms_sb_addf(sb, "%.6g", v);
}

/* Header row then one row per category: label, values. */
static bool table_data(const ms_rp_plot *p, ms_sb *sb)
{
    bool ok = ms_sb_add(sb, "x");
    for (size_t c = 0; c < p->ncol && ok; c++)
        ok = ms_sb_addc(sb, '\t') && put_label(sb, p->col_label[c]);
    ok = ok && ms_sb_addc(sb, '\n');
    for (size_t r = 0; r < p->nrow && ok; r++) {
        ok = put_label(sb, p->row_label[r]);
        for (size_t c = 0; c < p->ncol && ok; c++)
            ok = ms_sb_addc(sb, '\t') && put_value(sb, p->v[r * p->ncol + c], p->y_percent);
        ok = ok && ms_sb_addc(sb, '\n');
    }
    return ok;
}

/* Groups: one file per group, NAME_gK.dat, header "x<TAB>group". */
static bool group_data(const ms_rp_plot *p, size_t g, ms_sb *sb)
{
    bool ok = ms_sb_add(sb, "x\t") && put_label(sb, p->group[g]) && ms_sb_addc(sb, '\n');
    size_t rows = 0;
    for (size_t r = 0; r < p->nrow && ok; r++) {
        const double *row = &p->v[r * 3];
        if (!isfinite(row[0]) || !isfinite(row[1]) || row[2] != (double)g)
            continue;
        ok = ms_sb_addf(sb, "%.6g\t%.6g\n", row[0], row[1]);
        rows++;
    }
    /* gnuplot refuses a file without data points: a far-away dummy */
    if (ok && !rows)
        ok = ms_sb_add(sb, "?\t?\n");
    return ok;
}

/* ==== scripts ==== */

static const char *const palette[] = {
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7",
    "#56B4E9", "#F0E442", "#000000", "#999999", "#882255",
};

/* Stacked bars: gnuplot's autoscale overshoots to the next major tick;
 * frame the tallest stack (positive parts above 0, negative below). */
static bool stacked_range(const ms_rp_plot *p, ms_sb *s)
{
    double top = 0, bottom = 0, k = p->y_percent ? 100.0 : 1.0;
    for (size_t r = 0; r < p->nrow; r++) {
        double up = 0, down = 0;
        for (size_t c = 0; c < p->ncol; c++) {
            double v = p->v[r * p->ncol + c];
            if (isfinite(v))
                *(v > 0 ? &up : &down) += v;
        }
        top = up > top ? up : top;
        bottom = down < bottom ? down : bottom;
    }
    if (!(top > bottom) || !isfinite(top - bottom) || !isfinite((top - bottom) * k * 2))
        return true;
    double pad = (top - bottom) * 0.04;
    return ms_sb_addf(s, "set yrange [%.6g:%.6g]\n", bottom < 0 ? (bottom - pad) * k : 0.0,
                      (top + pad) * k);
}

static bool script_common(const ms_rp_plot *p, ms_sb *s)
{
    bool ok = ms_sb_add(s, "set datafile separator \"\\t\"\n"
                           "set datafile missing \"?\"\n"
                           "set border 3 lw 1\nset tics nomirror\n"
                           "set grid ytics lc rgb \"#dddddd\"\n"
                           "set key outside right top vertical noenhanced\n"
                           "set xtics noenhanced\nset ytics noenhanced\n");
    for (size_t i = 0; i < MS_ARRAY_SIZE(palette) && ok; i++)
        ok = ms_sb_addf(s, "set linetype %zu lc rgb \"%s\" lw 2 pt %zu ps 1.1\n", i + 1,
                        palette[i], i % 7 + 5);
    ok = ok && ms_sb_addf(s, "set linetype cycle %zu\n", MS_ARRAY_SIZE(palette));
    ok = ok && ms_sb_addf(s, "set title \"%s\" font \",14\"\n", p->title);
    ok = ok && ms_sb_addf(s, "set xlabel \"%s\"\nset ylabel \"%s\"\n",
                          p->xlabel ? p->xlabel : "", p->ylabel ? p->ylabel : "");
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; p->kind != RP_PLOT_GROUPS && i < p->nrow * p->ncol; i++)
        if (isfinite(p->v[i])) {
            lo = p->v[i] < lo ? p->v[i] : lo;
            hi = p->v[i] > hi ? p->v[i] : hi;
        }
    /* a log axis only pays when the values span more than a decade */
    if (ok && p->y_log && lo > 0 && hi / lo > 10)
        ok = ms_sb_add(s, "set logscale y\n");
    else if (ok && !p->has_yrange && p->kind == RP_PLOT_STACKED)
        ok = stacked_range(p, s);
    else if (ok && !p->has_yrange && lo >= 0 && p->kind == RP_PLOT_BARS)
        ok = ms_sb_add(s, "set yrange [0:*]\n");
    if (ok && p->ncol == 1 && p->kind != RP_PLOT_GROUPS)
        ok = ms_sb_add(s, "unset key\n");
    if (ok && p->has_yrange && isfinite(p->ymin * 100) && isfinite(p->ymax * 100))
        ok = ms_sb_addf(s, "set yrange [%.6g:%.6g]\n", p->y_percent ? p->ymin * 100 : p->ymin,
                        p->y_percent ? p->ymax * 100 : p->ymax);
    return ok;
}

/* Label every k-th category so that at most ~24 tick labels show. */
static unsigned tick_step(size_t n)
{
    return n <= 24 ? 1u : (unsigned)((n + 23) / 24);
}

static bool script_plot(const ms_rp_plot *p, ms_sb *s)
{
    unsigned step = tick_step(p->nrow);
    size_t last = p->ncol + 1;
    switch (p->kind) {
    case RP_PLOT_STACKED:
    case RP_PLOT_BARS:
        return ms_sb_addf(s,
                          "set style data histograms\n"
                          "set style histogram %s\n"
                          "set style fill solid 0.85 %s\n"
                          "set boxwidth %s\n"
                          "%s"
                          "plot for [i=2:%zu] '%s.dat' using i:xtic(int($0) %% %u == 0 ? "
                          "stringcolumn(1) : \"\") title columnheader(i)\n",
                          p->kind == RP_PLOT_STACKED ? "rowstacked" : "clustered gap 1",
                          /* thin white seams help few bars, blur many */
                          p->nrow <= 40 ? "border rgb \"#ffffff\"" : "noborder",
                          p->kind == RP_PLOT_STACKED ? "0.8" : "0.9",
                          p->kind == RP_PLOT_BARS ? "set xtics rotate by -30 left\n" : "",
                          last, p->name, step);
    case RP_PLOT_LINES: {
        /* x is a layer index: whole numbers, a little room at both ends */
        double lo = INFINITY, hi = -INFINITY;
        for (size_t r = 0; r < p->nrow; r++) {
            double x = p->row_label[r] ? strtod(p->row_label[r], NULL) : NAN;
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
        bool ok = ms_sb_addf(s, "set xtics %u\n", step);
        if (ok && lo <= hi)
            ok = ms_sb_addf(s, "set xrange [%.6g:%.6g]\n", lo - 0.3, hi + 0.3);
        return ok && ms_sb_addf(s,
                                "plot for [i=2:%zu] '%s.dat' using 1:i with linespoints "
                                "title columnheader(i)\n",
                                last, p->name);
    }
    case RP_PLOT_HEATMAP:
        return ms_sb_addf(s,
                          "set palette defined (-1 \"#B2182B\", 0 \"#F7F7F7\", 1 \"#2166AC\")\n"
                          "set cbrange [-1:1]\nset cblabel \"cosine\"\n"
                          "set size ratio -1\nunset key\nunset grid\n"
                          "set xtics rotate by -45 left\n"
                          "plot '%s.dat' matrix rowheaders columnheaders using 1:2:3 with "
                          "image, '' matrix rowheaders columnheaders using 1:2:"
                          "(sprintf(\"%%.2f\", $3)) with labels font \",10\"\n",
                          p->name);
    case RP_PLOT_GROUPS: {
        bool ok = ms_sb_add(s, "plot ");
        for (size_t g = 0; g < p->ngroup && ok; g++)
            ok = ms_sb_addf(s, "%s'%s_g%zu.dat' using 1:2 with points pt %d ps 1.6 "
                               "lt %zu title columnheader(2)",
                            g ? ", \\\n     " : "", p->name, g, g % 2 ? 7 : 5, g + 1);
        return ok && ms_sb_addc(s, '\n');
    }
    }
    return false;
}

/* The script renders the same plot to NAME.png and NAME.svg; with part,
 * to NAME.png.part and NAME.svg.part, renamed into place once gnuplot
 * succeeded. */
static bool script_text(const ms_rp_plot *p, bool part, ms_sb *s)
{
    static const char *const term[2] = {
        "pngcairo size 1100,620 font \"sans,11\" noenhanced",
        "svg size 1100,620 font \"sans,11\" noenhanced background \"#ffffff\"",
    };
    static const char *const ext[2] = {"png", "svg"};
    bool ok = ms_sb_addf(s, "# %s: gnuplot script written by mergescope report\n"
                            "# render: cd plots && gnuplot %s.gp\n",
                         p->name, p->name);
    for (int t = 0; t < 2 && ok; t++) {
        ok = ms_sb_add(s, "reset\n") && ms_sb_addf(s, "set terminal %s\n", term[t]) &&
             ms_sb_addf(s, "set output '%s.%s%s'\n", p->name, ext[t], part ? ".part" : "") &&
             script_common(p, s) && script_plot(p, s) && ms_sb_add(s, "unset output\n");
    }
    return ok;
}

static ms_status write_text(const char *dir, const char *name, const char *ext,
                            const ms_sb *sb, ms_error *err)
{
    ms_sb path = MS_SB_INIT;
    if (!ms_sb_addf(&path, "%s/%s.%s", dir, name, ext))
        return ms_error_set(err, MS_ERR_NOMEM, dir, -1, "out of memory");
    ms_status st = ms_write_file_atomic(path.buf, ms_sb_str(sb), sb->len, err);
    ms_sb_free(&path);
    return st;
}

static ms_status write_plot(const ms_rp_plot *p, const char *dir, ms_error *err)
{
    ms_sb sb = MS_SB_INIT;
    ms_status st = MS_OK;
    if (p->kind == RP_PLOT_GROUPS) {
        for (size_t g = 0; g < p->ngroup && !st; g++) {
            char stem[96];
            ms_sb_reset(&sb);
            snprintf(stem, sizeof(stem), "%s_g%zu", p->name, g);
            st = group_data(p, g, &sb) ? write_text(dir, stem, "dat", &sb, err)
                                       : ms_error_set(err, MS_ERR_NOMEM, dir, -1, "out of memory");
        }
    } else {
        st = table_data(p, &sb) ? write_text(dir, p->name, "dat", &sb, err)
                                : ms_error_set(err, MS_ERR_NOMEM, dir, -1, "out of memory");
    }
    ms_sb_reset(&sb);
    /* images from an earlier run must not pass for this run's */
    for (int e = 0; e < 2 && !st; e++) {
        ms_sb old = MS_SB_INIT;
        if (ms_sb_addf(&old, "%s/%s.%s", dir, p->name, e ? "svg" : "png"))
            unlink(old.buf);
        ms_sb_free(&old);
    }
    if (!st)
        st = script_text(p, false, &sb) ? write_text(dir, p->name, "gp", &sb, err)
                                 : ms_error_set(err, MS_ERR_NOMEM, dir, -1, "out of memory");
    ms_sb_free(&sb);
    return st;
}

ms_status ms_rp_plots_write(const ms_rp_plots *ps, const char *dir, ms_error *err)
{
    if (ps->oom)
        return ms_error_set(err, MS_ERR_NOMEM, dir, -1, "out of memory");
    for (size_t i = 0; i < ps->n; i++) {
        ms_status st = write_plot(ps->p[i], dir, err);
        if (st)
            return st;
    }
    return MS_OK;
}

/* ==== running gnuplot ==== */

/* The program's path on PATH (or itself when it contains a '/'); NULL
 * when not found. Caller frees. */
static char *find_program(const char *prog)
{
    if (strchr(prog, '/'))
        return access(prog, X_OK) == 0 ? ms_strdup(prog) : NULL;
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);
        ms_sb cand = MS_SB_INIT;
        bool ok = n ? ms_sb_addn(&cand, path, n) : ms_sb_addc(&cand, '.');
        ok = ok && ms_sb_addc(&cand, '/') && ms_sb_add(&cand, prog);
        if (ok && ms_path_is_file(cand.buf) && access(cand.buf, X_OK) == 0)
            return ms_sb_detach(&cand);
        ms_sb_free(&cand);
        path += n + (colon ? 1 : 0);
    }
    return NULL;
}

/* In the child: stdin from the socket, stdout/stderr to /dev/null, cwd
 * dir, a CPU limit; then exec. Never returns. */
static void child_exec(int sock, const char *dir, const char *exe)
{
    int devnull = open("/dev/null", O_WRONLY);
    if (dup2(sock, 0) < 0 || devnull < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0 ||
        chdir(dir) != 0)
        _exit(126);
    alarm(120);
    char *const argv[] = {(char *)"gnuplot", NULL};
    execv(exe, argv);
    _exit(127);
}

/* Run one script; true when gnuplot exited 0. */
static bool run_gnuplot(const char *exe, const char *dir, const ms_sb *script)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return false;
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return false;
    }
    if (pid == 0) {
        close(sv[0]);
        child_exec(sv[1], dir, exe);
    }
    close(sv[1]);
    const char *p = ms_sb_str(script);
    size_t left = script->len;
    while (left) {
        ssize_t w = send(sv[0], p, left, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        p += w;
        left -= (size_t)w;
    }
    shutdown(sv[0], SHUT_WR);
    close(sv[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return left == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Move NAME.EXT.part to NAME.EXT when it is a non-empty file. */
static bool promote(const char *dir, const char *name, const char *ext)
{
    ms_sb part = MS_SB_INIT, final = MS_SB_INIT;
    struct stat st;
    bool ok = ms_sb_addf(&part, "%s/%s.%s.part", dir, name, ext) &&
              ms_sb_addf(&final, "%s/%s.%s", dir, name, ext);
    ok = ok && stat(part.buf, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
         rename(part.buf, final.buf) == 0;
    if (!ok && part.buf)
        unlink(part.buf);
    ms_sb_free(&part);
    ms_sb_free(&final);
    return ok;
}

void ms_rp_plots_render(const ms_rp_plots *ps, const char *dir, const char *program,
                     ms_report_outcome *out)
{
    char *exe = find_program(program ? program : "gnuplot");
    out->n_plots = 0;
    for (size_t i = 0; i < ps->n; i++)
        out->n_plots += ms_rp_plot_has_data(ps->p[i]);
    if (!exe) {
        out->gnuplot_missing = out->n_plots > 0;
        return;
    }
    for (size_t i = 0; i < ps->n; i++) {
        const ms_rp_plot *p = ps->p[i];
        /* gnuplot fails on a plot without a single point: nothing to show */
        if (!ms_rp_plot_has_data(p))
            continue;
        ms_sb script = MS_SB_INIT;
        bool ok = script_text(p, true, &script) && run_gnuplot(exe, dir, &script);
        ms_sb_free(&script);
        bool png = promote(dir, p->name, "png"), svg = promote(dir, p->name, "svg");
        if (ok && png && svg) {
            out->n_rendered++;
        } else if (!out->gnuplot_failed) {
            out->gnuplot_failed = true;
            snprintf(out->failed_plot, sizeof(out->failed_plot), "%s", p->name);
        }
    }
    free(exe);
}
