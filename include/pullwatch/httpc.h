/* A small HTTP/1.1 client on the agent's sd-event loop, for the shipper: one
 * connection to one endpoint, kept alive between requests, one POST in flight at a
 * time, TLS through GnuTLS loaded on demand (include/pullwatch/tlsshim.h).
 *
 * Why not libcurl: libcurl maps its whole dependency tree (OpenSSL, GnuTLS, Kerberos,
 * LDAP, RTMP, libssh2) to make one kind of request to one collector that speaks
 * HTTP/1.1; see the README's shipping section for the figures.
 *
 * Nothing blocks the loop: a host name is resolved by a short-lived thread running
 * getaddrinfo() (a numeric address needs no resolver), connect() and the TLS handshake are non-blocking, and
 * every phase is bounded by a deadline. A request that fails on a reused keep-alive
 * connection before any byte of the response came (the server closed it while idle) is
 * sent once more on a fresh connection, as browsers and libcurl do. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

typedef struct Httpc Httpc;

/* Strings are borrowed for the duration of httpc_new() only (copied). */
typedef struct HttpcConfig {
        const char *url;                /* http://HOST[:PORT][/PATH] or https://…; HOST may be [v6] */
        const char *ca_file;            /* PEM bundle; NULL: the system trust store */
        const char *client_cert;        /* PEM, mTLS; with client_key */
        const char *client_key;
        bool insecure;                  /* no certificate or host name verification (tests only) */
        uint64_t connect_timeout_usec;  /* resolve + TCP + TLS handshake; 0: 10 s */
        uint64_t timeout_usec;          /* whole request, from httpc_post() to the last byte; 0: 30 s */
        uint64_t max_response_body;     /* body bytes read before the response is cut (truncated); 0: 1 MiB */
} HttpcConfig;

typedef struct HttpcResult {
        bool transport_ok;      /* a response was read (maybe truncated); status is valid */
        int status;
        bool truncated;         /* the body exceeded max_response_body */
        const char *retry_after; /* the Retry-After value, NULL if absent */
        const char *excerpt;    /* the first bytes of the body (raw, not NUL-terminated) */
        size_t excerpt_len;
        const char *error;      /* one line, "" when transport_ok */
} HttpcResult;

/* Called once per httpc_post(), from the event loop (never from within httpc_post()).
 * res and its strings are borrowed for the call. The callback may post the next
 * request or free the client. */
typedef void (*httpc_done_t)(Httpc *c, const HttpcResult *res, void *userdata);

/* *ret owned by the caller, released with httpc_free(); e is borrowed. For https://, the
 * TLS library is loaded and the CA file, client certificate and key are read now: a
 * bad file is an error here (-ENOENT, -EINVAL, ...) with one line in err (optional). */
int httpc_new(Httpc **ret, const HttpcConfig *cfg, sd_event *e, char *err, size_t errlen);
/* Accepts NULL. A request in flight is dropped (its callback is not called). */
Httpc *httpc_free(Httpc *c);

/* POST body to the URL's path. headers: "Name: value" lines (no CR/LF; Host,
 * Content-Length and User-Agent are added), copied during the call — the buffer they
 * are copied to is wiped when the request settles (it may hold an Authorization
 * header). body is
 * borrowed until done is called or the client is freed. -EBUSY if a request is in
 * flight, -EINVAL for a header with CR or LF, -ENOMEM. */
int httpc_post(Httpc *c, const char *const *headers, size_t n_headers, const void *body, size_t body_len,
               httpc_done_t done, void *userdata);

/* The request in flight is dropped and the connection closed; done is not called. */
void httpc_cancel(Httpc *c);

/* Statistics for tests and the benchmark: connections opened, requests completed. */
typedef struct HttpcStats {
        uint64_t connections;
        uint64_t requests;
        uint64_t stale_retries; /* requests resent after a reused connection turned out closed */
} HttpcStats;
void httpc_get_stats(const Httpc *c, HttpcStats *ret);
