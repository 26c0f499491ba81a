/* Configuration: ONE declarative table of keys (name, type, default, offset into Config,
 * description, environment variable, flag). Defaults, the JSON file loader, environment
 * variables, command-line flags and the --help listing all come from it.
 *
 * Precedence: flags > config file > environment > defaults.
 *
 * Value syntax, the same in every source:
 *   string    any UTF-8 text (bounded by CONFIG_VALUE_MAX)
 *   bool      true/false, yes/no, on/off, 1/0; in a file a JSON boolean; a bare flag
 *             "--stdout" means true and "--no-stdout" false
 *   uint      decimal integer within the key's bounds
 *   duration  "250ms", "30s", "5m", "1h30m", "2d", units us|ms|s|m|h|d; a JSON number
 *             (or a bare number elsewhere) is seconds; "0" disables where documented
 *   size      "16MiB", "512KiB", "1GiB", "100" bytes; K/M/G mean KiB/MiB/GiB, KB/MB/GB
 *             decimal; a JSON number is bytes
 *   list      JSON array of strings; from a flag or variable a comma-separated list,
 *             except keys marked one-per-flag (allowed_tag_patterns, endpoint_headers,
 *             whose values may contain commas): then each --flag adds one item and the
 *             environment variable is split on newlines. The first occurrence of a list
 *             flag replaces the list from file/environment, later ones append.
 *   severity  info|low|medium|high|critical, or off to disable that kind
 *   enum      one of the key's listed choices
 *
 * Severity: per-kind keys "severity.<kind>" (kinds as in finding.h). In the file, either
 * flat ("severity.latest_tag": "high") or nested ("severity": {"latest_tag": "high"}).
 * Flag --severity-latest-tag, variable PULLWATCH_SEVERITY_LATEST_TAG.
 *
 * Every other key's variable is PULLWATCH_<KEY> (upper case), except address
 * (CONTAINERD_ADDRESS) and node (NODE_NAME); flags are --<key> with '_' as '-'. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "pullwatch/finding.h"
#include "pullwatch/ship.h"
#include "pullwatch/spool.h"

#define CONFIG_FILE_MAX (1024U * 1024U) /* config file size */
#define CONFIG_VALUE_MAX 4096U           /* one string or list item */
#define CONFIG_LIST_MAX 1024U            /* items in one list */
#define CONFIG_SEVERITY_OFF (-1)         /* a severity key set to "off": kind disabled */

/* A list of owned strings. */
typedef struct StrList {
        char **v; /* owned, each owned */
        size_t n;
} StrList;

typedef struct Config {
        /* connection and identity */
        char *address;   /* containerd socket */
        char *node;      /* node name; config_finish() fills the hostname if empty */
        char *state_dir;
        char *config;    /* config file path ("" = none) */
        char *pins;      /* pins file path ("" = none) */
        bool stdout_json;
        StrList namespaces; /* empty = all */
        uint64_t max_message_bytes;
        uint64_t ledger_max_entries;
        uint64_t reminder_interval_usec; /* 0 = never */
        uint64_t inventory_interval_usec; /* 0 = never */
        uint64_t relist_interval_usec;    /* 0 = only with the inventory */
        uint64_t keepalive_interval_usec, keepalive_timeout_usec; /* liveness PING of containerd */
        uint64_t burst_window_usec; /* 0: off; see grpc_client_set_burst_window() */
        uint64_t lookup_delay_usec; /* image events' look-ups batched: see jobs_set_lookup_batching() */
        bool lookup_list;           /* ... asked with one Images.List a batch */
        bool content_direct; /* blobs from containerd's content store directly (ctrd_set_content_direct()) */
        char *metrics_file;
        char *cluster;

        /* policy */
        StrList mutable_tags;
        StrList allowed_tag_patterns; /* POSIX extended regexes */
        bool strict;
        bool report_untraceable;
        StrList exempt_namespaces;
        StrList exempt_k8s_namespaces;
        StrList exempt_registries;
        StrList exempt_repositories; /* names; a trailing '/' then '*' matches by prefix */
        int severity[_FINDING_KIND_MAX]; /* Severity, or CONFIG_SEVERITY_OFF; [FINDING_PULL] unused */

        /* endpoint and spool */
        char *endpoint;
        char *endpoint_format; /* jsonl | loki */
        char *endpoint_transport; /* native | curl */
        char *endpoint_ca_file;
        char *endpoint_cert_file;
        char *endpoint_key_file;
        char *endpoint_token_file;
        StrList endpoint_headers; /* "Name: value" */
        uint64_t endpoint_timeout_usec;
        bool endpoint_insecure;
        uint64_t batch_max_records;
        uint64_t batch_max_bytes;
        uint64_t batch_max_age_usec;
        uint64_t retry_max_backoff_usec;
        uint64_t spool_max_bytes;
        char *spool_fsync; /* always | batch | never */
        char *log_level;   /* err | warning | notice | info | debug */

        /* the enum keys above as the config parsed them (set with the string), so no
         * user of Config parses them again */
        ShipFormat endpoint_format_value;
        ShipTransport endpoint_transport_value;
        SpoolFsync spool_fsync_value;
        int log_level_value; /* LOG_LEVEL_ERR (3) .. LOG_LEVEL_DEBUG (7) */
} Config;

typedef enum ConfigType {
        CONFIG_STRING,
        CONFIG_BOOL,
        CONFIG_UINT,
        CONFIG_DURATION,
        CONFIG_SIZE,
        CONFIG_LIST,
        CONFIG_SEVERITY,
        CONFIG_ENUM,
        _CONFIG_TYPE_MAX,
} ConfigType;

#define CONFIG_F_NOFILE 1U      /* not settable in the config file (the file's own path) */
#define CONFIG_F_ONE_PER_FLAG 2U /* list items may contain commas: see above */
#define CONFIG_F_ZERO_OFF 4U     /* 0 (off) is accepted besides min..max */

typedef struct ConfigKey {
        const char *name;        /* file key, e.g. "state_dir" or "severity.latest_tag" */
        ConfigType type;
        const char *def;         /* default in the key's own syntax; lists newline-separated */
        size_t offset;           /* into Config */
        const char *description; /* one line */
        const char *env;         /* environment variable, NULL if none */
        const char *flag;        /* without the leading "--" */
        uint64_t min, max;       /* CONFIG_UINT/DURATION(usec)/SIZE bounds, inclusive; a
                                  * duration's min is never below 1ms (0 = off is a flag) */
        const char *choices;     /* CONFIG_ENUM: "a|b|c" */
        unsigned flags;          /* CONFIG_F_* */
} ConfigKey;

/* The table; *ret_n gets its length. Static, borrowed. */
const ConfigKey *config_keys(size_t *ret_n);
const char *config_type_to_string(ConfigType t);

/* Fill c with the defaults (c is overwritten, not freed: call on zeroed or freed
 * memory). -ENOMEM only. */
int config_init(Config *c);
/* Free everything c owns and zero it. Accepts NULL. */
void config_done(Config *c);
/* Deep copy; dst overwritten (not freed). */
int config_copy(Config *dst, const Config *src);

/* Apply the environment. getenv_fn NULL means getenv(). On failure (-EINVAL with err
 * naming the variable) c is unchanged. */
int config_apply_env(Config *c, const char *(*getenv_fn)(const char *name), char *err, size_t errlen);

/* Apply a JSON config file held in buf. source names it in messages
 * ("config: unknown key \"foo\" in /etc/pullwatch/config.json"). On failure c is
 * unchanged; -EINVAL (bad JSON, unknown key, wrong type, bad value), -E2BIG. Pure. */
int config_load_buffer(Config *c, const char *buf, size_t len, const char *source, char *err, size_t errlen);
/* Read path (regular file, at most CONFIG_FILE_MAX bytes) and apply it. */
int config_load_file(Config *c, const char *path, char *err, size_t errlen);

/* Apply the flags in argv[0..argc) (argv[0] is NOT the program name: pass what follows
 * the subcommand). "--key value", "--key=value", bool "--key"/"--no-key"; "--" ends
 * flags. Positional arguments (including "-") are moved, in order, to the front of argv
 * (only the pointer array is permuted) and counted in *ret_npos. Unknown flags and bad
 * values give -EINVAL with a one-line err; c is unchanged then. */
int config_parse_args(Config *c, int argc, char **argv, size_t *ret_npos, char *err, size_t errlen);

/* Everything, in order of precedence: defaults, environment, the file named by --config
 * (or $PULLWATCH_CONFIG), flags; then config_finish(). c is overwritten (not freed)
 * on success only. */
int config_load_all(Config *c, int argc, char **argv, size_t *ret_npos,
                    const char *(*getenv_fn)(const char *name), char *err, size_t errlen);
/* Resolve what defaults to the environment of the host: node = hostname if empty. */
int config_finish(Config *c, char *err, size_t errlen);

/* The --help listing: one entry per key with flag, variable, type, default, description. */
void config_dump_help(FILE *f);
/* The effective configuration as a JSON object, in file syntax (for `pullwatch config`
 * or a debug log). *ret is a new reference. */
int config_to_json(const Config *c, json_t **ret);

/* Parsers, exposed for tests and for other modules' knobs. */
int config_parse_bool(const char *s, bool *ret);
int config_parse_duration(const char *s, uint64_t *ret_usec);
int config_parse_size(const char *s, uint64_t *ret_bytes);
int config_parse_severity(const char *s, int *ret); /* Severity or CONFIG_SEVERITY_OFF */

bool config_list_contains(const StrList *l, const char *s);
