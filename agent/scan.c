/* See include/pullwatch/scan.h. */
#include "pullwatch/scan.h"

#include <jansson.h>

#include "pullwatch/dynbuf.h"
#include "pullwatch/util.h"

/* The table's rows as the lines they print as: a row was a jansson object of four
 * members and an array (80 M instructions to build for 10,000 images, 54 M to walk and
 * print, 29 M to free: a sixth of a scan's main thread). */
#define SCAN_TABLE_MAX (64U << 20)

struct ScanReport {
        json_t *findings;
        bool rows;      /* keep the rows (the table), else only count them */
        DynBuf table;   /* the rows' lines, in order */
        size_t n_rows, n_unshown;
};

int scan_report_new(ScanReport **ret, bool rows) {
        ScanReport *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->findings = json_array();
        s->rows = rows;
        dynbuf_init(&s->table, SCAN_TABLE_MAX);
        if (!s->findings) {
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
        dynbuf_free(&s->table);
        free(s);
        return NULL;
}

void scan_report_finding(ScanReport *s, const Finding *f) {
        json_t *j = NULL;
        if (f->kind != FINDING_PULL && finding_to_json(f, &j) >= 0)
                json_array_append_new(s->findings, j);
}

/* s (at most max bytes of it) at line + *o, then spaces up to width: printf's "%-W.Ms". */
static void put_padded(char *line, size_t *o, const char *s, size_t max, size_t width) {
        size_t n = strnlen(s, max);
        memcpy(line + *o, s, n);
        *o += n;
        for (; n < width; n++)
                line[(*o)++] = ' ';
}

void scan_report_row(ScanReport *s, const Observation *o, const Finding *fs, size_t n) {
        s->n_rows++;
        if (!s->rows)
                return;
        /* "%-12s %-60s %-20.19s %s\n" (namespace, reference, digest, kinds or "-"), by
         * hand: vsnprintf() was 5,800 instructions a row */
        char line[PW_NS_MAX + PW_REF_MAX + 128 + 256];
        size_t len = 0;
        put_padded(line, &len, o->namespace, sizeof o->namespace, 12);
        line[len++] = ' ';
        put_padded(line, &len, o->ref, sizeof o->ref, 60);
        line[len++] = ' ';
        put_padded(line, &len, o->digest, 19, 20);
        line[len++] = ' ';
        size_t kinds = 0; /* at most 255 bytes of kinds, whole kinds only */
        for (size_t i = 0; i < n; i++) {
                const char *k = finding_kind_to_string(fs[i].kind);
                size_t kl = strlen(k) + (kinds ? 1 : 0);
                if (kinds + kl >= 256)
                        break;
                if (kinds)
                        line[len + kinds] = ',';
                memcpy(line + len + kinds + (kinds ? 1 : 0), k, strlen(k));
                kinds += kl;
        }
        if (kinds == 0)
                line[len + kinds++] = '-';
        len += kinds;
        line[len++] = '\n';
        if (dynbuf_add(&s->table, line, len) < 0)
                s->n_unshown++; /* past SCAN_TABLE_MAX or out of memory: counted below the table */
}

static void print_table(const ScanReport *s, FILE *out) {
        fprintf(out, "%-12s %-60s %-20s %s\n", "NAMESPACE", "IMAGE", "DIGEST", "FINDINGS");
        if (s->table.len)
                fwrite(s->table.data, 1, s->table.len, out);
        if (s->n_unshown)
                fprintf(out, "(%zu more rows not shown: the table is over %u MiB)\n", s->n_unshown,
                        SCAN_TABLE_MAX >> 20);
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
