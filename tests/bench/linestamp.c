/* linestamp — copy stdin to stdout, prefixing each line with the wall-clock
 * time (CLOCK_REALTIME, microseconds since the epoch) at which its last byte
 * was read. Used by agent_bench.sh to time `ctr events` lines on arrival; it
 * writes after every read so a reader of the output file sees lines promptly.
 * A line longer than the buffer is stamped in pieces (only the first piece
 * carries the stamp at a line start; the bench's lines are short). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int write_all(const char *p, size_t n) {
        while (n > 0) {
                ssize_t w = write(STDOUT_FILENO, p, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -1;
                }
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

int main(void) {
        static char in[65536], out[65536 * 2];
        int at_line_start = 1;

        for (;;) {
                ssize_t n = read(STDIN_FILENO, in, sizeof in);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? 1 : 0;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                char stamp[32];
                int sl = snprintf(stamp, sizeof stamp, "%lld ",
                                  (long long) ts.tv_sec * 1000000LL + ts.tv_nsec / 1000);
                size_t o = 0;
                for (ssize_t i = 0; i < n; i++) {
                        if (at_line_start) {
                                if (o + (size_t) sl + 1 > sizeof out) {
                                        if (write_all(out, o) < 0)
                                                return 1;
                                        o = 0;
                                }
                                memcpy(out + o, stamp, (size_t) sl);
                                o += (size_t) sl;
                                at_line_start = 0;
                        }
                        if (o + 1 > sizeof out) {
                                if (write_all(out, o) < 0)
                                        return 1;
                                o = 0;
                        }
                        out[o++] = in[i];
                        if (in[i] == '\n')
                                at_line_start = 1;
                }
                if (write_all(out, o) < 0)
                        return 1;
        }
}
