/* gRPC over HTTP/2 over a unix socket, on libnghttp2 + sd-event.
 *
 * Two layers:
 *  - a pure core (framing, a streaming reassembler, header/trailer parsing,
 *    grpc-message percent-decoding, grpc-timeout formatting, status names) with no I/O;
 *  - a client: ONE persistent HTTP/2 (prior knowledge) connection per GrpcClient, opened
 *    lazily by the first call, one stream per call. libcurl 7.88.1 cannot reuse an h2c
 *    prior-knowledge connection (curl #10634, fixed in 8.0.0), so the client drives
 *    nghttp2 itself. A connection that breaks fails its calls once; the next call
 *    reconnects. After GOAWAY, new calls go to a new connection. The server's
 *    MAX_CONCURRENT_STREAMS is honoured (nghttp2 queues the HEADERS beyond it). A PING after a
 *    silence detects a daemon that stopped answering (grpc_client_set_keepalive()). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#define GRPC_FRAME_HEADER_SIZE 5
#define GRPC_MESSAGE_MAX 512      /* grpc-message after decoding / our reason lines, with NUL */
#define GRPC_DEFAULT_MAX_MESSAGE (16U << 20) /* containerd's own send limit */
#define GRPC_SOCKET_PATH_MAX 107  /* sun_path minus NUL */

enum {
        GRPC_STATUS_OK = 0,
        GRPC_STATUS_CANCELLED = 1,
        GRPC_STATUS_UNKNOWN = 2,
        GRPC_STATUS_INVALID_ARGUMENT = 3,
        GRPC_STATUS_DEADLINE_EXCEEDED = 4,
        GRPC_STATUS_NOT_FOUND = 5,
        GRPC_STATUS_ALREADY_EXISTS = 6,
        GRPC_STATUS_PERMISSION_DENIED = 7,
        GRPC_STATUS_RESOURCE_EXHAUSTED = 8,
        GRPC_STATUS_FAILED_PRECONDITION = 9,
        GRPC_STATUS_ABORTED = 10,
        GRPC_STATUS_OUT_OF_RANGE = 11,
        GRPC_STATUS_UNIMPLEMENTED = 12,
        GRPC_STATUS_INTERNAL = 13,
        GRPC_STATUS_UNAVAILABLE = 14,
        GRPC_STATUS_DATA_LOSS = 15,
        GRPC_STATUS_UNAUTHENTICATED = 16,
        _GRPC_STATUS_MAX,
};

/* "NOT_FOUND" etc.; static string, NULL if out of range. */
const char *grpc_status_to_string(int code);
/* The errno a caller would want for a status: NOT_FOUND → -ENOENT, DEADLINE_EXCEEDED →
 * -ETIMEDOUT, UNIMPLEMENTED → -EOPNOTSUPP, …; OK → 0; unknown codes → -EIO. */
int grpc_status_to_errno(int code);

/* ---- pure core ---- */

/* Write the 5-byte prefix (flag 0, big-endian length) for a message of len bytes.
 * -EMSGSIZE if len does not fit in 32 bits. */
int grpc_frame_header(uint8_t hdr[GRPC_FRAME_HEADER_SIZE], size_t len);
/* *ret (malloc()ed, owned by the caller) = prefix + msg. msg may be NULL when len is 0. */
int grpc_frame_encode(const void *msg, size_t len, uint8_t **ret, size_t *ret_len);

/* Streaming reassembler: accepts arbitrary chunk boundaries. After an error it stays
 * failed and returns the same error. error holds a one-line reason. */
typedef struct GrpcReader {
        size_t max_message;
        uint8_t hdr[GRPC_FRAME_HEADER_SIZE];
        size_t hdr_have;
        uint8_t *buf; /* owned */
        uint8_t *msg; /* owned: the complete message, during the callback (grpc_reader_take()) */
        size_t need, have;
        int failed;
        uint64_t n_messages;
        char error[128];
} GrpcReader;

/* Borrowed for the callback's duration; return < 0 to stop (feed returns that value). */
typedef int (*grpc_frame_cb_t)(const uint8_t *msg, size_t len, void *userdata);

void grpc_reader_init(GrpcReader *r, size_t max_message);
void grpc_reader_done(GrpcReader *r); /* frees the buffer; the reader may be re-inited */
/* Feed a chunk; calls cb once per complete message. Errors: -EMSGSIZE (message larger
 * than max_message), -EPROTO (compressed flag set: we never negotiate compression),
 * -EBADMSG (flag byte other than 0/1), -ENOMEM, or cb's own negative value. */
int grpc_reader_feed(GrpcReader *r, const void *data, size_t len, grpc_frame_cb_t cb, void *userdata);
/* True when no partial frame is pending (a clean end of stream). */
bool grpc_reader_idle(const GrpcReader *r);
/* From inside the callback: the message it was given, malloc()ed, now the caller's to
 * free() (the reader no longer frees it); NULL elsewhere or once taken. */
uint8_t *grpc_reader_take(GrpcReader *r);

/* Response metadata from headers and trailers. */
typedef struct GrpcHeaders {
        int http_status;  /* 0 until seen */
        bool content_type_seen;
        bool content_type_grpc; /* application/grpc or application/grpc+... */
        int grpc_status;  /* -1 until seen */
        char grpc_message[GRPC_MESSAGE_MAX]; /* percent-decoded, truncated if longer */
} GrpcHeaders;

void grpc_headers_init(GrpcHeaders *h);
/* One decoded header field (name, value as HTTP/2 delivers them; not NUL-terminated).
 * Names are case-insensitive; unknown headers are ignored. -EBADMSG on a malformed
 * grpc-status or :status value. */
int grpc_headers_parse_pair(GrpcHeaders *h, const char *name, size_t nlen, const char *value, size_t vlen);
/* The gRPC status for a stream reset with HTTP/2 error code h2_error (gRPC's doc/PROTOCOL-HTTP2.md):
 * REFUSED_STREAM → UNAVAILABLE, CANCEL → CANCELLED, ENHANCE_YOUR_CALM →
 * RESOURCE_EXHAUSTED, INADEQUATE_SECURITY → PERMISSION_DENIED, anything else → INTERNAL. */
int grpc_status_from_h2_error(uint32_t h2_error);
/* Percent-decode len bytes of in into out (always NUL-terminated). Malformed escapes are
 * kept literally. Returns the decoded length, or -ENOBUFS if it was truncated. */
int grpc_percent_decode(const char *in, size_t len, char *out, size_t outsize);
/* grpc-timeout value: at most 8 digits and a unit (u, m, S, M, H), rounded up so the
 * deadline never shrinks. -EINVAL for 0, -ENOBUFS if buf is too small (needs 10). */
int grpc_timeout_format(uint64_t usec, char *buf, size_t size);

/* ---- client ---- */

typedef struct GrpcClient GrpcClient;
typedef struct GrpcCall GrpcCall;

typedef struct GrpcStatus {
        int code;                      /* gRPC status when error == 0; -1 otherwise */
        char message[GRPC_MESSAGE_MAX]; /* grpc-message, or the transport error's reason */
} GrpcStatus;

/* One complete response message, borrowed for the callback. Return < 0 to abort the
 * call: on_done then gets that error. */
typedef int (*grpc_message_handler_t)(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
/* Called exactly once per call not cancelled. error == 0: the server ended the call
 * with status->code (which may be non-OK). error < 0: transport failure:
 * -ENOENT (socket missing), -ECONNREFUSED (nobody listening), -EACCES, -ETIMEDOUT
 * (deadline), -EMSGSIZE (message over the limit), -EBADMSG (malformed frame or
 * header), -EPROTO (stream ended without grpc-status, or compressed frame), -EIO
 * (other), or the on_message error. A connection that breaks (peer closed it, read or
 * write error, HTTP/2 protocol error) fails each of its calls once with -EPROTO.
 * A stream the server resets without a grpc-status is error == 0 with the code of
 * grpc_status_from_h2_error(); calls the server did not process because of GOAWAY (or
 * that could not be sent) are error == 0, UNAVAILABLE: safe to retry.
 * status->message always holds a one-line reason.
 * on_done runs from the event loop, never from inside grpc_call_start().
 * status is borrowed; the call is freed when on_done returns. */
typedef void (*grpc_done_handler_t)(GrpcCall *call, int error, const GrpcStatus *status, void *userdata);

/* e: borrowed (a reference is taken). socket_path is copied;
 * > GRPC_SOCKET_PATH_MAX bytes → -ENAMETOOLONG. max_message 0 → GRPC_DEFAULT_MAX_MESSAGE.
 * No connection is made until the first call. *ret is owned, freed with grpc_client_free(). */
int grpc_client_new(GrpcClient **ret, sd_event *e, const char *socket_path, size_t max_message);
/* Cancels every call still running without calling on_done, closes the connection.
 * Allowed from on_done; not from on_message. Accepts NULL. */
GrpcClient *grpc_client_free(GrpcClient *c);
const char *grpc_client_socket_path(const GrpcClient *c);
size_t grpc_client_max_message(const GrpcClient *c);
/* Liveness of the connection (see grpc.c): while a stream is open and nothing has been
 * read for interval_usec, send an HTTP/2 PING; no answer within timeout_usec fails the
 * connection's calls with -ETIMEDOUT ("… stopped answering …"). interval 0: never ping
 * (the default). Applies to connections opened after the call. -EINVAL for an interval
 * without a timeout. */
int grpc_client_set_keepalive(GrpcClient *c, uint64_t interval_usec, uint64_t timeout_usec);

/* Burst window (0, the default: off). Once a stream's messages (containerd's events) come
 * less than window_usec apart, the connection is read at most once per window: what
 * arrives meanwhile (events, lookup replies) is read in one wake-up instead of one each,
 * until a read finds nothing. Costs up to one window per message read late (an event and
 * its lookup's reply: up to two). Frames to send still leave at once; only a send that
 * found the socket full waits up to a window for it to drain. -EINVAL above
 * GRPC_BURST_WINDOW_MAX_USEC. Takes effect at once. */
#define GRPC_BURST_WINDOW_MAX_USEC 1000000ULL
int grpc_client_set_burst_window(GrpcClient *c, uint64_t window_usec);
/* cb(userdata) once the messages of a read of the connection were handled (and the calls
 * they completed), before this loop turn's send(): what the read's messages queued to do
 * "once the read is done" (a batch of look-ups) is started there and leaves with the
 * rest. NULL: none. The callback may start calls, not free the client. */
void grpc_client_set_after_read(GrpcClient *c, void (*cb)(void *userdata), void *userdata);
/* Reads made at the end of a burst window that found bytes (what waited for the window). */
uint64_t grpc_client_burst_reads(const GrpcClient *c);
/* How many connections this client has opened (connect() succeeded or is in progress). */
uint64_t grpc_client_connects(const GrpcClient *c);
/* How many send() calls wrote bytes to containerd: one per loop turn that had anything
 * to write (requests, ACKs, WINDOW_UPDATEs), however many calls that turn started. */
uint64_t grpc_client_sends(const GrpcClient *c);
/* How many BDP-estimation PINGs containerd (grpc-go) sent: one per request whose DATA
 * frame it read with none of its PINGs unacknowledged. */
uint64_t grpc_client_bdp_pings(const GrpcClient *c);

/* Start a call. method_path "/pkg.Service/Method"; ns: value of the containerd-namespace
 * header, NULL for none; req/req_len: the serialized request (copied);
 * timeout_usec 0: no deadline (streams); otherwise a grpc-timeout header and a local
 * timer (-ETIMEDOUT, the stream is reset). A connection failure (-ENOENT,
 * -ECONNREFUSED, …) is reported through on_done, like every failure after validation.
 * *ret (optional) is borrowed: valid until on_done returns or grpc_call_cancel(). */
int grpc_call_start(GrpcClient *c, const char *method_path, const char *ns, const void *req, size_t req_len,
                    uint64_t timeout_usec, grpc_message_handler_t on_message, grpc_done_handler_t on_done,
                    void *userdata, GrpcCall **ret);
/* Stop a call (RST_STREAM CANCEL); on_done is not called. Safe from inside this call's
 * own on_message (the call is then freed once the I/O handler unwinds).
 * Must not be called from (or after) on_done. Accepts NULL. */
void grpc_call_cancel(GrpcCall *call);
/* From inside this call's on_message: the message it was given, malloc()ed, now the
 * caller's to free() — a unary reply kept without a copy (a 10,000-image listing is
 * ~2.9 MB). NULL once taken. */
uint8_t *grpc_call_take_message(GrpcCall *call);
