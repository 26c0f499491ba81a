/* cmocka setup/teardown giving each test a fresh temporary directory in *state
 * (a malloc()ed path), removed with everything in it afterwards. Header-only. */
#pragma once

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline int tmpdir_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static inline int setup_dir(void **state) {
        char *d = strdup("/tmp/pw-test-XXXXXX");
        assert_non_null(d);
        assert_non_null(mkdtemp(d));
        *state = d;
        return 0;
}

static inline int teardown_dir(void **state) {
        nftw(*state, tmpdir_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        free(*state);
        return 0;
}
