/* The finding model's pure encodings: JSON (stdout, spool, endpoint) and journald fields. */
#include "pullwatch/finding.h"

#include <inttypes.h>
#include <time.h>

#include "pullwatch/timefmt.h"
#include "pullwatch/util.h"

static const char *const kind_table[_FINDING_KIND_MAX] = {
        [FINDING_PULL] = "pull",
        [FINDING_LATEST_TAG] = "latest_tag",
        [FINDING_MUTABLE_TAG] = "mutable_tag",
        [FINDING_TAG_MOVED] = "tag_moved",
        [FINDING_DIGEST_MISMATCH] = "digest_mismatch",
        [FINDING_REVISION_MISMATCH] = "revision_mismatch",
        [FINDING_UNTRACEABLE] = "untraceable",
};

/* One fixed MESSAGE_ID per kind; explained in packaging/pullwatch.catalog. Never change them:
 * dashboards and alerts select on them. */
static const char *const message_id_table[_FINDING_KIND_MAX] = {
        [FINDING_PULL] = "7d5f9ca88699450392e05c6657d40487",
        [FINDING_LATEST_TAG] = "dfb3dbaf166e412ebb19028f9c104543",
        [FINDING_MUTABLE_TAG] = "eeef71e8dcef455990c8e8d151d46324",
        [FINDING_TAG_MOVED] = "a3ef8978ee60448f9986f32130ed37aa",
        [FINDING_DIGEST_MISMATCH] = "fe52d609d7b04974a92d68d958620e42",
        [FINDING_REVISION_MISMATCH] = "b1b3c132b8564fefb56e4bca27dd5fa9",
        [FINDING_UNTRACEABLE] = "bd6b1be18c84422da1476fa8a7b0820d",
};

static const char *const severity_table[_SEVERITY_MAX] = {
        [SEVERITY_INFO] = "info",
        [SEVERITY_LOW] = "low",
        [SEVERITY_MEDIUM] = "medium",
        [SEVERITY_HIGH] = "high",
        [SEVERITY_CRITICAL] = "critical",
};

const char *finding_kind_to_string(FindingKind k) {
        if (k < 0 || k >= _FINDING_KIND_MAX)
                return NULL;
        return kind_table[k];
}

FindingKind finding_kind_from_string(const char *s) {
        if (!s)
                return _FINDING_KIND_INVALID;
        for (int i = 0; i < _FINDING_KIND_MAX; i++)
                if (streq_ptr(kind_table[i], s))
                        return (FindingKind) i;
        return _FINDING_KIND_INVALID;
}

const char *severity_to_string(Severity s) {
        if (s < 0 || s >= _SEVERITY_MAX)
                return NULL;
        return severity_table[s];
}

Severity severity_from_string(const char *s) {
        if (!s)
                return _SEVERITY_INVALID;
        for (int i = 0; i < _SEVERITY_MAX; i++)
                if (streq_ptr(severity_table[i], s))
                        return (Severity) i;
        return _SEVERITY_INVALID;
}

const char *finding_message_id(FindingKind k) {
        if (k < 0 || k >= _FINDING_KIND_MAX)
                return NULL;
        return message_id_table[k];
}

int finding_priority(const Finding *f) {
        return f->kind == FINDING_PULL ? 6 : 4;
}

static uint64_t mix64(uint64_t z) {
        /* splitmix64's finaliser: spreads FNV's weak low bits over the whole word */
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

void finding_id_from_key(const char *key, char ret[PW_ID_MAX]) {
        uint64_t a = 0xcbf29ce484222325ULL, b = 0x84222325cbf29ce4ULL;
        for (const unsigned char *p = (const unsigned char *) key; *p; p++) {
                a = (a ^ *p) * 0x100000001b3ULL;
                b = (b ^ *p) * 0x00000100000001b3ULL + 0x9e3779b97f4a7c15ULL;
        }
        u64_to_hex16(ret, mix64(a));
        u64_to_hex16(ret + 16, mix64(b ^ a));
        ret[32] = 0;
}

static const char *short_digest(const char *d, char *buf, size_t size) {
        /* "sha256:0123456789ab" is enough for a human; the full digest is in its own field */
        const char *colon = strchr(d, ':');
        size_t keep = colon ? (size_t) (colon - d) + 1 + 12 : 19;
        SBuf b = sbuf_init(buf, size); /* as "%.*s" */
        sbuf_add_mem(&b, d, strnlen(d, keep));
        return buf;
}

/* ", pulled as DIGEST in namespace NS" — only the parts that are known (an offline
 * `pullwatch check` knows neither). */
static void where_text(const Finding *f, char *buf, size_t size) {
        const char *d = f->image.digest, *ns = f->namespace;
        SBuf b = sbuf_init(buf, size); /* as "%s%s%s%s" */
        sbuf_add(&b, d[0] ? ", pulled as " : "");
        sbuf_add(&b, d);
        sbuf_add(&b, ns[0] ? " in namespace " : "");
        sbuf_add(&b, ns);
}

void finding_format_message(Finding *f) {
        char d1[32], d2[32], where[PW_DIGEST_MAX + PW_NS_MAX + 32], who[PW_K8S_NAME_MAX * 3 + 64] = "";
        const FindingImage *im = &f->image;
        const char *ref = im->ref[0] ? im->ref : im->name;
        const char *in_ns = f->namespace[0] ? " in namespace " : "";

        where_text(f, where, sizeof where);
        if (f->workload.pod[0]) {
                SBuf b = sbuf_init(who, sizeof who); /* as " (pod %s/%s, container %s)" */
                sbuf_add(&b, " (pod ");
                sbuf_add(&b, f->workload.namespace);
                sbuf_add(&b, "/");
                sbuf_add(&b, f->workload.pod);
                sbuf_add(&b, ", container ");
                sbuf_add(&b, f->workload.container[0] ? f->workload.container : "?");
                sbuf_add(&b, ")");
        } else if (f->workload.container_id[0]) {
                SBuf b = sbuf_init(who, sizeof who); /* as " (container %s)" */
                sbuf_add(&b, " (container ");
                sbuf_add(&b, f->workload.container_id);
                sbuf_add(&b, ")");
        }

        switch (f->kind) {
        case FINDING_PULL: { /* every image of a first listing: as "pulled %s as %s%s%s%s" */
                SBuf b = sbuf_init(f->message, sizeof f->message);
                sbuf_add(&b, "pulled ");
                sbuf_add(&b, ref);
                sbuf_add(&b, " as ");
                sbuf_add(&b, im->digest);
                sbuf_add(&b, in_ns);
                sbuf_add(&b, f->namespace);
                sbuf_add(&b, who);
                break;
        }
        case FINDING_LATEST_TAG:
                snprintf(f->message, sizeof f->message, "%s uses the mutable tag latest%s%s%s; pin a version or a digest",
                         ref, im->tag_implicit ? " (implicit: no tag given)" : "", where, who);
                break;
        case FINDING_MUTABLE_TAG: { /* as "%s uses the mutable tag %s%s%s" */
                SBuf b = sbuf_init(f->message, sizeof f->message);
                sbuf_add(&b, ref);
                sbuf_add(&b, " uses the mutable tag ");
                sbuf_add(&b, im->tag);
                sbuf_add(&b, where);
                sbuf_add(&b, who);
                break;
        }
        case FINDING_TAG_MOVED:
                snprintf(f->message, sizeof f->message, "tag %s moved from %s to %s%s%s%s", ref,
                         short_digest(im->previous_digest, d1, sizeof d1), short_digest(im->digest, d2, sizeof d2),
                         in_ns, f->namespace, who);
                break;
        case FINDING_DIGEST_MISMATCH:
                snprintf(f->message, sizeof f->message, "%s %s%s but pinned to %s%s%s%s", ref,
                         im->digest[0] ? "pulled as " : "refers to", short_digest(im->digest, d1, sizeof d1),
                         short_digest(im->expected_digest, d2, sizeof d2), in_ns, f->namespace, who);
                break;
        case FINDING_REVISION_MISMATCH:
                if (im->revision[0])
                        snprintf(f->message, sizeof f->message,
                                 "%s: tag %s looks like a commit SHA but the image revision label is %s%s", ref,
                                 im->tag, im->revision, who);
                else
                        snprintf(f->message, sizeof f->message,
                                 "%s: tag %s looks like a commit SHA but the image has no revision label%s", ref,
                                 im->tag, who);
                break;
        case FINDING_UNTRACEABLE:
                snprintf(f->message, sizeof f->message,
                         "%s (%s) carries no org.opencontainers.image.revision label: not traceable to a commit%s",
                         ref, short_digest(im->digest, d1, sizeof d1), who);
                break;
        default:
                snprintf(f->message, sizeof f->message, "%s", ref);
        }
        if (f->found_at_start) {
                size_t n = strlen(f->message);
                snprintf(f->message + n, sizeof f->message - n, "; found at container start (the pull published no event)");
        }
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates, at
 * most U+10FFFF), 0 if it is not one. */
static size_t utf8_sequence(const unsigned char *s) {
        unsigned char c = s[0];
        size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        unsigned char lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80, hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
        for (size_t i = 1; i < n; i++)
                if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xbf))
                        return 0;
        return n;
}

/* A string from a peer (a pod label, an image name in containerd) may not be UTF-8, which
 * JSON cannot hold: each bad byte becomes U+FFFD rather than the record being lost. */
static json_t *json_string_sanitised(const char *value) {
        json_t *j = json_string(value);
        if (j)
                return j;
        size_t len = strlen(value);
        _cleanup_free_ char *buf = malloc(3 * len + 1);
        if (!buf)
                return NULL;
        size_t o = 0;
        for (const unsigned char *p = (const unsigned char *) value; *p;) {
                size_t n = utf8_sequence(p);
                if (n == 0) {
                        memcpy(buf + o, "\xef\xbf\xbd", 3);
                        o += 3;
                        p++;
                } else {
                        memcpy(buf + o, p, n);
                        o += n;
                        p += n;
                }
        }
        buf[o] = 0;
        return json_string(buf);
}

static int set_str(json_t *o, const char *key, const char *value, bool always) {
        if (!always && isempty(value))
                return 0;
        return json_object_set_new(o, key, json_string_sanitised(value ? value : "")) < 0 ? -ENOMEM : 0;
}

int finding_to_json(const Finding *f, json_t **ret) {
        char ts[64];
        const char *kind = finding_kind_to_string(f->kind), *sev = severity_to_string(f->severity);
        if (!kind || !sev)
                return -EINVAL;
        if (timefmt_utc(f->time_usec, TIMEFMT_RFC3339_USEC, ts, sizeof ts) < 0)
                return -EINVAL;

        json_t *o = json_object(), *im = json_object();
        if (!o || !im) {
                json_decref(o);
                json_decref(im);
                return -ENOMEM;
        }
        int r = 0;
        r |= json_object_set_new(o, "schema", json_integer(PW_SCHEMA_VERSION));
        r |= set_str(o, "id", f->id, true);
        r |= set_str(o, "kind", kind, true);
        r |= set_str(o, "severity", sev, true);
        r |= set_str(o, "time", ts, true);
        r |= set_str(o, "node", f->node, true);
        r |= set_str(o, "namespace", f->namespace, true);

        r |= set_str(im, "ref", f->image.ref, true);
        r |= set_str(im, "name", f->image.name, true);
        r |= set_str(im, "tag", f->image.tag, true);
        if (f->image.tag_implicit)
                r |= json_object_set_new(im, "tag_implicit", json_true());
        r |= set_str(im, "digest", f->image.digest, true);
        r |= set_str(im, "previous_digest", f->image.previous_digest, false);
        r |= set_str(im, "expected_digest", f->image.expected_digest, false);
        r |= set_str(im, "revision", f->image.revision, false);
        r |= set_str(im, "media_type", f->image.media_type, false);
        r |= json_object_set_new(o, "image", im);

        const FindingWorkload *w = &f->workload;
        if (w->namespace[0] || w->pod[0] || w->container[0] || w->container_id[0]) {
                json_t *wl = json_object();
                if (!wl)
                        r = -1;
                else {
                        r |= set_str(wl, "namespace", w->namespace, false);
                        r |= set_str(wl, "pod", w->pod, false);
                        r |= set_str(wl, "container", w->container, false);
                        r |= set_str(wl, "container_id", w->container_id, false);
                        r |= json_object_set_new(o, "workload", wl);
                }
        }
        r |= set_str(o, "message", f->message, true);
        if (f->found_at_start)
                r |= set_str(o, "found", "container_start", true);
        if (r != 0) {
                json_decref(o);
                return -ENOMEM;
        }
        *ret = o;
        return 0;
}

int finding_to_json_string(const Finding *f, char **ret) {
        json_t *o = NULL;
        int r = finding_to_json(f, &o);
        if (r < 0)
                return r;
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* Append FIELD=value into the bounded buffer. Empty values are skipped unless always:
 * a field that is not there is clearer in `journalctl -o json` than an empty one. */
static int add_field(JournalFields *jf, const char *field, const char *value, bool always) {
        if (!always && isempty(value))
                return 0;
        if (jf->n >= PW_JOURNAL_FIELDS_MAX)
                return -ENOBUFS;
        size_t fl = strlen(field), vl = value ? strlen(value) : 0;
        if (jf->used + fl + 1 + vl > sizeof jf->buf)
                return -ENOBUFS;
        char *p = jf->buf + jf->used;
        memcpy(p, field, fl);
        p[fl] = '=';
        if (vl)
                memcpy(p + fl + 1, value, vl);
        jf->iov[jf->n++] = (struct iovec){.iov_base = p, .iov_len = fl + 1 + vl};
        jf->used += fl + 1 + vl;
        return 0;
}

int finding_to_journal(const Finding *f, JournalFields *ret) {
        const char *kind = finding_kind_to_string(f->kind), *sev = severity_to_string(f->severity);
        if (!kind || !sev)
                return -EINVAL;
        char prio[U64_DEC_MAX], usec[U64_DEC_MAX];
        u64_to_dec(prio, (uint64_t) finding_priority(f)); /* a syslog priority, 0-7 */
        u64_to_dec(usec, f->time_usec);

        ret->n = 0;
        ret->used = 0;
        const struct {
                const char *field, *value;
                bool always;
        } fields[] = {
                {"MESSAGE", f->message, true},
                {"PRIORITY", prio, true},
                {"MESSAGE_ID", finding_message_id(f->kind), true},
                {"SYSLOG_IDENTIFIER", "pullwatch", true},
                {"PULLWATCH_KIND", kind, true},
                {"PULLWATCH_SEVERITY", sev, true},
                {"PULLWATCH_ID", f->id, false},
                {"PULLWATCH_EVENT_USEC", usec, true},
                {"IMAGE_REF", f->image.ref, true},
                {"IMAGE_NAME", f->image.name, false},
                {"IMAGE_TAG", f->image.tag, false},
                {"IMAGE_DIGEST", f->image.digest, false},
                {"IMAGE_PREVIOUS_DIGEST", f->image.previous_digest, false},
                {"IMAGE_EXPECTED_DIGEST", f->image.expected_digest, false},
                {"IMAGE_REVISION", f->image.revision, false},
                {"IMAGE_MEDIA_TYPE", f->image.media_type, false},
                {"CONTAINERD_NAMESPACE", f->namespace, false},
                {"K8S_NAMESPACE", f->workload.namespace, false},
                {"K8S_POD", f->workload.pod, false},
                {"K8S_CONTAINER", f->workload.container, false},
                {"CONTAINER_ID", f->workload.container_id, false},
                {"NODE_NAME", f->node, true},
                {"PULLWATCH_FOUND", f->found_at_start ? "container_start" : "", false},
        };
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                int r = add_field(ret, fields[i].field, fields[i].value, fields[i].always);
                if (r < 0)
                        return r;
        }
        return 0;
}

bool finding_kinds_compliant(unsigned kinds_mask) {
        return (kinds_mask & ~FINDING_KIND_BIT(FINDING_PULL)) == 0;
}
