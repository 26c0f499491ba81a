/* File I/O both programs need: the one atomic file replace (systemd's rule: write a
 * temporary file, fsync it, rename it over the target, fsync the directory), and
 * write_all(). The bounded whole-file read is read_fd_bounded() in util.h. */
#pragma once

#include <sys/types.h>

#include "pullwatch/util.h"

typedef enum FileReplaceFlags {
        FILE_REPLACE_SYNC = 1 << 0, /* fsync the file before and the directory after the rename */
} FileReplaceFlags;

/* Write the content of a file to fd; return < 0 to abandon the replace. */
typedef int (*file_writer_t)(int fd, void *userdata);

/* Replace dir_fd/name atomically with what write() writes: a crash leaves either the old
 * file or the new one, never a mix. The temporary file is dir_fd/name.tmp (opened with
 * O_NOFOLLOW, so a planted symlink is refused; removed on failure), created with mode
 * (umask-independent). Without FILE_REPLACE_SYNC the kernel decides when the data reaches the disk.
 * Returns write()'s error, or -errno of the failing step. */
int file_replace_at(int dir_fd, const char *name, mode_t mode, FileReplaceFlags flags, file_writer_t write,
                    void *userdata);
/* The same with len bytes of data. */
int file_replace_data_at(int dir_fd, const char *name, mode_t mode, FileReplaceFlags flags, const void *data,
                         size_t len);
/* The same by path (the directory is opened for the call). -ENAMETOOLONG for a path
 * over PATH_MAX. */
int file_replace_data(const char *path, mode_t mode, FileReplaceFlags flags, const void *data, size_t len);

/* Write all len bytes, retrying on EINTR and short writes. -ENOSPC if write() returns 0. */
int write_all(int fd, const void *p, size_t len);
