/* Configuration: the key table, each value type, the file loader, environment, flags
 * and their precedence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pullwatch/config.h"
#include "pullwatch/util.h"

/* ---- value parsers, one table per type ---- */

typedef struct U64Case {
        const char *in;
        int r;
        uint64_t v;
} U64Case;

static void test_duration(void **state) {
        static const U64Case cases[] = {
                { "0", 0, 0 },
                { "30", 0, 30000000ULL },
                { "30s", 0, 30000000ULL },
                { "250ms", 0, 250000ULL },
                { "7us", 0, 7 },
                { "5m", 0, 300000000ULL },
                { "1h30m", 0, 5400000000ULL },
                { "2d", 0, 172800000000ULL },
                { "1m30s500ms", 0, 90500000ULL },
                { "", -EINVAL, 0 },
                { "s", -EINVAL, 0 },
                { "-1s", -EINVAL, 0 },
                { "1x", -EINVAL, 0 },
                { "1 s", -EINVAL, 0 },
                { "1.5s", -EINVAL, 0 },
                { "1h30", -EINVAL, 0 }, /* a trailing bare number is ambiguous */
                { "99999999999999999999s", -ERANGE, 0 },
                { "999999999999999d", -ERANGE, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint64_t v = 12345;
                int r = config_parse_duration(cases[i].in, &v);
                if (r != cases[i].r || (r == 0 && v != cases[i].v) || (r < 0 && v != 12345))
                        fail_msg("duration \"%s\": got %d/%llu", cases[i].in, r, (unsigned long long) v);
        }
}

static void test_size(void **state) {
        static const U64Case cases[] = {
                { "0", 0, 0 },
                { "100", 0, 100 },
                { "100B", 0, 100 },
                { "4K", 0, 4096 },
                { "4KiB", 0, 4096 },
                { "4KB", 0, 4000 },
                { "16MiB", 0, 16777216ULL },
                { "16M", 0, 16777216ULL },
                { "2MB", 0, 2000000ULL },
                { "1GiB", 0, 1073741824ULL },
                { "3GB", 0, 3000000000ULL },
                { "", -EINVAL, 0 },
                { "MiB", -EINVAL, 0 },
                { "16 MiB", -EINVAL, 0 },
                { "16mib", -EINVAL, 0 },
                { "1TiB", -EINVAL, 0 },
                { "-1", -EINVAL, 0 },
                { "99999999999999999999", -ERANGE, 0 },
                { "17179869184GiB", -ERANGE, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint64_t v = 12345;
                int r = config_parse_size(cases[i].in, &v);
                if (r != cases[i].r || (r == 0 && v != cases[i].v) || (r < 0 && v != 12345))
                        fail_msg("size \"%s\": got %d/%llu", cases[i].in, r, (unsigned long long) v);
        }
}

static void test_bool_and_severity(void **state) {
        static const struct {
                const char *in;
                int r;
                bool v;
        } bools[] = {
                { "true", 0, true }, { "TRUE", 0, true },  { "yes", 0, true },   { "on", 0, true },
                { "1", 0, true },    { "false", 0, false }, { "no", 0, false },  { "off", 0, false },
                { "0", 0, false },   { "", -EINVAL, 0 },    { "2", -EINVAL, 0 }, { "truee", -EINVAL, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(bools); i++) {
                bool v = !bools[i].v;
                int r = config_parse_bool(bools[i].in, &v);
                if (r != bools[i].r || (r == 0 && v != bools[i].v))
                        fail_msg("bool \"%s\": got %d/%d", bools[i].in, r, v);
        }
        static const struct {
                const char *in;
                int r, v;
        } sevs[] = {
                { "info", 0, SEVERITY_INFO },         { "low", 0, SEVERITY_LOW },
                { "medium", 0, SEVERITY_MEDIUM },     { "high", 0, SEVERITY_HIGH },
                { "critical", 0, SEVERITY_CRITICAL }, { "off", 0, CONFIG_SEVERITY_OFF },
                { "HIGH", -EINVAL, 0 },               { "", -EINVAL, 0 },
                { "warning", -EINVAL, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(sevs); i++) {
                int v = 99;
                int r = config_parse_severity(sevs[i].in, &v);
                if (r != sevs[i].r || (r == 0 && v != sevs[i].v))
                        fail_msg("severity \"%s\": got %d/%d", sevs[i].in, r, v);
        }
}

/* ---- the table ---- */

static void test_table_is_consistent(void **state) {
        size_t n;
        const ConfigKey *k = config_keys(&n);
        assert_true(n >= 40);
        for (size_t i = 0; i < n; i++) {
                assert_non_null(k[i].name);
                assert_non_null(k[i].description);
                assert_non_null(k[i].flag);
                assert_non_null(k[i].def);
                assert_non_null(config_type_to_string(k[i].type));
                assert_true(k[i].offset < sizeof(Config));
                /* every duration has a floor: 0 may only mean "off", never "as fast as possible" */
                if (k[i].type == CONFIG_DURATION && k[i].min < 1000)
                        fail_msg("duration key %s accepts %lluus", k[i].name, (unsigned long long) k[i].min);
                for (size_t j = 0; j < i; j++) {
                        if (streq_ptr(k[i].name, k[j].name) || streq_ptr(k[i].flag, k[j].flag) ||
                            (k[i].env && streq_ptr(k[i].env, k[j].env)) || k[i].offset == k[j].offset)
                                fail_msg("keys %s and %s clash", k[i].name, k[j].name);
                }
        }
}

static void test_defaults(void **state) {
        Config c;
        assert_int_equal(config_init(&c), 0);
        assert_string_equal(c.address, "/run/containerd/containerd.sock");
        assert_string_equal(c.state_dir, "/var/lib/pullwatch");
        assert_string_equal(c.node, "");
        assert_false(c.stdout_json);
        assert_int_equal(c.namespaces.n, 0);
        assert_int_equal(c.max_message_bytes, 16 * 1024 * 1024);
        assert_int_equal(c.ledger_max_entries, 10000);
        assert_int_equal(c.reminder_interval_usec, 0);
        assert_int_equal(c.inventory_interval_usec, 3600000000ULL);
        assert_int_equal(c.relist_interval_usec, 600000000ULL); /* the re-list's cost: README */
        assert_int_equal(c.mutable_tags.n, 9);
        assert_true(config_list_contains(&c.mutable_tags, "latest"));
        assert_true(config_list_contains(&c.mutable_tags, "nightly"));
        assert_int_equal(c.allowed_tag_patterns.n, 2);
        assert_string_equal(c.allowed_tag_patterns.v[0], "^[0-9a-f]{7,40}$");
        assert_false(c.strict);
        assert_true(c.report_untraceable);
        assert_int_equal(c.severity[FINDING_LATEST_TAG], SEVERITY_MEDIUM);
        assert_int_equal(c.severity[FINDING_MUTABLE_TAG], SEVERITY_LOW);
        assert_int_equal(c.severity[FINDING_TAG_MOVED], SEVERITY_HIGH);
        assert_int_equal(c.severity[FINDING_DIGEST_MISMATCH], SEVERITY_CRITICAL);
        assert_int_equal(c.severity[FINDING_REVISION_MISMATCH], SEVERITY_HIGH);
        assert_int_equal(c.severity[FINDING_UNTRACEABLE], SEVERITY_LOW);
        assert_string_equal(c.endpoint_format, "jsonl");
        assert_string_equal(c.spool_fsync, "batch");
        assert_false(c.endpoint_insecure);
        assert_int_equal(c.endpoint_timeout_usec, 10000000ULL);
        config_done(&c);
        config_done(NULL);
}

/* ---- the file ---- */

static void test_file_values(void **state) {
        static const char json[] = "{"
                                   "\"address\": \"/tmp/c.sock\","
                                   "\"stdout\": true,"
                                   "\"namespaces\": [\"k8s.io\", \"default\"],"
                                   "\"max_message_bytes\": \"8MiB\","
                                   "\"batch_max_bytes\": 65536,"
                                   "\"ledger_max_entries\": 500,"
                                   "\"reminder_interval\": \"24h\","
                                   "\"batch_max_age\": 2,"
                                   "\"strict\": true,"
                                   "\"mutable_tags\": [],"
                                   "\"allowed_tag_patterns\": [\"^v[0-9]+$\", \"^r{1,3}$\"],"
                                   "\"severity\": {\"latest_tag\": \"high\", \"untraceable\": \"off\"},"
                                   "\"severity.tag_moved\": \"critical\","
                                   "\"endpoint_format\": \"loki\","
                                   "\"endpoint_headers\": [\"X-Scope-OrgID: a, b\"],"
                                   "\"spool_fsync\": \"always\""
                                   "}";
        Config c;
        char err[256] = "";
        assert_int_equal(config_init(&c), 0);
        int r = config_load_buffer(&c, json, strlen(json), "test.json", err, sizeof(err));
        if (r < 0)
                fail_msg("%s", err);
        assert_string_equal(c.address, "/tmp/c.sock");
        assert_true(c.stdout_json);
        assert_int_equal(c.namespaces.n, 2);
        assert_string_equal(c.namespaces.v[1], "default");
        assert_int_equal(c.max_message_bytes, 8 * 1024 * 1024);
        assert_int_equal(c.batch_max_bytes, 65536);
        assert_int_equal(c.ledger_max_entries, 500);
        assert_int_equal(c.reminder_interval_usec, 86400000000ULL);
        assert_int_equal(c.batch_max_age_usec, 2000000ULL);
        assert_true(c.strict);
        assert_int_equal(c.mutable_tags.n, 0);
        assert_int_equal(c.allowed_tag_patterns.n, 2);
        assert_string_equal(c.allowed_tag_patterns.v[1], "^r{1,3}$");
        assert_int_equal(c.severity[FINDING_LATEST_TAG], SEVERITY_HIGH);
        assert_int_equal(c.severity[FINDING_UNTRACEABLE], CONFIG_SEVERITY_OFF);
        assert_int_equal(c.severity[FINDING_TAG_MOVED], SEVERITY_CRITICAL);
        assert_int_equal(c.severity[FINDING_MUTABLE_TAG], SEVERITY_LOW); /* untouched */
        assert_string_equal(c.endpoint_format, "loki");
        assert_string_equal(c.endpoint_headers.v[0], "X-Scope-OrgID: a, b");
        assert_string_equal(c.spool_fsync, "always");
        assert_string_equal(c.state_dir, "/var/lib/pullwatch"); /* untouched */
        config_done(&c);
}

typedef struct BadFile {
        const char *json;
        const char *err; /* the exact message */
} BadFile;

static const BadFile bad_files[] = {
        { "{\"foo\": 1}", "config: unknown key \"foo\" in /etc/pullwatch/config.json" },
        { "{\"severity\": {\"bogus\": \"high\"}}", "config: unknown key \"severity.bogus\" in /etc/pullwatch/config.json" },
        { "{\"severity.pull\": \"high\"}", "config: unknown key \"severity.pull\" in /etc/pullwatch/config.json" },
        { "{\"strict\": \"yes\"}", "config: key \"strict\" in /etc/pullwatch/config.json: expected a boolean (true or false)" },
        { "{\"address\": 5}", "config: key \"address\" in /etc/pullwatch/config.json: expected a string" },
        { "{\"ledger_max_entries\": \"500\"}",
          "config: key \"ledger_max_entries\" in /etc/pullwatch/config.json: expected a non-negative integer" },
        { "{\"ledger_max_entries\": -5}",
          "config: key \"ledger_max_entries\" in /etc/pullwatch/config.json: expected a non-negative integer" },
        { "{\"ledger_max_entries\": 1}",
          "config: key \"ledger_max_entries\" in /etc/pullwatch/config.json: out of range 16..100000" },
        { "{\"ledger_max_entries\": 10000000}",
          "config: key \"ledger_max_entries\" in /etc/pullwatch/config.json: out of range 16..100000" },
        { "{\"max_message_bytes\": \"16 MiB\"}",
          "config: key \"max_message_bytes\" in /etc/pullwatch/config.json: expected a size such as \"512KiB\", \"16MiB\"" },
        { "{\"max_message_bytes\": \"2GiB\"}",
          "config: key \"max_message_bytes\" in /etc/pullwatch/config.json: out of range 4096 bytes..1073741824 bytes" },
        { "{\"inventory_interval\": \"1us\"}",
          "config: key \"inventory_interval\" in /etc/pullwatch/config.json: out of range: 0 (off) or 1m..365d" },
        { "{\"reminder_interval\": \"soon\"}",
          "config: key \"reminder_interval\" in /etc/pullwatch/config.json: expected a duration such as \"30s\", \"5m\", \"1h\"" },
        { "{\"namespaces\": \"k8s.io\"}", "config: key \"namespaces\" in /etc/pullwatch/config.json: expected a list of strings" },
        { "{\"namespaces\": [\"a\", 2]}", "config: key \"namespaces\" in /etc/pullwatch/config.json: item 1 is not a string" },
        { "{\"severity.latest_tag\": \"urgent\"}",
          "config: key \"severity.latest_tag\" in /etc/pullwatch/config.json: expected a severity: info, low, medium, high, critical or off" },
        { "{\"severity\": \"high\"}", "config: unknown key \"severity\" in /etc/pullwatch/config.json" },
        { "{\"spool_fsync\": \"sometimes\"}",
          "config: key \"spool_fsync\" in /etc/pullwatch/config.json: expected one of always|batch|never" },
        { "{\"endpoint_format\": 1}", "config: key \"endpoint_format\" in /etc/pullwatch/config.json: expected jsonl|loki" },
        { "{\"config\": \"/x\"}", "config: key \"config\" cannot be set in a config file (/etc/pullwatch/config.json)" },
        { "{\"fo\\u0001o\": 1}", "config: unknown key \"fo?o\" in /etc/pullwatch/config.json" },
        { "[]", "config: /etc/pullwatch/config.json must hold a JSON object" },
        { "{\"strict\": true, \"strict\": false}", NULL }, /* duplicate: bad JSON, jansson's words */
        { "{\"strict\": tru}", NULL },
        { "", NULL },
};

static void test_file_errors(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(bad_files); i++) {
                Config c, before;
                char err[512] = "";
                assert_int_equal(config_init(&c), 0);
                assert_int_equal(config_copy(&before, &c), 0);
                int r = config_load_buffer(&c, bad_files[i].json, strlen(bad_files[i].json),
                                           "/etc/pullwatch/config.json", err, sizeof(err));
                if (r != -EINVAL)
                        fail_msg("case %zu: expected -EINVAL, got %d", i, r);
                if (bad_files[i].err ? !streq_ptr(err, bad_files[i].err)
                                     : !startswith(err, "config: bad JSON in /etc/pullwatch/config.json"))
                        fail_msg("case %zu: message \"%s\"", i, err);
                /* nothing applied */
                assert_int_equal(c.strict, before.strict);
                assert_int_equal(c.namespaces.n, before.namespaces.n);
                assert_int_equal(c.severity[FINDING_LATEST_TAG], before.severity[FINDING_LATEST_TAG]);
                config_done(&c);
                config_done(&before);
        }
}

/* A FIFO in place of the config file: refused at once, in one line (the open used to
 * wait for a writer, hanging start-up); alarm() turns a hang into a failed test. */
static void test_file_fifo(void **state) {
        char dir[] = "/tmp/pullwatch-test-config-XXXXXX", path[64];
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/config.json", dir);
        assert_int_equal(mkfifo(path, 0600), 0);
        Config c;
        char err[256] = "";
        assert_int_equal(config_init(&c), 0);
        alarm(10);
        int r = config_load_file(&c, path, err, sizeof(err));
        alarm(0);
        assert_int_equal(r, -EINVAL);
        char want[128];
        snprintf(want, sizeof(want), "config: %s: not a regular file", path);
        assert_string_equal(err, want);
        config_done(&c);
        unlink(path);
        rmdir(dir);
}

static void test_file_atomic(void **state) {
        /* A good key before a bad one must not stick. */
        static const char json[] = "{\"stdout\": true, \"bogus\": 1}";
        Config c;
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_load_buffer(&c, json, strlen(json), "x", NULL, 0), -EINVAL);
        assert_false(c.stdout_json);
        config_done(&c);
}

/* ---- environment ---- */

static const char *const *fake_env;
static const char *fake_getenv(const char *name) {
        for (size_t i = 0; fake_env && fake_env[i]; i += 2)
                if (streq_ptr(fake_env[i], name))
                        return fake_env[i + 1];
        return NULL;
}

static void test_env(void **state) {
        static const char *const env[] = {
                "CONTAINERD_ADDRESS", "/env/ctd.sock",
                "NODE_NAME", "node-7",
                "PULLWATCH_STDOUT", "yes",
                "PULLWATCH_NAMESPACES", "k8s.io, default",
                "PULLWATCH_ALLOWED_TAG_PATTERNS", "^a{1,2}$\n^b$",
                "PULLWATCH_SEVERITY_MUTABLE_TAG", "off",
                "PULLWATCH_MAX_MESSAGE_BYTES", "", /* empty on a typed key: ignored */
                "PULLWATCH_ENDPOINT_HEADERS", "A: 1, 2\nB: 3",
                NULL,
        };
        fake_env = env;
        Config c;
        char err[256] = "";
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_apply_env(&c, fake_getenv, err, sizeof(err)), 0);
        assert_string_equal(c.address, "/env/ctd.sock");
        assert_string_equal(c.node, "node-7");
        assert_true(c.stdout_json);
        assert_int_equal(c.namespaces.n, 2);
        assert_string_equal(c.namespaces.v[0], "k8s.io");
        assert_string_equal(c.namespaces.v[1], "default");
        assert_int_equal(c.allowed_tag_patterns.n, 2);
        assert_string_equal(c.allowed_tag_patterns.v[0], "^a{1,2}$");
        assert_int_equal(c.severity[FINDING_MUTABLE_TAG], CONFIG_SEVERITY_OFF);
        assert_int_equal(c.max_message_bytes, 16 * 1024 * 1024);
        assert_int_equal(c.endpoint_headers.n, 2);
        assert_string_equal(c.endpoint_headers.v[0], "A: 1, 2");

        static const char *const bad[] = { "PULLWATCH_STRICT", "maybe", NULL };
        fake_env = bad;
        assert_int_equal(config_apply_env(&c, fake_getenv, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "config: environment variable PULLWATCH_STRICT: expected a boolean (true or false)");
        assert_false(c.strict);
        assert_string_equal(c.address, "/env/ctd.sock"); /* unchanged */
        config_done(&c);
        fake_env = NULL;
}

/* ---- flags ---- */

static void test_flags(void **state) {
        char *argv[] = { "--address", "/a.sock", "nginx", "--stdout", "--strict=false", "-", "--namespace=k8s.io",
                         "--namespace", "default,moby", "--max-message-bytes=1MiB", "--allowed-tag-pattern",
                         "^x{1,2}$", "--allowed-tag-pattern=^y$", "--severity-tag-moved", "low", "--no-report-untraceable",
                         "--", "--not-a-flag" };
        Config c;
        size_t npos = 99;
        char err[256] = "";
        assert_int_equal(config_init(&c), 0);
        c.strict = true;
        int r = config_parse_args(&c, (int) ELEMENTSOF(argv), argv, &npos, err, sizeof(err));
        if (r < 0)
                fail_msg("%s", err);
        assert_int_equal(npos, 3);
        assert_string_equal(argv[0], "nginx");
        assert_string_equal(argv[1], "-");
        assert_string_equal(argv[2], "--not-a-flag");
        assert_string_equal(c.address, "/a.sock");
        assert_true(c.stdout_json);
        assert_false(c.strict);
        assert_false(c.report_untraceable);
        assert_int_equal(c.namespaces.n, 3); /* first occurrence replaces, later ones append */
        assert_string_equal(c.namespaces.v[2], "moby");
        assert_int_equal(c.max_message_bytes, 1024 * 1024);
        assert_int_equal(c.allowed_tag_patterns.n, 2); /* defaults replaced, commas kept */
        assert_string_equal(c.allowed_tag_patterns.v[0], "^x{1,2}$");
        assert_int_equal(c.severity[FINDING_TAG_MOVED], SEVERITY_LOW);
        config_done(&c);
}

typedef struct BadFlag {
        const char *argv[3];
        const char *err;
} BadFlag;

static void test_flag_errors(void **state) {
        static const BadFlag cases[] = {
                { { "--bogus", NULL }, "unknown option --bogus" },
                { { "--bogus=1", NULL }, "unknown option --bogus" },
                { { "--no-address", NULL }, "unknown option --no-address" },
                { { "--address", NULL }, "option --address needs a value (a string)" },
                { { "--stdout=maybe", NULL }, "option --stdout: expected a boolean (true or false)" },
                { { "--ledger-max-entries", "x", NULL }, "option --ledger-max-entries: expected a non-negative integer" },
                { { "--ledger-max-entries", "10x", NULL }, "option --ledger-max-entries: expected a non-negative integer" },
                { { "--batch-max-records=0", NULL }, "option --batch-max-records: out of range 1..100000" },
                /* a duration below its key's minimum would spin the loop (1us took 100% CPU) */
                { { "--inventory-interval=1us", NULL }, "option --inventory-interval: out of range: 0 (off) or 1m..365d" },
                { { "--inventory-interval", "59s", NULL }, "option --inventory-interval: out of range: 0 (off) or 1m..365d" },
                { { "--relist-interval=30s", NULL }, "option --relist-interval: out of range: 0 (off) or 1m..365d" },
                { { "--reminder-interval=1ms", NULL }, "option --reminder-interval: out of range: 0 (off) or 1m..365d" },
                { { "--batch-max-age=1us", NULL }, "option --batch-max-age: out of range: 0 (off) or 10ms..1h" },
                { { "--endpoint-timeout=1us", NULL }, "option --endpoint-timeout: out of range 100ms..10m" },
                { { "--retry-max-backoff=1ms", NULL }, "option --retry-max-backoff: out of range 1s..1d" },
                { { "--endpoint-format", "xml", NULL }, "option --endpoint-format: expected one of jsonl|loki" },
                { { "--severity-latest-tag=urgent", NULL },
                  "option --severity-latest-tag: expected a severity: info, low, medium, high, critical or off" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Config c;
                char err[256] = "";
                char *argv[3] = { (char *) cases[i].argv[0], (char *) cases[i].argv[1], (char *) cases[i].argv[2] };
                int argc = argv[1] ? 2 : 1;
                size_t npos = 77;
                assert_int_equal(config_init(&c), 0);
                int r = config_parse_args(&c, argc, argv, &npos, err, sizeof(err));
                if (r != -EINVAL || !streq_ptr(err, cases[i].err))
                        fail_msg("case %zu: got %d \"%s\"", i, r, err);
                assert_int_equal(npos, 77);
                config_done(&c);
        }
        /* 0 still switches a periodic duration off, and the floor itself is accepted */
        static const struct {
                const char *arg;
                uint64_t usec;
        } good[] = { { "--inventory-interval=0", 0 },
                     { "--relist-interval=0", 0 },
                     { "--relist-interval=5m", 300000000ULL },
                     { "--inventory-interval=1m", 60000000ULL },
                     { "--reminder-interval=0", 0 },
                     { "--batch-max-age=0", 0 },
                     { "--batch-max-age=10ms", 10000 } };
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                Config c;
                char err[256] = "", *argv[] = { (char *) good[i].arg, NULL };
                assert_int_equal(config_init(&c), 0);
                if (config_parse_args(&c, 1, argv, NULL, err, sizeof(err)) < 0)
                        fail_msg("%s: %s", good[i].arg, err);
                uint64_t got = startswith(good[i].arg, "--inventory") ? c.inventory_interval_usec
                               : startswith(good[i].arg, "--relist")   ? c.relist_interval_usec
                               : startswith(good[i].arg, "--reminder") ? c.reminder_interval_usec
                                                                       : c.batch_max_age_usec;
                assert_int_equal(got, good[i].usec);
                config_done(&c);
        }
}

/* ---- precedence: flags > file > environment > defaults ---- */

static void test_precedence(void **state) {
        char path[] = "/tmp/pullwatch-test-config-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        static const char json[] = "{\"state_dir\": \"/file/state\", \"pins\": \"/file/pins.json\", \"strict\": true}";
        assert_int_equal(write(fd, json, strlen(json)), (ssize_t) strlen(json));
        close(fd);

        const char *env[] = {
                "PULLWATCH_CONFIG", path,
                "PULLWATCH_STATE_DIR", "/env/state",
                "PULLWATCH_PINS", "/env/pins.json",
                "PULLWATCH_CLUSTER", "env-cluster",
                "NODE_NAME", "env-node",
                NULL,
        };
        fake_env = env;
        char *argv[] = { "--pins", "/flag/pins.json", "REF" };
        Config c;
        size_t npos;
        char err[512] = "";
        int r = config_load_all(&c, 3, argv, &npos, fake_getenv, err, sizeof(err));
        if (r < 0)
                fail_msg("%s", err);
        assert_int_equal(npos, 1);
        assert_string_equal(argv[0], "REF");
        assert_string_equal(c.pins, "/flag/pins.json");     /* flag beats file and env */
        assert_string_equal(c.state_dir, "/file/state");    /* file beats env */
        assert_string_equal(c.cluster, "env-cluster");      /* env beats default */
        assert_string_equal(c.address, "/run/containerd/containerd.sock"); /* default */
        assert_string_equal(c.node, "env-node");
        assert_true(c.strict);
        config_done(&c);

        /* --config on the command line wins over $PULLWATCH_CONFIG, and a missing file is an error */
        char *argv2[] = { "--config=/nonexistent/pullwatch.json" };
        r = config_load_all(&c, 1, argv2, &npos, fake_getenv, err, sizeof(err));
        assert_int_equal(r, -ENOENT);
        assert_string_equal(err, "config: /nonexistent/pullwatch.json: No such file or directory");

        /* a bad key in the file names the file */
        fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "{\"foo\": 1}", 10), 10);
        close(fd);
        r = config_load_all(&c, 0, NULL, &npos, fake_getenv, err, sizeof(err));
        assert_int_equal(r, -EINVAL);
        char want[256];
        snprintf(want, sizeof(want), "config: unknown key \"foo\" in %s", path);
        assert_string_equal(err, want);
        unlink(path);

        /* without NODE_NAME the hostname is used */
        const char *env2[] = { NULL };
        fake_env = env2;
        r = config_load_all(&c, 0, NULL, &npos, fake_getenv, err, sizeof(err));
        assert_int_equal(r, 0);
        char host[256] = "";
        gethostname(host, sizeof(host) - 1);
        assert_string_equal(c.node, host);
        config_done(&c);
        fake_env = NULL;
}

static void test_json_roundtrip(void **state) {
        Config c, d;
        json_t *j = NULL;
        assert_int_equal(config_init(&c), 0);
        c.strict = true;
        c.severity[FINDING_UNTRACEABLE] = CONFIG_SEVERITY_OFF;
        c.reminder_interval_usec = 90500000; /* 1m30s500ms */
        assert_int_equal(config_to_json(&c, &j), 0);
        char *s = json_dumps(j, JSON_COMPACT);
        assert_non_null(s);
        json_decref(j);
        assert_int_equal(config_init(&d), 0);
        char err[256] = "";
        int r = config_load_buffer(&d, s, strlen(s), "dump", err, sizeof(err));
        if (r < 0)
                fail_msg("%s", err);
        free(s);
        assert_true(d.strict);
        assert_int_equal(d.severity[FINDING_UNTRACEABLE], CONFIG_SEVERITY_OFF);
        assert_int_equal(d.reminder_interval_usec, 90500000);
        assert_int_equal(d.allowed_tag_patterns.n, 2);
        config_done(&c);
        config_done(&d);

        /* --help lists every key */
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        assert_non_null(f);
        config_dump_help(f);
        fclose(f);
        size_t n;
        const ConfigKey *k = config_keys(&n);
        for (size_t i = 0; i < n; i++) {
                char flag[80];
                snprintf(flag, sizeof(flag), "--%s ", k[i].flag);
                assert_non_null(strstr(buf, flag));
        }
        free(buf);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_duration),
                cmocka_unit_test(test_size),
                cmocka_unit_test(test_bool_and_severity),
                cmocka_unit_test(test_table_is_consistent),
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_file_values),
                cmocka_unit_test(test_file_errors),
                cmocka_unit_test(test_file_fifo),
                cmocka_unit_test(test_file_atomic),
                cmocka_unit_test(test_env),
                cmocka_unit_test(test_flags),
                cmocka_unit_test(test_flag_errors),
                cmocka_unit_test(test_precedence),
                cmocka_unit_test(test_json_roundtrip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
