/* gRPC client over one persistent HTTP/2 connection (libnghttp2 on a unix socket, sd-event)
 * and its pure core. */
#include "pullwatch/grpc.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nghttp2/nghttp2.h>
#include <sys/epoll.h>
#include <sys/param.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

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
        free(TAKE_PTR(r->msg));
        r->need = r->have = r->hdr_have = 0;
}

bool grpc_reader_idle(const GrpcReader *r) {
        return r->hdr_have == 0 && r->need == 0;
}

uint8_t *grpc_reader_take(GrpcReader *r) {
        return TAKE_PTR(r->msg);
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
                r->msg = msg;
                int k2 = cb ? cb(msg, n, userdata) : 0;
                free(TAKE_PTR(r->msg)); /* NULL if the callback took it */
                if (k2 < 0)
                        return r->failed = k2;
        }
        return 0;
}

/* ------------------------------------------------------------------ headers */

void grpc_headers_init(GrpcHeaders *h) {
        *h = (GrpcHeaders) { .grpc_status = -1 };
}


int grpc_percent_decode(const char *in, size_t len, char *out, size_t outsize) {
        size_t o = 0;
        bool truncated = false;

        if (outsize == 0)
                return -ENOBUFS;
        for (size_t i = 0; i < len; i++) {
                char c = in[i];
                if (c == '%' && i + 2 < len + 0 && unhexchar(in[i + 1]) >= 0 && unhexchar(in[i + 2]) >= 0) {
                        c = (char) (unhexchar(in[i + 1]) << 4 | unhexchar(in[i + 2]));
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

int grpc_headers_parse_pair(GrpcHeaders *h, const char *name, size_t nlen, const char *v, size_t vlen) {
        int r, x;

        while (vlen > 0 && (*v == ' ' || *v == '\t'))
                v++, vlen--;
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;

#define NAME_IS(s) (nlen == strlen(s) && strncasecmp(name, s, nlen) == 0)
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

/* ------------------------------------------------------------------ client
 *
 * One persistent HTTP/2 connection per client (nghttp2 on a non-blocking unix socket
 * driven by sd-event), opened lazily by the first call, one stream per call.
 *
 * Lifetimes: a call is either running (on c->calls, maybe bound to a stream of a Conn),
 * or completed (outcome recorded, detached from its stream, queued on c->done); only
 * dispatch() runs on_done, and only from the loop (I/O, timer or the defer source),
 * never from inside nghttp2 or grpc_call_start(). Frames for a stream whose call is
 * gone are dropped: calls are found by (conn, stream id), never through pointers held
 * by nghttp2, so freeing a call never leaves nghttp2 a dangling pointer. */

#define CONN_OBUF_SIZE (64U << 10)
#define CONN_IBUF_SIZE (64U << 10)
#define CONN_READS_PER_WAKEUP 16
/* Bytes read and handled but left in the socket until our next write (see "reads left
 * in the socket" below): at most this many, so a read never copies much twice. */
#define CONN_UNCONSUMED_MAX 4096U
#define STREAM_WINDOW (16U << 20)        /* a whole 16 MiB message in flight */
#define CONNECTION_WINDOW (64U << 20)
#define DEADLINE_ACCURACY_USEC 1000ULL

typedef struct Conn Conn;

struct Conn {
        GrpcClient *client;
        Conn *next; /* on client->draining */
        int fd;
        sd_event_source *io;
        nghttp2_session *session;
        uint8_t *obuf;
        size_t olen;
        const uint8_t *pend; /* nghttp2's last mem_send chunk not yet copied (valid until the next) */
        size_t pend_len;
        uint32_t events;
        bool connecting;
        bool goaway;
        int32_t goaway_last_id;
        bool sent_goaway;      /* nghttp2 ended the session itself: the peer broke HTTP/2 */
        uint32_t sent_goaway_code;
        unsigned in_nghttp2; /* > 0 while nghttp2 runs our callbacks */
        sd_event_source *flusher; /* defer: one flush per loop turn for calls started outside I/O */
        bool flush_due;           /* conn_kick() since the last flush */
        sd_event_source *keepalive; /* liveness: PING after keepalive_interval of silence */
        uint64_t last_recv_usec;    /* CLOCK_MONOTONIC of the last bytes read */
        uint64_t ping_sent_usec;    /* > 0 while a PING waits for its ACK */
        bool owe_bdp_ack;           /* grpc-go's BDP PING, acknowledged with our next frames */
        bool burst;                 /* a stream's messages come closer than the burst window */
        bool burst_read;            /* the read under way is the burst timer's */
        sd_event_source *burst_timer; /* the next read of a burst (grpc_client_set_burst_window()) */
        size_t unconsumed;          /* bytes read with MSG_PEEK and handled, still in the socket */
        bool level_triggered;       /* conn_reread() failed: no bytes left in the socket, EPOLLIN level-triggered */
        sd_event_source *reread;    /* defer: a turn's reads stopped with bytes left (edge-triggered) */
};

struct GrpcClient {
        sd_event *event;
        char socket_path[GRPC_SOCKET_PATH_MAX + 1];
        size_t max_message;
        GrpcCall *calls, *calls_tail; /* running and completed-not-dispatched */
        GrpcCall *done, *done_tail;   /* completed, FIFO, subset of calls */
        GrpcCall *last_found;         /* lookup cache */
        Conn *conn;                   /* current connection, NULL before the first call or after a failure */
        Conn *draining;               /* connections after GOAWAY, finishing their streams */
        unsigned in_callback;         /* > 0 while inside on_message */
        bool *dead;                   /* set while dispatching: grpc_client_free() marks it */
        sd_event_source *dispatcher;  /* runs dispatch() for completions made outside the loop handlers */
        uint8_t ibuf[CONN_IBUF_SIZE];
        uint64_t n_connects;
        uint64_t n_sends; /* send() calls that wrote bytes */
        uint64_t n_bdp_pings; /* grpc-go's BDP PINGs received */
        uint64_t keepalive_interval_usec, keepalive_timeout_usec; /* 0: no pings */
        /* the last grpc-timeout formatted, and its text: every call of a kind has the same
         * one, and formatting it per call was ~1 % of an event's instructions */
        uint64_t timeout_usec;
        char timeout_text[16];
        uint64_t burst_window_usec; /* 0: read whenever bytes arrive */
        void (*after_read)(void *userdata); /* grpc_client_set_after_read() */
        void *after_read_userdata;
        uint64_t n_burst_reads;     /* reads of a burst's timer that found bytes */
};

struct GrpcCall {
        GrpcClient *client;
        GrpcCall *prev, *next;
        GrpcCall *done_next;
        Conn *conn;
        int32_t stream_id; /* > 0 while bound to a stream */
        uint8_t *req;
        size_t req_len, req_off;
        char method[200];
        uint64_t timeout_usec;
        uint64_t last_message_usec; /* with a burst window: when the previous message came */
        sd_event_source *timer;
        GrpcReader reader;
        GrpcHeaders hdrs;
        grpc_message_handler_t on_message;
        grpc_done_handler_t on_done;
        void *userdata;
        bool completed;  /* on c->done */
        bool peer_reset; /* containerd sent RST_STREAM (else a reset is nghttp2's, i.e. ours) */
        bool cancelled;  /* cancelled from on_message: freed by dispatch without on_done */
        bool finished;   /* on_done running: cancel is a no-op */
        int error;
        GrpcStatus status;
};

static int on_dispatch(sd_event_source *s, void *userdata);

int grpc_client_new(GrpcClient **ret, sd_event *e, const char *socket_path, size_t max_message) {
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
        r = sd_event_add_defer(e, &c->dispatcher, on_dispatch, c);
        if (r >= 0) {
                (void) sd_event_source_set_description(c->dispatcher, "grpc-dispatch");
                r = sd_event_source_set_enabled(c->dispatcher, SD_EVENT_OFF);
        }
        if (r < 0) {
                sd_event_source_unref(c->dispatcher);
                sd_event_unref(c->event);
                free(c);
                return r;
        }
        *ret = c;
        return 0;
}

const char *grpc_client_socket_path(const GrpcClient *c) {
        return c ? c->socket_path : NULL;
}

size_t grpc_client_max_message(const GrpcClient *c) {
        return c ? c->max_message : 0;
}

uint64_t grpc_client_connects(const GrpcClient *c) {
        return c ? c->n_connects : 0;
}

uint64_t grpc_client_burst_reads(const GrpcClient *c) {
        return c ? c->n_burst_reads : 0;
}

uint64_t grpc_client_bdp_pings(const GrpcClient *c) {
        return c ? c->n_bdp_pings : 0;
}

uint64_t grpc_client_sends(const GrpcClient *c) {
        return c ? c->n_sends : 0;
}

int grpc_client_set_burst_window(GrpcClient *c, uint64_t window_usec) {
        if (!c || window_usec > GRPC_BURST_WINDOW_MAX_USEC)
                return -EINVAL;
        c->burst_window_usec = window_usec;
        return 0;
}

void grpc_client_set_after_read(GrpcClient *c, void (*cb)(void *userdata), void *userdata) {
        c->after_read = cb;
        c->after_read_userdata = userdata;
}

int grpc_client_set_keepalive(GrpcClient *c, uint64_t interval_usec, uint64_t timeout_usec) {
        if (!c || (interval_usec > 0 && timeout_usec == 0))
                return -EINVAL;
        c->keepalive_interval_usec = interval_usec;
        c->keepalive_timeout_usec = timeout_usec;
        return 0; /* takes effect with the next connection */
}

/* ---- calls: lists */

static void done_remove(GrpcClient *c, GrpcCall *call) {
        GrpcCall **p;
        GrpcCall *prev = NULL;

        if (!call->completed)
                return;
        for (p = &c->done; *p; prev = *p, p = &(*p)->done_next)
                if (*p == call) {
                        *p = call->done_next;
                        if (c->done_tail == call)
                                c->done_tail = prev;
                        break;
                }
        call->done_next = NULL;
        call->completed = false;
}

static void call_unlink(GrpcCall *call) {
        GrpcClient *c = call->client;

        if (!c)
                return;
        done_remove(c, call);
        if (call->next)
                call->next->prev = call->prev;
        else
                c->calls_tail = call->prev;
        if (call->prev)
                call->prev->next = call->next;
        else
                c->calls = call->next;
        if (c->last_found == call)
                c->last_found = NULL;
        call->prev = call->next = NULL;
        call->client = NULL;
}

static void conn_kick(Conn *conn);

/* Leave the stream: tell the server (RST_STREAM CANCEL) unless it has already ended.
 * A stream whose HEADERS are still queued in nghttp2 does not exist yet: its HEADERS
 * are dropped by on_before_frame_send, which no longer finds the call. */
static void call_detach(GrpcCall *call) {
        Conn *conn = call->conn;

        if (conn && call->stream_id > 0 && conn->session && nghttp2_session_find_stream(conn->session, call->stream_id))
                (void) nghttp2_submit_rst_stream(conn->session, NGHTTP2_FLAG_NONE, call->stream_id, NGHTTP2_CANCEL);
        call->stream_id = 0;
        call->conn = NULL;
        call->timer = sd_event_source_disable_unref(call->timer);
        if (conn)
                conn_kick(conn);
}

static void call_free(GrpcCall *call) {
        if (!call)
                return;
        call_detach(call);
        call_unlink(call);
        free(call->req);
        grpc_reader_done(&call->reader);
        free(call);
}

/* Record the outcome once and queue the call for dispatch(). */
_printf_(3, 4) static void call_complete(GrpcCall *call, int error, const char *fmt, ...) {
        GrpcClient *c = call->client;
        va_list ap;

        if (call->completed || !c)
                return;
        call_detach(call);
        call->error = error;
        if (error < 0)
                call->status.code = -1;
        if (fmt) {
                va_start(ap, fmt);
                vsnprintf(call->status.message, sizeof(call->status.message), fmt, ap);
                va_end(ap);
        }
        call->completed = true;
        call->done_next = NULL;
        if (c->done_tail)
                c->done_tail->done_next = call;
        else
                c->done = call;
        c->done_tail = call;
        (void) sd_event_source_set_enabled(c->dispatcher, SD_EVENT_ONESHOT);
}

/* Run on_done for every completed call, in order. Only from loop handlers. Returns
 * false if the client was freed by an on_done (the caller must not touch it). */
static bool dispatch(GrpcClient *c) {
        bool dead = false;

        if (c->dead)
                return true; /* already dispatching further up */
        c->dead = &dead;
        while (c->done) {
                GrpcCall *call = c->done;
                c->done = call->done_next;
                if (!c->done)
                        c->done_tail = NULL;
                call->done_next = NULL;
                call->completed = false;
                call_unlink(call);
                if (!call->cancelled && call->on_done) {
                        call->finished = true;
                        call->on_done(call, call->error, &call->status, call->userdata);
                }
                call_free(call);
                if (dead)
                        return false;
        }
        c->dead = NULL;
        (void) sd_event_source_set_enabled(c->dispatcher, SD_EVENT_OFF);
        return true;
}

static void client_flush_due(GrpcClient *c);

static int on_dispatch(sd_event_source *s, void *userdata) {
        if (dispatch(userdata))
                client_flush_due(userdata);
        return 0;
}

static GrpcCall *conn_find(Conn *conn, int32_t stream_id) {
        GrpcClient *c = conn->client;
        GrpcCall *call = c->last_found;

        if (stream_id <= 0)
                return NULL;
        if (call && call->conn == conn && call->stream_id == stream_id)
                return call;
        /* newest first: the streams of a burst finish roughly in order */
        for (call = c->calls_tail; call; call = call->prev)
                if (call->conn == conn && call->stream_id == stream_id)
                        return c->last_found = call;
        return NULL;
}

/* ---- connection */

static int conn_consume(Conn *conn, void *buf, size_t size);

static void conn_free(Conn *conn) {
        GrpcClient *c = conn->client;

        if (c) {
                if (c->conn == conn)
                        c->conn = NULL;
                for (Conn **p = &c->draining; *p; p = &(*p)->next)
                        if (*p == conn) {
                                *p = conn->next;
                                break;
                        }
        }
        sd_event_source_disable_unref(conn->io);
        sd_event_source_disable_unref(conn->flusher);
        sd_event_source_disable_unref(conn->keepalive);
        sd_event_source_disable_unref(conn->burst_timer);
        sd_event_source_disable_unref(conn->reread);
        if (conn->session)
                nghttp2_session_del(conn->session);
        if (conn->fd >= 0) {
                /* closed with bytes unread, the socket would tell containerd ECONNRESET, not EOF */
                uint8_t scratch[CONN_UNCONSUMED_MAX];
                (void) conn_consume(conn, scratch, sizeof(scratch));
                close(conn->fd);
        }
        free(conn->obuf);
        free(conn);
}

/* The connection is gone: every call still on it fails once, with reason. */
_printf_(3, 4) static void conn_fail(Conn *conn, int error, const char *fmt, ...) {
        GrpcClient *c = conn->client;
        char reason[GRPC_MESSAGE_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);

        /* unbound first, so completing them sends nothing on the dying session */
        for (GrpcCall *call = c->calls; call; call = call->next) {
                if (call->conn != conn)
                        continue;
                call->conn = NULL;
                call->stream_id = 0;
                if (call->completed)
                        continue;
                if (strncmp(reason, "connect to ", 11) == 0)
                        call_complete(call, error, "%s", reason);
                else
                        call_complete(call, error, "%s: %s", call->method, reason);
        }
        conn_free(conn);
}

static void conn_update_events(Conn *conn) {
        uint32_t want = EPOLLIN | (conn->level_triggered ? 0 : EPOLLET);
        if (conn->connecting || conn->olen > 0 || conn->pend_len > 0)
                want |= EPOLLOUT;
        if (want != conn->events && sd_event_source_set_io_events(conn->io, want) >= 0)
                conn->events = want;
}

static const uint8_t grpc_go_bdp_ping[8] = {2, 4, 16, 16, 9, 14, 7, 7};

/* ---- reads left in the socket
 *
 * containerd's Go runtime watches its end of the socket edge-triggered for writability
 * as well (netpoll registers EPOLLIN|EPOLLOUT|EPOLLET), and every skb our recv() frees
 * (the bytes it sent us, taken out of the socket) tells it "writable" again: its
 * netpoller thread is woken for nothing, on our CPU (a sync wake-up), and preempts us.
 * perf (sched_switch) counted 0.85 such preemptions per paced event, at our recv().
 * So the socket is read with MSG_PEEK and the bytes handled stay in it until we next
 * write to containerd, when it is woken anyway (by our request): then they are taken
 * out, after the send(). The socket is watched edge-triggered (new bytes wake us even
 * with handled ones still queued). At most CONN_UNCONSUMED_MAX bytes stay: a larger read
 * (a listing) is taken out at once. */

/* Take the handled bytes out of the socket, through buf (size bytes). 0, or -errno. */
static int conn_consume(Conn *conn, void *buf, size_t size) {
        while (conn->unconsumed > 0) {
                ssize_t n = recv(conn->fd, buf, MIN(conn->unconsumed, size), MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -ECONNRESET; /* cannot happen: the bytes were queued */
                conn->unconsumed -= (size_t) n;
        }
        return 0;
}

/* A BDP PING's ACK, written by us after nghttp2's frames (nghttp2 would send it first). */
#define BDP_ACK_SIZE 17

/* Serialize what nghttp2 has queued and write it. 0, or -errno (connection broken). */
static int conn_flush(Conn *conn) {
        for (;;) {
                /* fill obuf */
                bool all = false; /* nghttp2 has nothing more: obuf ends on a frame boundary */
                while (conn->olen < CONN_OBUF_SIZE) {
                        if (conn->pend_len == 0) {
                                const uint8_t *data;
                                ssize_t n;
                                conn->in_nghttp2++;
                                n = nghttp2_session_mem_send(conn->session, &data);
                                conn->in_nghttp2--;
                                if (n < 0)
                                        return -EPROTO;
                                if (n == 0) {
                                        all = true;
                                        break;
                                }
                                conn->pend = data;
                                conn->pend_len = (size_t) n;
                        }
                        size_t k = CONN_OBUF_SIZE - conn->olen;
                        if (k > conn->pend_len)
                                k = conn->pend_len;
                        memcpy(conn->obuf + conn->olen, conn->pend, k);
                        conn->olen += k;
                        conn->pend += k;
                        conn->pend_len -= k;
                }
                /* a BDP PING's ACK owed leaves with whatever else goes out now, never alone,
                 * and after it: grpc-go sends its next BDP PING (and a WINDOW_UPDATE before
                 * it) for the first DATA frame it reads after the ACK, so an ACK ahead of a
                 * request cost a PING per request; behind it, one every other request */
                if (conn->owe_bdp_ack && all && conn->olen > 0 && !conn->connecting &&
                    conn->olen + BDP_ACK_SIZE <= CONN_OBUF_SIZE) {
                        static const uint8_t hdr[9] = {0, 0, 8, NGHTTP2_PING, NGHTTP2_FLAG_ACK, 0, 0, 0, 0};
                        memcpy(conn->obuf + conn->olen, hdr, sizeof hdr);
                        memcpy(conn->obuf + conn->olen + sizeof hdr, grpc_go_bdp_ping, sizeof grpc_go_bdp_ping);
                        conn->olen += BDP_ACK_SIZE;
                        conn->owe_bdp_ack = false;
                }
                if (conn->olen == 0 || conn->connecting)
                        return 0;
                ssize_t w = send(conn->fd, conn->obuf, conn->olen, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0; /* EPOLLOUT brings us back */
                        return -errno;
                }
                conn->client->n_sends++;
                /* containerd is woken by this request: the freed skbs' wake-up costs nothing now */
                if (conn->unconsumed > 0) {
                        uint8_t scratch[CONN_UNCONSUMED_MAX];
                        int r = conn_consume(conn, scratch, sizeof(scratch));
                        if (r < 0)
                                return r;
                }
                if ((size_t) w < conn->olen)
                        memmove(conn->obuf, conn->obuf + w, conn->olen - (size_t) w);
                conn->olen -= (size_t) w;
                if (conn->olen > 0)
                        return 0;
        }
}

static int on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* The window after a burst's read is over: read what came meanwhile, all at once. */
static int on_burst_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Conn *conn = userdata;
        (void) sd_event_source_set_enabled(conn->io, SD_EVENT_ON);
        conn->burst_read = true;
        return on_conn_io(conn->io, conn->fd, EPOLLIN, conn);
}

/* Within a burst, after a read that got bytes: leave the socket alone for the window, so
 * that the events and replies that come meanwhile are read in one wake-up, not one each.
 * A read that found nothing ends the burst: the socket wakes the loop again. */
static void conn_burst_hold(Conn *conn, bool got) {
        GrpcClient *c = conn->client;
        uint64_t now;
        if (got && conn->burst_read)
                c->n_burst_reads++;
        conn->burst_read = false;
        if (!conn->burst)
                return;
        if (!got || sd_event_now(c->event, CLOCK_MONOTONIC, &now) < 0) {
                conn->burst = false;
                return;
        }
        if (!conn->burst_timer) {
                if (sd_event_add_time(c->event, &conn->burst_timer, CLOCK_MONOTONIC, 0, 1, on_burst_timer, conn) < 0) {
                        conn->burst = false;
                        return;
                }
                (void) sd_event_source_set_description(conn->burst_timer, "grpc-burst");
        }
        if (sd_event_source_set_time(conn->burst_timer, now + c->burst_window_usec) < 0 ||
            sd_event_source_set_enabled(conn->burst_timer, SD_EVENT_ONESHOT) < 0) {
                conn->burst = false;
                return;
        }
        (void) sd_event_source_set_enabled(conn->io, SD_EVENT_OFF);
}

/* A read or write on the connection failed with -error. */
static void conn_broken(Conn *conn, int error) {
        const char *path = conn->client->socket_path;
        if (error == -ECONNRESET || error == -EPIPE)
                conn_fail(conn, -EPROTO, "connection closed by %s before grpc-status: %s", path, strerror(-error));
        else
                conn_fail(conn, -EPROTO, "connection to %s failed: %s", path, strerror(-error));
}

static const char *h2_error_name(uint32_t code);

/* nghttp2 has nothing left to read or write: after containerd's GOAWAY with no streams
 * left, or a fatal protocol error on which nghttp2 sent its own GOAWAY. Fails the
 * connection (true) or leaves it alone (false). */
static bool conn_fail_if_finished(Conn *conn) {
        const char *path = conn->client->socket_path;
        if (nghttp2_session_want_read(conn->session) || nghttp2_session_want_write(conn->session) ||
            conn->olen > 0 || conn->pend_len > 0)
                return false;
        if (conn->goaway || !conn->sent_goaway)
                conn_fail(conn, -EPROTO, "connection to %s closed by containerd (GOAWAY)", path);
        else
                conn_fail(conn, -EPROTO, "%s answered with bytes that are not HTTP/2 (%s): connection closed", path,
                          h2_error_name(conn->sent_goaway_code));
        return true;
}

/* Write what conn_kick() asked for. False if the client was freed meanwhile (by an
 * on_done of a call the failure completed). */
static bool conn_flush_now(Conn *conn) {
        GrpcClient *c = conn->client; /* conn_broken() may free conn */
        conn->flush_due = false;
        int r = conn_flush(conn);
        if (r < 0) {
                conn_broken(conn, r);
                return dispatch(c);
        }
        if (conn_fail_if_finished(conn))
                return dispatch(c);
        conn_update_events(conn);
        return true;
}

static int on_conn_flush(sd_event_source *s, void *userdata) {
        (void) conn_flush_now(userdata);
        return 0;
}

/* At the end of a loop handler that dispatched: write now what its callbacks queued,
 * and what nghttp2 queued while reading, instead of in a loop turn of its own (one more
 * epoll_wait per event; on this kind of machine every system call is dear). */
static void client_flush_due(GrpcClient *c) {
        for (;;) {
                Conn *due = c->conn && c->conn->flush_due ? c->conn : NULL;
                for (Conn *d = c->draining; !due && d; d = d->next)
                        if (d->flush_due)
                                due = d;
                if (!due)
                        return;
                if (due->flusher)
                        (void) sd_event_source_set_enabled(due->flusher, SD_EVENT_OFF);
                if (!conn_flush_now(due))
                        return;
        }
}

/* Flush once the current loop turn's handler is done, unless nghttp2 is running our
 * callbacks (the I/O handler kicks after). What one turn queues — the lookups of a burst
 * of events, the next lookup a reply's callback starts, the ACK of a PING that came
 * with the reply — leaves in one send() instead of one each: per-call syscalls and
 * wake-ups were most of the agent's CPU per event. A broken connection fails its calls
 * from the loop. */
static void conn_kick(Conn *conn) {
        if (conn->in_nghttp2 > 0 || !conn->session)
                return;
        conn->flush_due = true;
        if (!conn->flusher) {
                int r = sd_event_add_defer(conn->client->event, &conn->flusher, on_conn_flush, conn);
                if (r < 0) {
                        /* cannot defer: flush now, as before */
                        r = conn_flush(conn);
                        if (r < 0)
                                conn_broken(conn, r);
                        else
                                conn_update_events(conn);
                        return;
                }
                (void) sd_event_source_set_description(conn->flusher, "grpc-flush");
        }
        (void) sd_event_source_set_enabled(conn->flusher, SD_EVENT_ONESHOT);
}

static int conn_closes_on_goaway(Conn *conn) {
        GrpcClient *c = conn->client;
        if (c->conn == conn)
                c->conn = NULL;
        conn->next = c->draining;
        c->draining = conn;
        return 0;
}

/* nghttp2 callbacks: user_data is the Conn. */

static int on_before_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
        Conn *conn = user_data;
        if (frame->hd.type == NGHTTP2_GOAWAY && !conn->sent_goaway) {
                conn->sent_goaway = true;
                conn->sent_goaway_code = frame->goaway.error_code;
        }
        /* the call was cancelled or timed out before its HEADERS left: never open the stream */
        if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST &&
            !conn_find(conn, frame->hd.stream_id))
                return NGHTTP2_ERR_CANCEL;
        return 0;
}

static int on_frame_not_send(nghttp2_session *session, const nghttp2_frame *frame, int lib_error_code,
                             void *user_data) {
        Conn *conn = user_data;
        GrpcCall *call;

        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
                return 0;
        call = conn_find(conn, frame->hd.stream_id);
        if (!call)
                return 0;
        call->stream_id = 0;
        call->status.code = GRPC_STATUS_UNAVAILABLE;
        call_complete(call, 0, "%s: request not sent (%s); retry", call->method, nghttp2_strerror(lib_error_code));
        return 0;
}

static ssize_t on_data_source_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                                   uint32_t *data_flags, nghttp2_data_source *source, void *user_data) {
        GrpcCall *call = conn_find(user_data, stream_id);
        size_t k;

        if (!call)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the orphaned stream */
        k = call->req_len - call->req_off;
        if (k > length)
                k = length;
        memcpy(buf, call->req + call->req_off, k);
        call->req_off += k;
        if (call->req_off == call->req_len) {
                *data_flags |= NGHTTP2_DATA_FLAG_EOF;
                free(call->req);
                call->req = NULL;
                call->req_len = call->req_off = 0;
        }
        return (ssize_t) k;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data) {
        GrpcCall *call = conn_find(user_data, frame->hd.stream_id);

        if (!call || call->completed)
                return 0;
        if (grpc_headers_parse_pair(&call->hdrs, (const char *) name, namelen, (const char *) value, valuelen) < 0) {
                int nl = (int) (namelen > 40 ? 40 : namelen), vl = (int) (valuelen > 40 ? 40 : valuelen);
                call_complete(call, -EBADMSG, "%s: malformed response header: %.*s: %.*s", call->method, nl,
                              (const char *) name, vl, (const char *) value);
        }
        return 0;
}

static int on_frame(const uint8_t *msg, size_t len, void *userdata) {
        GrpcCall *call = userdata;
        GrpcClient *c = call->client;
        int r;

        if (call->cancelled || call->completed)
                return -ECANCELED;
        if (c->burst_window_usec > 0 && call->conn) {
                /* a second message on one call: a stream (the events); closer than the window
                 * to the previous one: a burst, read once per window from now on */
                uint64_t now;
                (void) sd_event_now(c->event, CLOCK_MONOTONIC, &now);
                if (call->reader.n_messages > 1 && now - call->last_message_usec < c->burst_window_usec)
                        call->conn->burst = true;
                call->last_message_usec = now;
        }
        if (!call->on_message)
                return 0;
        c->in_callback++;
        r = call->on_message(call, msg, len, call->userdata);
        c->in_callback--;
        if (call->cancelled || call->completed)
                return -ECANCELED;
        if (r < 0) {
                call_complete(call, r, "%s: response message rejected: %s", call->method, strerror(-r));
                return r;
        }
        return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                              size_t len, void *user_data) {
        GrpcCall *call = conn_find(user_data, stream_id);
        int r;

        if (!call || call->completed)
                return 0;
        r = grpc_reader_feed(&call->reader, data, len, on_frame, call);
        if (r < 0 && !call->completed)
                call_complete(call, r, "%s: %s", call->method, call->reader.error);
        return 0;
}

static const char *h2_error_name(uint32_t code) {
        static const char *const names[] = {
                "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
                "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
                "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
        };
        return code < ELEMENTSOF(names) ? names[code] : "unknown error";
}

int grpc_status_from_h2_error(uint32_t h2_error) {
        switch (h2_error) {
        case NGHTTP2_REFUSED_STREAM:
                return GRPC_STATUS_UNAVAILABLE;
        case NGHTTP2_CANCEL:
                return GRPC_STATUS_CANCELLED;
        case NGHTTP2_ENHANCE_YOUR_CALM:
                return GRPC_STATUS_RESOURCE_EXHAUSTED;
        case NGHTTP2_INADEQUATE_SECURITY:
                return GRPC_STATUS_PERMISSION_DENIED;
        default:
                return GRPC_STATUS_INTERNAL;
        }
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data) {
        Conn *conn = user_data;
        GrpcCall *call = conn_find(conn, stream_id);

        if (!call || call->completed)
                return 0;
        call->stream_id = 0; /* the stream is gone: nothing to reset */

        if (call->hdrs.grpc_status >= 0) {
                /* a status is authoritative even if the stream was reset afterwards */
                call->status.code = call->hdrs.grpc_status;
                if (call->status.code == GRPC_STATUS_OK && !grpc_reader_idle(&call->reader))
                        call_complete(call, -EBADMSG, "%s: stream ended inside a message", call->method);
                else if (call->hdrs.grpc_message[0])
                        call_complete(call, 0, "%s", call->hdrs.grpc_message);
                else
                        call_complete(call, 0, NULL); /* the common case: nothing to format */
        } else if (error_code != NGHTTP2_NO_ERROR) {
                call->status.code = grpc_status_from_h2_error(error_code);
                if (conn->goaway && stream_id > conn->goaway_last_id)
                        call_complete(call, 0, "%s: not processed: containerd is closing the connection (GOAWAY); retry",
                                      call->method);
                else if (call->peer_reset)
                        call_complete(call, 0, "%s: stream reset by containerd: HTTP/2 %s", call->method,
                                      h2_error_name(error_code));
                else
                        call_complete(call, 0, "%s: stream reset by pullwatch: containerd's reply broke HTTP/2 (%s)",
                                      call->method, h2_error_name(error_code));
        } else if (call->hdrs.http_status != 200)
                call_complete(call, -EPROTO, "%s: HTTP status %d without grpc-status", call->method,
                              call->hdrs.http_status);
        else
                call_complete(call, -EPROTO, "%s: stream ended without grpc-status", call->method);
        return 0;
}

static void keepalive_arm(Conn *conn, uint64_t at);

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
        Conn *conn = user_data;

        /* PINGs are acknowledged by us, not by nghttp2 (no_auto_ping_ack). grpc-go's server
         * sends a BDP-estimation PING after every request it receives: acknowledged at once,
         * each one was a send() of its own and a wake-up of containerd per event. Its ACK
         * only feeds the server's window estimate (our requests are tiny), so it waits for
         * the next frames we send anyway; until then grpc-go sends no other BDP PING. Any
         * other PING (keepalive, grpc-go's GOAWAY drain) is acknowledged at once. */
        if (frame->hd.type == NGHTTP2_PING && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
                if (memcmp(frame->ping.opaque_data, grpc_go_bdp_ping, sizeof grpc_go_bdp_ping) == 0) {
                        conn->owe_bdp_ack = true;
                        conn->client->n_bdp_pings++;
                }
                else if (nghttp2_submit_ping(session, NGHTTP2_FLAG_ACK, frame->ping.opaque_data) != 0)
                        return NGHTTP2_ERR_CALLBACK_FAILURE;
        }

        if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK) && conn->ping_sent_usec > 0) {
                conn->ping_sent_usec = 0;
                keepalive_arm(conn, conn->last_recv_usec + conn->client->keepalive_interval_usec);
        }

        if (frame->hd.type == NGHTTP2_RST_STREAM) {
                GrpcCall *call = conn_find(conn, frame->hd.stream_id);
                if (call)
                        call->peer_reset = true;
        }
        if (frame->hd.type == NGHTTP2_GOAWAY && !conn->goaway) {
                conn->goaway = true;
                conn->goaway_last_id = frame->goaway.last_stream_id;
                (void) conn_closes_on_goaway(conn);
        }
        return 0;
}

static nghttp2_option *options_get(void) {
        static nghttp2_option *opt; /* process-wide, never freed; immutable after creation */

        if (opt)
                return opt;
        if (nghttp2_option_new(&opt) != 0)
                return NULL;
        nghttp2_option_set_no_auto_ping_ack(opt, 1);
        return opt;
}

static nghttp2_session_callbacks *callbacks_get(void) {
        static nghttp2_session_callbacks *cbs; /* process-wide, never freed; immutable after creation */

        if (cbs)
                return cbs;
        if (nghttp2_session_callbacks_new(&cbs) != 0)
                return NULL;
        nghttp2_session_callbacks_set_before_frame_send_callback(cbs, on_before_frame_send);
        nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
        nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
        return cbs;
}

/* ---- liveness
 *
 * A containerd that stops answering (a hung daemon keeps its socket open) would leave the
 * Subscribe stream waiting forever: no event, no error, no reconnect. While a stream is
 * open and nothing has been read for keepalive_interval, one HTTP/2 PING goes out; no
 * ACK (and nothing else read) within keepalive_timeout fails the connection, and its
 * calls, with -ETIMEDOUT, so the caller reconnects.
 *
 * grpc-go's server enforces a keepalive policy: with streams open, a PING sooner than
 * MinTime (default 5 min) after the previous one is a strike, unless the server sent
 * data or headers in between; after two strikes it answers GOAWAY ENHANCE_YOUR_CALM
 * "too_many_pings". Pings are only sent after keepalive_interval of silence and never
 * without an open stream (grpc-go's PermitWithoutStream is false), so with the default
 * interval of 5 min a quiet node never collects a strike; a shorter interval on a quiet
 * node may earn a GOAWAY, which costs one reconnect and re-list. */

static void keepalive_arm(Conn *conn, uint64_t at) {
        if (!conn->keepalive)
                return;
        (void) sd_event_source_set_time(conn->keepalive, at);
        (void) sd_event_source_set_enabled(conn->keepalive, SD_EVENT_ONESHOT);
}

static bool conn_has_streams(const Conn *conn) {
        for (GrpcCall *call = conn->client->calls; call; call = call->next)
                if (call->conn == conn && call->stream_id > 0 && !call->completed)
                        return true;
        return false;
}

static int on_keepalive(sd_event_source *s, uint64_t usec, void *userdata) {
        Conn *conn = userdata;
        GrpcClient *c = conn->client;

        if (conn->ping_sent_usec > 0) {
                if (conn->last_recv_usec >= conn->ping_sent_usec) { /* bytes arrived: alive */
                        conn->ping_sent_usec = 0;
                        keepalive_arm(conn, conn->last_recv_usec + c->keepalive_interval_usec);
                        return 0;
                }
                conn_fail(conn, -ETIMEDOUT, "%s stopped answering: no HTTP/2 PING ACK within %" PRIu64 " ms",
                          c->socket_path, c->keepalive_timeout_usec / 1000);
                (void) dispatch(c);
                return 0;
        }
        if (conn->connecting || usec < conn->last_recv_usec + c->keepalive_interval_usec || !conn_has_streams(conn)) {
                keepalive_arm(conn, (usec > conn->last_recv_usec ? usec : conn->last_recv_usec) + c->keepalive_interval_usec);
                return 0;
        }
        if (nghttp2_submit_ping(conn->session, NGHTTP2_FLAG_NONE, NULL) != 0) {
                conn_fail(conn, -ENOMEM, "cannot queue an HTTP/2 PING to %s", c->socket_path);
                (void) dispatch(c);
                return 0;
        }
        conn->ping_sent_usec = usec;
        keepalive_arm(conn, usec + c->keepalive_timeout_usec);
        conn_kick(conn);
        return 0;
}

static int keepalive_start(Conn *conn) {
        GrpcClient *c = conn->client;
        uint64_t now;
        if (c->keepalive_interval_usec == 0)
                return 0;
        int r = sd_event_now(c->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        conn->last_recv_usec = now;
        r = sd_event_add_time(c->event, &conn->keepalive, CLOCK_MONOTONIC, now + c->keepalive_interval_usec,
                              1000000ULL, on_keepalive, conn);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(conn->keepalive, "grpc-keepalive");
        return 0;
}

/* Open a connection: socket, connect, nghttp2 session, preface + SETTINGS queued.
 * On failure *ret is untouched and reason holds "connect to PATH: ...". */
static int conn_open(GrpcClient *c, Conn **ret, char *reason, size_t reason_size) {
        static const nghttp2_settings_entry iv[] = {
                { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
                { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
        };
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        nghttp2_session_callbacks *cbs;
        Conn *conn;
        int r;

        cbs = callbacks_get();
        if (!cbs) {
                snprintf(reason, reason_size, "connect to %s: %s", c->socket_path, strerror(ENOMEM));
                return -ENOMEM;
        }
        conn = calloc(1, sizeof(*conn));
        if (!conn) {
                snprintf(reason, reason_size, "connect to %s: %s", c->socket_path, strerror(ENOMEM));
                return -ENOMEM;
        }
        conn->fd = -1;
        conn->obuf = malloc(CONN_OBUF_SIZE);
        if (!conn->obuf) {
                r = -ENOMEM;
                goto fail_errno;
        }
        conn->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (conn->fd < 0) {
                r = -errno;
                goto fail_errno;
        }
        (void) strcpy_bounded(sa.sun_path, sizeof(sa.sun_path), c->socket_path);
        if (connect(conn->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                if (errno != EINPROGRESS) {
                        int e = errno;
                        snprintf(reason, reason_size, "connect to %s: %s", c->socket_path, strerror(e));
                        r = e == ENOENT || e == EACCES || e == ECONNREFUSED || e == ENOTSOCK ? -e : -ECONNREFUSED;
                        goto fail;
                }
                conn->connecting = true;
        }
        conn->events = EPOLLIN | EPOLLET | (conn->connecting ? EPOLLOUT : 0);
        r = sd_event_add_io(c->event, &conn->io, conn->fd, conn->events, on_conn_io, conn);
        if (r < 0)
                goto fail_errno;
        (void) sd_event_source_set_description(conn->io, "grpc-conn");
        nghttp2_option *opt = options_get(); /* without it nghttp2 would ACK every PING twice */
        if (!opt || nghttp2_session_client_new2(&conn->session, cbs, conn, opt) != 0) {
                r = -ENOMEM;
                goto fail_errno;
        }
        if (nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, iv, ELEMENTSOF(iv)) != 0 ||
            nghttp2_session_set_local_window_size(conn->session, NGHTTP2_FLAG_NONE, 0, CONNECTION_WINDOW) != 0) {
                r = -ENOMEM;
                goto fail_errno;
        }
        conn->client = c;
        r = keepalive_start(conn);
        if (r < 0)
                goto fail_errno;
        c->n_connects++;
        *ret = conn;
        return 0;

fail_errno:
        snprintf(reason, reason_size, "connect to %s: %s", c->socket_path, strerror(-r));
fail:
        conn->client = NULL;
        conn_free(conn);
        return r;
}

static int on_conn_reread(sd_event_source *s, void *userdata) {
        Conn *conn = userdata;
        return on_conn_io(conn->io, conn->fd, EPOLLIN, conn);
}

/* The turn's reads stopped with bytes left: edge-triggered, the socket will not wake us
 * for them, so the next turn reads on. */
static void conn_reread(Conn *conn) {
        if (!conn->reread) {
                if (sd_event_add_defer(conn->client->event, &conn->reread, on_conn_reread, conn) < 0) {
                        /* cannot defer: from now on every read is taken out at once and
                         * the socket watched level-triggered, which wakes us for the rest */
                        (void) conn_consume(conn, conn->client->ibuf, sizeof(conn->client->ibuf));
                        conn->level_triggered = true;
                        conn_update_events(conn);
                        return;
                }
                (void) sd_event_source_set_description(conn->reread, "grpc-reread");
        }
        (void) sd_event_source_set_enabled(conn->reread, SD_EVENT_ONESHOT);
}

static int on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Conn *conn = userdata;
        GrpcClient *c = conn->client;
        bool got = false;

        if (conn->connecting) {
                int err = 0;
                socklen_t len = sizeof(err);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        err = errno;
                if (err != 0) {
                        conn_fail(conn, err == ENOENT || err == EACCES || err == ECONNREFUSED ? -err : -ECONNREFUSED,
                                  "connect to %s: %s", c->socket_path, strerror(err));
                        goto out;
                }
                if (!(revents & (EPOLLOUT | EPOLLIN | EPOLLHUP | EPOLLERR)))
                        goto out;
                conn->connecting = false;
        }

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                /* edge-triggered: read until nothing new is left, or come back next turn;
                 * peeked while the reads are small, taken out as before once one fills
                 * the buffer (a listing) */
                bool drained = false, peek = !conn->level_triggered;
                for (int i = 0; i < CONN_READS_PER_WAKEUP; i++) {
                        size_t skip = peek ? conn->unconsumed : 0; /* handled already: peeked again, skipped */
                        ssize_t n = recv(fd, c->ibuf, sizeof(c->ibuf), MSG_DONTWAIT | (peek ? MSG_PEEK : 0));
                        if (n < 0) {
                                if (errno == EINTR)
                                        continue;
                                if (errno == EAGAIN) {
                                        drained = true;
                                        break;
                                }
                                conn_broken(conn, -errno);
                                goto out;
                        }
                        if (n == 0) {
                                conn_fail(conn, -EPROTO, "connection closed by %s before grpc-status",
                                          c->socket_path);
                                goto out;
                        }
                        if (peek && (size_t) n <= skip) {
                                /* nothing new behind them (the peer closed, or a wake-up for
                                 * bytes read already): take them out, and look again */
                                int r = conn_consume(conn, c->ibuf, sizeof(c->ibuf));
                                if (r < 0) {
                                        conn_broken(conn, r);
                                        goto out;
                                }
                                continue;
                        }
                        got = true;
                        if (conn->keepalive)
                                (void) sd_event_now(c->event, CLOCK_MONOTONIC, &conn->last_recv_usec);
                        conn->in_nghttp2++;
                        ssize_t k = nghttp2_session_mem_recv(conn->session, c->ibuf + skip, (size_t) n - skip);
                        conn->in_nghttp2--;
                        if (k < 0) {
                                conn_fail(conn, -EPROTO, "HTTP/2 error on the connection to %s: %s", c->socket_path,
                                          nghttp2_strerror((int) k));
                                goto out;
                        }
                        bool more = (size_t) n == sizeof(c->ibuf);
                        if (peek) {
                                conn->unconsumed = (size_t) n;
                                if (more || conn->unconsumed > CONN_UNCONSUMED_MAX) {
                                        int r = conn_consume(conn, c->ibuf, sizeof(c->ibuf));
                                        if (r < 0) {
                                                conn_broken(conn, r);
                                                goto out;
                                        }
                                        peek = false;
                                }
                        }
                        if (!more) {
                                drained = true;
                                break;
                        }
                }
                if (!drained)
                        conn_reread(conn);
        }

        /* written after dispatch(): what the completed calls' callbacks start goes out in
         * the same send() as what nghttp2 queued while reading (ACKs, WINDOW_UPDATEs) */
        conn_kick(conn);
        conn_burst_hold(conn, got);
out:
        if (!dispatch(c))
                return 0;
        /* what the read's messages started waiting for the read's end goes out in this
         * turn's send() too */
        if (got && c->after_read)
                c->after_read(c->after_read_userdata);
        client_flush_due(c);
        return 0;
}

/* ---- calls */

GrpcClient *grpc_client_free(GrpcClient *c) {
        if (!c)
                return NULL;
        if (c->dead)
                *c->dead = true;
        /* sessions first, so freeing the calls sends nothing */
        while (c->draining)
                conn_free(c->draining);
        if (c->conn)
                conn_free(c->conn);
        while (c->calls) {
                GrpcCall *call = c->calls;
                call->conn = NULL;
                call->stream_id = 0;
                call_free(call);
        }
        sd_event_source_disable_unref(c->dispatcher);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

static int on_call_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        GrpcCall *call = userdata;
        GrpcClient *c = call->client;

        call_complete(call, -ETIMEDOUT, "%s: deadline of %.3fs exceeded", call->method, call->timeout_usec / 1e6);
        (void) dispatch(c);
        return 0;
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

#define NV(n, v) { (uint8_t *) (n), (uint8_t *) (v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE }

int grpc_call_start(GrpcClient *c, const char *method_path, const char *ns, const void *req, size_t req_len,
                    uint64_t timeout_usec, grpc_message_handler_t on_message, grpc_done_handler_t on_done,
                    void *userdata, GrpcCall **ret) {
        char reason[GRPC_MESSAGE_MAX], timeout[sizeof c->timeout_text] = "";
        GrpcCall *call;
        int r;

        if (!c || !method_path || (req_len > 0 && !req))
                return -EINVAL;
        if (!method_valid(method_path) || (ns && !namespace_valid(ns)))
                return -EINVAL;
        if (req_len > c->max_message)
                return -EMSGSIZE;
        if (timeout_usec > 0 && timeout_usec != c->timeout_usec) {
                if (grpc_timeout_format(timeout_usec, timeout, sizeof(timeout)) < 0)
                        return -EINVAL;
                memcpy(c->timeout_text, timeout, sizeof(timeout));
                c->timeout_usec = timeout_usec;
        }

        call = calloc(1, sizeof(*call));
        if (!call)
                return -ENOMEM;
        (void) strcpy_bounded(call->method, sizeof(call->method), method_path);
        call->timeout_usec = timeout_usec;
        call->on_message = on_message;
        call->on_done = on_done;
        call->userdata = userdata;
        call->status.code = -1;
        grpc_reader_init(&call->reader, c->max_message);
        grpc_headers_init(&call->hdrs);

        r = grpc_frame_encode(req, req_len, &call->req, &call->req_len);
        if (r < 0)
                goto fail;
        if (timeout_usec > 0) {
                /* from now, not from the loop's cached time of its last wakeup */
                r = sd_event_add_time(c->event, &call->timer, CLOCK_MONOTONIC, now_usec_monotonic() + timeout_usec,
                                      DEADLINE_ACCURACY_USEC, on_call_deadline, call);
                if (r < 0)
                        goto fail;
        }

        /* running from here on: every failure below reaches on_done, from the loop */
        call->client = c;
        call->prev = c->calls_tail;
        if (c->calls_tail)
                c->calls_tail->next = call;
        else
                c->calls = call;
        c->calls_tail = call;
        if (ret)
                *ret = call;

        if (!c->conn) {
                r = conn_open(c, &c->conn, reason, sizeof(reason));
                if (r < 0) {
                        call_complete(call, r, "%s", reason);
                        return 0;
                }
        }

        nghttp2_nv nva[9] = {
                NV(":method", "POST"),
                NV(":scheme", "http"),
                NV(":path", call->method),
                NV(":authority", "localhost"),
                NV("te", "trailers"),
                NV("content-type", "application/grpc"),
                NV("user-agent", "pullwatch/" PULLWATCH_VERSION),
        };
        size_t n = 7;
        if (ns)
                nva[n++] = (nghttp2_nv) NV("containerd-namespace", ns);
        if (timeout_usec > 0)
                nva[n++] = (nghttp2_nv) NV("grpc-timeout", c->timeout_text);
        nghttp2_data_provider prd = { .read_callback = on_data_source_read };

        int32_t id = nghttp2_submit_request(c->conn->session, NULL, nva, n, &prd, NULL);
        if (id < 0) {
                /* stream ids exhausted (or out of memory): this connection takes no more calls */
                if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE)
                        (void) conn_closes_on_goaway(c->conn);
                call->status.code = GRPC_STATUS_UNAVAILABLE;
                call_complete(call, 0, "%s: cannot start a stream: %s; retry", call->method, nghttp2_strerror(id));
                return 0;
        }
        call->conn = c->conn;
        call->stream_id = id;
        conn_kick(c->conn);
        return 0;

fail:
        call_free(call);
        return r;
}

uint8_t *grpc_call_take_message(GrpcCall *call) {
        return call ? grpc_reader_take(&call->reader) : NULL;
}

void grpc_call_cancel(GrpcCall *call) {
        GrpcClient *c;

        if (!call || call->cancelled || call->finished || !call->client)
                return;
        c = call->client;
        if (c->in_callback > 0) {
                /* inside an on_message: its reader is still running; the call is reset
                 * now and freed by dispatch() once the I/O handler unwinds */
                call->cancelled = true;
                if (!call->completed)
                        call_complete(call, -ECANCELED, NULL);
                return;
        }
        call_free(call);
}
