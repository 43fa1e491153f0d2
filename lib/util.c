/*
 * util.c - allocation, strings, mapping, atomic outputs and paths.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mergescope/util.h"
#include "mergescope/banned.h"

/* ==== allocation ==== */

void *ms_alloc_array(size_t n, size_t size)
{
    size_t total;
    if (!ms_mul_size(n, size, &total))
        return NULL;
    return malloc(total ? total : 1);
}

void *ms_zalloc_array(size_t n, size_t size)
{
    size_t total;
    if (!ms_mul_size(n, size, &total))
        return NULL;
    return calloc(total ? n : 1, total ? size : 1);
}

void *ms_realloc_array(void *p, size_t n, size_t size)
{
    size_t total;
    if (!ms_mul_size(n, size, &total))
        return NULL;
    return realloc(p, total ? total : 1);
}

char *ms_strndup(const char *s, size_t n)
{
    if (!s)
        return NULL;
    size_t len = strnlen(s, n);
    char *d = malloc(len + 1);
    if (!d)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *ms_strdup(const char *s)
{
    return s ? ms_strndup(s, strlen(s)) : NULL;
}

/* ==== strbuf ==== */

static bool sb_grow(ms_sb *sb, size_t extra)
{
    size_t need;
    if (__builtin_add_overflow(sb->len, extra + 1, &need))
        return false;
    if (need <= sb->cap)
        return true;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            return false;
        cap *= 2;
    }
    char *p = realloc(sb->buf, cap);
    if (!p)
        return false;
    sb->buf = p;
    sb->cap = cap;
    return true;
}

bool ms_sb_addn(ms_sb *sb, const char *s, size_t n)
{
    if (!sb_grow(sb, n))
        return false;
    if (n)
        memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
    return true;
}

bool ms_sb_add(ms_sb *sb, const char *s)
{
    return ms_sb_addn(sb, s, strlen(s));
}

bool ms_sb_addc(ms_sb *sb, char c)
{
    return ms_sb_addn(sb, &c, 1);
}

bool ms_sb_addf(ms_sb *sb, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return false;
    if ((size_t)n < sizeof(small))
        return ms_sb_addn(sb, small, (size_t)n);
    if (!sb_grow(sb, (size_t)n))
        return false;
    va_start(ap, fmt);
    vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
    return true;
}

const char *ms_sb_str(const ms_sb *sb)
{
    return sb->buf ? sb->buf : "";
}

char *ms_sb_detach(ms_sb *sb)
{
    char *p = sb->buf ? sb->buf : ms_strdup("");
    sb->buf = NULL;
    sb->len = sb->cap = 0;
    return p;
}

void ms_sb_reset(ms_sb *sb)
{
    sb->len = 0;
    if (sb->buf)
        sb->buf[0] = '\0';
}

void ms_sb_free(ms_sb *sb)
{
    free(sb->buf);
    sb->buf = NULL;
    sb->len = sb->cap = 0;
}

/* ==== mapping ==== */

ms_status ms_map_open(const char *path, ms_map *map, ms_error *err)
{
    struct stat st;
    memset(map, 0, sizeof(*map));
    map->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ms_error_set(err, errno == ENOENT ? MS_ERR_NOTFOUND : MS_ERR_IO, path, -1,
                            "cannot open: %s", strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        close(fd);
        return ms_error_set(err, MS_ERR_USAGE, path, -1, "not a regular file%s%s",
                            e ? ": " : "", e ? strerror(e) : "");
    }
    map->fd = fd;
    map->size = (uint64_t)st.st_size;
    if (map->size == 0)
        return MS_OK;
    void *p = mmap(NULL, (size_t)map->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        close(fd);
        map->fd = -1;
        return ms_error_set(err, MS_ERR_IO, path, -1, "cannot map: %s", strerror(e));
    }
    map->data = p;
    return MS_OK;
}

void ms_map_close(ms_map *map)
{
    if (map->data)
        munmap((void *)map->data, (size_t)map->size);
    if (map->fd >= 0)
        close(map->fd);
    memset(map, 0, sizeof(*map));
    map->fd = -1;
}

static long page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? p : 4096;
}

void ms_map_release(const void *data, uint64_t len)
{
    uintptr_t ps = (uintptr_t)page_size();
    uintptr_t a = (uintptr_t)data, b = a + (uintptr_t)len;
    uintptr_t lo = (a + ps - 1) & ~(ps - 1), hi = b & ~(ps - 1);
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void ms_map_willneed(const void *data, uint64_t len)
{
    uintptr_t ps = (uintptr_t)page_size();
    uintptr_t a = (uintptr_t)data & ~(ps - 1);
    uintptr_t b = (uintptr_t)data + (uintptr_t)len;
    if (b > a)
        madvise((void *)a, b - a, MADV_WILLNEED);
}

/* ==== outputs ==== */

/* The mode a replaced file keeps, or what a new file would get: 0666 less
 * the umask (umask can only be read by setting it; outputs are opened
 * before any worker thread starts). */
static mode_t output_mode(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0)
        return st.st_mode & 07777;
    mode_t mask = umask(022);
    umask(mask);
    return 0666 & ~mask;
}

ms_status ms_outfile_open(ms_outfile *out, const char *path, ms_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!strcmp(path, "-")) {
        out->fp = stdout;
        return MS_OK;
    }
    ms_sb sb = MS_SB_INIT;
    if (!ms_sb_addf(&sb, "%s.tmp.XXXXXX", path))
        return ms_error_set(err, MS_ERR_NOMEM, path, -1, "out of memory");
    int fd = mkstemp(sb.buf);
    if (fd < 0) {
        int e = errno;
        ms_sb_free(&sb);
        return ms_error_set(err, MS_ERR_IO, path, -1, "cannot create: %s", strerror(e));
    }
    fchmod(fd, output_mode(path));
    out->fp = fdopen(fd, "w");
    if (!out->fp) {
        int e = errno;
        close(fd);
        unlink(sb.buf);
        ms_sb_free(&sb);
        return ms_error_set(err, MS_ERR_IO, path, -1, "cannot create: %s", strerror(e));
    }
    out->tmp_path = ms_sb_detach(&sb);
    out->path = ms_strdup(path);
    if (!out->path) {
        ms_outfile_abort(out);
        return ms_error_set(err, MS_ERR_NOMEM, path, -1, "out of memory");
    }
    return MS_OK;
}

ms_status ms_outfile_commit(ms_outfile *out, ms_error *err)
{
    ms_status st = MS_OK;
    if (!out->tmp_path) {
        if (out->fp && fflush(out->fp) != 0)
            st = ms_error_set(err, MS_ERR_IO, "-", -1, "cannot write: %s", strerror(errno));
        memset(out, 0, sizeof(*out));
        return st;
    }
    bool bad = ferror(out->fp) || fflush(out->fp) != 0 || fsync(fileno(out->fp)) != 0;
    int e = errno;
    if (fclose(out->fp) != 0 && !bad) {
        bad = true;
        e = errno;
    }
    out->fp = NULL;
    if (bad)
        st = ms_error_set(err, MS_ERR_IO, out->path, -1, "cannot write: %s", strerror(e));
    else if (rename(out->tmp_path, out->path) != 0)
        st = ms_error_set(err, MS_ERR_IO, out->path, -1, "cannot rename into place: %s",
                          strerror(errno));
    if (st)
        unlink(out->tmp_path);
    free(out->tmp_path);
    free(out->path);
    memset(out, 0, sizeof(*out));
    return st;
}

void ms_outfile_abort(ms_outfile *out)
{
    if (out->tmp_path) {
        if (out->fp)
            fclose(out->fp);
        unlink(out->tmp_path);
    }
    free(out->tmp_path);
    free(out->path);
    memset(out, 0, sizeof(*out));
}

ms_status ms_write_file_atomic(const char *path, const void *data, size_t len,
                               ms_error *err)
{
    ms_outfile out;
    ms_status st = ms_outfile_open(&out, path, err);
    if (st)
        return st;
    if (len && fwrite(data, 1, len, out.fp) != len) {
        ms_error_set(err, MS_ERR_IO, path, -1, "cannot write: %s", strerror(errno));
        ms_outfile_abort(&out);
        return MS_ERR_IO;
    }
    return ms_outfile_commit(&out, err);
}

ms_status ms_read_file(const char *path, uint64_t max_size, char **out,
                       size_t *len, ms_error *err)
{
    ms_map map;
    *out = NULL;
    if (len)
        *len = 0;
    ms_status st = ms_map_open(path, &map, err);
    if (st)
        return st;
    if (map.size > max_size) {
        ms_map_close(&map);
        return ms_error_set(err, MS_ERR_FORMAT, path, -1,
                            "file is %llu bytes, more than the %llu allowed",
                            (unsigned long long)map.size, (unsigned long long)max_size);
    }
    char *buf = malloc((size_t)map.size + 1);
    if (!buf) {
        ms_map_close(&map);
        return ms_error_set(err, MS_ERR_NOMEM, path, -1, "out of memory");
    }
    if (map.size)
        memcpy(buf, map.data, (size_t)map.size);
    buf[map.size] = '\0';
    if (len)
        *len = (size_t)map.size;
    ms_map_close(&map);
    *out = buf;
    return MS_OK;
}

/* ==== text ==== */

size_t ms_utf8_seq(const uint8_t *s, size_t n)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (!n)
        return 0;
    uint8_t c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0)
        len = 2, cp = c & 0x1Fu;
    else if ((c & 0xF0) == 0xE0)
        len = 3, cp = c & 0x0Fu;
    else if ((c & 0xF8) == 0xF0)
        len = 4, cp = c & 0x07u;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3Fu);
    }
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

bool ms_utf8_valid(const uint8_t *s, size_t n, size_t *bad)
{
    for (size_t i = 0; i < n;) {
        size_t len = ms_utf8_seq(s + i, n - i);
        if (!len) {
            if (bad)
                *bad = i;
            return false;
        }
        i += len;
    }
    return true;
}

bool ms_sb_add_escaped(ms_sb *sb, const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        size_t len = ms_utf8_seq(u + i, n - i);
        bool ok;
        if (len == 1 && (u[i] < 0x20 || u[i] == 0x7f))
            ok = ms_sb_addf(sb, "\\x%02x", u[i]);
        else if (len)
            ok = ms_sb_addn(sb, s + i, len);
        else
            ok = ms_sb_addf(sb, "\\x%02x", u[i]);
        if (!ok)
            return false;
        i += len ? len : 1;
    }
    return true;
}

/* ==== paths ==== */

bool ms_path_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool ms_path_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *ms_path_join(const char *dir, const char *name)
{
    ms_sb sb = MS_SB_INIT;
    size_t n = strlen(dir);
    bool slash = n && dir[n - 1] == '/';
    if (!ms_sb_add(&sb, dir) || (!slash && !ms_sb_addc(&sb, '/')) || !ms_sb_add(&sb, name)) {
        ms_sb_free(&sb);
        return NULL;
    }
    return ms_sb_detach(&sb);
}

char *ms_path_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return ms_strdup(".");
    if (slash == path)
        return ms_strdup("/");
    return ms_strndup(path, (size_t)(slash - path));
}

const char *ms_path_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

bool ms_str_endswith(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !memcmp(s + a - b, suffix, b);
}

bool ms_str_startswith(const char *s, const char *prefix)
{
    return !strncmp(s, prefix, strlen(prefix));
}

int ms_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n > 1024 ? 1024 : n) : 1;
}

double ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
