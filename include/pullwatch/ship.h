/* Central shipping: records (finding JSON) are read from the spool, encoded in
 * batches (generic JSON lines or the Grafana Loki push API), optionally gzipped,
 * POSTed one request at a time through CurlEv, and acknowledged in the spool only
 * after the endpoint acknowledged them. At-least-once: the receiver dedupes on the
 * record's `id`.
 *
 * Verdicts (fluent-bit's out_http rule): 2xx → OK (ack); 408, 429, 5xx and transport
 * errors → RETRY with full-jitter exponential backoff, Retry-After as a floor; any
 * other status → POISON: the batch goes to the dead-letter file, is acked, and the
 * queue moves on.
 *
 * The pure parts (encoders, gzip, classification, Retry-After, backoff) are exposed
 * so they can be tested and fuzzed without the network. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "pullwatch/curlev.h"
#include "pullwatch/spool.h"

typedef enum ShipFormat {
        SHIP_FORMAT_JSONL, /* one record per line, Content-Type: application/x-ndjson */
        SHIP_FORMAT_LOKI,  /* Loki push JSON, Content-Type: application/json */
        _SHIP_FORMAT_MAX,
        _SHIP_FORMAT_INVALID = -EINVAL,
} ShipFormat;

const char *ship_format_to_string(ShipFormat f); /* static string, NULL if out of range */
ShipFormat ship_format_from_string(const char *s); /* "jsonl" | "loki" */

/* How requests reach the endpoint. NATIVE: agent/httpc.c, a small HTTP/1.1 client on
 * the loop with GnuTLS loaded on demand (the default: a fraction of libcurl's memory,
 * see the README). CURL: libcurl loaded on demand through CurlEv, kept selectable
 * (endpoint_transport=curl) as a fallback and for the benchmark's comparison. */
typedef enum ShipTransport {
        SHIP_TRANSPORT_NATIVE,
        SHIP_TRANSPORT_CURL,
        _SHIP_TRANSPORT_MAX,
        _SHIP_TRANSPORT_INVALID = -EINVAL,
} ShipTransport;

const char *ship_transport_to_string(ShipTransport t); /* static string, NULL if out of range */
ShipTransport ship_transport_from_string(const char *s); /* "native" | "curl" */

/* One record of a batch. data is borrowed. */
typedef struct ShipRecord {
        uint64_t seq;
        const char *data;
        size_t len;
} ShipRecord;

/* A stream label (Loki) — both strings borrowed. */
typedef struct ShipLabel {
        const char *name;
        const char *value;
} ShipLabel;

#define SHIP_LABELS_MAX 8          /* static labels from the config */
#define SHIP_LABEL_NAME_MAX 64     /* Loki allows 1024; ours are short names */
#define SHIP_LABEL_VALUE_MAX 256   /* Loki allows 2048; node/cluster/kind/severity are short */
#define SHIP_HEADERS_MAX 16
#define SHIP_HEADER_MAX 1024       /* one "Name: value" extra header */
#define SHIP_TOKEN_MAX 16384       /* bearer token file */
#define SHIP_BODY_EXCERPT_MAX 200  /* bytes of a response body kept for errors/dead letters */
#define SHIP_RETRY_AFTER_MAX_USEC (3600ULL * 1000000ULL) /* a Retry-After is clamped to 1 h */

/* [a-zA-Z_][a-zA-Z0-9_]*, at most SHIP_LABEL_NAME_MAX-1 bytes. */
bool ship_label_name_valid(const char *name);

/* "2024-05-01T12:00:00.123456Z" / "+02:00" offsets → ns since the epoch. -EINVAL if
 * it is not RFC 3339 or before 1970. */
int ship_parse_rfc3339_ns(const char *s, size_t len, uint64_t *ret_ns);

/* JSON lines: each record followed by '\n'. A record must be non-empty and contain no
 * '\n' or NUL (ship_record_valid()). *ret is malloc()ed, owned by the caller, and not
 * NUL-terminated beyond *ret_len. -E2BIG if the body would exceed max_bytes. */
int ship_encode_jsonl(const ShipRecord *recs, size_t n, size_t max_bytes, char **ret, size_t *ret_len);

/* Loki push JSON. Records are grouped into streams by the static labels plus the
 * record's `kind` and `severity` (and its `node`, unless a static label named node is
 * given); values are [ts-ns-string, record JSON] in record order within each stream.
 * The timestamp comes from the record's `time`; records without a parseable time get
 * fallback_ns. Static label names must be valid (-EINVAL otherwise). Every record must
 * be a JSON object (ship_record_valid()), else -EBADMSG. -E2BIG above max_bytes. */
int ship_encode_loki(const ShipRecord *recs, size_t n, const ShipLabel *labels, size_t n_labels,
                     uint64_t fallback_ns, size_t max_bytes, char **ret, size_t *ret_len);

/* What the Loki encoder needs of one record: its stream labels (node, kind, severity;
 * NULL when absent or unusable as a label) and its time. Filled by ONE parse of the
 * record (ship_loki_meta(), which also tells whether it is a valid Loki record:
 * -EBADMSG otherwise, -ENOMEM), so the shipper parses each record once, when it loads
 * the batch, and the encoder not at all. Strings owned; ship_loki_meta_done() frees. */
enum { SHIP_DYN_NODE, SHIP_DYN_KIND, SHIP_DYN_SEVERITY, SHIP_DYN_MAX };
typedef struct ShipLokiMeta {
        char *dyn[SHIP_DYN_MAX];
        size_t dyn_len[SHIP_DYN_MAX];
        bool has_ts;    /* false: no parseable time (the encoder's fallback_ns is used) */
        uint64_t ts_ns;
} ShipLokiMeta;
int ship_loki_meta(const char *data, size_t len, ShipLokiMeta *ret);
void ship_loki_meta_done(ShipLokiMeta *m);
/* ship_encode_loki() with each record's meta given (borrowed), nothing parsed. */
int ship_encode_loki_meta(const ShipRecord *recs, const ShipLokiMeta *meta, size_t n, const ShipLabel *labels,
                          size_t n_labels, uint64_t fallback_ns, size_t max_bytes, char **ret, size_t *ret_len);

/* Whether a record can be encoded in format f (jsonl: non-empty, no '\n' or NUL;
 * loki additionally: parses as a JSON object). Invalid records are dead-lettered by
 * the shipper, never sent. */
bool ship_record_valid(ShipFormat f, const char *data, size_t len);

/* gzip (RFC 1952) of in; *ret malloc()ed and owned by the caller. level -1 = default. */
int ship_gzip(const void *in, size_t len, int level, char **ret, size_t *ret_len);

typedef enum ShipVerdict {
        SHIP_OK,
        SHIP_RETRY,
        SHIP_POISON,
} ShipVerdict;

/* transport_ok=false (connect/TLS/timeout/reset) → RETRY regardless of status. */
ShipVerdict ship_classify(bool transport_ok, long http_status);
const char *ship_verdict_to_string(ShipVerdict v);

/* Retry-After: delta-seconds or an HTTP-date (IMF-fixdate, RFC 850, asctime).
 * Returns the delay in µs relative to now_usec (0 for a date in the past), clamped to
 * SHIP_RETRY_AFTER_MAX_USEC. -EINVAL if unparseable. */
int ship_parse_retry_after(const char *value, uint64_t now_usec, uint64_t *ret_delay_usec);

/* Returns a uniformly distributed 64-bit value. */
typedef uint64_t (*ship_rng_t)(void *userdata);

/* Full jitter: random(0, min(cap, base * 2^attempt)) inclusive, then at least floor
 * (the Retry-After). attempt 0 is the first retry. */
uint64_t ship_backoff_usec(unsigned attempt, uint64_t base_usec, uint64_t cap_usec, uint64_t floor_usec,
                           ship_rng_t rng, void *rng_userdata);

/* ---- the shipper on the event loop ---- */

typedef struct Shipper Shipper;

/* Every string is borrowed for the duration of ship_new() only (the shipper copies).
 * Initialise with ship_config_init() and override. */
typedef struct ShipConfig {
        const char *url;                  /* http:// or https://, required */
        ShipTransport transport;          /* default native */
        ShipFormat format;                /* default jsonl */
        size_t batch_max_records;         /* default 1000 */
        size_t batch_max_bytes;           /* record payload bytes per batch, default 1 MiB */
        uint64_t batch_max_age_usec;      /* default 1 s: oldest record waits at most this long */
        bool gzip;                        /* default true */
        uint64_t timeout_usec;            /* whole request, default 30 s */
        uint64_t connect_timeout_usec;    /* default 10 s */
        uint64_t retry_base_usec;         /* default 1 s */
        uint64_t retry_max_usec;          /* backoff cap, default 300 s */
        const char *ca_file;              /* NULL: system trust store */
        const char *client_cert;          /* PEM, mTLS; with client_key */
        const char *client_key;
        const char *bearer_token_file;    /* re-read when its mtime/size/inode change; never logged */
        const char *const *headers;       /* "Name: value", e.g. "X-Scope-OrgID: tenant1" */
        size_t n_headers;
        bool insecure;                    /* default false: certificate + host verification ON */
        const ShipLabel *labels;          /* static labels (node, cluster), Loki only */
        size_t n_labels;
        const char *dead_letter_path;     /* required */
        uint64_t dead_letter_max_bytes;   /* default 64 MiB; above, the file is rotated to PATH.1 */
        ship_rng_t rng;                   /* NULL: getrandom()-seeded xorshift */
        void *rng_userdata;
} ShipConfig;

void ship_config_init(ShipConfig *c);

/* level is a syslog priority (LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG). message is a
 * single line, borrowed for the call, and never contains the bearer token. */
typedef void (*ship_log_t)(int level, const char *message, void *userdata);

/* *ret owned by the caller, released with ship_free(). e, ev and spool are borrowed
 * and must outlive the Shipper; ev is used (and required) only with
 * SHIP_TRANSPORT_CURL, pass NULL otherwise. With the native transport an https://
 * URL loads GnuTLS and reads the CA file and client certificate here: a bad one fails
 * ship_new() with one line in err. err (optional) gets a one-line reason on failure. The
 * shipper starts shipping what the spool already holds. */
int ship_new(Shipper **ret, sd_event *e, CurlEv *ev, Spool *spool, const ShipConfig *cfg, char *err,
             size_t errlen);
/* Accepts NULL. Cancels a request in flight (its records stay in the spool). */
Shipper *ship_free(Shipper *s);

void ship_set_log_callback(Shipper *s, ship_log_t cb, void *userdata);

/* Call after appending records: starts a batch now if the count/bytes threshold is
 * reached, otherwise arms the age timer. Cheap; never blocks. */
int ship_kick(Shipper *s);

typedef struct ShipStats {
        uint64_t shipped;        /* records acknowledged by the endpoint */
        uint64_t retried;        /* failed attempts that will be retried */
        uint64_t dead_lettered;  /* records moved to the dead-letter file */
        uint64_t batches;        /* successful requests */
        uint64_t bytes_sent;     /* request bodies of successful requests, after gzip */
        uint64_t last_success_usec; /* CLOCK_REALTIME, 0 = never */
        char last_error[256];    /* "" if the last request succeeded */
        bool in_flight;
        unsigned attempt;        /* consecutive failures of the current batch */
        SpoolStats spool;
} ShipStats;

void ship_get_stats(const Shipper *s, ShipStats *ret);
