/* Digest pins: see pins.h. Stored as a sorted array of normalised "name:tag" keys,
 * looked up by binary search: the map is built once per (re)load and read on every
 * image event. */
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "pullwatch/pins.h"
#include "pullwatch/util.h"

typedef struct PinEntry {
        char *key; /* normalised domain/path:tag */
        char digest[PW_DIGEST_MAX];
} PinEntry;

struct Pins {
        PinEntry *entries;
        size_t n;
};

#define set_err(err, errlen, ...) ((void) errbuf_fail(err, errlen, 0, __VA_ARGS__))

Pins *pins_free(Pins *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n; i++)
                free(p->entries[i].key);
        free(p->entries);
        free(p);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Pins *, pins_free);

int pins_new_empty(Pins **ret) {
        Pins *p = calloc(1, sizeof(Pins));
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

size_t pins_size(const Pins *p) {
        return p ? p->n : 0;
}

static int entry_cmp(const void *a, const void *b) {
        return strcmp(((const PinEntry *) a)->key, ((const PinEntry *) b)->key);
}

/* Quote a hostile key for an error message: printable ASCII only, bounded. */
static void quote_key(const char *key, char *buf, size_t len) {
        size_t o = 0;
        for (const char *k = key; *k && o + 5 < len; k++) {
                unsigned char c = (unsigned char) *k;
                if (o >= 120) {
                        memcpy(buf + o, "...", 3);
                        o += 3;
                        break;
                }
                buf[o++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char) c : '?';
        }
        buf[o] = 0;
}

int pins_parse(const char *buf, size_t len, Pins **ret, char *err, size_t errlen) {
        if (len > PINS_FILE_MAX) {
                set_err(err, errlen, "pins: %zu bytes exceeds the limit of %u", len, PINS_FILE_MAX);
                return -E2BIG;
        }
        json_error_t jerr;
        _cleanup_(json_decrefp) json_t *root = json_loadb(buf ? buf : "", len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
                set_err(err, errlen, "pins: bad JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
                return -EINVAL;
        }
        if (!json_is_object(root)) {
                set_err(err, errlen, "pins: expected a JSON object mapping reference to digest");
                return -EINVAL;
        }
        size_t n = json_object_size(root);
        if (n > PINS_ENTRIES_MAX) {
                set_err(err, errlen, "pins: %zu entries exceeds the limit of %u", n, PINS_ENTRIES_MAX);
                return -E2BIG;
        }

        _cleanup_(pins_freep) Pins *p = calloc(1, sizeof(Pins));
        if (!p)
                return -ENOMEM;
        if (n > 0) {
                p->entries = calloc(n, sizeof(PinEntry));
                if (!p->entries)
                        return -ENOMEM;
        }

        const char *key;
        json_t *value;
        json_object_foreach(root, key, value) {
                char q[128], why[160], norm[PW_REF_MAX];
                Ref r;
                quote_key(key, q, sizeof(q));
                if (ref_parse(key, &r, why, sizeof(why)) < 0) {
                        set_err(err, errlen, "pins: bad reference \"%s\": %s", q, why);
                        return -EINVAL;
                }
                if (r.is_image_id || r.digest[0]) {
                        set_err(err, errlen, "pins: key \"%s\" must be a name:tag without a digest", q);
                        return -EINVAL;
                }
                const char *d = json_string_value(value);
                if (!d || !ref_digest_is_valid(d)) {
                        set_err(err, errlen, "pins: value of \"%s\" is not a digest (sha256:<64 lowercase hex>)", q);
                        return -EINVAL;
                }
                if (ref_format_tagged(&r, norm, sizeof(norm)) < 0) {
                        set_err(err, errlen, "pins: reference \"%s\" too long", q);
                        return -EINVAL;
                }
                PinEntry *e = &p->entries[p->n];
                e->key = strdup(norm);
                if (!e->key)
                        return -ENOMEM;
                strcpy_bounded(e->digest, sizeof(e->digest), d); /* valid digests fit */
                p->n++;
        }

        if (p->n > 1)
                qsort(p->entries, p->n, sizeof(PinEntry), entry_cmp);
        /* Two spellings of one reference: fine if they agree, an error if they do not. */
        size_t w = 0;
        for (size_t i = 0; i < p->n; i++) {
                if (w > 0 && streq_ptr(p->entries[w - 1].key, p->entries[i].key)) {
                        if (!streq_ptr(p->entries[w - 1].digest, p->entries[i].digest)) {
                                char q[128];
                                quote_key(p->entries[i].key, q, sizeof(q));
                                set_err(err, errlen, "pins: conflicting digests for \"%s\"", q);
                                return -EINVAL;
                        }
                        free(p->entries[i].key);
                        p->entries[i].key = NULL;
                        continue;
                }
                p->entries[w++] = p->entries[i];
        }
        p->n = w;

        *ret = TAKE_PTR(p);
        return 0;
}

int pins_load(const char *path, Pins **ret, char *err, size_t errlen) {
        _cleanup_close_ int fd = open_regular_file(AT_FDCWD, path, 0);
        if (fd < 0) {
                set_err(err, errlen, "%s: %s", path, fd == -EINVAL ? "not a regular file" : strerror(-fd));
                return fd;
        }
        struct stat st;
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                set_err(err, errlen, "%s: %s", path, strerror(-r));
                return r;
        }
        if ((uint64_t) st.st_size > PINS_FILE_MAX) {
                set_err(err, errlen, "%s: %llu bytes exceeds the limit of %u", path,
                        (unsigned long long) st.st_size, PINS_FILE_MAX);
                return -E2BIG;
        }
        /* Read up to one byte more than allowed: the file may grow between fstat and read. */
        _cleanup_free_ char *buf = NULL;
        size_t off = 0;
        int r = read_fd_bounded(fd, PINS_FILE_MAX, &buf, &off);
        if (r < 0) {
                set_err(err, errlen, "%s: %s", path, strerror(-r));
                return r;
        }
        char why[256] = "";
        r = pins_parse(buf, off, ret, why, sizeof(why));
        if (r < 0)
                set_err(err, errlen, "%s: %s", path, why);
        return r;
}

static const char *lookup_key(const Pins *p, const char *key) {
        PinEntry needle = { .key = (char *) key };
        const PinEntry *e = bsearch(&needle, p->entries, p->n, sizeof(PinEntry), entry_cmp);
        return e ? e->digest : NULL;
}

const char *pins_lookup_ref(const Pins *p, const Ref *r) {
        char key[PW_REF_MAX];
        if (!p || p->n == 0 || !r || ref_format_tagged(r, key, sizeof(key)) < 0)
                return NULL;
        return lookup_key(p, key);
}

const char *pins_lookup(const Pins *p, const char *ref) {
        Ref r;
        if (!p || p->n == 0 || ref_parse(ref, &r, NULL, 0) < 0)
                return NULL;
        return pins_lookup_ref(p, &r);
}
