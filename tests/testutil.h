/*
 * testutil.h - helpers shared by the Criterion tests.
 */
#ifndef MS_TESTUTIL_H
#define MS_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

/* Path under ../shared/fixtures (caller frees), or NULL when the folder is
 * absent (the test then calls cr_skip_test with a message). */
char *ms_test_shared(const char *rel);
/* Path under the generated fixture directory (caller frees). */
char *ms_test_gen(const char *rel);
/* A fresh temporary directory for this test (caller frees the string). */
char *ms_test_tmpdir(void);
/* Write len bytes to path; true on success. */
bool ms_test_write(const char *path, const void *data, size_t len);
/*
 * Run the mergescope binary with argv (NULL-terminated, without argv[0]),
 * capturing stdout and stderr (caller frees both); returns the exit status
 * (-1 when it died by a signal). Limit: 60 s of CPU.
 */
/* A growing byte image for hand-built files (GGUF and safetensors headers,
 * little-endian fields); free(p) when done. Aborts when memory runs out. */
typedef struct ms_test_img {
    uint8_t *p;
    size_t n, cap;
} ms_test_img;
void ms_test_put(ms_test_img *b, const void *src, size_t n);
/* v as nbytes (<= 8) little-endian bytes. */
void ms_test_put_le(ms_test_img *b, uint64_t v, int nbytes);

int ms_test_run(const char *const *argv, char **out, char **errout);

#endif
