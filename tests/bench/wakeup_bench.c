/* wakeup_bench N — what one wake-up costs on this machine: two processes pass one byte
 * back and forth N times over a unix stream socketpair, each blocking in epoll_wait()
 * and then recv() as the agent's loop does, and each side's CPU time (utime+stime,
 * getrusage) and context switches are printed per wake-up. An event the agent handles
 * needs at least two wake-ups (the event, the Images.Get reply): their cost here is the
 * floor under the agent's CPU per event, whatever the agent does in between. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static double usec(struct timeval tv) {
        return (double) tv.tv_sec * 1e6 + (double) tv.tv_usec;
}

static int side(int fd, long n, int first, const char *name) {
        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN}, got;
        char b = 'x';
        if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
                return perror("epoll"), 1;
        struct rusage r0, r1;
        getrusage(RUSAGE_SELF, &r0);
        if (first && send(fd, &b, 1, 0) != 1)
                return perror("send"), 1;
        for (long i = 0; i < n; i++) {
                if (epoll_wait(ep, &got, 1, -1) != 1)
                        return perror("epoll_wait"), 1;
                if (recv(fd, &b, 1, MSG_DONTWAIT) != 1)
                        return perror("recv"), 1;
                if ((!first || i + 1 < n) && send(fd, &b, 1, 0) != 1)
                        return perror("send"), 1;
        }
        getrusage(RUSAGE_SELF, &r1);
        printf("%s: %.1f us CPU per wake-up (user %.1f, system %.1f), %.2f context switches per wake-up\n", name,
               (usec(r1.ru_utime) + usec(r1.ru_stime) - usec(r0.ru_utime) - usec(r0.ru_stime)) / (double) n,
               (usec(r1.ru_utime) - usec(r0.ru_utime)) / (double) n,
               (usec(r1.ru_stime) - usec(r0.ru_stime)) / (double) n,
               (double) (r1.ru_nvcsw + r1.ru_nivcsw - r0.ru_nvcsw - r0.ru_nivcsw) / (double) n);
        fflush(stdout);
        return 0;
}

int main(int argc, char **argv) {
        long n = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
        int sv[2];
        if (n <= 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return perror("socketpair"), 2;
        pid_t pid = fork();
        if (pid < 0)
                return perror("fork"), 2;
        if (pid == 0) {
                close(sv[0]);
                _exit(side(sv[1], n, 0, "peer (answers)"));
        }
        close(sv[1]);
        int r = side(sv[0], n, 1, "first (asks)  ");
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
        return r || !WIFEXITED(st) || WEXITSTATUS(st);
}
