/* gRPC pure core (framing, reassembly, headers, timeouts) and client error paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <poll.h>
#include <signal.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/un.h>

#include <cmocka.h>

#include "pullwatch/grpc.h"
#include "pullwatch/util.h"

/* ------------------------------------------------------------ framing */

static void test_frame_header(void **state) {
        static const struct {
                size_t len;
                uint8_t want[5];
        } cases[] = {
                { 0, { 0, 0, 0, 0, 0 } },
                { 1, { 0, 0, 0, 0, 1 } },
                { 300, { 0, 0, 0, 1, 44 } },
                { 0x01020304, { 0, 1, 2, 3, 4 } },
                { UINT32_MAX, { 0, 0xff, 0xff, 0xff, 0xff } },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint8_t h[5];
                assert_int_equal(grpc_frame_header(h, cases[i].len), 0);
                assert_memory_equal(h, cases[i].want, 5);
        }
        uint8_t h[5];
        assert_int_equal(grpc_frame_header(h, (size_t) UINT32_MAX + 1), -EMSGSIZE);

        uint8_t *b = NULL;
        size_t n = 0;
        assert_int_equal(grpc_frame_encode("abc", 3, &b, &n), 0);
        assert_int_equal(n, 8);
        assert_memory_equal(b, "\0\0\0\0\3abc", 8);
        free(b);
        assert_int_equal(grpc_frame_encode(NULL, 0, &b, &n), 0);
        assert_int_equal(n, 5);
        assert_memory_equal(b, "\0\0\0\0\0", 5);
        free(b);
}

typedef struct Collected {
        size_t n;
        size_t lens[16];
        uint8_t first[16];
        uint8_t last[16];
        int stop_after; /* return -ECANCELED after this many messages; 0 never */
} Collected;

static int collect(const uint8_t *msg, size_t len, void *ud) {
        Collected *c = ud;
        assert_true(c->n < 16);
        c->lens[c->n] = len;
        c->first[c->n] = len ? msg[0] : 0;
        c->last[c->n] = len ? msg[len - 1] : 0;
        c->n++;
        if (c->stop_after && (int) c->n >= c->stop_after)
                return -ECANCELED;
        return 0;
}

/* A stream of messages whose bytes encode (message index, position) so mixing up
 * boundaries shows. */
static size_t build_stream(const size_t *lens, size_t n, uint8_t **ret) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
                total += 5 + lens[i];
        uint8_t *b = malloc(total), *p = b;
        assert_non_null(b);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(grpc_frame_header(p, lens[i]), 0);
                p += 5;
                for (size_t k = 0; k < lens[i]; k++)
                        *p++ = (uint8_t) (i * 31 + k);
        }
        *ret = b;
        return total;
}

static void check_collected(const Collected *c, const size_t *lens, size_t n) {
        assert_int_equal(c->n, n);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(c->lens[i], lens[i]);
                if (lens[i]) {
                        assert_int_equal(c->first[i], (uint8_t) (i * 31));
                        assert_int_equal(c->last[i], (uint8_t) (i * 31 + lens[i] - 1));
                }
        }
}

/* Every split into two and three chunks, at every boundary. */
static void test_reader_every_split(void **state) {
        static const size_t lens_table[][4] = {
                { 0, 0, 0, 0 },   /* only empty messages */
                { 1, 0, 7, 0 },
                { 5, 5, 5, 5 },   /* payload length equal to the prefix length */
                { 300, 2, 0, 17 },
        };
        for (size_t t = 0; t < ELEMENTSOF(lens_table); t++) {
                uint8_t *s;
                size_t total = build_stream(lens_table[t], 4, &s);
                for (size_t i = 0; i <= total; i++)
                        for (size_t j = i; j <= total; j += (total > 100 ? 7 : 1)) {
                                GrpcReader r;
                                Collected c = {};
                                grpc_reader_init(&r, 1024);
                                assert_int_equal(grpc_reader_feed(&r, s, i, collect, &c), 0);
                                assert_int_equal(grpc_reader_feed(&r, s + i, j - i, collect, &c), 0);
                                assert_int_equal(grpc_reader_feed(&r, s + j, total - j, collect, &c), 0);
                                check_collected(&c, lens_table[t], 4);
                                assert_true(grpc_reader_idle(&r));
                                assert_int_equal(r.n_messages, 4);
                                grpc_reader_done(&r);
                        }
                /* byte by byte */
                GrpcReader r;
                Collected c = {};
                grpc_reader_init(&r, 1024);
                for (size_t i = 0; i < total; i++)
                        assert_int_equal(grpc_reader_feed(&r, s + i, 1, collect, &c), 0);
                check_collected(&c, lens_table[t], 4);
                grpc_reader_done(&r);
                free(s);
        }
}

static void test_reader_partial_not_idle(void **state) {
        static const size_t lens[] = { 10 };
        uint8_t *s;
        size_t total = build_stream(lens, 1, &s);
        for (size_t cut = 1; cut < total; cut++) {
                GrpcReader r;
                Collected c = {};
                grpc_reader_init(&r, 100);
                assert_int_equal(grpc_reader_feed(&r, s, cut, collect, &c), 0);
                assert_false(grpc_reader_idle(&r));
                assert_int_equal(c.n, 0);
                grpc_reader_done(&r);
        }
        free(s);
}

static void test_reader_errors(void **state) {
        static const struct {
                const char *name;
                uint8_t bytes[8];
                size_t len;
                size_t max;
                int want;
                const char *reason_has;
        } cases[] = {
                { "at limit", { 0, 0, 0, 0, 3, 'a', 'b', 'c' }, 8, 3, 0, NULL },
                { "over limit", { 0, 0, 0, 0, 4, 'a', 'b', 'c' }, 8, 3, -EMSGSIZE, "4 bytes exceeds the limit of 3" },
                { "huge", { 0, 0xff, 0xff, 0xff, 0xff }, 5, 1 << 20, -EMSGSIZE, "4294967295" },
                { "compressed", { 1, 0, 0, 0, 1, 'x' }, 6, 100, -EPROTO, "compressed" },
                { "bad flag", { 2, 0, 0, 0, 0 }, 5, 100, -EBADMSG, "0x02" },
                { "bad flag ff", { 0xff }, 5, 100, -EBADMSG, "0xff" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                GrpcReader r;
                Collected c = {};
                grpc_reader_init(&r, cases[i].max);
                int k = grpc_reader_feed(&r, cases[i].bytes, cases[i].len, collect, &c);
                if (k != cases[i].want)
                        fail_msg("%s: got %d want %d", cases[i].name, k, cases[i].want);
                if (cases[i].want < 0) {
                        assert_int_equal(c.n, 0);
                        assert_non_null(strstr(r.error, cases[i].reason_has));
                        /* sticky: valid data afterwards is refused too */
                        assert_int_equal(grpc_reader_feed(&r, "\0\0\0\0\0", 5, collect, &c), cases[i].want);
                        assert_int_equal(c.n, 0);
                } else
                        assert_int_equal(c.n, 1);
                grpc_reader_done(&r);
        }
}

static void test_reader_callback_abort(void **state) {
        static const size_t lens[] = { 2, 3, 4 };
        uint8_t *s;
        size_t total = build_stream(lens, 3, &s);
        GrpcReader r;
        Collected c = { .stop_after = 2 };
        grpc_reader_init(&r, 100);
        assert_int_equal(grpc_reader_feed(&r, s, total, collect, &c), -ECANCELED);
        assert_int_equal(c.n, 2);
        assert_int_equal(grpc_reader_feed(&r, s, total, collect, &c), -ECANCELED);
        assert_int_equal(c.n, 2);
        grpc_reader_done(&r);
        free(s);
}

/* ------------------------------------------------------------ headers */

/* The table below is written as header lines ("HTTP/2 200", "name: value"); the client
 * gets decoded pairs from nghttp2, so each line is split into the pair it stands for. */
static int parse_line(GrpcHeaders *h, const char *line, size_t len) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                len--;
        if (len == 0)
                return 0;
        if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
                const char *sp = memchr(line, ' ', len);
                if (!sp)
                        return -EBADMSG;
                const char *code = sp + 1;
                size_t clen = 0;
                while (code + clen < line + len && code[clen] != ' ')
                        clen++;
                return grpc_headers_parse_pair(h, ":status", 7, code, clen);
        }
        const char *colon = memchr(line + 1, ':', len - 1); /* ":status" starts with one */
        if (!colon)
                return 0;
        size_t nlen = (size_t) (colon - line);
        return grpc_headers_parse_pair(h, line, nlen, colon + 1, len - nlen - 1);
}

static void test_headers(void **state) {
        static const struct {
                const char *lines[6];
                int http_status;
                int grpc_status;
                bool ct_grpc;
                const char *message;
                int error; /* of the last line */
        } cases[] = {
                { { "HTTP/2 200 \r\n", "content-type: application/grpc\r\n", "\r\n", "grpc-status: 0\r\n" }, 200, 0, true, "", 0 },
                /* trailers-only, mixed case, grpc-message percent-encoded */
                { { "HTTP/2 200\r\n", "Content-Type: application/grpc+proto\r\n", "Grpc-Status: 5\r\n",
                    "grpc-message: image \"x\": not found%3A %C3%BC 100%25\r\n" },
                  200, 5, true, "image \"x\": not found: \xc3\xbc 100%", 0 },
                { { ":status: 415\r\n", "content-type: text/plain\r\n" }, 415, -1, false, "", 0 },
                { { "HTTP/2 200\r\n", "content-type: application/grpcx\r\n" }, 200, -1, false, "", 0 },
                { { "grpc-status:   9  \r\n", "grpc-message: namespace is required: failed precondition\r\n" }, 0, 9, false,
                  "namespace is required: failed precondition", 0 },
                { { "grpc-status: x\r\n" }, 0, -1, false, "", -EBADMSG },
                { { "grpc-status: \r\n" }, 0, -1, false, "", -EBADMSG },
                { { "grpc-status: 99999999999\r\n" }, 0, -1, false, "", -EBADMSG },
                { { "HTTP/2 2x0\r\n" }, 0, -1, false, "", -EBADMSG },
                { { "grpc-message: a%0Ab%0d\r\n" }, 0, -1, false, "a b ", 0 }, /* no line breaks survive */
                { { "x-unknown: grpc-status: 3\r\n", "garbage-without-colon\r\n" }, 0, -1, false, "", 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                GrpcHeaders h;
                int r = 0;
                grpc_headers_init(&h);
                for (size_t k = 0; k < 6 && cases[i].lines[k]; k++)
                        r = parse_line(&h, cases[i].lines[k], strlen(cases[i].lines[k]));
                if (r != cases[i].error)
                        fail_msg("case %zu: error %d want %d", i, r, cases[i].error);
                assert_int_equal(h.http_status, cases[i].http_status);
                assert_int_equal(h.grpc_status, cases[i].grpc_status);
                assert_int_equal(h.content_type_grpc, cases[i].ct_grpc);
                assert_string_equal(h.grpc_message, cases[i].message);
        }
}

/* The same metadata as HTTP/2 delivers it: decoded name/value pairs. */
static void test_headers_pairs(void **state) {
        static const struct {
                const char *pairs[4][2];
                int http_status, grpc_status;
                bool ct_grpc;
                const char *message;
                int error; /* of the last pair */
        } cases[] = {
                { { { ":status", "200" }, { "content-type", "application/grpc" }, { "grpc-status", "0" } }, 200, 0, true, "", 0 },
                { { { ":status", "200" }, { "grpc-status", "12" }, { "grpc-message", "unknown service x%2Fy" } },
                  200, 12, false, "unknown service x/y", 0 },
                { { { ":status", "415" }, { "content-type", "text/plain" } }, 415, -1, false, "", 0 },
                { { { ":status", "2000" } }, 0, -1, false, "", -EBADMSG },
                { { { "grpc-status", "-1" } }, 0, -1, false, "", -EBADMSG },
                { { { "grpc-status", " 4 " }, { "x-other", "grpc-status: 3" } }, 0, 4, false, "", 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                GrpcHeaders h;
                int r = 0;
                grpc_headers_init(&h);
                for (size_t k = 0; k < 4 && cases[i].pairs[k][0]; k++)
                        r = grpc_headers_parse_pair(&h, cases[i].pairs[k][0], strlen(cases[i].pairs[k][0]),
                                                    cases[i].pairs[k][1], strlen(cases[i].pairs[k][1]));
                if (r != cases[i].error)
                        fail_msg("case %zu: error %d want %d", i, r, cases[i].error);
                assert_int_equal(h.http_status, cases[i].http_status);
                assert_int_equal(h.grpc_status, cases[i].grpc_status);
                assert_int_equal(h.content_type_grpc, cases[i].ct_grpc);
                assert_string_equal(h.grpc_message, cases[i].message);
        }
        /* not NUL-terminated: only nlen/vlen bytes count */
        GrpcHeaders h;
        grpc_headers_init(&h);
        assert_int_equal(grpc_headers_parse_pair(&h, "grpc-statusXX", 11, "79", 1), 0);
        assert_int_equal(h.grpc_status, 7);
}

/* RST_STREAM without grpc-status: grpc/doc/PROTOCOL-HTTP2.md's table. */
static void test_status_from_h2_error(void **state) {
        static const struct {
                uint32_t h2;
                int want;
        } cases[] = {
                { 0x0 /* NO_ERROR */, GRPC_STATUS_INTERNAL },
                { 0x1 /* PROTOCOL_ERROR */, GRPC_STATUS_INTERNAL },
                { 0x2 /* INTERNAL_ERROR */, GRPC_STATUS_INTERNAL },
                { 0x3 /* FLOW_CONTROL_ERROR */, GRPC_STATUS_INTERNAL },
                { 0x7 /* REFUSED_STREAM */, GRPC_STATUS_UNAVAILABLE },
                { 0x8 /* CANCEL */, GRPC_STATUS_CANCELLED },
                { 0xb /* ENHANCE_YOUR_CALM */, GRPC_STATUS_RESOURCE_EXHAUSTED },
                { 0xc /* INADEQUATE_SECURITY */, GRPC_STATUS_PERMISSION_DENIED },
                { 0xd /* HTTP_1_1_REQUIRED */, GRPC_STATUS_INTERNAL },
                { 0xdeadbeef, GRPC_STATUS_INTERNAL },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (grpc_status_from_h2_error(cases[i].h2) != cases[i].want)
                        fail_msg("h2 error 0x%x: %d want %d", cases[i].h2, grpc_status_from_h2_error(cases[i].h2),
                                 cases[i].want);
}

static void test_percent_decode(void **state) {
        static const struct {
                const char *in;
                size_t outsize;
                const char *want;
                int ret;
        } cases[] = {
                { "plain", 64, "plain", 5 },
                { "%41%42", 64, "AB", 2 },
                { "%e2%82%AC", 64, "\xe2\x82\xac", 3 },
                { "100%", 64, "100%", 4 },     /* dangling % kept */
                { "%4", 64, "%4", 2 },
                { "%zz%4g", 64, "%zz%4g", 6 },
                { "%!c(MISSING)", 64, "%!c(MISSING)", 12 },
                { "%00x", 64, " x", 2 },
                { "abcdef", 4, "abc", -ENOBUFS },
                { "", 1, "", 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char out[64];
                int r = grpc_percent_decode(cases[i].in, strlen(cases[i].in), out, cases[i].outsize);
                if (r != cases[i].ret)
                        fail_msg("case %zu (%s): %d want %d", i, cases[i].in, r, cases[i].ret);
                assert_string_equal(out, cases[i].want);
        }
}

static void test_timeout_format(void **state) {
        static const struct {
                uint64_t usec;
                const char *want;
        } cases[] = {
                { 1, "1u" },
                { 99999999, "99999999u" },
                { 100000000, "100000m" },
                { 100000001, "100001m" }, /* rounded up */
                { 30000000, "30000000u" },
                { 99999999000ULL, "99999999m" },
                { 100000000000ULL, "100000S" },
                { 99999999ULL * 1000000ULL + 1, "1666667M" },
                { 99999999ULL * 60000000ULL + 1, "1666667H" },
                { UINT64_MAX, "99999999H" }, /* clamped */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char buf[16];
                assert_int_equal(grpc_timeout_format(cases[i].usec, buf, sizeof(buf)), 0);
                if (strcmp(buf, cases[i].want) != 0)
                        fail_msg("case %zu: %s want %s", i, buf, cases[i].want);
                assert_true(strlen(buf) <= 9);
        }
        char small[4];
        assert_int_equal(grpc_timeout_format(0, small, sizeof(small)), -EINVAL);
        assert_int_equal(grpc_timeout_format(123456, small, sizeof(small)), -ENOBUFS);
}

static void test_status_names(void **state) {
        assert_string_equal(grpc_status_to_string(0), "OK");
        assert_string_equal(grpc_status_to_string(5), "NOT_FOUND");
        assert_string_equal(grpc_status_to_string(16), "UNAUTHENTICATED");
        assert_null(grpc_status_to_string(17));
        assert_null(grpc_status_to_string(-1));
        for (int i = 0; i < _GRPC_STATUS_MAX; i++)
                assert_non_null(grpc_status_to_string(i));
        assert_int_equal(grpc_status_to_errno(GRPC_STATUS_OK), 0);
        assert_int_equal(grpc_status_to_errno(GRPC_STATUS_NOT_FOUND), -ENOENT);
        assert_int_equal(grpc_status_to_errno(GRPC_STATUS_DEADLINE_EXCEEDED), -ETIMEDOUT);
        assert_int_equal(grpc_status_to_errno(GRPC_STATUS_UNIMPLEMENTED), -EOPNOTSUPP);
        assert_int_equal(grpc_status_to_errno(99), -EIO);
        for (int i = 1; i < _GRPC_STATUS_MAX; i++)
                assert_true(grpc_status_to_errno(i) < 0);
}

/* ------------------------------------------------------------ client error paths */

typedef struct Outcome {
        int calls;
        int error;
        GrpcStatus status;
        sd_event *e;
} Outcome;

static void on_done(GrpcCall *call, int error, const GrpcStatus *st, void *ud) {
        Outcome *o = ud;
        o->calls++;
        o->error = error;
        o->status = *st;
        sd_event_exit(o->e, 0);
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *ud) {
        return sd_event_exit(sd_event_source_get_event(s), -ETIMEDOUT);
}

static void run_call(const char *path, Outcome *o) {
        sd_event *e = NULL;
        GrpcClient *c = NULL;
        sd_event_source *t = NULL;
        uint64_t now;

        assert_int_equal(sd_event_new(&e), 0);
        o->e = e;
        assert_int_equal(grpc_client_new(&c, e, path, 0), 0);
        assert_string_equal(grpc_client_socket_path(c), path);
        assert_int_equal(grpc_client_max_message(c), GRPC_DEFAULT_MAX_MESSAGE);
        assert_int_equal(grpc_call_start(c, "/containerd.services.version.v1.Version/Version", NULL, NULL, 0,
                                         5 * 1000000ULL, NULL, on_done, o, NULL),
                         0);
        assert_true(sd_event_now(e, CLOCK_MONOTONIC, &now) >= 0);
        assert_int_equal(sd_event_add_time(e, &t, CLOCK_MONOTONIC, now + 10000000ULL, 0, on_deadline, NULL), 0);
        assert_int_equal(sd_event_loop(e), 0);
        sd_event_source_unref(t);
        grpc_client_free(c);
        sd_event_unref(e);
}

static void test_client_missing_socket(void **state) {
        Outcome o = {};
        run_call("/nonexistent/pullwatch-test/containerd.sock", &o);
        assert_int_equal(o.calls, 1);
        assert_int_equal(o.error, -ENOENT);
        assert_int_equal(o.status.code, -1);
        assert_string_equal(o.status.message,
                            "connect to /nonexistent/pullwatch-test/containerd.sock: No such file or directory");
}

static void test_client_not_listening(void **state) {
        char dir[] = "/tmp/pw-grpc-XXXXXX", path[128];
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/sock", dir);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strcpy_bounded(sa.sun_path, sizeof(sa.sun_path), path);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0); /* bound, never listening */

        Outcome o = {};
        run_call(path, &o);
        assert_int_equal(o.calls, 1);
        assert_int_equal(o.error, -ECONNREFUSED);
        assert_non_null(strstr(o.status.message, "Connection refused"));
        close(fd);
        unlink(path);
        rmdir(dir);
}

/* ---- a fake server that answers a call with canned bytes */

/* Read the client's preface and frames until its first HEADERS (the call's stream 1 is
 * open then), at most 5 s. */
static void read_until_headers(int fd) {
        uint8_t buf[8192];
        size_t n = 0, off = 24; /* after the connection preface */
        for (;;) {
                while (off + 9 <= n) {
                        size_t len = (size_t) buf[off] << 16 | (size_t) buf[off + 1] << 8 | buf[off + 2];
                        if (buf[off + 3] == 0x01)
                                return;
                        off += 9 + len;
                }
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (n == sizeof(buf) || poll(&p, 1, 5000) <= 0)
                        return;
                ssize_t k = read(fd, buf + n, sizeof(buf) - n);
                if (k <= 0)
                        return;
                n += (size_t) k;
        }
}

#define FRAME(len, type, flags, stream) \
        (len) >> 16 & 0xff, (len) >> 8 & 0xff, (len) & 0xff, (type), (flags), 0, 0, 0, (stream)
static const uint8_t server_settings[] = { FRAME(0, 0x04, 0, 0), FRAME(0, 0x04, 0x01, 0) }; /* SETTINGS, ACK */
/* HEADERS on stream 1: ":status: 200" and a header name in upper case, which HTTP/2 forbids */
static const uint8_t bad_header[] = { FRAME(8, 0x01, 0x04, 1), 0x88, 0x00, 0x03, 'B', 'a', 'd', 0x01, 'x' };
/* RST_STREAM on stream 1, REFUSED_STREAM */
static const uint8_t peer_reset[] = { FRAME(4, 0x03, 0, 1), 0, 0, 0, 0x07 };
static const uint8_t garbage[] = "\x00\xffTHIS IS NOT HTTP/2\r\n\x00\xffTHIS IS NOT HTTP/2\r\n";

/* Serve one connection on path: after the client's HEADERS, the server's SETTINGS (if
 * settings) then reply; then hold the connection open until the client leaves. */
static pid_t fake_server(const char *path, bool settings, const uint8_t *reply, size_t len) {
        int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strcpy_bounded(sa.sun_path, sizeof(sa.sun_path), path);
        assert_int_equal(bind(l, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(l, 4), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid > 0) {
                close(l);
                return pid;
        }
        alarm(20);
        int fd = accept(l, NULL, NULL);
        if (fd < 0)
                _exit(1);
        if (settings) {
                read_until_headers(fd);
                if (write(fd, server_settings, sizeof(server_settings)) < 0)
                        _exit(1);
        }
        if (write(fd, reply, len) < 0)
                _exit(1);
        uint8_t sink[4096];
        while (read(fd, sink, sizeof(sink)) > 0)
                ;
        _exit(0);
}

/* The reason a call fails names who did what: bytes that are not HTTP/2 are not "closed
 * (GOAWAY)" by containerd, and a stream we reset because containerd's reply broke the
 * protocol is not "reset by containerd". */
static void test_client_failure_reasons(void **state) {
        static const struct {
                bool settings;
                const uint8_t *reply;
                size_t len;
                const char *says, *never;
        } cases[] = {
                { false, garbage, sizeof(garbage) - 1, "not HTTP/2", "GOAWAY" },
                { true, bad_header, sizeof(bad_header), "reset by pullwatch: containerd's reply broke HTTP/2",
                  "reset by containerd" },
                { true, peer_reset, sizeof(peer_reset), "stream reset by containerd: HTTP/2 REFUSED_STREAM",
                  "pullwatch" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char dir[] = "/tmp/pw-grpc-XXXXXX", path[128];
                assert_non_null(mkdtemp(dir));
                snprintf(path, sizeof(path), "%s/sock", dir);
                pid_t pid = fake_server(path, cases[i].settings, cases[i].reply, cases[i].len);
                Outcome o = {};
                run_call(path, &o);
                int st;
                kill(pid, SIGKILL);
                waitpid(pid, &st, 0);
                unlink(path);
                rmdir(dir);
                assert_int_equal(o.calls, 1);
                if (!strstr(o.status.message, cases[i].says) || strstr(o.status.message, cases[i].never))
                        fail_msg("case %zu: \"%s\"", i, o.status.message);
        }
}

/* ---- replies read and handled stay in the socket until the client's next write
 *
 * Taking bytes out of a unix socket wakes a peer that watches its end for writability
 * (containerd's Go netpoller does, edge-triggered), for nothing; the client peeks and
 * takes them out after its next send(), when the peer is woken by the request anyway.
 * The server side sees it as the bytes it sent still queued (SIOCOUTQ). */

typedef struct FrameReader {
        uint8_t buf[16384];
        size_t n, off;
} FrameReader;

/* Read the client's frames until one of type with all of flags set on stream: true, or
 * false on EOF or after 5 s without bytes. */
static bool read_until_frame(int fd, FrameReader *fr, uint8_t type, uint8_t flags, uint32_t stream) {
        for (;;) {
                while (fr->off + 9 <= fr->n) {
                        const uint8_t *h = fr->buf + fr->off;
                        size_t len = (size_t) h[0] << 16 | (size_t) h[1] << 8 | h[2];
                        uint32_t id = ((uint32_t) h[5] << 24 | (uint32_t) h[6] << 16 | (uint32_t) h[7] << 8 | h[8]) &
                                      0x7fffffffU;
                        if (fr->off + 9 + len > fr->n)
                                break;
                        fr->off += 9 + len;
                        if (h[3] == type && (h[4] & flags) == flags && id == stream)
                                return true;
                }
                if (fr->off > 0 && fr->off <= fr->n) { /* not before the preface is all in */
                        memmove(fr->buf, fr->buf + fr->off, fr->n - fr->off);
                        fr->n -= fr->off;
                        fr->off = 0;
                }
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (fr->n == sizeof(fr->buf) || poll(&p, 1, 5000) <= 0)
                        return false;
                ssize_t k = read(fd, fr->buf + fr->n, sizeof(fr->buf) - fr->n);
                if (k <= 0)
                        return false;
                fr->n += (size_t) k;
        }
}

/* A whole OK reply on stream id: HEADERS (:status 200), an empty message, trailers
 * (grpc-status: 0). */
static size_t ok_reply(uint8_t id, uint8_t out[static 64]) {
        const uint8_t r[] = { FRAME(1, 0x01, 0x04, id), 0x88, FRAME(5, 0x00, 0, id), 0, 0, 0, 0, 0,
                              FRAME(15, 0x01, 0x05, id), 0x00, 11, 'g', 'r', 'p', 'c', '-', 's', 't', 'a', 't', 'u',
                              's', 1, '0' };
        memcpy(out, r, sizeof(r));
        return sizeof(r);
}

/* The server: answers the client's two calls (streams 1 and 3) and reports through
 * report what its socket still held (SIOCOUTQ) once the first call completed (when the
 * parent writes to go; the parent waits for it before its second call) and once the
 * second request arrived. */
static pid_t queue_server(const char *path, int go, int report) {
        int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strcpy_bounded(sa.sun_path, sizeof(sa.sun_path), path);
        assert_int_equal(bind(l, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(l, 4), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid > 0) {
                close(l);
                return pid;
        }
        alarm(20);
        static FrameReader fr = { .off = 24 }; /* after the connection preface */
        uint8_t reply[64], c;
        int q[2] = { -1, -1 };
        int fd = accept(l, NULL, NULL);
        if (fd < 0 || !read_until_frame(fd, &fr, 0x01, 0, 1) ||
            write(fd, server_settings, sizeof(server_settings)) < 0 ||
            !read_until_frame(fd, &fr, 0x04, 0x01, 0)) /* the client's ACK of our SETTINGS */
                _exit(1);
        size_t n = ok_reply(1, reply);
        if (write(fd, reply, n) != (ssize_t) n || read(go, &c, 1) != 1 || ioctl(fd, SIOCOUTQ, &q[0]) < 0 ||
            write(report, &q[0], sizeof(q[0])) != sizeof(q[0]) || !read_until_frame(fd, &fr, 0x01, 0, 3))
                _exit(1);
        /* the client takes the reply out right after its send(): wait for it, bounded */
        for (int i = 0; i < 500 && ioctl(fd, SIOCOUTQ, &q[1]) == 0 && q[1] > 0; i++)
                usleep(10000);
        n = ok_reply(3, reply);
        if (write(report, &q[1], sizeof(q[1])) != sizeof(q[1]) || write(fd, reply, n) != (ssize_t) n)
                _exit(1);
        uint8_t sink[4096];
        while (read(fd, sink, sizeof(sink)) > 0)
                ;
        _exit(0);
}

static void on_done_counted(GrpcCall *call, int error, const GrpcStatus *st, void *ud) {
        Outcome *o = ud;
        o->calls++;
        o->error = error;
        o->status = *st;
}

/* One call, the loop run until it completed (at most ~10 s). */
static void run_until_done(GrpcClient *c, sd_event *e, Outcome *o) {
        assert_int_equal(grpc_call_start(c, "/containerd.services.version.v1.Version/Version", NULL, NULL, 0,
                                         5 * 1000000ULL, NULL, on_done_counted, o, NULL),
                         0);
        for (int i = 0; i < 100 && o->calls == 0; i++)
                assert_true(sd_event_run(e, 100000) >= 0);
}

static void test_client_reads_left_until_write(void **state) {
        char dir[] = "/tmp/pw-grpc-XXXXXX", path[128];
        int go[2], report[2], q[2] = { -1, -1 };
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/sock", dir);
        assert_int_equal(pipe(go), 0);
        assert_int_equal(pipe(report), 0);
        pid_t pid = queue_server(path, go[0], report[1]);
        sd_event *e = NULL;
        GrpcClient *c = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(grpc_client_new(&c, e, path, 0), 0);

        Outcome o1 = {}, o2 = {};
        run_until_done(c, e, &o1);
        assert_int_equal(o1.calls, 1);
        if (o1.error != 0)
                fail_msg("first call: %d %s", o1.error, o1.status.message);
        assert_int_equal(o1.status.code, 0);
        assert_int_equal(write(go[1], "x", 1), 1);
        assert_int_equal(read(report[0], &q[0], sizeof(q[0])), (ssize_t) sizeof(q[0]));
        run_until_done(c, e, &o2);
        assert_int_equal(o2.calls, 1);
        assert_int_equal(o2.status.code, 0);
        assert_int_equal(read(report[0], &q[1], sizeof(q[1])), (ssize_t) sizeof(q[1]));

        grpc_client_free(c);
        sd_event_unref(e);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        unlink(path);
        rmdir(dir);
        close(go[0]);
        close(go[1]);
        close(report[0]);
        close(report[1]);
        /* the first reply still queued after its call completed (SIOCOUTQ counts the
         * buffers' size, not the bytes); nothing once the client had written again */
        assert_true(q[0] > 0);
        assert_int_equal(q[1], 0);
}

static void test_client_bad_arguments(void **state) {
        sd_event *e = NULL;
        GrpcClient *c = NULL;
        char longpath[200];
        memset(longpath, 'a', sizeof(longpath) - 1);
        longpath[0] = '/';
        longpath[sizeof(longpath) - 1] = 0;

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(grpc_client_new(&c, e, longpath, 0), -ENAMETOOLONG);
        assert_null(c);
        longpath[GRPC_SOCKET_PATH_MAX] = 0; /* exactly 107: accepted */
        assert_int_equal(grpc_client_new(&c, e, longpath, 100), 0);
        assert_int_equal(grpc_call_start(c, "/a.B/C", "bad\nns", NULL, 0, 0, NULL, NULL, NULL, NULL), -EINVAL);
        assert_int_equal(grpc_call_start(c, "no-slash", NULL, NULL, 0, 0, NULL, NULL, NULL, NULL), -EINVAL);
        assert_int_equal(grpc_call_start(c, "/a.B/C\r\nx: y", NULL, NULL, 0, 0, NULL, NULL, NULL, NULL), -EINVAL);
        assert_int_equal(grpc_call_start(c, "/a.B/C", "k8s.io", longpath, 101, 0, NULL, NULL, NULL, NULL), -EMSGSIZE);
        /* a call left running is cancelled by free, without on_done */
        GrpcCall *call = NULL;
        Outcome o = {};
        assert_int_equal(grpc_call_start(c, "/a.B/C", "k8s.io", NULL, 0, 0, NULL, on_done, &o, &call), 0);
        assert_non_null(call);
        grpc_client_free(c);
        assert_int_equal(o.calls, 0);
        sd_event_unref(e);
}

/* A callback may take the message (grpc_reader_take()): it is then its own, intact
 * after the feed returns, and the reader neither frees nor reuses it (ASan: no double
 * free, no leak); outside a callback there is nothing to take. */
typedef struct Taken {
        GrpcReader *r;
        uint8_t *msg[4];
        size_t len[4], n;
} Taken;

static int take_every_other(const uint8_t *msg, size_t len, void *ud) {
        Taken *t = ud;
        if (t->n % 2 == 0) {
                uint8_t *m = grpc_reader_take(t->r);
                assert_ptr_equal(m, msg);
                assert_null(grpc_reader_take(t->r)); /* once */
                t->msg[t->n / 2] = m;
                t->len[t->n / 2] = len;
        }
        t->n++;
        return 0;
}

static void test_reader_take(void **state) {
        static const size_t lens[] = {7, 300, 1, 4096};
        _cleanup_free_ uint8_t *s = NULL;
        size_t total = build_stream(lens, ELEMENTSOF(lens), &s);
        GrpcReader r;
        grpc_reader_init(&r, 0);
        Taken t = {.r = &r};
        assert_int_equal(grpc_reader_feed(&r, s, 100, take_every_other, &t), 0);
        assert_int_equal(grpc_reader_feed(&r, s + 100, total - 100, take_every_other, &t), 0);
        assert_null(grpc_reader_take(&r));
        assert_int_equal(t.n, 4);
        /* messages 0 and 2, as sent */
        for (size_t k = 0; k < 2; k++) {
                size_t i = 2 * k;
                assert_int_equal(t.len[k], lens[i]);
                for (size_t j = 0; j < lens[i]; j++)
                        assert_int_equal(t.msg[k][j], (uint8_t) (i * 31 + j));
                free(t.msg[k]);
        }
        grpc_reader_done(&r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_frame_header),
                cmocka_unit_test(test_reader_every_split),
                cmocka_unit_test(test_reader_take),
                cmocka_unit_test(test_reader_partial_not_idle),
                cmocka_unit_test(test_reader_errors),
                cmocka_unit_test(test_reader_callback_abort),
                cmocka_unit_test(test_headers),
                cmocka_unit_test(test_headers_pairs),
                cmocka_unit_test(test_status_from_h2_error),
                cmocka_unit_test(test_percent_decode),
                cmocka_unit_test(test_timeout_format),
                cmocka_unit_test(test_status_names),
                cmocka_unit_test(test_client_missing_socket),
                cmocka_unit_test(test_client_not_listening),
                cmocka_unit_test(test_client_bad_arguments),
                cmocka_unit_test(test_client_failure_reasons),
                cmocka_unit_test(test_client_reads_left_until_write),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
