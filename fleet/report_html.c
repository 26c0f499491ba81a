/* The report as one self-contained HTML file (GET /report, --format html).
 *
 * No JavaScript, no external fonts, styles or images: the charts are inline SVG drawn
 * here, each with a <title> and a table beside it holding the same numbers. The page is
 * written for the strict policy report_html_csp() (default-src 'none'; only the one
 * <style> below, allowed by its hash): it carries the policy in a <meta> element too,
 * and everything stays readable if a stricter policy drops the style, since the charts
 * use SVG presentation attributes, not CSS.
 *
 * Size: long lists (nodes of a digest, pods, rows) are capped with "and N more" and a
 * pointer to the JSON, which carries everything; a report over 10,000 nodes stays a few
 * hundred KiB. Every string from the model is attacker-controlled and goes through
 * esc(). */
#include <inttypes.h>

#include "pullwatch/report.h"
#include "pullwatch/util.h"

#define HTML_NAMES_CAP 12     /* node or pod names listed inline per cell */
#define HTML_ROWS_CAP 200     /* rows per table (divergent tags, moves, findings, placements) */
#define HTML_BARS_CAP 40      /* bars in the compliance chart (lowest compliance first) */
#define HTML_LABEL_MAX 48     /* bytes of a label inside a chart */

/* The one style sheet. Its SHA-256 (base64) is in STYLE_HASH; tests/integration/
 * test_report_html.sh recomputes it with openssl, so an edit here that forgets the hash
 * fails a test rather than leaving an unstyled page. */
static const char STYLE[] =
        "body{font-family:sans-serif;margin:1.5em;color:#222;max-width:80em}"
        "h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #999;margin-top:1.6em}"
        "h3{font-size:1em;font-family:monospace;word-break:break-all}"
        "table{border-collapse:collapse;margin:.5em 0;font-size:.9em}"
        "th,td{border:1px solid #bbb;padding:.2em .5em;text-align:left;vertical-align:top}"
        "td.n,th.n{text-align:right}code{word-break:break-all}"
        ".chart{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}"
        ".big{font-size:1.4em;font-weight:bold}.bad{color:#a00}.muted{color:#666}"
        "@media print{body{margin:0;max-width:none}.chart{display:block}section{break-inside:avoid-page}}";
static const char STYLE_HASH[] = "sha256-DYy0WhsfxxUltdIN1cDvtTIUMtvy9gaoPMw22Tu0/Lo=";

static const char *const PALETTE[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                                      "#e377c2", "#7f7f7f"};

const char *report_html_csp(void) {
        static char csp[160];
        if (!csp[0])
                snprintf(csp, sizeof csp,
                         "default-src 'none'; style-src '%s'; img-src data:; form-action 'none'; base-uri 'none'",
                         STYLE_HASH);
        return csp;
}

int report_html_escape(FILE *out, const char *s) {
        if (!s)
                return 0;
        for (const char *p = s; *p; p++) {
                const char *e = NULL;
                switch (*p) {
                case '&': e = "&amp;"; break;
                case '<': e = "&lt;"; break;
                case '>': e = "&gt;"; break;
                case '"': e = "&quot;"; break;
                case '\'': e = "&#39;"; break;
                default:
                        /* control characters have no business in a name; show them, don't pass them */
                        if ((unsigned char) *p < 0x20 && *p != '\t') {
                                e = "\xef\xbf\xbd"; /* U+FFFD */
                                break;
                        }
                        if (fputc(*p, out) == EOF)
                                return -EIO;
                        continue;
                }
                if (fputs(e, out) == EOF)
                        return -EIO;
        }
        return 0;
}

#define esc(s) report_html_escape(out, (s))

/* A label for a chart: at most HTML_LABEL_MAX bytes, cut on a UTF-8 boundary, "…" added. */
static void esc_label(FILE *out, const char *s) {
        size_t n = strlen(s);
        if (n <= HTML_LABEL_MAX) {
                esc(s);
                return;
        }
        n = HTML_LABEL_MAX - 1;
        while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80)
                n--;
        char buf[HTML_LABEL_MAX + 1];
        memcpy(buf, s, n);
        buf[n] = 0;
        esc(buf);
        fputs("\xe2\x80\xa6", out);
}

static void percent(FILE *out, int permille) {
        if (permille < 0)
                fputs("—", out);
        else
                fprintf(out, "%d.%d&#160;%%", permille / 10, permille % 10);
}

static void num(FILE *out, uint64_t v) {
        /* thin grouping for the eye: 10,000 */
        char d[32];
        int n = snprintf(d, sizeof d, "%" PRIu64, v);
        for (int i = 0; i < n; i++) {
                if (i > 0 && (n - i) % 3 == 0)
                        fputc(',', out);
                fputc(d[i], out);
        }
}

static void time_text(FILE *out, uint64_t usec) {
        char buf[40];
        if (usec == 0 || report_format_time(usec, buf, sizeof buf) < 0) {
                fputs("—", out);
                return;
        }
        /* seconds are enough for a human: 2026-11-30 04:59:51Z */
        buf[10] = ' ';
        buf[19] = 'Z';
        buf[20] = 0;
        fputs(buf, out);
}

static void short_digest(FILE *out, const char *d) {
        if (isempty(d)) {
                fputs("—", out);
                return;
        }
        fputs("<code title=\"", out);
        esc(d);
        fputs("\">", out);
        const char *c = strchr(d, ':');
        char buf[24];
        snprintf(buf, sizeof buf, "%.*s", c ? (int) (c - d) + 13 : 19, d);
        esc(buf);
        if (strlen(d) > strlen(buf))
                fputs("\xe2\x80\xa6", out);
        fputs("</code>", out);
}

/* Names, capped: "a, b, c and 9,988 more". */
static void names(FILE *out, const ReportStrings *l, bool code) {
        if (l->n == 0) {
                fputs("<span class=\"muted\">—</span>", out);
                return;
        }
        size_t shown = l->n <= HTML_NAMES_CAP + 2 ? l->n : HTML_NAMES_CAP;
        for (size_t i = 0; i < shown; i++) {
                if (i)
                        fputs(", ", out);
                fputs(code ? "<code>" : "", out);
                esc(l->v[i]);
                fputs(code ? "</code>" : "", out);
        }
        if (shown < l->n) {
                fputs(" <span class=\"muted\">and ", out);
                num(out, l->n - shown);
                fputs(" more (all in the JSON)</span>", out);
        }
}

static void rows_capped(FILE *out, size_t n, int colspan) {
        if (n <= HTML_ROWS_CAP)
                return;
        fprintf(out, "<tr><td colspan=\"%d\" class=\"muted\">and ", colspan);
        num(out, n - HTML_ROWS_CAP);
        fputs(" more rows (all in the JSON)</td></tr>", out);
}

static size_t cap(size_t n) {
        return n < HTML_ROWS_CAP ? n : HTML_ROWS_CAP;
}

/* ---- charts ---- */

static int cmp_compliance_ptr(const void *a, const void *b) {
        const ReportCompliance *x = *(const ReportCompliance *const *) a, *y = *(const ReportCompliance *const *) b;
        int px = report_count_permille(&x->count), py = report_count_permille(&y->count);
        if (px != py)
                return px < py ? -1 : 1;
        int c = strcmp(x->cluster, y->cluster);
        return c ? c : strcmp(x->k8s_namespace, y->k8s_namespace);
}

static int compliance_chart(FILE *out, const ReportModel *m) {
        /* namespace rows only (cluster totals are in the table), lowest first: the chart
         * is there to show where to look */
        _cleanup_free_ const ReportCompliance **rows = calloc(m->n_compliance + 1, sizeof *rows);
        if (!rows)
                return -ENOMEM;
        size_t n = 0;
        for (size_t i = 0; i < m->n_compliance; i++)
                if (!isempty(m->compliance[i].k8s_namespace) && m->compliance[i].count.images > 0)
                        rows[n++] = &m->compliance[i];
        if (n == 0)
                for (size_t i = 0; i < m->n_compliance; i++)
                        if (m->compliance[i].count.images > 0)
                                rows[n++] = &m->compliance[i];
        if (n == 0)
                return 0;
        qsort(rows, n, sizeof *rows, cmp_compliance_ptr);
        size_t shown = n < HTML_BARS_CAP ? n : HTML_BARS_CAP;
        const int lw = 260, bw = 300, rh = 20;
        int h = (int) shown * rh + 10;
        fprintf(out,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-labelledby=\"ct\" width=\"%d\" "
                "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">"
                "<title id=\"ct\">Compliance by namespace, lowest first (%zu of %zu shown)</title>",
                lw + bw + 70, h, lw + bw + 70, h, shown, n);
        for (size_t i = 0; i < shown; i++) {
                const ReportCompliance *c = rows[i];
                int pm = report_count_permille(&c->count);
                int y = 5 + (int) i * rh;
                int w = pm * bw / 1000;
                fputs("<g><title>", out);
                esc(c->cluster);
                fputs(" / ", out);
                esc(isempty(c->k8s_namespace) ? "(all images)" : c->k8s_namespace);
                fputs(": ", out);
                percent(out, pm);
                fprintf(out, "</title><text x=\"%d\" y=\"%d\" text-anchor=\"end\">", lw - 6, y + 14);
                esc_label(out, c->k8s_namespace[0] ? c->k8s_namespace : c->cluster);
                fprintf(out,
                        "</text><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#eee\"/>"
                        "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"/>"
                        "<text x=\"%d\" y=\"%d\">",
                        lw, y + 2, bw, rh - 4, lw, y + 2, w, rh - 4, pm >= 900 ? "#2ca02c" : pm >= 600 ? "#ff7f0e" : "#d62728",
                        lw + bw + 4, y + 14);
                percent(out, pm);
                fputs("</text></g>", out);
        }
        fputs("</svg>", out);
        return 0;
}

static void trend_chart(FILE *out, const ReportModel *m) {
        if (m->n_trend == 0)
                return;
        const int W = 600, H = 220, L = 44, R = 10, T = 10, B = 30;
        int pw = W - L - R, ph = H - T - B;
        fprintf(out,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-labelledby=\"tt\" width=\"%d\" height=\"%d\" "
                "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">"
                "<title id=\"tt\">Daily compliance, %s to %s</title>",
                W, H, W, H, m->trend[0].day, m->trend[m->n_trend - 1].day);
        for (int p = 0; p <= 100; p += 25) {
                int y = T + ph - p * ph / 100;
                fprintf(out,
                        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>"
                        "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d %%</text>",
                        L, y, L + pw, y, L - 4, y + 4, p);
        }
        fprintf(out, "<text x=\"%d\" y=\"%d\">%s</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>", L,
                H - 8, m->trend[0].day, L + pw, H - 8, m->trend[m->n_trend - 1].day);
        fputs("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"", out);
        for (size_t i = 0; i < m->n_trend; i++) {
                ReportCount c = {.images = m->trend[i].images, .compliant = m->trend[i].compliant};
                int pm = report_count_permille(&c);
                if (pm < 0)
                        continue;
                int x = L + (m->n_trend > 1 ? (int) (i * (size_t) pw / (m->n_trend - 1)) : pw / 2);
                fprintf(out, "%d,%d ", x, T + ph - pm * ph / 1000);
        }
        fputs("\"/>", out);
        for (size_t i = 0; i < m->n_trend; i++) {
                ReportCount c = {.images = m->trend[i].images, .compliant = m->trend[i].compliant};
                int pm = report_count_permille(&c);
                if (pm < 0)
                        continue;
                int x = L + (m->n_trend > 1 ? (int) (i * (size_t) pw / (m->n_trend - 1)) : pw / 2);
                fprintf(out, "<circle cx=\"%d\" cy=\"%d\" r=\"3\" fill=\"#1f77b4\"><title>%s: ", x,
                        T + ph - pm * ph / 1000, m->trend[i].day);
                percent(out, pm);
                fputs("</title></circle>", out);
        }
        fputs("</svg>", out);
}

static void split_chart(FILE *out, const ReportDivergence *d, size_t idx) {
        size_t total = 0;
        for (size_t j = 0; j < d->n_digests; j++)
                total += d->digests[j].nodes.n;
        if (total == 0)
                return;
        const int W = 420, H = 26;
        fprintf(out,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-labelledby=\"dv%zu\" width=\"%d\" "
                "height=\"%d\" viewBox=\"0 0 %d %d\"><title id=\"dv%zu\">",
                idx, W, H, W, H, idx);
        esc(d->ref);
        fprintf(out, ": %zu digests across %zu nodes</title>", d->n_digests, total);
        int x = 0;
        for (size_t j = 0; j < d->n_digests; j++) {
                int w = j + 1 == d->n_digests ? W - x : (int) (d->digests[j].nodes.n * (size_t) W / total);
                fprintf(out, "<rect x=\"%d\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"%s\" stroke=\"#fff\"><title>", x,
                        w, H, PALETTE[j % ELEMENTSOF(PALETTE)]);
                esc(d->digests[j].digest);
                fprintf(out, ": %zu nodes</title></rect>", d->digests[j].nodes.n);
                x += w;
        }
        fputs("</svg>", out);
}

/* ---- sections ---- */

static void count_row(FILE *out, const char *cluster, const char *ns, const ReportCount *c) {
        fputs("<tr><td>", out);
        esc(cluster);
        fputs("</td><td>", out);
        if (isempty(ns))
                fputs("<span class=\"muted\">(all images on its nodes)</span>", out);
        else
                esc(ns);
        const uint64_t v[] = {c->images, c->in_use, c->pinned, c->images - c->latest, c->revision_verified,
                              c->compliant, c->findings};
        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                fputs("</td><td class=\"n\">", out);
                num(out, v[i]);
        }
        fputs("</td><td class=\"n\">", out);
        percent(out, report_count_permille(c));
        fputs("</td></tr>\n", out);
}

static void headline(FILE *out, const ReportModel *m) {
        fputs("<section id=\"headline\"><h2>1. Headline</h2><table><tbody>", out);
        fputs("<tr><th>Nodes reporting</th><td class=\"n big\">", out);
        num(out, m->nodes);
        fputs("</td></tr><tr><th>Stale nodes (no inventory within twice the interval)</th><td class=\"n big", out);
        fputs(m->nodes_stale ? " bad\">" : "\">", out);
        num(out, m->nodes_stale);
        fputs("</td></tr><tr><th>Images on nodes</th><td class=\"n\">", out);
        num(out, m->total.images);
        fputs("</td></tr><tr><th>In use by pods (where known)</th><td class=\"n\">", out);
        num(out, m->total.in_use);
        fputs("</td></tr><tr><th>Compliance (no finding stands: pinned, free of latest, revision verified, as pinned, not moved)</th><td class=\"n big\" "
              "id=\"overall\">",
              out);
        percent(out, report_count_permille(&m->total));
        fputs("</td></tr><tr><th>Standing findings</th><td class=\"n\">", out);
        num(out, m->total.findings);
        fputs("</td></tr></tbody></table>", out);
        if (m->stale_nodes.n) {
                fputs("<p>Stale: ", out);
                names(out, &m->stale_nodes, false);
                fputs("</p>", out);
        }

        fputs("<h3>Compliance by cluster and namespace</h3><div class=\"chart\">", out);
        compliance_chart(out, m);
        fputs("<table id=\"compliance\"><thead><tr><th>cluster</th><th>namespace</th><th class=\"n\">images</th>"
              "<th class=\"n\">in use</th><th class=\"n\">pinned</th><th class=\"n\">free of latest</th>"
              "<th class=\"n\">revision verified</th><th class=\"n\">compliant</th><th class=\"n\">findings</th>"
              "<th class=\"n\">compliance</th></tr></thead><tbody>",
              out);
        count_row(out, "(all clusters)", "", &m->total);
        for (size_t i = 0; i < cap(m->n_compliance); i++)
                count_row(out, m->compliance[i].cluster, m->compliance[i].k8s_namespace, &m->compliance[i].count);
        rows_capped(out, m->n_compliance, 10);
        fputs("</tbody></table></div></section>\n", out);
}

static void divergence(FILE *out, const ReportModel *m) {
        fprintf(out, "<section id=\"divergence\"><h2>2. Divergent tags (%zu)</h2>", m->n_divergence);
        if (m->n_divergence == 0)
                fputs("<p>Every tag resolves to one digest on every node.</p>", out);
        else
                fputs("<p>Tags that resolve to more than one digest across nodes now.</p>", out);
        for (size_t i = 0; i < cap(m->n_divergence); i++) {
                const ReportDivergence *d = &m->divergence[i];
                fputs("<div class=\"divergent\"><h3>", out);
                esc(d->ref);
                fputs("</h3>", out);
                if (d->index_relation_unknown)
                        fputs("<p class=\"muted\">Some nodes hold an index, others a platform manifest: the store "
                              "cannot tell whether the index lists it.</p>",
                              out);
                fputs("<div class=\"chart\">", out);
                split_chart(out, d, i);
                fputs("<table><thead><tr><th></th><th>digest</th><th class=\"n\">nodes</th><th>node names</th>"
                      "<th>pods</th></tr></thead><tbody>",
                      out);
                for (size_t j = 0; j < d->n_digests; j++) {
                        const ReportDigest *g = &d->digests[j];
                        fprintf(out,
                                "<tr><td><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"12\" height=\"12\">"
                                "<rect width=\"12\" height=\"12\" fill=\"%s\"/></svg></td><td><code>",
                                PALETTE[j % ELEMENTSOF(PALETTE)]);
                        esc(g->digest);
                        fputs("</code></td><td class=\"n\">", out);
                        num(out, g->nodes.n);
                        fputs("</td><td>", out);
                        names(out, &g->nodes, false);
                        fputs("</td><td>", out);
                        names(out, &g->pods, false);
                        fputs("</td></tr>", out);
                }
                fputs("</tbody></table></div></div>\n", out);
        }
        if (m->n_divergence > HTML_ROWS_CAP) {
                fputs("<p class=\"muted\">and ", out);
                num(out, m->n_divergence - HTML_ROWS_CAP);
                fputs(" more divergent tags (all in the JSON)</p>", out);
        }
        fputs("</section>\n", out);
}

static void events(FILE *out, const ReportEvent *v, size_t n, bool move) {
        if (n == 0) {
                fputs(move ? "<p>No tag moved in the period.</p>" : "<p>None in the period.</p>", out);
                return;
        }
        fputs(move ? "<table><thead><tr><th>first</th><th>last</th><th>tag</th><th>old → new digest</th>"
                     "<th class=\"n\">nodes</th><th>node names</th><th>pods</th></tr></thead><tbody>"
                   : "<table><thead><tr><th>first</th><th>last</th><th>kind</th><th>reference</th><th>digest</th>"
                     "<th>expected / revision</th><th class=\"n\">nodes</th><th>node names</th><th>pods</th></tr>"
                     "</thead><tbody>",
              out);
        for (size_t i = 0; i < cap(n); i++) {
                const ReportEvent *e = &v[i];
                fputs("<tr><td>", out);
                time_text(out, e->first_usec);
                fputs("</td><td>", out);
                time_text(out, e->last_usec);
                if (!move) {
                        fputs("</td><td>", out);
                        esc(e->kind);
                }
                fputs("</td><td><code>", out);
                esc(e->ref);
                fputs("</code></td><td>", out);
                if (move) {
                        short_digest(out, e->previous_digest);
                        fputs(" → ", out);
                        short_digest(out, e->digest);
                } else {
                        short_digest(out, e->digest);
                        fputs("</td><td>", out);
                        if (!isempty(e->expected_digest)) {
                                fputs("pinned ", out);
                                short_digest(out, e->expected_digest);
                        } else if (!isempty(e->revision)) {
                                fputs("revision <code>", out);
                                esc(e->revision);
                                fputs("</code>", out);
                        } else
                                fputs("—", out);
                }
                fputs("</td><td class=\"n\">", out);
                num(out, e->nodes.n);
                fputs("</td><td>", out);
                names(out, &e->nodes, false);
                fputs("</td><td>", out);
                names(out, &e->pods, false);
                fputs("</td></tr>\n", out);
        }
        rows_capped(out, n, move ? 7 : 9);
        fputs("</tbody></table>", out);
}

static void trend(FILE *out, const ReportModel *m) {
        fputs("<section id=\"trend\"><h2>5. Compliance trend (daily, last 30 days)</h2>", out);
        if (m->n_trend == 0) {
                fputs("<p>No daily rollups yet.</p></section>\n", out);
                return;
        }
        fputs("<div class=\"chart\">", out);
        trend_chart(out, m);
        fputs("<table><thead><tr><th>day</th><th class=\"n\">images</th><th class=\"n\">compliant</th>"
              "<th class=\"n\">compliance</th></tr></thead><tbody>",
              out);
        for (size_t i = 0; i < m->n_trend; i++) {
                ReportCount c = {.images = m->trend[i].images, .compliant = m->trend[i].compliant};
                fprintf(out, "<tr><td>%s</td><td class=\"n\">", m->trend[i].day);
                num(out, c.images);
                fputs("</td><td class=\"n\">", out);
                num(out, c.compliant);
                fputs("</td><td class=\"n\">", out);
                percent(out, report_count_permille(&c));
                fputs("</td></tr>", out);
        }
        fputs("</tbody></table></div></section>\n", out);
}

static void offender_table(FILE *out, const char *what, const ReportOffender *v, size_t n) {
        fprintf(out, "<table><thead><tr><th>%s</th><th class=\"n\">findings</th><th class=\"n\">images on nodes</th>"
                     "</tr></thead><tbody>",
                what);
        if (n == 0)
                fputs("<tr><td colspan=\"3\">none</td></tr>", out);
        for (size_t i = 0; i < n; i++) {
                fputs("<tr><td><code>", out);
                esc(v[i].name);
                fputs("</code></td><td class=\"n\">", out);
                num(out, v[i].findings);
                fputs("</td><td class=\"n\">", out);
                num(out, v[i].images);
                fputs("</td></tr>", out);
        }
        fputs("</tbody></table>", out);
}

static void placements(FILE *out, const ReportModel *m) {
        const ReportFilter *f = &m->filter;
        fputs("<section id=\"placements\"><h2>7. What runs where, and what ran before</h2>", out);
        if (!m->placements_requested) {
                fputs("<p>Ask for a workload or an image: <code>pullwatch-fleet report --workload NS/NAME</code>, "
                      "<code>--image NAME</code>, or <code>?workload=NS/NAME</code>, <code>?image=NAME</code>.</p>"
                      "</section>\n",
                      out);
                return;
        }
        fputs("<p>", out);
        if (f->image) {
                fputs("Image <code>", out);
                esc(f->image);
        } else {
                fputs("Workload <code>", out);
                esc(f->workload_ns);
                fputs("/", out);
                esc(f->workload_name);
        }
        fprintf(out, "</code>: %zu placements.</p>", m->n_placements);
        if (m->n_placements == 0) {
                fputs("<p>Nothing known runs it.</p></section>\n", out);
                return;
        }
        fputs("<table><thead><tr><th>cluster</th><th>node</th><th>pod / container</th><th>reference</th>"
              "<th>digest now</th><th>revision now</th><th>since</th><th>digest before (rollback target)</th>"
              "<th>revision before</th><th>until</th></tr></thead><tbody>",
              out);
        for (size_t i = 0; i < cap(m->n_placements); i++) {
                const ReportPlacement *p = &m->placements[i];
                fputs("<tr><td>", out);
                esc(p->cluster);
                fputs("</td><td>", out);
                esc(p->node);
                fputs("</td><td>", out);
                if (isempty(p->pod))
                        fputs("—", out);
                else {
                        esc(p->k8s_namespace);
                        fputs("/", out);
                        esc(p->pod);
                        fputs(" / ", out);
                        esc(p->container);
                }
                fputs("</td><td><code>", out);
                esc(p->ref);
                fputs("</code></td><td>", out);
                short_digest(out, p->digest);
                fputs("</td><td><code>", out);
                esc(isempty(p->revision) ? "—" : p->revision);
                fputs("</code></td><td>", out);
                time_text(out, p->since_usec);
                fputs("</td><td>", out);
                short_digest(out, p->previous_digest);
                fputs("</td><td><code>", out);
                esc(isempty(p->previous_revision) ? "—" : p->previous_revision);
                fputs("</code></td><td>", out);
                time_text(out, isempty(p->previous_digest) ? 0 : p->previous_last_usec);
                fputs("</td></tr>\n", out);
        }
        rows_capped(out, m->n_placements, 10);
        fputs("</tbody></table></section>\n", out);
}

static void filter_text(FILE *out, const ReportModel *m, const char *json_link) {
        const ReportFilter *f = &m->filter;
        fputs("<p class=\"muted\">Generated ", out);
        time_text(out, m->generated_usec);
        fputs(" · period since ", out);
        time_text(out, m->generated_usec > f->since_usec ? m->generated_usec - f->since_usec : 0);
        if (f->cluster) {
                fputs(" · cluster <code>", out);
                esc(f->cluster);
                fputs("</code>", out);
        }
        if (f->k8s_namespace) {
                fputs(" · namespace <code>", out);
                esc(f->k8s_namespace);
                fputs("</code>", out);
        }
        if (json_link) {
                fputs(" · <a href=\"", out);
                esc(json_link);
                fputs("\">complete report as JSON</a>", out);
        } else
                fputs(" · complete lists: <code>pullwatch-fleet report --format json</code>", out);
        fputs("</p>", out);
}

int report_render_html(const ReportModel *m, const char *json_link, char **ret, size_t *ret_len) {
        char *buf = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&buf, &len);
        if (!out)
                return -ENOMEM;

        fprintf(out,
                "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta http-equiv=\"Content-Security-Policy\" content=\"%s\">"
                "<meta name=\"viewport\" content=\"width=device-width\">"
                "<title>pullwatch fleet report</title><style>%s</style></head>\n<body>"
                "<h1>pullwatch fleet report</h1>",
                report_html_csp(), STYLE);
        filter_text(out, m, json_link);
        headline(out, m);
        divergence(out, m);
        fprintf(out, "<section id=\"moves\"><h2>3. Tag moves in the period (%zu)</h2>", m->n_moves);
        events(out, m->moves, m->n_moves, true);
        fprintf(out, "</section>\n<section id=\"critical\"><h2>4. Critical findings in the period (%zu)</h2>",
                m->n_critical);
        events(out, m->critical, m->n_critical, false);
        fputs("</section>\n", out);
        trend(out, m);
        fputs("<section id=\"offenders\"><h2>6. Worst offenders (standing findings)</h2><div class=\"chart\">", out);
        offender_table(out, "namespace", m->offender_namespaces, m->n_offender_namespaces);
        offender_table(out, "image", m->offender_images, m->n_offender_images);
        fputs("</div></section>\n", out);
        placements(out, m);
        fputs("<footer class=\"muted\"><p>pullwatch " PULLWATCH_VERSION "</p></footer></body></html>\n", out);

        bool failed = ferror(out);
        if (fclose(out) != 0 || failed) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}
