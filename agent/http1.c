/* See include/pullwatch/http1.h. One state machine over the bytes as they come: lines
 * (status, fields, chunk sizes, trailers) are collected in a bounded buffer, body bytes
 * are counted and the first few kept, never stored. */
#include "pullwatch/http1.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

static bool is_tchar(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_ows(char c) {
        return c == ' ' || c == '\t';
}

void http1_init(Http1Parser *p, uint64_t max_body) {
        *p = (Http1Parser){ .state = HTTP1_STATUS, .max_body = max_body };
}

bool http1_started(const Http1Parser *p) {
        return p->head_len > 0 || p->status > 0;
}

/* Reset what one head (a 1xx or the final one) declared. */
static void head_reset(Http1Parser *p) {
        p->status = 0;
        p->minor = 0;
        p->has_length = p->chunked = p->saw_close = false;
        p->keep_alive = false;
        p->has_retry_after = false;
        p->retry_after[0] = 0;
        p->remaining = 0;
        p->head_len = 0;
}

static bool name_is(const char *name, size_t n, const char *want) {
        return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* Calls f for each comma-separated element of v (OWS trimmed, empty ones skipped). */
static int each_element(const char *v, size_t n, int (*f)(Http1Parser *p, const char *e, size_t len),
                        Http1Parser *p) {
        size_t i = 0;
        while (i < n) {
                size_t j = i;
                while (j < n && v[j] != ',')
                        j++;
                size_t a = i, b = j;
                while (a < b && is_ows(v[a]))
                        a++;
                while (b > a && is_ows(v[b - 1]))
                        b--;
                if (b > a) {
                        int r = f(p, v + a, b - a);
                        if (r < 0)
                                return r;
                }
                i = j + 1;
        }
        return 0;
}

static int content_length_element(Http1Parser *p, const char *e, size_t n) {
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++) {
                if (e[i] < '0' || e[i] > '9')
                        return -EBADMSG;
                if (v > (UINT64_MAX - 9) / 10)
                        return -EBADMSG;
                v = v * 10 + (uint64_t) (e[i] - '0');
        }
        if (p->has_length && p->remaining != v)
                return -EBADMSG; /* "5, 6" or two fields that disagree */
        p->has_length = true;
        p->remaining = v;
        return 0;
}

static int transfer_coding_element(Http1Parser *p, const char *e, size_t n) {
        /* chunked must be the only (and so the final) coding: we ask for no other */
        if (!name_is(e, n, "chunked") || p->chunked)
                return -EBADMSG;
        p->chunked = true;
        return 0;
}

static int connection_element(Http1Parser *p, const char *e, size_t n) {
        if (name_is(e, n, "close"))
                p->saw_close = true;
        else if (name_is(e, n, "keep-alive"))
                p->keep_alive = true; /* HTTP/1.0's opt-in; decided at the end of the head */
        return 0;
}

static int parse_status_line(Http1Parser *p, const char *l, size_t n) {
        /* HTTP/1.x SP 3DIGIT [SP reason] */
        if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[7] < '0' || l[7] > '9' || l[8] != ' ')
                return -EBADMSG;
        for (int i = 9; i < 12; i++)
                if (l[i] < '0' || l[i] > '9')
                        return -EBADMSG;
        if (n > 12 && l[12] != ' ')
                return -EBADMSG;
        p->minor = l[7] - '0';
        p->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
        if (p->status < 100)
                return -EBADMSG;
        return 0;
}

static int parse_field(Http1Parser *p, const char *l, size_t n, bool overflow, bool trailer) {
        if (is_ows(l[0]))
                return -EBADMSG; /* obs-fold */
        const char *colon = memchr(l, ':', n);
        if (!colon || colon == l)
                return -EBADMSG;
        size_t nlen = (size_t) (colon - l);
        for (size_t i = 0; i < nlen; i++)
                if (!is_tchar(l[i]))
                        return -EBADMSG; /* includes whitespace before the colon */
        const char *v = colon + 1, *end = l + n;
        while (v < end && is_ows(*v))
                v++;
        while (end > v && is_ows(end[-1]))
                end--;
        size_t vlen = (size_t) (end - v);
        for (size_t i = 0; i < vlen; i++)
                if ((unsigned char) v[i] < 0x20 && v[i] != '\t')
                        return -EBADMSG;
        if (trailer)
                return 0; /* nothing in a trailer changes how we read the message */

        bool interesting = name_is(l, nlen, "content-length") || name_is(l, nlen, "transfer-encoding") ||
                           name_is(l, nlen, "connection") || name_is(l, nlen, "retry-after");
        if (!interesting)
                return 0;
        if (overflow)
                return -E2BIG;
        if (name_is(l, nlen, "content-length")) {
                if (vlen == 0)
                        return -EBADMSG;
                return each_element(v, vlen, content_length_element, p);
        }
        if (name_is(l, nlen, "transfer-encoding")) {
                if (vlen == 0)
                        return -EBADMSG;
                return each_element(v, vlen, transfer_coding_element, p);
        }
        if (name_is(l, nlen, "connection"))
                return each_element(v, vlen, connection_element, p);
        /* Retry-After: the first one counts; a value too long to be one is ignored */
        if (!p->has_retry_after && vlen > 0 && vlen <= HTTP1_RETRY_AFTER_MAX) {
                memcpy(p->retry_after, v, vlen);
                p->retry_after[vlen] = 0;
                p->has_retry_after = true;
        }
        return 0;
}

/* The head ended (empty line): decide how the body is delimited. */
static int head_done(Http1Parser *p) {
        if (p->status < 200) {
                if (p->status == 101)
                        return -EBADMSG; /* we never ask to switch protocols */
                head_reset(p);           /* 100 Continue, 103 Early Hints: the real answer follows */
                return 0;
        }
        if (p->chunked && p->has_length)
                return -EBADMSG;
        p->keep_alive = !p->saw_close && (p->minor >= 1 || p->keep_alive);
        if (p->status == 204 || p->status == 304) {
                p->state = HTTP1_DONE;
                return 1;
        }
        if (p->chunked) {
                p->state = HTTP1_CHUNK_SIZE;
                return 0;
        }
        if (p->has_length) {
                p->state = p->remaining == 0 ? HTTP1_DONE : HTTP1_BODY_LENGTH;
                return p->state == HTTP1_DONE;
        }
        p->keep_alive = false; /* only the close tells where the body ends */
        p->state = HTTP1_BODY_EOF;
        return 0;
}

static int parse_chunk_size(Http1Parser *p, const char *l, size_t n) {
        uint64_t v = 0;
        size_t i = 0;
        for (; i < n; i++) {
                char c = l[i];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                                                 : -1;
                if (d < 0)
                        break;
                if (v > (UINT64_MAX >> 4))
                        return -EBADMSG;
                v = (v << 4) | (uint64_t) d;
        }
        if (i == 0)
                return -EBADMSG;
        while (i < n && is_ows(l[i]))
                i++;
        if (i < n && l[i] != ';')
                return -EBADMSG; /* only a chunk extension may follow */
        p->remaining = v;
        p->state = v == 0 ? HTTP1_TRAILER : HTTP1_CHUNK_DATA;
        p->head_len = 0; /* trailers get their own HTTP1_HEADER_MAX budget */
        return 0;
}

/* A complete line (without its LF, and without the CR before it). */
static int on_line(Http1Parser *p, const char *l, size_t n, bool overflow) {
        if (memchr(l, '\r', n) || memchr(l, 0, n))
                return -EBADMSG;
        switch (p->state) {
        case HTTP1_STATUS:
                if (p->status == 0) {
                        if (overflow)
                                return -E2BIG;
                        return parse_status_line(p, l, n);
                }
                if (n == 0)
                        return head_done(p);
                return parse_field(p, l, n, overflow, false);
        case HTTP1_CHUNK_SIZE:
                if (overflow)
                        return -E2BIG;
                return parse_chunk_size(p, l, n);
        case HTTP1_CHUNK_CRLF:
                if (n != 0)
                        return -EBADMSG;
                p->state = HTTP1_CHUNK_SIZE;
                return 0;
        case HTTP1_TRAILER:
                if (n == 0) {
                        p->state = HTTP1_DONE;
                        return 1;
                }
                return parse_field(p, l, n, overflow, true);
        default:
                return -EBADMSG;
        }
}

/* Returns 1 when the body reached max_body (parsing stops). */
static int body_add(Http1Parser *p, const char *d, size_t n) {
        if (p->excerpt_len < sizeof p->excerpt) {
                size_t k = sizeof p->excerpt - p->excerpt_len;
                if (k > n)
                        k = n;
                memcpy(p->excerpt + p->excerpt_len, d, k);
                p->excerpt_len += k;
        }
        p->body_len += n;
        if (p->body_len > p->max_body) {
                p->truncated = true;
                p->keep_alive = false; /* the rest of the body is still on the wire */
                p->state = HTTP1_DONE;
                return 1;
        }
        return 0;
}

static bool line_state(Http1State s) {
        return s == HTTP1_STATUS || s == HTTP1_CHUNK_SIZE || s == HTTP1_CHUNK_CRLF || s == HTTP1_TRAILER;
}

int http1_feed(Http1Parser *p, const void *data, size_t len, size_t *ret_used) {
        const char *d = data;
        size_t i = 0;
        int r = 0;

        if (ret_used)
                *ret_used = 0;
        if (p->state == HTTP1_DONE)
                return p->status < 0 ? p->status : 1;
        while (i < len && r == 0) {
                if (line_state(p->state)) {
                        const char *nl = memchr(d + i, '\n', len - i);
                        size_t take = nl ? (size_t) (nl - (d + i)) : len - i;
                        /* the head's bound counts every byte, line ends included */
                        size_t budget = p->state == HTTP1_CHUNK_SIZE || p->state == HTTP1_CHUNK_CRLF
                                                ? HTTP1_LINE_MAX + 2
                                                : HTTP1_HEADER_MAX;
                        size_t used_now = p->state == HTTP1_CHUNK_SIZE || p->state == HTTP1_CHUNK_CRLF
                                                  ? p->line_seen
                                                  : p->head_len;
                        if (used_now + take + (nl ? 1 : 0) > budget) {
                                r = -E2BIG;
                                break;
                        }
                        size_t room = sizeof p->line - p->line_len;
                        size_t copy = take < room ? take : room;
                        memcpy(p->line + p->line_len, d + i, copy);
                        p->line_len += copy;
                        if (copy < take)
                                p->line_overflow = true;
                        p->line_seen += take;
                        if (p->state == HTTP1_STATUS || p->state == HTTP1_TRAILER)
                                p->head_len += take + (nl ? 1 : 0);
                        i += take;
                        if (!nl)
                                break;
                        i++; /* the LF */
                        size_t n = p->line_len;
                        bool overflow = p->line_overflow;
                        if (!overflow && n > 0 && p->line[n - 1] == '\r')
                                n--;
                        p->line_len = 0;
                        p->line_seen = 0;
                        p->line_overflow = false;
                        r = on_line(p, p->line, n, overflow);
                        continue;
                }
                size_t avail = len - i;
                switch (p->state) {
                case HTTP1_BODY_LENGTH:
                case HTTP1_CHUNK_DATA: {
                        size_t k = avail < p->remaining ? avail : (size_t) p->remaining;
                        r = body_add(p, d + i, k);
                        i += k;
                        p->remaining -= k;
                        if (r == 0 && p->remaining == 0) {
                                if (p->state == HTTP1_BODY_LENGTH) {
                                        p->state = HTTP1_DONE;
                                        r = 1;
                                } else
                                        p->state = HTTP1_CHUNK_CRLF;
                        }
                        break;
                }
                case HTTP1_BODY_EOF:
                        r = body_add(p, d + i, avail);
                        i += avail;
                        break;
                default:
                        r = -EBADMSG;
                }
        }
        if (r < 0) {
                p->state = HTTP1_DONE;
                p->status = r; /* remembered: feeding again repeats the error */
                p->keep_alive = false;
                return r;
        }
        if (ret_used)
                *ret_used = i;
        return r;
}

int http1_eof(Http1Parser *p) {
        if (p->state == HTTP1_DONE)
                return p->status < 0 ? p->status : 1;
        if (p->state == HTTP1_BODY_EOF) {
                p->state = HTTP1_DONE;
                return 1;
        }
        return -EPIPE;
}
