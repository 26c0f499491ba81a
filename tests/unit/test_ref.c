/* Reference grammar and normalisation: one table of valid inputs with their normalised
 * parts, one table of invalid inputs with the reason they must give. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "pullwatch/ref.h"
#include "pullwatch/util.h"

#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define H96 H64 "0123456789abcdef0123456789abcdef"
#define H128 H64 H64
#define D256 "sha256:" H64

typedef struct ValidCase {
        const char *in;
        const char *domain, *path, *tag, *digest;
        bool implicit, image_id, digest_only;
        const char *formatted; /* ref_format */
        const char *docker;    /* ref_format_docker */
} ValidCase;

static const ValidCase valid[] = {
        { "nginx", "docker.io", "library/nginx", "latest", "", true, false, false,
          "docker.io/library/nginx:latest", "docker.io/library/nginx:latest" },
        { "nginx:1.25", "docker.io", "library/nginx", "1.25", "", false, false, false,
          "docker.io/library/nginx:1.25", NULL },
        { "nginx:latest", "docker.io", "library/nginx", "latest", "", false, false, false,
          "docker.io/library/nginx:latest", NULL },
        { "user/app", "docker.io", "user/app", "latest", "", true, false, false, "docker.io/user/app:latest", NULL },
        { "docker.io/nginx", "docker.io", "library/nginx", "latest", "", true, false, false,
          "docker.io/library/nginx:latest", NULL },
        { "index.docker.io/nginx:1", "docker.io", "library/nginx", "1", "", false, false, false,
          "docker.io/library/nginx:1", NULL },
        { "index.docker.io/user/app", "docker.io", "user/app", "latest", "", true, false, false,
          "docker.io/user/app:latest", NULL },
        { "docker.io/library/nginx:1.25", "docker.io", "library/nginx", "1.25", "", false, false, false,
          "docker.io/library/nginx:1.25", NULL },
        { "localhost/app", "localhost", "app", "latest", "", true, false, false, "localhost/app:latest", NULL },
        { "localhost:5000/a/b", "localhost:5000", "a/b", "latest", "", true, false, false,
          "localhost:5000/a/b:latest", NULL },
        { "localhost:5000/a/b:v2", "localhost:5000", "a/b", "v2", "", false, false, false,
          "localhost:5000/a/b:v2", NULL },
        { "127.0.0.1:5000/app:1", "127.0.0.1:5000", "app", "1", "", false, false, false, "127.0.0.1:5000/app:1",
          NULL },
        { "[::1]:5000/app", "[::1]:5000", "app", "latest", "", true, false, false, "[::1]:5000/app:latest", NULL },
        { "ghcr.io/acme/tools/cli:9f2c1ab", "ghcr.io", "acme/tools/cli", "9f2c1ab", "", false, false, false,
          "ghcr.io/acme/tools/cli:9f2c1ab", NULL },
        { "registry.k8s.io/pause:3.9", "registry.k8s.io", "pause", "3.9", "", false, false, false,
          "registry.k8s.io/pause:3.9", NULL },
        { "my-registry.example.com:443/team_a/app__x.y-z---w", "my-registry.example.com:443", "team_a/app__x.y-z---w",
          "latest", "", true, false, false, "my-registry.example.com:443/team_a/app__x.y-z---w:latest", NULL },
        { "Registry.Example.com/app", "Registry.Example.com", "app", "latest", "", true, false, false,
          "Registry.Example.com/app:latest", NULL },
        { "Foo/bar", "Foo", "bar", "latest", "", true, false, false, "Foo/bar:latest", NULL },
        { "localhost", "docker.io", "library/localhost", "latest", "", true, false, false,
          "docker.io/library/localhost:latest", NULL },
        { "localhost:5000", "docker.io", "library/localhost", "5000", "", false, false, false,
          "docker.io/library/localhost:5000", NULL },
        { "nginx:Tag_With.Mixed-Case", "docker.io", "library/nginx", "Tag_With.Mixed-Case", "", false, false,
          false, "docker.io/library/nginx:Tag_With.Mixed-Case", NULL },
        { "nginx@" D256, "docker.io", "library/nginx", "", D256, false, false, true,
          "docker.io/library/nginx@" D256, "docker.io/library/nginx@" D256 },
        { "nginx:1.25@" D256, "docker.io", "library/nginx", "1.25", D256, false, false, false,
          "docker.io/library/nginx:1.25@" D256, "docker.io/library/nginx@" D256 },
        { "localhost:5000/app@sha512:" H128, "localhost:5000", "app", "", "sha512:" H128, false, false, true,
          "localhost:5000/app@sha512:" H128, NULL },
        { "app@sha384:" H96, "docker.io", "library/app", "", "sha384:" H96, false, false, true,
          "docker.io/library/app@sha384:" H96, NULL },
        { D256, "", "", "", D256, false, true, false, D256, D256 },
        { "sha256:abc", "docker.io", "library/sha256", "abc", "", false, false, false,
          "docker.io/library/sha256:abc", NULL },
        { H64 ":tag", "docker.io", "library/" H64, "tag", "", false, false, false, "docker.io/library/" H64 ":tag",
          NULL },
        { "a", "docker.io", "library/a", "latest", "", true, false, false, "docker.io/library/a:latest", NULL },
        { "a/b/c/d/e", "docker.io", "a/b/c/d/e", "latest", "", true, false, false, "docker.io/a/b/c/d/e:latest",
          NULL },
        { "nginx:_", "docker.io", "library/nginx", "_", "", false, false, false, "docker.io/library/nginx:_", NULL },
};

static void test_valid(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(valid); i++) {
                const ValidCase *c = &valid[i];
                Ref r;
                char err[256] = "", buf[PW_REF_MAX];
                int k = ref_parse(c->in, &r, err, sizeof(err));
                if (k < 0)
                        fail_msg("case %zu \"%s\": unexpected error: %s", i, c->in, err);
                assert_string_equal(r.domain, c->domain);
                assert_string_equal(r.path, c->path);
                assert_string_equal(r.tag, c->tag);
                assert_string_equal(r.digest, c->digest);
                assert_int_equal(r.tag_implicit, c->implicit);
                assert_int_equal(r.is_image_id, c->image_id);
                assert_int_equal(r.is_digest_only, c->digest_only);
                assert_int_equal(ref_format(&r, buf, sizeof(buf)), 0);
                assert_string_equal(buf, c->formatted);
                assert_int_equal(ref_format_docker(&r, buf, sizeof(buf)), 0);
                assert_string_equal(buf, c->docker ? c->docker : c->formatted);

                /* The normalised form is a fixed point. */
                Ref again;
                assert_int_equal(ref_parse(c->formatted, &again, NULL, 0), 0);
                again.tag_implicit = r.tag_implicit;
                assert_true(ref_equal(&r, &again));
        }
}

typedef struct InvalidCase {
        const char *in;
        const char *reason; /* a substring the error must contain */
} InvalidCase;

static const InvalidCase invalid[] = {
        { "", "empty reference" },
        { "nginx\n", "control character 0x0a" },
        { "ngi\x1bnx", "control character 0x1b" },
        { "nginx\x7f", "control character 0x7f" },
        { "nginx latest", "space" },
        { "ngïnx", "non-ASCII" },
        { "Nginx", "must be lowercase" },
        { "docker.io/Library/nginx", "must be lowercase" },
        { "nginx:", "empty tag" },
        { "nginx:.hidden", "bad tag" },
        { "nginx:-x", "bad tag" },
        { "nginx:a+b", "bad tag" },
        { "nginx:a" "12345678901234567890123456789012345678901234567890123456789012345678901234567890"
          "123456789012345678901234567890123456789012345678", "tag too long" },
        { "nginx@", "empty digest" },
        { "nginx@sha256", "expected ALGORITHM:HEX" },
        { "nginx@sha256:abc", "at least 32 hex" }, /* the grammar first, as upstream */
        { "nginx@sha256:" H64 "0", "sha256 needs exactly 64" },
        { "nginx@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", "lowercase hex" },
        { "nginx@sha256:" "g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "at least 32 hex" },
        { "nginx@md5:0123456789abcdef0123456789abcdef", "unsupported algorithm" },
        { "nginx@:" H64, "empty algorithm" },
        { "nginx@" D256 "@" D256, "at least 32 hex" },
        { "sha256:" H64 "0", "sha256 needs exactly 64" },
        { "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", "lowercase hex" },
        { H64, "bare 64-character hex" },
        { ":tag", "empty repository name" },
        { "@" D256, "empty repository name" },
        { "a//b", "empty path component" },
        { "/a", "empty path component" },
        { "a/", "empty path component" },
        { "docker.io/", "empty path component" },
        { "a/-b", "start and end" },
        { "a/b-", "start and end" },
        { "a/b..c", "bad separator" },
        { "a/b___c", "bad separator" },
        { "a/b_-c", "bad separator" },
        { "a/b$c", "bad separator" },
        { "-host.io/a", "bad registry host" },
        { "host..io/a", "bad registry host" },
        { "host.io:/a", "bad registry port" },
        { "host.io:80x/a", "bad registry port" },
        { "[::1/a", "IPv6" },
        { "[zz]/a", "IPv6" },
        { "[::1]x/a", "junk after" },
        { "a/" "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
          "0123456789012345678901234567890123456789012345678901234", "repository name too long" },
};

static void test_invalid(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++) {
                const InvalidCase *c = &invalid[i];
                Ref r;
                memset(&r, 0x5a, sizeof(r));
                Ref before = r;
                char err[256] = "";
                int k = ref_parse(c->in, &r, err, sizeof(err));
                if (k != -EINVAL)
                        fail_msg("case %zu \"%s\": expected -EINVAL, got %d", i, c->in, k);
                if (!strstr(err, c->reason))
                        fail_msg("case %zu \"%s\": reason \"%s\" lacks \"%s\"", i, c->in, err, c->reason);
                assert_null(strchr(err, '\n'));
                assert_memory_equal(&r, &before, sizeof(r)); /* out-param untouched on failure */
        }
}

static void test_too_long(void **state) {
        char big[PW_REF_MAX + 10];
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        Ref r;
        char err[128];
        assert_int_equal(ref_parse(big, &r, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "reference too long"));
        assert_int_equal(ref_parse(NULL, &r, NULL, 0), -EINVAL);

        /* exactly 255 characters of path are fine, 256 are not; the registry does not count */
        char name[400] = "localhost/";
        memset(name + 10, 'b', 255);
        name[265] = 0;
        assert_int_equal(ref_parse(name, &r, err, sizeof(err)), 0);
        name[265] = 'b';
        name[266] = 0;
        assert_int_equal(ref_parse(name, &r, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "repository name too long (limit 255 characters)");

        /* library/ counts: 247 characters become 255, 248 become 256 */
        memset(name, 'a', 248);
        name[248] = 0;
        assert_int_equal(ref_parse(name, &r, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "repository name too long (limit 255 characters)");
        name[247] = 0;
        assert_int_equal(ref_parse(name, &r, err, sizeof(err)), 0);
        /* pullwatch's bound on the whole name: a 130-character registry and a 255-character path */
        memset(name, 'r', 126);
        memcpy(name + 126, ".io/", 4);
        memset(name + 130, 'p', 255);
        name[385] = 0;
        assert_int_equal(ref_parse(name, &r, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "repository name too long (limit 383 characters)");
        /* ... and index.docker.io shrinks to docker.io */
        snprintf(name, sizeof(name), "index.docker.io/a/");
        memset(name + 18, 'c', 253);
        name[271] = 0;
        assert_int_equal(ref_parse(name, &r, err, sizeof(err)), 0);
}

static void test_name_and_tagged(void **state) {
        Ref r;
        char buf[PW_REF_MAX];
        assert_int_equal(ref_parse("nginx:1@" D256, &r, NULL, 0), 0);
        assert_int_equal(ref_name(&r, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "docker.io/library/nginx");
        assert_int_equal(ref_format_tagged(&r, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "docker.io/library/nginx:1");
        assert_int_equal(ref_name(&r, buf, 10), -ENAMETOOLONG);
        assert_int_equal(ref_format(&r, buf, 20), -ENAMETOOLONG);

        assert_int_equal(ref_parse("nginx@" D256, &r, NULL, 0), 0);
        assert_int_equal(ref_format_tagged(&r, buf, sizeof(buf)), -ENOENT);
        assert_int_equal(ref_parse(D256, &r, NULL, 0), 0);
        assert_int_equal(ref_format_tagged(&r, buf, sizeof(buf)), -ENOENT);
        assert_int_equal(ref_name(&r, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "");
}

/* ref_name()/ref_format*() write what snprintf("%s/%s...") wrote before: at every buffer
 * size the same bytes (truncated and terminated when too short) and the same result. */
static void test_format_every_size(void **state) {
        static const char *const refs[] = {
                "nginx", "nginx:1@" D256, "nginx@" D256, D256, "quay.io:8443/a/b-c/d_e:v1.2.3", "localhost/x",
        };
        for (size_t i = 0; i < ELEMENTSOF(refs); i++) {
                Ref r;
                assert_int_equal(ref_parse(refs[i], &r, NULL, 0), 0);
                char name[PW_REF_MAX], full[PW_REF_MAX], tagged[PW_REF_MAX];
                if (r.is_image_id)
                        snprintf(name, sizeof name, "%s", "");
                else
                        snprintf(name, sizeof name, "%s/%s", r.domain, r.path);
                snprintf(full, sizeof full, "%s/%s%s%s%s%s", r.domain, r.path, r.tag[0] ? ":" : "", r.tag,
                         r.digest[0] ? "@" : "", r.digest);
                snprintf(tagged, sizeof tagged, "%s/%s:%s", r.domain, r.path, r.tag);
                for (size_t len = 1; len <= strlen(full) + 2; len++) {
                        char buf[PW_REF_MAX], want[PW_REF_MAX];
                        memset(buf, 'X', sizeof buf);
                        snprintf(want, len, "%s", name);
                        assert_int_equal(ref_name(&r, buf, len), strlen(name) < len ? 0 : -ENAMETOOLONG);
                        assert_string_equal(buf, want);
                        if (r.is_image_id)
                                continue;
                        memset(buf, 'X', sizeof buf);
                        snprintf(want, len, "%s", full);
                        assert_int_equal(ref_format(&r, buf, len), strlen(full) < len ? 0 : -ENAMETOOLONG);
                        assert_string_equal(buf, want);
                        if (!r.tag[0])
                                continue;
                        memset(buf, 'X', sizeof buf);
                        snprintf(want, len, "%s", tagged);
                        assert_int_equal(ref_format_tagged(&r, buf, len), strlen(tagged) < len ? 0 : -ENAMETOOLONG);
                        assert_string_equal(buf, want);
                }
        }
}

typedef struct TagCase {
        const char *tag;
        bool sha, semver;
} TagCase;

static const TagCase tags[] = {
        { "9f2c1ab", true, false },
        { "9f2c1a", false, false },            /* 6: too short */
        { "0123456789abcdef0123456789abcdef01234567", true, false },
        { "0123456789abcdef0123456789abcdef012345678", false, false }, /* 41 */
        { "9F2C1AB", false, false },           /* uppercase */
        { "9f2c1ag", false, false },
        { "20240101", false, false },          /* a date, not a commit */
        { "1234567", false, false },
        { "0123456789012345678901234567890123456789", true, false }, /* full 40-digit id */
        { "deadbeef", true, false },
        { "v1.2.3", false, true },
        { "1.2.3", false, true },
        { "1.2", false, true },
        { "v1.2", false, true },
        { "1.2.3-rc.1", false, true },
        { "1.2.3-alpine", false, true },
        { "1.2.3+build.7", false, true },
        { "v1.2.3-rc.1+b5", false, true },
        { "1", false, false },
        { "v1", false, false },
        { "1.", false, false },
        { "1.2.", false, false },
        { "1.2.3.4", false, false },
        { "1.2.3-", false, false },
        { "1.2.3+", false, false },
        { "V1.2.3", false, false },
        { "latest", false, false },
        { "", false, false },
};

static void test_tag_helpers(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(tags); i++) {
                if (ref_is_commit_sha_tag(tags[i].tag) != tags[i].sha)
                        fail_msg("commit sha \"%s\": expected %d", tags[i].tag, tags[i].sha);
                if (ref_is_semver_tag(tags[i].tag) != tags[i].semver)
                        fail_msg("semver \"%s\": expected %d", tags[i].tag, tags[i].semver);
        }
        assert_false(ref_is_commit_sha_tag(NULL));
        assert_false(ref_is_semver_tag(NULL));
        assert_true(ref_digest_is_valid(D256));
        assert_false(ref_digest_is_valid("sha256:abc"));
        assert_false(ref_digest_is_valid(NULL));
        assert_true(ref_tag_is_valid("a"));
        assert_false(ref_tag_is_valid(""));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid),
                cmocka_unit_test(test_invalid),
                cmocka_unit_test(test_too_long),
                cmocka_unit_test(test_name_and_tagged),
                cmocka_unit_test(test_format_every_size),
                cmocka_unit_test(test_tag_helpers),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
