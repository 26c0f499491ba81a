/* See include/pullwatch/httpc.h.
 *
 * Two layers of state: the connection (none → resolving → connecting → handshaking →
 * ready) and the request (none → writing → reading). One io source serves the socket in
 * every phase; one timer holds the current deadline; completion goes through a defer
 * source so the callback never runs inside httpc_post() or inside our own io handler's
 * bookkeeping. */
#include "pullwatch/httpc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pullwatch/dynbuf.h"
#include "pullwatch/http1.h"
#include "pullwatch/tlsshim.h"
#include "pullwatch/util.h"

#define HTTPC_HOST_MAX 256
#define HTTPC_PATH_MAX 2048
#define HTTPC_HEAD_MAX (64U * 1024U) /* the request head we build (headers are bounded by the caller) */
#define HTTPC_ERROR_MAX 256

/* A host name lookup, run by a detached thread with the blocking getaddrinfo() (glibc's
 * getaddrinfo_a() notification thread was seen not to fire under ASan). Shared by the
 * thread and the client, freed by whichever lets go last; the thread signals the eventfd
 * when res/rc are set. */
typedef struct Lookup {
        int refs; /* atomic */
        int fd;   /* eventfd, owned */
        char host[256];
        char port[8];
        int rc;
        int err; /* errno for EAI_SYSTEM */
        struct addrinfo *res;
} Lookup;

static void lookup_unref(Lookup *l) {
        if (l && __atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL) == 0) {
                if (l->res)
                        freeaddrinfo(l->res);
                if (l->fd >= 0)
                        close(l->fd);
                free(l);
        }
}

static void *lookup_thread(void *p) {
        Lookup *l = p;
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP,
                                  .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG };
        int rc = getaddrinfo(l->host, l->port, &hints, &l->res);
        l->err = errno;
        __atomic_store_n(&l->rc, rc, __ATOMIC_RELEASE);
        uint64_t one = 1;
        (void) !write(l->fd, &one, sizeof one);
        lookup_unref(l);
        return NULL;
}

typedef enum ConnState {
        CONN_NONE,
        CONN_RESOLVING,
        CONN_CONNECTING,
        CONN_HANDSHAKE,
        CONN_READY,
} ConnState;

typedef enum ReqState {
        REQ_NONE,
        REQ_WAIT_CONN, /* posted; the connection is being made */
        REQ_WRITING,
        REQ_READING,
        REQ_DONE,      /* result stored, callback pending on the defer source */
} ReqState;

struct Httpc {
        sd_event *event;
        bool tls;
        char host[HTTPC_HOST_MAX]; /* without brackets */
        char port[8];
        char host_header[HTTPC_HOST_MAX + 10];
        char path[HTTPC_PATH_MAX];
        bool host_numeric;
        bool insecure;
        uint64_t connect_timeout_usec, timeout_usec, max_response_body;

        gnutls_certificate_credentials_t cred;

        /* connection */
        ConnState conn;
        int fd;
        gnutls_session_t session;
        sd_event_source *io;
        struct addrinfo *addrs; /* owned (freeaddrinfo) */
        struct addrinfo *addr_next;
        char addr_text[INET6_ADDRSTRLEN + 8];
        int last_connect_errno;
        bool reused;            /* the request runs on a connection that carried one before */
        unsigned requests_on_conn;

        /* resolver: a lookup in flight, shared with its thread */
        Lookup *lookup;
        sd_event_source *lookup_io;

        /* request */
        ReqState req;
        DynBuf head;            /* request line + headers; wiped after sending */
        const char *body;       /* borrowed */
        size_t body_len;
        size_t sent;            /* bytes of head + body written */
        Http1Parser parser;
        httpc_done_t done;
        void *userdata;
        bool stale_retried;
        uint64_t req_deadline;

        sd_event_source *timer;
        sd_event_source *defer;

        /* result, valid in REQ_DONE */
        bool res_ok;
        char res_error[HTTPC_ERROR_MAX];

        HttpcStats stats;
};

static void conn_close(Httpc *c);
static int conn_start(Httpc *c);
static void req_write(Httpc *c);
static void req_read(Httpc *c);

_printf_(3, 4) static int set_err(char *err, size_t errlen, const char *fmt, ...) {
        va_list ap;
        if (err && errlen > 0) {
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return 0;
}

/* ---- URL ---- */

static int parse_url(Httpc *c, const char *url, char *err, size_t errlen) {
        const char *p;
        if (!url)
                return -EINVAL;
        if (strncasecmp(url, "https://", 8) == 0) {
                c->tls = true;
                p = url + 8;
        } else if (strncasecmp(url, "http://", 7) == 0) {
                p = url + 7;
        } else {
                set_err(err, errlen, "endpoint URL must start with http:// or https://");
                return -EINVAL;
        }
        const char *auth_end = p + strcspn(p, "/?#");
        if (memchr(p, '@', (size_t) (auth_end - p))) {
                set_err(err, errlen, "endpoint URL must not carry user:password@ (use a bearer token file)");
                return -EINVAL;
        }
        const char *host = p, *host_end, *port = NULL;
        if (*p == '[') {
                host = p + 1;
                host_end = memchr(host, ']', (size_t) (auth_end - host));
                if (!host_end) {
                        set_err(err, errlen, "endpoint URL: unterminated [IPv6 address]");
                        return -EINVAL;
                }
                if (host_end + 1 < auth_end) {
                        if (host_end[1] != ':') {
                                set_err(err, errlen, "endpoint URL: junk after the [IPv6 address]");
                                return -EINVAL;
                        }
                        port = host_end + 2;
                }
        } else {
                host_end = memchr(p, ':', (size_t) (auth_end - p));
                if (host_end)
                        port = host_end + 1;
                else
                        host_end = auth_end;
        }
        size_t hlen = (size_t) (host_end - host);
        if (hlen == 0 || hlen >= sizeof c->host) {
                set_err(err, errlen, "endpoint URL: missing or too long host");
                return -EINVAL;
        }
        memcpy(c->host, host, hlen);
        c->host[hlen] = 0;
        for (size_t i = 0; i < hlen; i++)
                if (!isalnum((unsigned char) c->host[i]) && !strchr(".-_:%", c->host[i])) {
                        set_err(err, errlen, "endpoint URL: invalid character in the host");
                        return -EINVAL;
                }
        unsigned long portnum = c->tls ? 443 : 80;
        if (port) {
                size_t plen = (size_t) (auth_end - port);
                char buf[8];
                if (plen == 0 || plen > 5) {
                        set_err(err, errlen, "endpoint URL: invalid port");
                        return -EINVAL;
                }
                memcpy(buf, port, plen);
                buf[plen] = 0;
                char *e = NULL;
                portnum = strtoul(buf, &e, 10);
                if (!e || *e || portnum == 0 || portnum > 65535 || !isdigit((unsigned char) buf[0])) {
                        set_err(err, errlen, "endpoint URL: invalid port");
                        return -EINVAL;
                }
        }
        snprintf(c->port, sizeof c->port, "%lu", portnum);
        bool v6 = strchr(c->host, ':') != NULL;
        bool default_port = portnum == (c->tls ? 443UL : 80UL);
        snprintf(c->host_header, sizeof c->host_header, "%s%s%s%s%s", v6 ? "[" : "", c->host, v6 ? "]" : "",
                 default_port ? "" : ":", default_port ? "" : c->port);
        /* path + query, never the fragment */
        const char *path = auth_end;
        size_t plen = strcspn(path, "#");
        if (plen == 0) {
                snprintf(c->path, sizeof c->path, "/");
        } else {
                if (plen >= sizeof c->path) {
                        set_err(err, errlen, "endpoint URL: path too long");
                        return -EINVAL;
                }
                if (*path == '?')
                        snprintf(c->path, sizeof c->path, "/%.*s", (int) plen, path);
                else
                        snprintf(c->path, sizeof c->path, "%.*s", (int) plen, path);
        }
        for (const char *q = c->path; *q; q++)
                if ((unsigned char) *q <= 0x20 || *q == 0x7f) {
                        set_err(err, errlen, "endpoint URL: space or control character in the path");
                        return -EINVAL;
                }
        struct in6_addr a6;
        struct in_addr a4;
        c->host_numeric = inet_pton(AF_INET, c->host, &a4) == 1 || inet_pton(AF_INET6, c->host, &a6) == 1;
        return 0;
}

/* ---- completion ---- */

static void timer_off(Httpc *c) {
        if (c->timer)
                (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
}

static int timer_at(Httpc *c, uint64_t deadline) {
        int r = sd_event_source_set_time(c->timer, deadline);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        return r;
}

static void head_wipe(Httpc *c) {
        if (c->head.data)
                explicit_bzero(c->head.data, c->head.cap);
        dynbuf_free(&c->head);
}

/* Store the outcome; the callback runs from the defer source. */
_printf_(3, 4) static void req_finish(Httpc *c, bool ok, const char *fmt, ...) {
        if (c->req == REQ_NONE || c->req == REQ_DONE)
                return;
        head_wipe(c);
        c->res_ok = ok;
        c->res_error[0] = 0;
        if (!ok && fmt) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(c->res_error, sizeof c->res_error, fmt, ap);
                va_end(ap);
                for (char *q = c->res_error; *q; q++)
                        if (*q == '\n' || *q == '\r')
                                *q = ' ';
        }
        if (ok)
                c->stats.requests++;
        c->req = REQ_DONE;
        timer_off(c);
        (void) sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
}

static int on_defer(sd_event_source *s, void *userdata) {
        Httpc *c = userdata;
        if (c->req != REQ_DONE)
                return 0;
        HttpcResult res = {
                .transport_ok = c->res_ok,
                .status = c->res_ok ? c->parser.status : 0,
                .truncated = c->res_ok && c->parser.truncated,
                .retry_after = c->res_ok && c->parser.has_retry_after ? c->parser.retry_after : NULL,
                .excerpt = c->parser.excerpt,
                .excerpt_len = c->res_ok ? c->parser.excerpt_len : 0,
                .error = c->res_error,
        };
        httpc_done_t done = c->done;
        void *ud = c->userdata;
        c->req = REQ_NONE;
        c->done = NULL;
        c->body = NULL;
        if (done)
                done(c, &res, ud); /* may post again or free c: nothing after this */
        return 0;
}

/* The connection failed while a request used it: resend once on a fresh connection
 * if it was a reused one and nothing of the response came; otherwise fail. */
_printf_(2, 3) static void req_conn_failed(Httpc *c, const char *fmt, ...) {
        char msg[HTTPC_ERROR_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        bool was_reused = c->reused;
        bool started = http1_started(&c->parser);
        conn_close(c);
        if (c->req == REQ_WRITING || c->req == REQ_READING) {
                if (was_reused && !started && !c->stale_retried) {
                        c->stale_retried = true;
                        c->stats.stale_retries++;
                        c->sent = 0;
                        http1_init(&c->parser, c->max_response_body);
                        c->req = REQ_WAIT_CONN;
                        int r = conn_start(c);
                        if (r < 0)
                                req_finish(c, false, "reconnecting to %s:%s: %s", c->host, c->port, strerror(-r));
                        return;
                }
                req_finish(c, false, "%s", msg);
        } else if (c->req == REQ_WAIT_CONN)
                req_finish(c, false, "%s", msg);
}

/* ---- connection ---- */

static void conn_close(Httpc *c) {
        c->io = sd_event_source_disable_unref(c->io);
        if (c->session) {
                if (c->conn == CONN_READY)
                        (void) sym_gnutls_bye(c->session, GNUTLS_SHUT_WR); /* non-blocking: best effort */
                sym_gnutls_deinit(c->session);
                c->session = NULL;
        }
        if (c->fd >= 0) {
                close(c->fd);
                c->fd = -1;
        }
        if (c->addrs) {
                freeaddrinfo(c->addrs);
                c->addrs = NULL;
                c->addr_next = NULL;
        }
        c->conn = CONN_NONE;
        c->reused = false;
        c->requests_on_conn = 0;
}

static int io_events(Httpc *c, uint32_t events) {
        return c->io ? sd_event_source_set_io_events(c->io, events) : -ENOTCONN;
}

/* After a TLS call returned GNUTLS_E_AGAIN: wait for what GnuTLS waits for. */
static int tls_wait(Httpc *c) {
        return io_events(c, sym_gnutls_record_get_direction(c->session) ? EPOLLOUT : EPOLLIN);
}

static void tls_error(Httpc *c, const char *what, int e) {
        if (e == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
                gnutls_datum_t out = { 0 };
                unsigned status = sym_gnutls_session_get_verify_cert_status(c->session);
                char reason[160] = "unknown reason";
                if (sym_gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) >= 0 &&
                    out.data) {
                        snprintf(reason, sizeof reason, "%s", (const char *) out.data);
                        tlsshim_free(out.data);
                        for (size_t n = strlen(reason); n > 0 && reason[n - 1] == ' '; n--)
                                reason[n - 1] = 0;
                }
                req_conn_failed(c, "TLS handshake with %s:%s: server certificate verification failed: %s", c->host,
                                c->port, reason);
        } else if (e == GNUTLS_E_FATAL_ALERT_RECEIVED || e == GNUTLS_E_WARNING_ALERT_RECEIVED) {
                const char *alert = sym_gnutls_alert_get_name(sym_gnutls_alert_get(c->session));
                req_conn_failed(c, "%s %s:%s: the server sent TLS alert \"%s\"%s", what, c->host, c->port,
                                alert ? alert : "?",
                                c->conn == CONN_READY ? "" : " (a client certificate it does not accept?)");
        } else
                req_conn_failed(c, "%s %s:%s: %s", what, c->host, c->port, sym_gnutls_strerror(e));
}

static void conn_ready(Httpc *c) {
        c->conn = CONN_READY;
        c->stats.connections++;
        if (c->req == REQ_WAIT_CONN) {
                c->req = REQ_WRITING;
                /* the handshake's deadline was the connect timeout; now the request's */
                (void) timer_at(c, c->req_deadline);
                req_write(c);
        } else
                (void) io_events(c, EPOLLIN | EPOLLRDHUP);
}

static void handshake_step(Httpc *c) {
        int e = sym_gnutls_handshake(c->session);
        if (e == GNUTLS_E_SUCCESS) {
                conn_ready(c);
                return;
        }
        if (e == GNUTLS_E_AGAIN || e == GNUTLS_E_INTERRUPTED || !sym_gnutls_error_is_fatal(e)) {
                if (tls_wait(c) < 0)
                        req_conn_failed(c, "TLS handshake with %s:%s: cannot wait for the socket", c->host, c->port);
                return;
        }
        tls_error(c, "TLS handshake with", e);
}

static int tls_start(Httpc *c) {
        int e = sym_gnutls_init(&c->session, GNUTLS_CLIENT | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
        if (e < 0) {
                c->session = NULL;
                return -ENOMEM;
        }
        e = sym_gnutls_set_default_priority(c->session);
        if (e >= 0)
                e = sym_gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, c->cred);
        if (e >= 0 && !c->host_numeric) /* SNI takes a name, never an address (RFC 6066) */
                e = sym_gnutls_server_name_set(c->session, GNUTLS_NAME_DNS, c->host, strlen(c->host));
        if (e < 0)
                return -EIO;
        if (!c->insecure) /* chain and host name (or IP SAN) checked during the handshake */
                sym_gnutls_session_set_verify_cert(c->session, c->host, 0);
        sym_gnutls_transport_set_int2(c->session, c->fd, c->fd);
        c->conn = CONN_HANDSHAKE;
        handshake_step(c);
        return 0;
}

static void connected(Httpc *c) {
        int one = 1;
        (void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        freeaddrinfo(c->addrs);
        c->addrs = NULL;
        c->addr_next = NULL;
        if (!c->tls) {
                conn_ready(c);
                return;
        }
        int r = tls_start(c);
        if (r < 0)
                req_conn_failed(c, "TLS setup for %s:%s: %s", c->host, c->port, strerror(-r));
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* Try the addresses in turn until one connects (or is in progress). */
static void connect_next(Httpc *c) {
        while (c->addr_next) {
                struct addrinfo *ai = c->addr_next;
                c->addr_next = ai->ai_next;
                if (c->fd >= 0) {
                        c->io = sd_event_source_disable_unref(c->io);
                        close(c->fd);
                        c->fd = -1;
                }
                char a[INET6_ADDRSTRLEN] = "?";
                const void *sa = ai->ai_family == AF_INET6 ? (const void *) &((struct sockaddr_in6 *) ai->ai_addr)->sin6_addr
                                                           : (const void *) &((struct sockaddr_in *) ai->ai_addr)->sin_addr;
                inet_ntop(ai->ai_family, sa, a, sizeof a);
                snprintf(c->addr_text, sizeof c->addr_text, "%s", a);
                c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
                if (c->fd < 0) {
                        c->last_connect_errno = errno;
                        continue;
                }
                int r = sd_event_add_io(c->event, &c->io, c->fd, EPOLLOUT, on_io, c);
                if (r < 0) {
                        c->last_connect_errno = -r;
                        continue;
                }
                c->conn = CONN_CONNECTING;
                if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0) {
                        connected(c);
                        return;
                }
                if (errno == EINPROGRESS)
                        return; /* on_io sees EPOLLOUT */
                c->last_connect_errno = errno;
        }
        bool named = c->addr_text[0] && strcmp(c->addr_text, c->host) != 0; /* say which address of a name */
        req_conn_failed(c, "connecting to %s:%s%s%s%s: %s", c->host, c->port, named ? " (" : "",
                        named ? c->addr_text : "", named ? ")" : "", strerror(c->last_connect_errno ?: ECONNREFUSED));
}

static void resolved(Httpc *c, int gai_r, struct addrinfo *res) {
        if (gai_r != 0 || !res) {
                if (res)
                        freeaddrinfo(res);
                req_conn_failed(c, "resolving %s: %s", c->host, gai_r == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai_r));
                return;
        }
        c->addrs = res;
        c->addr_next = res;
        c->last_connect_errno = 0;
        c->addr_text[0] = 0;
        connect_next(c);
}

static void lookup_drop(Httpc *c) {
        c->lookup_io = sd_event_source_disable_unref(c->lookup_io);
        lookup_unref(c->lookup);
        c->lookup = NULL;
}

static int on_lookup(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Httpc *c = userdata;
        Lookup *l = c->lookup;
        int rc = __atomic_load_n(&l->rc, __ATOMIC_ACQUIRE);
        if (rc == EAI_INPROGRESS)
                return 0;
        struct addrinfo *res = TAKE_PTR(l->res);
        errno = l->err;
        lookup_drop(c);
        if (c->conn != CONN_RESOLVING) { /* cancelled meanwhile */
                if (res)
                        freeaddrinfo(res);
                return 0;
        }
        resolved(c, rc, res);
        return 0;
}

static int conn_start(Httpc *c) {
        int r;
        c->conn = CONN_RESOLVING;
        c->addr_text[0] = 0;
        uint64_t now;
        r = sd_event_now(c->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        uint64_t deadline = now + c->connect_timeout_usec;
        r = timer_at(c, deadline < c->req_deadline ? deadline : c->req_deadline);
        if (r < 0)
                return r;
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP };
        if (c->host_numeric) {
                struct addrinfo *res = NULL;
                hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
                int g = getaddrinfo(c->host, c->port, &hints, &res);
                resolved(c, g, res);
                return 0;
        }
        /* a name: resolved by a thread of its own, never on the loop */
        if (c->lookup)
                return 0; /* a lookup of the same name is still running: its answer will do */
        Lookup *l = calloc(1, sizeof *l);
        if (!l)
                return -ENOMEM;
        l->refs = 1;
        l->rc = EAI_INPROGRESS;
        snprintf(l->host, sizeof l->host, "%s", c->host);
        snprintf(l->port, sizeof l->port, "%s", c->port);
        l->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (l->fd < 0) {
                r = -errno;
                lookup_unref(l);
                return r;
        }
        c->lookup = l;
        r = sd_event_add_io(c->event, &c->lookup_io, l->fd, EPOLLIN, on_lookup, c);
        if (r < 0) {
                lookup_drop(c);
                return r;
        }
        pthread_attr_t attr;
        pthread_t tid;
        if (pthread_attr_init(&attr) != 0) {
                lookup_drop(c);
                return -ENOMEM;
        }
        (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        (void) pthread_attr_setstacksize(&attr, 256 * 1024); /* NSS modules need some; not 8 MiB */
        sigset_t all; /* signals are the loop's (signalfd): none for the look-up */
        sigfillset(&all);
        (void) pthread_attr_setsigmask_np(&attr, &all);
        __atomic_add_fetch(&l->refs, 1, __ATOMIC_ACQ_REL);
        r = -pthread_create(&tid, &attr, lookup_thread, l);
        pthread_attr_destroy(&attr);
        if (r < 0) {
                __atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL);
                lookup_drop(c);
                return r;
        }
        return 0;
}

/* ---- request ---- */

static void req_write(Httpc *c) {
        size_t head_len = c->head.len, total = head_len + c->body_len;
        while (c->sent < total) {
                ssize_t n;
                if (c->tls) {
                        const char *p = c->sent < head_len ? c->head.data + c->sent : c->body + (c->sent - head_len);
                        size_t len = c->sent < head_len ? head_len - c->sent : total - c->sent;
                        n = sym_gnutls_record_send(c->session, p, len);
                        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                                if (tls_wait(c) < 0)
                                        req_conn_failed(c, "sending to %s:%s: cannot wait for the socket", c->host, c->port);
                                return;
                        }
                        if (n < 0) {
                                tls_error(c, "sending to", (int) n);
                                return;
                        }
                } else {
                        struct iovec iov[2];
                        int k = 0;
                        if (c->sent < head_len)
                                iov[k++] = (struct iovec){ c->head.data + c->sent, head_len - c->sent };
                        size_t boff = c->sent > head_len ? c->sent - head_len : 0;
                        if (c->body_len > boff)
                                iov[k++] = (struct iovec){ (void *) (c->body + boff), c->body_len - boff };
                        struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t) k };
                        n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
                        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                                if (io_events(c, EPOLLOUT) < 0)
                                        req_conn_failed(c, "sending to %s:%s: cannot wait for the socket", c->host, c->port);
                                return;
                        }
                        if (n < 0) {
                                req_conn_failed(c, "sending to %s:%s: %s", c->host, c->port, strerror(errno));
                                return;
                        }
                }
                c->sent += (size_t) n;
        }
        /* the head (with its Authorization header) is kept until the request settles:
         * a stale keep-alive connection means sending it again */
        c->req = REQ_READING;
        if (io_events(c, EPOLLIN) < 0)
                req_conn_failed(c, "waiting for %s:%s: cannot watch the socket", c->host, c->port);
        else
                req_read(c); /* TLS may hold bytes already */
}

/* Feed what came in; true when the request is settled (finished or failed). */
static bool req_feed(Httpc *c, const char *buf, size_t n) {
        size_t used = 0;
        int r = http1_feed(&c->parser, buf, n, &used);
        if (r < 0) {
                conn_close(c);
                req_finish(c, false, "malformed HTTP response from %s:%s: %s", c->host, c->port,
                           r == -E2BIG ? "header block or line too long" : "not HTTP/1.1 as expected");
                return true;
        }
        if (r == 0)
                return false;
        /* complete: a byte beyond the response, a close or a cut body end the connection */
        if (!c->parser.keep_alive || used < n)
                conn_close(c);
        else {
                c->reused = true;
                c->requests_on_conn++;
                (void) io_events(c, EPOLLIN | EPOLLRDHUP);
        }
        req_finish(c, true, NULL);
        return true;
}

static void req_eof(Httpc *c, const char *why) {
        int r = http1_eof(&c->parser);
        if (r == 1) {
                conn_close(c);
                req_finish(c, true, NULL);
                return;
        }
        req_conn_failed(c, "reading the response from %s:%s: %s", c->host, c->port, why);
}

static void req_read(Httpc *c) {
        char buf[16384];
        for (;;) {
                ssize_t n;
                if (c->tls) {
                        n = sym_gnutls_record_recv(c->session, buf, sizeof buf);
                        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                                if (tls_wait(c) < 0)
                                        req_conn_failed(c, "reading from %s:%s: cannot wait for the socket", c->host, c->port);
                                return;
                        }
                        if (n == GNUTLS_E_PREMATURE_TERMINATION) {
                                req_eof(c, "connection closed without TLS close_notify");
                                return;
                        }
                        if (n == GNUTLS_E_REHANDSHAKE || (n < 0 && !sym_gnutls_error_is_fatal((int) n)))
                                continue; /* a TLS 1.3 key update or a post-handshake message: handled inside */
                        if (n < 0) {
                                tls_error(c, "reading from", (int) n);
                                return;
                        }
                } else {
                        n = recv(c->fd, buf, sizeof buf, 0);
                        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                                return; /* EPOLLIN is armed */
                        if (n < 0) {
                                req_conn_failed(c, "reading from %s:%s: %s", c->host, c->port, strerror(errno));
                                return;
                        }
                }
                if (n == 0) {
                        req_eof(c, "connection closed before the response was complete");
                        return;
                }
                if (req_feed(c, buf, (size_t) n))
                        return;
        }
}

/* Readable while no request runs: the server closed the idle connection (or sent
 * something unasked). Either way it is useless now. */
static void idle_event(Httpc *c) {
        if (c->tls) {
                /* a TLS 1.3 session ticket or key update is handled inside and reads as EAGAIN */
                char b[256];
                ssize_t n = sym_gnutls_record_recv(c->session, b, sizeof b);
                if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                        (void) io_events(c, EPOLLIN | EPOLLRDHUP);
                        return;
                }
        }
        conn_close(c);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Httpc *c = userdata;
        switch (c->conn) {
        case CONN_CONNECTING: {
                int e = 0;
                socklen_t l = sizeof e;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
                        e = errno;
                if (e == 0 && !(revents & (EPOLLERR | EPOLLHUP))) {
                        connected(c);
                } else {
                        c->last_connect_errno = e ?: ECONNREFUSED;
                        connect_next(c);
                }
                return 0;
        }
        case CONN_HANDSHAKE:
                handshake_step(c);
                return 0;
        case CONN_READY:
                if (c->req == REQ_WRITING)
                        req_write(c);
                else if (c->req == REQ_READING)
                        req_read(c);
                else
                        idle_event(c);
                return 0;
        default:
                return 0;
        }
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Httpc *c = userdata;
        if (c->req == REQ_NONE || c->req == REQ_DONE)
                return 0;
        const char *phase = c->conn == CONN_RESOLVING    ? "resolving"
                            : c->conn == CONN_CONNECTING ? "connecting"
                            : c->conn == CONN_HANDSHAKE  ? "in the TLS handshake"
                            : c->req == REQ_WRITING      ? "sending the request"
                                                         : "waiting for the response";
        bool connecting = c->conn != CONN_READY;
        uint64_t ms = (connecting && c->connect_timeout_usec < c->timeout_usec ? c->connect_timeout_usec
                                                                                : c->timeout_usec) / 1000;
        conn_close(c);
        req_finish(c, false, "%s:%s: timed out after %" PRIu64 " ms %s", c->host, c->port, ms, phase);
        return 0;
}

int httpc_post(Httpc *c, const char *const *headers, size_t n_headers, const void *body, size_t body_len,
               httpc_done_t done, void *userdata) {
        int r;
        if (!c || (!body && body_len) || (!headers && n_headers))
                return -EINVAL;
        if (c->req != REQ_NONE)
                return -EBUSY;
        for (size_t i = 0; i < n_headers; i++)
                if (!headers[i] || strpbrk(headers[i], "\r\n"))
                        return -EINVAL;

        dynbuf_init(&c->head, HTTPC_HEAD_MAX);
        r = dynbuf_printf(&c->head,
                          "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pullwatch/" PULLWATCH_VERSION
                          "\r\nContent-Length: %zu\r\n",
                          c->path, c->host_header, body_len);
        for (size_t i = 0; r >= 0 && i < n_headers; i++) {
                r = dynbuf_puts(&c->head, headers[i]);
                if (r >= 0)
                        r = dynbuf_puts(&c->head, "\r\n");
        }
        if (r >= 0)
                r = dynbuf_puts(&c->head, "\r\n");
        if (r < 0) {
                head_wipe(c);
                return r == -E2BIG ? -EINVAL : r;
        }
        uint64_t now;
        r = sd_event_now(c->event, CLOCK_MONOTONIC, &now);
        if (r < 0) {
                head_wipe(c);
                return r;
        }
        c->body = body;
        c->body_len = body_len;
        c->sent = 0;
        c->done = done;
        c->userdata = userdata;
        c->stale_retried = false;
        c->req_deadline = now + c->timeout_usec;
        http1_init(&c->parser, c->max_response_body);

        if (c->conn == CONN_READY) {
                c->req = REQ_WRITING;
                r = timer_at(c, c->req_deadline);
                if (r < 0) {
                        c->req = REQ_NONE;
                        head_wipe(c);
                        return r;
                }
                r = io_events(c, EPOLLOUT);
                if (r < 0) {
                        c->req = REQ_NONE;
                        head_wipe(c);
                        return r;
                }
                return 0; /* on_io writes: done is never called from here */
        }
        c->req = REQ_WAIT_CONN;
        if (c->conn == CONN_NONE) {
                r = conn_start(c);
                if (r < 0) {
                        conn_close(c);
                        req_finish(c, false, "connecting to %s:%s: %s", c->host, c->port, strerror(-r));
                }
        }
        return 0;
}

void httpc_cancel(Httpc *c) {
        if (!c)
                return;
        if (c->req != REQ_NONE) {
                conn_close(c); /* a half-sent request or half-read answer spoils the connection */
                head_wipe(c);
                c->req = REQ_NONE;
                c->done = NULL;
                c->body = NULL;
                timer_off(c);
                (void) sd_event_source_set_enabled(c->defer, SD_EVENT_OFF);
        }
}

static int load_credentials(Httpc *c, const HttpcConfig *cfg, char *err, size_t errlen) {
        int e = sym_gnutls_certificate_allocate_credentials(&c->cred);
        if (e < 0) {
                c->cred = NULL;
                return -ENOMEM;
        }
        if (cfg->ca_file) {
                e = sym_gnutls_certificate_set_x509_trust_file(c->cred, cfg->ca_file, GNUTLS_X509_FMT_PEM);
                if (e <= 0) {
                        set_err(err, errlen, "CA file %s: %s", cfg->ca_file,
                                e == 0 ? "no certificate in it" : sym_gnutls_strerror(e));
                        return e == GNUTLS_E_FILE_ERROR ? -ENOENT : -EINVAL;
                }
        } else if (!cfg->insecure) {
                e = sym_gnutls_certificate_set_x509_system_trust(c->cred);
                if (e <= 0) {
                        set_err(err, errlen, "the system trust store has no certificate (%s); set a CA file",
                                e == 0 ? "empty" : sym_gnutls_strerror(e));
                        return -ENOENT;
                }
        }
        if (cfg->client_cert) {
                e = sym_gnutls_certificate_set_x509_key_file(c->cred, cfg->client_cert, cfg->client_key,
                                                             GNUTLS_X509_FMT_PEM);
                if (e < 0) {
                        set_err(err, errlen, "client certificate %s / key %s: %s", cfg->client_cert,
                                cfg->client_key, sym_gnutls_strerror(e));
                        return e == GNUTLS_E_FILE_ERROR ? -ENOENT : -EINVAL;
                }
        }
        return 0;
}

int httpc_new(Httpc **ret, const HttpcConfig *cfg, sd_event *e, char *err, size_t errlen) {
        int r;
        if (!ret || !cfg || !e)
                return -EINVAL;
        if ((cfg->client_cert == NULL) != (cfg->client_key == NULL)) {
                set_err(err, errlen, "client certificate and key must be given together");
                return -EINVAL;
        }
        Httpc *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        c->event = sd_event_ref(e);
        c->insecure = cfg->insecure;
        c->connect_timeout_usec = cfg->connect_timeout_usec ?: 10ULL * 1000000ULL;
        c->timeout_usec = cfg->timeout_usec ?: 30ULL * 1000000ULL;
        c->max_response_body = cfg->max_response_body ?: 1ULL << 20;
        r = parse_url(c, cfg->url, err, errlen);
        if (r >= 0 && c->tls) {
                r = tlsshim_load(err, errlen);
                if (r >= 0)
                        r = load_credentials(c, cfg, err, errlen);
        }
        if (r >= 0)
                r = sd_event_add_time(e, &c->timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_timer, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_defer(e, &c->defer, on_defer, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->defer, SD_EVENT_OFF);
        if (r < 0) {
                httpc_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

Httpc *httpc_free(Httpc *c) {
        if (!c)
                return NULL;
        httpc_cancel(c);
        conn_close(c);
        lookup_drop(c); /* a thread still resolving lets go of it when done */
        sd_event_source_disable_unref(c->timer);
        sd_event_source_disable_unref(c->defer);
        if (c->cred)
                sym_gnutls_certificate_free_credentials(c->cred);
        head_wipe(c);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

void httpc_get_stats(const Httpc *c, HttpcStats *ret) {
        *ret = c->stats;
}
