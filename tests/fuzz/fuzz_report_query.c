/* Fuzz target for the report's parsers of caller input: the query string of GET /report
 * and /api/v1/report (report_filter_from_query), durations and times. A failure leaves one
 * printable line; a success leaves filters within their bounds. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pullwatch/report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_line(const char *err) {
        if (!err[0])
                abort();
        for (const char *c = err; *c; c++)
                if ((unsigned char) *c < 0x20 || (unsigned char) *c >= 0x7f)
                        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;

        ReportFilter f;
        report_filter_init(&f);
        char err[512] = "";
        int r = report_filter_from_query(&f, s, err, sizeof err);
        if (r < 0 && r != -ENOMEM)
                check_line(err);
        if (r >= 0) {
                const char *v[] = {f.cluster, f.k8s_namespace, f.image, f.workload_ns, f.workload_name};
                for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
                        if (v[i] && (!v[i][0] || strlen(v[i]) >= REPORT_FILTER_MAX))
                                abort();
                if ((f.workload_ns == NULL) != (f.workload_name == NULL) || (f.image && f.workload_ns))
                        abort();
                if (f.since_usec == 0 || f.inventory_interval_usec == 0)
                        abort();
        }
        report_filter_done(&f);

        uint64_t u;
        if (report_parse_duration(s, &u) == 0 && u == 0)
                abort();
        if (report_parse_time(s, &u) == 0) {
                /* what parses formats, and the formatted text parses back to the same time */
                char buf[40];
                uint64_t back;
                if (report_format_time(u, buf, sizeof buf) == 0 && (report_parse_time(buf, &back) < 0 || back != u))
                        abort();
        }
        free(s);
        return 0;
}
