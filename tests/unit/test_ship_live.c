/* The shipper end to end on loopback: a real sd-event loop, a real spool, the native
 * HTTP client (agent/httpc.c; test_ship_live_curl.c builds this file again with
 * SHIP_LIVE_TRANSPORT=SHIP_TRANSPORT_CURL for libcurl through CurlEv), and
 * tests/integration/receiver.py as the endpoint (started as a child process). Exact
 * counts; every wait polls a condition with a bounded timeout. Skipped only when
 * python3 is missing. */
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>

#include <cmocka.h>

#include "pullwatch/curlev.h"
#include "pullwatch/ship.h"
#include "pullwatch/spool.h"
#include "pullwatch/util.h"

#ifndef SHIP_LIVE_TRANSPORT
#define SHIP_LIVE_TRANSPORT SHIP_TRANSPORT_NATIVE
#endif

#ifndef PW_SOURCE_DIR
#error "PW_SOURCE_DIR must be defined by the build"
#endif
#define RECEIVER PW_SOURCE_DIR "/tests/integration/receiver.py"

static char tls_dir[128]; /* CA, server and client material, made once per run */
static bool have_python;

typedef struct Msg {
        int level;
        char text[512];
} Msg;

typedef struct Fixture {
        char dir[128];
        char records[192], requests[192], dead[192], portfile[192], spooldir[192];
        pid_t receiver;
        int port;
        sd_event *event;
        CurlEv *ev;
        Spool *spool;
        Shipper *ship;
        Msg msgs[64];
        size_t n_msgs;
        unsigned next_id;
} Fixture;

/* ---- helpers ---- */

static int free_port(void) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof a;
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof a), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &l), 0);
        close(fd); /* nothing listens there until the receiver binds it */
        return ntohs(a.sin_port);
}

/* Start receiver.py; tls: 0 plain, 1 server cert + mandatory client cert. */
static void receiver_start(Fixture *f, int port, bool tls, const char *mode) {
        char portarg[16];
        snprintf(portarg, sizeof portarg, "%d", port);
        unlink(f->portfile);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char cert[256], key[256], ca[256];
                snprintf(cert, sizeof cert, "%s/server.pem", tls_dir);
                snprintf(key, sizeof key, "%s/server.key", tls_dir);
                snprintf(ca, sizeof ca, "%s/ca.pem", tls_dir);
                const char *argv[20] = { "python3", RECEIVER, "--records", f->records, "--requests", f->requests,
                                         "--port", portarg, "--port-file", f->portfile, "--mode", mode };
                size_t n = 12;
                if (tls) {
                        const char *more[] = { "--cert", cert, "--key", key, "--client-ca", ca };
                        for (size_t i = 0; i < ELEMENTSOF(more); i++)
                                argv[n++] = more[i];
                }
                argv[n] = NULL;
                execvp("python3", (char **) argv);
                _exit(127);
        }
        f->receiver = pid;
        /* wait for the port file (written atomically once listening) */
        uint64_t deadline = now_usec_monotonic() + 15000000ULL;
        for (;;) {
                FILE *pf = fopen(f->portfile, "re");
                if (pf) {
                        int p = 0;
                        int ok = fscanf(pf, "%d", &p);
                        fclose(pf);
                        if (ok == 1 && p > 0) {
                                f->port = p;
                                return;
                        }
                }
                int status;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        f->receiver = 0;
                        fail_msg("receiver exited early (status %d)", status);
                }
                if (now_usec_monotonic() > deadline)
                        fail_msg("receiver did not start within 15 s");
                usleep(20000);
        }
}

static void receiver_stop(Fixture *f) {
        if (f->receiver > 0) {
                kill(f->receiver, SIGTERM);
                waitpid(f->receiver, NULL, 0);
                f->receiver = 0;
        }
}

/* Tell the (plain HTTP) receiver how to behave, with a blocking curl call: test code. */
static void receiver_control(Fixture *f, const char *json) {
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/control", f->port);
        CURL *c = curl_easy_init();
        assert_non_null(c);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
        FILE *devnull = fopen("/dev/null", "we");
        curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
        CURLcode r = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        fclose(devnull);
        assert_int_equal(r, CURLE_OK);
        assert_int_equal(status, 200);
}

static void on_log(int level, const char *message, void *userdata) {
        Fixture *f = userdata;
        if (f->n_msgs < ELEMENTSOF(f->msgs)) {
                f->msgs[f->n_msgs].level = level;
                snprintf(f->msgs[f->n_msgs].text, sizeof f->msgs[0].text, "%s", message);
                f->n_msgs++;
        }
}

static const Msg *find_msg(Fixture *f, int level, const char *needle) {
        for (size_t i = 0; i < f->n_msgs; i++)
                if (f->msgs[i].level == level && strstr(f->msgs[i].text, needle))
                        return &f->msgs[i];
        return NULL;
}

static void config_base(ShipConfig *c, Fixture *f, const char *url) {
        ship_config_init(c);
        c->url = url;
        c->transport = SHIP_LIVE_TRANSPORT;
        c->dead_letter_path = f->dead;
        c->batch_max_records = 100;
        c->batch_max_age_usec = 20000;
        c->retry_base_usec = 20000;
        c->retry_max_usec = 200000;
        c->timeout_usec = 5000000;
        c->connect_timeout_usec = 2000000;
}

static void ship_start(Fixture *f, const ShipConfig *c) {
        char err[256] = "";
        int r = ship_new(&f->ship, f->event, f->ev, f->spool, c, err, sizeof err);
        if (r < 0)
                fail_msg("ship_new: %d %s", r, err);
        ship_set_log_callback(f->ship, on_log, f);
}

static void append_records(Fixture *f, unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                char rec[256];
                unsigned id = f->next_id++;
                int len = snprintf(rec, sizeof rec,
                                   "{\"id\":\"%032x\",\"kind\":\"pull\",\"severity\":\"info\",\"time\":\"2024-05-01T12:00:%02u.%06uZ\","
                                   "\"node\":\"n1\",\"message\":\"record %u\",\"schema\":1}",
                                   id, id % 60, id, id);
                uint64_t seq;
                assert_int_equal(spool_append(f->spool, rec, (size_t) len, &seq), 0);
                assert_int_equal(ship_kick(f->ship), 0);
        }
        assert_int_equal(spool_sync(f->spool), 0);
}

typedef bool (*cond_t)(Fixture *f, uint64_t arg);

static bool run_until(Fixture *f, cond_t cond, uint64_t arg, uint64_t timeout_usec) {
        uint64_t deadline = now_usec_monotonic() + timeout_usec;
        while (!cond(f, arg)) {
                if (now_usec_monotonic() > deadline)
                        return false;
                assert_true(sd_event_run(f->event, 20000) >= 0);
        }
        return true;
}

static bool cond_drained(Fixture *f, uint64_t arg) {
        ShipStats st;
        ship_get_stats(f->ship, &st);
        return st.spool.pending_records == 0 && !st.in_flight;
}

static bool cond_retried(Fixture *f, uint64_t arg) {
        ShipStats st;
        ship_get_stats(f->ship, &st);
        return st.retried >= arg;
}

/* Reads the receiver's records file: total lines, and which of ids 0..n-1 came. */
static void received(Fixture *f, unsigned n, size_t *ret_lines, unsigned *ret_unique, unsigned *ret_missing,
                     bool *ret_unknown) {
        _cleanup_free_ unsigned *seen = calloc(n ? n : 1, sizeof *seen);
        size_t lines = 0;
        bool unknown = false;
        FILE *rf = fopen(f->records, "re");
        if (rf) {
                char *line = NULL;
                size_t cap = 0;
                while (getline(&line, &cap, rf) > 0) {
                        lines++;
                        json_t *j = json_loads(line, 0, NULL);
                        json_t *id = json_object_get(j, "id");
                        unsigned v = 0;
                        if (!json_is_string(id) || sscanf(json_string_value(id), "%x", &v) != 1 || v >= n)
                                unknown = true;
                        else
                                seen[v]++;
                        json_decref(j);
                }
                free(line);
                fclose(rf);
        }
        unsigned unique = 0, missing = 0;
        for (unsigned i = 0; i < n; i++) {
                unique += seen[i] > 0;
                missing += seen[i] == 0;
        }
        *ret_lines = lines;
        *ret_unique = unique;
        *ret_missing = missing;
        *ret_unknown = unknown;
}

/* The receiver's request log: statuses and times in order. */
static size_t requests_log(Fixture *f, long *status, double *t, size_t max) {
        size_t n = 0;
        FILE *rf = fopen(f->requests, "re");
        if (!rf)
                return 0;
        char *line = NULL;
        size_t cap = 0;
        while (n < max && getline(&line, &cap, rf) > 0) {
                json_t *j = json_loads(line, 0, NULL);
                status[n] = (long) json_integer_value(json_object_get(j, "status"));
                t[n] = json_real_value(json_object_get(j, "t"));
                n++;
                json_decref(j);
        }
        free(line);
        fclose(rf);
        return n;
}

/* ---- setup ---- */

static int group_setup(void **state) {
        have_python = system("python3 -c 'import ssl, http.server' >/dev/null 2>&1") == 0;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        snprintf(tls_dir, sizeof tls_dir, "/tmp/pw-test-ship-tls-XXXXXX");
        if (!mkdtemp(tls_dir))
                return -1;
        /* A test CA, a server cert for 127.0.0.1, a client cert, and an unrelated CA. */
        const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "set -e; cd '%s'; "
                 "openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj /CN=pw-test-ca "
                 "  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign; "
                 "openssl req -x509 %s -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=pw-other-ca "
                 "  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign; "
                 "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > server.ext; "
                 "printf 'extendedKeyUsage=clientAuth\\n' > client.ext; "
                 "openssl req -new %s -keyout server.key -out server.csr -subj /CN=localhost; "
                 "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
                 "  -extfile server.ext -out server.pem; "
                 "openssl req -new %s -keyout client.key -out client.csr -subj /CN=pullwatch-agent; "
                 "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
                 "  -extfile client.ext -out client.pem",
                 tls_dir, ec, ec, ec, ec);
        char full[2200];
        snprintf(full, sizeof full, "(%s) >/dev/null 2>&1", cmd);
        return system(full) == 0 ? 0 : -1;
}

static int group_teardown(void **state) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tls_dir);
        (void) !system(cmd);
        curl_global_cleanup();
        return 0;
}

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof *f);
        if (!f)
                return -1;
        snprintf(f->dir, sizeof f->dir, "/tmp/pw-test-ship-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->records, sizeof f->records, "%s/records.jsonl", f->dir);
        snprintf(f->requests, sizeof f->requests, "%s/requests.jsonl", f->dir);
        snprintf(f->dead, sizeof f->dead, "%s/dead-letter.jsonl", f->dir);
        snprintf(f->portfile, sizeof f->portfile, "%s/port", f->dir);
        snprintf(f->spooldir, sizeof f->spooldir, "%s/spool", f->dir);
        if (sd_event_new(&f->event) < 0 || curlev_new(&f->ev, f->event) < 0 ||
            spool_open(&f->spool, f->spooldir, 64ULL << 20, SPOOL_FSYNC_BATCH, NULL) < 0)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        if (!f)
                return 0;
        receiver_stop(f);
        ship_free(f->ship);
        spool_free(f->spool);
        curlev_free(f->ev);
        sd_event_unref(f->event);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
        (void) !system(cmd);
        free(f);
        return 0;
}

#define REQUIRE_PYTHON()                                              \
        do {                                                          \
                if (!have_python) {                                   \
                        print_message("python3 missing: skipped\n"); \
                        skip();                                       \
                }                                                     \
        } while (0)

/* ---- scenarios ---- */

/* Endpoint down (nothing listens) while 1,000 records are appended, then up. */
static void test_down_then_up(void **state) {
        Fixture *f = *state;
        REQUIRE_PYTHON();
        int port = free_port();
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/ingest", port);
        ShipConfig c;
        config_base(&c, f, url);
        ship_start(f, &c);

        append_records(f, 1000);
        assert_true(run_until(f, cond_retried, 3, 20000000ULL));
        ShipStats st;
        ship_get_stats(f->ship, &st);
        assert_int_equal(st.shipped, 0);
        assert_int_equal(st.spool.pending_records, 1000);
        assert_true(strlen(st.last_error) > 0);
        assert_non_null(find_msg(f, LOG_WARNING, "keeping them in the spool"));

        receiver_start(f, port, false, "ok");
        assert_true(run_until(f, cond_drained, 0, 30000000ULL));

        size_t lines;
        unsigned unique, missing;
        bool unknown;
        received(f, 1000, &lines, &unique, &missing, &unknown);
        assert_int_equal(unique, 1000);
        assert_int_equal(missing, 0);
        assert_false(unknown);
        assert_true(lines >= 1000); /* at-least-once; here in fact exactly once */
        ship_get_stats(f->ship, &st);
        assert_int_equal(st.shipped, 1000);
        assert_int_equal(st.dead_lettered, 0);
        assert_int_equal(st.batches, 10); /* 100 per batch */
        assert_string_equal(st.last_error, "");
        assert_true(st.last_success_usec > 0);
        assert_non_null(find_msg(f, LOG_INFO, "recovered"));
}

/* 429 with Retry-After: 1 → the next attempt waits at least 1 s, though the backoff
 * cap is 200 ms. */
static void test_429_retry_after(void **state) {
        Fixture *f = *state;
        REQUIRE_PYTHON();
        receiver_start(f, 0, false, "ok");
        receiver_control(f, "{\"mode\":\"429\",\"retry_after\":1,\"count\":1}");
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/ingest", f->port);
        ShipConfig c;
        config_base(&c, f, url);
        ship_start(f, &c);

        append_records(f, 10);
        assert_true(run_until(f, cond_drained, 0, 15000000ULL));
        long status[8];
        double t[8];
        assert_int_equal(requests_log(f, status, t, 8), 2);
        assert_int_equal(status[0], 429);
        assert_int_equal(status[1], 200);
        if (t[1] - t[0] < 0.95)
                fail_msg("retried after %.3f s, Retry-After said 1 s", t[1] - t[0]);
        ShipStats st;
        ship_get_stats(f->ship, &st);
        assert_int_equal(st.retried, 1);
        assert_int_equal(st.shipped, 10);
        size_t lines;
        unsigned unique, missing;
        bool unknown;
        received(f, 10, &lines, &unique, &missing, &unknown);
        assert_int_equal(lines, 10);
        assert_int_equal(missing, 0);
}

/* 400 → the batch goes to the dead-letter file, is acked, and the queue continues. */
static void test_400_dead_letter(void **state) {
        Fixture *f = *state;
        REQUIRE_PYTHON();
        receiver_start(f, 0, false, "ok");
        receiver_control(f, "{\"mode\":\"400\",\"count\":1}");
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/ingest", f->port);
        ShipConfig c;
        config_base(&c, f, url);
        c.batch_max_records = 10;
        ship_start(f, &c);

        append_records(f, 25); /* the 10th append starts batch 0..9, which gets the 400 */
        assert_true(run_until(f, cond_drained, 0, 15000000ULL));

        ShipStats st;
        ship_get_stats(f->ship, &st);
        assert_int_equal(st.dead_lettered, 10);
        assert_int_equal(st.shipped, 15);
        assert_int_equal(st.retried, 0);

        /* receiver has exactly ids 10..24 */
        size_t lines;
        unsigned unique, missing;
        bool unknown;
        received(f, 25, &lines, &unique, &missing, &unknown);
        assert_int_equal(lines, 15);
        assert_int_equal(unique, 15);

        /* dead-letter file: ids 0..9 in order, then one status line */
        FILE *df = fopen(f->dead, "re");
        assert_non_null(df);
        char *line = NULL;
        size_t cap = 0;
        unsigned n = 0;
        bool status_line = false;
        while (getline(&line, &cap, df) > 0) {
                json_t *j = json_loads(line, 0, NULL);
                assert_non_null(j);
                json_t *dl = json_object_get(j, "dead_letter");
                if (dl) {
                        assert_int_equal(n, 10);
                        assert_int_equal(json_integer_value(json_object_get(dl, "status")), 400);
                        assert_int_equal(json_integer_value(json_object_get(dl, "records")), 10);
                        assert_non_null(strstr(json_string_value(json_object_get(dl, "response")), "test says 400"));
                        status_line = true;
                } else {
                        unsigned v;
                        assert_int_equal(sscanf(json_string_value(json_object_get(j, "id")), "%x", &v), 1);
                        assert_int_equal(v, n);
                        n++;
                }
                json_decref(j);
        }
        free(line);
        fclose(df);
        assert_true(status_line);
        const Msg *m = find_msg(f, LOG_ERR, "HTTP 400");
        assert_non_null(m);
        assert_non_null(strstr(m->text, "test says 400"));
        assert_non_null(strstr(m->text, f->dead));
}

static bool cond_dead_letter_refused(Fixture *f, uint64_t arg) {
        return find_msg(f, LOG_ERR, "could not write dead-letter file") != NULL;
}

/* A symlink in place of the dead-letter file is not followed: root would otherwise append
 * to whatever it points at. The batch stays in the spool, and is delivered on retry. */
static void test_dead_letter_symlink(void **state) {
        Fixture *f = *state;
        REQUIRE_PYTHON();
        char victim[256];
        snprintf(victim, sizeof victim, "%s/victim", f->dir);
        FILE *vf = fopen(victim, "we");
        assert_non_null(vf);
        fputs("precious\n", vf);
        assert_int_equal(fclose(vf), 0);
        assert_int_equal(symlink(victim, f->dead), 0);

        receiver_start(f, 0, false, "ok");
        receiver_control(f, "{\"mode\":\"400\",\"count\":1}");
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/ingest", f->port);
        ShipConfig c;
        config_base(&c, f, url);
        c.batch_max_records = 10;
        ship_start(f, &c);
        append_records(f, 10);
        assert_true(run_until(f, cond_dead_letter_refused, 0, 15000000ULL));
        const Msg *m = find_msg(f, LOG_ERR, "could not write dead-letter file");
        assert_non_null(strstr(m->text, "symbolic links"));

        struct stat st;
        assert_int_equal(stat(victim, &st), 0);
        assert_int_equal(st.st_size, strlen("precious\n"));
        ShipStats ss;
        ship_get_stats(f->ship, &ss);
        assert_int_equal(ss.dead_lettered, 0);
        assert_int_equal(ss.spool.pending_records, 10); /* nothing dropped */
}

static bool cond_token_refused(Fixture *f, uint64_t arg) {
        ShipStats st;
        ship_get_stats(f->ship, &st);
        return strstr(st.last_error, "bearer token file") != NULL;
}

/* A FIFO in place of the token file: refused at once, said in last_error, records kept
 * (the open waited for a writer and froze the shipper); alarm() turns a hang into a
 * failed test. */
static void test_token_fifo(void **state) {
        Fixture *f = *state;
        REQUIRE_PYTHON();
        char token[256];
        snprintf(token, sizeof token, "%s/token", f->dir);
        assert_int_equal(mkfifo(token, 0600), 0);
        receiver_start(f, 0, false, "ok");
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/ingest", f->port);
        ShipConfig c;
        config_base(&c, f, url);
        c.bearer_token_file = token;
        ship_start(f, &c);
        alarm(20);
        append_records(f, 5);
        bool refused = run_until(f, cond_token_refused, 0, 10000000ULL);
        alarm(0);
        assert_true(refused);
        ShipStats st;
        ship_get_stats(f->ship, &st);
        assert_non_null(strstr(st.last_error, "not a regular file"));
        assert_int_equal(st.spool.pending_records, 5);
}

/* 500 twice → retried, then delivered; nothing dead-lettered. */
static void test_500_then_ok(void **state) {
        Fixture *f = *state;
        REQUIRE_PYTHON();
        receiver_start(f, 0, false, "ok");
        receiver_control(f, "{\"mode\":\"fail500\",\"count\":2}");
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/ingest", f->port);
        ShipConfig c;
        config_base(&c, f, url);
        ship_start(f, &c);

        append_records(f, 10);
        assert_true(run_until(f, cond_drained, 0, 15000000ULL));
        long status[8];
        double t[8];
        assert_int_equal(requests_log(f, status, t, 8), 3);
        assert_int_equal(status[0], 500);
        assert_int_equal(status[1], 500);
        assert_int_equal(status[2], 200);
        ShipStats st;
        ship_get_stats(f->ship, &st);
        assert_int_equal(st.retried, 2);
        assert_int_equal(st.shipped, 10);
        assert_int_equal(st.dead_lettered, 0);
        assert_true(access(f->dead, F_OK) < 0);
}

/* A stalled endpoint: the request times out (RETRY), the loop keeps running. */
static void test_stall_timeout(void **state) {
        Fixture *f = *state;
        REQUIRE_PYTHON();
        receiver_start(f, 0, false, "ok");
        receiver_control(f, "{\"mode\":\"stall\",\"count\":1,\"stall\":3}");
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/ingest", f->port);
        ShipConfig c;
        config_base(&c, f, url);
        c.timeout_usec = 300000;
        ship_start(f, &c);

        append_records(f, 5);
        /* the request timed out (the message below says so) instead of waiting out the stall */
        assert_true(run_until(f, cond_retried, 1, 5000000ULL));
        ShipStats st;
        ship_get_stats(f->ship, &st);
        if (!strstr(st.last_error, "timed out"))
                fail_msg("last_error: %s", st.last_error);
        assert_true(run_until(f, cond_drained, 0, 15000000ULL));
        size_t lines;
        unsigned unique, missing;
        bool unknown;
        received(f, 5, &lines, &unique, &missing, &unknown);
        assert_int_equal(missing, 0);
}

static void write_token(Fixture *f, const char *path, const char *token) {
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s.new", path);
        FILE *tf = fopen(tmp, "we");
        assert_non_null(tf);
        fprintf(tf, "%s\n", token);
        fclose(tf);
        assert_int_equal(rename(tmp, path), 0); /* new inode, like kubelet's symlink swap */
}

static void token_digest(const char *token, char *out, size_t size) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "printf %%s '%s' | sha256sum", token);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        char hex[128] = "";
        assert_non_null(fgets(hex, sizeof hex, p));
        pclose(p);
        snprintf(out, size, "Bearer %.16s", hex);
}

/* HTTPS with the test CA and a client certificate (mTLS), a rotating bearer token and an
 * extra header; Loki format on the wire. */
static void test_tls_mtls(void **state) {
        Fixture *f = *state;
        REQUIRE_PYTHON();
        receiver_start(f, 0, true, "ok");
        char url[64], ca[256], cert[256], key[256], token[256];
        snprintf(url, sizeof url, "https://127.0.0.1:%d/loki/api/v1/push", f->port);
        snprintf(ca, sizeof ca, "%s/ca.pem", tls_dir);
        snprintf(cert, sizeof cert, "%s/client.pem", tls_dir);
        snprintf(key, sizeof key, "%s/client.key", tls_dir);
        snprintf(token, sizeof token, "%s/token", f->dir);
        write_token(f, token, "first-secret-token");
        const char *headers[] = { "X-Scope-OrgID: tenant-a" };
        const ShipLabel labels[] = { { "cluster", "test" } };
        ShipConfig c;
        config_base(&c, f, url);
        c.format = SHIP_FORMAT_LOKI;
        c.ca_file = ca;
        c.client_cert = cert;
        c.client_key = key;
        c.bearer_token_file = token;
        c.headers = headers;
        c.n_headers = 1;
        c.labels = labels;
        c.n_labels = 1;
        ship_start(f, &c);

        append_records(f, 50);
        assert_true(run_until(f, cond_drained, 0, 15000000ULL));
        write_token(f, token, "second-secret-token");
        append_records(f, 50);
        assert_true(run_until(f, cond_drained, 0, 15000000ULL));

        size_t lines;
        unsigned unique, missing;
        bool unknown;
        received(f, 100, &lines, &unique, &missing, &unknown);
        assert_int_equal(lines, 100);
        assert_int_equal(missing, 0);

        /* every request carried the header and the token of its time */
        char d1[64], d2[64];
        token_digest("first-secret-token", d1, sizeof d1);
        token_digest("second-secret-token", d2, sizeof d2);
        FILE *rf = fopen(f->requests, "re");
        assert_non_null(rf);
        char *line = NULL;
        size_t cap = 0, n = 0, n1 = 0, n2 = 0;
        while (getline(&line, &cap, rf) > 0) {
                json_t *j = json_loads(line, 0, NULL);
                assert_int_equal(json_integer_value(json_object_get(j, "status")), 204);
                assert_string_equal(json_string_value(json_object_get(j, "encoding")), "gzip");
                assert_string_equal(json_string_value(json_object_get(j, "content_type")), "application/json");
                assert_string_equal(json_string_value(json_object_get(json_object_get(j, "headers"), "X-Scope-OrgID")),
                                    "tenant-a");
                const char *auth = json_string_value(json_object_get(j, "authorization"));
                assert_non_null(auth);
                n1 += streq_ptr(auth, d1);
                n2 += streq_ptr(auth, d2);
                n++;
                json_decref(j);
        }
        free(line);
        fclose(rf);
        assert_true(n >= 2);
        assert_true(n1 >= 1 && n2 >= 1);
        assert_int_equal(n1 + n2, n);
        /* the token never reaches the log */
        for (size_t i = 0; i < f->n_msgs; i++)
                assert_null(strstr(f->msgs[i].text, "secret-token"));
}

/* Wrong CA → a clear certificate error, records kept in the spool, nothing received. */
static void test_tls_wrong_ca(void **state) {
        Fixture *f = *state;
        REQUIRE_PYTHON();
        receiver_start(f, 0, true, "ok");
        char url[64], ca[256], cert[256], key[256];
        snprintf(url, sizeof url, "https://127.0.0.1:%d/ingest", f->port);
        snprintf(ca, sizeof ca, "%s/other-ca.pem", tls_dir);
        snprintf(cert, sizeof cert, "%s/client.pem", tls_dir);
        snprintf(key, sizeof key, "%s/client.key", tls_dir);
        ShipConfig c;
        config_base(&c, f, url);
        c.ca_file = ca;
        c.client_cert = cert;
        c.client_key = key;
        ship_start(f, &c);

        append_records(f, 20);
        assert_true(run_until(f, cond_retried, 3, 15000000ULL));
        ShipStats st;
        ship_get_stats(f->ship, &st);
        assert_int_equal(st.spool.pending_records, 20);
        assert_int_equal(st.shipped, 0);
        assert_int_equal(st.dead_lettered, 0);
        if (!strstr(st.last_error, "certificate"))
                fail_msg("last_error does not name the certificate problem: %s", st.last_error);
        assert_non_null(find_msg(f, LOG_WARNING, "certificate"));
        assert_true(access(f->records, F_OK) < 0);
}

/* Without a client certificate the mTLS receiver refuses the handshake: RETRY, kept. */
static void test_tls_no_client_cert(void **state) {
        Fixture *f = *state;
        REQUIRE_PYTHON();
        receiver_start(f, 0, true, "ok");
        char url[64], ca[256];
        snprintf(url, sizeof url, "https://127.0.0.1:%d/ingest", f->port);
        snprintf(ca, sizeof ca, "%s/ca.pem", tls_dir);
        ShipConfig c;
        config_base(&c, f, url);
        c.ca_file = ca;
        ship_start(f, &c);
        append_records(f, 5);
        assert_true(run_until(f, cond_retried, 2, 15000000ULL));
        ShipStats st;
        ship_get_stats(f->ship, &st);
        assert_int_equal(st.spool.pending_records, 5);
        assert_int_equal(st.shipped, 0);
        assert_true(access(f->records, F_OK) < 0);
}

/* Records already in the spool when the shipper starts are shipped without a kick. */
static void test_ships_backlog_on_start(void **state) {
        Fixture *f = *state;
        REQUIRE_PYTHON();
        for (unsigned i = 0; i < 7; i++) {
                char rec[64];
                int len = snprintf(rec, sizeof rec, "{\"id\":\"%032x\"}", f->next_id++);
                uint64_t seq;
                assert_int_equal(spool_append(f->spool, rec, (size_t) len, &seq), 0);
        }
        receiver_start(f, 0, false, "ok");
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/ingest", f->port);
        ShipConfig c;
        config_base(&c, f, url);
        ship_start(f, &c);
        assert_true(run_until(f, cond_drained, 0, 10000000ULL));
        size_t lines;
        unsigned unique, missing;
        bool unknown;
        received(f, 7, &lines, &unique, &missing, &unknown);
        assert_int_equal(lines, 7);
        assert_int_equal(missing, 0);
}

static size_t count_msgs(Fixture *f, const char *needle) {
        size_t n = 0;
        for (size_t i = 0; i < f->n_msgs; i++)
                n += strstr(f->msgs[i].text, needle) != NULL;
        return n;
}

static bool cond_requests(Fixture *f, uint64_t arg) {
        long status[64];
        double t[64];
        return requests_log(f, status, t, ELEMENTSOF(status)) >= arg;
}

/* The endpoint takes the batch but the spool cannot record the ack (its ack file cannot
 * be replaced: a disk that stays full): said once while the batch is sent again, and
 * once acks work again, said once and drained. The agent sweep found 53 identical lines
 * in one run. */
static void test_ack_fails_said_once(void **state) {
        Fixture *f = *state;
        REQUIRE_PYTHON();
        int port = free_port();
        char url[64], blocker[256];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/ingest", port);
        receiver_start(f, port, false, "ok");
        snprintf(blocker, sizeof blocker, "%s/ack.tmp", f->spooldir);
        assert_int_equal(mkdir(blocker, 0700), 0); /* file_replace's temporary cannot be made */
        ShipConfig c;
        config_base(&c, f, url);
        ship_start(f, &c);
        append_records(f, 10);

        assert_true(run_until(f, cond_requests, 5, 20000000ULL));
        assert_int_equal(count_msgs(f, "could not acknowledge"), 1);
        /* (the resends wait a full-jitter backoff, not timed here: no timed assertions) */

        assert_int_equal(rmdir(blocker), 0);
        assert_true(run_until(f, cond_drained, 0, 20000000ULL));
        assert_int_equal(count_msgs(f, "could not acknowledge"), 1);
        assert_int_equal(count_msgs(f, "acknowledging records in the spool works again"), 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_down_then_up, setup, teardown),
                cmocka_unit_test_setup_teardown(test_429_retry_after, setup, teardown),
                cmocka_unit_test_setup_teardown(test_400_dead_letter, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dead_letter_symlink, setup, teardown),
                cmocka_unit_test_setup_teardown(test_token_fifo, setup, teardown),
                cmocka_unit_test_setup_teardown(test_500_then_ok, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stall_timeout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tls_mtls, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tls_wrong_ca, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tls_no_client_cert, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ships_backlog_on_start, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ack_fails_said_once, setup, teardown),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
