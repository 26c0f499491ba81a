/* pullwatch-fleet serve: the collector.
 *
 * libmicrohttpd's threads (a small pool, epoll) receive, authenticate, inflate and
 * decode each POST /v1/records body (decoding validates it); a valid body's records go
 * packed (ingest_pack_body: no JSON left for the writer) to a queue bounded in bytes,
 * the connection is suspended, and one writer thread stores every batch waiting in one
 * transaction (group commit: one fsync for all) and resumes each connection with its
 * answer: 2xx only after the commit. A full queue,
 * or a database that is down or slow, answers 503 with Retry-After at once, so memory
 * never grows with load. SIGTERM stops new work, lets every request already received
 * finish, then exits. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "pullwatch/fleet.h"
#include "pullwatch/ingest.h"
#include "pullwatch/report.h"
#include "pullwatch/store.h"
#include "pullwatch/util.h"

#define DEFAULT_LISTEN "127.0.0.1:8470"
#define DEFAULT_MAX_BODY (16U << 20)  /* the agent's batch_max_bytes is 1 MiB by default, 64 MiB at most */
#define DEFAULT_QUEUE_BYTES (32U << 20)
#define MAX_RECORDS_PER_REQUEST 100000 /* the agent's batch_max_records allows up to 100,000 */
#define CHUNK_RECORDS 256              /* records unpacked at a time by the writer */
#define CHUNK_IMAGES 1000              /* or inventory images (~1.6 KiB each decoded), if fewer */
#define WRITER_GROUP_MAX 32            /* requests stored in one transaction (≤ STORE_GROUP_MAX) */
#define WRITER_GROUP_BYTES (8U << 20)  /* and their bodies, at most (one larger body goes alone) */
#define GROUP_WAIT_USEC 20000          /* a group waits this long at most for a body being decoded */
#define IDLE_APPLY_USEC 50000          /* SQLite: queued node state is applied after this long idle */
_Static_assert(WRITER_GROUP_MAX <= STORE_GROUP_MAX, "a group fits in one store transaction");
#define RETRY_AFTER_FULL 2             /* seconds: the queue drains in well under that */
#define RETRY_AFTER_DB 10              /* seconds: a database coming back takes longer */
#define DRAIN_TIMEOUT_USEC (30ULL * 1000000ULL)

/* ------------------------------------------------------------------ logging ---- */

_printf_(1, 2) static void log_line(const char *fmt, ...) {
        char buf[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        for (char *c = buf; *c; c++)
                if ((unsigned char) *c < 0x20)
                        *c = '?';
        fprintf(stderr, "pullwatch-fleet: %s\n", buf);
}

/* ------------------------------------------------------------------ metrics ---- */

typedef enum Reject {
        REJECT_MALFORMED,
        REJECT_SCHEMA,
        REJECT_TOO_LARGE,
        REJECT_UNAUTHORIZED,
        REJECT_OVERLOAD,
        REJECT_DATABASE,
        REJECT_ENCODING,
        REJECT_DRAINING,
        _REJECT_MAX,
} Reject;

static const char *const reject_names[_REJECT_MAX] = {
        [REJECT_MALFORMED] = "malformed",       [REJECT_SCHEMA] = "schema",
        [REJECT_TOO_LARGE] = "too_large",       [REJECT_UNAUTHORIZED] = "unauthorized",
        [REJECT_OVERLOAD] = "overload",         [REJECT_DATABASE] = "database",
        [REJECT_ENCODING] = "unsupported_encoding", [REJECT_DRAINING] = "shutting_down",
};

static const double commit_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

typedef struct Metrics {
        atomic_uint_fast64_t accepted, duplicates, inventories, requests_ok;
        atomic_uint_fast64_t rejected[_REJECT_MAX];
        pthread_mutex_t lock; /* the histogram */
        uint64_t commit_count, commit_bucket[ELEMENTSOF(commit_buckets)];
        double commit_sum;
} Metrics;

/* ------------------------------------------------------------------- server ---- */

typedef enum ReqState {
        REQ_BODY,   /* receiving */
        REQ_QUEUED, /* suspended, waiting for the writer */
        REQ_DONE,   /* the writer answered; resumed */
        REQ_ANSWERED, /* answered before the body was read (401, 413, 415): drop the rest */
} ReqState;

typedef struct Server Server;

typedef struct Request {
        Server *srv;
        struct MHD_Connection *conn;
        ReqState state;
        bool gzip, too_big, overloaded, counted;
        char cluster[RECORD_CLUSTER_MAX];
        bool has_cluster;
        char *body; /* as received, then inflated, then packed (ingest_pack_body) */
        size_t len, cap;
        size_t queued_bytes; /* what it counts against the queue */
        struct Request *next;
        /* the answer */
        unsigned status;
        unsigned retry_after;
        char *answer;
} Request;

struct Server {
        /* options */
        const char *listen, *db_url, *tls_cert, *tls_key, *client_ca, *tokens_path;
        unsigned retention_days;
        size_t max_body, queue_max_bytes;
        size_t inflight_max_bytes; /* bodies received or waiting, all requests: 2 × queue + 1 body */
        atomic_size_t inflight_bytes;
        uint64_t maintain_usec;
        bool allow_open;

        Store *store;
        Tokens *tokens;
        struct MHD_Daemon *daemon;
        char *cert_pem, *key_pem, *ca_pem;
        Metrics metrics;

        pthread_mutex_t lock; /* the queue and the counters below */
        pthread_cond_t cond;  /* queue non-empty, stop, or a request finished */
        Request *head, *tail;
        size_t queue_requests, queue_bytes;
        unsigned lock_timeout_msec; /* SQLite busy timeout of the writer */
        size_t active; /* requests alive (from first call to completion) */
        size_t decoding; /* bodies received whole, being inflated and decoded (not queued yet) */
        bool draining, stop;
        atomic_bool db_up;
        pthread_t writer;
};

static void metrics_commit(Metrics *m, double seconds) {
        pthread_mutex_lock(&m->lock);
        m->commit_count++;
        m->commit_sum += seconds;
        for (size_t i = 0; i < ELEMENTSOF(commit_buckets); i++)
                if (seconds <= commit_buckets[i])
                        m->commit_bucket[i]++;
        pthread_mutex_unlock(&m->lock);
}

static char *json_error_body(const char *msg) {
        json_t *o = json_pack("{s:s}", "error", msg);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        return s;
}

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *ctype, char *body_owned,
                               unsigned retry_after, const char *extra_header, const char *extra_value) {
        const char *text = body_owned ? body_owned : "";
        struct MHD_Response *resp =
                MHD_create_response_from_buffer(strlen(text), (void *) text,
                                                body_owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (!resp) {
                free(body_owned);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
        if (retry_after) {
                char v[16];
                snprintf(v, sizeof v, "%u", retry_after);
                MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
        }
        if (extra_header)
                MHD_add_response_header(resp, extra_header, extra_value);
        enum MHD_Result r = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}

static enum MHD_Result respond_error(Server *srv, struct MHD_Connection *conn, unsigned status, Reject why,
                                     const char *msg, unsigned retry_after) {
        atomic_fetch_add(&srv->metrics.rejected[why], 1);
        char *body = json_error_body(msg);
        if (body) {
                size_t l = strlen(body);
                char *nl = realloc(body, l + 2);
                if (nl) {
                        body = nl;
                        memcpy(body + l, "\n", 2);
                }
        }
        return respond(conn, status, "application/json", body, retry_after,
                       status == MHD_HTTP_UNAUTHORIZED ? MHD_HTTP_HEADER_WWW_AUTHENTICATE : NULL, "Bearer");
}

/* ----------------------------------------------------------- authentication ---- */

/* The cluster a client certificate names: its subject's CN. */
static int client_cert_cluster(struct MHD_Connection *conn, char *buf, size_t size) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        if (!ci || !ci->tls_session)
                return -ENOTCONN;
        gnutls_session_t session = (gnutls_session_t) ci->tls_session;
        unsigned status = 0;
        if (gnutls_certificate_verify_peers2(session, &status) < 0 || status != 0)
                return -EACCES;
        unsigned n = 0;
        const gnutls_datum_t *certs = gnutls_certificate_get_peers(session, &n);
        if (!certs || n == 0)
                return -EACCES;
        gnutls_x509_crt_t crt;
        if (gnutls_x509_crt_init(&crt) < 0)
                return -ENOMEM;
        int r = -EACCES;
        if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) >= 0) {
                size_t l = size;
                if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buf, &l) >= 0 && l > 0)
                        r = 0;
        }
        gnutls_x509_crt_deinit(crt);
        return r;
}

/* With --client-ca every connection must present a certificate the CA signed, checked by
 * GnuTLS during the handshake: a wrong or missing one fails the handshake itself, before
 * any HTTP. (libmicrohttpd only asks for a certificate and leaves the checking to us.) */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
        Server *srv = cls;
        if (code != MHD_CONNECTION_NOTIFY_STARTED || !srv->client_ca)
                return;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        if (!ci || !ci->tls_session)
                return;
        gnutls_session_t session = (gnutls_session_t) ci->tls_session;
        gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
        gnutls_session_set_verify_cert(session, NULL, 0);
}

/* 1: authenticated (cluster set, or has_cluster false for an open collector), 0: not. */
static int authenticate(Server *srv, struct MHD_Connection *conn, Request *req) {
        if (srv->client_ca) {
                if (client_cert_cluster(conn, req->cluster, sizeof req->cluster) < 0)
                        return 0;
                req->has_cluster = true;
                return 1;
        }
        if (!srv->tokens) {
                req->has_cluster = false; /* open collector: the records name their cluster */
                return 1;
        }
        const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        if (!h || strncasecmp(h, "Bearer ", 7) != 0)
                return 0;
        const char *token = h + 7;
        while (*token == ' ')
                token++;
        char err[600] = "";
        int found = tokens_lookup(srv->tokens, token, req->cluster, sizeof req->cluster, err, sizeof err);
        if (err[0])
                log_line("%s", err);
        req->has_cluster = found > 0;
        return found > 0;
}

/* -------------------------------------------------------------------- queue ---- */

/* Every body buffer counts against srv->inflight_bytes, so that many slow uploads at once
 * cannot take more memory than the bound either. */
static void body_release(Request *req) {
        if (req->body)
                atomic_fetch_sub(&req->srv->inflight_bytes, req->cap);
        free(req->body);
        req->body = NULL;
        req->cap = req->len = 0;
}

static void request_free(Request *req) {
        if (!req)
                return;
        body_release(req);
        free(req->answer);
        free(req);
}

/* Enqueue; false when the queue has no room (or the server is stopping). */
static bool enqueue(Server *srv, Request *req) {
        bool ok = false;
        pthread_mutex_lock(&srv->lock);
        size_t need = req->len + sizeof *req;
        if (!srv->stop && (srv->queue_bytes == 0 || srv->queue_bytes + need <= srv->queue_max_bytes)) {
                req->queued_bytes = need;
                req->next = NULL;
                if (srv->tail)
                        srv->tail->next = req;
                else
                        srv->head = req;
                srv->tail = req;
                srv->queue_requests++;
                srv->queue_bytes += need;
                req->state = REQ_QUEUED;
                ok = true;
                pthread_cond_broadcast(&srv->cond);
        }
        pthread_mutex_unlock(&srv->lock);
        return ok;
}

/* The writer's unpack callback: collect a chunk, store it when full. */
typedef struct Batch {
        Server *srv;
        Record *recs;
        size_t n, images;
        char err[512];
} Batch;

static int batch_flush(Batch *b) {
        int r = store_ingest_add(b->srv->store, b->recs, b->n, b->err, sizeof b->err);
        for (size_t i = 0; i < b->n; i++)
                record_done(&b->recs[i]);
        b->n = b->images = 0;
        return r;
}

static int batch_take(void *userdata, Record *rec) {
        Batch *b = userdata;
        b->recs[b->n] = *rec;
        b->images += rec->inventory.n_images;
        rec->inventory.images = NULL; /* now the chunk's */
        rec->inventory.n_images = 0;
        if (++b->n == CHUNK_RECORDS || b->images >= CHUNK_IMAGES)
                return batch_flush(b);
        return 0;
}

static void answer(Request *req, unsigned status, unsigned retry_after, char *body) {
        req->status = status;
        req->retry_after = retry_after;
        free(req->answer);
        req->answer = body;
}

/* Unpack one request's records into the open transaction, a chunk at a time. */
static int store_body(Request *req, Batch *b) {
        char perr[512] = "";
        size_t n = 0;
        b->n = b->images = 0;
        int r = ingest_unpack(req->body, req->len, batch_take, b, &n, perr, sizeof perr);
        if (r >= 0 && b->n > 0)
                r = batch_flush(b);
        for (size_t i = 0; i < b->n; i++)
                record_done(&b->recs[i]);
        b->n = b->images = 0;
        if (r < 0 && !b->err[0])
                snprintf(b->err, sizeof b->err, "%s", perr);
        return r;
}

/* The answer to one request, from its store result r and counts res. */
static void answer_stored(Server *srv, Request *req, Batch *b, int r, const StoreIngestResult *res) {
        if (r >= 0) {
                atomic_fetch_add(&srv->metrics.accepted, res->accepted);
                atomic_fetch_add(&srv->metrics.duplicates, res->duplicates);
                atomic_fetch_add(&srv->metrics.inventories, res->inventories);
                atomic_fetch_add(&srv->metrics.requests_ok, 1);
                json_t *o = json_pack("{s:I, s:I, s:I}", "accepted", (json_int_t) res->accepted, "duplicates",
                                      (json_int_t) res->duplicates, "inventories", (json_int_t) res->inventories);
                char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
                json_decref(o);
                answer(req, MHD_HTTP_OK, 0, s);
                return;
        }
        if (r == -ENOTCONN || r == -EBUSY || r == -ENOSPC || r == -ENOMEM) {
                atomic_fetch_add(&srv->metrics.rejected[REJECT_DATABASE], 1);
                answer(req, MHD_HTTP_SERVICE_UNAVAILABLE, RETRY_AFTER_DB, json_error_body("database unavailable"));
                return;
        }
        if (r == -EBADMSG || r == -EPROTONOSUPPORT || r == -E2BIG) {
                /* validated before queueing: only reachable if the packed form were damaged */
                atomic_fetch_add(&srv->metrics.rejected[REJECT_MALFORMED], 1);
                answer(req, MHD_HTTP_BAD_REQUEST, 0, json_error_body(b->err));
                return;
        }
        atomic_fetch_add(&srv->metrics.rejected[REJECT_DATABASE], 1);
        /* 500, not 4xx: the agent retries it rather than dead-lettering good records */
        answer(req, MHD_HTTP_INTERNAL_SERVER_ERROR, 0, json_error_body("database error"));
}

/* Wait on srv->cond (srv->lock held) for a signal or usec at most. */
static void cond_wait_usec(Server *srv, uint64_t usec) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts); /* the condition's clock: the default attribute's */
        uint64_t ns = (uint64_t) ts.tv_nsec + usec * 1000ULL;
        ts.tv_sec += (time_t) (ns / 1000000000ULL);
        ts.tv_nsec = (long) (ns % 1000000000ULL);
        pthread_cond_timedwait(&srv->cond, &srv->lock, &ts);
}

/* The next queued request after last, if it may join a transaction that holds bytes body
 * bytes so far (NULL: it would take the group over WRITER_GROUP_BYTES, or nothing more is
 * queued); the caller counts the requests against WRITER_GROUP_MAX. */
static Request *group_next(Server *srv, const Request *last, size_t bytes, bool expect_more) {
        pthread_mutex_lock(&srv->lock);
        /* a body received whole is queued as soon as it is decoded (CPU only, no network):
         * worth waiting for (up to GROUP_WAIT_USEC) rather than leaving it a commit and an
         * fsync of its own — SQLite does a group's work at its end (store.c, sq_flush), so
         * with two agents posting in turn the second one's batch is still being decoded
         * when the first one's is in. expect_more: the last group had more requests than
         * this one so far — their agents, answered together, post again together, and the
         * second one's body may not even be in yet when the first one's is queued */
        uint64_t deadline = now_usec_monotonic() + GROUP_WAIT_USEC;
        while (!last->next && (srv->decoding > 0 || expect_more) && !srv->stop) {
                uint64_t now = now_usec_monotonic();
                if (now >= deadline)
                        break;
                cond_wait_usec(srv, deadline - now);
        }
        Request *q = last->next;
        pthread_mutex_unlock(&srv->lock);
        return q && bytes + q->len <= WRITER_GROUP_BYTES ? q : NULL;
}

/* More requests are coming, as far as the writer can tell: this group took more than one
 * (concurrent clients, which post again once answered), or one is queued behind it or
 * being decoded. A single client posting and waiting for each answer is never "busy". */
static bool writer_busy(Server *srv, Request *const *reqs, size_t n) {
        if (n > 1)
                return true;
        pthread_mutex_lock(&srv->lock);
        bool busy = reqs[n - 1]->next || srv->decoding > 0;
        pthread_mutex_unlock(&srv->lock);
        return busy;
}

/* Store *n queued requests in one transaction (group commit: one commit and one fsync for
 * all) and answer each after it. With grow, requests queued behind them while they were
 * stored join the same transaction before its commit (*n grows, up to WRITER_GROUP_MAX):
 * with two agents posting in turn, each waiting for its answer, the second one's batch
 * arrives while the first is being stored, and would otherwise wait for its own commit
 * and fsync — one commit per request instead of one per two. Nothing is answered before
 * the commit; the joiners wait for the first request's work, no longer than a group
 * queued together always did. A failure that is not "try again later" (a database
 * error one request's data may cause) is retried one request per transaction, so that
 * one bad batch cannot fail the others with it. */
static void store_requests(Server *srv, Request **reqs, size_t *n, bool grow, size_t expect, Batch *b) {
        StoreIngestResult res[WRITER_GROUP_MAX] = {0};
        uint64_t t0 = now_usec_monotonic();
        size_t bytes = 0;
        for (size_t i = 0; i < *n; i++)
                bytes += reqs[i]->len;
        b->err[0] = 0;
        int r = store_ingest_begin(srv->store, reqs[0]->has_cluster ? reqs[0]->cluster : NULL, now_usec_realtime(),
                                   b->err, sizeof b->err);
        if (r >= 0) {
                for (size_t i = 0; r >= 0 && i < *n; i++) {
                        if (i > 0)
                                r = store_ingest_next(srv->store, reqs[i]->has_cluster ? reqs[i]->cluster : NULL,
                                                      now_usec_realtime(), b->err, sizeof b->err);
                        if (r >= 0)
                                r = store_body(reqs[i], b);
                        /* the last one so far: one queued behind it may join, once the
                         * server's work on these is over (PostgreSQL's pipeline) */
                        if (r >= 0 && grow && i + 1 == *n && *n < WRITER_GROUP_MAX) {
                                Request *q = group_next(srv, reqs[i], bytes, *n < expect);
                                if (!q) { /* none yet: the work so far, then look again */
                                        r = store_ingest_wait(srv->store, b->err, sizeof b->err);
                                        q = r >= 0 ? group_next(srv, reqs[i], bytes, false) : NULL;
                                }
                                if (q) {
                                        reqs[(*n)++] = q;
                                        bytes += q->len;
                                }
                        }
                }
                /* SQLite: under load the node state of these records may stay queued in the
                 * database (store.h, store_ingest_defer) — applied many groups at a time, in
                 * key order; when the writer is idle it is applied before the answers (here,
                 * or by the writer's idle pass after IDLE_APPLY_USEC) */
                if (r >= 0)
                        store_ingest_defer(srv->store, writer_busy(srv, reqs, *n));
                int k = store_ingest_end(srv->store, r >= 0, res, b->err, sizeof b->err);
                if (r >= 0)
                        r = k;
        }
        if (r < 0 && *n > 1 && !(r == -ENOTCONN || r == -EBUSY || r == -ENOSPC || r == -ENOMEM)) {
                for (size_t i = 0; i < *n; i++) {
                        size_t one = 1;
                        store_requests(srv, &reqs[i], &one, false, 0, b);
                }
                return;
        }
        if (r >= 0) {
                metrics_commit(&srv->metrics, (double) (now_usec_monotonic() - t0) / 1e6);
                if (!atomic_exchange(&srv->db_up, true))
                        log_line("database %s reachable again, ingest resumes", store_name(srv->store));
        } else if (r == -ENOTCONN && atomic_exchange(&srv->db_up, false))
                log_line("%s; answering 503 until it is back", b->err);
        else if (r == -EBUSY || r == -ENOSPC || r == -ENOMEM)
                log_line("%s; answered 503", b->err);
        else if (!(r == -ENOTCONN || r == -EBADMSG || r == -EPROTONOSUPPORT || r == -E2BIG))
                log_line("storing a batch failed: %s", b->err);
        for (size_t i = 0; i < *n; i++)
                answer_stored(srv, reqs[i], b, r, &res[i]);
}

static void *writer_main(void *userdata) {
        Server *srv = userdata;
        Batch b = {.srv = srv, .recs = calloc(CHUNK_RECORDS, sizeof(Record))};
        uint64_t next_maintain = now_usec_monotonic();
        size_t last_n = 0; /* requests in the last group */
        if (!b.recs) {
                log_line("writer: out of memory");
                abort();
        }
        pthread_mutex_lock(&srv->lock);
        uint64_t last_group = 0; /* when the last group was answered */
        for (;;) {
                while (!srv->head && !srv->stop) {
                        uint64_t now = now_usec_monotonic();
                        /* the node state the last groups left queued (SQLite), once no
                         * request has come for IDLE_APPLY_USEC */
                        if (srv->decoding == 0 && store_state_pending(srv->store) > 0) {
                                if (now < last_group + IDLE_APPLY_USEC) {
                                        cond_wait_usec(srv, last_group + IDLE_APPLY_USEC - now);
                                        continue;
                                }
                                pthread_mutex_unlock(&srv->lock);
                                char err[512] = "";
                                if (store_state_sync(srv->store, err, sizeof err) < 0)
                                        log_line("applying the queued node state failed: %s", err);
                                pthread_mutex_lock(&srv->lock);
                                last_group = now_usec_monotonic(); /* a failure: again after IDLE_APPLY_USEC */
                                continue;
                        }
                        if (now >= next_maintain) {
                                pthread_mutex_unlock(&srv->lock);
                                char err[512] = "";
                                int r = store_maintain(srv->store, now_usec_realtime(), srv->retention_days, err,
                                                       sizeof err);
                                if (r < 0)
                                        log_line("upkeep (rollup, retention) failed: %s", err);
                                next_maintain = now_usec_monotonic() + srv->maintain_usec;
                                pthread_mutex_lock(&srv->lock);
                                continue;
                        }
                        uint64_t wait = next_maintain - now;
                        cond_wait_usec(srv, wait > 1000000ULL ? 1000000ULL : wait);
                }
                if (!srv->head && srv->stop)
                        break;
                /* every request waiting now goes into one transaction (bounded: the
                 * commit's latency, and the 503s a failed group would answer) */
                Request *reqs[WRITER_GROUP_MAX];
                size_t n = 0, bytes = 0;
                for (Request *q = srv->head; q && n < WRITER_GROUP_MAX && (n == 0 || bytes + q->len <= WRITER_GROUP_BYTES);
                     q = q->next) {
                        reqs[n++] = q;
                        bytes += q->len;
                }
                pthread_mutex_unlock(&srv->lock);

                store_requests(srv, reqs, &n, true, last_n, &b); /* n grows by the requests that joined */
                last_n = n;

                pthread_mutex_lock(&srv->lock);
                for (size_t i = 0; i < n; i++) {
                        Request *req = reqs[i];
                        srv->head = req->next;
                        if (!srv->head)
                                srv->tail = NULL;
                        srv->queue_requests--;
                        srv->queue_bytes -= req->queued_bytes;
                        req->state = REQ_DONE;
                        body_release(req); /* the queue's memory goes back now, not when the client reads */
                }
                pthread_mutex_unlock(&srv->lock);
                /* outside our lock: libmicrohttpd takes its own, and on_completed takes ours */
                for (size_t i = 0; i < n; i++)
                        MHD_resume_connection(reqs[i]->conn);
                last_group = now_usec_monotonic();
                /* the WAL copied back (SQLite, every 64 MiB) now that the answers are out,
                 * not inside the commit they waited for */
                char err[512] = "";
                if (store_checkpoint(srv->store, err, sizeof err) < 0)
                        log_line("checkpoint failed: %s", err);
                pthread_mutex_lock(&srv->lock);
        }
        pthread_mutex_unlock(&srv->lock);
        free(b.recs);
        return NULL;
}

/* ------------------------------------------------------------------ routes ---- */

static enum MHD_Result serve_metrics(Server *srv, struct MHD_Connection *conn) {
        Metrics *m = &srv->metrics;
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);
        if (!f)
                return MHD_NO;
        fprintf(f,
                "# HELP pullwatch_fleet_records_accepted_total Records stored (pull and finding records, inventory parts).\n"
                "# TYPE pullwatch_fleet_records_accepted_total counter\n"
                "pullwatch_fleet_records_accepted_total %" PRIuFAST64 "\n"
                "# HELP pullwatch_fleet_records_duplicate_total Records received again (same id) and not stored twice.\n"
                "# TYPE pullwatch_fleet_records_duplicate_total counter\n"
                "pullwatch_fleet_records_duplicate_total %" PRIuFAST64 "\n"
                "# HELP pullwatch_fleet_inventories_total Node inventories completed and applied.\n"
                "# TYPE pullwatch_fleet_inventories_total counter\n"
                "pullwatch_fleet_inventories_total %" PRIuFAST64 "\n"
                "# HELP pullwatch_fleet_requests_rejected_total Requests answered with an error, by reason.\n"
                "# TYPE pullwatch_fleet_requests_rejected_total counter\n",
                atomic_load(&m->accepted), atomic_load(&m->duplicates), atomic_load(&m->inventories));
        for (int i = 0; i < _REJECT_MAX; i++)
                fprintf(f, "pullwatch_fleet_requests_rejected_total{reason=\"%s\"} %" PRIuFAST64 "\n", reject_names[i],
                        atomic_load(&m->rejected[i]));
        pthread_mutex_lock(&srv->lock);
        size_t qr = srv->queue_requests, qb = srv->queue_bytes;
        pthread_mutex_unlock(&srv->lock);
        fprintf(f,
                "# HELP pullwatch_fleet_queue_depth Batches received and waiting for the database.\n"
                "# TYPE pullwatch_fleet_queue_depth gauge\n"
                "pullwatch_fleet_queue_depth %zu\n"
                "# HELP pullwatch_fleet_queue_bytes Bytes those batches hold.\n"
                "# TYPE pullwatch_fleet_queue_bytes gauge\n"
                "pullwatch_fleet_queue_bytes %zu\n"
                "# HELP pullwatch_fleet_queue_max_bytes Queue bound; beyond it requests get 503.\n"
                "# TYPE pullwatch_fleet_queue_max_bytes gauge\n"
                "pullwatch_fleet_queue_max_bytes %zu\n"
                "# HELP pullwatch_fleet_database_up Whether the last use of the database succeeded.\n"
                "# TYPE pullwatch_fleet_database_up gauge\n"
                "pullwatch_fleet_database_up %d\n"
                "# HELP pullwatch_fleet_state_pending_records Records stored whose node state is still queued (SQLite).\n"
                "# TYPE pullwatch_fleet_state_pending_records gauge\n"
                "pullwatch_fleet_state_pending_records %zu\n"
                "# HELP pullwatch_fleet_commit_seconds Time to store one batch, transaction included.\n"
                "# TYPE pullwatch_fleet_commit_seconds histogram\n",
                qr, qb, srv->queue_max_bytes, atomic_load(&srv->db_up) ? 1 : 0, store_state_pending(srv->store));
        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < ELEMENTSOF(commit_buckets); i++)
                fprintf(f, "pullwatch_fleet_commit_seconds_bucket{le=\"%g\"} %" PRIu64 "\n", commit_buckets[i],
                        m->commit_bucket[i]);
        fprintf(f,
                "pullwatch_fleet_commit_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
                "pullwatch_fleet_commit_seconds_sum %.6f\n"
                "pullwatch_fleet_commit_seconds_count %" PRIu64 "\n",
                m->commit_count, m->commit_sum, m->commit_count);
        pthread_mutex_unlock(&m->lock);
        if (fclose(f) != 0) {
                free(text);
                return MHD_NO;
        }
        return respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4", text, 0, NULL, NULL);
}

static enum MHD_Result serve_readyz(Server *srv, struct MHD_Connection *conn) {
        char err[512] = "";
        pthread_mutex_lock(&srv->lock);
        bool full = srv->queue_bytes >= srv->queue_max_bytes, draining = srv->draining;
        pthread_mutex_unlock(&srv->lock);
        if (draining)
                return respond(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", strdup("shutting down\n"), 0, NULL,
                               NULL);
        if (full)
                return respond(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", strdup("queue full\n"), 0, NULL,
                               NULL);
        if (store_ping(srv->store, err, sizeof err) < 0) {
                char *msg = NULL;
                if (asprintf(&msg, "database unreachable: %s\n", err) < 0)
                        msg = NULL;
                return respond(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", msg, 0, NULL, NULL);
        }
        return respond(conn, MHD_HTTP_OK, "text/plain", strdup("ready\n"), 0, NULL, NULL);
}

/* POST /v1/records, every call for one request. */
static enum MHD_Result serve_body(Server *srv, struct MHD_Connection *conn, Request *req);

static enum MHD_Result serve_records(Server *srv, struct MHD_Connection *conn, Request *req, const char *upload,
                                     size_t *upload_size) {
        if (req->state == REQ_ANSWERED) {
                *upload_size = 0;
                return MHD_YES;
        }
        if (req->state == REQ_DONE)
                return respond(conn, req->status, "application/json", TAKE_PTR(req->answer), req->retry_after, NULL,
                               NULL);
        if (*upload_size > 0) {
                size_t n = *upload_size;
                *upload_size = 0;
                if (req->too_big || req->overloaded)
                        return MHD_YES;
                if (req->len + n > srv->max_body) {
                        req->too_big = true; /* read on and drop, then answer 413 */
                        body_release(req);
                        return MHD_YES;
                }
                size_t old_cap = req->cap;
                if (greedy_realloc((void **) &req->body, &req->cap, req->len + n + 1, 1, 64 * 1024) < 0)
                        return MHD_NO;
                if (req->cap != old_cap &&
                    atomic_fetch_add(&srv->inflight_bytes, req->cap - old_cap) + (req->cap - old_cap) >
                            srv->inflight_max_bytes) {
                        req->overloaded = true; /* read on and drop, then answer 503 */
                        body_release(req);
                        return MHD_YES;
                }
                memcpy(req->body + req->len, upload, n);
                req->len += n;
                return MHD_YES;
        }
        /* the whole body is here: counted as decoding until queued or answered */
        pthread_mutex_lock(&srv->lock);
        srv->decoding++;
        pthread_mutex_unlock(&srv->lock);
        enum MHD_Result ret = serve_body(srv, conn, req);
        pthread_mutex_lock(&srv->lock);
        srv->decoding--;
        pthread_cond_broadcast(&srv->cond);
        pthread_mutex_unlock(&srv->lock);
        return ret;
}

/* A request's whole body: inflated, decoded and queued for the writer, or answered. */
static enum MHD_Result serve_body(Server *srv, struct MHD_Connection *conn, Request *req) {
        char msg[600];
        if (req->too_big) {
                snprintf(msg, sizeof msg, "body larger than %zu bytes", srv->max_body);
                return respond_error(srv, conn, MHD_HTTP_CONTENT_TOO_LARGE, REJECT_TOO_LARGE, msg, 0);
        }
        if (req->overloaded)
                return respond_error(srv, conn, MHD_HTTP_SERVICE_UNAVAILABLE, REJECT_OVERLOAD,
                                     "too many bodies being received, try again later", RETRY_AFTER_FULL);
        if (req->gzip) {
                char *plain = NULL;
                size_t plain_len = 0;
                char err[256] = "";
                int r = ingest_inflate(req->body ? req->body : "", req->len, srv->max_body, &plain, &plain_len, err,
                                       sizeof err);
                if (r == -EFBIG)
                        return respond_error(srv, conn, MHD_HTTP_CONTENT_TOO_LARGE, REJECT_TOO_LARGE, err, 0);
                if (r < 0)
                        return respond_error(srv, conn, MHD_HTTP_BAD_REQUEST, REJECT_MALFORMED, err, 0);
                body_release(req);
                req->body = plain;
                req->len = plain_len;
                req->cap = plain_len + 1;
                if (atomic_fetch_add(&srv->inflight_bytes, req->cap) + req->cap > srv->inflight_max_bytes) {
                        body_release(req);
                        return respond_error(srv, conn, MHD_HTTP_SERVICE_UNAVAILABLE, REJECT_OVERLOAD,
                                             "too many bodies being received, try again later", RETRY_AFTER_FULL);
                }
        }
        /* decode (and so validate) every line now, in this thread, so the writer only ever
         * stores: what it gets is the records packed, no JSON */
        char err[512] = "";
        char *packed = NULL;
        size_t n = 0, packed_len = 0;
        int r = ingest_pack_body(req->body ? req->body : "", req->len, MAX_RECORDS_PER_REQUEST, &packed, &packed_len,
                                 &n, err, sizeof err);
        if (r == -EPROTONOSUPPORT)
                return respond_error(srv, conn, MHD_HTTP_BAD_REQUEST, REJECT_SCHEMA, err, 0);
        if (r == -E2BIG && strstr(err, "records in one request"))
                return respond_error(srv, conn, MHD_HTTP_CONTENT_TOO_LARGE, REJECT_TOO_LARGE, err, 0);
        if (r == -ENOMEM)
                return respond_error(srv, conn, MHD_HTTP_SERVICE_UNAVAILABLE, REJECT_OVERLOAD,
                                     "out of memory, try again later", RETRY_AFTER_FULL);
        if (r < 0)
                return respond_error(srv, conn, MHD_HTTP_BAD_REQUEST, REJECT_MALFORMED, err, 0);
        /* the packed records replace the body (smaller: no keys, no quoting) */
        body_release(req);
        req->body = packed;
        req->len = packed_len;
        req->cap = packed_len + 1;
        if (atomic_fetch_add(&srv->inflight_bytes, req->cap) + req->cap > srv->inflight_max_bytes) {
                body_release(req);
                return respond_error(srv, conn, MHD_HTTP_SERVICE_UNAVAILABLE, REJECT_OVERLOAD,
                                     "too many bodies being received, try again later", RETRY_AFTER_FULL);
        }
        if (!atomic_load(&srv->db_up) && store_ping(srv->store, NULL, 0) < 0)
                return respond_error(srv, conn, MHD_HTTP_SERVICE_UNAVAILABLE, REJECT_DATABASE,
                                     "database unavailable", RETRY_AFTER_DB);
        if (!enqueue(srv, req))
                return respond_error(srv, conn, MHD_HTTP_SERVICE_UNAVAILABLE, REJECT_OVERLOAD,
                                     "queue full, try again later", RETRY_AFTER_FULL);
        MHD_suspend_connection(conn);
        return MHD_YES;
}

/* ------------------------------------------------------------------ report ---- */

/* The query string again, from libmicrohttpd's decoded arguments: percent-encoded, so the
 * report parses exactly what the command line would get. */
static enum MHD_Result report_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        FILE *f = cls;
        if (ftell(f) > 0)
                fputc('&', f);
        for (int pass = 0; pass < 2; pass++) {
                const char *s = pass == 0 ? key : value;
                if (pass == 1) {
                        if (!value)
                                break;
                        fputc('=', f);
                }
                for (const unsigned char *c = (const unsigned char *) (s ? s : ""); *c; c++) {
                        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                            strchr("-._~", *c))
                                fputc(*c, f);
                        else
                                fprintf(f, "%%%02X", *c);
                }
        }
        return MHD_YES;
}

/* GET /report and /api/v1/report. A credential that names a cluster (bearer token or
 * client certificate) reads that cluster only. Each report opens a Store of its own: a
 * scan of millions of rows must not hold the writer's connection and its lock (SQLite
 * in WAL mode: readers do not block the writer; PostgreSQL: one more connection). */
static enum MHD_Result serve_report(Server *srv, struct MHD_Connection *conn, const char *url) {
        _cleanup_free_ Request *auth = calloc(1, sizeof *auth);
        if (!auth)
                return MHD_NO;
        if (!authenticate(srv, conn, auth))
                return respond(conn, MHD_HTTP_UNAUTHORIZED, "text/plain", strdup("unauthorized\n"), 0,
                               MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
        _cleanup_free_ char *query = NULL;
        size_t query_len = 0;
        FILE *f = open_memstream(&query, &query_len);
        if (!f)
                return MHD_NO;
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, report_arg, f);
        if (fclose(f) != 0)
                return MHD_NO;

        char err[512] = "";
        Store *rs = NULL;
        int r = store_open(&rs, srv->db_url, err, sizeof err);
        if (r < 0) {
                log_line("report: %s", err);
                return respond(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", strdup("database unavailable\n"),
                               RETRY_AFTER_DB, NULL, NULL);
        }
        int status = 0;
        const char *type = NULL;
        char *body = NULL;
        size_t len = 0;
        r = fleet_report_http(rs, url, query, auth->has_cluster ? auth->cluster : NULL, &status, &type, &body, &len);
        store_free(rs);
        if (r < 0)
                return MHD_NO;
        bool html = status == MHD_HTTP_OK && startswith(type, "text/html");
        return respond(conn, (unsigned) status, type, body, 0, html ? "Content-Security-Policy" : NULL,
                       html ? report_html_csp() : NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
        Server *srv = cls;
        Request *req = *con_cls;
        bool is_get = streq_ptr(method, MHD_HTTP_METHOD_GET) || streq_ptr(method, MHD_HTTP_METHOD_HEAD);

        if (req)
                return serve_records(srv, conn, req, upload, upload_size);

        if (streq_ptr(url, "/v1/records")) {
                if (!streq_ptr(method, MHD_HTTP_METHOD_POST))
                        return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", strdup("use POST\n"), 0,
                                       MHD_HTTP_HEADER_ALLOW, "POST");
                req = calloc(1, sizeof *req);
                if (!req)
                        return MHD_NO;
                req->srv = srv;
                req->conn = conn;
                pthread_mutex_lock(&srv->lock);
                bool draining = srv->draining;
                if (!draining)
                        srv->active++;
                pthread_mutex_unlock(&srv->lock);
                if (draining) {
                        free(req);
                        return respond_error(srv, conn, MHD_HTTP_SERVICE_UNAVAILABLE, REJECT_DRAINING,
                                             "shutting down, try again later", RETRY_AFTER_FULL);
                }
                req->counted = true;
                *con_cls = req; /* from here on, completed() frees it and counts it out */
                req->state = REQ_ANSWERED; /* unless the checks below pass */
                if (!authenticate(srv, conn, req))
                        return respond_error(srv, conn, MHD_HTTP_UNAUTHORIZED, REJECT_UNAUTHORIZED, "unauthorized", 0);
                const char *enc = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING);
                if (enc && (strcasecmp(enc, "gzip") == 0 || strcasecmp(enc, "x-gzip") == 0))
                        req->gzip = true;
                else if (enc && strcasecmp(enc, "identity") != 0)
                        return respond_error(srv, conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, REJECT_ENCODING,
                                             "Content-Encoding: only gzip or identity", 0);
                const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
                if (cl && strtoull(cl, NULL, 10) > srv->max_body) {
                        char msg[128];
                        snprintf(msg, sizeof msg, "body larger than %zu bytes", srv->max_body);
                        return respond_error(srv, conn, MHD_HTTP_CONTENT_TOO_LARGE, REJECT_TOO_LARGE, msg, 0);
                }
                req->state = REQ_BODY;
                return MHD_YES; /* the body follows */
        }
        if (streq_ptr(url, "/healthz") || streq_ptr(url, "/readyz") || streq_ptr(url, "/metrics")) {
                if (!is_get)
                        return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", strdup("use GET\n"), 0,
                                       MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
                if (streq_ptr(url, "/healthz"))
                        return respond(conn, MHD_HTTP_OK, "text/plain", strdup("ok\n"), 0, NULL, NULL);
                if (streq_ptr(url, "/readyz"))
                        return serve_readyz(srv, conn);
                return serve_metrics(srv, conn);
        }
        /* --- report engineer: GET /report and GET /api/v1/report are routed here --- */
        if (streq_ptr(url, "/report") || streq_ptr(url, "/api/v1/report")) {
                if (!is_get)
                        return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", strdup("use GET\n"), 0,
                                       MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
                return serve_report(srv, conn, url);
        }
        return respond(conn, MHD_HTTP_NOT_FOUND, "text/plain", strdup("not found\n"), 0, NULL, NULL);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
        Server *srv = cls;
        Request *req = *con_cls;
        if (!req)
                return;
        *con_cls = NULL;
        pthread_mutex_lock(&srv->lock);
        if (req->counted)
                srv->active--;
        pthread_cond_broadcast(&srv->cond);
        pthread_mutex_unlock(&srv->lock);
        request_free(req);
}

/* ------------------------------------------------------------------ startup ---- */

static int read_pem(const char *path, char **ret, char *err, size_t errlen) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errbuf_fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
        size_t len = 0;
        int r = read_fd_bounded(fd, 1U << 20, ret, &len);
        if (r < 0)
                return errbuf_fail(err, errlen, r, "%s: %s", path, strerror(-r));
        if (len > 1U << 20) {
                free(*ret);
                return errbuf_fail(err, errlen, -EFBIG, "%s: larger than 1 MiB", path);
        }
        return 0;
}

static int parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len, bool *ret_loopback) {
        char host[256];
        const char *colon = strrchr(s, ':');
        if (!colon || colon == s || strlen(s) >= sizeof host)
                return -EINVAL;
        size_t hl = (size_t) (colon - s);
        memcpy(host, s, hl);
        host[hl] = 0;
        if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
                memmove(host, host + 1, hl - 2);
                host[hl - 2] = 0;
        }
        char *end;
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (*end || port > 65535 || !colon[1])
                return -EINVAL;
        struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM}, *ai;
        char ps[8];
        snprintf(ps, sizeof ps, "%lu", port);
        if (getaddrinfo(host, ps, &hints, &ai) != 0)
                return -EINVAL;
        memcpy(ret, ai->ai_addr, ai->ai_addrlen);
        *ret_len = ai->ai_addrlen;
        if (ai->ai_family == AF_INET)
                *ret_loopback = (ntohl(((struct sockaddr_in *) ai->ai_addr)->sin_addr.s_addr) >> 24) == 127;
        else
                *ret_loopback = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *) ai->ai_addr)->sin6_addr);
        freeaddrinfo(ai);
        return 0;
}

static int parse_size(const char *s, size_t *ret) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || v == 0)
                return -EINVAL;
        if (strcasecmp(end, "k") == 0 || strcasecmp(end, "kib") == 0)
                v <<= 10;
        else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "mib") == 0)
                v <<= 20;
        else if (*end)
                return -EINVAL;
        if (v > (1ULL << 32))
                return -ERANGE;
        *ret = (size_t) v;
        return 0;
}

static void serve_help(void) {
        printf("pullwatch-fleet serve --listen ADDR:PORT --db URL [options]\n"
               "  --listen ADDR:PORT      where to accept agents (default %s; port 0 picks one)\n"
               "  --db URL                sqlite:PATH (default sqlite:pullwatch-fleet.db) or postgresql://…\n"
               "  --tls-cert F --tls-key F  serve HTTPS (PEM)\n"
               "  --client-ca F           require client certificates signed by this CA (mutual TLS);\n"
               "                          the certificate's CN is the cluster\n"
               "  --tokens F              bearer tokens: lines of \"TOKEN CLUSTER\", re-read when changed\n"
               "  --retention DAYS        delete records older than this (default 90; 0 keeps all)\n"
               "  --max-body BYTES        request body limit, before and after gzip (default 16MiB)\n"
               "  --queue-bytes BYTES     batches waiting for the database, at most (default 32MiB)\n"
               "  --db-lock-timeout SECS  SQLite: wait this long for a lock another writer holds, then\n"
               "                          answer 503 (default 5)\n"
               "  --allow-unauthenticated listen beyond loopback without tokens or client certificates\n",
               DEFAULT_LISTEN);
}

int fleet_serve_main(int argc, char **argv) {
        enum {
                OPT_LISTEN = 0x100,
                OPT_DB,
                OPT_TLS_CERT,
                OPT_TLS_KEY,
                OPT_CLIENT_CA,
                OPT_TOKENS,
                OPT_RETENTION,
                OPT_MAX_BODY,
                OPT_QUEUE_BYTES,
                OPT_ALLOW_OPEN,
                OPT_MAINTAIN,
                OPT_LOCK_TIMEOUT,
        };
        static const struct option opts[] = {
                {"listen", required_argument, NULL, OPT_LISTEN},
                {"db", required_argument, NULL, OPT_DB},
                {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
                {"tls-key", required_argument, NULL, OPT_TLS_KEY},
                {"client-ca", required_argument, NULL, OPT_CLIENT_CA},
                {"tokens", required_argument, NULL, OPT_TOKENS},
                {"retention", required_argument, NULL, OPT_RETENTION},
                {"max-body", required_argument, NULL, OPT_MAX_BODY},
                {"queue-bytes", required_argument, NULL, OPT_QUEUE_BYTES},
                {"db-lock-timeout", required_argument, NULL, OPT_LOCK_TIMEOUT},
                {"allow-unauthenticated", no_argument, NULL, OPT_ALLOW_OPEN},
                {"maintenance-interval", required_argument, NULL, OPT_MAINTAIN}, /* seconds; for tests */
                {"help", no_argument, NULL, 'h'},
                {},
        };
        static Server server;
        Server *srv = &server;
        *srv = (Server){
                .listen = DEFAULT_LISTEN,
                .db_url = "sqlite:pullwatch-fleet.db",
                .retention_days = 90,
                .max_body = DEFAULT_MAX_BODY,
                .queue_max_bytes = DEFAULT_QUEUE_BYTES,
                .maintain_usec = 600ULL * 1000000ULL,
                .lock_timeout_msec = STORE_LOCK_TIMEOUT_MSEC,
        };
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                char *end;
                switch (c) {
                case OPT_LISTEN: srv->listen = optarg; break;
                case OPT_DB: srv->db_url = optarg; break;
                case OPT_TLS_CERT: srv->tls_cert = optarg; break;
                case OPT_TLS_KEY: srv->tls_key = optarg; break;
                case OPT_CLIENT_CA: srv->client_ca = optarg; break;
                case OPT_TOKENS: srv->tokens_path = optarg; break;
                case OPT_ALLOW_OPEN: srv->allow_open = true; break;
                case OPT_RETENTION:
                        srv->retention_days = (unsigned) strtoul(optarg, &end, 10);
                        if (*end || !*optarg || srv->retention_days > 36500) {
                                log_line("--retention: want a number of days, got %s", optarg);
                                return 2;
                        }
                        break;
                case OPT_MAINTAIN: {
                        unsigned long v = strtoul(optarg, &end, 10);
                        if (*end || v == 0 || v > 86400) {
                                log_line("--maintenance-interval: want seconds, got %s", optarg);
                                return 2;
                        }
                        srv->maintain_usec = v * 1000000ULL;
                        break;
                }
                case OPT_LOCK_TIMEOUT: {
                        unsigned long v = strtoul(optarg, &end, 10);
                        if (*end || !*optarg || v == 0 || v > 3600) {
                                log_line("--db-lock-timeout: want seconds from 1 to 3600, got %s", optarg);
                                return 2;
                        }
                        srv->lock_timeout_msec = (unsigned) v * 1000;
                        break;
                }
                case OPT_MAX_BODY:
                case OPT_QUEUE_BYTES: {
                        size_t v;
                        if (parse_size(optarg, &v) < 0) {
                                log_line("--%s: want bytes (K, M suffixes), got %s",
                                         c == OPT_MAX_BODY ? "max-body" : "queue-bytes", optarg);
                                return 2;
                        }
                        *(c == OPT_MAX_BODY ? &srv->max_body : &srv->queue_max_bytes) = v;
                        break;
                }
                case 'h': serve_help(); return 0;
                default: return 2;
                }
        }
        if (optind < argc) {
                log_line("serve: unexpected argument %s", argv[optind]);
                return 2;
        }
        if (!!srv->tls_cert != !!srv->tls_key) {
                log_line("--tls-cert and --tls-key go together");
                return 2;
        }
        if (srv->client_ca && !srv->tls_cert) {
                log_line("--client-ca needs --tls-cert and --tls-key");
                return 2;
        }
        srv->inflight_max_bytes = 2 * srv->queue_max_bytes + srv->max_body;
        if (srv->client_ca && srv->tokens_path) {
                log_line("--client-ca and --tokens are alternatives: choose one");
                return 2;
        }
        struct sockaddr_storage addr;
        socklen_t addr_len;
        bool loopback;
        if (parse_listen(srv->listen, &addr, &addr_len, &loopback) < 0) {
                log_line("--listen: want ADDR:PORT with a numeric address, got %s", srv->listen);
                return 2;
        }
        if (!loopback && !srv->tokens_path && !srv->client_ca && !srv->allow_open) {
                log_line("refusing to listen on %s without --tokens or --client-ca (anyone could write any cluster's"
                         " records); add --allow-unauthenticated to do it anyway",
                         srv->listen);
                return 2;
        }

        char err[1024] = "";
        int r;
        if (srv->tokens_path && (r = tokens_new(&srv->tokens, srv->tokens_path, err, sizeof err)) < 0) {
                log_line("%s", err);
                return 1;
        }
        if (srv->tls_cert && ((r = read_pem(srv->tls_cert, &srv->cert_pem, err, sizeof err)) < 0 ||
                              (r = read_pem(srv->tls_key, &srv->key_pem, err, sizeof err)) < 0 ||
                              (srv->client_ca && (r = read_pem(srv->client_ca, &srv->ca_pem, err, sizeof err)) < 0))) {
                log_line("%s", err);
                return 1;
        }
        r = store_open(&srv->store, srv->db_url, err, sizeof err);
        if (r < 0) {
                log_line("cannot use the database: %s", err);
                return 1;
        }
        store_set_lock_timeout(srv->store, srv->lock_timeout_msec);
        atomic_store(&srv->db_up, true);
        pthread_mutex_init(&srv->lock, NULL);
        pthread_mutex_init(&srv->metrics.lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_cond_init(&srv->cond, &ca);

        /* signals to this thread only: the writer and libmicrohttpd's threads inherit the mask */
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &sigs, NULL);
        signal(SIGPIPE, SIG_IGN);

        if ((r = pthread_create(&srv->writer, NULL, writer_main, srv)) != 0) {
                log_line("cannot start the writer thread: %s", strerror(r));
                return 1;
        }

        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                         MHD_USE_ERROR_LOG | (srv->tls_cert ? MHD_USE_TLS : 0);
        struct MHD_OptionItem tls_opts[] = {
                {srv->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, srv->cert_pem},
                {srv->tls_cert ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, srv->key_pem},
                {srv->ca_pem ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0, srv->ca_pem},
                {MHD_OPTION_END, 0, NULL},
        };
        /* MHD_OPTION_ARRAY stops at the first END: put the present ones first */
        struct MHD_OptionItem tls_list[4];
        size_t nt = 0;
        for (size_t i = 0; i < ELEMENTSOF(tls_opts); i++)
                if (tls_opts[i].option != MHD_OPTION_END)
                        tls_list[nt++] = tls_opts[i];
        tls_list[nt] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
        srv->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, &addr,
                                       MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
                                       MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_THREAD_POOL_SIZE,
                                       (unsigned) 2, MHD_OPTION_CONNECTION_LIMIT, (unsigned) 512,
                                       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) 60, MHD_OPTION_ARRAY, tls_list,
                                       MHD_OPTION_END);
        if (!srv->daemon) {
                log_line("cannot listen on %s (in use, or the TLS files are not a certificate and its key)",
                         srv->listen);
                pthread_mutex_lock(&srv->lock);
                srv->stop = true;
                pthread_cond_broadcast(&srv->cond);
                pthread_mutex_unlock(&srv->lock);
                pthread_join(srv->writer, NULL);
                store_free(srv->store);
                return 1;
        }
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
        char host[128] = "";
        if (addr.ss_family == AF_INET)
                inet_ntop(AF_INET, &((struct sockaddr_in *) &addr)->sin_addr, host, sizeof host);
        else
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &addr)->sin6_addr, host, sizeof host);
        log_line("listening on %s%s%s:%u (%s), database %s%s", addr.ss_family == AF_INET6 ? "[" : "", host,
                 addr.ss_family == AF_INET6 ? "]" : "", di ? (unsigned) di->port : 0, srv->tls_cert ? "https" : "http",
                 store_name(srv->store),
                 srv->tokens ? ", bearer tokens" : srv->client_ca ? ", client certificates" : ", no authentication");

        for (;;) {
                int sig = 0;
                if (sigwait(&sigs, &sig) != 0)
                        continue;
                if (sig == SIGHUP)
                        continue; /* the tokens file is re-read when it changes, nothing else reloads */
                break;
        }
        log_line("stopping: finishing the requests already received");
        pthread_mutex_lock(&srv->lock);
        srv->draining = true;
        uint64_t deadline = now_usec_monotonic() + DRAIN_TIMEOUT_USEC;
        while ((srv->active > 0 || srv->head) && now_usec_monotonic() < deadline)
                cond_wait_usec(srv, 100000);
        size_t left = srv->active;
        pthread_mutex_unlock(&srv->lock);
        if (left)
                log_line("%zu requests still open after %llu s, closing them", left,
                         (unsigned long long) (DRAIN_TIMEOUT_USEC / 1000000ULL));
        MHD_stop_daemon(srv->daemon);
        pthread_mutex_lock(&srv->lock);
        srv->stop = true;
        pthread_cond_broadcast(&srv->cond);
        pthread_mutex_unlock(&srv->lock);
        pthread_join(srv->writer, NULL);
        store_free(srv->store);
        tokens_free(srv->tokens);
        if (srv->key_pem)
                explicit_bzero(srv->key_pem, strlen(srv->key_pem));
        free(srv->key_pem);
        free(srv->cert_pem);
        free(srv->ca_pem);
        log_line("stopped");
        return 0;
}
