/* Policy rules: see policy.h. */
#include <regex.h>
#include <stdarg.h>
#include <strings.h>

#include "pullwatch/policy.h"
#include "pullwatch/ref.h"
#include "pullwatch/util.h"

typedef struct RepoPattern {
        char *text;  /* normalised name, or the prefix (ending in '/') of a wildcard */
        bool prefix; /* written with a trailing wildcard */
} RepoPattern;

struct Policy {
        StrList mutable_tags;
        regex_t *patterns;
        size_t n_patterns;
        bool strict;
        bool report_untraceable;
        StrList exempt_namespaces, exempt_k8s_namespaces, exempt_registries;
        RepoPattern *repos;
        size_t n_repos;
        int severity[_FINDING_KIND_MAX];
};

#define fail(err, errlen, ...) errbuf_fail(err, errlen, -EINVAL, __VA_ARGS__)

static void list_free(StrList *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
        *l = (StrList) {};
}

static int list_copy(StrList *dst, const StrList *src) {
        StrList n = {};
        if (src->n > 0) {
                n.v = calloc(src->n, sizeof(char *));
                if (!n.v)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < src->n; i++) {
                n.v[i] = strdup(src->v[i]);
                if (!n.v[i]) {
                        list_free(&n);
                        return -ENOMEM;
                }
                n.n++;
        }
        *dst = n;
        return 0;
}

Policy *policy_free(Policy *p) {
        if (!p)
                return NULL;
        list_free(&p->mutable_tags);
        for (size_t i = 0; i < p->n_patterns; i++)
                regfree(&p->patterns[i]);
        free(p->patterns);
        list_free(&p->exempt_namespaces);
        list_free(&p->exempt_k8s_namespaces);
        list_free(&p->exempt_registries);
        for (size_t i = 0; i < p->n_repos; i++)
                free(p->repos[i].text);
        free(p->repos);
        free(p);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Policy *, policy_free);

/* Registries compare case-insensitively, and index.docker.io is docker.io. */
static const char *canonical_registry(const char *r) {
        return strcasecmp(r, "index.docker.io") == 0 ? "docker.io" : r;
}

static int compile_repo_pattern(const char *s, RepoPattern *ret, char *err, size_t errlen) {
        size_t n = strlen(s);
        char why[160];
        int k;
        if (n >= 2 && s[n - 2] == '/' && s[n - 1] == '*') {
                if (n == 2)
                        return fail(err, errlen, "exempt_repositories: \"/*\" needs a prefix");
                /* A prefix, not a name: normalise only the registry, as splitDockerDomain
                 * would: "acme/" becomes "docker.io/acme/"; no "library/" is guessed. */
                const char *slash = strchr(s, '/');
                size_t dlen = (size_t) (slash - s);
                bool has_domain = memchr(s, '.', dlen) || memchr(s, ':', dlen) ||
                                  (dlen == 9 && startswith(s, "localhost"));
                if (has_domain && dlen == 15 && strncasecmp(s, "index.docker.io", 15) == 0)
                        k = asprintf(&ret->text, "docker.io%.*s", (int) (n - 1 - dlen), s + dlen);
                else if (has_domain)
                        k = asprintf(&ret->text, "%.*s", (int) (n - 1), s);
                else
                        k = asprintf(&ret->text, "docker.io/%.*s", (int) (n - 1), s);
                if (k < 0) {
                        ret->text = NULL;
                        return -ENOMEM;
                }
                ret->prefix = true;
        } else {
                Ref r;
                if (ref_parse(s, &r, why, sizeof(why)) < 0)
                        return fail(err, errlen, "exempt_repositories: \"%.200s\": %s", s, why);
                if (r.is_image_id || r.digest[0] || !r.tag_implicit)
                        return fail(err, errlen, "exempt_repositories: \"%.200s\" must be a repository name without tag or digest", s);
                char name[PW_NAME_MAX];
                if (ref_name(&r, name, sizeof(name)) < 0)
                        return fail(err, errlen, "exempt_repositories: \"%.200s\" too long", s);
                ret->text = strdup(name);
                ret->prefix = false;
        }
        return ret->text ? 0 : -ENOMEM;
}

/* Bounds of an allowed tag pattern, checked before regcomp(). glibc compiles a
 * repetition by copying its operand (a{1,n} into n copies, a+ into aa*), so nested or
 * large repetitions grow exponentially: "e" and 24 '+' took 12.5 GB and 43 s. Tags are at
 * most 128 characters: the bounds cost no useful pattern; at them regcomp() takes ~30 ms
 * and ~10 MB. Back-references are refused: they make matching exponential. */
#define PATTERN_LEN_MAX 512
#define PATTERN_COST_MAX 1024

static uint64_t cost_cap(uint64_t v) {
        return v > PATTERN_COST_MAX + 1 ? PATTERN_COST_MAX + 1 : v;
}

/* Parse the interval at *p ('{' already seen) as "m", "m," or "m,n" followed by '}'. On
 * success the largest number of copies it makes (saturated) and *p past the '}'. */
static bool parse_interval(const char **p, uint64_t *ret_copies) {
        const char *s = *p;
        uint64_t m = 0, n = 0;
        bool have_m = false, comma = false, have_n = false;
        for (; *s >= '0' && *s <= '9'; s++, have_m = true)
                m = cost_cap(m * 10 + (uint64_t) (*s - '0'));
        if (*s == ',') {
                comma = true;
                for (s++; *s >= '0' && *s <= '9'; s++, have_n = true)
                        n = cost_cap(n * 10 + (uint64_t) (*s - '0'));
        }
        if (*s != '}' || (!have_m && !have_n))
                return false;
        *p = s + 1;
        /* {m,} copies the operand m times plus a starred one */
        *ret_copies = have_n ? (n > m ? n : m) : comma ? m + 1 : m;
        if (*ret_copies == 0)
                *ret_copies = 1;
        return true;
}

/* An upper bound of what regcomp() makes of re, in operand copies; -EINVAL with a reason
 * if re is over the bounds. Syntax errors are left to regcomp(). */
static int check_pattern(const char *re, char *why, size_t whylen) {
        if (strlen(re) > PATTERN_LEN_MAX)
                return errbuf_fail(why, whylen, -EINVAL, "longer than %d bytes", PATTERN_LEN_MAX);
        struct {
                uint64_t total, last; /* size of the group so far, of its last operand */
        } stack[PATTERN_LEN_MAX + 2] = {};
        size_t depth = 0;
        for (const char *p = re; *p;) {
                uint64_t atom = 0, copies = 0;
                const char *q;
                switch (*p) {
                case '\\':
                        if (p[1] >= '1' && p[1] <= '9')
                                return errbuf_fail(why, whylen, -EINVAL, "back-references are not supported");
                        p += p[1] ? 2 : 1;
                        atom = 1;
                        break;
                case '[':
                        /* to the closing ']': a leading '^' and ']' are literal, as are
                         * the insides of [:class:], [=equiv=] and [.coll.] */
                        q = p + 1;
                        if (*q == '^')
                                q++;
                        if (*q == ']')
                                q++;
                        while (*q && *q != ']') {
                                if (*q == '[' && (q[1] == ':' || q[1] == '=' || q[1] == '.')) {
                                        const char *e = strchr(q + 2, q[1]);
                                        while (e && e[1] != ']')
                                                e = strchr(e + 1, q[1]);
                                        q = e ? e + 2 : q + 1;
                                } else
                                        q++;
                        }
                        p = *q ? q + 1 : q;
                        atom = 1;
                        break;
                case '(':
                        depth++;
                        stack[depth].total = stack[depth].last = 0;
                        p++;
                        continue;
                case ')':
                        if (depth == 0) {
                                p++;
                                atom = 1;
                                break;
                        }
                        atom = cost_cap(stack[depth].total + 1);
                        depth--;
                        p++;
                        break;
                case '|':
                        stack[depth].last = 0; /* alternatives add up; nothing to repeat */
                        p++;
                        continue;
                case '*':
                case '?':
                        copies = 1;
                        p++;
                        break;
                case '+':
                        copies = 2;
                        p++;
                        break;
                case '{':
                        q = p + 1;
                        if (parse_interval(&q, &copies))
                                p = q;
                        else {
                                p++;
                                atom = 1;
                        }
                        break;
                default:
                        p++;
                        atom = 1;
                }
                if (copies > 0 && stack[depth].last > 0) {
                        uint64_t last = stack[depth].last, grown = cost_cap(last * copies + 1);
                        stack[depth].total = cost_cap(stack[depth].total - last + grown);
                        stack[depth].last = grown;
                } else {
                        if (copies > 0)
                                atom = 1; /* a repetition with nothing before it */
                        stack[depth].total = cost_cap(stack[depth].total + atom);
                        stack[depth].last = atom;
                }
                if (stack[depth].total > PATTERN_COST_MAX)
                        return errbuf_fail(why, whylen, -EINVAL,
                                           "repetition expands beyond %d elements (nested or large {m,n})",
                                           PATTERN_COST_MAX);
        }
        return 0;
}

int policy_new_from_config(const Config *c, Policy **ret, char *err, size_t errlen) {
        _cleanup_(policy_freep) Policy *p = calloc(1, sizeof(Policy));
        int r;
        if (!p)
                return -ENOMEM;
        if ((r = list_copy(&p->mutable_tags, &c->mutable_tags)) < 0 ||
            (r = list_copy(&p->exempt_namespaces, &c->exempt_namespaces)) < 0 ||
            (r = list_copy(&p->exempt_k8s_namespaces, &c->exempt_k8s_namespaces)) < 0 ||
            (r = list_copy(&p->exempt_registries, &c->exempt_registries)) < 0)
                return r;
        p->strict = c->strict;
        p->report_untraceable = c->report_untraceable;
        for (int k = 0; k < _FINDING_KIND_MAX; k++) {
                int s = c->severity[k];
                if (k != FINDING_PULL && s != CONFIG_SEVERITY_OFF && (s < 0 || s >= _SEVERITY_MAX))
                        return fail(err, errlen, "policy: bad severity %d for %s", s, finding_kind_to_string(k));
                p->severity[k] = s;
        }

        if (c->allowed_tag_patterns.n > 0) {
                p->patterns = calloc(c->allowed_tag_patterns.n, sizeof(regex_t));
                if (!p->patterns)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < c->allowed_tag_patterns.n; i++) {
                const char *re = c->allowed_tag_patterns.v[i];
                char why[128];
                if (check_pattern(re, why, sizeof(why)) < 0)
                        return fail(err, errlen, "allowed_tag_patterns: \"%.200s\": %s", re, why);
                int k = regcomp(&p->patterns[i], re, REG_EXTENDED | REG_NOSUB);
                if (k != 0) {
                        regerror(k, &p->patterns[i], why, sizeof(why));
                        return fail(err, errlen, "allowed_tag_patterns: \"%.200s\": %s", re, why);
                }
                p->n_patterns++;
        }

        if (c->exempt_repositories.n > 0) {
                p->repos = calloc(c->exempt_repositories.n, sizeof(RepoPattern));
                if (!p->repos)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < c->exempt_repositories.n; i++) {
                r = compile_repo_pattern(c->exempt_repositories.v[i], &p->repos[i], err, errlen);
                if (r < 0)
                        return r;
                p->n_repos++;
        }
        *ret = TAKE_PTR(p);
        return 0;
}

bool policy_kind_enabled(const Policy *p, FindingKind kind) {
        return kind > FINDING_PULL && kind < _FINDING_KIND_MAX && p->severity[kind] != CONFIG_SEVERITY_OFF;
}

Severity policy_severity(const Policy *p, FindingKind kind) {
        if (kind <= FINDING_PULL || kind >= _FINDING_KIND_MAX || p->severity[kind] == CONFIG_SEVERITY_OFF)
                return SEVERITY_INFO;
        return (Severity) p->severity[kind];
}

static bool list_has(const StrList *l, const char *s, bool nocase) {
        for (size_t i = 0; i < l->n; i++)
                if (nocase ? strcasecmp(l->v[i], s) == 0 : strcmp(l->v[i], s) == 0)
                        return true;
        return false;
}

static bool ref_is_exempt(const Policy *p, const Ref *r) {
        if (r->is_image_id)
                return false;
        for (size_t i = 0; i < p->exempt_registries.n; i++)
                if (strcasecmp(canonical_registry(p->exempt_registries.v[i]), r->domain) == 0)
                        return true;
        char name[PW_NAME_MAX];
        if (p->n_repos == 0 || ref_name(r, name, sizeof(name)) < 0)
                return false;
        for (size_t i = 0; i < p->n_repos; i++) {
                const RepoPattern *rp = &p->repos[i];
                if (rp->prefix ? startswith(name, rp->text) : streq_ptr(name, rp->text))
                        return true;
        }
        return false;
}

static bool obs_is_exempt(const Policy *p, const Observation *o, const Ref *r) {
        if (o->namespace[0] && list_has(&p->exempt_namespaces, o->namespace, false))
                return true;
        if (o->workload.namespace[0] && list_has(&p->exempt_k8s_namespaces, o->workload.namespace, false))
                return true;
        return ref_is_exempt(p, r);
}

int policy_is_exempt(const Policy *p, const Observation *o) {
        Ref r;
        if (ref_parse(o->ref, &r, NULL, 0) < 0)
                return -EINVAL;
        return obs_is_exempt(p, o, &r);
}

static bool tag_allowed_by_patterns(const Policy *p, const char *tag) {
        for (size_t i = 0; i < p->n_patterns; i++)
                if (regexec(&p->patterns[i], tag, 0, NULL, 0) == 0)
                        return true;
        return false;
}

/* latest_tag / mutable_tag: at most one of them. A reference carrying a digest is pinned
 * whatever its tag says: "app:latest@sha256:…" pulls that digest and nothing else. */
static FindingKind tag_kind(const Policy *p, const Ref *r) {
        if (r->is_image_id || !r->tag[0] || r->digest[0])
                return FINDING_PULL;
        if (streq_ptr(r->tag, "latest"))
                return FINDING_LATEST_TAG;
        if (list_has(&p->mutable_tags, r->tag, false))
                return FINDING_MUTABLE_TAG;
        if (p->strict && !tag_allowed_by_patterns(p, r->tag))
                return FINDING_MUTABLE_TAG;
        return FINDING_PULL;
}

typedef struct Emitter {
        const Policy *p;
        Finding *out;
        size_t max, n;
        const Finding *base;
} Emitter;

static Finding *emit(Emitter *e, FindingKind kind) {
        if (!policy_kind_enabled(e->p, kind))
                return NULL;
        if (e->n >= e->max)
                return (Finding *) -1; /* signalled as -ENOBUFS by the caller */
        Finding *f = &e->out[e->n++];
        *f = *e->base;
        f->kind = kind;
        f->severity = policy_severity(e->p, kind);
        return f;
}
#define EMIT_OVERFLOW(f) ((f) == (Finding *) -1)

/* Fill the image fields shared by every finding of one reference. */
static int fill_base(Finding *b, const Ref *r, char *err, size_t errlen) {
        if (ref_format(r, b->image.ref, sizeof(b->image.ref)) < 0 ||
            ref_name(r, b->image.name, sizeof(b->image.name)) < 0 ||
            strcpy_bounded(b->image.tag, sizeof(b->image.tag), r->tag) < 0)
                return fail(err, errlen, "reference too long");
        b->image.tag_implicit = r->tag_implicit;
        return 0;
}

static bool digest_matches(const char *pin, const char *target, const char *platform) {
        return streq_ptr(pin, target) || (!isempty(platform) && streq_ptr(pin, platform));
}

/* The first pin that disagrees with what was pulled: the digest written in the
 * reference, then the pins file's entry for name:tag. NULL if all agree. */
static const char *disagreeing_pin(const Ref *r, const Pins *pins, const char *target, const char *platform) {
        const char *pin[2] = { r->digest[0] ? r->digest : NULL, pins_lookup_ref(pins, r) };
        for (size_t i = 0; i < ELEMENTSOF(pin); i++)
                if (pin[i] && !digest_matches(pin[i], target, platform))
                        return pin[i];
        return NULL;
}

int policy_evaluate(const Policy *p, const Observation *o, const char *previous_digest, const Pins *pins,
                    Finding *out, size_t max, size_t *ret_n, char *err, size_t errlen) {
        char why[160];
        Ref r;
        if (ref_parse(o->ref, &r, why, sizeof(why)) < 0)
                return fail(err, errlen, "bad image reference: %s", why);
        return policy_evaluate_ref(p, o, &r, previous_digest, pins, out, max, ret_n, err, errlen);
}

int policy_evaluate_ref(const Policy *p, const Observation *o, const Ref *ref, const char *previous_digest,
                        const Pins *pins, Finding *out, size_t max, size_t *ret_n, char *err, size_t errlen) {
        if (ref->is_image_id || obs_is_exempt(p, o, ref)) {
                *ret_n = 0;
                return 0;
        }

        Finding base = {};
        int k = fill_base(&base, ref, err, errlen);
        if (k < 0)
                return k;
        base.time_usec = o->time_usec;
        if (strcpy_bounded(base.namespace, sizeof(base.namespace), o->namespace) < 0 ||
            strcpy_bounded(base.image.digest, sizeof(base.image.digest), o->digest) < 0 ||
            strcpy_bounded(base.image.media_type, sizeof(base.image.media_type), o->media_type) < 0 ||
            strcpy_bounded(base.image.revision, sizeof(base.image.revision), o->has_revision ? o->revision : "") < 0)
                return fail(err, errlen, "observation field too long");
        base.workload = o->workload;

        Emitter e = { .p = p, .out = out, .max = max, .base = &base };
        Finding *f;

        FindingKind tk = tag_kind(p, ref);
        if (tk != FINDING_PULL && EMIT_OVERFLOW(emit(&e, tk)))
                return -ENOBUFS;

        if (!isempty(previous_digest) && !streq_ptr(previous_digest, o->digest)) {
                f = emit(&e, FINDING_TAG_MOVED);
                if (EMIT_OVERFLOW(f))
                        return -ENOBUFS;
                if (f && strcpy_bounded(f->image.previous_digest, sizeof(f->image.previous_digest), previous_digest) < 0)
                        return fail(err, errlen, "previous digest too long");
        }

        const char *pin = disagreeing_pin(ref, pins, o->digest, o->platform_digest);
        if (pin) {
                f = emit(&e, FINDING_DIGEST_MISMATCH);
                if (EMIT_OVERFLOW(f))
                        return -ENOBUFS;
                if (f)
                        strcpy_bounded(f->image.expected_digest, sizeof(f->image.expected_digest), pin); /* fits */
        }

        if (o->config_known && ref->tag[0] && !ref->is_digest_only) {
                bool labelled = o->has_revision && o->revision[0];
                bool raised = false;
                if (ref_is_commit_sha_tag(ref->tag) &&
                    (!labelled || strncasecmp(o->revision, ref->tag, strlen(ref->tag)) != 0)) {
                        f = emit(&e, FINDING_REVISION_MISMATCH);
                        if (EMIT_OVERFLOW(f))
                                return -ENOBUFS;
                        raised = f != NULL;
                }
                if (!labelled && !raised && p->report_untraceable && EMIT_OVERFLOW(emit(&e, FINDING_UNTRACEABLE)))
                        return -ENOBUFS;
        } else if (o->config_known && ref->is_digest_only) {
                bool labelled = o->has_revision && o->revision[0];
                if (!labelled && p->report_untraceable && EMIT_OVERFLOW(emit(&e, FINDING_UNTRACEABLE)))
                        return -ENOBUFS;
        }

        *ret_n = e.n;
        return 0;
}

int policy_check_reference(const Policy *p, const char *ref, const Pins *pins, Finding *out, size_t max,
                           size_t *ret_n, char *err, size_t errlen) {
        char why[160];
        Ref r;
        if (ref_parse(ref, &r, why, sizeof(why)) < 0)
                return fail(err, errlen, "bad image reference: %s", why);
        if (r.is_image_id || ref_is_exempt(p, &r)) {
                *ret_n = 0;
                return 0;
        }
        Finding base = {};
        int k = fill_base(&base, &r, err, errlen);
        if (k < 0)
                return k;
        strcpy_bounded(base.image.digest, sizeof(base.image.digest), r.digest); /* "" if none */

        Emitter e = { .p = p, .out = out, .max = max, .base = &base };
        FindingKind tk = tag_kind(p, &r);
        if (tk != FINDING_PULL && EMIT_OVERFLOW(emit(&e, tk)))
                return -ENOBUFS;

        /* Offline there is no pulled digest: only a digest written next to a tag can
         * disagree with the pin of that tag. */
        const char *pin = r.digest[0] && r.tag[0] ? pins_lookup_ref(pins, &r) : NULL;
        if (pin && !streq_ptr(pin, r.digest)) {
                Finding *f = emit(&e, FINDING_DIGEST_MISMATCH);
                if (EMIT_OVERFLOW(f))
                        return -ENOBUFS;
                if (f)
                        strcpy_bounded(f->image.expected_digest, sizeof(f->image.expected_digest), pin);
        }
        *ret_n = e.n;
        return 0;
}
