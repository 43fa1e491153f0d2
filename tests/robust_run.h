/*
 * robust_run.h - run the mergescope binary under resource limits, and the
 * small file helpers the robustness and output tests share.
 *
 * Header-only (static inline) because each tests/test_*.c is linked with
 * testutil.c alone.
 */
#ifndef MS_ROBUST_RUN_H
#define MS_ROBUST_RUN_H

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mergescope/util.h"

/* ASan reserves terabytes of shadow memory: no address-space limit there. */
#if defined(__SANITIZE_ADDRESS__)
#define RB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RB_ASAN 1
#endif
#endif
#ifndef RB_ASAN
#define RB_ASAN 0
#endif

typedef struct rb_limits {
    int cpu_s;            /* RLIMIT_CPU; 0: 10 s */
    uint64_t as_bytes;    /* RLIMIT_AS when not under ASan; 0: 1 GiB */
    double wall_s;        /* killed after this long; 0: 30 s */
    const char *const *env; /* extra NAME=VALUE settings, NULL-terminated */
    int uid;              /* > 0: run as this user and group (when root) */
} rb_limits;

typedef struct rb_result {
    int status;           /* exit status, -1 when killed by a signal */
    int sig;              /* the signal, 0 if none */
    bool timed_out;       /* we killed it at wall_s */
    double wall;          /* seconds */
    char *out, *err;      /* captured stdout and stderr (caller frees) */
} rb_result;

/* A note on stderr that does not fail the test (Criterion's cr_log_warn
 * makes the run exit non-zero): known bugs, skipped parts. */
#define rb_note(...) \
    do { \
        fprintf(stderr, "[NOTE] "); \
        fprintf(stderr, __VA_ARGS__); \
        fputc('\n', stderr); \
    } while (0)

static inline double rb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline char *rb_slurp_fd(int fd)
{
    ms_sb sb = MS_SB_INIT;
    char buf[4096];
    ssize_t n;
    lseek(fd, 0, SEEK_SET);
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        ms_sb_addn(&sb, buf, (size_t)n);
    ms_sb_addn(&sb, "", 0);
    return ms_sb_detach(&sb);
}

/* The child: limits, redirections, exec. Never returns. */
static inline void rb_child(const char *const *argv, const rb_limits *lim, int ofd,
                            int efd)
{
    size_t n = 0;
    while (argv[n])
        n++;
    const char **av = calloc(n + 2, sizeof(*av));
    if (!av)
        _exit(126);
    av[0] = MS_BINARY;
    for (size_t i = 0; i < n; i++)
        av[i + 1] = argv[i];
    rlim_t cpu = (rlim_t)(lim && lim->cpu_s ? lim->cpu_s : 10);
    struct rlimit rc = {cpu, cpu + 1};
    setrlimit(RLIMIT_CPU, &rc);
    if (!RB_ASAN) {
        rlim_t as = (rlim_t)(lim && lim->as_bytes ? lim->as_bytes : (uint64_t)1 << 30);
        struct rlimit ra = {as, as};
        setrlimit(RLIMIT_AS, &ra);
    }
    struct rlimit core = {0, 0};
    setrlimit(RLIMIT_CORE, &core);
    /* OpenBLAS's thread pool costs more start-up time than a tiny run */
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    for (size_t i = 0; lim && lim->env && lim->env[i]; i++)
        putenv((char *)lim->env[i]);
    /* as root, permissions do not bind: drop to an ordinary user */
    if (lim && lim->uid > 0 && geteuid() == 0 &&
        (setgroups(0, NULL) != 0 || setgid((gid_t)lim->uid) != 0 ||
         setuid((uid_t)lim->uid) != 0))
        _exit(125);
    dup2(ofd, 1);
    dup2(efd, 2);
    execv(MS_BINARY, (char *const *)av);
    _exit(127);
}

/* Start the binary; the pid is returned and the capture files are in fds. */
static inline pid_t rb_spawn(const char *const *argv, const rb_limits *lim, int *ofd,
                             int *efd)
{
    char of[] = "/tmp/ms-rb-out-XXXXXX", ef[] = "/tmp/ms-rb-err-XXXXXX";
    *ofd = mkstemp(of);
    *efd = mkstemp(ef);
    if (*ofd >= 0)
        unlink(of);
    if (*efd >= 0)
        unlink(ef);
    if (*ofd < 0 || *efd < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0)
        rb_child(argv, lim, *ofd, *efd);
    return pid;
}

/* Wait for pid, killing it after wall seconds; fills r (not the texts). */
static inline void rb_wait(pid_t pid, double wall, double t0, rb_result *r)
{
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            break;
        if (rb_now() - t0 > wall && !r->timed_out) {
            r->timed_out = true;
            kill(pid, SIGKILL);
        }
        usleep(250);
    }
    r->wall = rb_now() - t0;
    r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r->sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

/* Run the binary with argv (without argv[0]) under lim (NULL: defaults). */
static inline void rb_run(const char *const *argv, const rb_limits *lim, rb_result *r)
{
    int ofd, efd;
    memset(r, 0, sizeof(*r));
    double t0 = rb_now();
    pid_t pid = rb_spawn(argv, lim, &ofd, &efd);
    if (pid < 0) {
        r->status = -1;
        r->out = ms_strdup("");
        r->err = ms_strdup("spawn failed");
        return;
    }
    rb_wait(pid, lim && lim->wall_s > 0 ? lim->wall_s : 30.0, t0, r);
    r->out = rb_slurp_fd(ofd);
    r->err = rb_slurp_fd(efd);
    close(ofd);
    close(efd);
}

static inline void rb_free(rb_result *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* ==== files ==== */

static inline bool rb_read(const char *path, uint8_t **data, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    *data = NULL;
    *len = 0;
    if (!fp)
        return false;
    ms_sb sb = MS_SB_INIT;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
        ms_sb_addn(&sb, buf, n);
    fclose(fp);
    *len = sb.len;
    ms_sb_addn(&sb, "", 0);
    *data = (uint8_t *)ms_sb_detach(&sb);
    return *data != NULL;
}

static inline bool rb_copy(const char *from, const char *to)
{
    uint8_t *d;
    size_t n;
    if (!rb_read(from, &d, &n))
        return false;
    FILE *fp = fopen(to, "wb");
    bool ok = fp && fwrite(d, 1, n, fp) == n;
    if (fp && fclose(fp) != 0)
        ok = false;
    free(d);
    return ok;
}

/* rm -r of a test's temporary directory (no symlinks are followed). */
static inline void rb_rmtree(const char *dir)
{
    if (!dir || strncmp(dir, "/tmp/", 5) != 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/rm", "rm", "-rf", "--", dir, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

/*
 * A llama-named F16 safetensors checkpoint of n_layers up_proj tensors of
 * rows x cols, values from a seeded xorshift (finite, |x| < 2). Big enough
 * models for kill and memory tests without committing anything.
 */
static inline bool rb_write_big_model(const char *path, int n_layers, int rows, int cols,
                                      uint64_t seed)
{
    ms_sb h = MS_SB_INIT;
    size_t tbytes = (size_t)rows * (size_t)cols * 2;
    ms_sb_addc(&h, '{');
    for (int i = 0; i < n_layers; i++)
        ms_sb_addf(&h, "%s\"model.layers.%d.mlp.up_proj.weight\":{\"dtype\":\"F16\","
                   "\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}", i ? "," : "", i, rows,
                   cols, tbytes * (size_t)i, tbytes * (size_t)(i + 1));
    ms_sb_addc(&h, '}');
    while (h.len % 8)
        ms_sb_addc(&h, ' ');
    FILE *fp = fopen(path, "wb");
    uint16_t *buf = malloc(tbytes);
    bool ok = fp && buf;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    ok = ok && fwrite(len8, 1, 8, fp) == 8 && fwrite(h.buf, 1, h.len, fp) == h.len;
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (int l = 0; ok && l < n_layers; l++) {
        for (size_t e = 0; e < tbytes / 2; e++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* sign, exponent 0x0c..0x0f (|x| in [2^-3, 2)), any mantissa */
            buf[e] = (uint16_t)((x & 0x8000) | (0x0c + (x >> 20 & 3)) << 10 | (x >> 32 & 0x3ff));
        }
        ok = fwrite(buf, 1, tbytes, fp) == tbytes;
    }
    if (fp && fclose(fp) != 0)
        ok = false;
    free(buf);
    ms_sb_free(&h);
    return ok;
}

#endif
