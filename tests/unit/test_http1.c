/* The HTTP/1.1 response parser (agent/http1.c), table-driven. Every case is fed whole,
 * one byte at a time, and split in two at every position: the outcome must not depend
 * on how the bytes arrive. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pullwatch/http1.h"
#include "pullwatch/util.h"

typedef struct Case {
        const char *name;
        const char *in;
        int r;              /* 1 complete, or the error (from feed, or from eof when eof is set) */
        bool eof;           /* the peer closes after the input */
        int status;
        bool keep_alive;
        const char *retry_after; /* NULL: none */
        const char *body;   /* the excerpt expected (short bodies) */
        uint64_t body_len;
        size_t trailing;    /* bytes after the response, not consumed */
} Case;

#define OK200 "HTTP/1.1 200 OK\r\n"

static const Case cases[] = {
        { "204 no body", "HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n", 1, false, 204, true, NULL, "", 0, 0 },
        { "304 ignores length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 1, false, 304, true, NULL, "", 0, 0 },
        { "content-length", OK200 "Content-Length: 5\r\n\r\nhello", 1, false, 200, true, NULL, "hello", 5, 0 },
        { "zero length", OK200 "Content-Length: 0\r\n\r\n", 1, false, 200, true, NULL, "", 0, 0 },
        { "length list agreeing", OK200 "Content-Length: 3, 3\r\n\r\nabc", 1, false, 200, true, NULL, "abc", 3, 0 },
        { "two equal lengths", OK200 "Content-Length: 3\r\ncontent-length: 3\r\n\r\nabc", 1, false, 200, true, NULL, "abc", 3, 0 },
        { "lengths disagree", OK200 "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "length list disagree", OK200 "Content-Length: 3, 4\r\n\r\nabcd", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "negative length", OK200 "Content-Length: -1\r\n\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "length overflow", OK200 "Content-Length: 99999999999999999999999\r\n\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "chunked", OK200 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;a=b\r\n!\r\n0\r\n\r\n", 1, false, 200, true, NULL, "hello!", 6, 0 },
        { "chunked uppercase hex + trailer", OK200 "Transfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n", 1, false, 200, true, NULL, "0123456789", 10, 0 },
        { "chunk without crlf", OK200 "Transfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n0\r\n\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "chunk size junk", OK200 "Transfer-Encoding: chunked\r\n\r\nzz\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "chunk size overflow", OK200 "Transfer-Encoding: chunked\r\n\r\n11111111111111111\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "gzip transfer coding", OK200 "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "length and chunked", OK200 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "chunked cut short", OK200 "Transfer-Encoding: chunked\r\n\r\n5\r\nhel", -EPIPE, true, 0, false, NULL, NULL, 0, 0 },
        { "body until close", OK200 "\r\nall of it", 1, true, 200, false, NULL, "all of it", 9, 0 },
        { "length cut short", OK200 "Content-Length: 10\r\n\r\nabc", -EPIPE, true, 0, false, NULL, NULL, 0, 0 },
        { "nothing at all", "", -EPIPE, true, 0, false, NULL, NULL, 0, 0 },
        { "connection close", OK200 "Connection: close\r\nContent-Length: 2\r\n\r\nok", 1, false, 200, false, NULL, "ok", 2, 0 },
        { "connection list close", OK200 "Connection: foo, Close\r\nContent-Length: 0\r\n\r\n", 1, false, 200, false, NULL, "", 0, 0 },
        { "http/1.0 closes", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 1, false, 200, false, NULL, "ok", 2, 0 },
        { "http/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", 1, false, 200, true, NULL, "ok", 2, 0 },
        { "retry-after seconds", "HTTP/1.1 429 Too Many Requests\r\nRetry-After:  7 \r\nContent-Length: 0\r\n\r\n", 1, false, 429, true, "7", "", 0, 0 },
        { "retry-after date", "HTTP/1.1 503 Busy\r\nretry-after: Wed, 21 Oct 2015 07:28:00 GMT\r\nContent-Length: 4\r\n\r\nbusy", 1, false, 503, true, "Wed, 21 Oct 2015 07:28:00 GMT", "busy", 4, 0 },
        { "first retry-after wins", "HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n", 1, false, 503, true, "1", "", 0, 0 },
        { "100 continue skipped", "HTTP/1.1 100 Continue\r\nX: y\r\n\r\n" OK200 "Content-Length: 2\r\n\r\nok", 1, false, 200, true, NULL, "ok", 2, 0 },
        { "101 refused", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "no reason phrase", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 1, false, 200, true, NULL, "", 0, 0 },
        { "bare LF lines", "HTTP/1.1 400 Bad Request\nContent-Length: 3\n\nbad", 1, false, 400, true, NULL, "bad", 3, 0 },
        { "trailing bytes", OK200 "Content-Length: 1\r\n\r\nxEXTRA", 1, false, 200, true, NULL, "x", 1, 5 },
        { "HTTP/2 status line", "HTTP/2 200\r\n\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "not http", "SSH-2.0-OpenSSH_9.2\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "status too short", "HTTP/1.1 20 OK\r\n\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "status 099", "HTTP/1.1 099 X\r\n\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "obs-fold", OK200 "X-A: 1\r\n  more\r\nContent-Length: 0\r\n\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "space before colon", OK200 "Content-Length : 0\r\n\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "field without colon", OK200 "garbage\r\n\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "CR inside a field", OK200 "X-A: 1\r2\r\nContent-Length: 0\r\n\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
        { "NUL inside a field", OK200 "X-A: 1\0" "2\r\nContent-Length: 0\r\n\r\n", -EBADMSG, false, 0, false, NULL, NULL, 0, 0 },
};

static void check(const Case *c, const Http1Parser *p, int r, size_t used, size_t in_len, const char *how) {
        if (r != c->r)
                fail_msg("%s (%s): returned %d, expected %d", c->name, how, r, c->r);
        if (r != 1)
                return;
        if (p->status != c->status || p->keep_alive != c->keep_alive)
                fail_msg("%s (%s): status %d keep_alive %d", c->name, how, p->status, p->keep_alive);
        if (!c->eof && used != in_len - c->trailing)
                fail_msg("%s (%s): used %zu of %zu", c->name, how, used, in_len);
        if (p->has_retry_after != (c->retry_after != NULL) || (c->retry_after && strcmp(p->retry_after, c->retry_after)))
                fail_msg("%s (%s): retry_after '%s'", c->name, how, p->has_retry_after ? p->retry_after : "(none)");
        if (p->body_len != c->body_len || p->excerpt_len != strlen(c->body) ||
            memcmp(p->excerpt, c->body, p->excerpt_len) != 0)
                fail_msg("%s (%s): body %zu bytes '%.*s'", c->name, how, (size_t) p->body_len, (int) p->excerpt_len,
                         p->excerpt);
        assert_false(p->truncated);
}

/* Feed in[0..len) in pieces: a cut at every offset in cuts (sorted), then eof if the
 * case says the peer closes. */
static int feed_pieces(Http1Parser *p, const char *in, size_t len, const size_t *cuts, size_t n_cuts, bool eof,
                       size_t *ret_used) {
        size_t off = 0;
        int r = 0;
        http1_init(p, 1 << 20);
        for (size_t k = 0; k <= n_cuts && r == 0; k++) {
                size_t end = k < n_cuts ? cuts[k] : len;
                size_t used = 0;
                r = http1_feed(p, in + off, end - off, &used);
                if (r != 0) {
                        *ret_used = off + used;
                        return r;
                }
                off = end;
        }
        *ret_used = off;
        if (r == 0 && eof)
                r = http1_eof(p);
        return r;
}

static size_t case_len(const Case *c) {
        /* the NUL case has an embedded NUL: its length is known from the literal */
        if (strcmp(c->name, "NUL inside a field") == 0)
                return sizeof(OK200 "X-A: 1\0" "2\r\nContent-Length: 0\r\n\r\n") - 1;
        return strlen(c->in);
}

static void test_table(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const Case *c = &cases[i];
                size_t len = case_len(c), used;
                Http1Parser p;
                char how[64];

                int r = feed_pieces(&p, c->in, len, NULL, 0, c->eof, &used);
                check(c, &p, r, used, len, "whole");

                /* one byte at a time */
                size_t cuts[512];
                assert_true(len < ELEMENTSOF(cuts));
                for (size_t k = 1; k < len; k++)
                        cuts[k - 1] = k;
                r = feed_pieces(&p, c->in, len, cuts, len ? len - 1 : 0, c->eof, &used);
                check(c, &p, r, used, len, "bytewise");

                for (size_t k = 1; k < len; k++) {
                        snprintf(how, sizeof how, "split at %zu", k);
                        r = feed_pieces(&p, c->in, len, &k, 1, c->eof, &used);
                        check(c, &p, r, used, len, how);
                }
        }
}

/* After a result, feeding again repeats it. */
static void test_sticky(void **state) {
        Http1Parser p;
        size_t used;
        http1_init(&p, 1024);
        assert_int_equal(http1_feed(&p, "HTTP/1.1 204 No\r\n\r\n", 19, &used), 1);
        assert_int_equal(http1_feed(&p, "junk", 4, &used), 1);
        http1_init(&p, 1024);
        assert_int_equal(http1_feed(&p, "FTP\r\n", 5, &used), -EBADMSG);
        assert_int_equal(http1_feed(&p, "HTTP/1.1 200 OK\r\n", 17, &used), -EBADMSG);
        assert_int_equal(http1_eof(&p), -EBADMSG);
        assert_false(http1_started(&(Http1Parser){ .state = HTTP1_STATUS }));
        http1_init(&p, 1024);
        assert_false(http1_started(&p));
        assert_int_equal(http1_feed(&p, "H", 1, &used), 0);
        assert_true(http1_started(&p));
}

/* Bounds: a body beyond max_body stops with truncated (status known, connection not
 * reusable); a header block beyond HTTP1_HEADER_MAX and an endless chunk-size line are
 * -E2BIG; a long uninteresting field is fine, a long Content-Length is not. */
static void test_bounds(void **state) {
        Http1Parser p;
        size_t used;
        char big[HTTP1_HEADER_MAX + 512];

        http1_init(&p, 10);
        const char *r1 = "HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\n0123456789abcdef";
        assert_int_equal(http1_feed(&p, r1, strlen(r1), &used), 1);
        assert_true(p.truncated);
        assert_false(p.keep_alive);
        assert_int_equal(p.status, 500);
        assert_int_equal(p.excerpt_len, 16);

        /* a 3 KiB field we do not care about: kept partially, ignored */
        int n = snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\nX-Long: %03000d\r\nContent-Length: 0\r\n\r\n", 0);
        http1_init(&p, 10);
        assert_int_equal(http1_feed(&p, big, (size_t) n, &used), 1);
        n = snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\nRetry-After: %03000d\r\n\r\n", 0);
        http1_init(&p, 10);
        assert_int_equal(http1_feed(&p, big, (size_t) n, &used), -E2BIG);

        /* the head: HTTP1_HEADER_MAX in total, across many fields and many feeds */
        http1_init(&p, 10);
        int r = http1_feed(&p, "HTTP/1.1 200 OK\r\n", 17, &used);
        for (int i = 0; r == 0 && i < 1000; i++)
                r = http1_feed(&p, "X-Filler: aaaaaaaaaaaaaaaaaaaaaaa\r\n", 35, &used);
        assert_int_equal(r, -E2BIG);

        memset(big, '0', sizeof big);
        http1_init(&p, 10);
        r = http1_feed(&p, OK200 "Transfer-Encoding: chunked\r\n\r\n", strlen(OK200 "Transfer-Encoding: chunked\r\n\r\n"),
                       &used);
        assert_int_equal(r, 0);
        assert_int_equal(http1_feed(&p, big, 2000, &used), -E2BIG);
        /* the same line a byte at a time */
        http1_init(&p, 10);
        r = http1_feed(&p, OK200 "Transfer-Encoding: chunked\r\n\r\n", strlen(OK200 "Transfer-Encoding: chunked\r\n\r\n"),
                       &used);
        for (int i = 0; r == 0 && i < 2000; i++)
                r = http1_feed(&p, "0", 1, &used);
        assert_int_equal(r, -E2BIG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_table),
                cmocka_unit_test(test_sticky),
                cmocka_unit_test(test_bounds),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
