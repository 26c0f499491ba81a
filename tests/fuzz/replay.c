/* Standalone driver: feeds every file of a corpus directory to the fuzz target,
 * so that each parser's corpus is replayed by ctest in every build (libgit2's
 * "standalone driver" pattern). Exits non-zero if the directory is missing or empty. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(int dfd, const char *name) {
        int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return 0;
        }
        size_t n = (size_t) st.st_size;
        uint8_t *buf = malloc(n ? n : 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        size_t off = 0;
        while (off < n) {
                ssize_t r = read(fd, buf + off, n - off);
                if (r <= 0)
                        break;
                off += (size_t) r;
        }
        close(fd);
        LLVMFuzzerTestOneInput(buf, off);
        free(buf);
        return 1;
}

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
                return 2;
        }
        DIR *d = opendir(argv[1]);
        if (!d) {
                fprintf(stderr, "replay: cannot open corpus %s: %s\n", argv[1], strerror(errno));
                return 1;
        }
        unsigned count = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                int r = replay_file(dirfd(d), de->d_name);
                if (r < 0) {
                        fprintf(stderr, "replay: %s: %s\n", de->d_name, strerror(-r));
                        closedir(d);
                        return 1;
                }
                count += (unsigned) r;
        }
        closedir(d);
        if (count == 0) {
                fprintf(stderr, "replay: corpus %s is empty\n", argv[1]);
                return 1;
        }
        printf("replayed %u inputs from %s\n", count, argv[1]);
        return 0;
}
