/* Central shipping. Pure encoders and policies first, the event-loop shipper after.
 *
 * The shipper holds at most one batch and one request in flight: ordering stays
 * simple (acks are cumulative, "up to seq"), and a slow endpoint costs one pending
 * transfer, never a blocked loop. A batch is encoded once and resent unchanged on
 * retry, so invalid records are dead-lettered exactly once, when the batch leaves. */
#include "pullwatch/latch.h"
#include "pullwatch/ship.h"

#include <ctype.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <zlib.h>

#include "pullwatch/dynbuf.h"
#include "pullwatch/fileio.h"
#include "pullwatch/httpc.h"
#include "pullwatch/util.h"

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif

static bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

/* ---------------------------------------------------------------- buffers */

/* Append s as a JSON string literal. Control bytes are escaped; with ascii_only,
 * bytes >= 0x80 become \u00XX too (used for arbitrary bytes of dead letters, so the
 * line stays valid JSON whatever the input was). */
static int buf_json_string(DynBuf *b, const char *s, size_t n, bool ascii_only) {
        int r = dynbuf_add(b, "\"", 1);
        if (r < 0)
                return r;
        size_t run = 0; /* start of the pending run of bytes copied verbatim */
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                char esc[6];
                size_t elen = 0;
                if (c == '"' || c == '\\') {
                        esc[0] = '\\';
                        esc[1] = (char) c;
                        elen = 2;
                } else if (c == '\n') {
                        memcpy(esc, "\\n", 2);
                        elen = 2;
                } else if (c == '\t') {
                        memcpy(esc, "\\t", 2);
                        elen = 2;
                } else if (c < 0x20 || c == 0x7f || (ascii_only && c >= 0x80)) {
                        memcpy(esc, "\\u00", 4);
                        esc[4] = hexchar(c >> 4);
                        esc[5] = hexchar(c);
                        elen = 6;
                } else
                        continue;
                r = dynbuf_add(b, s + run, i - run);
                if (r < 0)
                        return r;
                r = dynbuf_add(b, esc, elen);
                if (r < 0)
                        return r;
                run = i + 1;
        }
        r = dynbuf_add(b, s + run, n - run);
        if (r < 0)
                return r;
        return dynbuf_add(b, "\"", 1);
}

/* ---------------------------------------------------------------- formats */

static const char *const format_table[_SHIP_FORMAT_MAX] = {
        [SHIP_FORMAT_JSONL] = "jsonl",
        [SHIP_FORMAT_LOKI] = "loki",
};

const char *ship_format_to_string(ShipFormat f) {
        if (f < 0 || f >= _SHIP_FORMAT_MAX)
                return NULL;
        return format_table[f];
}

ShipFormat ship_format_from_string(const char *s) {
        for (int i = 0; i < _SHIP_FORMAT_MAX; i++)
                if (streq_ptr(s, format_table[i]))
                        return (ShipFormat) i;
        return _SHIP_FORMAT_INVALID;
}

static const char *const transport_table[_SHIP_TRANSPORT_MAX] = {
        [SHIP_TRANSPORT_NATIVE] = "native",
        [SHIP_TRANSPORT_CURL] = "curl",
};

const char *ship_transport_to_string(ShipTransport t) {
        if (t < 0 || t >= _SHIP_TRANSPORT_MAX)
                return NULL;
        return transport_table[t];
}

ShipTransport ship_transport_from_string(const char *s) {
        for (int i = 0; i < _SHIP_TRANSPORT_MAX; i++)
                if (streq_ptr(s, transport_table[i]))
                        return (ShipTransport) i;
        return _SHIP_TRANSPORT_INVALID;
}

bool ship_label_name_valid(const char *name) {
        if (isempty(name) || strlen(name) >= SHIP_LABEL_NAME_MAX)
                return false;
        for (const char *p = name; *p; p++) {
                bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_';
                bool digit = *p >= '0' && *p <= '9';
                if (!alpha && !(digit && p != name))
                        return false;
        }
        return true;
}

/* ---------------------------------------------------------------- time */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        unsigned yoe = (unsigned) (y - era * 400);
        unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + (int64_t) doe - 719468;
}

static bool leap(unsigned y) {
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static bool date_valid(unsigned y, unsigned m, unsigned d, unsigned hh, unsigned mm, unsigned ss) {
        static const unsigned mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        if (m < 1 || m > 12 || d < 1 || hh > 23 || mm > 59 || ss > 60) /* 60: leap second */
                return false;
        return d <= mdays[m - 1] + (m == 2 && leap(y));
}

/* Exactly n decimal digits at *p. */
static bool take_digits(const char **p, const char *end, unsigned n, unsigned *ret) {
        unsigned v = 0;
        if ((size_t) (end - *p) < n)
                return false;
        for (unsigned i = 0; i < n; i++) {
                char c = (*p)[i];
                if (c < '0' || c > '9')
                        return false;
                v = v * 10 + (unsigned) (c - '0');
        }
        *p += n;
        *ret = v;
        return true;
}

static bool take_char(const char **p, const char *end, char c) {
        if (*p >= end || **p != c)
                return false;
        (*p)++;
        return true;
}

int ship_parse_rfc3339_ns(const char *s, size_t len, uint64_t *ret_ns) {
        const char *p = s, *end = s + len;
        unsigned y, mo, d, hh, mi, ss;
        uint64_t frac_ns = 0;

        if (!s || !take_digits(&p, end, 4, &y) || !take_char(&p, end, '-') || !take_digits(&p, end, 2, &mo) ||
            !take_char(&p, end, '-') || !take_digits(&p, end, 2, &d))
                return -EINVAL;
        if (p >= end || (*p != 'T' && *p != 't' && *p != ' '))
                return -EINVAL;
        p++;
        if (!take_digits(&p, end, 2, &hh) || !take_char(&p, end, ':') || !take_digits(&p, end, 2, &mi) ||
            !take_char(&p, end, ':') || !take_digits(&p, end, 2, &ss))
                return -EINVAL;
        if (p < end && *p == '.') {
                p++;
                unsigned ndig = 0;
                uint64_t scale = 100000000;
                while (p < end && *p >= '0' && *p <= '9') {
                        /* digits beyond ns are accepted and truncated */
                        frac_ns += (uint64_t) (*p - '0') * scale;
                        scale /= 10;
                        ndig++;
                        p++;
                }
                if (ndig == 0)
                        return -EINVAL;
        }
        int64_t offset_sec = 0;
        if (p < end && (*p == 'Z' || *p == 'z'))
                p++;
        else if (p < end && (*p == '+' || *p == '-')) {
                int sign = *p == '-' ? -1 : 1;
                unsigned oh, om;
                p++;
                if (!take_digits(&p, end, 2, &oh) || !take_char(&p, end, ':') || !take_digits(&p, end, 2, &om) ||
                    oh > 23 || om > 59)
                        return -EINVAL;
                offset_sec = sign * (int64_t) (oh * 3600 + om * 60);
        } else
                return -EINVAL;
        if (p != end || !date_valid(y, mo, d, hh, mi, ss))
                return -EINVAL;

        int64_t t = days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - offset_sec;
        if (t < 0)
                return -EINVAL;
        *ret_ns = (uint64_t) t * 1000000000ULL + frac_ns;
        return 0;
}

/* ---------------------------------------------------------------- encoders */

bool ship_record_valid(ShipFormat f, const char *data, size_t len) {
        if (!data || len == 0 || len > SPOOL_RECORD_MAX || memchr(data, '\n', len) || memchr(data, 0, len))
                return false;
        if (f == SHIP_FORMAT_JSONL)
                return true;
        if (f != SHIP_FORMAT_LOKI)
                return false;
        json_t *j = json_loadb(data, len, 0, NULL);
        bool ok = json_is_object(j);
        json_decref(j);
        return ok;
}

int ship_encode_jsonl(const ShipRecord *recs, size_t n, size_t max_bytes, char **ret, size_t *ret_len) {
        _cleanup_(dynbuf_free) DynBuf b = { .max = max_bytes };
        int r;

        if ((!recs && n > 0) || !ret || !ret_len)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (!ship_record_valid(SHIP_FORMAT_JSONL, recs[i].data, recs[i].len))
                        return -EBADMSG;
                r = dynbuf_add(&b, recs[i].data, recs[i].len);
                if (r < 0)
                        return r;
                r = dynbuf_add(&b, "\n", 1);
                if (r < 0)
                        return r;
        }
        if (!b.data && !(b.data = malloc(1)))
                return -ENOMEM;
        *ret_len = b.len;
        *ret = TAKE_PTR(b.data);
        return 0;
}

/* The labels a record contributes to its stream; values borrowed from the parsed record. */
static const char *const dyn_names[SHIP_DYN_MAX] = { "node", "kind", "severity" };

typedef struct LokiStream {
        const char *dyn[SHIP_DYN_MAX]; /* NULL = label absent; borrowed from the first record's meta */
        size_t dyn_len[SHIP_DYN_MAX];
        size_t first, last; /* record indices; chained through next[] */
} LokiStream;

/* A label value must be a short string without NUL; else the label is left out
 * (the record line still carries the value). */
static int label_value(json_t *obj, const char *key, char **ret, size_t *ret_len) {
        json_t *v = json_object_get(obj, key);
        if (!json_is_string(v))
                return 0;
        size_t n = json_string_length(v);
        const char *s = json_string_value(v);
        if (n == 0 || n >= SHIP_LABEL_VALUE_MAX || memchr(s, 0, n))
                return 0;
        if (!(*ret = strndup(s, n)))
                return -ENOMEM;
        *ret_len = n;
        return 0;
}

void ship_loki_meta_done(ShipLokiMeta *m) {
        for (int k = 0; k < SHIP_DYN_MAX; k++)
                free(m->dyn[k]);
        *m = (ShipLokiMeta){};
}

int ship_loki_meta(const char *data, size_t len, ShipLokiMeta *ret) {
        *ret = (ShipLokiMeta){};
        if (!ship_record_valid(SHIP_FORMAT_JSONL, data, len))
                return -EBADMSG;
        _cleanup_(json_decrefp) json_t *j = json_loadb(data, len, 0, NULL);
        if (!json_is_object(j))
                return -EBADMSG;
        json_t *t = json_object_get(j, "time");
        ret->has_ts = json_is_string(t) &&
                      ship_parse_rfc3339_ns(json_string_value(t), json_string_length(t), &ret->ts_ns) >= 0;
        for (int k = 0; k < SHIP_DYN_MAX; k++)
                if (label_value(j, dyn_names[k], &ret->dyn[k], &ret->dyn_len[k]) < 0) {
                        ship_loki_meta_done(ret);
                        return -ENOMEM;
                }
        return 0;
}

static bool dyn_equal(const LokiStream *st, const char *const *dyn, const size_t *dyn_len) {
        for (int k = 0; k < SHIP_DYN_MAX; k++) {
                if (!st->dyn[k] != !dyn[k])
                        return false;
                if (dyn[k] && (st->dyn_len[k] != dyn_len[k] || memcmp(st->dyn[k], dyn[k], dyn_len[k]) != 0))
                        return false;
        }
        return true;
}

static int loki_label(DynBuf *b, bool *first, const char *name, const char *value, size_t vlen) {
        int r = dynbuf_add(b, *first ? "" : ",", *first ? 0 : 1);
        *first = false;
        if (r < 0)
                return r;
        r = buf_json_string(b, name, strlen(name), false);
        if (r < 0)
                return r;
        r = dynbuf_add(b, ":", 1);
        if (r < 0)
                return r;
        return buf_json_string(b, value, vlen, false);
}

int ship_encode_loki(const ShipRecord *recs, size_t n, const ShipLabel *labels, size_t n_labels,
                     uint64_t fallback_ns, size_t max_bytes, char **ret, size_t *ret_len) {
        ShipLokiMeta *meta = NULL;
        int r = 0;
        if ((!recs && n > 0) || !ret || !ret_len)
                return -EINVAL;
        if (n > 0 && !(meta = calloc(n, sizeof *meta)))
                return -ENOMEM;
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = ship_loki_meta(recs[i].data, recs[i].len, &meta[i]);
        if (r >= 0)
                r = ship_encode_loki_meta(recs, meta, n, labels, n_labels, fallback_ns, max_bytes, ret, ret_len);
        for (size_t i = 0; i < n; i++)
                ship_loki_meta_done(&meta[i]);
        free(meta);
        return r;
}

int ship_encode_loki_meta(const ShipRecord *recs, const ShipLokiMeta *meta, size_t n, const ShipLabel *labels,
                          size_t n_labels, uint64_t fallback_ns, size_t max_bytes, char **ret, size_t *ret_len) {
        _cleanup_(dynbuf_free) DynBuf b = { .max = max_bytes };
        _cleanup_free_ LokiStream *streams = NULL;
        _cleanup_free_ size_t *next = NULL; /* next record of the same stream, SIZE_MAX = end */
        size_t n_streams = 0;
        bool static_dyn[SHIP_DYN_MAX] = {};
        bool static_job = false;
        int r;

        if ((!recs && n > 0) || (!meta && n > 0) || (!labels && n_labels > 0) || n_labels > SHIP_LABELS_MAX || !ret ||
            !ret_len)
                return -EINVAL;
        for (size_t i = 0; i < n_labels; i++) {
                if (!ship_label_name_valid(labels[i].name) || !labels[i].value ||
                    strlen(labels[i].value) >= SHIP_LABEL_VALUE_MAX)
                        return -EINVAL;
                for (size_t j = 0; j < i; j++)
                        if (streq(labels[i].name, labels[j].name))
                                return -EINVAL;
                for (int k = 0; k < SHIP_DYN_MAX; k++)
                        if (streq(labels[i].name, dyn_names[k]))
                                static_dyn[k] = true;
                if (streq(labels[i].name, "job"))
                        static_job = true;
        }

        if (n > 0) {
                next = calloc(n, sizeof *next);
                streams = calloc(n, sizeof *streams);
                if (!next || !streams)
                        return -ENOMEM;
        }

        /* Group. O(records × streams): streams are few (kinds × severities on one node),
         * and a batch is bounded, so no hash table. */
        for (size_t i = 0; i < n; i++) {
                next[i] = SIZE_MAX;
                const char *dyn[SHIP_DYN_MAX] = {};
                size_t dyn_len[SHIP_DYN_MAX] = {};
                for (int k = 0; k < SHIP_DYN_MAX; k++)
                        if (!static_dyn[k] && meta[i].dyn[k]) {
                                dyn[k] = meta[i].dyn[k];
                                dyn_len[k] = meta[i].dyn_len[k];
                        }

                size_t s;
                for (s = 0; s < n_streams; s++)
                        if (dyn_equal(&streams[s], dyn, dyn_len))
                                break;
                if (s == n_streams) {
                        n_streams++;
                        memcpy(streams[s].dyn, dyn, sizeof dyn);
                        memcpy(streams[s].dyn_len, dyn_len, sizeof dyn_len);
                        streams[s].first = i;
                } else
                        next[streams[s].last] = i;
                streams[s].last = i;
        }

        r = dynbuf_puts(&b, "{\"streams\":[");
        for (size_t s = 0; r >= 0 && s < n_streams; s++) {
                bool first = true;
                r = dynbuf_puts(&b, s ? ",{\"stream\":{" : "{\"stream\":{");
                if (r >= 0 && !static_job)
                        r = loki_label(&b, &first, "job", "pullwatch", strlen("pullwatch"));
                for (size_t l = 0; r >= 0 && l < n_labels; l++)
                        r = loki_label(&b, &first, labels[l].name, labels[l].value, strlen(labels[l].value));
                for (int k = 0; r >= 0 && k < SHIP_DYN_MAX; k++)
                        if (streams[s].dyn[k])
                                r = loki_label(&b, &first, dyn_names[k], streams[s].dyn[k], streams[s].dyn_len[k]);
                if (r >= 0)
                        r = dynbuf_puts(&b, "},\"values\":[");
                for (size_t i = streams[s].first; r >= 0 && i != SIZE_MAX; i = next[i]) {
                        r = dynbuf_printf(&b, "%s[\"%" PRIu64 "\",", i == streams[s].first ? "" : ",",
                                          meta[i].has_ts ? meta[i].ts_ns : fallback_ns);
                        if (r >= 0)
                                r = buf_json_string(&b, recs[i].data, recs[i].len, false);
                        if (r >= 0)
                                r = dynbuf_add(&b, "]", 1);
                }
                if (r >= 0)
                        r = dynbuf_puts(&b, "]}");
        }
        if (r >= 0)
                r = dynbuf_puts(&b, "]}");
        if (r < 0)
                return r;
        *ret_len = b.len;
        *ret = TAKE_PTR(b.data);
        return 0;
}

int ship_gzip(const void *in, size_t len, int level, char **ret, size_t *ret_len) {
        z_stream z = {};
        int r;

        if ((!in && len > 0) || !ret || !ret_len)
                return -EINVAL;
        if (len > UINT_MAX / 2)
                return -E2BIG;
        /* windowBits 15 + 16: gzip wrapper (RFC 1952) instead of zlib's */
        if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                return -ENOMEM;
        uLong bound = deflateBound(&z, (uLong) len);
        _cleanup_free_ char *out = malloc(bound ? bound : 1);
        if (!out) {
                deflateEnd(&z);
                return -ENOMEM;
        }
        z.next_in = (Bytef *) in;
        z.avail_in = (uInt) len;
        z.next_out = (Bytef *) out;
        z.avail_out = (uInt) bound;
        r = deflate(&z, Z_FINISH);
        size_t produced = bound - z.avail_out;
        deflateEnd(&z);
        if (r != Z_STREAM_END)
                return -EIO;
        *ret_len = produced;
        *ret = TAKE_PTR(out);
        return 0;
}

/* ---------------------------------------------------------------- policies */

ShipVerdict ship_classify(bool transport_ok, long http_status) {
        if (!transport_ok)
                return SHIP_RETRY;
        if (http_status >= 200 && http_status < 300)
                return SHIP_OK;
        if (http_status == 408 || http_status == 429 || (http_status >= 500 && http_status < 600))
                return SHIP_RETRY;
        /* 1xx final, 3xx (we never follow redirects), other 4xx, nonsense codes */
        return SHIP_POISON;
}

const char *ship_verdict_to_string(ShipVerdict v) {
        switch (v) {
        case SHIP_OK:
                return "ok";
        case SHIP_RETRY:
                return "retry";
        case SHIP_POISON:
                return "poison";
        }
        return NULL;
}

static bool take_word(const char **p, const char *end, const char *const *words, size_t n, unsigned *ret) {
        for (size_t i = 0; i < n; i++) {
                size_t l = strlen(words[i]);
                if ((size_t) (end - *p) >= l && strncmp(*p, words[i], l) == 0) {
                        *p += l;
                        *ret = (unsigned) i;
                        return true;
                }
        }
        return false;
}

static const char *const month_names[12] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
/* Long names first: "Sunday" must not match as "Sun" + garbage. */
static const char *const day_names_long[7] = { "Monday", "Tuesday", "Wednesday", "Thursday",
                                               "Friday", "Saturday", "Sunday" };
static const char *const day_names[7] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };

static bool take_hms(const char **p, const char *end, unsigned *h, unsigned *m, unsigned *s) {
        return take_digits(p, end, 2, h) && take_char(p, end, ':') && take_digits(p, end, 2, m) &&
               take_char(p, end, ':') && take_digits(p, end, 2, s);
}

/* RFC 9110 §5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime forms. */
static int parse_http_date(const char *p, const char *end, uint64_t *ret_sec) {
        unsigned wd, d, mo, y, hh, mi, ss;

        if (take_word(&p, end, day_names_long, 7, &wd)) {
                /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
                if (!take_char(&p, end, ',') || !take_char(&p, end, ' ') || !take_digits(&p, end, 2, &d) ||
                    !take_char(&p, end, '-') || !take_word(&p, end, month_names, 12, &mo) ||
                    !take_char(&p, end, '-') || !take_digits(&p, end, 2, &y) || !take_char(&p, end, ' ') ||
                    !take_hms(&p, end, &hh, &mi, &ss))
                        return -EINVAL;
                y += y < 70 ? 2000 : 1900;
                if ((size_t) (end - p) != 4 || memcmp(p, " GMT", 4) != 0)
                        return -EINVAL;
        } else if (take_word(&p, end, day_names, 7, &wd)) {
                if (take_char(&p, end, ',')) {
                        /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
                        if (!take_char(&p, end, ' ') || !take_digits(&p, end, 2, &d) || !take_char(&p, end, ' ') ||
                            !take_word(&p, end, month_names, 12, &mo) || !take_char(&p, end, ' ') ||
                            !take_digits(&p, end, 4, &y) || !take_char(&p, end, ' ') ||
                            !take_hms(&p, end, &hh, &mi, &ss))
                                return -EINVAL;
                        if ((size_t) (end - p) != 4 || memcmp(p, " GMT", 4) != 0)
                                return -EINVAL;
                } else {
                        /* asctime: Sun Nov  6 08:49:37 1994 */
                        if (!take_char(&p, end, ' ') || !take_word(&p, end, month_names, 12, &mo) ||
                            !take_char(&p, end, ' '))
                                return -EINVAL;
                        if (take_char(&p, end, ' ')) {
                                if (!take_digits(&p, end, 1, &d))
                                        return -EINVAL;
                        } else if (!take_digits(&p, end, 2, &d))
                                return -EINVAL;
                        if (!take_char(&p, end, ' ') || !take_hms(&p, end, &hh, &mi, &ss) ||
                            !take_char(&p, end, ' ') || !take_digits(&p, end, 4, &y) || p != end)
                                return -EINVAL;
                }
        } else
                return -EINVAL;

        mo += 1;
        if (y < 1970 || !date_valid(y, mo, d, hh, mi, ss))
                return -EINVAL;
        *ret_sec = (uint64_t) (days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss);
        return 0;
}

int ship_parse_retry_after(const char *value, uint64_t now_usec, uint64_t *ret_delay_usec) {
        if (!value || !ret_delay_usec)
                return -EINVAL;
        const char *p = value, *end = value + strlen(value);
        while (p < end && (*p == ' ' || *p == '\t'))
                p++;
        while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
                end--;
        if (p == end)
                return -EINVAL;

        uint64_t delay;
        if (*p >= '0' && *p <= '9') {
                uint64_t sec = 0;
                for (const char *q = p; q < end; q++) {
                        if (*q < '0' || *q > '9')
                                return -EINVAL;
                        if (sec < UINT64_MAX / 100) /* saturate: the result is clamped anyway */
                                sec = sec * 10 + (uint64_t) (*q - '0');
                }
                delay = sec > SHIP_RETRY_AFTER_MAX_USEC / 1000000ULL ? SHIP_RETRY_AFTER_MAX_USEC : sec * 1000000ULL;
        } else {
                uint64_t at_sec;
                int r = parse_http_date(p, end, &at_sec);
                if (r < 0)
                        return r;
                uint64_t now_sec = now_usec / 1000000ULL;
                delay = at_sec <= now_sec ? 0 : (at_sec - now_sec) * 1000000ULL;
        }
        *ret_delay_usec = delay > SHIP_RETRY_AFTER_MAX_USEC ? SHIP_RETRY_AFTER_MAX_USEC : delay;
        return 0;
}

uint64_t ship_backoff_usec(unsigned attempt, uint64_t base_usec, uint64_t cap_usec, uint64_t floor_usec,
                           ship_rng_t rng, void *rng_userdata) {
        uint64_t window = cap_usec;
        if (attempt < 63 && base_usec <= (cap_usec >> attempt))
                window = base_usec << attempt;
        uint64_t v = rng(rng_userdata);
        uint64_t r = window == UINT64_MAX ? v : v % (window + 1);
        return r < floor_usec ? floor_usec : r;
}

/* ---------------------------------------------------------------- shipper */

typedef enum ShipState {
        STATE_IDLE,       /* nothing pending, or waiting for a kick */
        STATE_WAIT_AGE,   /* records pending below the thresholds; timer armed */
        STATE_SENDING,    /* one request in flight */
        STATE_WAIT_RETRY, /* batch held; timer armed for the next attempt */
        STATE_STOPPED,    /* libcurl refused an option: no request can be made, none is retried */
} ShipState;

typedef struct Batch {
        ShipRecord *recs; /* data points into arena */
        bool *valid;
        ShipLokiMeta *meta; /* Loki: each record's labels and time, from its one parse */
        size_t n, n_valid;
        char *arena;
        size_t arena_len;
        uint64_t last_seq;
        uint64_t spool_generation; /* the spool's replaceable group when loaded */
        char *body; /* encoded, maybe gzipped; what goes on the wire */
        size_t body_len;
} Batch;

struct Shipper {
        sd_event *event;
        ShipTransport transport;
        CurlEv *ev;   /* SHIP_TRANSPORT_CURL */
        Httpc *http;  /* SHIP_TRANSPORT_NATIVE */
        Spool *spool;

        char *url;
        ShipFormat format;
        size_t batch_max_records, batch_max_bytes;
        uint64_t batch_max_age_usec;
        bool gzip, insecure;
        uint64_t timeout_usec, connect_timeout_usec, retry_base_usec, retry_max_usec;
        char *ca_file, *client_cert, *client_key, *token_file, *dead_letter_path;
        uint64_t dead_letter_max_bytes;
        char *headers[SHIP_HEADERS_MAX];
        size_t n_headers;
        char label_names[SHIP_LABELS_MAX][SHIP_LABEL_NAME_MAX];
        char label_values[SHIP_LABELS_MAX][SHIP_LABEL_VALUE_MAX];
        ShipLabel labels[SHIP_LABELS_MAX];
        size_t n_labels;

        ship_rng_t rng;
        void *rng_userdata;
        uint64_t rng_state;

        ship_log_t log;
        void *log_userdata;

        /* bearer token cache, keyed by the file's identity */
        char *token;
        dev_t token_dev;
        ino_t token_ino;
        off_t token_size;
        struct timespec token_mtime;

        ShipState state;
        sd_event_source *timer;
        Batch batch;
        bool have_batch;

        /* the request in flight */
        CURL *easy;
        struct curl_slist *req_headers;
        char errbuf[CURL_ERROR_SIZE];
        char resp[SHIP_BODY_EXCERPT_MAX];
        size_t resp_len;
        uint64_t resp_total;
        bool resp_aborted;

        ShipStats stats;
        FailLatch ack_fail; /* the spool cannot record acks: said once, and its recovery */
};

#define RESPONSE_BODY_MAX (1U << 20) /* more than this and we stop reading the response */

void ship_config_init(ShipConfig *c) {
        *c = (ShipConfig) {
                .format = SHIP_FORMAT_JSONL,
                .batch_max_records = 1000,
                .batch_max_bytes = 1U << 20,
                .batch_max_age_usec = 1000000ULL,
                .gzip = true,
                .timeout_usec = 30ULL * 1000000ULL,
                .connect_timeout_usec = 10ULL * 1000000ULL,
                .retry_base_usec = 1000000ULL,
                .retry_max_usec = 300ULL * 1000000ULL,
                .dead_letter_max_bytes = 64ULL << 20,
        };
}

_printf_(3, 4) static void ship_log(Shipper *s, int level, const char *fmt, ...) {
        char msg[1024];
        va_list ap;
        if (!s->log)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        s->log(level, msg, s->log_userdata);
}

_printf_(3, 4) static void set_error(char *err, size_t errlen, const char *fmt, ...) {
        va_list ap;
        if (!err || errlen == 0)
                return;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
}

static uint64_t default_rng(void *userdata) {
        uint64_t *x = userdata; /* xorshift64*: jitter needs spread, not secrecy */
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        return *x * 0x2545F4914F6CDD1DULL;
}

static void batch_free(Batch *b) {
        for (size_t i = 0; b->meta && i < b->n; i++)
                ship_loki_meta_done(&b->meta[i]);
        free(b->meta);
        free(b->recs);
        free(b->valid);
        free(b->arena);
        free(b->body);
        *b = (Batch) {};
}

static void request_release(Shipper *s) {
        if (s->http)
                httpc_cancel(s->http); /* wipes the request head (the Authorization header) */
        if (s->easy) {
                curlev_remove(s->ev, s->easy); /* no-op error if already detached */
                curl_easy_cleanup(s->easy);
                s->easy = NULL;
        }
        curl_slist_free_all(s->req_headers); /* holds the Authorization header */
        s->req_headers = NULL;
}

static void token_forget(Shipper *s) {
        if (s->token) {
                explicit_bzero(s->token, strlen(s->token));
                free(s->token);
                s->token = NULL;
        }
}

Shipper *ship_free(Shipper *s) {
        if (!s)
                return NULL;
        request_release(s);
        httpc_free(s->http);
        sd_event_source_disable_unref(s->timer);
        batch_free(&s->batch);
        token_forget(s);
        free(s->url);
        free(s->ca_file);
        free(s->client_cert);
        free(s->client_key);
        free(s->token_file);
        free(s->dead_letter_path);
        for (size_t i = 0; i < s->n_headers; i++)
                free(s->headers[i]);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Shipper *, ship_free);

void ship_set_log_callback(Shipper *s, ship_log_t cb, void *userdata) {
        s->log = cb;
        s->log_userdata = userdata;
}

void ship_get_stats(const Shipper *s, ShipStats *ret) {
        *ret = s->stats;
        ret->in_flight = s->state == STATE_SENDING;
        spool_get_stats(s->spool, &ret->spool);
}

static int strdup_opt(const char *src, char **dst) {
        if (!src)
                return 0;
        *dst = strdup(src);
        return *dst ? 0 : -ENOMEM;
}

static bool header_valid(const char *h) {
        size_t n = strlen(h);
        const char *colon = strchr(h, ':');
        if (n == 0 || n >= SHIP_HEADER_MAX || !colon || colon == h)
                return false;
        for (const char *p = h; p < colon; p++) /* RFC 9110 token characters */
                if (!isalnum((unsigned char) *p) && !strchr("!#$%&'*+-.^_`|~", *p))
                        return false;
        for (const char *p = colon; *p; p++)
                if ((unsigned char) *p < 0x20 && *p != '\t')
                        return false; /* CR/LF would inject headers */
        return true;
}

/* Read the bearer token if the file changed since the last read (kubelet rotates a
 * projected token by swapping a symlink: stat() follows it, so the inode changes). */
static int token_refresh(Shipper *s) {
        struct stat st;
        if (!s->token_file)
                return 0;
        if (stat(s->token_file, &st) < 0)
                return -errno;
        if (s->token && st.st_dev == s->token_dev && st.st_ino == s->token_ino && st.st_size == s->token_size &&
            st.st_mtim.tv_sec == s->token_mtime.tv_sec && st.st_mtim.tv_nsec == s->token_mtime.tv_nsec)
                return 0;

        /* followed if a symlink: kubelet's projected token is one */
        _cleanup_close_ int fd = open_regular_file(AT_FDCWD, s->token_file, 0);
        if (fd < 0)
                return fd;
        char *buf = NULL;
        size_t n = 0;
        int e = read_fd_bounded(fd, SHIP_TOKEN_MAX, &buf, &n);
        if (e < 0)
                return e;
        if (n > SHIP_TOKEN_MAX) {
                explicit_bzero(buf, n);
                free(buf);
                return -EFBIG;
        }
        while (n > 0 && isspace((unsigned char) buf[n - 1]))
                n--;
        buf[n] = 0;
        bool ok = n > 0;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) buf[i] <= 0x20 || buf[i] == 0x7f)
                        ok = false;
        if (!ok) {
                explicit_bzero(buf, n);
                free(buf);
                return -EBADMSG;
        }
        token_forget(s);
        s->token = buf;
        s->token_dev = st.st_dev;
        s->token_ino = st.st_ino;
        s->token_size = st.st_size;
        s->token_mtime = st.st_mtim;
        return 0;
}

/* ---- batches ---- */

typedef struct PeekCtx {
        Batch *b;
        size_t cap;
        DynBuf arena;
        size_t *offsets;
} PeekCtx;

static int peek_visit(uint64_t seq, const void *data, size_t len, void *userdata) {
        PeekCtx *c = userdata;
        Batch *b = c->b;
        if (b->n == c->cap)
                return 1;
        int r = dynbuf_add(&c->arena, data, len);
        if (r < 0)
                return r;
        c->offsets[b->n] = c->arena.len - len;
        b->recs[b->n] = (ShipRecord) { .seq = seq, .len = len };
        b->last_seq = seq;
        b->n++;
        return 0;
}

static int batch_load(Shipper *s, size_t max_records, size_t max_bytes) {
        Batch *b = &s->batch;
        _cleanup_free_ size_t *offsets = calloc(max_records, sizeof *offsets);
        PeekCtx c = { .b = b, .cap = max_records, .arena = { .max = max_bytes + SPOOL_RECORD_MAX }, .offsets = offsets };
        int r;

        b->recs = calloc(max_records, sizeof *b->recs);
        b->valid = calloc(max_records, sizeof *b->valid);
        if (s->format == SHIP_FORMAT_LOKI)
                b->meta = calloc(max_records, sizeof *b->meta);
        if (!offsets || !b->recs || !b->valid || (s->format == SHIP_FORMAT_LOKI && !b->meta)) {
                batch_free(b);
                return -ENOMEM;
        }
        b->spool_generation = spool_generation(s->spool);
        r = spool_peek(s->spool, 0, max_records, max_bytes, peek_visit, &c);
        if (r < 0) {
                dynbuf_free(&c.arena);
                batch_free(b);
                return r;
        }
        b->arena = TAKE_PTR(c.arena.data);
        b->arena_len = c.arena.len;
        for (size_t i = 0; i < b->n; i++) {
                b->recs[i].data = b->arena + offsets[i];
                if (b->meta) { /* the one parse of a Loki record: validity, labels and time */
                        r = ship_loki_meta(b->recs[i].data, b->recs[i].len, &b->meta[i]);
                        if (r == -ENOMEM) {
                                batch_free(b);
                                return r;
                        }
                        b->valid[i] = r >= 0;
                } else
                        b->valid[i] = ship_record_valid(s->format, b->recs[i].data, b->recs[i].len);
                b->n_valid += b->valid[i];
        }
        return 0;
}

static int batch_encode(Shipper *s) {
        Batch *b = &s->batch;
        _cleanup_free_ ShipRecord *valid = calloc(b->n_valid ? b->n_valid : 1, sizeof *valid);
        _cleanup_free_ ShipLokiMeta *meta = b->meta ? calloc(b->n_valid ? b->n_valid : 1, sizeof *meta) : NULL;
        _cleanup_free_ char *plain = NULL;
        size_t plain_len = 0, k = 0;
        int r;

        if (!valid || (b->meta && !meta))
                return -ENOMEM;
        for (size_t i = 0; i < b->n; i++)
                if (b->valid[i]) {
                        if (meta)
                                meta[k] = b->meta[i]; /* borrowed: the strings stay owned by the batch */
                        valid[k++] = b->recs[i];
                }
        /* Generous bound: worst-case escaping is 6 bytes per payload byte, plus per-record
         * and per-stream framing; it only guards against a bug growing without limit. */
        size_t max = b->arena_len * 6 + b->n_valid * 4096 + 65536;
        if (s->format == SHIP_FORMAT_LOKI)
                r = ship_encode_loki_meta(valid, meta, k, s->labels, s->n_labels, now_usec_realtime() * 1000ULL, max,
                                          &plain, &plain_len);
        else
                r = ship_encode_jsonl(valid, k, max, &plain, &plain_len);
        if (r < 0)
                return r;
        if (s->gzip) {
                r = ship_gzip(plain, plain_len, Z_DEFAULT_COMPRESSION, &b->body, &b->body_len);
                if (r < 0)
                        return r;
        } else {
                b->body = TAKE_PTR(plain);
                b->body_len = plain_len;
        }
        return 0;
}

/* Append the batch (all records, or only the invalid ones) and one status line to the
 * dead-letter file, fdatasync'ed before the caller acks. */
static int dead_letter(Shipper *s, bool only_invalid, long status, const char *reason, size_t *ret_count) {
        Batch *b = &s->batch;
        _cleanup_(dynbuf_free) DynBuf out = { .max = SIZE_MAX };
        size_t count = 0;
        int r = 0;

        for (size_t i = 0; r >= 0 && i < b->n; i++) {
                if (only_invalid && b->valid[i])
                        continue;
                count++;
                if (ship_record_valid(SHIP_FORMAT_JSONL, b->recs[i].data, b->recs[i].len) &&
                    ship_record_valid(SHIP_FORMAT_LOKI, b->recs[i].data, b->recs[i].len))
                        r = dynbuf_add(&out, b->recs[i].data, b->recs[i].len);
                else {
                        /* not a JSON line: wrap it so the file stays JSON lines */
                        r = dynbuf_puts(&out, "{\"invalid_record\":");
                        if (r >= 0)
                                r = buf_json_string(&out, b->recs[i].data, b->recs[i].len, true);
                        if (r >= 0)
                                r = dynbuf_puts(&out, "}");
                }
                if (r >= 0)
                        r = dynbuf_add(&out, "\n", 1);
        }
        if (count == 0) {
                *ret_count = 0;
                return 0;
        }
        if (r >= 0)
                r = dynbuf_printf(&out, "{\"dead_letter\":{\"time_usec\":%" PRIu64 ",\"records\":%zu,\"last_seq\":%" PRIu64
                               ",\"status\":%ld,\"reason\":",
                               now_usec_realtime(), count, b->last_seq, status);
        if (r >= 0)
                r = buf_json_string(&out, reason, strlen(reason), true);
        if (r >= 0)
                r = dynbuf_puts(&out, ",\"response\":");
        if (r >= 0)
                r = buf_json_string(&out, s->resp, status > 0 ? s->resp_len : 0, true);
        if (r >= 0)
                r = dynbuf_puts(&out, "}}\n");
        if (r < 0)
                return r;

        struct stat st;
        if (lstat(s->dead_letter_path, &st) >= 0 && s->dead_letter_max_bytes > 0 &&
            (uint64_t) st.st_size + out.len > s->dead_letter_max_bytes && st.st_size > 0) {
                char rotated[PATH_MAX];
                if (snprintf(rotated, sizeof rotated, "%s.1", s->dead_letter_path) >= (int) sizeof rotated)
                        return -ENAMETOOLONG;
                if (rename(s->dead_letter_path, rotated) < 0)
                        return -errno;
                ship_log(s, LOG_WARNING, "dead-letter file %s reached %" PRIu64 " bytes, rotated to %s",
                         s->dead_letter_path, s->dead_letter_max_bytes, rotated);
        }
        /* never through a symlink: root would append to its target */
        _cleanup_close_ int fd =
                open(s->dead_letter_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        r = write_all(fd, out.data, out.len);
        if (r < 0)
                return r;
        if (fdatasync(fd) < 0)
                return -errno;
        *ret_count = count;
        return 0;
}

/* ---- state machine ---- */

static int start_batch(Shipper *s);
static int start_request(Shipper *s);

static int arm_timer(Shipper *s, uint64_t delay_usec, ShipState state) {
        uint64_t now;
        int r = sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        r = sd_event_source_set_time(s->timer, now + delay_usec);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
        if (r < 0)
                return r;
        s->state = state;
        return 0;
}

static void batch_done(Shipper *s) {
        batch_free(&s->batch);
        s->have_batch = false;
        s->state = STATE_IDLE;
        s->stats.attempt = 0;
}

static int ack_batch(Shipper *s) {
        int r = spool_ack(s->spool, s->batch.last_seq);
        if (r < 0) {
                if (latch_fail(&s->ack_fail, r))
                        ship_log(s, LOG_ERR,
                                 "could not acknowledge records up to seq %" PRIu64 " in the spool: %s; they will be "
                                 "sent again (the endpoint dedupes by id), said once until it works again",
                                 s->batch.last_seq, strerror(-r));
                return r;
        }
        uint64_t n = latch_ok(&s->ack_fail);
        if (n > 0)
                ship_log(s, LOG_NOTICE, "acknowledging records in the spool works again after %" PRIu64 " failures", n);
        return 0;
}

/* Dead-letter and ack. On a dead-letter write error the batch is kept and retried:
 * records are never dropped because a local disk hiccupped. */
static int handle_poison(Shipper *s, long status, const char *reason) {
        size_t count = 0;
        int r = dead_letter(s, false, status, reason, &count);
        if (r < 0) {
                ship_log(s, LOG_ERR, "could not write dead-letter file %s: %s; keeping %zu records in the spool",
                         s->dead_letter_path, strerror(-r), s->batch.n);
                return r;
        }
        s->stats.dead_lettered += count;
        ship_log(s, LOG_ERR, "endpoint rejected %zu records (%s), moved them to %s: %.*s", count, reason,
                 s->dead_letter_path, (int) (status > 0 ? s->resp_len : 0), s->resp);
        ack_batch(s);
        batch_done(s);
        return 0;
}

static void schedule_retry(Shipper *s, uint64_t floor_usec) {
        uint64_t delay = ship_backoff_usec(s->stats.attempt, s->retry_base_usec, s->retry_max_usec, floor_usec,
                                           s->rng, s->rng_userdata);
        s->stats.retried++;
        s->stats.attempt++;
        ship_log(s, s->stats.attempt == 1 ? LOG_WARNING : LOG_DEBUG,
                 "shipping %zu records failed (%s), keeping them in the spool, attempt %u, next in %" PRIu64 " ms",
                 s->batch.n, s->stats.last_error, s->stats.attempt, delay / 1000);
        if (arm_timer(s, delay, STATE_WAIT_RETRY) < 0)
                s->state = STATE_WAIT_RETRY; /* cannot happen with a valid source; kick retries */
}

int ship_kick(Shipper *s) {
        SpoolStats st;

        if (!s)
                return -EINVAL;
        if (s->state == STATE_SENDING || s->state == STATE_WAIT_RETRY)
                return 0; /* the completion continues with whatever is pending */
        if (s->state == STATE_STOPPED)
                return -EOPNOTSUPP;
        spool_get_stats(s->spool, &st);
        if (st.pending_records == 0) {
                if (s->state == STATE_WAIT_AGE)
                        sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
                s->state = STATE_IDLE;
                return 0;
        }
        if (st.pending_records >= s->batch_max_records || st.pending_bytes >= s->batch_max_bytes)
                return start_batch(s);
        if (s->state == STATE_WAIT_AGE)
                return 0;
        return arm_timer(s, s->batch_max_age_usec, STATE_WAIT_AGE);
}

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Shipper *s = userdata;
        ShipState was = s->state;

        s->state = STATE_IDLE;
        if (was == STATE_WAIT_RETRY && s->have_batch && s->batch.spool_generation != spool_generation(s->spool)) {
                /* the inventory it holds was replaced by a newer one while waiting: only the
                 * newest is sent (the spool still holds every other record it had) */
                batch_free(&s->batch);
                s->have_batch = false;
        }
        if (was == STATE_WAIT_RETRY && s->have_batch)
                start_request(s); /* the same body again */
        else if (was == STATE_WAIT_RETRY || was == STATE_WAIT_AGE)
                start_batch(s);
        return 0;
}

/* Settle a batch that has no valid record to send, or after the endpoint took it. */
static void finish_ok(Shipper *s) {
        size_t count = 0;
        if (s->batch.n_valid < s->batch.n) {
                int r = dead_letter(s, true, 0, "invalid record, not sent", &count);
                if (r < 0) {
                        /* the valid ones were delivered; resending them is harmless (dedupe by id) */
                        snprintf(s->stats.last_error, sizeof s->stats.last_error, "dead-letter file: %s",
                                 strerror(-r));
                        schedule_retry(s, 0);
                        return;
                }
                s->stats.dead_lettered += count;
                ship_log(s, LOG_ERR, "%zu records could not be encoded as %s, moved them to %s", count,
                         ship_format_to_string(s->format), s->dead_letter_path);
        }
        int r = ack_batch(s);
        batch_done(s);
        if (r < 0) {
                /* delivered, but the spool still holds them: sent again after a backoff,
                 * not at once in a loop */
                uint64_t delay = ship_backoff_usec((unsigned) MIN(s->ack_fail.count, 32U), s->retry_base_usec,
                                                   s->retry_max_usec, 0, s->rng, s->rng_userdata);
                if (arm_timer(s, delay, STATE_WAIT_RETRY) >= 0)
                        return;
        }
        ship_kick(s);
        /* Drained: a batch's arena, body and gzip state (deflate's ~256 KiB, above glibc's
         * raised mmap threshold after the first one) stay in the heap as free chunks;
         * give them back, so an idle agent's private dirty memory is what it holds. */
        if (s->state == STATE_IDLE)
                malloc_trim(0);
}

static int start_batch(Shipper *s) {
        int r;

        if (s->state == STATE_SENDING || s->state == STATE_WAIT_RETRY)
                return 0;
        if (s->state == STATE_WAIT_AGE)
                sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        s->state = STATE_IDLE;
        if (!s->have_batch) {
                r = batch_load(s, s->batch_max_records, s->batch_max_bytes);
                if (r >= 0 && s->batch.n == 0) {
                        /* a single record larger than the byte budget: send it alone */
                        batch_free(&s->batch);
                        r = batch_load(s, 1, SPOOL_RECORD_MAX);
                }
                if (r < 0) {
                        snprintf(s->stats.last_error, sizeof s->stats.last_error, "reading the spool: %s", strerror(-r));
                        schedule_retry(s, 0);
                        s->have_batch = false;
                        return r;
                }
                if (s->batch.n == 0) {
                        batch_free(&s->batch);
                        return 0;
                }
                s->have_batch = true;
                if (s->batch.n_valid == 0) {
                        finish_ok(s);
                        return 0;
                }
                r = batch_encode(s);
                if (r == -ENOMEM) {
                        batch_free(&s->batch);
                        s->have_batch = false;
                        snprintf(s->stats.last_error, sizeof s->stats.last_error, "encoding a batch: out of memory");
                        arm_timer(s, s->retry_base_usec, STATE_WAIT_AGE);
                        return r;
                }
                if (r < 0) {
                        char reason[128];
                        snprintf(reason, sizeof reason, "batch could not be encoded: %s", strerror(-r));
                        s->resp_len = 0;
                        if (handle_poison(s, 0, reason) < 0)
                                schedule_retry(s, 0);
                        else
                                ship_kick(s);
                        return 0;
                }
        }
        return start_request(s);
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Shipper *s = userdata;
        size_t n = size * nmemb;
        if (s->resp_len < sizeof s->resp) {
                size_t k = MIN(n, sizeof s->resp - s->resp_len);
                memcpy(s->resp + s->resp_len, ptr, k);
                s->resp_len += k;
        }
        s->resp_total += n;
        if (s->resp_total > RESPONSE_BODY_MAX) {
                s->resp_aborted = true;
                return 0; /* CURLE_WRITE_ERROR; the status line is already known */
        }
        return n;
}

/* Keep the excerpt printable: it goes into one journald line. */
static void sanitize_excerpt(Shipper *s) {
        for (size_t i = 0; i < s->resp_len; i++) {
                unsigned char c = (unsigned char) s->resp[i];
                if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
                        s->resp[i] = c == '\n' || c == '\r' || c == '\t' ? ' ' : '?';
        }
}

static void request_settle(Shipper *s, bool transport_ok, long status, uint64_t retry_after);

static void on_done(CurlEv *ev, CURL *easy, CURLcode result, void *userdata) {
        Shipper *s = userdata;
        long status = 0;
        uint64_t retry_after = 0;

        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        bool transport_ok = result == CURLE_OK || (result == CURLE_WRITE_ERROR && s->resp_aborted && status > 0);
        if (transport_ok) {
                struct curl_header *h = NULL;
                if (curl_easy_header(easy, "Retry-After", 0, CURLH_HEADER, -1, &h) == CURLHE_OK && h && h->value)
                        (void) ship_parse_retry_after(h->value, now_usec_realtime(), &retry_after);
        }
        if (!transport_ok)
                snprintf(s->stats.last_error, sizeof s->stats.last_error, "%.200s (curl error %d)",
                         s->errbuf[0] ? s->errbuf : curl_easy_strerror(result), (int) result);

        /* the easy handle is ours again (curlev detached it) */
        curl_easy_cleanup(s->easy);
        s->easy = NULL;
        curl_slist_free_all(s->req_headers);
        s->req_headers = NULL;
        request_settle(s, transport_ok, status, retry_after);
}

/* The request ended: transport_ok with an HTTP status, or a transport error already
 * described in last_error. Decide, then ack, retry or dead-letter. */
static void request_settle(Shipper *s, bool transport_ok, long status, uint64_t retry_after) {
        sanitize_excerpt(s);
        ShipVerdict v = ship_classify(transport_ok, status);
        if (transport_ok && v != SHIP_OK)
                snprintf(s->stats.last_error, sizeof s->stats.last_error, "HTTP %ld: %.*s", status, (int) s->resp_len,
                         s->resp);
        s->state = STATE_IDLE;

        switch (v) {
        case SHIP_OK:
                if (s->stats.attempt > 0)
                        ship_log(s, LOG_INFO, "shipping recovered after %u failed attempts", s->stats.attempt);
                s->stats.shipped += s->batch.n_valid;
                s->stats.batches++;
                s->stats.bytes_sent += s->batch.body_len;
                s->stats.last_success_usec = now_usec_realtime();
                s->stats.last_error[0] = 0;
                finish_ok(s);
                break;
        case SHIP_RETRY:
                schedule_retry(s, retry_after);
                break;
        case SHIP_POISON: {
                char reason[64];
                snprintf(reason, sizeof reason, "HTTP %ld", status);
                if (handle_poison(s, status, reason) < 0)
                        schedule_retry(s, 0);
                else
                        ship_kick(s);
                break;
        }
        }
}

static void on_http_done(Httpc *c, const HttpcResult *res, void *userdata) {
        Shipper *s = userdata;
        uint64_t retry_after = 0;

        s->resp_len = MIN(res->excerpt_len, sizeof s->resp);
        if (s->resp_len > 0)
                memcpy(s->resp, res->excerpt, s->resp_len);
        if (res->transport_ok && res->retry_after)
                (void) ship_parse_retry_after(res->retry_after, now_usec_realtime(), &retry_after);
        if (!res->transport_ok)
                snprintf(s->stats.last_error, sizeof s->stats.last_error, "%.240s", res->error);
        request_settle(s, res->transport_ok, res->status, retry_after);
}

/* The request through agent/httpc.c: the same headers as through libcurl. */
static int start_request_native(Shipper *s) {
        const char *h[SHIP_HEADERS_MAX + 4];
        size_t n = 0;
        _cleanup_free_ char *auth = NULL;
        size_t auth_size = 0;
        int r;

        h[n++] = s->format == SHIP_FORMAT_LOKI ? "Content-Type: application/json" : "Content-Type: application/x-ndjson";
        if (s->gzip)
                h[n++] = "Content-Encoding: gzip";
        for (size_t i = 0; i < s->n_headers; i++)
                h[n++] = s->headers[i];
        if (s->token) {
                auth_size = strlen("Authorization: Bearer ") + strlen(s->token) + 1;
                auth = malloc(auth_size);
                if (!auth) {
                        snprintf(s->stats.last_error, sizeof s->stats.last_error,
                                 "setting up the request failed: out of memory");
                        schedule_retry(s, 0);
                        return -ENOMEM;
                }
                snprintf(auth, auth_size, "Authorization: Bearer %s", s->token);
                h[n++] = auth;
        }
        s->resp_len = 0;
        r = httpc_post(s->http, h, n, s->batch.body, s->batch.body_len, on_http_done, s);
        if (auth)
                explicit_bzero(auth, auth_size);
        if (r < 0) {
                snprintf(s->stats.last_error, sizeof s->stats.last_error, "starting the request: %s", strerror(-r));
                schedule_retry(s, 0);
                return r;
        }
        s->state = STATE_SENDING;
        return 0;
}

static int start_request(Shipper *s) {
        const char *ctype = s->format == SHIP_FORMAT_LOKI ? "Content-Type: application/json"
                                                           : "Content-Type: application/x-ndjson";
        struct curl_slist *h = NULL;
        int r;

        r = token_refresh(s);
        if (r < 0) {
                /* the token may appear later (kubelet writes it asynchronously) */
                snprintf(s->stats.last_error, sizeof s->stats.last_error, "bearer token file %s: %s", s->token_file,
                         r == -EINVAL ? "not a regular file" : strerror(-r));
                schedule_retry(s, 0);
                return r;
        }

        if (s->transport == SHIP_TRANSPORT_NATIVE)
                return start_request_native(s);

        CURL *easy = curl_easy_init();
        if (!easy) {
                snprintf(s->stats.last_error, sizeof s->stats.last_error, "curl_easy_init failed");
                schedule_retry(s, 0);
                return -ENOMEM;
        }
        bool ok = (h = curl_slist_append(NULL, ctype)) && curl_slist_append(h, "Expect:") &&
                  (!s->gzip || curl_slist_append(h, "Content-Encoding: gzip"));
        for (size_t i = 0; ok && i < s->n_headers; i++)
                ok = curl_slist_append(h, s->headers[i]);
        if (ok && s->token) {
                size_t n = strlen("Authorization: Bearer ") + strlen(s->token) + 1;
                char *a = malloc(n);
                ok = a && snprintf(a, n, "Authorization: Bearer %s", s->token) > 0 && curl_slist_append(h, a);
                if (a) {
                        explicit_bzero(a, n);
                        free(a);
                }
        }
        s->errbuf[0] = 0;
        s->resp_len = 0;
        s->resp_total = 0;
        s->resp_aborted = false;

        /* journal-upload's easy_setopt: a refused option names itself */
        const char *bad_opt = NULL;
        CURLcode bad = CURLE_OK;
#define SET(opt, val)                                                   \
        do {                                                            \
                CURLcode _c = ok ? curl_easy_setopt(easy, opt, val) : CURLE_OK; \
                if (_c != CURLE_OK) {                                   \
                        ok = false;                                     \
                        bad = _c;                                       \
                        bad_opt = #opt;                                 \
                }                                                       \
        } while (0)
        SET(CURLOPT_URL, s->url);
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDS, s->batch.body);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) s->batch.body_len);
        SET(CURLOPT_HTTPHEADER, h);
        SET(CURLOPT_WRITEFUNCTION, on_write);
        SET(CURLOPT_WRITEDATA, s);
        SET(CURLOPT_ERRORBUFFER, s->errbuf);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_TIMEOUT_MS, (long) MIN(s->timeout_usec / 1000, (uint64_t) LONG_MAX));
        SET(CURLOPT_CONNECTTIMEOUT_MS, (long) MIN(s->connect_timeout_usec / 1000, (uint64_t) LONG_MAX));
        /* HTTP/1.1: every collector speaks it, and it sidesteps 7.88's h2 reuse bugs */
        SET(CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
        SET(CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
        SET(CURLOPT_PROTOCOLS_STR, "http,https");
#endif
        SET(CURLOPT_SSL_VERIFYPEER, s->insecure ? 0L : 1L);
        SET(CURLOPT_SSL_VERIFYHOST, s->insecure ? 0L : 2L);
        if (s->ca_file)
                SET(CURLOPT_CAINFO, s->ca_file);
        if (s->client_cert) {
                SET(CURLOPT_SSLCERT, s->client_cert);
                SET(CURLOPT_SSLKEY, s->client_key);
        }
#undef SET
        if (!ok) {
                curl_slist_free_all(h);
                curl_easy_cleanup(easy);
                if (!bad_opt || bad == CURLE_OUT_OF_MEMORY) {
                        snprintf(s->stats.last_error, sizeof s->stats.last_error,
                                 "setting up the request failed: out of memory");
                        schedule_retry(s, 0);
                        return -ENOMEM;
                }
                /* not transient: the same option fails on every attempt */
                snprintf(s->stats.last_error, sizeof s->stats.last_error, "libcurl refused %s: %s", bad_opt,
                         curl_easy_strerror(bad));
                ship_log(s, LOG_ERR, "cannot set up a request to the endpoint: libcurl refused %s: %s; shipping stops, "
                         "records stay in the spool", bad_opt, curl_easy_strerror(bad));
                s->state = STATE_STOPPED;
                return -EOPNOTSUPP;
        }
        r = curlev_add(s->ev, easy, on_done, s);
        if (r < 0) {
                curl_slist_free_all(h);
                curl_easy_cleanup(easy);
                snprintf(s->stats.last_error, sizeof s->stats.last_error, "starting the request: %s", strerror(-r));
                schedule_retry(s, 0);
                return r;
        }
        s->easy = easy;
        s->req_headers = h;
        s->state = STATE_SENDING;
        return 0;
}

int ship_new(Shipper **ret, sd_event *e, CurlEv *ev, Spool *spool, const ShipConfig *cfg, char *err,
             size_t errlen) {
        _cleanup_(ship_freep) Shipper *s = NULL;
        int r;

        if (!ret || !e || !spool || !cfg || (cfg->transport == SHIP_TRANSPORT_CURL && !ev))
                return -EINVAL;
        if (cfg->transport != SHIP_TRANSPORT_NATIVE && cfg->transport != SHIP_TRANSPORT_CURL) {
                set_error(err, errlen, "unknown shipping transport");
                return -EINVAL;
        }
        if (isempty(cfg->url) || (!startswith(cfg->url, "http://") && !startswith(cfg->url, "https://"))) {
                set_error(err, errlen, "endpoint URL must start with http:// or https://");
                return -EINVAL;
        }
        if (!ship_format_to_string(cfg->format)) {
                set_error(err, errlen, "unknown shipping format");
                return -EINVAL;
        }
        if (cfg->batch_max_records == 0 || cfg->batch_max_records > 100000 || cfg->batch_max_bytes == 0 ||
            cfg->batch_max_bytes > (64U << 20) ||
            cfg->retry_base_usec == 0 || cfg->retry_max_usec < cfg->retry_base_usec) {
                set_error(err, errlen, "batch limits must be > 0 (records <= 100000, bytes <= 64 MiB) and retry cap >= base");
                return -EINVAL;
        }
        if (isempty(cfg->dead_letter_path)) {
                set_error(err, errlen, "a dead-letter file path is required");
                return -EINVAL;
        }
        if ((cfg->client_cert == NULL) != (cfg->client_key == NULL)) {
                set_error(err, errlen, "client certificate and key must be given together");
                return -EINVAL;
        }
        if (cfg->n_headers > SHIP_HEADERS_MAX || (cfg->n_headers && !cfg->headers)) {
                set_error(err, errlen, "too many extra headers (max %d)", SHIP_HEADERS_MAX);
                return -EINVAL;
        }
        for (size_t i = 0; i < cfg->n_headers; i++)
                if (!cfg->headers[i] || !header_valid(cfg->headers[i])) {
                        set_error(err, errlen, "extra header %zu is not a valid 'Name: value' line", i + 1);
                        return -EINVAL;
                }
        if (cfg->n_labels > SHIP_LABELS_MAX || (cfg->n_labels && !cfg->labels)) {
                set_error(err, errlen, "too many static labels (max %d)", SHIP_LABELS_MAX);
                return -EINVAL;
        }

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(e);
        s->transport = cfg->transport;
        s->ev = cfg->transport == SHIP_TRANSPORT_CURL ? ev : NULL;
        s->spool = spool;
        s->format = cfg->format;
        s->batch_max_records = cfg->batch_max_records;
        s->batch_max_bytes = cfg->batch_max_bytes;
        s->batch_max_age_usec = cfg->batch_max_age_usec;
        s->gzip = cfg->gzip;
        s->insecure = cfg->insecure;
        s->timeout_usec = cfg->timeout_usec;
        s->connect_timeout_usec = cfg->connect_timeout_usec;
        s->retry_base_usec = cfg->retry_base_usec;
        s->retry_max_usec = cfg->retry_max_usec;
        s->dead_letter_max_bytes = cfg->dead_letter_max_bytes;

        if ((r = strdup_opt(cfg->url, &s->url)) < 0 || (r = strdup_opt(cfg->ca_file, &s->ca_file)) < 0 ||
            (r = strdup_opt(cfg->client_cert, &s->client_cert)) < 0 ||
            (r = strdup_opt(cfg->client_key, &s->client_key)) < 0 ||
            (r = strdup_opt(cfg->bearer_token_file, &s->token_file)) < 0 ||
            (r = strdup_opt(cfg->dead_letter_path, &s->dead_letter_path)) < 0)
                return r;
        for (size_t i = 0; i < cfg->n_headers; i++) {
                if ((r = strdup_opt(cfg->headers[i], &s->headers[i])) < 0)
                        return r;
                s->n_headers++;
        }
        for (size_t i = 0; i < cfg->n_labels; i++) {
                if (!ship_label_name_valid(cfg->labels[i].name) || !cfg->labels[i].value ||
                    strcpy_bounded(s->label_names[i], SHIP_LABEL_NAME_MAX, cfg->labels[i].name) < 0 ||
                    strcpy_bounded(s->label_values[i], SHIP_LABEL_VALUE_MAX, cfg->labels[i].value) < 0) {
                        set_error(err, errlen, "static label %zu: name must match [a-zA-Z_][a-zA-Z0-9_]*, value < %d bytes",
                                  i + 1, SHIP_LABEL_VALUE_MAX);
                        return -EINVAL;
                }
                for (size_t j = 0; j < i; j++)
                        if (streq(s->label_names[i], s->label_names[j])) {
                                set_error(err, errlen, "static label '%s' given twice", s->label_names[i]);
                                return -EINVAL;
                        }
                s->labels[i] = (ShipLabel) { s->label_names[i], s->label_values[i] };
                s->n_labels++;
        }

        if (s->transport == SHIP_TRANSPORT_NATIVE) {
                HttpcConfig hc = {
                        .url = cfg->url,
                        .ca_file = cfg->ca_file,
                        .client_cert = cfg->client_cert,
                        .client_key = cfg->client_key,
                        .insecure = cfg->insecure,
                        .connect_timeout_usec = MIN(cfg->connect_timeout_usec, cfg->timeout_usec),
                        .timeout_usec = cfg->timeout_usec,
                        .max_response_body = RESPONSE_BODY_MAX,
                };
                r = httpc_new(&s->http, &hc, e, err, errlen);
                if (r < 0)
                        return r;
        }

        if (cfg->rng) {
                s->rng = cfg->rng;
                s->rng_userdata = cfg->rng_userdata;
        } else {
                if (getrandom(&s->rng_state, sizeof s->rng_state, GRND_NONBLOCK) != sizeof s->rng_state)
                        s->rng_state = now_usec_monotonic() ^ ((uint64_t) getpid() << 32);
                s->rng_state |= 1; /* xorshift must not start at 0 */
                s->rng = default_rng;
                s->rng_userdata = &s->rng_state;
        }

        r = sd_event_add_time(e, &s->timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_timer, s);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        if (r < 0)
                return r;
        /* ship what a previous run left in the spool */
        (void) ship_kick(s);

        *ret = TAKE_PTR(s);
        return 0;
}
