/* Prometheus textfile + status.json. See the header for the atomicity contract. */
#include "pullwatch/metrics.h"

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "pullwatch/fileio.h"
#include "pullwatch/util.h"

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif

void metrics_init(MetricsSnapshot *m) {
        *m = (MetricsSnapshot) { .containerd_connected = -1 };
}

void metrics_from_ship_stats(MetricsSnapshot *m, const ShipStats *st) {
        m->records_spooled_total = st->spool.appended;
        m->shipped_total = st->shipped;
        m->retried_total = st->retried;
        m->dropped_total = st->spool.dropped_total;
        m->inventory_replaced_total = st->spool.replaced;
        m->dead_lettered_total = st->dead_lettered;
        m->batches_total = st->batches;
        m->bytes_sent_total = st->bytes_sent;
        m->spool_bytes = st->spool.disk_bytes;
        m->spool_pending_records = st->spool.pending_records;
        m->last_success_usec = st->last_success_usec;
        (void) strcpy_bounded(m->last_error, sizeof m->last_error, st->last_error);
}

int metrics_set_findings(MetricsSnapshot *m, const char *kind, uint64_t count) {
        if (isempty(kind) || strlen(kind) >= METRICS_KIND_NAME_MAX)
                return -EINVAL;
        for (size_t i = 0; i < m->n_findings; i++)
                if (streq_ptr(m->findings[i].kind, kind)) {
                        m->findings[i].count = count;
                        return 0;
                }
        if (m->n_findings >= METRICS_KINDS_MAX)
                return -E2BIG;
        (void) strcpy_bounded(m->findings[m->n_findings].kind, METRICS_KIND_NAME_MAX, kind);
        m->findings[m->n_findings++].count = count;
        return 0;
}

/* Output is bounded by construction: fixed metric set, at most METRICS_KINDS_MAX
 * kinds of bounded names (escaped: at most doubled). */
#define METRICS_TEXT_MAX 8192

typedef struct Out {
        char *p;
        size_t len, size;
        bool overflow;
} Out;

_printf_(2, 3) static void out_printf(Out *o, const char *fmt, ...) {
        va_list ap;
        if (o->overflow)
                return;
        va_start(ap, fmt);
        int n = vsnprintf(o->p + o->len, o->size - o->len, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= o->size - o->len)
                o->overflow = true;
        else
                o->len += (size_t) n;
}

static void metric(Out *o, const char *name, const char *type, const char *help, uint64_t v) {
        out_printf(o, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name, v);
}

/* Label values: backslash, double quote and newline are escaped (exposition format). */
static void escape_label(const char *s, char *dst, size_t size) {
        size_t j = 0;
        for (; *s && j + 2 < size; s++) {
                if (*s == '\\' || *s == '"') {
                        dst[j++] = '\\';
                        dst[j++] = *s;
                } else if (*s == '\n') {
                        dst[j++] = '\\';
                        dst[j++] = 'n';
                } else
                        dst[j++] = *s;
        }
        dst[j] = 0;
}

int metrics_format(const MetricsSnapshot *m, char **ret, size_t *ret_len) {
        _cleanup_free_ char *buf = malloc(METRICS_TEXT_MAX);
        if (!buf)
                return -ENOMEM;
        Out o = { .p = buf, .size = METRICS_TEXT_MAX };

        metric(&o, "pullwatch_records_spooled_total", "counter", "Records appended to the durable spool.",
               m->records_spooled_total);
        metric(&o, "pullwatch_shipped_total", "counter", "Records acknowledged by the central endpoint.",
               m->shipped_total);
        metric(&o, "pullwatch_retried_total", "counter", "Shipping attempts that failed and were retried.",
               m->retried_total);
        metric(&o, "pullwatch_dropped_total", "counter", "Records dropped because the spool was full (oldest first).",
               m->dropped_total);
        metric(&o, "pullwatch_inventory_replaced_total", "counter",
               "Inventory records replaced unsent by a newer inventory (one is pending at a time).",
               m->inventory_replaced_total);
        metric(&o, "pullwatch_dead_lettered_total", "counter",
               "Records the endpoint rejected, moved to the dead-letter file.", m->dead_lettered_total);
        metric(&o, "pullwatch_batches_total", "counter", "Batches acknowledged by the endpoint.", m->batches_total);
        metric(&o, "pullwatch_bytes_sent_total", "counter", "Request body bytes (after gzip) of acknowledged batches.",
               m->bytes_sent_total);
        metric(&o, "pullwatch_spool_bytes", "gauge", "Bytes the spool occupies on disk.", m->spool_bytes);
        metric(&o, "pullwatch_spool_pending_records", "gauge", "Records in the spool not yet acknowledged.",
               m->spool_pending_records);
        out_printf(&o,
                   "# HELP pullwatch_last_success_timestamp_seconds Time of the last acknowledged batch (0 = never).\n"
                   "# TYPE pullwatch_last_success_timestamp_seconds gauge\n"
                   "pullwatch_last_success_timestamp_seconds %" PRIu64 ".%03u\n",
                   (uint64_t) (m->last_success_usec / 1000000ULL), (unsigned) (m->last_success_usec % 1000000ULL / 1000ULL));
        if (m->n_findings > 0) {
                out_printf(&o, "# HELP pullwatch_findings_total Findings raised, by kind.\n"
                               "# TYPE pullwatch_findings_total counter\n");
                for (size_t i = 0; i < m->n_findings && i < METRICS_KINDS_MAX; i++) {
                        char esc[2 * METRICS_KIND_NAME_MAX + 1];
                        escape_label(m->findings[i].kind, esc, sizeof esc);
                        out_printf(&o, "pullwatch_findings_total{kind=\"%s\"} %" PRIu64 "\n", esc,
                                   m->findings[i].count);
                }
        }
        if (m->containerd_connected >= 0)
                metric(&o, "pullwatch_containerd_connected", "gauge",
                       "1 while the agent is subscribed to containerd's event stream.",
                       (uint64_t) (m->containerd_connected > 0));
        if (o.overflow)
                return -ENOBUFS;
        *ret_len = o.len;
        *ret = TAKE_PTR(buf);
        return 0;
}

int metrics_write_textfile(const char *path, const MetricsSnapshot *m) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r;

        if (isempty(path))
                return -EINVAL;
        r = metrics_format(m, &text, &len);
        if (r < 0)
                return r;
        return file_replace_data(path, 0644, FILE_REPLACE_SYNC, text, len);
}

static const struct {
        const char *key;
        size_t offset;
} status_fields[] = {
#define F(x) { #x, offsetof(MetricsSnapshot, x) }
        F(records_spooled_total), F(shipped_total),  F(retried_total),         F(dropped_total),
        F(inventory_replaced_total),
        F(dead_lettered_total),   F(batches_total),  F(bytes_sent_total),      F(spool_bytes),
        F(spool_pending_records), F(last_success_usec), F(updated_usec),
#undef F
};

int metrics_status_to_json(const MetricsSnapshot *m, char **ret) {
        json_t *j = json_object();
        json_t *kinds = json_object();
        int r = -ENOMEM;

        if (!j || !kinds)
                goto out;
        if (json_object_set_new(j, "schema", json_integer(1)) < 0)
                goto out;
        for (size_t i = 0; i < ELEMENTSOF(status_fields); i++) {
                uint64_t v = *(const uint64_t *) ((const char *) m + status_fields[i].offset);
                if (v > (uint64_t) INT64_MAX)
                        v = (uint64_t) INT64_MAX;
                if (json_object_set_new(j, status_fields[i].key, json_integer((json_int_t) v)) < 0)
                        goto out;
        }
        if (json_object_set_new(j, "containerd_connected",
                                m->containerd_connected < 0 ? json_null() : json_boolean(m->containerd_connected)) < 0 ||
            json_object_set_new(j, "last_error", json_string(m->last_error)) < 0)
                goto out;
        for (size_t i = 0; i < m->n_findings && i < METRICS_KINDS_MAX; i++)
                if (json_object_set_new(kinds, m->findings[i].kind,
                                        json_integer((json_int_t) MIN(m->findings[i].count, (uint64_t) INT64_MAX))) < 0)
                        goto out;
        if (json_object_set(j, "findings", kinds) < 0)
                goto out;
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!s)
                goto out;
        *ret = s;
        r = 0;
out:
        json_decref(kinds);
        json_decref(j);
        return r;
}

static int get_u64(json_t *v, uint64_t *ret) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return -EBADMSG;
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

int metrics_status_from_json(const char *s, size_t len, MetricsSnapshot *ret) {
        MetricsSnapshot m;
        int r = -EBADMSG;

        if (len > METRICS_STATUS_MAX)
                return -EFBIG;
        json_t *j = json_loadb(s, len, 0, NULL);
        if (!json_is_object(j))
                goto out;
        metrics_init(&m);
        for (size_t i = 0; i < ELEMENTSOF(status_fields); i++) {
                json_t *v = json_object_get(j, status_fields[i].key);
                if (v && get_u64(v, (uint64_t *) ((char *) &m + status_fields[i].offset)) < 0)
                        goto out;
        }
        json_t *c = json_object_get(j, "containerd_connected");
        if (json_is_boolean(c))
                m.containerd_connected = json_is_true(c);
        else if (c && !json_is_null(c))
                goto out;
        json_t *e = json_object_get(j, "last_error");
        if (e && (!json_is_string(e) || strcpy_bounded(m.last_error, sizeof m.last_error, json_string_value(e)) < 0))
                goto out;
        json_t *kinds = json_object_get(j, "findings");
        if (kinds) {
                const char *k;
                json_t *v;
                if (!json_is_object(kinds))
                        goto out;
                json_object_foreach(kinds, k, v) {
                        uint64_t n;
                        if (get_u64(v, &n) < 0 || metrics_set_findings(&m, k, n) < 0)
                                goto out;
                }
        }
        *ret = m;
        r = 0;
out:
        json_decref(j);
        return r;
}

static int status_path(const char *state_dir, char *buf, size_t size) {
        if (isempty(state_dir))
                return -EINVAL;
        if (snprintf(buf, size, "%s/%s", state_dir, METRICS_STATUS_FILE) >= (int) size)
                return -ENAMETOOLONG;
        return 0;
}

int metrics_status_write(const char *state_dir, const MetricsSnapshot *m) {
        char path[PATH_MAX];
        _cleanup_free_ char *s = NULL;
        int r;

        r = status_path(state_dir, path, sizeof path);
        if (r < 0)
                return r;
        r = metrics_status_to_json(m, &s);
        if (r < 0)
                return r;
        size_t n = strlen(s);
        s[n] = '\n'; /* reuse the NUL's byte: the file ends with a newline */
        return file_replace_data(path, 0644, FILE_REPLACE_SYNC, s, n + 1);
}

int metrics_status_read(const char *state_dir, MetricsSnapshot *ret) {
        char path[PATH_MAX];
        int r;

        r = status_path(state_dir, path, sizeof path);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = open_regular_file(AT_FDCWD, path, O_NOFOLLOW); /* -EINVAL: not a regular file */
        if (fd < 0)
                return fd;
        _cleanup_free_ char *buf = NULL;
        size_t n = 0;
        r = read_fd_bounded(fd, METRICS_STATUS_MAX, &buf, &n);
        if (r < 0)
                return r;
        if (n > METRICS_STATUS_MAX)
                return -EFBIG;
        return metrics_status_from_json(buf, n, ret);
}
