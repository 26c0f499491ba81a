/* Test helpers shared by the unit tests that talk to a real, private containerd
 * (test_containerd, test_grpc_live): header-only, each test includes it once. */
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* Run argv with stdout and stderr to /dev/null; its exit status, or -1. */
static inline int test_run_cmd(const char *const argv[]) {
        pid_t p = fork();
        assert_true(p >= 0);
        if (p == 0) {
                int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
                dup2(null, 1);
                dup2(null, 2);
                execvp(argv[0], (char **) argv);
                _exit(127);
        }
        int st;
        assert_int_equal(waitpid(p, &st, 0), p);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Whether a private containerd can be started here (root, containerd and ctr). */
static inline bool live_containerd_possible(void) {
        return geteuid() == 0 && access("/usr/bin/containerd", X_OK) == 0 && access("/usr/bin/ctr", X_OK) == 0;
}

/* mkdtemp(template) into dir, then the socket path and a config.toml whose root, state
 * and addresses live there, with the CRI plugin disabled. */
static inline void live_containerd_prepare(char *dir, size_t dirlen, const char *template, char *sock,
                                           size_t socklen, char *cfg, size_t cfglen) {
        snprintf(dir, dirlen, "%s", template);
        assert_non_null(mkdtemp(dir));
        snprintf(sock, socklen, "%s/c.sock", dir);
        snprintf(cfg, cfglen, "%s/config.toml", dir);
        FILE *f = fopen(cfg, "we");
        assert_non_null(f);
        fprintf(f,
                "version = 2\nroot = \"%s/root\"\nstate = \"%s/state\"\n"
                "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
                "[grpc]\n  address = \"%s\"\n[ttrpc]\n  address = \"%s.ttrpc\"\n",
                dir, dir, sock, sock);
        fclose(f);
}

/* Start containerd with cfg, logging to DIR/log; it gets deathsig if the test dies. */
static inline pid_t live_containerd_spawn(const char *dir, const char *cfg, int deathsig) {
        char log[256];
        snprintf(log, sizeof(log), "%s/log", dir);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                (void) prctl(PR_SET_PDEATHSIG, deathsig);
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                dup2(fd, 1);
                dup2(fd, 2);
                /* PW_CONTAINERD_BIN: another containerd (Debian 13's 1.7, as the integration suite) */
                const char *bin = getenv("PW_CONTAINERD_BIN");
                execl(bin && bin[0] ? bin : "/usr/bin/containerd", "containerd", "--config", cfg, (char *) NULL);
                _exit(127);
        }
        return pid;
}

/* Wait (bounded, 10 s) until the socket exists. */
static inline void live_containerd_wait(const char *sock) {
        for (int i = 0; i < 200 && access(sock, F_OK) < 0; i++)
                usleep(50 * 1000);
        assert_int_equal(access(sock, F_OK), 0);
}

/* SIGTERM and reap pid (if any), then remove dir (if set). */
static inline void live_containerd_stop(pid_t pid, const char *dir) {
        if (pid > 0) {
                kill(pid, SIGTERM);
                waitpid(pid, NULL, 0);
        }
        if (dir && dir[0]) {
                const char *rm[] = { "rm", "-rf", dir, NULL };
                (void) test_run_cmd(rm);
        }
}
