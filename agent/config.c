/* Configuration: one declarative table; see config.h. */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "pullwatch/config.h"
#include "pullwatch/log.h"
#include "pullwatch/util.h"

#define USEC_PER_MSEC 1000ULL
#define USEC_PER_SEC 1000000ULL
#define KiB 1024ULL
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)
#define DAY_USEC (86400ULL * USEC_PER_SEC)

#define OFF(f) offsetof(Config, f)
static const ConfigKey keys[] = {
        { "address", CONFIG_STRING, "/run/containerd/containerd.sock", OFF(address),
          "containerd socket", "CONTAINERD_ADDRESS", "address", 0, 0, NULL, 0 },
        { "node", CONFIG_STRING, "", OFF(node), "node name in records (default: the hostname)", "NODE_NAME",
          "node", 0, 0, NULL, 0 },
        { "state_dir", CONFIG_STRING, "/var/lib/pullwatch", OFF(state_dir),
          "directory of the ledger and the spool", "PULLWATCH_STATE_DIR", "state-dir", 0, 0, NULL, 0 },
        { "config", CONFIG_STRING, "", OFF(config), "JSON config file (flags win over it, it wins over the environment)",
          "PULLWATCH_CONFIG", "config", 0, 0, NULL, CONFIG_F_NOFILE },
        { "pins", CONFIG_STRING, "", OFF(pins), "JSON file mapping reference to pinned digest", "PULLWATCH_PINS",
          "pins", 0, 0, NULL, 0 },
        { "stdout", CONFIG_BOOL, "false", OFF(stdout_json), "also write records and findings to stdout as JSON lines",
          "PULLWATCH_STDOUT", "stdout", 0, 0, NULL, 0 },
        { "namespaces", CONFIG_LIST, "", OFF(namespaces), "containerd namespaces to watch (empty: all)",
          "PULLWATCH_NAMESPACES", "namespace", 0, 0, NULL, 0 },
        { "max_message_bytes", CONFIG_SIZE, "16MiB", OFF(max_message_bytes),
          "largest gRPC message accepted from containerd", "PULLWATCH_MAX_MESSAGE_BYTES", "max-message-bytes",
          4 * KiB, 1 * GiB, NULL, 0 },
        /* at ~200-650 bytes an entry, 100k fill the 64 MiB a ledger file may hold (LEDGER_FILE_MAX) */
        { "ledger_max_entries", CONFIG_UINT, "10000", OFF(ledger_max_entries),
          "cap of the ledger's history (oldest history pruned first)", "PULLWATCH_LEDGER_MAX_ENTRIES",
          "ledger-max-entries", 16, 100000, NULL, 0 },
        { "reminder_interval", CONFIG_DURATION, "0", OFF(reminder_interval_usec),
          "repeat open findings this often (0: never)", "PULLWATCH_REMINDER_INTERVAL", "reminder-interval",
          60 * USEC_PER_SEC, 365 * DAY_USEC, NULL, CONFIG_F_ZERO_OFF },
        { "inventory_interval", CONFIG_DURATION, "1h", OFF(inventory_interval_usec),
          "ship an inventory (and re-list every image) this often (0: only at start and reconnect)",
          "PULLWATCH_INVENTORY_INTERVAL", "inventory-interval", 60 * USEC_PER_SEC, 365 * DAY_USEC, NULL,
          CONFIG_F_ZERO_OFF },
        /* the catch-up for pulls that publish no event (containerd 1.7's Transfer service) and
         * never start a container: its cost at 10,000 images is in the README */
        { "relist_interval", CONFIG_DURATION, "10m", OFF(relist_interval_usec),
          "re-list every image this often, to catch pulls that published no event (0: only with the inventory)",
          "PULLWATCH_RELIST_INTERVAL", "relist-interval", 60 * USEC_PER_SEC, 365 * DAY_USEC, NULL,
          CONFIG_F_ZERO_OFF },
        { "keepalive_interval", CONFIG_DURATION, "5m", OFF(keepalive_interval_usec),
          "after this long without a byte from containerd, PING it (below 5m a quiet containerd may answer GOAWAY too_many_pings)",
          "PULLWATCH_KEEPALIVE_INTERVAL", "keepalive-interval", 10 * USEC_PER_SEC, DAY_USEC, NULL, 0 },
        { "keepalive_timeout", CONFIG_DURATION, "20s", OFF(keepalive_timeout_usec),
          "no answer to that PING within this long: containerd is hung, reconnect", "PULLWATCH_KEEPALIVE_TIMEOUT",
          "keepalive-timeout", USEC_PER_SEC, 300 * USEC_PER_SEC, NULL, 0 },
        /* off by default: it trades latency (up to twice the window per event) for CPU in a
         * burst; figures in the README (issue 12 item 3) */
        { "burst_window", CONFIG_DURATION, "0", OFF(burst_window_usec),
          "once events come closer than this, read containerd's socket at most once per window: fewer wake-ups per event in a burst, up to twice the window added to an event's latency (0: off)",
          "PULLWATCH_BURST_WINDOW", "burst-window", USEC_PER_MSEC, USEC_PER_SEC, NULL, CONFIG_F_ZERO_OFF },
        /* issue 12 item 3: the look-up's reply was the second wake-up of every event. 3 ms,
         * counted from containerd's time of the batch's first event: a burst event's
         * latency stays within the 5 ms goal (10 ms took the burst p99 to 13.6 ms on a
         * quiet machine) for most of 4-10 ms's CPU saving; a lone event never waits
         * (figures in the README) */
        { "lookup_delay", CONFIG_DURATION, "3ms", OFF(lookup_delay_usec),
          "in a burst (image events less than this apart) an event's look-up waits for more until this long after containerd published the batch's first event (an event older than that when read does not wait), then one call asks containerd for every name waiting; a lone event never waits (0: only the events of one read, and those arriving while a look-up is under way, share one)",
          "PULLWATCH_LOOKUP_DELAY", "lookup-delay", USEC_PER_MSEC, USEC_PER_SEC, NULL, CONFIG_F_ZERO_OFF },
        { "lookup_list", CONFIG_BOOL, "false", OFF(lookup_list),
          "ask for a batch of image events with one Images.List naming each, rather than one Images.Get each in one write (the List costs containerd a read of every image record: more of its CPU than the Gets below ~20 names at 1,000 images)",
          "PULLWATCH_LOOKUP_LIST", "lookup-list", 0, 0, NULL, 0 },
        { "content_direct", CONFIG_BOOL, "true", OFF(content_direct),
          "read image manifests and configs straight from containerd's content store (checked against their digests), where the agent can, rather than through containerd",
          "PULLWATCH_CONTENT_DIRECT", "content-direct", 0, 0, NULL, 0 },
        { "metrics_file", CONFIG_STRING, "", OFF(metrics_file),
          "write counters in Prometheus text format to this file", "PULLWATCH_METRICS_FILE", "metrics-file", 0,
          0, NULL, 0 },
        { "cluster", CONFIG_STRING, "", OFF(cluster), "cluster label added to shipped records",
          "PULLWATCH_CLUSTER", "cluster", 0, 0, NULL, 0 },

        { "mutable_tags", CONFIG_LIST, "latest\nmain\nmaster\ndevelop\ndev\nstable\nedge\nnightly\nrelease",
          OFF(mutable_tags), "tags treated as mutable", "PULLWATCH_MUTABLE_TAGS", "mutable-tags", 0, 0, NULL, 0 },
        { "allowed_tag_patterns", CONFIG_LIST,
          "^[0-9a-f]{7,40}$\n^v?[0-9]+\\.[0-9]+(\\.[0-9]+)?(-[0-9A-Za-z.-]+)?(\\+[0-9A-Za-z.-]+)?$",
          OFF(allowed_tag_patterns), "strict mode: POSIX extended regexes a tag must match",
          "PULLWATCH_ALLOWED_TAG_PATTERNS", "allowed-tag-pattern", 0, 0, NULL, CONFIG_F_ONE_PER_FLAG },
        { "strict", CONFIG_BOOL, "false", OFF(strict), "any tag matching no allowed pattern is mutable",
          "PULLWATCH_STRICT", "strict", 0, 0, NULL, 0 },
        { "report_untraceable", CONFIG_BOOL, "true", OFF(report_untraceable),
          "report images without an org.opencontainers.image.revision label", "PULLWATCH_REPORT_UNTRACEABLE",
          "report-untraceable", 0, 0, NULL, 0 },
        { "exempt_namespaces", CONFIG_LIST, "", OFF(exempt_namespaces), "containerd namespaces exempt from findings",
          "PULLWATCH_EXEMPT_NAMESPACES", "exempt-namespaces", 0, 0, NULL, 0 },
        { "exempt_k8s_namespaces", CONFIG_LIST, "", OFF(exempt_k8s_namespaces),
          "Kubernetes namespaces exempt from findings", "PULLWATCH_EXEMPT_K8S_NAMESPACES",
          "exempt-k8s-namespaces", 0, 0, NULL, 0 },
        { "exempt_registries", CONFIG_LIST, "", OFF(exempt_registries), "registries exempt from findings",
          "PULLWATCH_EXEMPT_REGISTRIES", "exempt-registries", 0, 0, NULL, 0 },
        { "exempt_repositories", CONFIG_LIST, "", OFF(exempt_repositories),
          "repositories exempt from findings (\"ghcr.io/acme/*\" matches a prefix)",
          "PULLWATCH_EXEMPT_REPOSITORIES", "exempt-repositories", 0, 0, NULL, 0 },
        { "severity.latest_tag", CONFIG_SEVERITY, "medium", OFF(severity[FINDING_LATEST_TAG]),
          "severity of latest_tag findings (or off)", "PULLWATCH_SEVERITY_LATEST_TAG", "severity-latest-tag", 0,
          0, NULL, 0 },
        { "severity.mutable_tag", CONFIG_SEVERITY, "low", OFF(severity[FINDING_MUTABLE_TAG]),
          "severity of mutable_tag findings (or off)", "PULLWATCH_SEVERITY_MUTABLE_TAG", "severity-mutable-tag",
          0, 0, NULL, 0 },
        { "severity.tag_moved", CONFIG_SEVERITY, "high", OFF(severity[FINDING_TAG_MOVED]),
          "severity of tag_moved findings (or off)", "PULLWATCH_SEVERITY_TAG_MOVED", "severity-tag-moved", 0, 0,
          NULL, 0 },
        { "severity.digest_mismatch", CONFIG_SEVERITY, "critical", OFF(severity[FINDING_DIGEST_MISMATCH]),
          "severity of digest_mismatch findings (or off)", "PULLWATCH_SEVERITY_DIGEST_MISMATCH",
          "severity-digest-mismatch", 0, 0, NULL, 0 },
        { "severity.revision_mismatch", CONFIG_SEVERITY, "high", OFF(severity[FINDING_REVISION_MISMATCH]),
          "severity of revision_mismatch findings (or off)", "PULLWATCH_SEVERITY_REVISION_MISMATCH",
          "severity-revision-mismatch", 0, 0, NULL, 0 },
        { "severity.untraceable", CONFIG_SEVERITY, "low", OFF(severity[FINDING_UNTRACEABLE]),
          "severity of untraceable findings (or off)", "PULLWATCH_SEVERITY_UNTRACEABLE", "severity-untraceable",
          0, 0, NULL, 0 },

        { "endpoint", CONFIG_STRING, "", OFF(endpoint), "URL records are shipped to (empty: no shipping)",
          "PULLWATCH_ENDPOINT", "endpoint", 0, 0, NULL, 0 },
        { "endpoint_format", CONFIG_ENUM, "jsonl", OFF(endpoint_format), "body format: JSON lines or Loki push",
          "PULLWATCH_ENDPOINT_FORMAT", "endpoint-format", 0, 0, "jsonl|loki", 0 },
        { "endpoint_transport", CONFIG_ENUM, "native", OFF(endpoint_transport),
          "HTTP client: native (HTTP/1.1 + GnuTLS, loaded on demand) or curl (libcurl, loaded on demand)",
          "PULLWATCH_ENDPOINT_TRANSPORT", "endpoint-transport", 0, 0, "native|curl", 0 },
        { "endpoint_ca_file", CONFIG_STRING, "", OFF(endpoint_ca_file), "CA bundle to verify the endpoint",
          "PULLWATCH_ENDPOINT_CA_FILE", "endpoint-ca-file", 0, 0, NULL, 0 },
        { "endpoint_cert_file", CONFIG_STRING, "", OFF(endpoint_cert_file), "client certificate (mutual TLS)",
          "PULLWATCH_ENDPOINT_CERT_FILE", "endpoint-cert-file", 0, 0, NULL, 0 },
        { "endpoint_key_file", CONFIG_STRING, "", OFF(endpoint_key_file), "client key (mutual TLS)",
          "PULLWATCH_ENDPOINT_KEY_FILE", "endpoint-key-file", 0, 0, NULL, 0 },
        { "endpoint_token_file", CONFIG_STRING, "", OFF(endpoint_token_file),
          "file holding a bearer token (re-read when it changes)", "PULLWATCH_ENDPOINT_TOKEN_FILE",
          "endpoint-token-file", 0, 0, NULL, 0 },
        { "endpoint_headers", CONFIG_LIST, "", OFF(endpoint_headers), "extra HTTP headers, \"Name: value\"",
          "PULLWATCH_ENDPOINT_HEADERS", "endpoint-header", 0, 0, NULL, CONFIG_F_ONE_PER_FLAG },
        { "endpoint_timeout", CONFIG_DURATION, "10s", OFF(endpoint_timeout_usec), "timeout of one HTTP request",
          "PULLWATCH_ENDPOINT_TIMEOUT", "endpoint-timeout", 100 * USEC_PER_MSEC, 600 * USEC_PER_SEC, NULL, 0 },
        { "endpoint_insecure", CONFIG_BOOL, "false", OFF(endpoint_insecure),
          "skip TLS verification of the endpoint (testing only)", "PULLWATCH_ENDPOINT_INSECURE",
          "endpoint-insecure", 0, 0, NULL, 0 },
        { "batch_max_records", CONFIG_UINT, "500", OFF(batch_max_records), "records per HTTP request, at most",
          "PULLWATCH_BATCH_MAX_RECORDS", "batch-max-records", 1, 100000, NULL, 0 },
        { "batch_max_bytes", CONFIG_SIZE, "1MiB", OFF(batch_max_bytes), "uncompressed bytes per request, at most",
          "PULLWATCH_BATCH_MAX_BYTES", "batch-max-bytes", 1 * KiB, 64 * MiB, NULL, 0 },
        { "batch_max_age", CONFIG_DURATION, "5s", OFF(batch_max_age_usec),
          "send a partial batch after this long", "PULLWATCH_BATCH_MAX_AGE", "batch-max-age",
          10 * USEC_PER_MSEC, 3600 * USEC_PER_SEC, NULL, CONFIG_F_ZERO_OFF },
        { "retry_max_backoff", CONFIG_DURATION, "5m", OFF(retry_max_backoff_usec),
          "cap of the exponential retry backoff", "PULLWATCH_RETRY_MAX_BACKOFF", "retry-max-backoff",
          1 * USEC_PER_SEC, DAY_USEC, NULL, 0 },
        { "spool_max_bytes", CONFIG_SIZE, "64MiB", OFF(spool_max_bytes),
          "disk used by unsent records, at most (oldest dropped beyond)", "PULLWATCH_SPOOL_MAX_BYTES",
          "spool-max-bytes", 64 * KiB, 64 * GiB, NULL, 0 },
        { "spool_fsync", CONFIG_ENUM, "batch", OFF(spool_fsync),
          "when the spool is fsynced: always (safest), batch, never (fastest)", "PULLWATCH_SPOOL_FSYNC",
          "spool-fsync", 0, 0, "always|batch|never", 0 },
        { "log_level", CONFIG_ENUM, "info", OFF(log_level),
          "the agent's own diagnostics on stderr: err, warning, notice, info or debug", "PULLWATCH_LOG_LEVEL",
          "log-level", 0, 0, "err|warning|notice|info|debug", 0 },
};

const ConfigKey *config_keys(size_t *ret_n) {
        *ret_n = ELEMENTSOF(keys);
        return keys;
}

const char *config_type_to_string(ConfigType t) {
        static const char *const names[_CONFIG_TYPE_MAX] = {
                [CONFIG_STRING] = "string",     [CONFIG_BOOL] = "bool",
                [CONFIG_UINT] = "uint",         [CONFIG_DURATION] = "duration",
                [CONFIG_SIZE] = "size",         [CONFIG_LIST] = "list",
                [CONFIG_SEVERITY] = "severity", [CONFIG_ENUM] = "enum",
        };
        return (unsigned) t < _CONFIG_TYPE_MAX ? names[t] : NULL;
}

#define set_err(err, errlen, ...) ((void) errbuf_fail(err, errlen, 0, __VA_ARGS__))

static void *field(const Config *c, const ConfigKey *k) {
        return (char *) c + k->offset;
}

static void strlist_clear(StrList *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
        *l = (StrList) {};
}

static int strlist_append(StrList *l, const char *s, size_t len) {
        if (l->n >= CONFIG_LIST_MAX)
                return -E2BIG;
        if (len > CONFIG_VALUE_MAX)
                return -ENAMETOOLONG;
        char **v = realloc(l->v, (l->n + 1) * sizeof(char *));
        if (!v)
                return -ENOMEM;
        l->v = v;
        l->v[l->n] = strndup(s, len);
        if (!l->v[l->n])
                return -ENOMEM;
        l->n++;
        return 0;
}

bool config_list_contains(const StrList *l, const char *s) {
        for (size_t i = 0; l && i < l->n; i++)
                if (streq_ptr(l->v[i], s))
                        return true;
        return false;
}

/* ---- value parsers ---- */

int config_parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "true", "yes", "on", "1" }, *const no[] = { "false", "no", "off", "0" };
        for (size_t i = 0; s && i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static int parse_u64(const char **p, uint64_t *ret) {
        const char *s = *p;
        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        *ret = v;
        *p = end;
        return 0;
}

static int mul_add(uint64_t *acc, uint64_t v, uint64_t unit) {
        if (v != 0 && unit > UINT64_MAX / v)
                return -ERANGE;
        if (*acc > UINT64_MAX - v * unit)
                return -ERANGE;
        *acc += v * unit;
        return 0;
}

int config_parse_duration(const char *s, uint64_t *ret_usec) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = { /* longest first: "ms" before "m" */
                      { "us", 1 },
                      { "ms", USEC_PER_MSEC },
                      { "s", USEC_PER_SEC },
                      { "m", 60 * USEC_PER_SEC },
                      { "h", 3600 * USEC_PER_SEC },
                      { "d", DAY_USEC } };
        if (isempty(s))
                return -EINVAL;
        const char *p = s;
        uint64_t total = 0, v;
        int r = parse_u64(&p, &v);
        if (r < 0)
                return r;
        if (*p == 0) /* a bare number is seconds */
                return mul_add(&total, v, USEC_PER_SEC) < 0 ? -ERANGE : (*ret_usec = total, 0);
        for (;;) {
                size_t best = SIZE_MAX;
                for (size_t i = 0; i < ELEMENTSOF(units); i++)
                        if (startswith(p, units[i].suffix) &&
                            (best == SIZE_MAX || strlen(units[i].suffix) > strlen(units[best].suffix)))
                                best = i;
                if (best == SIZE_MAX)
                        return -EINVAL;
                if (mul_add(&total, v, units[best].usec) < 0)
                        return -ERANGE;
                p += strlen(units[best].suffix);
                if (*p == 0)
                        break;
                r = parse_u64(&p, &v);
                if (r < 0)
                        return r;
        }
        *ret_usec = total;
        return 0;
}

int config_parse_size(const char *s, uint64_t *ret_bytes) {
        static const struct {
                const char *suffix;
                uint64_t mult;
        } units[] = { { "", 1 },           { "B", 1 },
                      { "K", KiB },        { "KiB", KiB },      { "KB", 1000 },
                      { "M", MiB },        { "MiB", MiB },      { "MB", 1000000 },
                      { "G", GiB },        { "GiB", GiB },      { "GB", 1000000000 } };
        if (isempty(s))
                return -EINVAL;
        const char *p = s;
        uint64_t v, total = 0;
        int r = parse_u64(&p, &v);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (streq_ptr(p, units[i].suffix)) {
                        if (mul_add(&total, v, units[i].mult) < 0)
                                return -ERANGE;
                        *ret_bytes = total;
                        return 0;
                }
        return -EINVAL;
}

int config_parse_severity(const char *s, int *ret) {
        if (streq_ptr(s, "off")) {
                *ret = CONFIG_SEVERITY_OFF;
                return 0;
        }
        static const char *const names[_SEVERITY_MAX] = {
                [SEVERITY_INFO] = "info",     [SEVERITY_LOW] = "low", [SEVERITY_MEDIUM] = "medium",
                [SEVERITY_HIGH] = "high", [SEVERITY_CRITICAL] = "critical",
        };
        for (int i = 0; s && i < _SEVERITY_MAX; i++)
                if (strcmp(s, names[i]) == 0) {
                        *ret = i;
                        return 0;
                }
        return -EINVAL;
}

/* Where an enum key's parsed value goes: an int in Config set to base + the index of the
 * choice, so the choices are listed in the order of the enum they stand for. */
static const struct {
        size_t key, value;
        int base;
} enum_values[] = {
        {OFF(endpoint_format), OFF(endpoint_format_value), SHIP_FORMAT_JSONL},
        {OFF(endpoint_transport), OFF(endpoint_transport_value), SHIP_TRANSPORT_NATIVE},
        {OFF(spool_fsync), OFF(spool_fsync_value), SPOOL_FSYNC_ALWAYS},
        {OFF(log_level), OFF(log_level_value), LOG_LEVEL_ERR},
};

static void set_enum_value(Config *c, const ConfigKey *k, int choice) {
        for (size_t i = 0; i < ELEMENTSOF(enum_values); i++)
                if (enum_values[i].key == k->offset)
                        *(int *) ((char *) c + enum_values[i].value) = enum_values[i].base + choice;
}

/* The index of s in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *s) {
        size_t n = strlen(s);
        int i = 0;
        for (const char *p = choices; p && *p; i++) {
                const char *bar = strchr(p, '|');
                size_t l = bar ? (size_t) (bar - p) : strlen(p);
                if (l == n && n > 0 && memcmp(p, s, n) == 0)
                        return i;
                p = bar ? bar + 1 : NULL;
        }
        return -1;
}

/* What a key accepts, for error messages. */
static const char *expected(const ConfigKey *k) {
        switch (k->type) {
        case CONFIG_STRING:
                return "a string";
        case CONFIG_BOOL:
                return "a boolean (true or false)";
        case CONFIG_UINT:
                return "a non-negative integer";
        case CONFIG_DURATION:
                return "a duration such as \"30s\", \"5m\", \"1h\"";
        case CONFIG_SIZE:
                return "a size such as \"512KiB\", \"16MiB\"";
        case CONFIG_LIST:
                return "a list of strings";
        case CONFIG_SEVERITY:
                return "a severity: info, low, medium, high, critical or off";
        case CONFIG_ENUM:
                return k->choices;
        default:
                return "?";
        }
}

static const char *unit_name(const ConfigKey *k) {
        return k->type == CONFIG_DURATION ? "us" : k->type == CONFIG_SIZE ? " bytes" : "";
}

/* A bound in the key's own syntax: a duration in its largest exact unit ("1m", "365d"). */
static void format_bound(const ConfigKey *k, uint64_t v, char *buf, size_t len) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = { { "d", DAY_USEC }, { "h", 3600 * USEC_PER_SEC }, { "m", 60 * USEC_PER_SEC },
                      { "s", USEC_PER_SEC }, { "ms", USEC_PER_MSEC } };
        if (k->type == CONFIG_DURATION && v > 0)
                for (size_t i = 0; i < ELEMENTSOF(units); i++)
                        if (v % units[i].usec == 0) {
                                snprintf(buf, len, "%llu%s", (unsigned long long) (v / units[i].usec),
                                         units[i].suffix);
                                return;
                        }
        snprintf(buf, len, "%llu%s", (unsigned long long) v, unit_name(k));
}

/* Set one scalar (non-list) key from its text form. On failure -EINVAL/-ERANGE with a
 * reason; the field is unchanged. */
static int set_scalar(Config *c, const ConfigKey *k, const char *s, char *why, size_t whylen) {
        void *f = field(c, k);
        uint64_t u;
        int r;
        if (strlen(s) > CONFIG_VALUE_MAX) {
                set_err(why, whylen, "value too long (limit %u)", CONFIG_VALUE_MAX);
                return -EINVAL;
        }
        switch (k->type) {
        case CONFIG_STRING:
        case CONFIG_ENUM: {
                int choice = k->type == CONFIG_ENUM ? choice_index(k->choices, s) : 0;
                if (choice < 0) {
                        set_err(why, whylen, "expected one of %s", k->choices);
                        return -EINVAL;
                }
                char *d = strdup(s);
                if (!d)
                        return -ENOMEM;
                free(*(char **) f);
                *(char **) f = d;
                if (k->type == CONFIG_ENUM)
                        set_enum_value(c, k, choice);
                return 0;
        }
        case CONFIG_BOOL: {
                bool b;
                if (config_parse_bool(s, &b) < 0) {
                        set_err(why, whylen, "expected %s", expected(k));
                        return -EINVAL;
                }
                *(bool *) f = b;
                return 0;
        }
        case CONFIG_UINT:
        case CONFIG_DURATION:
        case CONFIG_SIZE: {
                if (k->type == CONFIG_UINT) {
                        const char *p = s;
                        r = parse_u64(&p, &u);
                        if (r == 0 && *p)
                                r = -EINVAL;
                } else if (k->type == CONFIG_DURATION)
                        r = config_parse_duration(s, &u);
                else
                        r = config_parse_size(s, &u);
                if (r < 0) {
                        set_err(why, whylen, "expected %s", expected(k));
                        return -EINVAL;
                }
                if (k->max > 0 && (u < k->min || u > k->max) && !(u == 0 && (k->flags & CONFIG_F_ZERO_OFF))) {
                        char lo[32], hi[32];
                        format_bound(k, k->min, lo, sizeof(lo));
                        format_bound(k, k->max, hi, sizeof(hi));
                        set_err(why, whylen, "out of range%s%s..%s", k->flags & CONFIG_F_ZERO_OFF ? ": 0 (off) or " : " ",
                                lo, hi);
                        return -ERANGE;
                }
                *(uint64_t *) f = u;
                return 0;
        }
        case CONFIG_SEVERITY: {
                int sev;
                if (config_parse_severity(s, &sev) < 0) {
                        set_err(why, whylen, "expected %s", expected(k));
                        return -EINVAL;
                }
                *(int *) f = sev;
                return 0;
        }
        default:
                return -EINVAL;
        }
}

/* Append the items of s split on sep to l. */
static int list_append_split(StrList *l, const char *s, char sep, char *why, size_t whylen) {
        for (const char *p = s; *p;) {
                const char *e = strchr(p, sep);
                size_t n = e ? (size_t) (e - p) : strlen(p);
                /* trim blanks around comma-separated items */
                const char *b = p;
                while (n > 0 && (*b == ' ' || *b == '\t')) {
                        b++;
                        n--;
                }
                while (n > 0 && (b[n - 1] == ' ' || b[n - 1] == '\t'))
                        n--;
                if (n > 0) {
                        int r = strlist_append(l, b, n);
                        if (r == -E2BIG || r == -ENAMETOOLONG) {
                                set_err(why, whylen, r == -E2BIG ? "too many items (limit %u)"
                                                                 : "item too long (limit %u)",
                                        r == -E2BIG ? CONFIG_LIST_MAX : CONFIG_VALUE_MAX);
                                return -EINVAL;
                        }
                        if (r < 0)
                                return r;
                }
                if (!e)
                        break;
                p = e + 1;
        }
        return 0;
}

static void config_zero(Config *c) {
        memset(c, 0, sizeof(*c));
}

void config_done(Config *c) {
        if (!c)
                return;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                void *f = field(c, &keys[i]);
                if (keys[i].type == CONFIG_STRING || keys[i].type == CONFIG_ENUM)
                        free(*(char **) f);
                else if (keys[i].type == CONFIG_LIST)
                        strlist_clear(f);
        }
        config_zero(c);
}

int config_init(Config *c) {
        Config n;
        config_zero(&n);
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const ConfigKey *k = &keys[i];
                int r = k->type == CONFIG_LIST ? list_append_split(field(&n, k), k->def, '\n', NULL, 0)
                                               : set_scalar(&n, k, k->def, NULL, 0);
                if (r < 0) {
                        config_done(&n);
                        return r;
                }
        }
        *c = n;
        return 0;
}

int config_copy(Config *dst, const Config *src) {
        Config n = *src;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                void *f = field(&n, &keys[i]);
                if (keys[i].type == CONFIG_STRING || keys[i].type == CONFIG_ENUM)
                        *(char **) f = NULL;
                else if (keys[i].type == CONFIG_LIST)
                        *(StrList *) f = (StrList) {};
        }
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const ConfigKey *k = &keys[i];
                int r = 0;
                if (k->type == CONFIG_STRING || k->type == CONFIG_ENUM) {
                        const char *s = *(char **) field(src, k);
                        if (s && !(*(char **) field(&n, k) = strdup(s)))
                                r = -ENOMEM;
                } else if (k->type == CONFIG_LIST) {
                        const StrList *l = field(src, k);
                        for (size_t j = 0; j < l->n && r >= 0; j++)
                                r = strlist_append(field(&n, k), l->v[j], strlen(l->v[j]));
                }
                if (r < 0) {
                        config_done(&n);
                        return r;
                }
        }
        *dst = n;
        return 0;
}

/* ---- environment ---- */

int config_apply_env(Config *c, const char *(*getenv_fn)(const char *name), char *err, size_t errlen) {
        Config n;
        int r = config_copy(&n, c);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const ConfigKey *k = &keys[i];
                if (!k->env)
                        continue;
                const char *v = getenv_fn ? getenv_fn(k->env) : getenv(k->env);
                if (!v)
                        continue;
                char why[200] = "";
                if (k->type == CONFIG_LIST) {
                        strlist_clear(field(&n, k));
                        r = list_append_split(field(&n, k), v, k->flags & CONFIG_F_ONE_PER_FLAG ? '\n' : ',', why,
                                              sizeof(why));
                } else if (*v == 0 && k->type != CONFIG_STRING)
                        continue; /* VAR= on a typed key: as if unset (common in manifests) */
                else
                        r = set_scalar(&n, k, v, why, sizeof(why));
                if (r < 0) {
                        set_err(err, errlen, "config: environment variable %s: %s", k->env, why);
                        config_done(&n);
                        return r == -ENOMEM ? r : -EINVAL;
                }
        }
        config_done(c);
        *c = n;
        return 0;
}

/* ---- JSON file ---- */


static const ConfigKey *key_by_name(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (streq_ptr(keys[i].name, name))
                        return &keys[i];
        return NULL;
}

/* Quote a key from a hostile file: printable ASCII only, bounded. */
static void quote(const char *s, char *buf, size_t len) {
        size_t o = 0;
        for (; *s && o + 4 < len; s++) {
                unsigned char ch = (unsigned char) *s;
                buf[o++] = (ch >= 0x20 && ch < 0x7f && ch != '"') ? (char) ch : '?';
        }
        if (*s && len >= 4)
                memcpy(buf + (o = len - 4), "...", 3), o += 3;
        buf[o] = 0;
}

static int apply_json_value(Config *c, const ConfigKey *k, json_t *v, const char *source, char *err, size_t errlen) {
        char why[200] = "", num[32];
        const char *text = NULL;
        int r;

        if (k->type == CONFIG_LIST) {
                if (!json_is_array(v))
                        goto wrong_type;
                StrList l = {};
                size_t i;
                json_t *item;
                json_array_foreach(v, i, item) {
                        const char *s = json_string_value(item);
                        if (!s) {
                                strlist_clear(&l);
                                set_err(err, errlen, "config: key \"%s\" in %s: item %zu is not a string", k->name,
                                        source, i);
                                return -EINVAL;
                        }
                        r = strlist_append(&l, s, json_string_length(item));
                        if (r < 0 || strlen(s) != json_string_length(item)) {
                                strlist_clear(&l);
                                if (r == -ENOMEM)
                                        return r;
                                set_err(err, errlen, "config: key \"%s\" in %s: %s", k->name, source,
                                        r == -E2BIG ? "too many items" : "bad or over-long item");
                                return -EINVAL;
                        }
                }
                strlist_clear(field(c, k));
                *(StrList *) field(c, k) = l;
                return 0;
        }

        switch (k->type) {
        case CONFIG_BOOL:
                if (!json_is_boolean(v))
                        goto wrong_type;
                *(bool *) field(c, k) = json_is_true(v);
                return 0;
        case CONFIG_UINT:
        case CONFIG_DURATION:
        case CONFIG_SIZE:
                if (json_is_integer(v)) {
                        if (json_integer_value(v) < 0)
                                goto wrong_type;
                        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                        text = num; /* a duration's bare number is seconds, a size's bytes */
                } else if (k->type != CONFIG_UINT && json_is_string(v))
                        text = json_string_value(v);
                else
                        goto wrong_type;
                break;
        default:
                if (!json_is_string(v))
                        goto wrong_type;
                text = json_string_value(v);
                if (strlen(text) != json_string_length(v)) {
                        set_err(err, errlen, "config: key \"%s\" in %s: NUL in string", k->name, source);
                        return -EINVAL;
                }
        }
        r = set_scalar(c, k, text, why, sizeof(why));
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                set_err(err, errlen, "config: key \"%s\" in %s: %s", k->name, source, why);
                return -EINVAL;
        }
        return 0;

wrong_type:
        set_err(err, errlen, "config: key \"%s\" in %s: expected %s", k->name, source, expected(k));
        return -EINVAL;
}

static int apply_json_object(Config *c, json_t *root, const char *prefix, const char *source, char *err,
                             size_t errlen) {
        const char *name;
        json_t *v;
        json_object_foreach(root, name, v) {
                char full[128], q[100];
                int n = snprintf(full, sizeof(full), "%s%s", prefix, name);
                const ConfigKey *k = n > 0 && (size_t) n < sizeof(full) ? key_by_name(full) : NULL;
                if (!k && !*prefix && streq_ptr(name, "severity") && json_is_object(v)) {
                        int r = apply_json_object(c, v, "severity.", source, err, errlen);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (!k) {
                        quote(n > 0 && (size_t) n < sizeof(full) ? full : name, q, sizeof(q));
                        set_err(err, errlen, "config: unknown key \"%s\" in %s", q, source);
                        return -EINVAL;
                }
                if (k->flags & CONFIG_F_NOFILE) {
                        set_err(err, errlen, "config: key \"%s\" cannot be set in a config file (%s)", k->name,
                                source);
                        return -EINVAL;
                }
                int r = apply_json_value(c, k, v, source, err, errlen);
                if (r < 0)
                        return r;
        }
        return 0;
}

int config_load_buffer(Config *c, const char *buf, size_t len, const char *source, char *err, size_t errlen) {
        if (!source)
                source = "config";
        if (len > CONFIG_FILE_MAX) {
                set_err(err, errlen, "config: %s is larger than %u bytes", source, CONFIG_FILE_MAX);
                return -E2BIG;
        }
        json_error_t jerr;
        _cleanup_(json_decrefp) json_t *root = json_loadb(buf ? buf : "", len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
                set_err(err, errlen, "config: bad JSON in %s at line %d column %d: %s", source, jerr.line,
                        jerr.column, jerr.text);
                return -EINVAL;
        }
        if (!json_is_object(root)) {
                set_err(err, errlen, "config: %s must hold a JSON object", source);
                return -EINVAL;
        }
        Config n;
        int r = config_copy(&n, c);
        if (r < 0)
                return r;
        r = apply_json_object(&n, root, "", source, err, errlen);
        if (r < 0) {
                config_done(&n);
                return r;
        }
        config_done(c);
        *c = n;
        return 0;
}

int config_load_file(Config *c, const char *path, char *err, size_t errlen) {
        _cleanup_close_ int fd = open_regular_file(AT_FDCWD, path, 0);
        if (fd < 0) {
                set_err(err, errlen, "config: %s: %s", path, fd == -EINVAL ? "not a regular file" : strerror(-fd));
                return fd;
        }
        _cleanup_free_ char *buf = NULL;
        size_t off = 0;
        int r = read_fd_bounded(fd, CONFIG_FILE_MAX, &buf, &off);
        if (r < 0) {
                set_err(err, errlen, "config: %s: %s", path, strerror(-r));
                return r;
        }
        return config_load_buffer(c, buf, off, path, err, errlen);
}

/* ---- flags ---- */

static const ConfigKey *key_by_flag(const char *flag, size_t len) {
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (strlen(keys[i].flag) == len && memcmp(keys[i].flag, flag, len) == 0)
                        return &keys[i];
        return NULL;
}

int config_parse_args(Config *c, int argc, char **argv, size_t *ret_npos, char *err, size_t errlen) {
        Config n;
        bool list_seen[ELEMENTSOF(keys)] = {};
        size_t npos = 0, nflag = 0;
        if (argc < 0)
                return -EINVAL;
        /* Positionals first, then the flag words, both in their original order. */
        _cleanup_free_ char **pos = calloc((size_t) argc + 1, sizeof(char *));
        _cleanup_free_ char **flg = calloc((size_t) argc + 1, sizeof(char *));
        if (!pos || !flg)
                return -ENOMEM;
        int r = config_copy(&n, c);
        if (r < 0)
                return r;

        for (int i = 0; i < argc; i++) {
                const char *a = argv[i];
                if (streq_ptr(a, "--")) {
                        for (i++; i < argc; i++)
                                pos[npos++] = argv[i];
                        break;
                }
                if (!startswith(a, "--")) {
                        pos[npos++] = argv[i]; /* positional, including "-" */
                        continue;
                }
                flg[nflag++] = argv[i];
                const char *name = a + 2, *eq = strchr(name, '=');
                size_t nlen = eq ? (size_t) (eq - name) : strlen(name);
                const ConfigKey *k = key_by_flag(name, nlen);
                const char *value = eq ? eq + 1 : NULL;
                char q[80], why[200] = "";

                if (!k && nlen > 3 && startswith(name, "no-") && !eq) {
                        k = key_by_flag(name + 3, nlen - 3);
                        if (k && k->type == CONFIG_BOOL) {
                                *(bool *) field(&n, k) = false;
                                continue;
                        }
                        k = NULL;
                }
                if (!k) {
                        char fl[100];
                        snprintf(fl, sizeof(fl), "%.*s", (int) (nlen < 80 ? nlen : 80), name);
                        quote(fl, q, sizeof(q));
                        set_err(err, errlen, "unknown option --%s", q);
                        config_done(&n);
                        return -EINVAL;
                }
                if (k->type == CONFIG_BOOL && !value)
                        value = "true";
                if (!value) {
                        if (i + 1 >= argc) {
                                set_err(err, errlen, "option --%s needs a value (%s)", k->flag, expected(k));
                                config_done(&n);
                                return -EINVAL;
                        }
                        value = argv[++i];
                        flg[nflag++] = argv[i];
                }
                size_t idx = (size_t) (k - keys);
                if (k->type == CONFIG_LIST) {
                        if (!list_seen[idx])
                                strlist_clear(field(&n, k));
                        list_seen[idx] = true;
                        if (k->flags & CONFIG_F_ONE_PER_FLAG) {
                                r = *value ? strlist_append(field(&n, k), value, strlen(value)) : 0;
                                if (r == -E2BIG || r == -ENAMETOOLONG) {
                                        snprintf(why, sizeof(why), "too many or too long items");
                                        r = -EINVAL;
                                }
                        } else
                                r = list_append_split(field(&n, k), value, ',', why, sizeof(why));
                } else
                        r = set_scalar(&n, k, value, why, sizeof(why));
                if (r < 0) {
                        set_err(err, errlen, "option --%s: %s", k->flag, why);
                        config_done(&n);
                        return r == -ENOMEM ? r : -EINVAL;
                }
        }
        config_done(c);
        *c = n;
        if (npos > 0)
                memcpy(argv, pos, npos * sizeof(char *));
        if (nflag > 0)
                memcpy(argv + npos, flg, nflag * sizeof(char *));
        if (ret_npos)
                *ret_npos = npos;
        return 0;
}

int config_finish(Config *c, char *err, size_t errlen) {
        if (isempty(c->node)) {
                char host[256] = "";
                if (gethostname(host, sizeof(host) - 1) < 0 || !host[0]) {
                        set_err(err, errlen, "cannot determine the node name: set --node or NODE_NAME");
                        return -EINVAL;
                }
                char *d = strdup(host);
                if (!d)
                        return -ENOMEM;
                free(c->node);
                c->node = d;
        }
        return 0;
}

int config_load_all(Config *c, int argc, char **argv, size_t *ret_npos,
                    const char *(*getenv_fn)(const char *name), char *err, size_t errlen) {
        Config n, flags_only;
        _cleanup_free_ char **scratch = NULL;
        size_t npos = 0;
        int r = config_init(&n);
        if (r < 0)
                return r;
        r = config_apply_env(&n, getenv_fn, err, errlen);
        if (r < 0)
                goto fail;

        /* The file's path comes from the flags (or the environment, already applied):
         * parse the flags once on a copy to learn it. argv's permutation is idempotent. */
        r = -ENOMEM;
        scratch = argc > 0 ? malloc((size_t) argc * sizeof(char *)) : NULL;
        if (argc > 0 && !scratch)
                goto fail;
        if (argc > 0)
                memcpy(scratch, argv, (size_t) argc * sizeof(char *));
        r = config_copy(&flags_only, &n);
        if (r < 0)
                goto fail;
        r = config_parse_args(&flags_only, argc, scratch, NULL, err, errlen);
        if (r >= 0 && !isempty(flags_only.config))
                r = config_load_file(&n, flags_only.config, err, errlen);
        config_done(&flags_only);
        if (r < 0)
                goto fail;
        r = config_parse_args(&n, argc, argv, &npos, err, errlen);
        if (r < 0)
                goto fail;
        r = config_finish(&n, err, errlen);
        if (r < 0)
                goto fail;
        *c = n;
        if (ret_npos)
                *ret_npos = npos;
        return 0;
fail:
        config_done(&n);
        return r;
}

/* ---- listing and dumping ---- */

void config_dump_help(FILE *f) {
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const ConfigKey *k = &keys[i];
                char def[160];
                size_t o = 0;
                for (const char *p = k->def; *p && o + 4 < sizeof(def); p++)
                        def[o++] = *p == '\n' ? ',' : *p;
                def[o] = 0;
                fprintf(f, "  --%-28s %s\n", k->flag, k->description);
                fprintf(f, "      %s, key \"%s\"%s%s, default: %s\n",
                        k->type == CONFIG_ENUM ? k->choices : config_type_to_string(k->type), k->name,
                        k->env ? ", env " : "", k->env ? k->env : "", *def ? def : "(none)");
        }
}

int config_to_json(const Config *c, json_t **ret) {
        _cleanup_(json_decrefp) json_t *o = json_object();
        if (!o)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const ConfigKey *k = &keys[i];
                const void *f = field(c, k);
                json_t *v = NULL;
                if (k->flags & CONFIG_F_NOFILE)
                        continue;
                switch (k->type) {
                case CONFIG_STRING:
                case CONFIG_ENUM:
                        v = json_string(*(char *const *) f ? *(char *const *) f : "");
                        break;
                case CONFIG_BOOL:
                        v = json_boolean(*(const bool *) f);
                        break;
                case CONFIG_UINT:
                case CONFIG_SIZE:
                        v = json_integer((json_int_t) *(const uint64_t *) f);
                        break;
                case CONFIG_DURATION: {
                        char buf[32];
                        snprintf(buf, sizeof(buf), "%lluus", (unsigned long long) *(const uint64_t *) f);
                        v = json_string(buf);
                        break;
                }
                case CONFIG_SEVERITY: {
                        int s = *(const int *) f;
                        v = json_string(s == CONFIG_SEVERITY_OFF ? "off" : severity_to_string((Severity) s));
                        break;
                }
                case CONFIG_LIST: {
                        const StrList *l = f;
                        v = json_array();
                        for (size_t j = 0; v && j < l->n; j++)
                                if (json_array_append_new(v, json_string(l->v[j])) < 0) {
                                        json_decref(v);
                                        v = NULL;
                                }
                        break;
                }
                default:
                        break;
                }
                if (!v || json_object_set_new(o, k->name, v) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(o);
        return 0;
}
