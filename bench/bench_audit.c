/*
 * bench_audit.c - `mergescope audit` speed as ratios against two baselines
 * measured in the same run, on a family generated outside the repository:
 *
 *   /usr/bin/python3 ../shared/bench/gen_family.py DIR --preset tinyllama
 *   bench_audit DIR [--threads N] [--peer PATH/peer_audit.py] [--runs N]
 *
 * DIR holds base/ and donor1..3/ (HF layout). The recipe audited is TIES
 * (density 0.5, weights 0.5/0.3/0.4), written into a temporary file. Every
 * measurement runs in a forked child so its peak RSS (wait4 ru_maxrss,
 * mapped file pages included) is its own. The first pass of each model
 * file warms the page cache; timed runs read from it.
 *
 * Baselines: raw read = 2 threads summing every 8-byte word of the same
 * mapped files (the bandwidth ceiling); peer = peer_audit.py (numpy).
 */
#include <pthread.h>
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mergescope/audit.h"
#include "mergescope/recipe.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

typedef struct raw_job {
    const ms_model *const *models;
    size_t n;
    int part, parts;
    uint64_t sum, bytes;
} raw_job;

static void *raw_main(void *arg)
{
    raw_job *j = arg;
    /* every tensor's bytes, split by tensor index between the threads */
    for (size_t m = 0; m < j->n; m++) {
        const ms_model *mo = j->models[m];
        for (size_t t = (size_t)j->part; t < mo->n_tensors; t += (size_t)j->parts) {
            const ms_tensor *x = &mo->tensors[t];
            const uint64_t *p = (const uint64_t *)(const void *)x->data;
            uint64_t nw = x->nbytes / 8, s = 0;
            for (uint64_t i = 0; i < nw; i++)
                s += p[i];
            j->sum += s;
            j->bytes += x->nbytes;
            ms_map_release(x->data, x->nbytes);
        }
    }
    return NULL;
}

static int raw_read(char **dirs, size_t n, int threads)
{
    ms_model *m[8] = {0};
    ms_error err;
    ms_error_clear(&err);
    for (size_t i = 0; i < n; i++)
        if (ms_model_open(dirs[i], &m[i], &err))
            return 1;
    raw_job j[16];
    pthread_t th[16];
    for (int i = 0; i < threads; i++) {
        j[i] = (raw_job){(const ms_model *const *)m, n, i, threads, 0, 0};
        pthread_create(&th[i], NULL, raw_main, &j[i]);
    }
    uint64_t sum = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        sum += j[i].sum;
    }
    for (size_t i = 0; i < n; i++)
        ms_model_close(m[i]);
    return sum == 42 ? 3 : 0; /* keep the sum alive */
}

static int audit_child(const char *recipe_path, const char *models_dir, int threads,
                       bool stats_only)
{
    ms_error err;
    ms_error_clear(&err);
    ms_recipe *r = NULL;
    ms_audit *a = NULL;
    ms_resolve_opts ro = {0};
    ro.models_dir = models_dir;
    ms_audit_opts o = {0};
    o.threads = threads;
    o.stats_only = stats_only;
    o.stage = MS_RECIPE_NONE;
    o.resolve = &ro;
    int rc = 0;
    openblas_set_num_threads(1); /* as cmd_audit does */
    if (ms_recipe_load(recipe_path, &r, &err) || ms_audit_open(r, &o, &a, &err) ||
        ms_audit_run(a, &err)) {
        char buf[1024];
        ms_error_format(&err, buf, sizeof(buf));
        fprintf(stderr, "bench_audit: %s\n", buf);
        rc = 1;
    } else {
        const ms_audit_result *res = ms_audit_get(a);
        for (size_t d = 0; d < res->n_donors; d++)
            fprintf(stderr, "  %s share %.4f rel_norm %.4f\n", res->donors[d].name,
                    res->donors[d].all.share, res->donors[d].all.rel_norm);
    }
    ms_audit_free(a);
    ms_recipe_free(r);
    return rc;
}

typedef struct measure {
    double seconds;
    double cpu;         /* user + system CPU seconds of the child */
    long maxrss_kb;
    int status;
} measure;

/* Run fn in a forked child; wall time and the child's peak RSS. */
#define MEASURE(out, call)                                                   \
    do {                                                                     \
        double t0_ = ms_now();                                               \
        pid_t pid_ = fork();                                                 \
        if (pid_ == 0)                                                       \
            _exit(call);                                                     \
        int st_ = 0;                                                         \
        struct rusage ru_;                                                   \
        wait4(pid_, &st_, 0, &ru_);                                          \
        (out).seconds = ms_now() - t0_;                                      \
        (out).maxrss_kb = ru_.ru_maxrss;                                     \
        (out).cpu = (double)ru_.ru_utime.tv_sec + 1e-6 * ru_.ru_utime.tv_usec + \
                    (double)ru_.ru_stime.tv_sec + 1e-6 * ru_.ru_stime.tv_usec;                                     \
        (out).status = WIFEXITED(st_) ? WEXITSTATUS(st_) : -1;               \
    } while (0)

static void row(const char *label, const measure *m, double gb)
{
    printf("%-28s %9.2f %9.2f %9.2f %7ld MB %8d\n", label, m->seconds, m->cpu, gb / m->seconds,
           m->maxrss_kb / 1024, m->status);
}

static int run_peer(const char *peer, char **dirs)
{
    execl("/usr/bin/python3", "python3", peer, "--base", dirs[0], "--donor", dirs[1],
          "--donor", dirs[2], "--donor", dirs[3], "--quiet", (char *)NULL);
    return 127;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_audit FAMILY_DIR [--threads N] [--peer peer_audit.py] "
                        "[--runs N]\n");
        return 2;
    }
    const char *fam = argv[1], *peer = NULL;
    int threads = 2, runs = 2;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0)
            threads = (int)strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--peer") == 0)
            peer = argv[i + 1];
        else if (strcmp(argv[i], "--runs") == 0)
            runs = (int)strtol(argv[i + 1], NULL, 10);
    }
    if (threads < 1 || threads > 16)
        threads = 2;
    char *dirs[4];
    const char *names[] = {"base", "donor1", "donor2", "donor3"};
    for (int i = 0; i < 4; i++)
        dirs[i] = ms_path_join(fam, names[i]);
    char recipe[] = "/tmp/bench-audit-XXXXXX.yml";
    int fd = mkstemps(recipe, 4);
    const char *text = "merge_method: ties\nbase_model: base\nmodels:\n"
                       "  - model: donor1\n    parameters: {weight: 0.5, density: 0.5}\n"
                       "  - model: donor2\n    parameters: {weight: 0.3, density: 0.5}\n"
                       "  - model: donor3\n    parameters: {weight: 0.4, density: 0.5}\n"
                       "parameters: {normalize: true}\ndtype: float32\n";
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        return 1;
    close(fd);
    measure warm, raw = {1e30, 0, 0, 0}, full = {1e30, 0, 0, 0}, stats = {1e30, 0, 0, 0},
            pr = {0, 0, 0, 0};
    MEASURE(warm, raw_read(dirs, 4, threads));
    for (int r = 0; r < runs; r++) {
        measure m;
        MEASURE(m, raw_read(dirs, 4, threads));
        if (m.seconds < raw.seconds)
            raw = m;
        MEASURE(m, audit_child(recipe, fam, threads, true));
        if (m.seconds < stats.seconds)
            stats = m;
        MEASURE(m, audit_child(recipe, fam, threads, false));
        if (m.seconds < full.seconds)
            full = m;
    }
    if (peer)
        MEASURE(pr, run_peer(peer, dirs));
    ms_model *bm = NULL;
    ms_error err;
    ms_error_clear(&err);
    uint64_t bytes = 0;
    for (int i = 0; i < 4; i++)
        if (!ms_model_open(dirs[i], &bm, &err)) {
            bytes += bm->data_bytes;
            ms_model_close(bm);
        }
    double gb = (double)bytes / 1e9;
    printf("family %s: %.2f GB of tensor data (base + 3 donors), %d threads, best of %d\n",
           fam, gb, threads, runs);
    printf("%-28s %9s %9s %9s %10s %8s\n", "run", "seconds", "cpu s", "GB/s", "peak RSS",
           "status");
    row("warm-up raw read (cache)", &warm, gb);
    row("raw read", &raw, gb);
    row("audit --stats-only", &stats, gb);
    row("audit (ties simulation)", &full, gb);
    if (peer)
        row("peer_audit.py", &pr, gb);
    printf("ratios: full audit / raw read %.3f, stats-only / raw read %.3f",
           raw.seconds / full.seconds, raw.seconds / stats.seconds);
    if (peer)
        printf(", full audit vs peer %.1fx, stats-only vs peer %.1fx",
               pr.seconds / full.seconds, pr.seconds / stats.seconds);
    printf("\n");
    printf("cpu-time ratios: raw / full %.3f, raw / stats-only %.3f", raw.cpu / full.cpu,
           raw.cpu / stats.cpu);
    if (peer)
        printf(", peer / full %.1fx, peer / stats-only %.1fx", pr.cpu / full.cpu,
               pr.cpu / stats.cpu);
    printf("\n");
    unlink(recipe);
    for (int i = 0; i < 4; i++)
        free(dirs[i]);
    return 0;
}
