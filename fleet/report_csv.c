/* CSV for spreadsheets: RFC 4180 quoting, and formula injection defused — a cell from a
 * record that starts with = + - @ (or a tab or carriage return) would run as a formula in
 * Excel, LibreOffice or Google Sheets, so it gets a leading apostrophe (OWASP's advice). */
#include "pullwatch/report.h"
#include "pullwatch/util.h"

int report_csv_field(FILE *out, const char *s) {
        if (!s)
                s = "";
        bool formula = strchr("=+-@\t\r", s[0]) && s[0];
        bool quote = formula || strpbrk(s, ",\"\r\n");
        if (quote && fputc('"', out) == EOF)
                return -EIO;
        if (formula && fputc('\'', out) == EOF)
                return -EIO;
        for (const char *p = s; *p; p++) {
                if (*p == '"' && fputc('"', out) == EOF)
                        return -EIO;
                if (fputc(*p, out) == EOF)
                        return -EIO;
        }
        if (quote && fputc('"', out) == EOF)
                return -EIO;
        return 0;
}
