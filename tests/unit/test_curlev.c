/* curlev against a real loopback HTTP/1.1 server running in a forked child. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "pullwatch/curlev.h"
#include "pullwatch/util.h"

static const char canned[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";

/* A listening socket on 127.0.0.1:0; *port gets the kernel-chosen port. */
static int listen_loopback(uint16_t *port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 16), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
        *port = ntohs(sa.sin_port);
        return fd;
}

/* Child: answer every connection with the canned response, forever (killed by the parent). */
static pid_t serve_canned(int lfd) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid > 0)
                return pid;
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) {
                int c = accept(lfd, NULL, NULL);
                if (c < 0)
                        _exit(1);
                char buf[4096];
                size_t got = 0;
                while (got < sizeof(buf) - 1) {
                        ssize_t n = read(c, buf + got, sizeof(buf) - 1 - got);
                        if (n <= 0)
                                break;
                        got += (size_t) n;
                        buf[got] = 0;
                        if (strstr(buf, "\r\n\r\n"))
                                break;
                }
                (void) !write(c, canned, sizeof(canned) - 1);
                close(c);
        }
}

static void stop_child(pid_t pid) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
}

typedef struct Xfer {
        char body[64];
        size_t len;
        int done_calls;
        CURLcode result;
        long code;
} Xfer;

static size_t write_cb(char *p, size_t sz, size_t n, void *ud) {
        Xfer *x = ud;
        size_t k = sz * n;
        if (x->len + k >= sizeof(x->body))
                return 0;
        memcpy(x->body + x->len, p, k);
        x->len += k;
        x->body[x->len] = 0;
        return k;
}

static CURL *make_easy(uint16_t port, Xfer *x) {
        char url[64];
        CURL *e = curl_easy_init();
        assert_non_null(e);
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", (unsigned) port);
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        return e;
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *ud) {
        return sd_event_exit(sd_event_source_get_event(s), -ETIMEDOUT);
}

/* Run the loop until a callback exits it; fail (not hang) after 10 s. */
static int run_loop(sd_event *e) {
        sd_event_source *t = NULL;
        uint64_t now;
        assert_true(sd_event_now(e, CLOCK_MONOTONIC, &now) >= 0);
        assert_int_equal(sd_event_add_time(e, &t, CLOCK_MONOTONIC, now + 10 * 1000000ULL, 0, on_deadline, NULL), 0);
        int r = sd_event_loop(e);
        sd_event_source_unref(t);
        return r;
}

static void done_exit(CurlEv *ev, CURL *easy, CURLcode result, void *ud) {
        Xfer *x = ud;
        x->done_calls++;
        x->result = result;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &x->code);
        /* The easy is ours again: freeing it here must be safe. */
        curl_easy_cleanup(easy);
}

static sd_event *the_event;

static void done_exit_loop(CurlEv *ev, CURL *easy, CURLcode result, void *ud) {
        done_exit(ev, easy, result, ud);
        sd_event_exit(the_event, 0);
}

static void test_single_get(void **state) {
        uint16_t port;
        int lfd = listen_loopback(&port);
        pid_t child = serve_canned(lfd);
        sd_event *e = NULL;
        CurlEv *ev = NULL;
        Xfer x = {};

        assert_int_equal(sd_event_new(&e), 0);
        the_event = e;
        assert_int_equal(curlev_new(&ev, e), 0);
        assert_int_equal(curlev_add(ev, make_easy(port, &x), done_exit_loop, &x), 0);
        assert_int_equal(run_loop(e), 0);
        assert_int_equal(x.done_calls, 1);
        assert_int_equal(x.result, CURLE_OK);
        assert_int_equal(x.code, 200);
        assert_string_equal(x.body, "hello");

        curlev_free(ev);
        sd_event_unref(e);
        stop_child(child);
        close(lfd);
}

/* A's done callback removes the hanging C, frees its own easy and starts D;
 * D completes; C's callback is never called. */
typedef struct Chain {
        CurlEv *ev;
        uint16_t port;
        CURL *c_easy;
        Xfer a, c, d;
        int remove_r;
        int add_r;
} Chain;

static Chain chain;

static void done_d(CurlEv *ev, CURL *easy, CURLcode result, void *ud) {
        done_exit_loop(ev, easy, result, ud);
}
static void done_c(CurlEv *ev, CURL *easy, CURLcode result, void *ud) {
        chain.c.done_calls++;
}
static void done_a(CurlEv *ev, CURL *easy, CURLcode result, void *ud) {
        chain.a.done_calls++;
        chain.a.result = result;
        curl_easy_cleanup(easy);
        chain.remove_r = curlev_remove(ev, chain.c_easy);
        chain.add_r = curlev_add(ev, make_easy(chain.port, &chain.d), done_d, &chain.d);
}

static void test_reentrant_callbacks(void **state) {
        uint16_t port, hang_port;
        int lfd = listen_loopback(&port);
        int hang_fd = listen_loopback(&hang_port); /* accepts via backlog, never answers */
        pid_t child = serve_canned(lfd);
        sd_event *e = NULL;

        assert_int_equal(sd_event_new(&e), 0);
        the_event = e;
        memset(&chain, 0, sizeof(chain));
        chain.port = port;
        assert_int_equal(curlev_new(&chain.ev, e), 0);
        chain.c_easy = make_easy(hang_port, &chain.c);
        assert_int_equal(curlev_add(chain.ev, chain.c_easy, done_c, NULL), 0);
        assert_int_equal(curlev_add(chain.ev, make_easy(port, &chain.a), done_a, NULL), 0);
        /* Adding the same easy twice is refused. */
        assert_int_equal(curlev_add(chain.ev, chain.c_easy, done_c, NULL), -EEXIST);

        assert_int_equal(run_loop(e), 0);
        assert_int_equal(chain.a.done_calls, 1);
        assert_int_equal(chain.a.result, CURLE_OK);
        assert_string_equal(chain.a.body, "hello");
        assert_int_equal(chain.remove_r, 0);
        assert_int_equal(chain.add_r, 0);
        assert_int_equal(chain.d.done_calls, 1);
        assert_string_equal(chain.d.body, "hello");
        assert_int_equal(chain.c.done_calls, 0);
        /* Removing twice: no longer attached. */
        assert_int_equal(curlev_remove(chain.ev, chain.c_easy), -ENOENT);

        curl_easy_cleanup(chain.c_easy);
        curlev_free(chain.ev);
        sd_event_unref(e);
        stop_child(child);
        close(lfd);
        close(hang_fd);
}

/* A transfer started from inside another transfer's write callback (what a stream's
 * message handler does when it starts a lookup): libcurl refuses that re-entrant
 * curl_multi_add_handle() with CURLM_RECURSIVE_API_CALL; curlev defers it to the next
 * loop turn instead of failing. */
typedef struct Nested {
        CurlEv *ev;
        uint16_t port;
        Xfer outer, inner;
        int add_r;
        bool added;
} Nested;

static Nested nested;

static size_t write_and_add(char *p, size_t sz, size_t n, void *ud) {
        size_t k = write_cb(p, sz, n, &nested.outer);
        if (!nested.added) {
                nested.added = true;
                nested.add_r = curlev_add(nested.ev, make_easy(nested.port, &nested.inner), done_exit_loop,
                                          &nested.inner);
        }
        return k;
}

static void done_outer(CurlEv *ev, CURL *easy, CURLcode result, void *ud) {
        done_exit(ev, easy, result, ud);
}

static void test_add_from_write_callback(void **state) {
        uint16_t port;
        int lfd = listen_loopback(&port);
        pid_t child = serve_canned(lfd);
        sd_event *e = NULL;

        assert_int_equal(sd_event_new(&e), 0);
        the_event = e;
        memset(&nested, 0, sizeof(nested));
        nested.port = port;
        assert_int_equal(curlev_new(&nested.ev, e), 0);
        CURL *outer = make_easy(port, &nested.outer);
        curl_easy_setopt(outer, CURLOPT_WRITEFUNCTION, write_and_add);
        assert_int_equal(curlev_add(nested.ev, outer, done_outer, &nested.outer), 0);

        assert_int_equal(run_loop(e), 0);
        assert_true(nested.added);
        assert_int_equal(nested.add_r, 0);
        assert_int_equal(nested.inner.done_calls, 1);
        assert_int_equal(nested.inner.result, CURLE_OK);
        assert_string_equal(nested.inner.body, "hello");

        curlev_free(nested.ev);
        sd_event_unref(e);
        stop_child(child);
        close(lfd);
}

/* libcurl asks for 0 ms timeouts all the time; if they ran at sd-event's default timer
 * accuracy (250 ms) each of these sequential transfers would stall. Checked on the timer
 * itself, not by the clock: no timed assertions in tests. */
static int seq_left;
static uint16_t seq_port;
static Xfer seq_x;
static void done_seq(CurlEv *ev, CURL *easy, CURLcode result, void *ud) {
        curl_easy_cleanup(easy);
        assert_int_equal(result, CURLE_OK);
        if (--seq_left == 0) {
                sd_event_exit(the_event, 0);
                return;
        }
        seq_x.len = 0;
        assert_int_equal(curlev_add(ev, make_easy(seq_port, &seq_x), done_seq, NULL), 0);
}

static void test_sequential_latency(void **state) {
        int lfd = listen_loopback(&seq_port);
        pid_t child = serve_canned(lfd);
        sd_event *e = NULL;
        CurlEv *ev = NULL;

        assert_int_equal(sd_event_new(&e), 0);
        the_event = e;
        assert_int_equal(curlev_new(&ev, e), 0);
        seq_left = 10;
        assert_int_equal(curlev_add(ev, make_easy(seq_port, &seq_x), done_seq, NULL), 0);
        /* libcurl asked for a timeout when the transfer was added: its timer must fire on
         * time. An accuracy of 0 would have meant sd-event's default, 250 ms, per step. */
        uint64_t accuracy = 0;
        assert_non_null(curlev_timer_source(ev));
        assert_int_equal(sd_event_source_get_time_accuracy(curlev_timer_source(ev), &accuracy), 0);
        assert_true(accuracy <= 1000);
        assert_int_equal(run_loop(e), 0);
        assert_int_equal(seq_left, 0);

        curlev_free(ev);
        sd_event_unref(e);
        stop_child(child);
        close(lfd);
}

static void test_connection_refused(void **state) {
        uint16_t port;
        int lfd = listen_loopback(&port);
        close(lfd); /* nothing listens there now */
        sd_event *e = NULL;
        CurlEv *ev = NULL;
        Xfer x = {};

        assert_int_equal(sd_event_new(&e), 0);
        the_event = e;
        assert_int_equal(curlev_new(&ev, e), 0);
        assert_int_equal(curlev_add(ev, make_easy(port, &x), done_exit_loop, &x), 0);
        assert_int_equal(run_loop(e), 0);
        assert_int_equal(x.done_calls, 1);
        assert_int_equal(x.result, CURLE_COULDNT_CONNECT);
        curlev_free(ev);
        sd_event_unref(e);
}

/* Freeing the CurlEv with a transfer in flight detaches it without calling done. */
static void test_free_with_pending(void **state) {
        uint16_t hang_port;
        int hang_fd = listen_loopback(&hang_port);
        sd_event *e = NULL;
        CurlEv *ev = NULL;
        Xfer x = {};

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(curlev_new(&ev, e), 0);
        CURL *easy = make_easy(hang_port, &x);
        assert_int_equal(curlev_add(ev, easy, done_exit_loop, &x), 0);
        /* Let it connect and send its request. */
        for (int i = 0; i < 20; i++)
                assert_true(sd_event_run(e, 10000) >= 0);
        assert_null(curlev_free(ev));
        assert_int_equal(x.done_calls, 0);
        curl_easy_cleanup(easy);
        sd_event_unref(e);
        close(hang_fd);
        assert_null(curlev_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_single_get),
                cmocka_unit_test(test_reentrant_callbacks),
                cmocka_unit_test(test_add_from_write_callback),
                cmocka_unit_test(test_sequential_latency),
                cmocka_unit_test(test_connection_refused),
                cmocka_unit_test(test_free_with_pending),
        };
        curl_global_init(CURL_GLOBAL_DEFAULT);
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        curl_global_cleanup();
        return r;
}
