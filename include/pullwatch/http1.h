/* An incremental HTTP/1.1 response parser (RFC 9112), for the shipper's own client
 * (agent/httpc.c). Pure: bytes in, a parsed response out; no I/O, no allocation.
 *
 * What it understands: the status line (HTTP/1.0 and HTTP/1.1), interim 1xx responses
 * (skipped), header fields (Retry-After kept, Content-Length, Transfer-Encoding:
 * chunked, Connection: close / keep-alive), a body delimited by Content-Length, by
 * chunked coding (extensions and trailers skipped), or by the end of the connection,
 * and bodiless answers (204, 304, 1xx; HEAD is never sent). Everything a peer controls
 * is bounded: the header block (HTTP1_HEADER_MAX), one chunk-size line, the body
 * (max_body given at init; a longer body ends parsing with truncated set, the status
 * being known). Obsolete line folding, a Content-Length list with differing values,
 * both Content-Length and Transfer-Encoding, or a Transfer-Encoding other than chunked
 * are refused (-EBADMSG): the message could be read two ways (request smuggling). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP1_HEADER_MAX (16U * 1024U)   /* status line + fields of one response */
#define HTTP1_LINE_MAX 1024U             /* one chunk-size line or trailer field */
#define HTTP1_RETRY_AFTER_MAX 64U        /* longest Retry-After value kept (an HTTP-date is 29) */
#define HTTP1_EXCERPT_MAX 200U           /* first bytes of the body kept for error messages */

typedef enum Http1State {
        HTTP1_STATUS,      /* reading the status line + header block */
        HTTP1_BODY_LENGTH, /* Content-Length body */
        HTTP1_CHUNK_SIZE,  /* chunk-size line */
        HTTP1_CHUNK_DATA,
        HTTP1_CHUNK_CRLF,  /* the CRLF after chunk data */
        HTTP1_TRAILER,     /* trailer fields after the last chunk */
        HTTP1_BODY_EOF,    /* body runs until the peer closes */
        HTTP1_DONE,
} Http1State;

typedef struct Http1Parser {
        /* results, valid once http1_feed() returned 1 (status also once the head is in) */
        int status;               /* 100..999 */
        int minor;                /* HTTP/1.<minor> */
        bool keep_alive;          /* the connection may carry the next request */
        bool truncated;           /* the body exceeded max_body: parsing stopped there */
        bool has_retry_after;
        char retry_after[HTTP1_RETRY_AFTER_MAX + 1]; /* NUL-terminated, trimmed */
        char excerpt[HTTP1_EXCERPT_MAX];             /* first body bytes, raw */
        size_t excerpt_len;
        uint64_t body_len;        /* body bytes seen (decoded from chunks) */

        /* internal */
        Http1State state;
        uint64_t max_body;
        uint64_t remaining;       /* of the Content-Length body or the current chunk */
        bool has_length, chunked, saw_close;
        size_t head_len;          /* bytes of the current head (status + fields) seen */
        size_t line_len;          /* bytes of the current line, buffered in line[] */
        size_t line_seen;         /* bytes of the current line seen (may exceed line[]) */
        char line[HTTP1_LINE_MAX];
        bool line_overflow;
} Http1Parser;

/* max_body: body bytes read before parsing stops with truncated = true. */
void http1_init(Http1Parser *p, uint64_t max_body);

/* Feed len bytes. Returns 0 when more input is needed, 1 when the response is complete
 * (*ret_used tells how many bytes of data belong to it: the rest would be the next
 * response, which a client without pipelining never gets), -EBADMSG for a malformed
 * response, -E2BIG for a header block or line beyond its bound. After 1 or an error,
 * feeding again returns the same result. */
int http1_feed(Http1Parser *p, const void *data, size_t len, size_t *ret_used);

/* The peer closed the connection. Returns 1 if that completes the response (a body
 * delimited by the close), -EPIPE if the response was cut short (or never began). */
int http1_eof(Http1Parser *p);

/* Whether any byte of a response was parsed (a reused keep-alive connection that the
 * server had already closed fails before the first byte: safe to resend). */
bool http1_started(const Http1Parser *p);
