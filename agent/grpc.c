/* gRPC client over libcurl (HTTP/2 prior knowledge on a unix socket) and its pure core. */
#include "pullwatch/grpc.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pullwatch/util.h"

/* ------------------------------------------------------------------ status table */

static const char *const status_names[_GRPC_STATUS_MAX] = {
        [GRPC_STATUS_OK] = "OK",
        [GRPC_STATUS_CANCELLED] = "CANCELLED",
        [GRPC_STATUS_UNKNOWN] = "UNKNOWN",
        [GRPC_STATUS_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
        [GRPC_STATUS_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
        [GRPC_STATUS_NOT_FOUND] = "NOT_FOUND",
        [GRPC_STATUS_ALREADY_EXISTS] = "ALREADY_EXISTS",
        [GRPC_STATUS_PERMISSION_DENIED] = "PERMISSION_DENIED",
        [GRPC_STATUS_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
        [GRPC_STATUS_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
        [GRPC_STATUS_ABORTED] = "ABORTED",
        [GRPC_STATUS_OUT_OF_RANGE] = "OUT_OF_RANGE",
        [GRPC_STATUS_UNIMPLEMENTED] = "UNIMPLEMENTED",
        [GRPC_STATUS_INTERNAL] = "INTERNAL",
        [GRPC_STATUS_UNAVAILABLE] = "UNAVAILABLE",
        [GRPC_STATUS_DATA_LOSS] = "DATA_LOSS",
        [GRPC_STATUS_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

const char *grpc_status_to_string(int code) {
        if (code < 0 || code >= _GRPC_STATUS_MAX)
                return NULL;
        return status_names[code];
}

int grpc_status_to_errno(int code) {
        static const int map[_GRPC_STATUS_MAX] = {
                [GRPC_STATUS_OK] = 0,
                [GRPC_STATUS_CANCELLED] = -ECANCELED,
                [GRPC_STATUS_UNKNOWN] = -EIO,
                [GRPC_STATUS_INVALID_ARGUMENT] = -EINVAL,
                [GRPC_STATUS_DEADLINE_EXCEEDED] = -ETIMEDOUT,
                [GRPC_STATUS_NOT_FOUND] = -ENOENT,
                [GRPC_STATUS_ALREADY_EXISTS] = -EEXIST,
                [GRPC_STATUS_PERMISSION_DENIED] = -EACCES,
                [GRPC_STATUS_RESOURCE_EXHAUSTED] = -ENOBUFS,
                [GRPC_STATUS_FAILED_PRECONDITION] = -EBADE,
                [GRPC_STATUS_ABORTED] = -ECONNABORTED,
                [GRPC_STATUS_OUT_OF_RANGE] = -ERANGE,
                [GRPC_STATUS_UNIMPLEMENTED] = -EOPNOTSUPP,
                [GRPC_STATUS_INTERNAL] = -EIO,
                [GRPC_STATUS_UNAVAILABLE] = -EAGAIN,
                [GRPC_STATUS_DATA_LOSS] = -EIO,
                [GRPC_STATUS_UNAUTHENTICATED] = -EACCES,
        };
        if (code < 0 || code >= _GRPC_STATUS_MAX)
                return -EIO;
        return map[code];
}

/* ------------------------------------------------------------------ framing */

int grpc_frame_header(uint8_t hdr[GRPC_FRAME_HEADER_SIZE], size_t len) {
        if (len > UINT32_MAX)
                return -EMSGSIZE;
        hdr[0] = 0;
        hdr[1] = (uint8_t) (len >> 24);
        hdr[2] = (uint8_t) (len >> 16);
        hdr[3] = (uint8_t) (len >> 8);
        hdr[4] = (uint8_t) len;
        return 0;
}

int grpc_frame_encode(const void *msg, size_t len, uint8_t **ret, size_t *ret_len) {
        uint8_t *b;
        int r;

        if (!ret || !ret_len || (len > 0 && !msg))
                return -EINVAL;
        if (len > UINT32_MAX)
                return -EMSGSIZE;
        b = malloc(GRPC_FRAME_HEADER_SIZE + len);
        if (!b)
                return -ENOMEM;
        r = grpc_frame_header(b, len);
        if (r < 0) {
                free(b);
                return r;
        }
        if (len > 0)
                memcpy(b + GRPC_FRAME_HEADER_SIZE, msg, len);
        *ret = b;
        *ret_len = GRPC_FRAME_HEADER_SIZE + len;
        return 0;
}

void grpc_reader_init(GrpcReader *r, size_t max_message) {
        *r = (GrpcReader) { .max_message = max_message ? max_message : GRPC_DEFAULT_MAX_MESSAGE };
}

void grpc_reader_done(GrpcReader *r) {
        free(r->buf);
        r->buf = NULL;
        r->need = r->have = r->hdr_have = 0;
}

bool grpc_reader_idle(const GrpcReader *r) {
        return r->hdr_have == 0 && r->need == 0;
}

_printf_(3, 4) static int reader_fail(GrpcReader *r, int error, const char *fmt, ...) {
        va_list ap;
        r->failed = error;
        va_start(ap, fmt);
        vsnprintf(r->error, sizeof(r->error), fmt, ap);
        va_end(ap);
        return error;
}

int grpc_reader_feed(GrpcReader *r, const void *data, size_t len, grpc_frame_cb_t cb, void *userdata) {
        const uint8_t *p = data;

        if (r->failed)
                return r->failed;

        while (len > 0) {
                if (r->need == 0 && r->hdr_have < GRPC_FRAME_HEADER_SIZE) {
                        size_t k = GRPC_FRAME_HEADER_SIZE - r->hdr_have;
                        if (k > len)
                                k = len;
                        memcpy(r->hdr + r->hdr_have, p, k);
                        r->hdr_have += k;
                        p += k;
                        len -= k;
                        if (r->hdr_have < GRPC_FRAME_HEADER_SIZE)
                                break;

                        if (r->hdr[0] == 1)
                                return reader_fail(r, -EPROTO, "compressed gRPC message but no compression was negotiated");
                        if (r->hdr[0] != 0)
                                return reader_fail(r, -EBADMSG, "malformed gRPC frame: flag byte 0x%02x", r->hdr[0]);
                        uint64_t n = (uint64_t) r->hdr[1] << 24 | (uint64_t) r->hdr[2] << 16 |
                                     (uint64_t) r->hdr[3] << 8 | (uint64_t) r->hdr[4];
                        if (n > r->max_message)
                                return reader_fail(r, -EMSGSIZE, "gRPC message of %" PRIu64 " bytes exceeds the limit of %zu bytes",
                                                   n, r->max_message);

                        if (n == 0) {
                                r->hdr_have = 0;
                                r->n_messages++;
                                if (cb) {
                                        int k2 = cb((const uint8_t *) "", 0, userdata);
                                        if (k2 < 0)
                                                return r->failed = k2;
                                }
                                continue;
                        }
                        free(r->buf);
                        r->buf = malloc(n);
                        if (!r->buf)
                                return reader_fail(r, -ENOMEM, "out of memory for a %" PRIu64 " byte message", n);
                        r->need = n;
                        r->have = 0;
                }

                size_t k = r->need - r->have;
                if (k > len)
                        k = len;
                memcpy(r->buf + r->have, p, k);
                r->have += k;
                p += k;
                len -= k;
                if (r->have < r->need)
                        break;

                /* Complete: reset the state before the callback so it sees a clean reader. */
                uint8_t *msg = r->buf;
                size_t n = r->need;
                r->buf = NULL;
                r->need = r->have = r->hdr_have = 0;
                r->n_messages++;
                int k2 = cb ? cb(msg, n, userdata) : 0;
                free(msg);
                if (k2 < 0)
                        return r->failed = k2;
        }
        return 0;
}

/* ------------------------------------------------------------------ headers */

void grpc_headers_init(GrpcHeaders *h) {
        *h = (GrpcHeaders) { .grpc_status = -1 };
}

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int grpc_percent_decode(const char *in, size_t len, char *out, size_t outsize) {
        size_t o = 0;
        bool truncated = false;

        if (outsize == 0)
                return -ENOBUFS;
        for (size_t i = 0; i < len; i++) {
                char c = in[i];
                if (c == '%' && i + 2 < len + 0 && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
                        c = (char) (hexval(in[i + 1]) << 4 | hexval(in[i + 2]));
                        i += 2;
                }
                if (o + 1 >= outsize) {
                        truncated = true;
                        break;
                }
                /* a one-line reason: never let a peer smuggle control characters through */
                out[o++] = (c == '\n' || c == '\r' || c == 0) ? ' ' : c;
        }
        out[o] = 0;
        return truncated ? -ENOBUFS : (int) o;
}

static int parse_decimal(const char *s, size_t len, int max, int *ret) {
        int v = 0;
        if (len == 0 || len > 9)
                return -EBADMSG;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EBADMSG;
                v = v * 10 + (s[i] - '0');
        }
        if (v > max)
                return -EBADMSG;
        *ret = v;
        return 0;
}

int grpc_headers_parse_line(GrpcHeaders *h, const char *line, size_t len) {
        const char *colon, *v;
        size_t nlen, vlen;
        int r, x;

        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                len--;
        if (len == 0)
                return 0;

        if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
                const char *sp = memchr(line, ' ', len);
                if (!sp)
                        return -EBADMSG;
                size_t rest = len - (size_t) (sp + 1 - line);
                const char *code = sp + 1;
                size_t clen = 0;
                while (clen < rest && code[clen] != ' ')
                        clen++;
                r = parse_decimal(code, clen, 999, &x);
                if (r < 0)
                        return r;
                h->http_status = x;
                return 0;
        }

        /* ":status" would be the first colon: skip it when looking for the separator. */
        colon = memchr(line + 1, ':', len - 1);
        if (!colon)
                return 0; /* not a header line we understand */
        nlen = (size_t) (colon - line);
        v = colon + 1;
        vlen = len - nlen - 1;
        while (vlen > 0 && (*v == ' ' || *v == '\t'))
                v++, vlen--;
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;

#define NAME_IS(s) (nlen == strlen(s) && strncasecmp(line, s, nlen) == 0)
        if (NAME_IS("grpc-status")) {
                r = parse_decimal(v, vlen, 1000000, &x);
                if (r < 0)
                        return r;
                h->grpc_status = x;
        } else if (NAME_IS("grpc-message")) {
                (void) grpc_percent_decode(v, vlen, h->grpc_message, sizeof(h->grpc_message));
        } else if (NAME_IS(":status")) {
                r = parse_decimal(v, vlen, 999, &x);
                if (r < 0)
                        return r;
                h->http_status = x;
        } else if (NAME_IS("content-type")) {
                h->content_type_seen = true;
                h->content_type_grpc = (vlen == 16 && strncasecmp(v, "application/grpc", 16) == 0) ||
                                       (vlen > 16 && strncasecmp(v, "application/grpc", 16) == 0 &&
                                        (v[16] == '+' || v[16] == ';'));
        }
#undef NAME_IS
        return 0;
}

int grpc_timeout_format(uint64_t usec, char *buf, size_t size) {
        static const struct {
                char unit;
                uint64_t usec;
        } units[] = {
                { 'u', 1ULL },
                { 'm', 1000ULL },
                { 'S', 1000000ULL },
                { 'M', 60ULL * 1000000ULL },
                { 'H', 3600ULL * 1000000ULL },
        };

        if (usec == 0)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                uint64_t v = usec / units[i].usec + (usec % units[i].usec ? 1 : 0);
                if (v <= 99999999ULL) {
                        int n = snprintf(buf, size, "%" PRIu64 "%c", v, units[i].unit);
                        if (n < 0 || (size_t) n >= size)
                                return -ENOBUFS;
                        return 0;
                }
        }
        /* beyond 99999999 hours: clamp */
        int n = snprintf(buf, size, "99999999H");
        return n < 0 || (size_t) n >= size ? -ENOBUFS : 0;
}

/* ------------------------------------------------------------------ client */

struct GrpcClient {
        sd_event *event;
        CurlEv *curl;
        bool own_curl;
        char socket_path[GRPC_SOCKET_PATH_MAX + 1];
        size_t max_message;
        GrpcCall *calls;
        unsigned in_callback;   /* > 0 while inside a libcurl callback (on_message) */
        sd_event_source *reaper; /* frees calls cancelled while in_callback */
};

struct GrpcCall {
        GrpcClient *client;
        GrpcCall *prev, *next;
        CURL *easy;
        struct curl_slist *headers;
        uint8_t *req;
        size_t req_len;
        char method[256];
        uint64_t timeout_usec;
        GrpcReader reader;
        GrpcHeaders hdrs;
        grpc_message_handler_t on_message;
        grpc_done_handler_t on_done;
        void *userdata;
        int abort_error;        /* set by a callback that stopped the transfer */
        char abort_reason[GRPC_MESSAGE_MAX];
        bool cancelled;         /* cancelled inside a libcurl callback: reaped later, silently */
        bool finished;          /* on_done running: cancel is a no-op */
};

int grpc_client_new(GrpcClient **ret, sd_event *e, CurlEv *curl, const char *socket_path, size_t max_message) {
        GrpcClient *c;
        int r;

        if (!ret || !e || isempty(socket_path))
                return -EINVAL;
        if (strlen(socket_path) > GRPC_SOCKET_PATH_MAX)
                return -ENAMETOOLONG;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);
        c->max_message = max_message ? max_message : GRPC_DEFAULT_MAX_MESSAGE;
        (void) strcpy_bounded(c->socket_path, sizeof(c->socket_path), socket_path);
        if (curl)
                c->curl = curl;
        else {
                r = curlev_new(&c->curl, e);
                if (r < 0) {
                        sd_event_unref(c->event);
                        free(c);
                        return r;
                }
                c->own_curl = true;
        }
        *ret = c;
        return 0;
}

static void call_unlink(GrpcCall *call) {
        if (call->client) {
                GrpcClient *c = call->client;
                if (call->next)
                        call->next->prev = call->prev;
                if (call->prev)
                        call->prev->next = call->next;
                else
                        c->calls = call->next;
                call->prev = call->next = NULL;
                call->client = NULL;
        }
}

static void call_free(GrpcCall *call) {
        if (!call)
                return;
        call_unlink(call);
        if (call->easy)
                curl_easy_cleanup(call->easy);
        curl_slist_free_all(call->headers);
        free(call->req);
        grpc_reader_done(&call->reader);
        free(call);
}

GrpcClient *grpc_client_free(GrpcClient *c) {
        if (!c)
                return NULL;
        while (c->calls) {
                GrpcCall *call = c->calls;
                (void) curlev_remove(c->curl, call->easy);
                call_free(call);
        }
        sd_event_source_disable_unref(c->reaper);
        if (c->own_curl)
                curlev_free(c->curl);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

const char *grpc_client_socket_path(const GrpcClient *c) {
        return c ? c->socket_path : NULL;
}

size_t grpc_client_max_message(const GrpcClient *c) {
        return c ? c->max_message : 0;
}

static int call_fail(GrpcCall *call, int error, const char *reason) {
        if (call->abort_error == 0) {
                call->abort_error = error;
                (void) strcpy_bounded(call->abort_reason, sizeof(call->abort_reason), reason);
        }
        return error;
}

static int on_frame(const uint8_t *msg, size_t len, void *userdata) {
        GrpcCall *call = userdata;
        int r;

        if (call->cancelled)
                return -ECANCELED;
        if (!call->on_message)
                return 0;
        call->client->in_callback++;
        r = call->on_message(call, msg, len, call->userdata);
        call->client->in_callback--;
        if (call->cancelled)
                return -ECANCELED;
        if (r < 0) {
                char reason[GRPC_MESSAGE_MAX];
                snprintf(reason, sizeof(reason), "%s: response message rejected: %s", call->method, strerror(-r));
                return call_fail(call, r, reason);
        }
        return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        GrpcCall *call = userdata;
        size_t n = size * nmemb;
        int r;

        if (call->cancelled || call->abort_error)
                return 0;
        r = grpc_reader_feed(&call->reader, ptr, n, on_frame, call);
        if (r < 0) {
                if (!call->cancelled && call->abort_error == 0) {
                        char reason[GRPC_MESSAGE_MAX];
                        snprintf(reason, sizeof(reason), "%s: %s", call->method, call->reader.error);
                        call_fail(call, r, reason);
                }
                return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
        }
        return n;
}

static size_t header_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        GrpcCall *call = userdata;
        size_t n = size * nmemb;

        if (call->cancelled || call->abort_error)
                return 0;
        if (grpc_headers_parse_line(&call->hdrs, ptr, n) < 0) {
                char reason[GRPC_MESSAGE_MAX];
                int k = (int) (n > 80 ? 80 : n);
                while (k > 0 && (ptr[k - 1] == '\n' || ptr[k - 1] == '\r'))
                        k--;
                snprintf(reason, sizeof(reason), "%s: malformed response header: %.*s", call->method, k, ptr);
                call_fail(call, -EBADMSG, reason);
                return 0;
        }
        return n;
}

static int map_curl_error(GrpcCall *call, CURLcode result, char *reason, size_t size) {
        GrpcClient *c = call->client;
        long os_errno = 0;

        (void) curl_easy_getinfo(call->easy, CURLINFO_OS_ERRNO, &os_errno);
        switch (result) {
        case CURLE_COULDNT_CONNECT: {
                int e = os_errno > 0 ? (int) os_errno : ECONNREFUSED;
                snprintf(reason, size, "connect to %s: %s", c->socket_path, strerror(e));
                return e == ENOENT || e == EACCES || e == ECONNREFUSED || e == ENOTSOCK ? -e : -ECONNREFUSED;
        }
        case CURLE_OPERATION_TIMEDOUT:
                snprintf(reason, size, "%s: deadline of %.3fs exceeded", call->method, call->timeout_usec / 1e6);
                return -ETIMEDOUT;
        case CURLE_OUT_OF_MEMORY:
                snprintf(reason, size, "%s: out of memory", call->method);
                return -ENOMEM;
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
                snprintf(reason, size, "%s: stream ended without grpc-status: %s", call->method,
                         curl_easy_strerror(result));
                return -EPROTO;
        default:
                snprintf(reason, size, "%s: %s", call->method, curl_easy_strerror(result));
                return -EIO;
        }
}

static void on_transfer_done(CurlEv *ev, CURL *easy, CURLcode result, void *userdata) {
        GrpcCall *call = userdata;
        GrpcStatus status = { .code = -1 };
        int error = 0;

        if (call->cancelled) {
                call_free(call);
                return;
        }

        if (call->abort_error) {
                error = call->abort_error;
                (void) strcpy_bounded(status.message, sizeof(status.message), call->abort_reason);
        } else if (call->hdrs.grpc_status >= 0) {
                /* A status is authoritative even if the connection went down afterwards. */
                status.code = call->hdrs.grpc_status;
                (void) strcpy_bounded(status.message, sizeof(status.message), call->hdrs.grpc_message);
        } else if (result != CURLE_OK) {
                error = map_curl_error(call, result, status.message, sizeof(status.message));
        } else if (call->hdrs.http_status != 200) {
                error = -EPROTO;
                snprintf(status.message, sizeof(status.message), "%s: HTTP status %d without grpc-status",
                         call->method, call->hdrs.http_status);
        } else {
                error = -EPROTO;
                snprintf(status.message, sizeof(status.message), "%s: stream ended without grpc-status",
                         call->method);
        }
        if (error == 0 && status.code == GRPC_STATUS_OK && !grpc_reader_idle(&call->reader)) {
                error = -EBADMSG;
                status.code = -1;
                snprintf(status.message, sizeof(status.message), "%s: stream ended inside a message",
                         call->method);
        }

        /* Detached first: on_done may start calls, cancel others, even free the client. */
        call->finished = true;
        call_unlink(call);
        if (call->on_done)
                call->on_done(call, error, &status, call->userdata);
        call_free(call);
}

static bool namespace_valid(const char *ns) {
        size_t n = strlen(ns);
        if (n == 0 || n > 76)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char) ns[i]) && !strchr("._-", ns[i]))
                        return false;
        return true;
}

static bool method_valid(const char *m) {
        size_t n = strlen(m);
        if (n < 3 || n >= 200 || m[0] != '/')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char) m[i]) && !strchr("._/-", m[i]))
                        return false;
        return true;
}

static int add_header(struct curl_slist **l, const char *h) {
        struct curl_slist *n = curl_slist_append(*l, h);
        if (!n)
                return -ENOMEM;
        *l = n;
        return 0;
}

int grpc_call_start(GrpcClient *c, const char *method_path, const char *ns, const void *req, size_t req_len,
                    uint64_t timeout_usec, grpc_message_handler_t on_message, grpc_done_handler_t on_done,
                    void *userdata, GrpcCall **ret) {
        GrpcCall *call;
        char url[256], h[128];
        int r;

        if (!c || !method_path || (req_len > 0 && !req))
                return -EINVAL;
        if (!method_valid(method_path) || (ns && !namespace_valid(ns)))
                return -EINVAL;
        if (req_len > c->max_message)
                return -EMSGSIZE;

        call = calloc(1, sizeof(*call));
        if (!call)
                return -ENOMEM;
        (void) strcpy_bounded(call->method, sizeof(call->method), method_path);
        call->timeout_usec = timeout_usec;
        call->on_message = on_message;
        call->on_done = on_done;
        call->userdata = userdata;
        grpc_reader_init(&call->reader, c->max_message);
        grpc_headers_init(&call->hdrs);

        r = grpc_frame_encode(req, req_len, &call->req, &call->req_len);
        if (r < 0)
                goto fail;

        r = -ENOMEM;
        if (add_header(&call->headers, "content-type: application/grpc") < 0 ||
            add_header(&call->headers, "te: trailers") < 0 || add_header(&call->headers, "Accept:") < 0 ||
            add_header(&call->headers, "Expect:") < 0 ||
            add_header(&call->headers, "user-agent: pullwatch/" PULLWATCH_VERSION) < 0)
                goto fail;
        if (ns) {
                snprintf(h, sizeof(h), "containerd-namespace: %s", ns);
                if (add_header(&call->headers, h) < 0)
                        goto fail;
        }
        if (timeout_usec > 0) {
                char t[16];
                if (grpc_timeout_format(timeout_usec, t, sizeof(t)) < 0) {
                        r = -EINVAL;
                        goto fail;
                }
                snprintf(h, sizeof(h), "grpc-timeout: %s", t);
                if (add_header(&call->headers, h) < 0)
                        goto fail;
        }

        call->easy = curl_easy_init();
        if (!call->easy)
                goto fail;
        snprintf(url, sizeof(url), "http://localhost%s", method_path);

        r = -EIO;
        if (curl_easy_setopt(call->easy, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(call->easy, CURLOPT_UNIX_SOCKET_PATH, c->socket_path) != CURLE_OK ||
            curl_easy_setopt(call->easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE) !=
                    CURLE_OK ||
            /* libcurl 7.88.1 cannot reuse h2 prior-knowledge connections (curl #10634) */
            curl_easy_setopt(call->easy, CURLOPT_FRESH_CONNECT, 1L) != CURLE_OK ||
            curl_easy_setopt(call->easy, CURLOPT_FORBID_REUSE, 1L) != CURLE_OK ||
            curl_easy_setopt(call->easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            curl_easy_setopt(call->easy, CURLOPT_HTTPHEADER, call->headers) != CURLE_OK ||
            curl_easy_setopt(call->easy, CURLOPT_POST, 1L) != CURLE_OK ||
            curl_easy_setopt(call->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) call->req_len) != CURLE_OK ||
            curl_easy_setopt(call->easy, CURLOPT_POSTFIELDS, call->req) != CURLE_OK ||
            curl_easy_setopt(call->easy, CURLOPT_WRITEFUNCTION, write_cb) != CURLE_OK ||
            curl_easy_setopt(call->easy, CURLOPT_WRITEDATA, call) != CURLE_OK ||
            curl_easy_setopt(call->easy, CURLOPT_HEADERFUNCTION, header_cb) != CURLE_OK ||
            curl_easy_setopt(call->easy, CURLOPT_HEADERDATA, call) != CURLE_OK)
                goto fail;
        if (timeout_usec > 0 &&
            curl_easy_setopt(call->easy, CURLOPT_TIMEOUT_MS, (long) ((timeout_usec + 999) / 1000)) != CURLE_OK)
                goto fail;

        r = curlev_add(c->curl, call->easy, on_transfer_done, call);
        if (r < 0)
                goto fail;

        call->client = c;
        call->next = c->calls;
        if (c->calls)
                c->calls->prev = call;
        c->calls = call;
        if (ret)
                *ret = call;
        return 0;

fail:
        call_free(call);
        return r;
}

static int on_reap(sd_event_source *s, void *userdata) {
        GrpcClient *c = userdata;
        GrpcCall *call, *next;

        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        for (call = c->calls; call; call = next) {
                next = call->next;
                if (!call->cancelled)
                        continue;
                (void) curlev_remove(c->curl, call->easy);
                call_free(call);
        }
        return 0;
}

void grpc_call_cancel(GrpcCall *call) {
        GrpcClient *c;

        if (!call || call->cancelled || call->finished)
                return;
        c = call->client;
        if (c->in_callback > 0) {
                /* libcurl forbids removing any easy from inside a libcurl callback: mark
                 * it (its own callbacks now abort the transfer) and reap it from the loop. */
                call->cancelled = true;
                if (!c->reaper) {
                        if (sd_event_add_defer(c->event, &c->reaper, on_reap, c) < 0)
                                return; /* the transfer still aborts at its next callback */
                        (void) sd_event_source_set_description(c->reaper, "grpc-reap");
                }
                (void) sd_event_source_set_enabled(c->reaper, SD_EVENT_ONESHOT);
                return;
        }
        (void) curlev_remove(c->curl, call->easy);
        call_free(call);
}
