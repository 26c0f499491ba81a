/* The reference grammar exactly as distribution/reference's test tables define it.
 *
 * The cases (inputs and expected outcomes) are transcribed from github.com/distribution/reference:
 *   reference_test.go  at commit ff14fafe2236e51c2894ac07d4bdfc778e96d682 (the current table,
 *                      where the 255-character limit counts the path only)
 *   normalize_test.go  at commit 4894124079e525c3c3c5c8aacaa653b5499004e9
 *   regexp_test.go     at commit 875f162f85f8d538cbe9780dbb8d7fb50794f4e6 (the regexps'
 *                      match tables, read as: this input parses or not)
 * One table per upstream test function, named after it; the C around them is ours.
 *
 * Upstream's Parse() does not normalise ("test_com" has no domain, "foo/bar" has domain
 * "foo"), pullwatch's ref_parse() always does (ParseNormalizedNamed + TagNameOnly). So for
 * the Parse tables the upstream repository name is carried as data and normalised here
 * by splitDockerDomain's rule (normalize.go) before it is compared.
 *
 * Skipped, and why:
 *   - TestParseRepositoryInfo's FamiliarName and TestParseReferenceWithTagAndDigest's
 *     FamiliarString: pullwatch prints no familiar (short) names; the familiar strings are
 *     still parsed as inputs and their normalised names checked.
 *   - TestParseAnyReference with a bare 64-hex identifier: ParseAnyReference reads it as
 *     sha256:<hex>; pullwatch parses names only (ParseNormalizedNamed), which rejects it
 *     (TestValidateReferenceName's invalid list holds the same string).
 *   - TestWithTag, TestWithDigest: constructors pullwatch does not have; their combined
 *     strings carry 37-hex sha256 digests that WithDigest accepts (it checks the digest
 *     regexp only) but Parse rejects. TestWithNameFailure's "example.com/repo:tag" is
 *     invalid only as a bare name (WithName), valid as a reference: skipped.
 *   - TestMatch, TestMatchError: FamiliarMatch (path.Match on familiar names), no such
 *     function in pullwatch.
 *   - TestSerialization's JSON round trip: only its parse outcomes are kept.
 *   - TestFullNameRegexp's "foo_bar.com:8080" (no name, but a valid reference: tag 8080)
 *     and strings.Repeat("a/", 128) + "a" (the regexp matches; as a normalised name its
 *     path is 257 characters, which ParseNormalizedNamed rejects as too long).
 *   - TestIdentifierRegexp is read as: a 64-hex identifier is rejected as a name, anything
 *     else is not rejected for being one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "pullwatch/ref.h"
#include "pullwatch/util.h"

#define F64 "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
#define ANY_ERROR ((RefError) -1) /* upstream only checks that there is an error */

/* ---- helpers ---- */

/* splitDockerDomain (normalize.go) applied to a full name, giving "domain/path". */
static void normalise_name(const char *name, char *buf, size_t size) {
        const char *slash = strchr(name, '/');
        char domain[PW_NAME_MAX] = "docker.io";
        const char *rest = name;
        if (slash) {
                size_t n = (size_t) (slash - name);
                char first[PW_NAME_MAX];
                assert_true(n < sizeof first);
                memcpy(first, name, n);
                first[n] = 0;
                bool upper = false;
                for (size_t i = 0; i < n; i++)
                        upper |= first[i] >= 'A' && first[i] <= 'Z';
                if (streq_ptr(first, "localhost") || strpbrk(first, ".:") || upper) {
                        strcpy_bounded(domain, sizeof domain, streq_ptr(first, "index.docker.io") ? "docker.io" : first);
                        rest = slash + 1;
                }
        }
        bool library = streq_ptr(domain, "docker.io") && !strchr(rest, '/');
        snprintf(buf, size, "%s/%s%s", domain, library ? "library/" : "", rest);
}

/* The upstream String() of a normalised reference: the implied latest is not written. */
static void canonical(const Ref *r, char *buf, size_t size) {
        if (r->is_image_id) {
                snprintf(buf, size, "%s", r->digest);
                return;
        }
        bool tag = r->tag[0] && !r->tag_implicit;
        snprintf(buf, size, "%s/%s%s%s%s%s", r->domain, r->path, tag ? ":" : "", tag ? r->tag : "",
                 r->digest[0] ? "@" : "", r->digest);
}

static const char *kind_name(RefError k) {
        static const char *const names[] = { "none", "format", "name-empty", "uppercase", "too-long",
                                             "digest-format", "digest-length", "digest-unsupported" };
        return k == ANY_ERROR ? "any error" : (size_t) k < ELEMENTSOF(names) ? names[k] : "?";
}

/* Parse in; fail the test naming table and input unless the outcome is err. */
static bool parse_expect(const char *table, const char *in, RefError err, Ref *r) {
        char why[256] = "";
        RefError got = REF_ERROR_NONE;
        int k = ref_parse_full(in, r, &got, why, sizeof why);
        if (err == REF_ERROR_NONE) {
                if (k < 0)
                        fail_msg("%s: \"%.80s\" must parse, got %s (%s)", table, in, kind_name(got), why);
                return true;
        }
        if (k >= 0)
                fail_msg("%s: \"%.80s\" must fail with %s, but parsed", table, in, kind_name(err));
        if (err != ANY_ERROR && got != err)
                fail_msg("%s: \"%.80s\" must fail with %s, got %s (%s)", table, in, kind_name(err), kind_name(got), why);
        if (!why[0])
                fail_msg("%s: \"%.80s\" failed without a reason", table, in);
        return false;
}

static void expect_str(const char *table, const char *in, const char *what, const char *got, const char *want) {
        if (!streq_ptr(got, want))
                fail_msg("%s: \"%.80s\": %s is \"%.100s\", expected \"%.100s\"", table, in, what, got, want);
}

/* ---- reference_test.go ---- */

typedef struct ParseCase {
        const char *in;
        RefError err;
        const char *repository, *domain, *tag, *digest; /* as upstream's Parse gives them */
} ParseCase;

static const ParseCase reference_parse[] = {
        { "test_com", 0, "test_com", "", "", "" },
        { "test.com:tag", 0, "test.com", "", "tag", "" },
        { "test.com:5000", 0, "test.com", "", "5000", "" },
        { "test.com/repo:tag", 0, "test.com/repo", "test.com", "tag", "" },
        { "test:5000/repo", 0, "test:5000/repo", "test:5000", "", "" },
        { "test:5000/repo:tag", 0, "test:5000/repo", "test:5000", "tag", "" },
        { "test:5000/repo@sha256:" F64, 0, "test:5000/repo", "test:5000", "", "sha256:" F64 },
        { "test:5000/repo:tag@sha256:" F64, 0, "test:5000/repo", "test:5000", "tag", "sha256:" F64 },
        { "test:5000/repo", 0, "test:5000/repo", "test:5000", "", "" },
        { "", REF_ERROR_NAME_EMPTY, NULL, NULL, NULL, NULL },
        { ":justtag", REF_ERROR_FORMAT, NULL, NULL, NULL, NULL },
        { "@sha256:" F64, REF_ERROR_FORMAT, NULL, NULL, NULL, NULL },
        { "repo@sha256:ffffffffffffffffffffffffffffffffff", REF_ERROR_DIGEST_LENGTH, NULL, NULL, NULL, NULL },
        { "validname@invaliddigest:" F64, REF_ERROR_DIGEST_UNSUPPORTED, NULL, NULL, NULL, NULL },
        { "Uppercase:tag", REF_ERROR_NAME_UPPERCASE, NULL, NULL, NULL, NULL },
        /* upstream's FIXME, commented out there too: "Uppercase/lowercase:tag" passes (domain) */
        { "test:5000/Uppercase/lowercase:tag", REF_ERROR_NAME_UPPERCASE, NULL, NULL, NULL, NULL },
        { "lowercase:Uppercase", 0, "lowercase", "", "Uppercase", "" },
        /* the two strings.Repeat cases are in test_reference_parse_long */
        { "aa/asdf$$^/aa", REF_ERROR_FORMAT, NULL, NULL, NULL, NULL },
        { "sub-dom1.foo.com/bar/baz/quux", 0, "sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "", "" },
        { "sub-dom1.foo.com/bar/baz/quux:some-long-tag", 0, "sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com",
          "some-long-tag", "" },
        { "b.gcr.io/test.example.com/my-app:test.example.com", 0, "b.gcr.io/test.example.com/my-app", "b.gcr.io",
          "test.example.com", "" },
        { "xn--n3h.com/myimage:xn--n3h.com", 0, "xn--n3h.com/myimage", "xn--n3h.com", "xn--n3h.com", "" },
        { "xn--7o8h.com/myimage:xn--7o8h.com@sha512:" F64 F64, 0, "xn--7o8h.com/myimage", "xn--7o8h.com",
          "xn--7o8h.com", "sha512:" F64 F64 },
        { "foo_bar.com:8080", 0, "foo_bar.com", "", "8080", "" },
        { "foo/foo_bar.com:8080", 0, "foo/foo_bar.com", "foo", "8080", "" },
        { "192.168.1.1", 0, "192.168.1.1", "", "", "" },
        { "192.168.1.1:tag", 0, "192.168.1.1", "", "tag", "" },
        { "192.168.1.1:5000", 0, "192.168.1.1", "", "5000", "" },
        { "192.168.1.1/repo", 0, "192.168.1.1/repo", "192.168.1.1", "", "" },
        { "192.168.1.1:5000/repo", 0, "192.168.1.1:5000/repo", "192.168.1.1:5000", "", "" },
        { "192.168.1.1:5000/repo:5050", 0, "192.168.1.1:5000/repo", "192.168.1.1:5000", "5050", "" },
        { "[2001:db8::1]", REF_ERROR_FORMAT, NULL, NULL, NULL, NULL },
        { "[2001:db8::1]:5000", REF_ERROR_FORMAT, NULL, NULL, NULL, NULL },
        { "[2001:db8::1]:tag", REF_ERROR_FORMAT, NULL, NULL, NULL, NULL },
        { "[2001:db8::1]/repo", 0, "[2001:db8::1]/repo", "[2001:db8::1]", "", "" },
        { "[2001:db8:1:2:3:4:5:6]/repo:tag", 0, "[2001:db8:1:2:3:4:5:6]/repo", "[2001:db8:1:2:3:4:5:6]", "tag", "" },
        { "[2001:db8::1]:5000/repo", 0, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "", "" },
        { "[2001:db8::1]:5000/repo:tag", 0, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "tag", "" },
        { "[2001:db8::1]:5000/repo@sha256:" F64, 0, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "",
          "sha256:" F64 },
        { "[2001:db8::1]:5000/repo:tag@sha256:" F64, 0, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "tag",
          "sha256:" F64 },
        { "[2001:db8::]:5000/repo", 0, "[2001:db8::]:5000/repo", "[2001:db8::]:5000", "", "" },
        { "[::1]:5000/repo", 0, "[::1]:5000/repo", "[::1]:5000", "", "" },
        { "[fe80::1%eth0]:5000/repo", REF_ERROR_FORMAT, NULL, NULL, NULL, NULL },
        { "[fe80::1%@invalidzone]:5000/repo", REF_ERROR_FORMAT, NULL, NULL, NULL, NULL },
};

/* TestSerialization: the parse outcome of each field value */
static const ParseCase serialization[] = {
        { "", REF_ERROR_NAME_EMPTY, NULL, NULL, NULL, NULL },
        { "example.com:8000/named", 0, "example.com:8000/named", "example.com:8000", "", "" },
        { "example.com:8000/named:tagged", 0, "example.com:8000/named", "example.com:8000", "tagged", "" },
        { "other.com/named@sha256:1234567890098765432112345667890098765432112345667890098765432112", 0,
          "other.com/named", "other.com", "",
          "sha256:1234567890098765432112345667890098765432112345667890098765432112" },
};

static void check_parse_case(const char *table, const ParseCase *c) {
        Ref r;
        if (!parse_expect(table, c->in, c->err, &r))
                return;
        char name[PW_NAME_MAX + 1], want[PW_NAME_MAX + 16], dom[PW_NAME_MAX];
        normalise_name(c->repository, want, sizeof want);
        assert_int_equal(ref_name(&r, name, sizeof name), 0);
        expect_str(table, c->in, "normalised name", name, want);
        /* where upstream's domain survives normalisation, it is ours too */
        const char *slash = strchr(want, '/');
        snprintf(dom, sizeof dom, "%.*s", (int) (slash - want), want);
        if (c->domain[0] && streq_ptr(dom, c->domain))
                expect_str(table, c->in, "domain", r.domain, c->domain);
        expect_str(table, c->in, "tag", r.tag_implicit ? "" : r.tag, c->tag);
        expect_str(table, c->in, "digest", r.digest, c->digest);
        /* Parse round-trips: the normalised string re-parses to the same reference */
        char out[PW_REF_MAX];
        Ref again;
        assert_int_equal(ref_format(&r, out, sizeof out), 0);
        if (ref_parse(out, &again, NULL, 0) < 0)
                fail_msg("%s: \"%s\": normalised form \"%s\" does not re-parse", table, c->in, out);
        again.tag_implicit = r.tag_implicit;
        assert_true(ref_equal(&r, &again));
}

static void test_reference_parse(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(reference_parse); i++)
                check_parse_case("TestReferenceParse", &reference_parse[i]);
        for (size_t i = 0; i < ELEMENTSOF(serialization); i++)
                check_parse_case("TestSerialization", &serialization[i]);
}

/* strings.Repeat cases, built at run time: prefix + unit * count + suffix */
typedef struct LongCase {
        const char *prefix, *unit;
        size_t count;
        const char *suffix;
        RefError err;
        const char *repo_prefix, *repo_unit; /* repository = repo_prefix + repo_unit * count + repo_suffix */
        const char *repo_suffix, *tag;
} LongCase;

static char *build(const char *prefix, const char *unit, size_t count, const char *suffix) {
        size_t n = strlen(prefix) + strlen(unit) * count + strlen(suffix) + 1;
        char *s = malloc(n);
        assert_non_null(s);
        strcpy(s, prefix);
        for (size_t i = 0; i < count; i++)
                strcat(s, unit);
        strcat(s, suffix);
        return s;
}

static void test_reference_parse_long(void **state) {
        static const LongCase cases[] = {
                /* TestReferenceParse */
                { "domain/", "a", 256, ":tag", REF_ERROR_NAME_TOO_LONG, NULL, NULL, NULL, NULL },
                { "", "a/", 127, "a:tag-puts-this-over-max", 0, "", "a/", "a", "tag-puts-this-over-max" },
                { "example.com/", "a", 255, ":tag", 0, "example.com/", "a", "", "tag" },
                /* TestWithNameFailure */
                { "example.com/", "a", 256, "", REF_ERROR_NAME_TOO_LONG, NULL, NULL, NULL, NULL },
                /* TestValidateRemoteName: "namespace too long" */
                { "", "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_", 3,
                  "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker", ANY_ERROR, NULL, NULL,
                  NULL, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const LongCase *c = &cases[i];
                _cleanup_free_ char *in = build(c->prefix, c->unit, c->count, c->suffix);
                _cleanup_free_ char *repo = c->repo_unit ? build(c->repo_prefix, c->repo_unit, c->count, c->repo_suffix)
                                                         : NULL;
                ParseCase pc = { in, c->err, repo, "", c->tag, "" };
                check_parse_case("TestReferenceParse (long)", &pc);
        }
}

/* TestWithNameFailure (the name-only case "example.com/repo:tag" skipped, see the top) */
static void test_with_name_failure(void **state) {
        static const char *const invalid[] = {
                "", ":justtag", "@sha256:" F64, "validname@invaliddigest:" F64, "aa/asdf$$^/aa",
        };
        Ref r;
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++)
                parse_expect("TestWithNameFailure", invalid[i], ANY_ERROR, &r);
}

typedef struct SplitCase {
        const char *in, *domain, *path;
} SplitCase;

static void check_split(const char *table, const SplitCase *cases, size_t n, bool upstream_unnormalised) {
        for (size_t i = 0; i < n; i++) {
                Ref r;
                parse_expect(table, cases[i].in, REF_ERROR_NONE, &r);
                char want[PW_NAME_MAX + 16], got[PW_NAME_MAX + 1], full[PW_NAME_MAX + 1];
                snprintf(full, sizeof full, "%s%s%s", cases[i].domain, cases[i].domain[0] ? "/" : "", cases[i].path);
                if (upstream_unnormalised)
                        normalise_name(full, want, sizeof want);
                else
                        snprintf(want, sizeof want, "%s", full);
                assert_int_equal(ref_name(&r, got, sizeof got), 0);
                expect_str(table, cases[i].in, "domain/path", got, want);
                if (!upstream_unnormalised) {
                        expect_str(table, cases[i].in, "domain", r.domain, cases[i].domain);
                        expect_str(table, cases[i].in, "path", r.path, cases[i].path);
                }
        }
}

/* TestDomainAndPath (WithName: domain "" means none, normalised here) */
static void test_domain_and_path(void **state) {
        static const SplitCase cases[] = {
                { "test.com/foo", "test.com", "foo" },
                { "test_com/foo", "", "test_com/foo" },
                { "test:8080/foo", "test:8080", "foo" },
                { "test.com:8080/foo", "test.com:8080", "foo" },
                { "test-com:8080/foo", "test-com:8080", "foo" },
                { "xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo" },
        };
        check_split("TestDomainAndPath", cases, ELEMENTSOF(cases), true);
}

/* TestParseNamed: canonical only if the normalised string is the input */
static void test_parse_named(void **state) {
        static const struct {
                const char *in;
                bool canonical;
                const char *domain, *path;
        } cases[] = {
                { "test.com/foo", true, "test.com", "foo" },
                { "test:8080/foo", true, "test:8080", "foo" },
                { "test_com/foo", false, NULL, NULL },
                { "test.com", false, NULL, NULL },
                { "foo", false, NULL, NULL },
                { "library/foo", false, NULL, NULL },
                { "docker.io/library/foo", true, "docker.io", "library/foo" },
                { "docker.io/foo", false, NULL, NULL }, /* ambiguous: library/ is added */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Ref r;
                char s[PW_REF_MAX];
                parse_expect("TestParseNamed", cases[i].in, REF_ERROR_NONE, &r);
                canonical(&r, s, sizeof s);
                if (streq_ptr(s, cases[i].in) != cases[i].canonical)
                        fail_msg("TestParseNamed: \"%s\" canonical as \"%s\": expected %s", cases[i].in, s,
                                 cases[i].canonical ? "canonical" : "not canonical");
                if (cases[i].canonical) {
                        expect_str("TestParseNamed", cases[i].in, "domain", r.domain, cases[i].domain);
                        expect_str("TestParseNamed", cases[i].in, "path", r.path, cases[i].path);
                }
        }
}

/* ---- normalize_test.go ---- */

static void test_validate_reference_name(void **state) {
        static const char *const valid[] = {
                "docker/docker",
                "library/debian",
                "debian",
                "docker.io/docker/docker",
                "docker.io/library/debian",
                "docker.io/debian",
                "index.docker.io/docker/docker",
                "index.docker.io/library/debian",
                "index.docker.io/debian",
                "127.0.0.1:5000/docker/docker",
                "127.0.0.1:5000/library/debian",
                "127.0.0.1:5000/debian",
                "192.168.0.1",
                "192.168.0.1:80",
                "192.168.0.1:8/debian",
                "192.168.0.2:25000/debian",
                "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
                "[fc00::1]:5000/docker",
                "[fc00::1]:5000/docker/docker",
                "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
                "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
                "Docker/docker",
                "DOCKER/docker",
        };
        static const char *const invalid[] = {
                "https://github.com/docker/docker",
                "docker/Docker",
                "-docker",
                "-docker/docker",
                "-docker.io/docker/docker",
                "docker///docker",
                "docker.io/docker/Docker",
                "docker.io/docker///docker",
                "[fc00::1]",
                "[fc00::1]:5000",
                "fc00::1:5000/debian",
                "[fe80::1%eth0]:5000/debian",
                "[2001:db8:3:4::192.0.2.33]:5000/debian",
                "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        };
        Ref r;
        for (size_t i = 0; i < ELEMENTSOF(valid); i++)
                parse_expect("TestValidateReferenceName", valid[i], REF_ERROR_NONE, &r);
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++)
                parse_expect("TestValidateReferenceName", invalid[i], ANY_ERROR, &r);
}

static void test_validate_remote_name(void **state) {
        static const char *const valid[] = {
                "docker/docker",
                "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
                "docker-rules/docker",
                "docker---rules/docker",
                "doc/docker",
                "d/docker",
                "jess/t",
                "dock__er/docker",
        };
        static const char *const invalid[] = {
                "docker/Docker",   "docker///docker", "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
                "-docker/docker",  "docker-/docker",  "-docker-/docker",
                "____/____",       "_docker/_docker", "dock..er/docker",
                "dock_.er/docker", "dock-.er/docker", "docker/",
                /* "namespace too long" is in test_reference_parse_long */
        };
        Ref r;
        for (size_t i = 0; i < ELEMENTSOF(valid); i++)
                parse_expect("TestValidateRemoteName", valid[i], REF_ERROR_NONE, &r);
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++)
                parse_expect("TestValidateRemoteName", invalid[i], ANY_ERROR, &r);
}

static void test_parse_repository_info(void **state) {
        static const struct {
                const char *remote, *familiar, *full, *ambiguous, *domain;
        } cases[] = {
                { "fooo/bar", "fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", "docker.io" },
                { "library/ubuntu", "ubuntu", "docker.io/library/ubuntu", "library/ubuntu", "docker.io" },
                { "nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", "", "docker.io" },
                { "other/library", "other/library", "docker.io/other/library", "", "docker.io" },
                { "private/moonbase", "127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", "",
                  "127.0.0.1:8000" },
                { "privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", "", "127.0.0.1:8000" },
                { "private/moonbase", "example.com/private/moonbase", "example.com/private/moonbase", "",
                  "example.com" },
                { "privatebase", "example.com/privatebase", "example.com/privatebase", "", "example.com" },
                { "private/moonbase", "example.com:8000/private/moonbase", "example.com:8000/private/moonbase", "",
                  "example.com:8000" },
                { "privatebasee", "example.com:8000/privatebasee", "example.com:8000/privatebasee", "",
                  "example.com:8000" },
                { "library/ubuntu-12.04-base", "ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base",
                  "index.docker.io/library/ubuntu-12.04-base", "docker.io" },
                { "library/foo", "foo", "docker.io/library/foo", "docker.io/foo", "docker.io" },
                { "library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", "", "docker.io" },
                { "store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", "", "docker.io" },
                { "bar", "Foo/bar", "Foo/bar", "", "Foo" },
                { "bar", "FOO/bar", "FOO/bar", "", "FOO" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const char *inputs[] = { cases[i].familiar, cases[i].full, cases[i].ambiguous };
                for (size_t j = 0; j < ELEMENTSOF(inputs); j++) {
                        Ref r;
                        char s[PW_REF_MAX];
                        if (!inputs[j][0])
                                continue;
                        parse_expect("TestParseRepositoryInfo", inputs[j], REF_ERROR_NONE, &r);
                        canonical(&r, s, sizeof s);
                        expect_str("TestParseRepositoryInfo", inputs[j], "FullName", s, cases[i].full);
                        expect_str("TestParseRepositoryInfo", inputs[j], "Domain", r.domain, cases[i].domain);
                        expect_str("TestParseRepositoryInfo", inputs[j], "RemoteName", r.path, cases[i].remote);
                }
        }
}

static void test_parse_reference_with_tag_and_digest(void **state) {
        static const char in[] = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
        Ref r;
        char s[PW_REF_MAX];
        parse_expect("TestParseReferenceWithTagAndDigest", in, REF_ERROR_NONE, &r);
        assert_int_equal(ref_format(&r, s, sizeof s), 0);
        assert_string_equal(s, "docker.io/library/busybox:latest@sha256:"
                               "86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa");
        assert_string_equal(r.tag, "latest");
        assert_false(r.tag_implicit);
        assert_string_equal(r.digest, "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa");
}

static void test_invalid_reference_components(void **state) {
        Ref r;
        parse_expect("TestInvalidReferenceComponents", "-foo", ANY_ERROR, &r);
        parse_expect("TestInvalidReferenceComponents", "busybox", REF_ERROR_NONE, &r);
        assert_false(ref_tag_is_valid("-foo"));   /* WithTag(ref, "-foo") */
        assert_false(ref_digest_is_valid("foo")); /* WithDigest(ref, "foo") */
}

/* TestParseAnyReference (the bare 64-hex identifier skipped, see the top) */
static void test_parse_any_reference(void **state) {
#define DBCC "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
        static const struct {
                const char *in, *equivalent;
        } cases[] = {
                { "redis", "docker.io/library/redis" },
                { "redis:latest", "docker.io/library/redis:latest" },
                { "docker.io/library/redis:latest", "docker.io/library/redis:latest" },
                { "redis@sha256:" DBCC, "docker.io/library/redis@sha256:" DBCC },
                { "docker.io/library/redis@sha256:" DBCC, "docker.io/library/redis@sha256:" DBCC },
                { "dmcgowan/myapp", "docker.io/dmcgowan/myapp" },
                { "dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest" },
                { "docker.io/mcgowan/myapp:latest", "docker.io/mcgowan/myapp:latest" },
                { "dmcgowan/myapp@sha256:" DBCC, "docker.io/dmcgowan/myapp@sha256:" DBCC },
                { "docker.io/dmcgowan/myapp@sha256:" DBCC, "docker.io/dmcgowan/myapp@sha256:" DBCC },
                { "sha256:" DBCC, "sha256:" DBCC },
                { "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9",
                  "docker.io/library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9" },
                { "dbcc1", "docker.io/library/dbcc1" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Ref r, e;
                char s[PW_REF_MAX];
                parse_expect("TestParseAnyReference", cases[i].in, REF_ERROR_NONE, &r);
                canonical(&r, s, sizeof s);
                expect_str("TestParseAnyReference", cases[i].in, "string", s, cases[i].equivalent);
                /* and the equivalent parses to the same reference */
                parse_expect("TestParseAnyReference", cases[i].equivalent, REF_ERROR_NONE, &e);
                assert_true(ref_equal(&r, &e));
        }
#undef DBCC
}

static void test_normalized_split_hostname(void **state) {
        static const SplitCase cases[] = {
                { "test.com/foo", "test.com", "foo" },
                { "test_com/foo", "docker.io", "test_com/foo" },
                { "docker/migrator", "docker.io", "docker/migrator" },
                { "test.com:8080/foo", "test.com:8080", "foo" },
                { "test-com:8080/foo", "test-com:8080", "foo" },
                { "foo", "docker.io", "library/foo" },
                { "xn--n3h.com/foo", "xn--n3h.com", "foo" },
                { "xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo" },
                { "docker.io/foo", "docker.io", "library/foo" },
                { "docker.io/library/foo", "docker.io", "library/foo" },
                { "docker.io/library/foo/bar", "docker.io", "library/foo/bar" },
        };
        check_split("TestNormalizedSplitHostname", cases, ELEMENTSOF(cases), false);
}

static void test_parse_docker_ref(void **state) {
#define E669 "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"
        static const struct {
                const char *name, *in, *expected;
        } cases[] = {
                { "nothing", "busybox", "docker.io/library/busybox:latest" },
                { "tag only", "busybox:latest", "docker.io/library/busybox:latest" },
                { "digest only", "busybox@" E669, "docker.io/library/busybox@" E669 },
                { "path only", "library/busybox", "docker.io/library/busybox:latest" },
                { "hostname only", "docker.io/busybox", "docker.io/library/busybox:latest" },
                { "no tag", "docker.io/library/busybox", "docker.io/library/busybox:latest" },
                { "no path", "docker.io/busybox:latest", "docker.io/library/busybox:latest" },
                { "no hostname", "library/busybox:latest", "docker.io/library/busybox:latest" },
                { "full reference with tag", "docker.io/library/busybox:latest", "docker.io/library/busybox:latest" },
                { "gcr reference without tag", "gcr.io/library/busybox", "gcr.io/library/busybox:latest" },
                { "both tag and digest", "gcr.io/library/busybox:latest@" E669, "gcr.io/library/busybox@" E669 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Ref r, again;
                char s[PW_REF_MAX];
                parse_expect("TestParseDockerRef", cases[i].in, REF_ERROR_NONE, &r);
                assert_int_equal(ref_format_docker(&r, s, sizeof s), 0);
                expect_str("TestParseDockerRef", cases[i].name, "docker ref", s, cases[i].expected);
                parse_expect("TestParseDockerRef", s, REF_ERROR_NONE, &again);
        }
#undef E669
}

/* ---- regexp_test.go ---- */

/* TestDomainRegexp: domainAndPort matches, so DOMAIN/repo parses (and keeps the domain). */
static void test_domain_regexp(void **state) {
        static const struct {
                const char *in;
                bool match;
        } cases[] = {
                { "test.com", true },
                { "test.com:10304", true },
                { "test.com:http", false },
                { "localhost", true },
                { "localhost:8080", true },
                { "a", true },
                { "a.b", true },
                { "ab.cd.com", true },
                { "a-b.com", true },
                { "-ab.com", false },
                { "ab-.com", false },
                { "ab.c-om", true },
                { "ab.-com", false },
                { "ab.com-", false },
                { "0101.com", true },
                { "001a.com", true },
                { "b.gbc.io:443", true },
                { "b.gbc.io", true },
                { "xn--n3h.com", true },
                { "Asdf.com", true },
                { "192.168.1.1:75050", true },
                { "192.168.1.1:750050", true },
                { "[fd00:1:2::3]:75050", true },
                { "[fd00:1:2::3]75050", false },
                { "[fd00:1:2::3]::75050", false },
                { "[fd00:1:2::3%eth0]:75050", false },
                { "[fd00123123123]:75050", true },
                { "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:75050", true },
                { "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:750505", true },
                { "fd00:1:2::3:75050", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char in[256], want[PW_NAME_MAX + 16], got[PW_NAME_MAX + 1];
                Ref r;
                snprintf(in, sizeof in, "%s/repo", cases[i].in);
                if (!parse_expect("TestDomainRegexp", in, cases[i].match ? REF_ERROR_NONE : ANY_ERROR, &r))
                        continue;
                normalise_name(in, want, sizeof want);
                assert_int_equal(ref_name(&r, got, sizeof got), 0);
                expect_str("TestDomainRegexp", in, "domain/path", got, want);
        }
}

/* TestFullNameRegexp: the name matches, so it parses as a reference (normalised). */
static void test_full_name_regexp(void **state) {
        static const struct {
                const char *in;
                bool match;
        } cases[] = {
                { "", false },
                { "short", true },
                { "simple/name", true },
                { "library/ubuntu", true },
                { "docker/stevvooe/app", true },
                { "aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb", true },
                { "aa/aa/bb/bb/bb", true },
                { "a/a/a/a", true },
                { "a/a/a/a/", false },
                { "a//a/a", false },
                { "a", true },
                { "a/aa", true },
                { "a/aa/a", true },
                { "foo.com", true },
                { "foo.com/", false },
                { "foo.com:8080/bar", true },
                { "foo.com:http/bar", false },
                { "foo.com/bar", true },
                { "foo.com/bar/baz", true },
                { "localhost:8080/bar", true },
                { "sub-dom1.foo.com/bar/baz/quux", true },
                { "blog.foo.com/bar/baz", true },
                { "a^a", false },
                { "aa/asdf$$^/aa", false },
                { "asdf$$^/aa", false },
                { "aa-a/a", true },
                { "a-/a/a/a", false },
                { "foo.com/a-/a/a", false },
                { "-foo/bar", false },
                { "foo/bar-", false },
                { "foo-/bar", false },
                { "foo/-bar", false },
                { "_foo/bar", false },
                { "foo_bar", true },
                { "foo_bar.com", true },
                { "foo_bar.com:8080/app", false },
                { "foo.com/foo_bar", true },
                { "____/____", false },
                { "_docker/_docker", false },
                { "docker_/docker_", false },
                { "b.gcr.io/test.example.com/my-app", true },
                { "xn--n3h.com/myimage", true },
                { "xn--7o8h.com/myimage", true },
                { "example.com/xn--7o8h.com/myimage", true },
                { "example.com/some_separator__underscore/myimage", true },
                { "example.com/__underscore/myimage", false },
                { "example.com/..dots/myimage", false },
                { "example.com/.dots/myimage", false },
                { "example.com/nodouble..dots/myimage", false },
                { "docker./docker", false },
                { ".docker/docker", false },
                { "docker-/docker", false },
                { "-docker/docker", false },
                { "do..cker/docker", false },
                { "do__cker:8080/docker", false },
                { "do__cker/docker", true },
                { "registry.io/foo/project--id.module--name.ver---sion--name", true },
                { "Asdf.com/foo/bar", true },
                { "Foo/FarB", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                ParseCase pc = { cases[i].in, cases[i].match ? REF_ERROR_NONE : ANY_ERROR, cases[i].in, "", "", "" };
                check_parse_case("TestFullNameRegexp", &pc);
        }
}

/* TestReferenceRegexp: name, tag and digest as the submatches give them */
static void test_reference_regexp(void **state) {
#define BE17 "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912"
        static const ParseCase cases[] = {
                { "registry.com:8080/myapp:tag", 0, "registry.com:8080/myapp", "registry.com:8080", "tag", "" },
                { "registry.com:8080/myapp@" BE17, 0, "registry.com:8080/myapp", "registry.com:8080", "", BE17 },
                { "registry.com:8080/myapp:tag2@" BE17, 0, "registry.com:8080/myapp", "registry.com:8080", "tag2",
                  BE17 },
                { "registry.com:8080/myapp@sha256:badbadbadbad", ANY_ERROR, NULL, NULL, NULL, NULL },
                { "registry.com:8080/myapp:invalid~tag", ANY_ERROR, NULL, NULL, NULL, NULL },
                { "bad_hostname.com:8080/myapp:tag", ANY_ERROR, NULL, NULL, NULL, NULL },
                /* localhost treated as name, missing tag with 8080 as tag */
                { "localhost:8080@" BE17, 0, "localhost", "", "8080", BE17 },
                { "localhost:8080/name@" BE17, 0, "localhost:8080/name", "localhost:8080", "", BE17 },
                { "localhost:http/name@" BE17, ANY_ERROR, NULL, NULL, NULL, NULL },
                /* localhost will be treated as an image name without a host */
                { "localhost@" BE17, 0, "localhost", "", "", BE17 },
                { "registry.com:8080/myapp@bad", ANY_ERROR, NULL, NULL, NULL, NULL },
                { "registry.com:8080/myapp@2bad", ANY_ERROR, NULL, NULL, NULL, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                check_parse_case("TestReferenceRegexp", &cases[i]);
#undef BE17
}

static void test_identifier_regexp(void **state) {
        static const struct {
                const char *in;
                bool match;
        } cases[] = {
                { "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821", true },
                { "7EC43B381E5AEFE6E04EFB0B3F0693FF2A4A50652D64AEC573905F2DB5889A1C", false },
                { "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf", false },
                { "sha256:da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821", false },
                { "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Ref r;
                char why[256] = "";
                int k = ref_parse(cases[i].in, &r, why, sizeof why);
                bool rejected_as_id = k < 0 && strstr(why, "64-character hex");
                if (rejected_as_id != cases[i].match)
                        fail_msg("TestIdentifierRegexp: \"%s\": %s (%s)", cases[i].in,
                                 cases[i].match ? "must be rejected as an identifier" : "is no identifier", why);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_reference_parse),
                cmocka_unit_test(test_reference_parse_long),
                cmocka_unit_test(test_with_name_failure),
                cmocka_unit_test(test_domain_and_path),
                cmocka_unit_test(test_parse_named),
                cmocka_unit_test(test_validate_reference_name),
                cmocka_unit_test(test_validate_remote_name),
                cmocka_unit_test(test_parse_repository_info),
                cmocka_unit_test(test_parse_reference_with_tag_and_digest),
                cmocka_unit_test(test_invalid_reference_components),
                cmocka_unit_test(test_parse_any_reference),
                cmocka_unit_test(test_normalized_split_hostname),
                cmocka_unit_test(test_parse_docker_ref),
                cmocka_unit_test(test_domain_regexp),
                cmocka_unit_test(test_full_name_regexp),
                cmocka_unit_test(test_reference_regexp),
                cmocka_unit_test(test_identifier_regexp),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
