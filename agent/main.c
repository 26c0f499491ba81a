/* pullwatch's command line: run, scan, check, report, status, version. */
#include <getopt.h>
#include <signal.h>
#include <systemd/sd-id128.h>

#include "pullwatch/agent.h"
#include "pullwatch/config.h"
#include "pullwatch/finding.h"
#include "pullwatch/ledger.h"
#include "pullwatch/log.h"
#include "pullwatch/metrics.h"
#include "pullwatch/pins.h"
#include "pullwatch/policy.h"
#include "pullwatch/ref.h"
#include "pullwatch/timefmt.h"
#include "pullwatch/util.h"

/* Exit statuses of scan and check (usable from a node check or a CI job). */
enum { EXIT_CLEAN = 0, EXIT_FINDINGS = 1, EXIT_ERROR = 2 };

static void usage(FILE *f) {
        fprintf(f,
                "usage: pullwatch COMMAND [OPTIONS]\n"
                "\n"
                "Commands:\n"
                "  run                 watch containerd, record every pull, raise findings (the agent)\n"
                "  scan                audit the images on the node now; exit 0 clean, 1 findings, 2 error\n"
                "      --namespace NS  only this containerd namespace (repeatable; default all)\n"
                "      --format table|json\n"
                "  check REF...|-      judge references offline against the policy (and --pins);\n"
                "                      '-' reads one reference per line from stdin; exit as scan\n"
                "  report              the node's ledger as JSON: every reference, its digests, compliance;\n"
                "                      exit 0 all compliant, 1 not, 2 error\n"
                "  status              shipping and spool health from the state dir\n"
                "  version             print the version\n"
                "\n"
                "Options (every one also a config-file key and most an environment variable):\n");
        config_dump_help(f);
}

/* Take the scan-only flag --format out of argv before the config table sees it. */
static int take_format_flag(int *argc, char **argv, ScanFormat *ret_format) {
        int out = 0;
        for (int i = 0; i < *argc; i++) {
                const char *a = argv[i], *v;
                if (streq_ptr(a, "--")) {
                        /* everything from "--" on is positional: keep it as it is */
                        while (i < *argc)
                                argv[out++] = argv[i++];
                        break;
                }
                if (!streq_ptr(a, "--format") && !startswith(a, "--format=")) {
                        argv[out++] = argv[i];
                        continue;
                }
                if (a[8] == '=')
                        v = a + 9;
                else if (i + 1 < *argc)
                        v = argv[++i];
                else {
                        fprintf(stderr, "pullwatch: --format needs a value: table or json\n");
                        return -EINVAL;
                }
                if (streq_ptr(v, "table"))
                        *ret_format = SCAN_FORMAT_TABLE;
                else if (streq_ptr(v, "json"))
                        *ret_format = SCAN_FORMAT_JSON;
                else {
                        fprintf(stderr, "pullwatch: --format must be table or json, not \"%s\"\n", v);
                        return -EINVAL;
                }
        }
        *argc = out;
        return 0;
}

static int load_config(Config *c, int argc, char **argv, size_t *ret_npos) {
        char err[512] = "";
        int r = config_load_all(c, argc, argv, ret_npos, NULL, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "pullwatch: %s\n", err[0] ? err : strerror(-r));
                return r;
        }
        return 0;
}

static void stamp(Finding *f, const Config *c) {
        sd_id128_t id;
        if (sd_id128_randomize(&id) >= 0)
                sd_id128_to_string(id, f->id);
        f->time_usec = now_usec_realtime();
        strcpy_bounded(f->node, sizeof f->node, c->node);
        finding_format_message(f);
}

static int check_one(const Config *c, const Policy *p, const Pins *pins, const char *ref, bool *found) {
        Finding out[POLICY_FINDINGS_MAX];
        size_t n = 0;
        char err[256] = "";
        int r = policy_check_reference(p, ref, pins, out, ELEMENTSOF(out), &n, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "pullwatch: check: invalid reference: %s\n", err[0] ? err : strerror(-r));
                return r;
        }
        if (n == 0) {
                printf("ok    %s\n", ref);
                return 0;
        }
        *found = true;
        for (size_t i = 0; i < n; i++) {
                stamp(&out[i], c);
                printf("%-6s %s: %s\n", severity_to_string(out[i].severity), finding_kind_to_string(out[i].kind),
                       out[i].message);
        }
        return 0;
}

static int cmd_check(int argc, char **argv) {
        _cleanup_(config_done) Config c = {0};
        size_t npos = 0;
        if (load_config(&c, argc, argv, &npos) < 0)
                return EXIT_ERROR;
        if (npos == 0) {
                fprintf(stderr, "pullwatch: check needs at least one reference, or - to read them from stdin\n");
                return EXIT_ERROR;
        }
        char err[512] = "";
        Policy *p = NULL;
        Pins *pins = NULL;
        int r = policy_new_from_config(&c, &p, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "pullwatch: %s\n", err);
                return EXIT_ERROR;
        }
        if (!isempty(c.pins)) {
                r = pins_load(c.pins, &pins, err, sizeof err);
                if (r < 0) {
                        fprintf(stderr, "pullwatch: %s\n", err);
                        policy_free(p);
                        return EXIT_ERROR;
                }
        }
        bool found = false, bad = false;
        for (size_t i = 0; i < npos; i++) {
                if (!streq_ptr(argv[i], "-")) {
                        bad |= check_one(&c, p, pins, argv[i], &found) < 0;
                        continue;
                }
                char *line = NULL;
                size_t cap = 0;
                ssize_t len;
                unsigned long lineno = 0;
                while ((len = getline(&line, &cap, stdin)) >= 0) {
                        lineno++;
                        /* what follows a NUL would go unchecked: the whole line is refused */
                        if (memchr(line, 0, (size_t) len)) {
                                fprintf(stderr, "pullwatch: stdin line %lu: NUL byte in a reference\n", lineno);
                                bad = true;
                                continue;
                        }
                        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                                line[--len] = 0;
                        if (len == 0 || line[0] == '#')
                                continue;
                        bad |= check_one(&c, p, pins, line, &found) < 0;
                }
                free(line);
        }
        pins_free(pins);
        policy_free(p);
        return bad ? EXIT_ERROR : found ? EXIT_FINDINGS : EXIT_CLEAN;
}

static int cmd_scan(int argc, char **argv) {
        ScanFormat format = SCAN_FORMAT_TABLE;
        if (take_format_flag(&argc, argv, &format) < 0)
                return EXIT_ERROR;
        _cleanup_(config_done) Config c = {0};
        size_t npos = 0;
        if (load_config(&c, argc, argv, &npos) < 0)
                return EXIT_ERROR;
        if (npos > 0) {
                fprintf(stderr, "pullwatch: scan takes no arguments, got \"%s\"\n", argv[0]);
                return EXIT_ERROR;
        }
        int r = agent_scan(&c, format, stdout);
        return r < 0 ? EXIT_ERROR : r > 0 ? EXIT_FINDINGS : EXIT_CLEAN;
}

static int cmd_run(int argc, char **argv) {
        _cleanup_(config_done) Config c = {0};
        size_t npos = 0;
        if (load_config(&c, argc, argv, &npos) < 0)
                return EXIT_ERROR;
        if (npos > 0) {
                fprintf(stderr, "pullwatch: run takes no arguments, got \"%s\"\n", argv[0]);
                return EXIT_ERROR;
        }
        return agent_run(&c) < 0 ? 1 : 0;
}

static int cmd_status(int argc, char **argv) {
        _cleanup_(config_done) Config c = {0};
        size_t npos = 0;
        if (load_config(&c, argc, argv, &npos) < 0)
                return EXIT_ERROR;
        MetricsSnapshot m;
        int r = metrics_status_read(c.state_dir, &m);
        if (r == -ENOENT) {
                fprintf(stderr, "pullwatch: no status in %s: the agent has not run there yet\n", c.state_dir);
                return EXIT_ERROR;
        }
        if (r < 0) {
                fprintf(stderr, "pullwatch: cannot read %s/%s: %s\n", c.state_dir, METRICS_STATUS_FILE,
                        r == -EINVAL ? "not a regular file" : r == -ELOOP ? "a symbolic link" : strerror(-r));
                return EXIT_ERROR;
        }
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        r = metrics_format(&m, &text, &len);
        if (r < 0)
                return EXIT_ERROR;
        fwrite(text, 1, len, stdout);
        return EXIT_CLEAN;
}

typedef struct ReportCtx {
        const Config *config;
        const Policy *policy;
        const Pins *pins;
        json_t *refs;
        size_t total, compliant;
} ReportCtx;

static int report_visit(const char *ns, const char *ref, const LedgerDigest *d, size_t n, size_t current,
                        void *userdata) {
        ReportCtx *ctx = userdata;
        Finding out[POLICY_FINDINGS_MAX];
        size_t nf = 0;
        json_t *kinds = json_array(), *history = json_array();
        if (!kinds || !history) {
                json_decref(kinds);
                json_decref(history);
                return -ENOMEM;
        }
        if (policy_check_reference(ctx->policy, ref, ctx->pins, out, ELEMENTSOF(out), &nf, NULL, 0) < 0)
                nf = 0;
        unsigned mask = 0;
        for (size_t i = 0; i < nf; i++) {
                json_array_append_new(kinds, json_string(finding_kind_to_string(out[i].kind)));
                mask |= FINDING_KIND_BIT(out[i].kind);
        }
        if (n > 1) {
                json_array_append_new(kinds, json_string("tag_moved"));
                mask |= FINDING_KIND_BIT(FINDING_TAG_MOVED);
        }
        for (size_t i = 0; i < n; i++)
                json_array_append_new(history, json_pack("{s:s, s:I, s:I}", "digest", d[i].digest, "first_seen_usec",
                                                         (json_int_t) d[i].first_seen_usec, "last_seen_usec",
                                                         (json_int_t) d[i].last_seen_usec));
        bool compliant = finding_kinds_compliant(mask);
        ctx->total++;
        ctx->compliant += compliant;
        json_array_append_new(ctx->refs, json_pack("{s:s, s:s, s:s, s:b, s:o, s:o}", "namespace", ns, "reference",
                                                   ref, "digest", d[current].digest, "compliant", compliant,
                                                   "findings", kinds, "history", history));
        return 0;
}

/* The node's view for fleet compliance reports: every reference in the ledger, its
 * current digest and history, and whether the tag-level policy passes. */
static int cmd_report(int argc, char **argv) {
        _cleanup_(config_done) Config c = {0};
        size_t npos = 0;
        if (load_config(&c, argc, argv, &npos) < 0)
                return EXIT_ERROR;
        char err[512] = "";
        Policy *p = NULL;
        Pins *pins = NULL;
        Ledger *l = NULL;
        int ret = EXIT_ERROR, r = policy_new_from_config(&c, &p, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "pullwatch: %s\n", err);
                goto out;
        }
        if (!isempty(c.pins) && pins_load(c.pins, &pins, err, sizeof err) < 0) {
                fprintf(stderr, "pullwatch: %s\n", err);
                goto out;
        }
        /* a report reads the state dir, never changes it; its data is the ledger: an
         * unreadable one is an error, not an empty (all compliant) report */
        r = ledger_read(&l, c.state_dir, c.ledger_max_entries, err, sizeof err);
        if (r == -ENOENT)
                r = ledger_new(&l, c.ledger_max_entries);
        if (r == -EBADMSG) {
                fprintf(stderr, "pullwatch: %s\n", err);
                goto out;
        }
        if (r < 0) {
                fprintf(stderr, "pullwatch: cannot read the ledger in %s: %s\n", c.state_dir, strerror(-r));
                goto out;
        }
        ReportCtx ctx = {.config = &c, .policy = p, .pins = pins, .refs = json_array()};
        if (!ctx.refs || ledger_foreach(l, report_visit, &ctx) < 0) {
                json_decref(ctx.refs);
                goto out;
        }
        char ts[TIMEFMT_MAX] = "";
        (void) timefmt_utc(now_usec_realtime(), TIMEFMT_RFC3339_SEC, ts, sizeof ts);
        json_t *doc = json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:o}", "schema", PW_SCHEMA_VERSION, "node", c.node,
                                "cluster", c.cluster ? c.cluster : "", "time", ts, "references", (json_int_t) ctx.total,
                                "compliant", (json_int_t) ctx.compliant, "images", ctx.refs);
        if (!doc)
                goto out;
        json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(doc);
        ret = ctx.compliant == ctx.total ? EXIT_CLEAN : EXIT_FINDINGS;
out:
        ledger_free(l);
        pins_free(pins);
        policy_free(p);
        return ret;
}

int main(int argc, char **argv) {
        /* a closed stdout (--stdout into a pipe whose reader died) is an error to report,
         * not a signal that kills the agent */
        signal(SIGPIPE, SIG_IGN);
        if (argc < 2) {
                usage(stderr);
                return EXIT_ERROR;
        }
        const char *cmd = argv[1];
        int sub_argc = argc - 2;
        char **sub_argv = argv + 2;

        if (streq_ptr(cmd, "run"))
                return cmd_run(sub_argc, sub_argv);
        if (streq_ptr(cmd, "scan"))
                return cmd_scan(sub_argc, sub_argv);
        if (streq_ptr(cmd, "check"))
                return cmd_check(sub_argc, sub_argv);
        if (streq_ptr(cmd, "report"))
                return cmd_report(sub_argc, sub_argv);
        if (streq_ptr(cmd, "status"))
                return cmd_status(sub_argc, sub_argv);
        if (streq_ptr(cmd, "version") || streq_ptr(cmd, "--version")) {
                printf("pullwatch %s\n", PULLWATCH_VERSION);
                return 0;
        }
        if (streq_ptr(cmd, "help") || streq_ptr(cmd, "--help") || streq_ptr(cmd, "-h")) {
                usage(stdout);
                return 0;
        }
        fprintf(stderr, "pullwatch: unknown command \"%s\" (try pullwatch --help)\n", cmd);
        return EXIT_ERROR;
}
