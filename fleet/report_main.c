/* `pullwatch-fleet report` and the report's HTTP routes: parse the filters (options or a
 * query string), fill the model, render, write. Errors are one line; the command exits
 * 0 (done), 1 (below --fail-under), 2 (error). */
#include <ctype.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <sys/stat.h>

#include "pullwatch/fileio.h"
#include "pullwatch/report.h"
#include "pullwatch/store.h"
#include "pullwatch/util.h"

#define QUERY_MAX 4096

typedef enum Format { FORMAT_JSON, FORMAT_HTML, FORMAT_CSV } Format;

DEFINE_TRIVIAL_CLEANUP_FUNC(Store *, store_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(ReportModel *, report_model_free)

static int set_str(char **dst, const char *v, const char *what, char *err, size_t errlen) {
        if (isempty(v))
                return errbuf_fail(err, errlen, -EINVAL, "empty %s", what);
        if (strlen(v) >= REPORT_FILTER_MAX)
                return errbuf_fail(err, errlen, -EINVAL, "%s longer than %d bytes", what, REPORT_FILTER_MAX - 1);
        char *c = strdup(v);
        if (!c)
                return -ENOMEM;
        free(*dst);
        *dst = c;
        return 0;
}

/* One filter by its name, shared by the options and the query string. */
static int filter_set(ReportFilter *f, const char *key, const char *v, char *err, size_t errlen) {
        int r;
        if (streq_ptr(key, "cluster"))
                return set_str(&f->cluster, v, "cluster", err, errlen);
        if (streq_ptr(key, "namespace"))
                return set_str(&f->k8s_namespace, v, "namespace", err, errlen);
        if (streq_ptr(key, "image"))
                return set_str(&f->image, v, "image name", err, errlen);
        if (streq_ptr(key, "workload")) {
                const char *slash = v ? strchr(v, '/') : NULL;
                if (!slash || slash == v || !slash[1] || strchr(slash + 1, '/'))
                        return errbuf_fail(err, errlen, -EINVAL, "workload must be NAMESPACE/NAME");
                _cleanup_free_ char *ns = strndup(v, (size_t) (slash - v));
                if (!ns)
                        return -ENOMEM;
                r = set_str(&f->workload_ns, ns, "workload namespace", err, errlen);
                return r < 0 ? r : set_str(&f->workload_name, slash + 1, "workload name", err, errlen);
        }
        if (streq_ptr(key, "since") || streq_ptr(key, "inventory_interval") ||
            streq_ptr(key, "inventory-interval")) {
                uint64_t u;
                r = report_parse_duration(v, &u);
                if (r < 0)
                        return errbuf_fail(err, errlen, r, "bad %s duration (e.g. 30m, 24h, 7d)", key);
                if (key[0] == 's')
                        f->since_usec = u;
                else
                        f->inventory_interval_usec = u;
                return 0;
        }
        if (streq_ptr(key, "now")) {
                r = report_parse_time(v, &f->now_usec);
                return r < 0 ? errbuf_fail(err, errlen, r, "bad time for now (RFC 3339 UTC, e.g. 2026-11-30T05:00:00Z)")
                             : 0;
        }
        return errbuf_fail(err, errlen, -ENOENT, "unknown filter");
}

/* ---- the command ---- */

static void usage(FILE *f) {
        fputs("pullwatch-fleet report --db URL [--format json|html|csv] [-o FILE] [--fail-under PERCENT]\n"
              "        [--cluster C] [--namespace NS] [--since DURATION] [--image NAME | --workload NS/NAME]\n"
              "        [--inventory-interval DURATION] [--now TIME]\n"
              "  --db URL                 sqlite:PATH or postgresql://…\n"
              "  --format                 json (default; everything), html (one self-contained file), csv\n"
              "                           (one row per image per node)\n"
              "  -o, --output FILE        write there (atomically) instead of stdout\n"
              "  --fail-under PERCENT     exit 1 when overall compliance is below PERCENT (also when no image\n"
              "                           matches); errors exit 2\n"
              "  --since DURATION         the period for tag moves and critical findings (default 7d)\n"
              "  --image NAME             what runs where now, and what ran before, for an image name\n"
              "  --workload NS/NAME       the same for a pod, a container or the pods NAME-… in NS\n"
              "  --inventory-interval D   the agents' inventory_interval (default 1h): a node is stale without\n"
              "                           an inventory for twice that\n"
              "  --now TIME               report as of TIME (RFC 3339 UTC) instead of the clock\n",
              f);
}

/* Write data to path atomically (file_replace_data(): a temporary file beside it, fsync,
 * rename, fsync of the directory). A path that is there and not a regular file
 * (/dev/null, /dev/stdout, a FIFO) is written to as it is: renaming over it would replace
 * the device (as root, /dev/null itself). */
static int write_atomic(const char *path, const char *data, size_t len, char *err, size_t errlen) {
        struct stat st;
        int r;
        if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
                _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
                r = fd < 0 ? -errno : write_all(fd, data, len);
        } else
                r = file_replace_data(path, 0644, FILE_REPLACE_SYNC, data, len);
        if (r < 0)
                return errbuf_fail(err, errlen, r, "cannot write %s: %s", path, strerror(-r));
        return 0;
}

int fleet_report_main(int argc, char **argv) {
        enum { OPT_DB = 0x100, OPT_FORMAT, OPT_FAIL_UNDER, OPT_CLUSTER, OPT_NAMESPACE, OPT_SINCE, OPT_IMAGE,
               OPT_WORKLOAD, OPT_INTERVAL, OPT_NOW };
        static const struct option options[] = {
                {"db", required_argument, NULL, OPT_DB},
                {"format", required_argument, NULL, OPT_FORMAT},
                {"output", required_argument, NULL, 'o'},
                {"fail-under", required_argument, NULL, OPT_FAIL_UNDER},
                {"cluster", required_argument, NULL, OPT_CLUSTER},
                {"namespace", required_argument, NULL, OPT_NAMESPACE},
                {"since", required_argument, NULL, OPT_SINCE},
                {"image", required_argument, NULL, OPT_IMAGE},
                {"workload", required_argument, NULL, OPT_WORKLOAD},
                {"inventory-interval", required_argument, NULL, OPT_INTERVAL},
                {"now", required_argument, NULL, OPT_NOW},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        static const char *const keys[] = {[OPT_CLUSTER - OPT_CLUSTER] = "cluster",
                                           [OPT_NAMESPACE - OPT_CLUSTER] = "namespace",
                                           [OPT_SINCE - OPT_CLUSTER] = "since",
                                           [OPT_IMAGE - OPT_CLUSTER] = "image",
                                           [OPT_WORKLOAD - OPT_CLUSTER] = "workload",
                                           [OPT_INTERVAL - OPT_CLUSTER] = "inventory_interval",
                                           [OPT_NOW - OPT_CLUSTER] = "now"};
        const char *db = NULL, *output = NULL;
        Format format = FORMAT_JSON;
        double fail_under = -1;
        ReportFilter f;
        report_filter_init(&f);
        char err[512] = "";
        int c, r = 0;

        optind = 0; /* the dispatcher may have run getopt already */
        while ((c = getopt_long(argc, argv, "o:h", options, NULL)) >= 0) {
                switch (c) {
                case OPT_DB:
                        db = optarg;
                        break;
                case OPT_FORMAT:
                        if (streq_ptr(optarg, "json"))
                                format = FORMAT_JSON;
                        else if (streq_ptr(optarg, "html"))
                                format = FORMAT_HTML;
                        else if (streq_ptr(optarg, "csv"))
                                format = FORMAT_CSV;
                        else {
                                fprintf(stderr, "pullwatch-fleet report: --format must be json, html or csv\n");
                                r = -EINVAL;
                        }
                        break;
                case 'o':
                        output = optarg;
                        break;
                case OPT_FAIL_UNDER: {
                        char *end;
                        errno = 0;
                        fail_under = strtod(optarg, &end);
                        if (errno || end == optarg || *end || !isfinite(fail_under) || fail_under < 0 ||
                            fail_under > 100) {
                                fprintf(stderr, "pullwatch-fleet report: --fail-under takes a percentage 0–100\n");
                                r = -EINVAL;
                        }
                        break;
                }
                case OPT_CLUSTER... OPT_NOW:
                        r = filter_set(&f, keys[c - OPT_CLUSTER], optarg, err, sizeof err);
                        if (r < 0)
                                fprintf(stderr, "pullwatch-fleet report: --%s: %s\n", options[c - OPT_DB].name,
                                        r == -ENOMEM ? "out of memory" : err);
                        break;
                case 'h':
                        usage(stdout);
                        report_filter_done(&f);
                        return 0;
                default:
                        r = -EINVAL;
                }
                if (r < 0)
                        break;
        }
        if (r >= 0 && optind < argc) {
                fprintf(stderr, "pullwatch-fleet report: unexpected argument '%s'\n", argv[optind]);
                r = -EINVAL;
        }
        if (r >= 0 && !db) {
                fprintf(stderr, "pullwatch-fleet report: --db URL is required (sqlite:PATH or postgresql://…)\n");
                r = -EINVAL;
        }
        if (r >= 0 && f.image && f.workload_ns) {
                fprintf(stderr, "pullwatch-fleet report: --image and --workload exclude each other\n");
                r = -EINVAL;
        }
        if (r < 0) {
                report_filter_done(&f);
                return 2;
        }

        _cleanup_(store_freep) Store *s = NULL;
        r = store_open(&s, db, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "pullwatch-fleet report: %s\n", err[0] ? err : strerror(-r));
                report_filter_done(&f);
                return 2;
        }

        _cleanup_(report_model_freep) ReportModel *m = NULL;
        if (format != FORMAT_CSV || fail_under >= 0) {
                r = report_query(s, &f, &m, err, sizeof err);
                if (r < 0) {
                        fprintf(stderr, "pullwatch-fleet report: %s\n", err[0] ? err : strerror(-r));
                        report_filter_done(&f);
                        return 2;
                }
        }

        _cleanup_free_ char *body = NULL;
        size_t len = 0;
        switch (format) {
        case FORMAT_JSON:
                r = report_render_json(m, &body, &len);
                break;
        case FORMAT_HTML:
                r = report_render_html(m, NULL, &body, &len);
                break;
        case FORMAT_CSV: {
                FILE *mem = open_memstream(&body, &len);
                if (!mem) {
                        r = -ENOMEM;
                        break;
                }
                r = report_csv(s, &f, mem, err, sizeof err);
                if (fclose(mem) != 0 && r >= 0)
                        r = -ENOMEM;
                break;
        }
        }
        report_filter_done(&f);
        if (r < 0) {
                fprintf(stderr, "pullwatch-fleet report: %s\n", err[0] ? err : strerror(-r));
                return 2;
        }
        if (output)
                r = write_atomic(output, body, len, err, sizeof err);
        else if (fwrite(body, 1, len, stdout) != len || fflush(stdout) != 0)
                r = errbuf_fail(err, sizeof err, -EIO, "writing to stdout failed");
        if (r < 0) {
                fprintf(stderr, "pullwatch-fleet report: %s\n", err);
                return 2;
        }

        if (fail_under >= 0) {
                int pm = report_count_permille(&m->total);
                if (pm < 0) {
                        fprintf(stderr, "pullwatch-fleet report: no image matches the filters; failing --fail-under\n");
                        return 1;
                }
                /* compare in tenths of a percent, as shown */
                if (pm < (int) lround(fail_under * 10)) {
                        fprintf(stderr, "pullwatch-fleet report: compliance %d.%d %% is below %g %%\n", pm / 10,
                                pm % 10, fail_under);
                        return 1;
                }
        }
        return 0;
}

/* ---- HTTP ---- */

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        c = (char) tolower((unsigned char) c);
        return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* application/x-www-form-urlencoded: '+' is a space, %XX a byte; in place */
static int url_decode(char *s) {
        char *w = s;
        for (char *p = s; *p; p++) {
                if (*p == '+')
                        *w++ = ' ';
                else if (*p == '%') {
                        int h = p[1] ? hexval(p[1]) : -1, l = h >= 0 && p[2] ? hexval(p[2]) : -1;
                        if (h < 0 || l < 0)
                                return -EINVAL;
                        char c = (char) (h * 16 + l);
                        if (c == 0)
                                return -EINVAL;
                        *w++ = c;
                        p += 2;
                } else
                        *w++ = *p;
        }
        *w = 0;
        return 0;
}

static int answer(int status, const char *type, const char *body, int *ret_status, const char **ret_type,
                  char **ret_body, size_t *ret_len) {
        char *b = strdup(body);
        if (!b)
                return -ENOMEM;
        *ret_status = status;
        *ret_type = type;
        *ret_body = b;
        *ret_len = strlen(b);
        return 0;
}

static int answer_error(bool json, int status, const char *msg, int *ret_status, const char **ret_type,
                        char **ret_body, size_t *ret_len) {
        if (!json) {
                char line[640];
                snprintf(line, sizeof line, "%s\n", msg);
                return answer(status, "text/plain; charset=utf-8", line, ret_status, ret_type, ret_body, ret_len);
        }
        json_t *o = json_pack("{s:s}", "error", msg);
        char *s = o ? json_dumps(o, 0) : NULL;
        json_decref(o);
        if (!s)
                return -ENOMEM;
        int r = answer(status, "application/json", s, ret_status, ret_type, ret_body, ret_len);
        free(s);
        return r;
}

int report_filter_from_query(ReportFilter *f, const char *query, char *err, size_t errlen) {
        if (query && strlen(query) > QUERY_MAX)
                return errbuf_fail(err, errlen, -EINVAL, "query string too long");
        _cleanup_free_ char *q = strdup(query ? query : "");
        if (!q)
                return -ENOMEM;
        int r = 0;
        char *save = NULL;
        for (char *kv = strtok_r(q, "&", &save); kv && r >= 0; kv = strtok_r(NULL, "&", &save)) {
                char *eq = strchr(kv, '=');
                char *v = eq ? eq + 1 : kv + strlen(kv);
                if (eq)
                        *eq = 0;
                if (url_decode(kv) < 0 || url_decode(v) < 0)
                        return errbuf_fail(err, errlen, -EINVAL, "bad percent-encoding in the query string");
                /* the command line's spelling and --now are not parameters of the live report */
                if (streq_ptr(kv, "inventory-interval") || streq_ptr(kv, "now"))
                        r = -ENOENT;
                else {
                        char e2[400] = "";
                        r = filter_set(f, kv, v, e2, sizeof e2);
                        if (r == -ENOMEM)
                                return r;
                        /* name the parameter only when it is one of ours: it is the caller's text */
                        if (r < 0 && r != -ENOENT)
                                return errbuf_fail(err, errlen, -EINVAL, "%s: %s", kv, e2);
                }
                if (r == -ENOENT)
                        return errbuf_fail(err, errlen, -EINVAL,
                                           "unknown parameter (cluster, namespace, since, image, workload, "
                                           "inventory_interval)");
        }
        if (f->image && f->workload_ns)
                return errbuf_fail(err, errlen, -EINVAL, "image and workload exclude each other");
        return 0;
}

int fleet_report_http(Store *s, const char *path, const char *query, const char *scope_cluster,
                      int *ret_status, const char **ret_content_type, char **ret_body, size_t *ret_body_len) {
        bool json = streq_ptr(path, "/api/v1/report");
        if (!json && !streq_ptr(path, "/report"))
                return answer_error(false, 404, "not found", ret_status, ret_content_type, ret_body, ret_body_len);
        ReportFilter f;
        report_filter_init(&f);
        char err[512] = "";
        int r = report_filter_from_query(&f, query, err, sizeof err);
        if (r == -ENOMEM) {
                report_filter_done(&f);
                return r;
        }
        if (r < 0) {
                report_filter_done(&f);
                return answer_error(json, 400, err, ret_status, ret_content_type, ret_body, ret_body_len);
        }
        if (scope_cluster) {
                if (f.cluster && !streq_ptr(f.cluster, scope_cluster)) {
                        report_filter_done(&f);
                        return answer_error(json, 403, "this credential reads its own cluster only", ret_status,
                                            ret_content_type, ret_body, ret_body_len);
                }
                if (!f.cluster && !(f.cluster = strdup(scope_cluster))) {
                        report_filter_done(&f);
                        return -ENOMEM;
                }
        }

        _cleanup_(report_model_freep) ReportModel *m = NULL;
        r = report_query(s, &f, &m, err, sizeof err);
        report_filter_done(&f);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return answer_error(json, r == -ENOTCONN ? 503 : 500, err[0] ? err : "the store failed", ret_status,
                                    ret_content_type, ret_body, ret_body_len);

        char *body = NULL;
        size_t len = 0;
        if (json)
                r = report_render_json(m, &body, &len);
        else {
                _cleanup_free_ char *link = NULL;
                if (asprintf(&link, "/api/v1/report%s%s", isempty(query) ? "" : "?", query ? query : "") < 0)
                        return -ENOMEM;
                r = report_render_html(m, link, &body, &len);
        }
        if (r < 0)
                return r;
        *ret_status = 200;
        *ret_content_type = json ? "application/json" : "text/html; charset=utf-8";
        *ret_body = body;
        *ret_body_len = len;
        return 0;
}
