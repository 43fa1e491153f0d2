/*
 * testutil.c - helpers shared by the Criterion tests.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "mergescope/util.h"

char *ms_test_shared(const char *rel)
{
    if (!ms_path_is_dir(MS_SHARED_FIXTURES))
        return NULL;
    char *p = ms_path_join(MS_SHARED_FIXTURES, rel);
    if (p && access(p, R_OK) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

char *ms_test_gen(const char *rel)
{
    return ms_path_join(MS_GEN_DIR, rel);
}

char *ms_test_tmpdir(void)
{
    char tmpl[] = "/tmp/ms-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? ms_strdup(d) : NULL;
}

bool ms_test_write(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return false;
    bool ok = fwrite(data, 1, len, fp) == len;
    return fclose(fp) == 0 && ok;
}

static char *slurp_fd(int fd)
{
    ms_sb sb = MS_SB_INIT;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        ms_sb_addn(&sb, buf, (size_t)n);
    return ms_sb_detach(&sb);
}

int ms_test_run(const char *const *argv, char **out, char **errout)
{
    char of[] = "/tmp/ms-out-XXXXXX", ef[] = "/tmp/ms-err-XXXXXX";
    int ofd = mkstemp(of), efd = mkstemp(ef);
    size_t n = 0;
    while (argv[n])
        n++;
    pid_t pid = fork();
    if (pid == 0) {
        const char **av = calloc(n + 2, sizeof(*av));
        struct rlimit cpu = {60, 60};
        av[0] = MS_BINARY;
        for (size_t i = 0; i < n; i++)
            av[i + 1] = argv[i];
        setrlimit(RLIMIT_CPU, &cpu);
        dup2(ofd, 1);
        dup2(efd, 2);
        execv(MS_BINARY, (char *const *)av);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    lseek(ofd, 0, SEEK_SET);
    lseek(efd, 0, SEEK_SET);
    char *o = slurp_fd(ofd), *e = slurp_fd(efd);
    close(ofd);
    close(efd);
    unlink(of);
    unlink(ef);
    if (out)
        *out = o;
    else
        free(o);
    if (errout)
        *errout = e;
    else
        free(e);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void ms_test_put(ms_test_img *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

void ms_test_put_le(ms_test_img *b, uint64_t v, int nbytes)
{
    uint8_t t[8];
    for (int i = 0; i < nbytes && i < 8; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    ms_test_put(b, t, (size_t)(nbytes < 8 ? nbytes : 8));
}
