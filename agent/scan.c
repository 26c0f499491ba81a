/* See include/pullwatch/scan.h. */
#include "pullwatch/scan.h"

#include <jansson.h>

#include "pullwatch/util.h"

struct ScanReport {
        json_t *findings, *rows; /* rows: NULL when only counted */
        size_t n_rows;
};

int scan_report_new(ScanReport **ret, bool rows) {
        ScanReport *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->findings = json_array();
        s->rows = rows ? json_array() : NULL;
        if (!s->findings || (rows && !s->rows)) {
                scan_report_free(s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

ScanReport *scan_report_free(ScanReport *s) {
        if (!s)
                return NULL;
        json_decref(s->findings);
        json_decref(s->rows);
        free(s);
        return NULL;
}

void scan_report_finding(ScanReport *s, const Finding *f) {
        json_t *j = NULL;
        if (f->kind != FINDING_PULL && finding_to_json(f, &j) >= 0)
                json_array_append_new(s->findings, j);
}

void scan_report_row(ScanReport *s, const Observation *o, const Finding *fs, size_t n) {
        s->n_rows++;
        if (!s->rows)
                return;
        json_t *kinds = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(kinds, json_string(finding_kind_to_string(fs[i].kind)));
        json_array_append_new(s->rows, json_pack("{s:s, s:s, s:s, s:o}", "namespace", o->namespace, "ref", o->ref,
                                                 "digest", o->digest, "findings", kinds));
}

static void print_table(const ScanReport *s, FILE *out) {
        size_t i;
        json_t *row;
        fprintf(out, "%-12s %-60s %-20s %s\n", "NAMESPACE", "IMAGE", "DIGEST", "FINDINGS");
        json_array_foreach(s->rows, i, row) {
                const char *digest = json_string_value(json_object_get(row, "digest"));
                char shortd[20];
                snprintf(shortd, sizeof shortd, "%s", digest ? digest : "");
                char kinds[256] = "";
                size_t k, len = 0;
                json_t *kind;
                json_array_foreach(json_object_get(row, "findings"), k, kind) {
                        int w = snprintf(kinds + len, sizeof kinds - len, "%s%s", len ? "," : "",
                                         json_string_value(kind));
                        if (w < 0 || (size_t) w >= sizeof kinds - len)
                                break;
                        len += (size_t) w;
                }
                fprintf(out, "%-12s %-60s %-20s %s\n", json_string_value(json_object_get(row, "namespace")),
                        json_string_value(json_object_get(row, "ref")), shortd, len ? kinds : "-");
        }
        fprintf(out, "%zu image records, %zu findings\n", s->n_rows, json_array_size(s->findings));
}

size_t scan_report_print(const ScanReport *s, ScanFormat format, FILE *out) {
        if (format == SCAN_FORMAT_JSON) {
                json_dumpf(s->findings, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                fputc('\n', out);
        } else
                print_table(s, out);
        fflush(out);
        return json_array_size(s->findings);
}
