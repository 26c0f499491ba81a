/* The native HTTP/1.1 client (agent/httpc.c) on a real sd-event loop against loopback
 * servers: a scripted raw TCP server in a forked child for the HTTP behaviours (keep-
 * alive, a response dribbled a byte per write, Retry-After, chunked, a server that
 * closes an idle connection, one that drops a request on a reused connection, garbage,
 * silence), and tests/integration/receiver.py over TLS for verification (wrong CA,
 * wrong host name, mTLS). Every wait is a loop run with a bounded deadline. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pullwatch/httpc.h"
#include "pullwatch/tlsshim.h"
#include "pullwatch/util.h"

#ifndef PW_SOURCE_DIR
#error "PW_SOURCE_DIR must be defined by the build"
#endif
#define RECEIVER PW_SOURCE_DIR "/tests/integration/receiver.py"

static bool mapped(const char *needle) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/maps", "re");
        assert_non_null(f);
        char line[1024];
        while (fgets(line, sizeof line, f))
                if (strstr(line, needle))
                        return true;
        return false;
}

/* ---- the scripted server ---- */

typedef enum Act {
        ACT_ANSWER,      /* write the response, keep the connection */
        ACT_ANSWER_CLOSE, /* write the response, then close */
        ACT_DRIBBLE,     /* write the response one byte per write (TCP_NODELAY), keep */
        ACT_DROP,        /* read the request, close without answering */
        ACT_SILENT,      /* read the request, never answer */
} Act;

typedef struct Step {
        Act act;
        const char *response;
} Step;

static int listen_loopback(uint16_t *port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(listen(fd, 16), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
        *port = ntohs(sa.sin_port);
        return fd;
}

/* Read one request (head + Content-Length body); false at EOF. */
static bool read_request(int c) {
        char buf[65536];
        size_t got = 0;
        char *end = NULL;
        while (!end) {
                if (got + 1 >= sizeof buf)
                        return false;
                ssize_t n = read(c, buf + got, sizeof buf - 1 - got);
                if (n <= 0)
                        return false;
                got += (size_t) n;
                buf[got] = 0;
                end = strstr(buf, "\r\n\r\n");
        }
        size_t head = (size_t) (end + 4 - buf);
        const char *cl = strcasestr(buf, "\r\nContent-Length:");
        size_t want = cl ? strtoul(cl + 17, NULL, 10) : 0;
        size_t have = got - head;
        while (have < want) {
                ssize_t n = read(c, buf, sizeof buf < want - have ? sizeof buf : want - have);
                if (n <= 0)
                        return false;
                have += (size_t) n;
        }
        return true;
}

/* Child: serve the steps in order, across connections as they come; then exit. */
static pid_t serve(int lfd, const Step *steps, size_t n_steps) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid > 0) {
                close(lfd);
                return pid;
        }
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        int c = -1;
        for (size_t i = 0; i < n_steps; i++) {
                while (c < 0 || !read_request(c)) {
                        if (c >= 0)
                                close(c);
                        c = accept(lfd, NULL, NULL);
                        if (c < 0)
                                _exit(1);
                }
                const char *r = steps[i].response;
                switch (steps[i].act) {
                case ACT_ANSWER:
                case ACT_ANSWER_CLOSE:
                        (void) !write(c, r, strlen(r));
                        if (steps[i].act == ACT_ANSWER_CLOSE) {
                                close(c);
                                c = -1;
                        }
                        break;
                case ACT_DRIBBLE: {
                        int one = 1;
                        (void) setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                        for (size_t k = 0; r[k]; k++)
                                (void) !write(c, r + k, 1);
                        break;
                }
                case ACT_DROP:
                        close(c);
                        c = -1;
                        break;
                case ACT_SILENT:
                        pause();
                        break;
                }
        }
        /* keep the last connection open until the parent is done with it */
        pause();
        _exit(0);
}

static void stop_child(pid_t pid) {
        if (pid > 0) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
        }
}

/* ---- the client side ---- */

typedef struct Got {
        int calls;
        bool ok;
        int status;
        bool truncated;
        char retry_after[80];
        char excerpt[256];
        char error[300];
} Got;

static void on_done(Httpc *c, const HttpcResult *res, void *userdata) {
        Got *g = userdata;
        g->calls++;
        g->ok = res->transport_ok;
        g->status = res->status;
        g->truncated = res->truncated;
        snprintf(g->retry_after, sizeof g->retry_after, "%s", res->retry_after ? res->retry_after : "");
        snprintf(g->excerpt, sizeof g->excerpt, "%.*s", (int) res->excerpt_len, res->excerpt);
        snprintf(g->error, sizeof g->error, "%s", res->error);
}

/* Post once and run the loop until the callback ran; fails after 15 s. */
static void post_wait(sd_event *e, Httpc *c, Got *g) {
        static const char body[] = "{\"id\":\"x\"}\n";
        const char *h[] = { "Content-Type: application/x-ndjson", "Authorization: Bearer not-a-secret" };
        *g = (Got){ 0 };
        assert_int_equal(httpc_post(c, h, 2, body, sizeof body - 1, on_done, g), 0);
        assert_int_equal(g->calls, 0); /* never from within httpc_post() */
        assert_int_equal(httpc_post(c, h, 2, body, sizeof body - 1, on_done, g), -EBUSY);
        uint64_t deadline = now_usec_monotonic() + 15000000ULL;
        while (g->calls == 0) {
                if (now_usec_monotonic() > deadline)
                        fail_msg("no answer within 15 s");
                assert_true(sd_event_run(e, 100000) >= 0);
        }
        assert_int_equal(g->calls, 1);
        assert_null(strchr(g->error, '\n'));
}

static Httpc *client(sd_event *e, uint16_t port, uint64_t timeout_usec) {
        char url[64], err[256] = "";
        snprintf(url, sizeof url, "http://127.0.0.1:%u/ingest", (unsigned) port);
        HttpcConfig cfg = { .url = url, .timeout_usec = timeout_usec, .connect_timeout_usec = timeout_usec };
        Httpc *c = NULL;
        int r = httpc_new(&c, &cfg, e, err, sizeof err);
        if (r < 0)
                fail_msg("httpc_new: %d %s", r, err);
        return c;
}

#define OK204 "HTTP/1.1 204 No Content\r\n\r\n"

/* Three requests on one kept-alive connection; plain http:// never loads GnuTLS. */
static void test_keep_alive(void **state) {
        uint16_t port;
        int lfd = listen_loopback(&port);
        const Step steps[] = { { ACT_ANSWER, OK204 }, { ACT_ANSWER, OK204 },
                               { ACT_ANSWER, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" } };
        pid_t pid = serve(lfd, steps, ELEMENTSOF(steps));
        sd_event *e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        Httpc *c = client(e, port, 5000000);
        Got g;
        for (int i = 0; i < 3; i++) {
                post_wait(e, c, &g);
                assert_true(g.ok);
                assert_int_equal(g.status, i < 2 ? 204 : 200);
        }
        assert_string_equal(g.excerpt, "ok");
        HttpcStats st;
        httpc_get_stats(c, &st);
        assert_int_equal(st.connections, 1);
        assert_int_equal(st.requests, 3);
        assert_false(tlsshim_loaded());
        assert_false(mapped("libgnutls"));
        httpc_free(c);
        sd_event_unref(e);
        stop_child(pid);
}

/* A 503 with Retry-After and a chunked body, written one byte per write: the client
 * assembles it across as many reads as it takes. */
static void test_dribbled_response(void **state) {
        uint16_t port;
        int lfd = listen_loopback(&port);
        const Step steps[] = {
                { ACT_DRIBBLE, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "5\r\nbusy,\r\n8\r\n retry!\n\r\n0\r\n\r\n" },
                { ACT_ANSWER, OK204 },
        };
        pid_t pid = serve(lfd, steps, ELEMENTSOF(steps));
        sd_event *e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        Httpc *c = client(e, port, 5000000);
        Got g;
        post_wait(e, c, &g);
        assert_true(g.ok);
        assert_int_equal(g.status, 503);
        assert_string_equal(g.retry_after, "7");
        assert_string_equal(g.excerpt, "busy, retry!\n");
        post_wait(e, c, &g); /* the chunked answer left the connection usable */
        assert_int_equal(g.status, 204);
        HttpcStats st;
        httpc_get_stats(c, &st);
        assert_int_equal(st.connections, 1);
        httpc_free(c);
        sd_event_unref(e);
        stop_child(pid);
}

/* Connection: close, then a server that closes its idle connection unannounced, then
 * one that drops the request on the reused connection (the race of an idle timeout):
 * every request still gets its answer, on a new connection. */
static void test_reconnects(void **state) {
        uint16_t port;
        int lfd = listen_loopback(&port);
        const Step steps[] = {
                { ACT_ANSWER_CLOSE, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n" },
                { ACT_ANSWER_CLOSE, OK204 },  /* closes although it announced keep-alive */
                { ACT_ANSWER, OK204 },
                { ACT_DROP, NULL },           /* the reused connection dies under the request */
                { ACT_ANSWER, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n" },
        };
        pid_t pid = serve(lfd, steps, ELEMENTSOF(steps));
        sd_event *e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        Httpc *c = client(e, port, 5000000);
        Got g;
        post_wait(e, c, &g);
        assert_int_equal(g.status, 200);
        post_wait(e, c, &g);
        assert_int_equal(g.status, 204);
        post_wait(e, c, &g);
        if (!g.ok)
                fail_msg("after an unannounced close: %s", g.error);
        assert_int_equal(g.status, 204);
        post_wait(e, c, &g); /* dropped, resent once on a fresh connection */
        if (!g.ok)
                fail_msg("the dropped request was not resent: %s", g.error);
        assert_int_equal(g.status, 202);
        HttpcStats st;
        httpc_get_stats(c, &st);
        assert_int_equal(st.connections, 4);
        /* the drop, and maybe request 3 if it raced the close of connection 2 */
        assert_true(st.stale_retries >= 1 && st.stale_retries <= 2);
        httpc_free(c);
        sd_event_unref(e);
        stop_child(pid);
}

/* Garbage, silence, nobody listening, a dropped fresh connection: one line each. */
static void test_failures(void **state) {
        uint16_t port;
        int lfd = listen_loopback(&port);
        const Step steps[] = { { ACT_ANSWER_CLOSE, "SSH-2.0-OpenSSH_9.2\r\n" }, { ACT_DROP, NULL }, { ACT_SILENT, NULL } };
        pid_t pid = serve(lfd, steps, ELEMENTSOF(steps));
        sd_event *e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        Httpc *c = client(e, port, 400000);
        Got g;
        post_wait(e, c, &g);
        assert_false(g.ok);
        if (!strstr(g.error, "malformed HTTP response"))
                fail_msg("garbage: %s", g.error);
        post_wait(e, c, &g); /* a fresh connection dropped: no resend, the shipper retries */
        assert_false(g.ok);
        if (!strstr(g.error, "connection closed before the response"))
                fail_msg("dropped: %s", g.error);
        post_wait(e, c, &g);
        assert_false(g.ok);
        if (!strstr(g.error, "timed out") || !strstr(g.error, "waiting for the response"))
                fail_msg("silent: %s", g.error);
        httpc_free(c);
        stop_child(pid);

        /* nothing listens on a port just released */
        lfd = listen_loopback(&port);
        close(lfd);
        c = client(e, port, 2000000);
        post_wait(e, c, &g);
        assert_false(g.ok);
        if (!strstr(g.error, "Connection refused") || !strstr(g.error, "127.0.0.1"))
                fail_msg("refused: %s", g.error);
        httpc_free(c);
        sd_event_unref(e);
}

/* A response body beyond the bound: the status counts, the rest is not read. */
static void test_truncated(void **state) {
        uint16_t port;
        int lfd = listen_loopback(&port);
        static char big[300000];
        int n = snprintf(big, sizeof big, "HTTP/1.1 400 Bad Request\r\nContent-Length: 200000\r\n\r\n");
        memset(big + n, 'x', 200000);
        big[n + 200000] = 0;
        const Step steps[] = { { ACT_ANSWER, big } };
        pid_t pid = serve(lfd, steps, ELEMENTSOF(steps));
        sd_event *e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        char url[64], err[256] = "";
        snprintf(url, sizeof url, "http://127.0.0.1:%u/", (unsigned) port);
        HttpcConfig cfg = { .url = url, .timeout_usec = 5000000, .max_response_body = 1000 };
        Httpc *c = NULL;
        assert_int_equal(httpc_new(&c, &cfg, e, err, sizeof err), 0);
        Got g;
        post_wait(e, c, &g);
        assert_true(g.ok);
        assert_true(g.truncated);
        assert_int_equal(g.status, 400);
        httpc_free(c);
        sd_event_unref(e);
        stop_child(pid);
}

/* URLs and files refused by httpc_new(), each with its one line. */
static void test_bad_config(void **state) {
        static const struct {
                const char *url, *ca, *cert, *key, *needle;
        } cases[] = {
                { "ftp://x/", NULL, NULL, NULL, "must start with http:// or https://" },
                { "http://", NULL, NULL, NULL, "host" },
                { "http://user:pw@host/", NULL, NULL, NULL, "user:password" },
                { "http://host:0/", NULL, NULL, NULL, "invalid port" },
                { "http://host:70000/", NULL, NULL, NULL, "invalid port" },
                { "http://host:12a/", NULL, NULL, NULL, "invalid port" },
                { "http://[::1/", NULL, NULL, NULL, "IPv6" },
                { "http://ho st/", NULL, NULL, NULL, "host" },
                { "http://host/a b", NULL, NULL, NULL, "path" },
                { "https://127.0.0.1/", "/nonexistent/ca.pem", NULL, NULL, "/nonexistent/ca.pem" },
                { "https://127.0.0.1/", NULL, "/nonexistent/c.pem", NULL, "together" },
                { "https://127.0.0.1/", NULL, "/nonexistent/c.pem", "/nonexistent/k.pem", "/nonexistent/c.pem" },
        };
        sd_event *e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char err[256] = "";
                HttpcConfig cfg = { .url = cases[i].url, .ca_file = cases[i].ca, .client_cert = cases[i].cert,
                                    .client_key = cases[i].key };
                Httpc *c = NULL;
                int r = httpc_new(&c, &cfg, e, err, sizeof err);
                if (r >= 0 || !strstr(err, cases[i].needle) || strchr(err, '\n'))
                        fail_msg("%s: r=%d err='%s', expected '%s'", cases[i].url, r, err, cases[i].needle);
                assert_null(c);
        }
        sd_event_unref(e);
}

/* ---- TLS against receiver.py ---- */

static char tls_dir[128];
static bool have_tls_tools;

static int group_setup(void **state) {
        have_tls_tools = system("python3 -c 'import ssl, http.server' >/dev/null 2>&1 && openssl version >/dev/null 2>&1") == 0;
        if (!have_tls_tools)
                return 0;
        snprintf(tls_dir, sizeof tls_dir, "/tmp/pw-test-httpc-XXXXXX");
        if (!mkdtemp(tls_dir))
                return -1;
        const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        char cmd[3072];
        snprintf(cmd, sizeof cmd,
                 "(set -e; cd '%s'; "
                 "openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj /CN=pw-httpc-ca "
                 "  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign; "
                 "openssl req -x509 %s -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=pw-other-ca "
                 "  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign; "
                 "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > server.ext; "
                 "printf 'subjectAltName=DNS:collector.example\\nextendedKeyUsage=serverAuth\\n' > named.ext; "
                 "printf 'extendedKeyUsage=clientAuth\\n' > client.ext; "
                 "openssl req -new %s -keyout server.key -out server.csr -subj /CN=localhost; "
                 "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
                 "  -extfile server.ext -out server.pem; "
                 "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
                 "  -extfile named.ext -out named.pem; "
                 "openssl req -new %s -keyout client.key -out client.csr -subj /CN=pullwatch-agent; "
                 "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
                 "  -extfile client.ext -out client.pem) >/dev/null 2>&1",
                 tls_dir, ec, ec, ec, ec);
        return system(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **state) {
        if (tls_dir[0]) {
                char cmd[256];
                snprintf(cmd, sizeof cmd, "rm -rf '%s'", tls_dir);
                (void) !system(cmd);
        }
        return 0;
}

/* receiver.py over TLS with the given server certificate; mtls: a client certificate
 * from the test CA is mandatory. Returns the pid; *port once it listens. */
static pid_t tls_receiver(const char *server_cert, bool mtls, int *port) {
        char cert[256], key[256], ca[256], portfile[256], records[256];
        snprintf(cert, sizeof cert, "%s/%s", tls_dir, server_cert);
        snprintf(key, sizeof key, "%s/server.key", tls_dir);
        snprintf(ca, sizeof ca, "%s/ca.pem", tls_dir);
        snprintf(portfile, sizeof portfile, "%s/port", tls_dir);
        snprintf(records, sizeof records, "%s/records", tls_dir);
        unlink(portfile);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test leaves no receiver behind */
                const char *argv[16] = { "python3", RECEIVER, "--records", records, "--port-file", portfile,
                                         "--cert", cert, "--key", key };
                size_t n = 10;
                if (mtls) {
                        argv[n++] = "--client-ca";
                        argv[n++] = ca;
                }
                argv[n] = NULL;
                int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
                if (null >= 0)
                        dup2(null, 2);
                execvp("python3", (char **) argv);
                _exit(127);
        }
        uint64_t deadline = now_usec_monotonic() + 60000000ULL; /* python under a loaded CI machine */
        for (;;) {
                FILE *pf = fopen(portfile, "re");
                if (pf) {
                        int p = 0;
                        int ok = fscanf(pf, "%d", &p);
                        fclose(pf);
                        if (ok == 1 && p > 0) {
                                *port = p;
                                return pid;
                        }
                }
                int status;
                if (waitpid(pid, &status, WNOHANG) == pid)
                        fail_msg("receiver exited early (status %d)", status);
                if (now_usec_monotonic() > deadline)
                        fail_msg("receiver did not start within 60 s");
                usleep(20000); /* polling the port file: the condition, bounded above */
        }
}

static Httpc *tls_client(sd_event *e, const char *host, int port, const char *ca, bool client_cert) {
        char url[128], ca_path[256], cert[256], key[256], err[256] = "";
        snprintf(url, sizeof url, "https://%s:%d/ingest", host, port);
        snprintf(ca_path, sizeof ca_path, "%s/%s", tls_dir, ca);
        snprintf(cert, sizeof cert, "%s/client.pem", tls_dir);
        snprintf(key, sizeof key, "%s/client.key", tls_dir);
        HttpcConfig cfg = { .url = url, .ca_file = ca_path, .timeout_usec = 10000000, .connect_timeout_usec = 10000000 };
        if (client_cert) {
                cfg.client_cert = cert;
                cfg.client_key = key;
        }
        Httpc *c = NULL;
        int r = httpc_new(&c, &cfg, e, err, sizeof err);
        if (r < 0)
                fail_msg("httpc_new: %d %s", r, err);
        return c;
}

#define REQUIRE_TLS_TOOLS()                                                    \
        do {                                                                   \
                if (!have_tls_tools) {                                         \
                        print_message("python3 or openssl missing: skipped\n"); \
                        skip();                                                \
                }                                                              \
        } while (0)

/* mTLS required and given: accepted, twice on one connection. */
static void test_tls_mtls(void **state) {
        REQUIRE_TLS_TOOLS();
        int port;
        pid_t pid = tls_receiver("server.pem", true, &port);
        sd_event *e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        Httpc *c = tls_client(e, "127.0.0.1", port, "ca.pem", true);
        assert_true(tlsshim_loaded());
        Got g;
        post_wait(e, c, &g);
        if (!g.ok)
                fail_msg("mTLS: %s", g.error);
        assert_int_equal(g.status, 200);
        post_wait(e, c, &g);
        assert_int_equal(g.status, 200);
        HttpcStats st;
        httpc_get_stats(c, &st);
        assert_int_equal(st.requests, 2);
        httpc_free(c);

        /* the same server without a client certificate: refused */
        c = tls_client(e, "127.0.0.1", port, "ca.pem", false);
        post_wait(e, c, &g);
        assert_false(g.ok);
        httpc_free(c);
        sd_event_unref(e);
        stop_child(pid);
}

/* A CA that did not sign the server's certificate: refused, one line naming it. */
static void test_tls_wrong_ca(void **state) {
        REQUIRE_TLS_TOOLS();
        int port;
        pid_t pid = tls_receiver("server.pem", false, &port);
        sd_event *e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        Httpc *c = tls_client(e, "127.0.0.1", port, "other-ca.pem", false);
        Got g;
        post_wait(e, c, &g);
        assert_false(g.ok);
        if (!strstr(g.error, "certificate verification failed") || !strcasestr(g.error, "not trusted"))
                fail_msg("wrong CA: %s", g.error);
        httpc_free(c);
        sd_event_unref(e);
        stop_child(pid);
}

/* The right CA, but the certificate names collector.example, not 127.0.0.1 (and a
 * certificate for 127.0.0.1 is refused for "localhost" only if it lacks the name: it
 * has it, so that one is accepted). */
static void test_tls_wrong_host(void **state) {
        REQUIRE_TLS_TOOLS();
        int port;
        pid_t pid = tls_receiver("named.pem", false, &port);
        sd_event *e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        Httpc *c = tls_client(e, "127.0.0.1", port, "ca.pem", false);
        Got g;
        post_wait(e, c, &g);
        assert_false(g.ok);
        if (!strstr(g.error, "certificate verification failed") || !strstr(g.error, "does not match"))
                fail_msg("wrong host: %s", g.error);
        httpc_free(c);
        stop_child(pid);

        /* by name: "localhost" is in server.pem's SANs, resolved off the loop */
        pid = tls_receiver("server.pem", false, &port);
        c = tls_client(e, "localhost", port, "ca.pem", false);
        post_wait(e, c, &g);
        if (!g.ok)
                fail_msg("localhost: %s", g.error);
        assert_int_equal(g.status, 200);
        httpc_free(c);
        sd_event_unref(e);
        stop_child(pid);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_keep_alive), /* first: GnuTLS must not be loaded yet */
                cmocka_unit_test(test_dribbled_response),
                cmocka_unit_test(test_reconnects),
                cmocka_unit_test(test_failures),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_bad_config),
                cmocka_unit_test(test_tls_mtls),
                cmocka_unit_test(test_tls_wrong_ca),
                cmocka_unit_test(test_tls_wrong_host),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
