/*
 * testutil.h - helpers shared by the Criterion tests.
 */
#ifndef MS_TESTUTIL_H
#define MS_TESTUTIL_H

#include <stdbool.h>
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
int ms_test_run(const char *const *argv, char **out, char **errout);

#endif
