/* See include/pullwatch/fileio.h. */
#include "pullwatch/fileio.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sys/stat.h>

int write_all(int fd, const void *p, size_t len) {
        const char *c = p;
        while (len > 0) {
                ssize_t k = write(fd, c, len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return -ENOSPC;
                c += k;
                len -= (size_t) k;
        }
        return 0;
}

int file_replace_at(int dir_fd, const char *name, mode_t mode, FileReplaceFlags flags, file_writer_t write,
                    void *userdata) {
        char tmp[NAME_MAX + 1];
        if (isempty(name) || !write)
                return -EINVAL;
        if (snprintf(tmp, sizeof tmp, "%s.tmp", name) >= (int) sizeof tmp)
                return -ENAMETOOLONG;
        _cleanup_close_ int fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        int r = fchmod(fd, mode) < 0 ? -errno : 0;
        if (r >= 0)
                r = write(fd, userdata);
        if (r >= 0 && (flags & FILE_REPLACE_SYNC) && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && renameat(dir_fd, tmp, dir_fd, name) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlinkat(dir_fd, tmp, 0);
                return r;
        }
        if ((flags & FILE_REPLACE_SYNC) && fsync(dir_fd) < 0)
                return -errno; /* the new file is in place; only its durability is in doubt */
        return 0;
}

typedef struct DataRef {
        const void *data;
        size_t len;
} DataRef;

static int write_data(int fd, void *userdata) {
        const DataRef *d = userdata;
        return write_all(fd, d->data, d->len);
}

int file_replace_data_at(int dir_fd, const char *name, mode_t mode, FileReplaceFlags flags, const void *data,
                         size_t len) {
        DataRef d = {data, len};
        return file_replace_at(dir_fd, name, mode, flags, write_data, &d);
}

int file_replace_data(const char *path, mode_t mode, FileReplaceFlags flags, const void *data, size_t len) {
        char dir[PATH_MAX], base[PATH_MAX];
        if (isempty(path))
                return -EINVAL;
        if (strcpy_bounded(dir, sizeof dir, path) < 0 || strcpy_bounded(base, sizeof base, path) < 0)
                return -ENAMETOOLONG;
        _cleanup_close_ int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        return file_replace_data_at(dfd, basename(base), mode, flags, data, len);
}
