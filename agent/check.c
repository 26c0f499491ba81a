/* pullwatch check: references from arguments, stdin or manifests, judged offline; see check.h. */
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>

#include "pullwatch/check.h"
#include "pullwatch/config.h"
#include "pullwatch/pins.h"
#include "pullwatch/ref.h"
#include "pullwatch/util.h"

/* Exit statuses, as scan's. */
enum { EXIT_CLEAN = 0, EXIT_FINDINGS = 1, EXIT_ERROR = 2 };

#define SARIF_SCHEMA "https://json.schemastore.org/sarif-2.1.0.json"
#define PW_INFORMATION_URI "https://github.com/pullwatch/pullwatch"

static const char *const format_names[_CHECK_FORMAT_MAX] = {
        [CHECK_FORMAT_TEXT] = "text",
        [CHECK_FORMAT_JSON] = "json",
        [CHECK_FORMAT_SARIF] = "sarif",
};

CheckFormat check_format_from_string(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(format_names); i++)
                if (streq_ptr(s, format_names[i]))
                        return (CheckFormat) i;
        return _CHECK_FORMAT_INVALID;
}

/* The escaped form of c into e (up to 4 bytes); returns its length. */
static size_t escape_byte(unsigned char c, char e[static 4]) {
        if (c == '"' || c == '\\') {
                e[0] = '\\';
                e[1] = (char) c;
                return 2;
        }
        if (c == '\t' || c == '\n' || c == '\r') {
                e[0] = '\\';
                e[1] = c == '\t' ? 't' : c == '\n' ? 'n' : 'r';
                return 2;
        }
        if (c < 0x20 || c > 0x7e) {
                e[0] = '\\';
                e[1] = 'x';
                e[2] = hexchar(c >> 4);
                e[3] = hexchar(c);
                return 4;
        }
        e[0] = (char) c;
        return 1;
}

void check_escape(const char *s, size_t len, char *buf, size_t size) {
        char e[4];
        size_t total = 0, o = 0;
        if (size == 0)
                return;
        for (size_t i = 0; i < len; i++)
                total += escape_byte((unsigned char) s[i], e);
        /* everything if it fits, else as much as fits before "..." (never half an escape) */
        size_t room = total < size ? total : size >= 4 ? size - 4 : 0;
        for (size_t i = 0; i < len; i++) {
                size_t k = escape_byte((unsigned char) s[i], e);
                if (o + k > room)
                        break;
                memcpy(buf + o, e, k);
                o += k;
        }
        if (total >= size && size >= 4) {
                memcpy(buf + o, "...", 3);
                o += 3;
        }
        buf[o] = 0;
}

/* ---- manifest lines ---- */

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}


typedef struct Out {
        char *buf;
        size_t size, n;
        bool overflow;
} Out;

static void out_byte(Out *o, unsigned char c) {
        if (o->n + 1 >= o->size) {
                o->overflow = true;
                return;
        }
        o->buf[o->n++] = (char) c;
}

static void out_utf8(Out *o, unsigned long cp) {
        if (cp < 0x80)
                out_byte(o, (unsigned char) cp);
        else if (cp < 0x800) {
                out_byte(o, (unsigned char) (0xc0 | (cp >> 6)));
                out_byte(o, (unsigned char) (0x80 | (cp & 0x3f)));
        } else {
                out_byte(o, (unsigned char) (0xe0 | (cp >> 12)));
                out_byte(o, (unsigned char) (0x80 | ((cp >> 6) & 0x3f)));
                out_byte(o, (unsigned char) (0x80 | (cp & 0x3f)));
        }
}

/* Only a comment may follow a quoted scalar. */
static bool rest_is_comment(const char *p, const char *end) {
        while (p < end && is_blank(*p))
                p++;
        return p == end || *p == '#';
}

static int read_double_quoted(const char *p, const char *end, Out *o, char *err, size_t errlen) {
        static const struct {
                char esc, byte;
        } simple[] = { { '\\', '\\' }, { '"', '"' },   { '/', '/' },    { 't', '\t' }, { 'n', '\n' },
                       { 'r', '\r' },  { '0', '\0' },  { 'a', '\a' },   { 'b', '\b' }, { 'e', 0x1b },
                       { 'f', '\f' },  { 'v', '\v' },  { ' ', ' ' },    { '\t', '\t' } };
        for (; p < end; p++) {
                if (*p == '"')
                        return rest_is_comment(p + 1, end) ? 1
                                                           : errbuf_fail(err, errlen, -EINVAL,
                                                                         "text after the closing quote of image:");
                if (*p != '\\') {
                        out_byte(o, (unsigned char) *p);
                        continue;
                }
                if (++p == end)
                        break;
                bool done = false;
                for (size_t i = 0; i < ELEMENTSOF(simple) && !done; i++)
                        if (*p == simple[i].esc) {
                                out_byte(o, (unsigned char) simple[i].byte);
                                done = true;
                        }
                if (done)
                        continue;
                size_t digits = *p == 'x' ? 2 : *p == 'u' ? 4 : 0;
                if (digits == 0 || (size_t) (end - p - 1) < digits)
                        return errbuf_fail(err, errlen, -EINVAL, "bad escape in the quoted value of image:");
                unsigned long cp = 0;
                for (size_t i = 1; i <= digits; i++) {
                        int v = unhexchar(p[i]);
                        if (v < 0)
                                return errbuf_fail(err, errlen, -EINVAL, "bad escape in the quoted value of image:");
                        cp = cp * 16 + (unsigned long) v;
                }
                if (digits == 2)
                        out_byte(o, (unsigned char) cp);
                else
                        out_utf8(o, cp);
                p += digits;
        }
        return errbuf_fail(err, errlen, -EINVAL, "unterminated quote in the value of image:");
}

static int read_single_quoted(const char *p, const char *end, Out *o, char *err, size_t errlen) {
        for (; p < end; p++) {
                if (*p != '\'') {
                        out_byte(o, (unsigned char) *p);
                        continue;
                }
                if (p + 1 < end && p[1] == '\'') {
                        out_byte(o, '\'');
                        p++;
                        continue;
                }
                return rest_is_comment(p + 1, end)
                               ? 1
                               : errbuf_fail(err, errlen, -EINVAL, "text after the closing quote of image:");
        }
        return errbuf_fail(err, errlen, -EINVAL, "unterminated quote in the value of image:");
}

int check_manifest_image(const char *line, size_t len, char *buf, size_t size, size_t *ret_len, char *err,
                         size_t errlen) {
        const char *p = line, *end = line + len;
        if (size == 0)
                return -ENAMETOOLONG;

        while (p < end && is_blank(*p))
                p++;
        /* list markers: "- image: x", "- - image: x" */
        while (p < end && *p == '-' && (p + 1 == end || is_blank(p[1]))) {
                p++;
                while (p < end && is_blank(*p))
                        p++;
        }
        static const char *const keys[] = { "image", "\"image\"", "'image'" };
        size_t klen = 0;
        for (size_t i = 0; i < ELEMENTSOF(keys) && !klen; i++) {
                size_t n = strlen(keys[i]);
                if ((size_t) (end - p) >= n && memcmp(p, keys[i], n) == 0)
                        klen = n;
        }
        if (!klen)
                return 0;
        p += klen;
        while (p < end && is_blank(*p))
                p++;
        if (p == end || *p != ':')
                return 0;
        p++;
        if (p < end && !is_blank(*p))
                return 0; /* "image:x" is no YAML mapping entry */
        while (p < end && is_blank(*p))
                p++;
        if (p == end || *p == '#' || *p == '{' || *p == '[')
                return 0; /* a nested mapping or sequence, not a reference */
        if (*p == '|' || *p == '>')
                return errbuf_fail(err, errlen, -EINVAL, "block scalar as the value of image: is not supported");
        if (*p == '*' || *p == '&' || *p == '!')
                return errbuf_fail(err, errlen, -EINVAL,
                                   "YAML anchors, aliases and tags in the value of image: are not supported");

        Out o = { .buf = buf, .size = size };
        int r;
        if (*p == '"')
                r = read_double_quoted(p + 1, end, &o, err, errlen);
        else if (*p == '\'')
                r = read_single_quoted(p + 1, end, &o, err, errlen);
        else {
                /* a plain scalar ends at " #" (a comment) or the end of the line */
                const char *q = p;
                while (q < end && !(*q == '#' && is_blank(q[-1])))
                        q++;
                while (q > p && is_blank(q[-1]))
                        q--;
                for (; p < q; p++)
                        out_byte(&o, (unsigned char) *p);
                r = 1;
        }
        if (r < 0)
                return r;
        if (o.overflow)
                return errbuf_fail(err, errlen, -ENAMETOOLONG, "value of image: too long (limit %d bytes)",
                                   CHECK_VALUE_MAX - 1);
        buf[o.n] = 0;
        *ret_len = o.n;
        return 1;
}

/* ---- encoders ---- */

static const struct {
        const char *id, *text, *help;
} rules[] = {
        { "latest_tag", "The reference uses the tag latest, written or implied",
          "latest moves with every push: nodes drift apart and a rollback cannot name what ran. Deploy a "
          "version or commit tag, or the digest." },
        { "mutable_tag", "The reference uses a tag the policy treats as mutable",
          "Branch-like tags (main, develop, nightly, ...) are re-pushed by design. Tag by commit SHA or "
          "semantic version, or deploy by digest." },
        { "tag_moved", "A tag this node had seen at one digest now resolves to another",
          "Make tags immutable in the registry; deploy by digest." },
        { "digest_mismatch", "The digest differs from the one pinned for this tag",
          "The reference carries a digest that differs from the pins file's entry for its name:tag. "
          "Compare the registry's history of the tag with CI's output." },
        { "revision_mismatch", "A commit-SHA tag disagrees with the image's revision label",
          "Set org.opencontainers.image.revision from the commit CI builds, and tag with the same SHA." },
        { "untraceable", "The image carries no revision label",
          "Add LABEL org.opencontainers.image.revision=$GIT_SHA in the build." },
        { CHECK_INVALID_REFERENCE, "The text is not a valid image reference",
          "An image reference is [registry/]repository[:tag][@digest] as distribution/reference defines "
          "it: lowercase repository path, tag of [A-Za-z0-9_.-] up to 128 characters, sha256/sha384/sha512 "
          "digest." },
};

static int rule_index(const char *id) {
        for (size_t i = 0; i < ELEMENTSOF(rules); i++)
                if (streq_ptr(rules[i].id, id))
                        return (int) i;
        return -1;
}

static const char *sarif_level(Severity s) {
        return s >= SEVERITY_HIGH ? "error" : s == SEVERITY_MEDIUM ? "warning" : "note";
}

static void error_message(const CheckItem *it, char *buf, size_t size) {
        char esc[CHECK_VALUE_MAX];
        check_escape(it->input, it->input_len, esc, sizeof esc);
        snprintf(buf, size, "invalid reference \"%s\": %s", esc, it->error);
}

/* set k to a new string (jansson refuses invalid UTF-8; every string here is ASCII or
 * was checked by the grammar, so a failure is an allocation failure) */
static int set_str(json_t *o, const char *k, const char *v) {
        return json_object_set_new(o, k, json_string(v));
}

static int set_source(json_t *o, const CheckItem *it) {
        int r = 0;
        if (it->uri)
                r |= set_str(o, "file", it->uri);
        if (it->line)
                r |= json_object_set_new(o, "line", json_integer((json_int_t) it->line));
        return r;
}

int check_to_json(const CheckItem *items, size_t n, json_t **ret) {
        json_t *a = json_array();
        if (!a)
                return -ENOMEM;
        int r = 0;
        for (size_t i = 0; i < n && r == 0; i++) {
                const CheckItem *it = &items[i];
                char esc[CHECK_VALUE_MAX], msg[CHECK_VALUE_MAX + CHECK_ERROR_MAX + 32];
                check_escape(it->input, it->input_len, esc, sizeof esc);
                if (it->error[0]) {
                        json_t *o = json_object();
                        error_message(it, msg, sizeof msg);
                        if (!o || set_str(o, "kind", CHECK_INVALID_REFERENCE) < 0 || set_str(o, "severity", "error") < 0 ||
                            set_str(o, "reference", esc) < 0 || set_str(o, "message", msg) < 0 ||
                            set_str(o, "error", it->error) < 0 || set_source(o, it) < 0 ||
                            json_array_append_new(a, o) < 0)
                                r = -ENOMEM;
                        continue;
                }
                for (size_t j = 0; j < it->n_findings && r == 0; j++) {
                        json_t *o = NULL;
                        r = finding_to_json(&it->findings[j], &o);
                        if (r < 0)
                                break;
                        if (set_str(o, "reference", esc) < 0 || set_source(o, it) < 0 || json_array_append_new(a, o) < 0)
                                r = -ENOMEM;
                }
        }
        if (r < 0) {
                json_decref(a);
                return r;
        }
        *ret = a;
        return 0;
}

/* RFC 3986 percent-encoding of a path, keeping '/' and the unreserved characters. */
static void uri_encode(const char *s, char *buf, size_t size) {
        static const char hex[] = "0123456789ABCDEF";
        size_t o = 0;
        for (; *s && o + 4 < size; s++) {
                unsigned char c = (unsigned char) *s;
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._~/", c))
                        buf[o++] = (char) c;
                else {
                        buf[o++] = '%';
                        buf[o++] = hex[c >> 4];
                        buf[o++] = hex[c & 15];
                }
        }
        buf[o] = 0;
}

static json_t *sarif_result(const CheckItem *it, const char *rule, const char *level, const char *message) {
        int idx = rule_index(rule);
        json_t *res = json_pack("{s:s, s:i, s:s, s:{s:s}}", "ruleId", rule, "ruleIndex", idx, "level", level, "message",
                                "text", message);
        if (!res)
                return NULL;
        if (it->uri && !streq_ptr(it->uri, "-") && it->line > 0) {
                char uri[PATH_MAX * 3 + 1];
                uri_encode(it->uri, uri, sizeof uri);
                json_t *loc = json_pack("[{s:{s:{s:s}, s:{s:I}}}]", "physicalLocation", "artifactLocation", "uri", uri,
                                        "region", "startLine", (json_int_t) it->line);
                if (!loc || json_object_set_new(res, "locations", loc) < 0) {
                        json_decref(res);
                        return NULL;
                }
        }
        return res;
}

int check_to_sarif(const CheckItem *items, size_t n, json_t **ret) {
        json_t *rule_array = json_array(), *results = json_array();
        if (!rule_array || !results)
                goto nomem;
        for (size_t i = 0; i < ELEMENTSOF(rules); i++) {
                json_t *rule = json_pack("{s:s, s:s, s:{s:s}, s:{s:s}}", "id", rules[i].id, "name", rules[i].id,
                                         "shortDescription", "text", rules[i].text, "help", "text", rules[i].help);
                if (!rule || json_array_append_new(rule_array, rule) < 0)
                        goto nomem;
        }
        for (size_t i = 0; i < n; i++) {
                const CheckItem *it = &items[i];
                if (it->error[0]) {
                        char msg[CHECK_VALUE_MAX + CHECK_ERROR_MAX + 32];
                        error_message(it, msg, sizeof msg);
                        json_t *res = sarif_result(it, CHECK_INVALID_REFERENCE, "error", msg);
                        if (!res || json_array_append_new(results, res) < 0)
                                goto nomem;
                        continue;
                }
                for (size_t j = 0; j < it->n_findings; j++) {
                        const Finding *f = &it->findings[j];
                        const char *kind = finding_kind_to_string(f->kind);
                        if (!kind || rule_index(kind) < 0)
                                continue; /* a pull record is no result */
                        json_t *res = sarif_result(it, kind, sarif_level(f->severity), f->message);
                        if (!res || json_array_append_new(results, res) < 0)
                                goto nomem;
                        json_t *props = json_pack("{s:s, s:s}", "severity", severity_to_string(f->severity),
                                                  "reference", f->image.ref);
                        if (!props || json_object_set_new(res, "properties", props) < 0)
                                goto nomem;
                }
        }
        json_t *doc = json_pack("{s:s, s:s, s:[{s:{s:{s:s, s:s, s:s, s:o}}, s:o}]}", "$schema", SARIF_SCHEMA, "version",
                                "2.1.0", "runs", "tool", "driver", "name", "pullwatch", "version", PULLWATCH_VERSION,
                                "informationUri", PW_INFORMATION_URI, "rules", rule_array, "results", results);
        if (!doc)
                return -ENOMEM; /* "o" stole both arrays, even on failure */
        *ret = doc;
        return 0;
nomem:
        json_decref(rule_array);
        json_decref(results);
        return -ENOMEM;
}

/* ---- the command ---- */

typedef struct Run {
        const Config *config;
        const Policy *policy;
        const Pins *pins;
        CheckItem *items;
        size_t n, alloc;
        bool failed;   /* an input could not be read at all */
        bool too_many; /* CHECK_REFS_MAX reached */
} Run;

static void run_done(Run *run) {
        for (size_t i = 0; i < run->n; i++) {
                free(run->items[i].input);
                free(run->items[i].findings);
        }
        free(run->items);
}

_printf_(2, 3) static void item_fail(CheckItem *it, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(it->error, sizeof it->error, fmt, ap);
        va_end(ap);
}

static void judge(Run *run, CheckItem *it) {
        char why[CHECK_ERROR_MAX] = "";
        Ref r;
        if (it->error[0])
                return;
        if (memchr(it->input, 0, it->input_len)) {
                item_fail(it, "contains a NUL byte");
                return;
        }
        if (ref_parse(it->input, &r, why, sizeof why) < 0) {
                item_fail(it, "%s", why[0] ? why : "malformed");
                return;
        }
        Finding out[POLICY_FINDINGS_MAX];
        size_t n = 0;
        int k = policy_check_reference(run->policy, it->input, run->pins, out, ELEMENTSOF(out), &n, why, sizeof why);
        if (k < 0) {
                item_fail(it, "%s", why[0] ? why : strerror(-k));
                return;
        }
        if (n == 0)
                return;
        /* only what was found is kept: most references have nothing to say */
        it->findings = calloc(n, sizeof(Finding));
        if (!it->findings) {
                item_fail(it, "out of memory");
                return;
        }
        memcpy(it->findings, out, n * sizeof(Finding));
        it->n_findings = n;
        for (size_t i = 0; i < it->n_findings; i++) {
                Finding *f = &it->findings[i];
                char key[PW_REF_MAX + 64];
                /* the same reference judged again gives the same id: CI output diffs cleanly */
                snprintf(key, sizeof key, "check\n%s\n%s", f->image.ref, finding_kind_to_string(f->kind));
                finding_id_from_key(key, f->id);
                f->time_usec = now_usec_realtime();
                strcpy_bounded(f->node, sizeof f->node, run->config->node);
                finding_format_message(f);
        }
}

/* Add an item for input (len bytes); error, if not NULL, makes it invalid already. */
static int add_item(Run *run, const char *uri, size_t line, const char *input, size_t len, const char *error) {
        if (run->n >= CHECK_REFS_MAX) {
                if (!run->too_many)
                        fprintf(stderr, "pullwatch: check: more than %d references, the rest not judged\n",
                                CHECK_REFS_MAX);
                run->too_many = run->failed = true;
                return 0;
        }
        if (greedy_realloc((void **) &run->items, &run->alloc, run->n + 1, sizeof(CheckItem), 16) < 0)
                return -ENOMEM;
        CheckItem *it = &run->items[run->n];
        *it = (CheckItem) { .uri = uri, .line = line, .input_len = len };
        it->input = malloc(len + 1);
        if (!it->input)
                return -ENOMEM;
        memcpy(it->input, input, len);
        it->input[len] = 0;
        if (error)
                item_fail(it, "%s", error);
        run->n++;
        judge(run, it);
        return 0;
}

/* Does any line of the text hold a YAML image: entry? Then it is a manifest. */
static bool looks_like_manifest(const char *text, size_t len) {
        char value[CHECK_VALUE_MAX];
        size_t vlen;
        for (const char *p = text, *end = text + len; p < end;) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);
                if (check_manifest_image(p, n, value, sizeof value, &vlen, NULL, 0) != 0)
                        return true;
                p += n + 1;
        }
        return false;
}

/* One input (a file or stdin): references one per line, or a manifest's image: values. */
static int add_text(Run *run, const char *uri, const char *text, size_t len) {
        bool manifest = looks_like_manifest(text, len);
        size_t lineno = 0;
        for (const char *p = text, *end = text + len; p < end;) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);
                const char *line = p;
                p += n + 1;
                lineno++;
                while (n > 0 && line[n - 1] == '\r')
                        n--;
                int r;
                if (memchr(line, 0, n)) {
                        /* a NUL byte would hide the rest of the line from the grammar */
                        r = add_item(run, uri, lineno, line, n < CHECK_VALUE_MAX ? n : CHECK_VALUE_MAX,
                                     "contains a NUL byte");
                        if (r < 0)
                                return r;
                        continue;
                }
                if (manifest) {
                        char value[CHECK_VALUE_MAX], why[CHECK_ERROR_MAX] = "";
                        size_t vlen = 0;
                        int k = check_manifest_image(line, n, value, sizeof value, &vlen, why, sizeof why);
                        if (k == 0)
                                continue;
                        if (k < 0) {
                                r = add_item(run, uri, lineno, line, n < CHECK_VALUE_MAX ? n : CHECK_VALUE_MAX, why);
                        } else
                                r = add_item(run, uri, lineno, value, vlen, NULL);
                } else {
                        if (n == 0 || line[0] == '#')
                                continue;
                        if (n >= CHECK_VALUE_MAX)
                                r = add_item(run, uri, lineno, line, CHECK_VALUE_MAX, "line too long");
                        else
                                r = add_item(run, uri, lineno, line, n, NULL);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

static int add_fd(Run *run, const char *uri, const char *shown, int fd) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = read_fd_bounded(fd, CHECK_INPUT_MAX, &text, &len);
        if (r < 0) {
                fprintf(stderr, "pullwatch: check: cannot read %s: %s\n", shown, strerror(-r));
                run->failed = true;
                return 0;
        }
        if (len > CHECK_INPUT_MAX) {
                fprintf(stderr, "pullwatch: check: %s is larger than %d MiB, not read\n", shown,
                        CHECK_INPUT_MAX / (1024 * 1024));
                run->failed = true;
                return 0;
        }
        return add_text(run, uri, text, len);
}

static int add_file(Run *run, const char *path) {
        char shown[CHECK_VALUE_MAX];
        check_escape(path, strlen(path), shown, sizeof shown);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                fprintf(stderr, "pullwatch: check: cannot open \"%s\": %s\n", shown, strerror(errno));
                run->failed = true;
                return 0;
        }
        return add_fd(run, path, shown, fd);
}

/* "file:12: " for a reference read from a file or stdin, "" for an argument. */
static void where(const CheckItem *it, char *buf, size_t size) {
        char esc[PATH_MAX];
        if (!it->uri) {
                buf[0] = 0;
                return;
        }
        check_escape(streq_ptr(it->uri, "-") ? "<stdin>" : it->uri, strlen(streq_ptr(it->uri, "-") ? "<stdin>" : it->uri),
                     esc, sizeof esc);
        snprintf(buf, size, "%s:%zu: ", esc, it->line);
}

static void report_errors(const Run *run) {
        for (size_t i = 0; i < run->n; i++) {
                const CheckItem *it = &run->items[i];
                char loc[PATH_MAX + 32], msg[CHECK_VALUE_MAX + CHECK_ERROR_MAX + 32];
                if (!it->error[0])
                        continue;
                where(it, loc, sizeof loc);
                error_message(it, msg, sizeof msg);
                fprintf(stderr, "pullwatch: check: %s%s\n", loc, msg);
        }
}

static void write_text(const Run *run, FILE *out) {
        for (size_t i = 0; i < run->n; i++) {
                const CheckItem *it = &run->items[i];
                char loc[PATH_MAX + 32];
                if (it->error[0])
                        continue;
                /* stdin's lines look as they always did; a file's carry file:line */
                if (it->uri && !streq_ptr(it->uri, "-"))
                        where(it, loc, sizeof loc);
                else
                        loc[0] = 0;
                if (it->n_findings == 0)
                        fprintf(out, "%sok    %s\n", loc, it->input);
                for (size_t j = 0; j < it->n_findings; j++)
                        fprintf(out, "%s%-6s %s: %s\n", loc, severity_to_string(it->findings[j].severity),
                                finding_kind_to_string(it->findings[j].kind), it->findings[j].message);
        }
}

/* Take check's own flags (--format, --file) out of argv before the config table sees it. */
static int take_flags(int *argc, char **argv, CheckFormat *ret_format, char ***ret_files, size_t *ret_nfiles) {
        int out = 0;
        for (int i = 0; i < *argc; i++) {
                const char *a = argv[i], *v = NULL, *flag = NULL;
                if (streq_ptr(a, "--")) {
                        while (i < *argc)
                                argv[out++] = argv[i++];
                        break;
                }
                if (streq_ptr(a, "--format") || startswith(a, "--format="))
                        flag = "--format";
                else if (streq_ptr(a, "--file") || startswith(a, "--file="))
                        flag = "--file";
                if (!flag) {
                        argv[out++] = argv[i];
                        continue;
                }
                size_t fl = strlen(flag);
                if (a[fl] == '=')
                        v = a + fl + 1;
                else if (i + 1 < *argc)
                        v = argv[++i];
                else {
                        fprintf(stderr, "pullwatch: check: %s needs a value\n", flag);
                        return -EINVAL;
                }
                if (streq_ptr(flag, "--format")) {
                        CheckFormat f = check_format_from_string(v);
                        if (f < 0) {
                                char esc[256];
                                check_escape(v, strlen(v), esc, sizeof esc);
                                fprintf(stderr, "pullwatch: check: --format must be text, json or sarif, not \"%s\"\n", esc);
                                return -EINVAL;
                        }
                        *ret_format = f;
                } else {
                        /* the strings stay in argv; *ret_files only points at them */
                        void *p = realloc(*ret_files, (*ret_nfiles + 1) * sizeof(char *));
                        if (!p)
                                return -ENOMEM;
                        *ret_files = p;
                        (*ret_files)[(*ret_nfiles)++] = (char *) v;
                }
        }
        *argc = out;
        return 0;
}

static int write_json_doc(json_t *doc, FILE *out) {
        int r = json_dumpf(doc, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(doc);
        if (r < 0)
                return -EIO;
        fputc('\n', out);
        return 0;
}

int check_main(int argc, char **argv) {
        CheckFormat format = CHECK_FORMAT_TEXT;
        _cleanup_free_ char **files = NULL;
        size_t nfiles = 0;
        if (take_flags(&argc, argv, &format, &files, &nfiles) < 0)
                return EXIT_ERROR;

        _cleanup_(config_done) Config c = { 0 };
        size_t npos = 0;
        char err[512] = "";
        int r = config_load_all(&c, argc, argv, &npos, NULL, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "pullwatch: %s\n", err[0] ? err : strerror(-r));
                return EXIT_ERROR;
        }
        if (npos == 0 && nfiles == 0) {
                fprintf(stderr, "pullwatch: check needs references, - to read them from stdin, or --file PATH\n");
                return EXIT_ERROR;
        }
        Policy *p = NULL;
        Pins *pins = NULL;
        r = policy_new_from_config(&c, &p, err, sizeof err);
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

        Run run = { .config = &c, .policy = p, .pins = pins };
        bool stdin_read = false;
        for (size_t i = 0; i < npos && r >= 0; i++) {
                if (!streq_ptr(argv[i], "-"))
                        r = add_item(&run, NULL, 0, argv[i], strlen(argv[i]), NULL);
                else if (!stdin_read) {
                        stdin_read = true;
                        r = add_fd(&run, "-", "stdin", STDIN_FILENO);
                }
        }
        for (size_t i = 0; i < nfiles && r >= 0; i++)
                r = streq_ptr(files[i], "-") ? add_fd(&run, "-", "stdin", STDIN_FILENO) : add_file(&run, files[i]);
        if (r < 0) {
                fprintf(stderr, "pullwatch: check: %s\n", strerror(-r));
                run.failed = true;
        }

        report_errors(&run);
        json_t *doc = NULL;
        if (format == CHECK_FORMAT_TEXT)
                write_text(&run, stdout);
        else if ((format == CHECK_FORMAT_JSON ? check_to_json(run.items, run.n, &doc)
                                              : check_to_sarif(run.items, run.n, &doc)) < 0 ||
                 write_json_doc(doc, stdout) < 0) {
                fprintf(stderr, "pullwatch: check: cannot encode the %s output\n", format_names[format]);
                run.failed = true;
        }
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "pullwatch: check: cannot write the output: %s\n", strerror(errno));
                run.failed = true;
        }

        bool invalid = run.failed, found = false;
        for (size_t i = 0; i < run.n; i++) {
                invalid |= run.items[i].error[0] != 0;
                found |= run.items[i].n_findings > 0;
        }
        run_done(&run);
        pins_free(pins);
        policy_free(p);
        return invalid ? EXIT_ERROR : found ? EXIT_FINDINGS : EXIT_CLEAN;
}
