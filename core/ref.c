/* Image reference grammar and normalisation; see ref.h. */
#include <stdarg.h>

#include "pullwatch/ref.h"
#include "pullwatch/refname.h"
#include "pullwatch/util.h"

/* Where a failure goes: the caller's reason buffer and the upstream error class. */
typedef struct PErr {
        char *err;
        size_t errlen;
        RefError kind;
} PErr;

#define fail(e, k, ...) ((e)->kind = (k), errbuf_fail((e)->err, (e)->errlen, -EINVAL, __VA_ARGS__))

static bool is_lower_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
static bool is_alnum(char c) {
        return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}
static bool is_lower_hex(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}
static bool is_any_hex(char c) {
        return is_lower_hex(c) || (c >= 'A' && c <= 'F');
}
static bool is_word(char c) {
        return is_alnum(c) || c == '_';
}

static bool all_of(const char *s, size_t n, bool (*pred)(char)) {
        for (size_t i = 0; i < n; i++)
                if (!pred(s[i]))
                        return false;
        return true;
}

bool ref_tag_is_valid(const char *tag) {
        size_t n = tag ? strlen(tag) : 0;
        if (n == 0 || n > 128 || !is_word(tag[0]))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!is_word(tag[i]) && tag[i] != '.' && tag[i] != '-')
                        return false;
        return true;
}

static bool is_alpha(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* digest-algorithm := component ([+._-] component)*, component := [A-Za-z][A-Za-z0-9]* */
static bool algorithm_is_well_formed(const char *a, size_t n) {
        bool start = true;
        for (size_t i = 0; i < n; i++) {
                if (start) {
                        if (!is_alpha(a[i]))
                                return false;
                        start = false;
                } else if (a[i] == '+' || a[i] == '.' || a[i] == '_' || a[i] == '-')
                        start = true;
                else if (!is_alnum(a[i]))
                        return false;
        }
        return n > 0 && !start;
}

/* Checks a digest of n bytes at d, in upstream's order: the reference grammar
 * (algorithm ":" [0-9a-fA-F]{32,}) first, then go-digest's Validate: a known algorithm,
 * its exact length, lowercase hex. */
static int check_digest(const char *d, size_t n, PErr *e) {
        static const struct {
                const char *algo;
                size_t hex;
        } algos[] = { { "sha256", 64 }, { "sha384", 96 }, { "sha512", 128 } };
        const char *colon = memchr(d, ':', n);
        if (n == 0)
                return fail(e, REF_ERROR_FORMAT, "empty digest after '@'");
        if (!colon)
                return fail(e, REF_ERROR_FORMAT, "bad digest: expected ALGORITHM:HEX");
        size_t alen = (size_t) (colon - d), hlen = n - alen - 1;
        if (alen == 0)
                return fail(e, REF_ERROR_FORMAT, "bad digest: empty algorithm");
        if (!algorithm_is_well_formed(d, alen))
                return fail(e, REF_ERROR_FORMAT, "bad digest: malformed algorithm name");
        if (hlen < 32 || !all_of(colon + 1, hlen, is_any_hex))
                return fail(e, REF_ERROR_FORMAT, "bad digest: expected at least 32 hex characters after the algorithm");
        for (size_t i = 0; i < ELEMENTSOF(algos); i++) {
                if (strlen(algos[i].algo) != alen || memcmp(algos[i].algo, d, alen) != 0)
                        continue;
                if (hlen != algos[i].hex)
                        return fail(e, REF_ERROR_DIGEST_LENGTH, "bad digest: %s needs exactly %zu hex characters",
                                    algos[i].algo, algos[i].hex);
                if (!all_of(colon + 1, hlen, is_lower_hex))
                        return fail(e, REF_ERROR_DIGEST_FORMAT, "bad digest: %s needs lowercase hex", algos[i].algo);
                return 0;
        }
        return fail(e, REF_ERROR_DIGEST_UNSUPPORTED, "bad digest: unsupported algorithm (sha256, sha384 or sha512)");
}

bool ref_digest_is_valid(const char *digest) {
        PErr e = {};
        return digest && check_digest(digest, strlen(digest), &e) == 0;
}

bool ref_is_commit_sha_tag(const char *tag) {
        size_t n = tag ? strlen(tag) : 0;
        if (n < 7 || n > 40 || !all_of(tag, n, is_lower_hex))
                return false;
        bool digits_only = true;
        for (size_t i = 0; i < n; i++)
                if (tag[i] > '9')
                        digits_only = false;
        return !digits_only || n == 40;
}

static bool is_semver_ident(char c) {
        return is_alnum(c) || c == '-' || c == '.';
}

bool ref_is_semver_tag(const char *tag) {
        const char *p = tag;
        if (!p)
                return false;
        if (*p == 'v')
                p++;
        for (int part = 0; part < 3; part++) {
                const char *start = p;
                while (*p >= '0' && *p <= '9')
                        p++;
                if (p == start)
                        return false;
                if (part == 0) {
                        if (*p != '.')
                                return false; /* MAJOR alone is a floating tag, not a version */
                        p++;
                } else if (part == 1) {
                        if (*p != '.')
                                break;
                        p++;
                }
        }
        if (*p == '-') {
                const char *start = ++p;
                while (is_semver_ident(*p))
                        p++;
                if (p == start)
                        return false;
        }
        if (*p == '+') {
                const char *start = ++p;
                while (is_semver_ident(*p))
                        p++;
                if (p == start)
                        return false;
        }
        return *p == 0;
}

/* host component: [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9] */
static bool check_host_component(const char *s, size_t n) {
        if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_alnum(s[i]) && s[i] != '-')
                        return false;
        return true;
}

static int check_domain(const char *d, size_t n, PErr *e) {
        const char *port = NULL;
        size_t hostlen;
        if (n > 0 && d[0] == '[') {
                const char *close = memchr(d, ']', n);
                if (!close || close == d + 1)
                        return fail(e, REF_ERROR_FORMAT, "bad registry: malformed [IPv6] address");
                for (const char *p = d + 1; p < close; p++)
                        if (!is_any_hex(*p) && *p != ':')
                                return fail(e, REF_ERROR_FORMAT, "bad registry: malformed [IPv6] address");
                hostlen = (size_t) (close - d) + 1;
                if (hostlen < n) {
                        if (d[hostlen] != ':')
                                return fail(e, REF_ERROR_FORMAT, "bad registry: junk after [IPv6] address");
                        port = d + hostlen + 1;
                }
        } else {
                const char *colon = memchr(d, ':', n);
                hostlen = colon ? (size_t) (colon - d) : n;
                if (colon)
                        port = colon + 1;
                size_t start = 0;
                for (size_t i = 0; i <= hostlen; i++) {
                        if (i < hostlen && d[i] != '.')
                                continue;
                        if (!check_host_component(d + start, i - start))
                                return fail(e, REF_ERROR_FORMAT, "bad registry host name");
                        start = i + 1;
                }
        }
        if (port) {
                size_t plen = n - (size_t) (port - d);
                /* port-number := [0-9]+, no more: upstream's tables accept 750050 */
                if (plen == 0)
                        return fail(e, REF_ERROR_FORMAT, "bad registry port");
                for (size_t i = 0; i < plen; i++)
                        if (port[i] < '0' || port[i] > '9')
                                return fail(e, REF_ERROR_FORMAT, "bad registry port");
        }
        return 0;
}

/* path component: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)* */
static int check_path_component(const char *s, size_t n, PErr *e) {
        if (n == 0)
                return fail(e, REF_ERROR_FORMAT, "empty path component in repository name");
        for (size_t i = 0; i < n; i++)
                if (s[i] >= 'A' && s[i] <= 'Z')
                        return fail(e, REF_ERROR_NAME_UPPERCASE, "repository name must be lowercase");
        if (!is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
                return fail(e, REF_ERROR_FORMAT, "repository path component must start and end with [a-z0-9]");
        for (size_t i = 0; i < n;) {
                if (is_lower_alnum(s[i])) {
                        i++;
                        continue;
                }
                size_t j = i;
                while (j < n && !is_lower_alnum(s[j]))
                        j++;
                size_t sl = j - i;
                bool ok = (sl == 1 && (s[i] == '.' || s[i] == '_')) || (sl == 2 && s[i] == '_' && s[i + 1] == '_');
                if (!ok) {
                        ok = true;
                        for (size_t k = i; k < j; k++)
                                if (s[k] != '-')
                                        ok = false;
                }
                if (!ok)
                        return fail(e, REF_ERROR_FORMAT, "bad separator in repository path (use '.', '_', '__' or '-')");
                i = j;
        }
        return 0;
}

static int parse(const char *s, Ref *ret, PErr *e);

static int copy_n(char *dst, size_t size, const char *src, size_t n) {
        if (n >= size)
                return -ENAMETOOLONG;
        memcpy(dst, src, n);
        dst[n] = 0;
        return 0;
}

int ref_parse(const char *s, Ref *ret, char *err, size_t errlen) {
        return ref_parse_full(s, ret, NULL, err, errlen);
}

int ref_parse_full(const char *s, Ref *ret, RefError *ret_error, char *err, size_t errlen) {
        PErr pe = { .err = err, .errlen = errlen, .kind = REF_ERROR_NONE };
        Ref r = {};
        int k = parse(s, &r, &pe);
        if (k < 0) {
                if (ret_error)
                        *ret_error = pe.kind;
                return k;
        }
        *ret = r;
        return 0;
}

static int parse(const char *s, Ref *ret, PErr *e) {
        Ref r = {};

        if (isempty(s))
                return fail(e, REF_ERROR_NAME_EMPTY, "empty reference");
        size_t len = strnlen(s, PW_REF_MAX);
        if (len >= PW_REF_MAX)
                return fail(e, REF_ERROR_NAME_TOO_LONG, "reference too long (limit %d characters)", PW_REF_MAX - 1);
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) s[i];
                if (c < 0x20 || c == 0x7f)
                        return fail(e, REF_ERROR_FORMAT, "control character 0x%02x at offset %zu", c, i);
                if (c == ' ')
                        return fail(e, REF_ERROR_FORMAT, "space at offset %zu", i);
                if (c >= 0x80)
                        return fail(e, REF_ERROR_FORMAT, "non-ASCII byte at offset %zu", i);
        }

        /* The CRI image id: sha256:<64 hex>, a name of its own. Anything that looks like an
         * attempt at one ("sha256:" + a run of hex) is checked as a digest, not taken for
         * the repository "sha256" with a hex tag. */
        if (startswith(s, "sha256:") && len - 7 >= 32 && all_of(s + 7, len - 7, is_any_hex)) {
                int k = check_digest(s, len, e);
                if (k < 0)
                        return k;
                memcpy(r.digest, s, len + 1);
                r.is_image_id = true;
                *ret = r;
                return 0;
        }
        if (len == 64 && all_of(s, len, is_lower_hex))
                return fail(e, REF_ERROR_FORMAT, "a bare 64-character hex string is an image id, not a repository name");

        const char *at = strchr(s, '@');
        size_t ntlen = at ? (size_t) (at - s) : len;
        if (at) {
                int k = check_digest(at + 1, len - ntlen - 1, e);
                if (k < 0)
                        return k;
                memcpy(r.digest, at + 1, len - ntlen);
        }

        /* The tag follows the last ':' after the last '/'. */
        size_t namelen = ntlen;
        for (size_t i = ntlen; i > 0; i--) {
                char c = s[i - 1];
                if (c == '/')
                        break;
                if (c == ':') {
                        namelen = i - 1;
                        break;
                }
        }
        if (namelen < ntlen) {
                size_t tlen = ntlen - namelen - 1;
                if (tlen == 0)
                        return fail(e, REF_ERROR_FORMAT, "empty tag after ':'");
                if (tlen > 128)
                        return fail(e, REF_ERROR_FORMAT, "tag too long (limit 128 characters)");
                memcpy(r.tag, s + namelen + 1, tlen);
                r.tag[tlen] = 0;
                if (!ref_tag_is_valid(r.tag))
                        return fail(e, REF_ERROR_FORMAT, "bad tag: use [A-Za-z0-9_.-], not starting with '.' or '-'");
        }

        if (namelen == 0)
                return fail(e, REF_ERROR_FORMAT, "empty repository name");
        if (namelen >= PW_NAME_MAX)
                return fail(e, REF_ERROR_NAME_TOO_LONG, "repository name too long (limit %d characters)",
                            PW_NAME_MAX - 1);

        /* splitDockerDomain: the first component is a registry only if it looks like one. */
        const char *slash = memchr(s, '/', namelen);
        const char *path = s;
        size_t pathlen = namelen;
        if (slash) {
                size_t dlen = (size_t) (slash - s);
                bool is_domain = memchr(s, '.', dlen) || memchr(s, ':', dlen) || s[0] == '[' ||
                                 (dlen == 9 && memcmp(s, "localhost", 9) == 0);
                for (size_t i = 0; i < dlen && !is_domain; i++)
                        if (s[i] >= 'A' && s[i] <= 'Z')
                                is_domain = true;
                if (is_domain) {
                        if (dlen == 0)
                                return fail(e, REF_ERROR_FORMAT, "empty registry name");
                        int k = check_domain(s, dlen, e);
                        if (k < 0)
                                return k;
                        if (dlen == 15 && memcmp(s, "index.docker.io", 15) == 0)
                                strcpy_bounded(r.domain, sizeof(r.domain), "docker.io");
                        else
                                copy_n(r.domain, sizeof(r.domain), s, dlen); /* dlen < 256 */
                        path = slash + 1;
                        pathlen = namelen - dlen - 1;
                }
        }
        if (!r.domain[0])
                strcpy_bounded(r.domain, sizeof(r.domain), "docker.io");

        size_t start = 0;
        for (size_t i = 0; i <= pathlen; i++) {
                if (i < pathlen && path[i] != '/')
                        continue;
                int k = check_path_component(path + start, i - start, e);
                if (k < 0)
                        return k;
                start = i + 1;
        }

        bool add_library = streq_ptr(r.domain, "docker.io") && !memchr(path, '/', pathlen);
        if (add_library) {
                if (pathlen + 8 >= sizeof(r.path))
                        return fail(e, REF_ERROR_NAME_TOO_LONG, "repository name too long");
                memcpy(r.path, "library/", 8);
                memcpy(r.path + 8, path, pathlen);
                r.path[pathlen + 8] = 0;
        } else if (copy_n(r.path, sizeof(r.path), path, pathlen) < 0)
                return fail(e, REF_ERROR_NAME_TOO_LONG, "repository name too long");
        /* As distribution/reference since v0.6: the limit applies to the path, library/
         * included (what ParseNormalizedNamed hands to Parse), not to the registry. The
         * whole name has pullwatch's own bound, PW_NAME_MAX, which no upstream case reaches. */
        if (strlen(r.path) > REF_NAME_MAX)
                return fail(e, REF_ERROR_NAME_TOO_LONG, "repository name too long (limit %d characters)", REF_NAME_MAX);
        if (strlen(r.domain) + 1 + strlen(r.path) >= PW_NAME_MAX)
                return fail(e, REF_ERROR_NAME_TOO_LONG,
                            "repository name too long (limit %d characters with the registry)", PW_NAME_MAX - 1);

        if (!r.tag[0] && !r.digest[0]) {
                strcpy_bounded(r.tag, sizeof(r.tag), "latest");
                r.tag_implicit = true;
        }
        r.is_digest_only = r.digest[0] && !r.tag[0];

        char check[PW_REF_MAX];
        if (ref_format(&r, check, sizeof(check)) < 0)
                return fail(e, REF_ERROR_NAME_TOO_LONG, "normalised reference too long (limit %d characters)", PW_REF_MAX - 1);

        *ret = r;
        return 0;
}

/* parts[0..n) concatenated into buf as snprintf("%s%s...") would write them: truncated
 * and terminated when too long (then -ENAMETOOLONG). Without snprintf's format machinery:
 * each event formats several references, and snprintf was ~8 % of an event's
 * instructions (callgrind). */
static int join(char *buf, size_t len, const char *const *parts, size_t n) {
        size_t o = 0;
        if (len == 0)
                return -ENAMETOOLONG;
        for (size_t i = 0; i < n; i++) {
                size_t k = strlen(parts[i]);
                if (k >= len - o) {
                        memcpy(buf + o, parts[i], len - 1 - o);
                        buf[len - 1] = 0;
                        return -ENAMETOOLONG;
                }
                memcpy(buf + o, parts[i], k);
                o += k;
        }
        buf[o] = 0;
        return 0;
}

int ref_name(const Ref *r, char *buf, size_t len) {
        if (r->is_image_id)
                return join(buf, len, NULL, 0);
        const char *parts[] = {r->domain, "/", r->path};
        return join(buf, len, parts, ELEMENTSOF(parts));
}

static int format_parts(const Ref *r, bool tag, bool digest, char *buf, size_t len) {
        if (r->is_image_id)
                return strcpy_bounded(buf, len, r->digest);
        tag = tag && r->tag[0];
        digest = digest && r->digest[0];
        const char *parts[] = {r->domain, "/", r->path, tag ? ":" : "", tag ? r->tag : "", digest ? "@" : "",
                               digest ? r->digest : ""};
        return join(buf, len, parts, ELEMENTSOF(parts));
}

int ref_format(const Ref *r, char *buf, size_t len) {
        return format_parts(r, true, true, buf, len);
}

int ref_format_docker(const Ref *r, char *buf, size_t len) {
        return format_parts(r, !r->digest[0], true, buf, len);
}

int ref_format_tagged(const Ref *r, char *buf, size_t len) {
        if (r->is_image_id || !r->tag[0])
                return -ENOENT;
        return format_parts(r, true, false, buf, len);
}

bool ref_equal(const Ref *a, const Ref *b) {
        return streq_ptr(a->domain, b->domain) && streq_ptr(a->path, b->path) && streq_ptr(a->tag, b->tag) &&
               streq_ptr(a->digest, b->digest) && a->tag_implicit == b->tag_implicit &&
               a->is_image_id == b->is_image_id && a->is_digest_only == b->is_digest_only;
}

int ref_tagged_name(const char *s, char *name, size_t size) {
        Ref r;
        if (ref_parse(s, &r, NULL, 0) < 0 || r.is_image_id || r.tag[0] == 0)
                return 0;
        int k = ref_name(&r, name, size);
        return k < 0 ? k : 1;
}
