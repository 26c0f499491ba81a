/* Policy rules: one table per rule. Each case is an observation and the kinds it must
 * give, in the order policy_evaluate emits them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "pullwatch/policy.h"
#include "pullwatch/util.h"

#define H(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
#define DA "sha256:" H("a")
#define DB "sha256:" H("b")
#define DC "sha256:" H("c")
#define SHA40 "9f2c1ab0123456789abcdef0123456789abcdef0"

typedef struct Case {
        const char *ref;
        const char *digest;   /* NULL: DA */
        const char *platform; /* NULL: "" (target is a manifest) */
        const char *previous; /* ledger's previous digest */
        bool config_known;
        const char *revision; /* NULL: no label */
        const char *ns, *k8s_ns;
        const char *expect; /* kinds, space-separated, in emission order; "" for none */
} Case;

static void make_observation(const Case *c, Observation *o) {
        memset(o, 0, sizeof(*o));
        strcpy_bounded(o->namespace, sizeof(o->namespace), c->ns ? c->ns : "default");
        strcpy_bounded(o->ref, sizeof(o->ref), c->ref);
        strcpy_bounded(o->digest, sizeof(o->digest), c->digest ? c->digest : DA);
        strcpy_bounded(o->platform_digest, sizeof(o->platform_digest), c->platform ? c->platform : "");
        strcpy_bounded(o->media_type, sizeof(o->media_type), "application/vnd.oci.image.index.v1+json");
        o->config_known = c->config_known;
        o->has_revision = c->revision != NULL;
        strcpy_bounded(o->revision, sizeof(o->revision), c->revision ? c->revision : "");
        strcpy_bounded(o->workload.namespace, sizeof(o->workload.namespace), c->k8s_ns ? c->k8s_ns : "");
        o->time_usec = 1700000000000000ULL;
}

static void kinds_string(const Finding *f, size_t n, char *buf, size_t len) {
        buf[0] = 0;
        size_t o = 0;
        for (size_t i = 0; i < n; i++)
                o += (size_t) snprintf(buf + o, len - o, "%s%s", i ? " " : "", finding_kind_to_string(f[i].kind));
}

static void run_table(const char *name, const Policy *p, const Pins *pins, const Case *cases, size_t n) {
        for (size_t i = 0; i < n; i++) {
                Observation o;
                Finding out[POLICY_FINDINGS_MAX];
                size_t nf = 99;
                char err[256] = "", got[256];
                make_observation(&cases[i], &o);
                int r = policy_evaluate(p, &o, cases[i].previous, pins, out, ELEMENTSOF(out), &nf, err, sizeof(err));
                if (r < 0)
                        fail_msg("%s case %zu (%s): error %d %s", name, i, cases[i].ref, r, err);
                kinds_string(out, nf, got, sizeof(got));
                if (!streq_ptr(got, cases[i].expect))
                        fail_msg("%s case %zu (%s): got \"%s\", expected \"%s\"", name, i, cases[i].ref, got,
                                 cases[i].expect);
        }
}

static Policy *policy_with(void (*tweak)(Config *c)) {
        Config c;
        Policy *p = NULL;
        char err[256] = "";
        assert_int_equal(config_init(&c), 0);
        if (tweak)
                tweak(&c);
        int r = policy_new_from_config(&c, &p, err, sizeof(err));
        if (r < 0)
                fail_msg("policy_new_from_config: %s", err);
        config_done(&c);
        return p;
}

static void set_list(StrList *l, const char *const *items) {
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
        *l = (StrList) {};
        for (size_t n = 0; items[n]; n++) {
                l->v = realloc(l->v, (n + 1) * sizeof(char *));
                l->v[n] = strdup(items[n]);
                l->n = n + 1;
        }
}

/* ---- latest_tag ---- */

static void test_latest_tag(void **state) {
        static const Case cases[] = {
                { .ref = "docker.io/library/nginx:latest", .expect = "latest_tag" },
                { .ref = "nginx", .expect = "latest_tag" },
                { .ref = "docker.io/library/nginx", .expect = "latest_tag" },
                { .ref = "localhost:5000/app", .expect = "latest_tag" },
                { .ref = "nginx:latest@" DA, .expect = "latest_tag" },
                { .ref = "docker.io/library/nginx:1.25", .expect = "" },
                { .ref = "nginx:Latest", .expect = "" }, /* tags are case-sensitive */
                { .ref = "docker.io/library/nginx@" DA, .expect = "" },
                { .ref = DA, .expect = "" },
        };
        Policy *p = policy_with(NULL);
        run_table("latest_tag", p, NULL, cases, ELEMENTSOF(cases));

        /* fields of one finding, and the implicit flag */
        Observation o;
        Finding f[POLICY_FINDINGS_MAX];
        size_t n;
        make_observation(&(Case) { .ref = "nginx", .ns = "k8s.io", .k8s_ns = "shop" }, &o);
        strcpy_bounded(o.workload.pod, sizeof(o.workload.pod), "web-1");
        assert_int_equal(policy_evaluate(p, &o, NULL, NULL, f, ELEMENTSOF(f), &n, NULL, 0), 0);
        assert_int_equal(n, 1);
        assert_int_equal(f[0].kind, FINDING_LATEST_TAG);
        assert_int_equal(f[0].severity, SEVERITY_MEDIUM);
        assert_string_equal(f[0].image.ref, "docker.io/library/nginx:latest");
        assert_string_equal(f[0].image.name, "docker.io/library/nginx");
        assert_string_equal(f[0].image.tag, "latest");
        assert_true(f[0].image.tag_implicit);
        assert_string_equal(f[0].image.digest, DA);
        assert_string_equal(f[0].image.media_type, "application/vnd.oci.image.index.v1+json");
        assert_string_equal(f[0].namespace, "k8s.io");
        assert_string_equal(f[0].workload.namespace, "shop");
        assert_string_equal(f[0].workload.pod, "web-1");
        assert_int_equal(f[0].time_usec, 1700000000000000ULL);
        assert_string_equal(f[0].id, "");
        assert_string_equal(f[0].node, "");
        assert_string_equal(f[0].message, "");

        make_observation(&(Case) { .ref = "nginx:latest" }, &o);
        assert_int_equal(policy_evaluate(p, &o, NULL, NULL, f, ELEMENTSOF(f), &n, NULL, 0), 0);
        assert_false(f[0].image.tag_implicit);
        policy_free(p);
}

/* ---- mutable_tag ---- */

static void strict_on(Config *c) {
        c->strict = true;
}
static void custom_mutable(Config *c) {
        static const char *const tags[] = { "prod", NULL };
        set_list(&c->mutable_tags, tags);
}
static void strict_custom_patterns(Config *c) {
        static const char *const pats[] = { "^release-[0-9]+$", NULL };
        c->strict = true;
        set_list(&c->allowed_tag_patterns, pats);
}

static void test_mutable_tag(void **state) {
        static const Case defaults[] = {
                { .ref = "app:main", .expect = "mutable_tag" },
                { .ref = "app:master", .expect = "mutable_tag" },
                { .ref = "app:develop", .expect = "mutable_tag" },
                { .ref = "app:dev", .expect = "mutable_tag" },
                { .ref = "app:stable", .expect = "mutable_tag" },
                { .ref = "app:edge", .expect = "mutable_tag" },
                { .ref = "app:nightly", .expect = "mutable_tag" },
                { .ref = "app:release", .expect = "mutable_tag" },
                { .ref = "app:latest", .expect = "latest_tag" }, /* not twice */
                { .ref = "app:feature-x", .expect = "" },        /* not strict */
                { .ref = "app:v1.2.3", .expect = "" },
                { .ref = "app:main@" DA, .expect = "mutable_tag" },
                { .ref = "app@" DA, .expect = "" },
        };
        static const Case strict[] = {
                { .ref = "app:feature-x", .expect = "mutable_tag" },
                { .ref = "app:9f2c1ab", .expect = "" },
                { .ref = "app:" SHA40, .expect = "" },
                { .ref = "app:v1.2.3", .expect = "" },
                { .ref = "app:1.2.3-rc.1", .expect = "" },
                { .ref = "app:1.2", .expect = "" },
                { .ref = "app:1", .expect = "mutable_tag" },
                { .ref = "app:v1.2.3-alpine", .expect = "" },
                { .ref = "app:main", .expect = "mutable_tag" },
                { .ref = "app:latest", .expect = "latest_tag" },
                { .ref = "app", .expect = "latest_tag" },
                { .ref = "app@" DA, .expect = "" },
                { .ref = DA, .expect = "" },
        };
        static const Case custom[] = {
                { .ref = "app:prod", .expect = "mutable_tag" },
                { .ref = "app:main", .expect = "" },
                { .ref = "app:latest", .expect = "latest_tag" }, /* latest is always latest */
        };
        static const Case custom_patterns[] = {
                { .ref = "app:release-12", .expect = "" },
                { .ref = "app:v1.2.3", .expect = "mutable_tag" },
                { .ref = "app:release-12x", .expect = "mutable_tag" },
        };
        Policy *p = policy_with(NULL);
        run_table("mutable_tag/defaults", p, NULL, defaults, ELEMENTSOF(defaults));
        policy_free(p);
        p = policy_with(strict_on);
        run_table("mutable_tag/strict", p, NULL, strict, ELEMENTSOF(strict));
        policy_free(p);
        p = policy_with(custom_mutable);
        run_table("mutable_tag/custom", p, NULL, custom, ELEMENTSOF(custom));
        policy_free(p);
        p = policy_with(strict_custom_patterns);
        run_table("mutable_tag/patterns", p, NULL, custom_patterns, ELEMENTSOF(custom_patterns));
        policy_free(p);
}

/* The default allowed patterns agree with the ref helpers on what is a version or a
 * commit id (except all-digit short ids, which the regex allows and the revision rule
 * does not take for commits). */
static void test_default_patterns_match_helpers(void **state) {
        static const char *const tags[] = { "9f2c1ab", SHA40, "v1.2.3", "1.2", "1.2.3-rc.1", "1.2.3-rc.1.b5",
                                            "v1.2.3-alpine", "main", "1", "v1", "1.2.3.4", "V1.2", "latest",
                                            "9F2C1AB", "feature-x" };
        Policy *p = policy_with(strict_on);
        for (size_t i = 0; i < ELEMENTSOF(tags); i++) {
                char ref[200];
                Finding f[POLICY_FINDINGS_MAX];
                size_t n;
                snprintf(ref, sizeof(ref), "app:%s", tags[i]);
                assert_int_equal(policy_check_reference(p, ref, NULL, f, ELEMENTSOF(f), &n, NULL, 0), 0);
                bool allowed = n == 0;
                bool helper = ref_is_commit_sha_tag(tags[i]) || ref_is_semver_tag(tags[i]);
                if (allowed != helper)
                        fail_msg("tag %s: patterns say %d, helpers %d", tags[i], allowed, helper);
        }
        policy_free(p);
}

/* ---- tag_moved ---- */

static void test_tag_moved(void **state) {
        static const Case cases[] = {
                { .ref = "app:1.0", .previous = NULL, .expect = "" },
                { .ref = "app:1.0", .previous = "", .expect = "" },
                { .ref = "app:1.0", .previous = DA, .expect = "" },
                { .ref = "app:1.0", .previous = DB, .expect = "tag_moved" },
                { .ref = "app:latest", .previous = DB, .expect = "latest_tag tag_moved" },
                { .ref = "app", .digest = DC, .previous = DB, .expect = "latest_tag tag_moved" },
                { .ref = DA, .previous = DB, .expect = "" }, /* image id records: nothing */
        };
        Policy *p = policy_with(NULL);
        run_table("tag_moved", p, NULL, cases, ELEMENTSOF(cases));

        Observation o;
        Finding f[POLICY_FINDINGS_MAX];
        size_t n;
        make_observation(&(Case) { .ref = "app:1.0", .digest = DC }, &o);
        assert_int_equal(policy_evaluate(p, &o, DB, NULL, f, ELEMENTSOF(f), &n, NULL, 0), 0);
        assert_int_equal(n, 1);
        assert_int_equal(f[0].kind, FINDING_TAG_MOVED);
        assert_int_equal(f[0].severity, SEVERITY_HIGH);
        assert_string_equal(f[0].image.previous_digest, DB);
        assert_string_equal(f[0].image.digest, DC);
        assert_string_equal(f[0].image.expected_digest, "");
        policy_free(p);
}

/* ---- digest_mismatch ---- */

static void test_digest_mismatch(void **state) {
        static const char json[] = "{\"nginx:1.25\": \"" DA "\", \"ghcr.io/acme/app:2\": \"" DC "\"}";
        static const Case cases[] = {
                { .ref = "docker.io/library/nginx:1.25", .digest = DA, .expect = "" },
                { .ref = "docker.io/library/nginx:1.25", .digest = DB, .expect = "digest_mismatch" },
                /* pinned at the platform manifest, the node pulled the index: fine */
                { .ref = "docker.io/library/nginx:1.25", .digest = DB, .platform = DA, .expect = "" },
                /* pinned at the index: fine whatever the platform manifest */
                { .ref = "ghcr.io/acme/app:2", .digest = DC, .platform = DA, .expect = "" },
                { .ref = "ghcr.io/acme/app:2", .digest = DA, .platform = DB, .expect = "digest_mismatch" },
                /* unpinned */
                { .ref = "docker.io/library/nginx:1.26", .digest = DB, .expect = "" },
                /* the reference carries its own pin */
                { .ref = "docker.io/library/redis:7@" DA, .digest = DA, .expect = "" },
                { .ref = "docker.io/library/redis:7@" DA, .digest = DB, .expect = "digest_mismatch" },
                { .ref = "docker.io/library/redis:7@" DA, .digest = DB, .platform = DA, .expect = "" },
                /* written digest agrees, the pins file does not */
                { .ref = "docker.io/library/nginx:1.25@" DB, .digest = DB, .expect = "digest_mismatch" },
                /* digest-only records */
                { .ref = "docker.io/library/nginx@" DA, .digest = DA, .expect = "" },
                { .ref = "docker.io/library/nginx@" DA, .digest = DB, .expect = "digest_mismatch" },
                { .ref = DA, .digest = DB, .expect = "" },
                /* several rules at once */
                { .ref = "docker.io/library/nginx:1.25", .digest = DB, .previous = DC,
                  .expect = "tag_moved digest_mismatch" },
        };
        Pins *pins = NULL;
        assert_int_equal(pins_parse(json, strlen(json), &pins, NULL, 0), 0);
        Policy *p = policy_with(NULL);
        run_table("digest_mismatch", p, pins, cases, ELEMENTSOF(cases));

        Observation o;
        Finding f[POLICY_FINDINGS_MAX];
        size_t n;
        make_observation(&(Case) { .ref = "nginx:1.25", .digest = DB }, &o);
        assert_int_equal(policy_evaluate(p, &o, NULL, pins, f, ELEMENTSOF(f), &n, NULL, 0), 0);
        assert_int_equal(n, 1);
        assert_int_equal(f[0].severity, SEVERITY_CRITICAL);
        assert_string_equal(f[0].image.expected_digest, DA);
        assert_string_equal(f[0].image.digest, DB);

        make_observation(&(Case) { .ref = "nginx:1.25@" DB, .digest = DB }, &o);
        assert_int_equal(policy_evaluate(p, &o, NULL, pins, f, ELEMENTSOF(f), &n, NULL, 0), 0);
        assert_int_equal(n, 1);
        assert_string_equal(f[0].image.expected_digest, DA);
        make_observation(&(Case) { .ref = "redis:7@" DA, .digest = DB }, &o);
        assert_int_equal(policy_evaluate(p, &o, NULL, pins, f, ELEMENTSOF(f), &n, NULL, 0), 0);
        assert_string_equal(f[0].image.expected_digest, DA);

        /* without pins only references carrying a digest can mismatch */
        static const Case nopins[] = {
                { .ref = "docker.io/library/nginx:1.25", .digest = DB, .expect = "" },
                { .ref = "docker.io/library/redis:7@" DA, .digest = DB, .expect = "digest_mismatch" },
        };
        run_table("digest_mismatch/nopins", p, NULL, nopins, ELEMENTSOF(nopins));
        policy_free(p);
        pins_free(pins);
}

/* ---- revision_mismatch and untraceable ---- */

static void no_untraceable(Config *c) {
        c->report_untraceable = false;
}
static void revision_off(Config *c) {
        c->severity[FINDING_REVISION_MISMATCH] = CONFIG_SEVERITY_OFF;
}

static void test_revision(void **state) {
        static const Case cases[] = {
                { .ref = "app:9f2c1ab", .config_known = true, .revision = SHA40, .expect = "" },
                { .ref = "app:9f2c1ab", .config_known = true, .revision = "9F2C1AB0123", .expect = "" },
                { .ref = "app:" SHA40, .config_known = true, .revision = SHA40, .expect = "" },
                { .ref = "app:9f2c1ab", .config_known = true, .revision = "0123456789", .expect = "revision_mismatch" },
                { .ref = "app:9f2c1ab", .config_known = true, .revision = "9f2c1a", .expect = "revision_mismatch" },
                { .ref = "app:9f2c1ab", .config_known = true, .revision = "", .expect = "revision_mismatch" },
                { .ref = "app:9f2c1ab", .config_known = true, .revision = NULL, .expect = "revision_mismatch" },
                { .ref = "app:9f2c1ab", .config_known = false, .revision = NULL, .expect = "" },
                { .ref = "app:9f2c1ab", .config_known = false, .revision = "0000000", .expect = "" },
                { .ref = "app:20240101", .config_known = true, .revision = SHA40, .expect = "" }, /* a date */
                { .ref = "app:v1.2.3", .config_known = true, .revision = NULL, .expect = "untraceable" },
                { .ref = "app:v1.2.3", .config_known = true, .revision = "abc", .expect = "" },
                { .ref = "app:v1.2.3", .config_known = false, .revision = NULL, .expect = "" },
                { .ref = "app@" DA, .config_known = true, .revision = NULL, .expect = "untraceable" },
                { .ref = "app@" DA, .config_known = true, .revision = SHA40, .expect = "" },
                { .ref = DA, .config_known = true, .revision = NULL, .expect = "" },
                { .ref = "app", .config_known = true, .revision = NULL, .expect = "latest_tag untraceable" },
                { .ref = "app:9f2c1ab", .previous = DB, .config_known = true, .revision = "0000000",
                  .expect = "tag_moved revision_mismatch" },
        };
        static const Case quiet[] = {
                { .ref = "app:v1.2.3", .config_known = true, .revision = NULL, .expect = "" },
                { .ref = "app:9f2c1ab", .config_known = true, .revision = NULL, .expect = "revision_mismatch" },
        };
        static const Case rev_off[] = {
                { .ref = "app:9f2c1ab", .config_known = true, .revision = "0000000", .expect = "" },
                /* the missing label still counts */
                { .ref = "app:9f2c1ab", .config_known = true, .revision = NULL, .expect = "untraceable" },
        };
        Policy *p = policy_with(NULL);
        run_table("revision", p, NULL, cases, ELEMENTSOF(cases));
        policy_free(p);
        p = policy_with(no_untraceable);
        run_table("revision/quiet", p, NULL, quiet, ELEMENTSOF(quiet));
        policy_free(p);
        p = policy_with(revision_off);
        run_table("revision/off", p, NULL, rev_off, ELEMENTSOF(rev_off));
        policy_free(p);

        p = policy_with(NULL);
        Observation o;
        Finding f[POLICY_FINDINGS_MAX];
        size_t n;
        make_observation(&(Case) { .ref = "app:9f2c1ab", .config_known = true, .revision = "0000000" }, &o);
        assert_int_equal(policy_evaluate(p, &o, NULL, NULL, f, ELEMENTSOF(f), &n, NULL, 0), 0);
        assert_int_equal(f[0].severity, SEVERITY_HIGH);
        assert_string_equal(f[0].image.revision, "0000000");
        make_observation(&(Case) { .ref = "app:v1", .config_known = true }, &o);
        assert_int_equal(policy_evaluate(p, &o, NULL, NULL, f, ELEMENTSOF(f), &n, NULL, 0), 0);
        assert_int_equal(f[0].kind, FINDING_UNTRACEABLE);
        assert_int_equal(f[0].severity, SEVERITY_LOW);
        assert_string_equal(f[0].image.revision, "");
        policy_free(p);
}

/* ---- exemptions ---- */

static void exemptions(Config *c) {
        static const char *const ns[] = { "moby", NULL };
        static const char *const k8s[] = { "kube-system", NULL };
        static const char *const reg[] = { "Registry.K8S.io", "index.docker.io", NULL };
        static const char *const repo[] = { "busybox", "ghcr.io/acme/*", "acme/*", "localhost:5000/team/app", NULL };
        set_list(&c->exempt_namespaces, ns);
        set_list(&c->exempt_k8s_namespaces, k8s);
        set_list(&c->exempt_registries, reg);
        set_list(&c->exempt_repositories, repo);
}
static void exempt_docker_io_only_acme(Config *c) {
        static const char *const repo[] = { "acme/*", "ghcr.io/acme/*", "busybox", NULL };
        set_list(&c->exempt_repositories, repo);
}

static void test_exemptions(void **state) {
        static const Case cases[] = {
                { .ref = "quay.io/x/app:latest", .ns = "moby", .expect = "" },
                { .ref = "quay.io/x/app:latest", .ns = "k8s.io", .expect = "latest_tag" },
                { .ref = "quay.io/x/app:latest", .ns = "k8s.io", .k8s_ns = "kube-system", .expect = "" },
                { .ref = "quay.io/x/app:latest", .ns = "k8s.io", .k8s_ns = "shop", .expect = "latest_tag" },
                { .ref = "registry.k8s.io/pause:latest", .expect = "" },     /* registry, any case */
                { .ref = "nginx:latest", .expect = "" },                     /* docker.io via index.docker.io */
        };
        Policy *p = policy_with(exemptions);
        run_table("exemptions", p, NULL, cases, ELEMENTSOF(cases));
        policy_free(p);

        static const Case repos[] = {
                { .ref = "busybox", .expect = "" },
                { .ref = "docker.io/library/busybox:latest", .previous = DB, .expect = "" },
                { .ref = "docker.io/library/busybox2:latest", .expect = "latest_tag" },
                { .ref = "ghcr.io/acme/app:latest", .expect = "" },
                { .ref = "ghcr.io/acme/deep/app:main", .expect = "" },
                { .ref = "ghcr.io/acmex/app:latest", .expect = "latest_tag" },
                { .ref = "ghcr.io/other/acme:latest", .expect = "latest_tag" },
                { .ref = "acme/tool:latest", .expect = "" },
                { .ref = "docker.io/acme/tool:latest", .expect = "" },
                { .ref = "quay.io/acme/tool:latest", .expect = "latest_tag" },
        };
        p = policy_with(exempt_docker_io_only_acme);
        run_table("exemptions/repositories", p, NULL, repos, ELEMENTSOF(repos));

        /* check REF honours registry and repository exemptions too */
        Finding f[POLICY_FINDINGS_MAX];
        size_t n = 9;
        assert_int_equal(policy_check_reference(p, "ghcr.io/acme/app:latest", NULL, f, ELEMENTSOF(f), &n, NULL, 0), 0);
        assert_int_equal(n, 0);
        Observation o;
        make_observation(&(Case) { .ref = "acme/x" }, &o);
        assert_int_equal(policy_is_exempt(p, &o), 1);
        make_observation(&(Case) { .ref = "other/x" }, &o);
        assert_int_equal(policy_is_exempt(p, &o), 0);
        make_observation(&(Case) { .ref = "Bad Ref" }, &o);
        assert_int_equal(policy_is_exempt(p, &o), -EINVAL);
        policy_free(p);
}

/* ---- severities and switches ---- */

static void severities(Config *c) {
        c->severity[FINDING_LATEST_TAG] = SEVERITY_CRITICAL;
        c->severity[FINDING_TAG_MOVED] = CONFIG_SEVERITY_OFF;
        c->severity[FINDING_MUTABLE_TAG] = SEVERITY_INFO;
}

static void test_severity_and_disable(void **state) {
        static const Case cases[] = {
                { .ref = "app", .previous = DB, .expect = "latest_tag" },
                { .ref = "app:1", .previous = DB, .expect = "" },
                { .ref = "app:main", .expect = "mutable_tag" },
        };
        Policy *p = policy_with(severities);
        run_table("severity", p, NULL, cases, ELEMENTSOF(cases));
        assert_false(policy_kind_enabled(p, FINDING_TAG_MOVED));
        assert_true(policy_kind_enabled(p, FINDING_LATEST_TAG));
        assert_false(policy_kind_enabled(p, FINDING_PULL));
        assert_int_equal(policy_severity(p, FINDING_LATEST_TAG), SEVERITY_CRITICAL);
        assert_int_equal(policy_severity(p, FINDING_MUTABLE_TAG), SEVERITY_INFO);
        assert_int_equal(policy_severity(p, FINDING_DIGEST_MISMATCH), SEVERITY_CRITICAL);

        Observation o;
        Finding f[POLICY_FINDINGS_MAX];
        size_t n;
        make_observation(&(Case) { .ref = "app:main" }, &o);
        assert_int_equal(policy_evaluate(p, &o, NULL, NULL, f, ELEMENTSOF(f), &n, NULL, 0), 0);
        assert_int_equal(f[0].severity, SEVERITY_INFO);
        policy_free(p);
}

/* ---- check REF ---- */

typedef struct CheckCase {
        const char *ref;
        const char *expect;
        const char *expected_digest;
} CheckCase;

static void test_check_reference(void **state) {
        static const char json[] = "{\"nginx:1.25\": \"" DA "\"}";
        static const CheckCase cases[] = {
                { "nginx", "latest_tag", NULL },
                { "nginx:main", "mutable_tag", NULL },
                { "nginx:1.25", "", NULL },                       /* no digest: nothing to compare */
                { "nginx:1.25@" DA, "", NULL },
                { "nginx:1.25@" DB, "digest_mismatch", DA },
                { "docker.io/library/nginx:1.25@" DB, "digest_mismatch", DA },
                { "nginx:1.26@" DB, "", NULL },                   /* unpinned */
                { "nginx@" DB, "", NULL },                        /* no tag to look up */
                { "nginx:latest@" DB, "latest_tag", NULL },
                { DA, "", NULL },
        };
        Pins *pins = NULL;
        assert_int_equal(pins_parse(json, strlen(json), &pins, NULL, 0), 0);
        Policy *p = policy_with(NULL);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Finding f[POLICY_FINDINGS_MAX];
                size_t n = 99;
                char err[256] = "", got[256];
                int r = policy_check_reference(p, cases[i].ref, pins, f, ELEMENTSOF(f), &n, err, sizeof(err));
                if (r < 0)
                        fail_msg("check %s: %s", cases[i].ref, err);
                kinds_string(f, n, got, sizeof(got));
                if (!streq_ptr(got, cases[i].expect))
                        fail_msg("check %s: got \"%s\", expected \"%s\"", cases[i].ref, got, cases[i].expect);
                if (cases[i].expected_digest)
                        assert_string_equal(f[0].image.expected_digest, cases[i].expected_digest);
                for (size_t j = 0; j < n; j++) {
                        assert_int_equal(f[j].time_usec, 0);
                        assert_string_equal(f[j].namespace, "");
                }
        }

        Finding f[POLICY_FINDINGS_MAX];
        size_t n = 42;
        char err[256] = "";
        assert_int_equal(policy_check_reference(p, "Nginx:1", pins, f, ELEMENTSOF(f), &n, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "bad image reference: repository name must be lowercase");
        assert_int_equal(n, 42);
        assert_int_equal(policy_check_reference(p, "nginx\n", pins, f, ELEMENTSOF(f), &n, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "bad image reference: control character 0x0a at offset 5");
        policy_free(p);
        pins_free(pins);
}

/* ---- construction errors and bounds ---- */

static void bad_regex(Config *c) {
        static const char *const pats[] = { "^ok$", "([unclosed", NULL };
        set_list(&c->allowed_tag_patterns, pats);
}
static void bad_repo_tag(Config *c) {
        static const char *const repo[] = { "nginx:1.25", NULL };
        set_list(&c->exempt_repositories, repo);
}
static void bad_repo_upper(Config *c) {
        static const char *const repo[] = { "Nginx", NULL };
        set_list(&c->exempt_repositories, repo);
}
static void bad_repo_star(Config *c) {
        static const char *const repo[] = { "/*", NULL };
        set_list(&c->exempt_repositories, repo);
}

static void test_bad_config(void **state) {
        static const struct {
                void (*tweak)(Config *c);
                const char *err_prefix;
        } cases[] = {
                { bad_regex, "allowed_tag_patterns: \"([unclosed\": " },
                { bad_repo_tag, "exempt_repositories: \"nginx:1.25\" must be a repository name without tag or digest" },
                { bad_repo_upper, "exempt_repositories: \"Nginx\": repository name must be lowercase" },
                { bad_repo_star, "exempt_repositories: \"/*\" needs a prefix" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Config c;
                Policy *p = (Policy *) 0x1;
                char err[256] = "";
                assert_int_equal(config_init(&c), 0);
                cases[i].tweak(&c);
                assert_int_equal(policy_new_from_config(&c, &p, err, sizeof(err)), -EINVAL);
                if (!startswith(err, cases[i].err_prefix))
                        fail_msg("case %zu: \"%s\"", i, err);
                assert_ptr_equal(p, (Policy *) 0x1);
                config_done(&c);
        }
        policy_free(NULL);
}

/* A pattern is bounded before regcomp() sees it: glibc expands every repetition into
 * copies of its operand, so "e" followed by 24 '+' took 12.5 GB and 43 s to compile, and
 * a back-reference makes matching exponential. Each case is a pattern and whether it is
 * accepted; alarm() turns a runaway compile into a failed test instead of a hang. */
static void test_pattern_bounds(void **state) {
        static char plus24[32], long_pattern[600];
        memset(plus24, '+', 25);
        plus24[0] = 'e';
        memset(long_pattern, 'a', sizeof(long_pattern) - 1);
        static const struct {
                const char *re;
                const char *err; /* NULL: accepted */
        } cases[] = {
                { "^[0-9a-f]{7,40}$", NULL },
                { "^v?[0-9]+\\.[0-9]+(\\.[0-9]+)?(-[0-9A-Za-z.-]+)?(\\+[0-9A-Za-z.-]+)?$", NULL },
                { "^[a-z0-9._-]{1,128}$", NULL },
                { "^(v[0-9]{1,3}\\.){2}[0-9]{1,3}$", NULL },
                { "^release-[0-9]+(-rc[0-9]+)?$", NULL },
                { "^a{2}[{]x\\{y}$", NULL }, /* braces that are not intervals */
                { "^(a|b|c|d){1,100}$", NULL },
                { "e++++++++", NULL },
                { plus24, "repetition expands beyond 1024 elements" },
                { "e++++++++++++++++", "repetition expands beyond 1024 elements" },
                { "e{1,4096}", "repetition expands beyond 1024 elements" },
                { "[a-z]{2000}", "repetition expands beyond 1024 elements" },
                { "((e{1,32}){1,32}){1,32}", "repetition expands beyond 1024 elements" },
                { "(a{1,40}|b){30}", "repetition expands beyond 1024 elements" },
                { "e{1,99999999999999999999}", "repetition expands beyond 1024 elements" },
                { "^(a*)*\\1$", "back-references are not supported" },
                { long_pattern, "longer than 512 bytes" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const char *pats[] = { cases[i].re, NULL };
                Config c;
                Policy *p = NULL;
                char err[512] = "";
                assert_int_equal(config_init(&c), 0);
                set_list(&c.allowed_tag_patterns, pats);
                alarm(10);
                int r = policy_new_from_config(&c, &p, err, sizeof(err));
                alarm(0);
                config_done(&c);
                policy_free(p);
                if (!cases[i].err) {
                        if (r < 0)
                                fail_msg("case %zu (%s): refused: %s", i, cases[i].re, err);
                        continue;
                }
                if (r != -EINVAL || !startswith(err, "allowed_tag_patterns: \"") || !strstr(err, cases[i].err))
                        fail_msg("case %zu (%.40s): r=%d \"%s\"", i, cases[i].re, r, err);
        }
}

static void test_bounds(void **state) {
        Policy *p = policy_with(NULL);
        Observation o;
        Finding f[1];
        size_t n = 7;
        char err[256];
        /* two findings into room for one */
        make_observation(&(Case) { .ref = "app" }, &o);
        assert_int_equal(policy_evaluate(p, &o, DB, NULL, f, 1, &n, NULL, 0), -ENOBUFS);
        assert_int_equal(n, 7);
        assert_int_equal(policy_evaluate(p, &o, NULL, NULL, f, 1, &n, NULL, 0), 0);
        assert_int_equal(n, 1);
        /* a malformed stored name */
        make_observation(&(Case) { .ref = "app:" }, &o);
        assert_int_equal(policy_evaluate(p, &o, NULL, NULL, f, 1, &n, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "bad image reference: empty tag after ':'");
        /* the most one observation can give fits POLICY_FINDINGS_MAX */
        static const char json[] = "{\"app:main\": \"" DC "\"}";
        Pins *pins = NULL;
        assert_int_equal(pins_parse(json, strlen(json), &pins, NULL, 0), 0);
        Finding all[POLICY_FINDINGS_MAX];
        Config c;
        assert_int_equal(config_init(&c), 0);
        c.severity[FINDING_REVISION_MISMATCH] = CONFIG_SEVERITY_OFF;
        policy_free(p);
        assert_int_equal(policy_new_from_config(&c, &p, NULL, 0), 0);
        config_done(&c);
        make_observation(&(Case) { .ref = "app:main", .config_known = true }, &o);
        assert_int_equal(policy_evaluate(p, &o, DB, pins, all, ELEMENTSOF(all), &n, NULL, 0), 0);
        assert_int_equal(n, POLICY_FINDINGS_MAX);
        pins_free(pins);
        policy_free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_latest_tag),
                cmocka_unit_test(test_mutable_tag),
                cmocka_unit_test(test_default_patterns_match_helpers),
                cmocka_unit_test(test_tag_moved),
                cmocka_unit_test(test_digest_mismatch),
                cmocka_unit_test(test_revision),
                cmocka_unit_test(test_exemptions),
                cmocka_unit_test(test_severity_and_disable),
                cmocka_unit_test(test_check_reference),
                cmocka_unit_test(test_bad_config),
                cmocka_unit_test(test_bounds),
                cmocka_unit_test(test_pattern_bounds),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
