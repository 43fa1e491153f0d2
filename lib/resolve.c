/*
 * resolve.c - find the model a NAME refers to (DESIGN.md "Inputs"): an
 * existing path, a --model mapping, --models-dir, then the Hugging Face
 * cache. Nothing here opens a model; it only looks at the file system.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mergescope/model.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

typedef struct tried {
    ms_sb sb;     /* "a, b, c" for the not-found message */
} tried;

static void note(tried *t, const char *what)
{
    if (t->sb.len)
        ms_sb_add(&t->sb, ", ");
    ms_sb_add(&t->sb, what);
}

static bool exists(const char *p)
{
    return ms_path_is_file(p) || ms_path_is_dir(p);
}

/* A candidate path: taken when it exists, else noted. */
static bool try_path(const char *p, tried *t, char **out)
{
    if (!p)
        return false;
    if (exists(p)) {
        *out = ms_strdup(p);
        return *out != NULL;
    }
    note(t, p);
    return false;
}

static bool try_join(const char *dir, const char *name, tried *t, char **out)
{
    char *p = ms_path_join(dir, name);
    bool ok = try_path(p, t, out);
    free(p);
    return ok;
}

/* A name that may be used as a path below a directory: no "..", not
 * absolute, no empty component. */
static bool safe_rel(const char *name)
{
    if (!name[0] || name[0] == '/')
        return false;
    const char *p = name;
    while (*p) {
        const char *s = strchr(p, '/');
        size_t n = s ? (size_t)(s - p) : strlen(p);
        if (n == 0 || (n == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += n + (s ? 1 : 0);
    }
    return true;
}

/* "org/model" -> "org--model" (prefix prepended); caller frees. */
static char *dashed(const char *prefix, const char *name)
{
    ms_sb sb = MS_SB_INIT;
    ms_sb_add(&sb, prefix);
    for (const char *p = name; *p; p++) {
        if (*p == '/')
            ms_sb_add(&sb, "--");
        else
            ms_sb_addc(&sb, *p);
    }
    return ms_sb_detach(&sb);
}

/* The PATH that --model maps name to, or NULL. */
static const char *mapped(const char *name, const ms_resolve_opts *o)
{
    size_t n = strlen(name);
    for (size_t i = 0; o && i < o->n_model_map; i++) {
        const char *e = o->model_map[i];
        if (strncmp(e, name, n) == 0 && e[n] == '=')
            return e + n + 1;
    }
    return NULL;
}

static bool from_models_dir(const char *name, const char *dir, tried *t,
                            char **out)
{
    if (!dir || !safe_rel(name))
        return false;
    char *d = dashed("", name);
    bool ok = d && try_join(dir, d, t, out);
    free(d);
    if (ok)
        return true;
    const char *base = ms_path_basename(name);
    if (strcmp(base, name) != 0 && try_join(dir, name, t, out))
        return true;
    return try_join(dir, base, t, out);
}

/* The newest entry of snapshots/ by modification time; ties by name. */
static char *newest_snapshot(const char *snaps)
{
    DIR *d = opendir(snaps);
    if (!d)
        return NULL;
    char *best = NULL;
    struct timespec best_t = {0, 0};
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *p = ms_path_join(snaps, e->d_name);
        struct stat sb;
        if (!p || stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            free(p);
            continue;
        }
        struct timespec mt = sb.st_mtim;
        bool newer = !best || mt.tv_sec > best_t.tv_sec
                  || (mt.tv_sec == best_t.tv_sec && mt.tv_nsec > best_t.tv_nsec)
                  || (mt.tv_sec == best_t.tv_sec && mt.tv_nsec == best_t.tv_nsec
                      && strcmp(p, best) > 0);
        if (newer) {
            free(best);
            best = p;
            best_t = mt;
        } else {
            free(p);
        }
    }
    closedir(d);
    return best;
}

static bool from_hub(const char *hub, const char *name, tried *t, char **out)
{
    if (!hub || !hub[0])
        return false;
    char *repo = dashed("models--", name);
    char *dir = repo ? ms_path_join(hub, repo) : NULL;
    char *snaps = dir ? ms_path_join(dir, "snapshots") : NULL;
    char *snap = snaps ? newest_snapshot(snaps) : NULL;
    bool ok = false;
    if (snap) {
        *out = snap;
        snap = NULL;
        ok = true;
    } else if (snaps) {
        char *what = ms_path_join(snaps, "*");
        note(t, what ? what : snaps);
        free(what);
    }
    free(snap);
    free(snaps);
    free(dir);
    free(repo);
    return ok;
}

static bool from_cache(const char *name, tried *t, char **out)
{
    if (!safe_rel(name))
        return false;
    const char *hub = getenv("HF_HUB_CACHE");
    if (from_hub(hub, name, t, out))
        return true;
    const char *home = getenv("HF_HOME");
    if (home && home[0]) {
        char *h = ms_path_join(home, "hub");
        bool ok = from_hub(h, name, t, out);
        free(h);
        if (ok)
            return true;
    }
    const char *user = getenv("HOME");
    if (user && user[0]) {
        char *h = ms_path_join(user, ".cache/huggingface/hub");
        bool ok = from_hub(h, name, t, out);
        free(h);
        if (ok)
            return true;
    }
    return false;
}

static bool from_path(const char *name, const ms_resolve_opts *o, tried *t,
                      char **out)
{
    if (o && o->base_dir && name[0] != '/'
        && try_join(o->base_dir, name, t, out))
        return true;
    if (exists(name)) {
        *out = ms_strdup(name);
        return *out != NULL;
    }
    note(t, name);
    return false;
}

/* A file name or an explicit path is never an org/model NAME. */
static bool looks_like_path(const char *name)
{
    return name[0] == '/' || ms_str_startswith(name, "./")
        || ms_str_startswith(name, "../") || ms_str_endswith(name, ".gguf")
        || ms_str_endswith(name, ".safetensors");
}

ms_status ms_model_resolve(const char *name, const ms_resolve_opts *opts,
                           char **path_out, ms_error *err)
{
    tried t = {MS_SB_INIT};
    char *out = NULL;
    *path_out = NULL;
    if (!name || !name[0])
        return ms_error_set(err, MS_ERR_USAGE, NULL, -1, "empty model name");
    if (looks_like_path(name) && !exists(name)
        && !(opts && opts->base_dir && name[0] != '/'))
        return ms_error_set(err, MS_ERR_NOTFOUND, name, -1,
                            "no such file or directory");
    const char *map = mapped(name, opts);
    if (map && !exists(map) && !exists(name)) {
        ms_sb_free(&t.sb);
        return ms_error_set(err, MS_ERR_NOTFOUND, map, -1,
                            "--model maps '%s' here, but it does not exist",
                            name);
    }
    bool ok = from_path(name, opts, &t, &out)
           || (map && try_path(map, &t, &out))
           || from_models_dir(name, opts ? opts->models_dir : NULL, &t, &out)
           || from_cache(name, &t, &out);
    if (ok) {
        ms_sb_free(&t.sb);
        *path_out = out;
        return MS_OK;
    }
    ms_status st = ms_error_set(err, MS_ERR_NOTFOUND, name, -1,
                                "model not found (tried %s)",
                                ms_sb_str(&t.sb));
    ms_sb_free(&t.sb);
    return st;
}
