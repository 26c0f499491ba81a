/* containerd module: envelope decoding (real captured bytes + synthetic ones built with
 * protobuf-c), index/manifest/config parsing, and — when containerd is installed and we
 * are root — the whole client against a private containerd started by the test. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "containerd_events.pb-c.h"
#include "events.pb-c.h"
#include "google_protobuf.pb-c.h"
#include "images.pb-c.h"
#include "pullwatch/containerd.h"
#include "pullwatch/grpc.h"
#include "pullwatch/sha256.h"
#include "pullwatch/util.h"

#include "live_containerd.h"
#include "tmpdir.h"

static size_t read_file(const char *path, uint8_t *buf, size_t size) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                fail_msg("cannot open %s", path);
        ssize_t n = read(fd, buf, size);
        close(fd);
        assert_true(n >= 0 && (size_t) n < size);
        return (size_t) n;
}

/* ------------------------------------------------------------ real envelopes */

static void test_real_envelopes(void **state) {
        static const struct {
                const char *file;
                CtrdEventKind kind;
                const char *topic, *type_url, *image, *cid;
                uint64_t ts;
                uint32_t pid, exit_status;
        } cases[] = {
                { "image-create", CTRD_EVENT_IMAGE_CREATE, "/images/create", "containerd.services.images.v1.ImageCreate",
                  "docker.io/library/pwtest:1.0", "", 1795627408560308ULL, 0, 0 },
                { "image-update", CTRD_EVENT_IMAGE_UPDATE, "/images/update", "containerd.services.images.v1.ImageUpdate",
                  "docker.io/library/pwtest:1.0", "", 1795627408583435ULL, 0, 0 },
                { "image-delete", CTRD_EVENT_IMAGE_DELETE, "/images/delete", "containerd.services.images.v1.ImageDelete",
                  "registry.example.com:5000/team/app:latest", "", 1795627408633656ULL, 0, 0 },
                { "container-create", CTRD_EVENT_CONTAINER_CREATE, "/containers/create",
                  "containerd.events.ContainerCreate", "docker.io/library/pwtest:2.0", "ctr-2", 1795627408608305ULL, 0, 0 },
                { "container-delete", CTRD_EVENT_CONTAINER_DELETE, "/containers/delete",
                  "containerd.events.ContainerDelete", "", "ctr-2", 1795627408623784ULL, 0, 0 },
                { "task-create", CTRD_EVENT_TASK_CREATE, "/tasks/create", "containerd.events.TaskCreate", "", "run-1",
                  1795627422401400ULL, 16327, 0 },
                { "task-start", CTRD_EVENT_TASK_START, "/tasks/start", "containerd.events.TaskStart", "", "run-1",
                  1795627422410433ULL, 16327, 0 },
                { "task-exit", CTRD_EVENT_TASK_EXIT, "/tasks/exit", "containerd.events.TaskExit", "", "run-1",
                  1795627422410730ULL, 16327, 3 },
                { "task-delete", CTRD_EVENT_TASK_DELETE, "/tasks/delete", "containerd.events.TaskDelete", "", "run-1",
                  1795627422424594ULL, 16327, 3 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char path[512];
                uint8_t buf[4096];
                CtrdEvent ev;
                snprintf(path, sizeof(path), "%s/tests/unit/fixtures/envelopes/%s.bin", PW_SOURCE_DIR, cases[i].file);
                size_t n = read_file(path, buf, sizeof(buf));
                int r = ctrd_event_decode(buf, n, &ev);
                if (r < 0)
                        fail_msg("%s: %d", cases[i].file, r);
                assert_int_equal(ev.kind, cases[i].kind);
                assert_string_equal(ctrd_event_kind_to_string(ev.kind), cases[i].file);
                assert_string_equal(ev.namespace, "test");
                assert_string_equal(ev.topic, cases[i].topic);
                assert_string_equal(ev.type_url, cases[i].type_url);
                assert_string_equal(ev.image_name, cases[i].image);
                assert_string_equal(ev.container_id, cases[i].cid);
                assert_int_equal(ev.timestamp_usec, cases[i].ts);
                assert_int_equal(ev.pid, cases[i].pid);
                assert_int_equal(ev.exit_status, cases[i].exit_status);

                /* every strict prefix either fails cleanly or decodes to something else:
                 * never crashes, never leaves ev half-written */
                for (size_t k = 0; k < n; k++) {
                        CtrdEvent e2;
                        memset(&e2, 0x5a, sizeof(e2));
                        r = ctrd_event_decode(buf, k, &e2);
                        if (r < 0)
                                assert_int_equal(((uint8_t *) &e2)[0], 0x5a);
                }
        }
}

/* ------------------------------------------------------------ synthetic envelopes */

typedef struct Built {
        uint8_t buf[4096];
        size_t len;
} Built;

static void build_envelope(Built *out, int64_t secs, int32_t nanos, const char *ns, const char *topic,
                           const char *type_url, const ProtobufCMessage *payload, const uint8_t *raw, size_t raw_len) {
        Containerd__Services__Events__V1__Envelope env = CONTAINERD__SERVICES__EVENTS__V1__ENVELOPE__INIT;
        Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
        uint8_t pbuf[2048];

        ts.seconds = secs;
        ts.nanos = nanos;
        env.timestamp = &ts;
        env.namespace_ = (char *) ns;
        env.topic = (char *) topic;
        if (type_url) {
                any.type_url = (char *) type_url;
                if (payload) {
                        size_t n = protobuf_c_message_get_packed_size(payload);
                        assert_true(n <= sizeof(pbuf));
                        protobuf_c_message_pack(payload, pbuf);
                        any.value.data = pbuf;
                        any.value.len = n;
                } else {
                        any.value.data = (uint8_t *) raw;
                        any.value.len = raw_len;
                }
                env.event = &any;
        }
        out->len = protobuf_c_message_get_packed_size(&env.base);
        assert_true(out->len <= sizeof(out->buf));
        protobuf_c_message_pack(&env.base, out->buf);
}

static void test_synthetic_envelopes(void **state) {
        Built b;
        CtrdEvent ev;
        char longname[700];

        /* container update with labels, googleapis-style type_url */
        Containerd__Events__ContainerUpdate cu = CONTAINERD__EVENTS__CONTAINER_UPDATE__INIT;
        Containerd__Events__ContainerUpdate__LabelsEntry le = CONTAINERD__EVENTS__CONTAINER_UPDATE__LABELS_ENTRY__INIT;
        Containerd__Events__ContainerUpdate__LabelsEntry *lep[] = { &le };
        le.key = "io.kubernetes.pod.name";
        le.value = "web";
        cu.id = "c1";
        cu.image = "quay.io/x/y@sha256:abc";
        cu.n_labels = 1;
        cu.labels = lep;
        build_envelope(&b, 1700000000, 123456789, "k8s.io", "/containers/update",
                       "type.googleapis.com/containerd.events.ContainerUpdate", &cu.base, NULL, 0);
        assert_int_equal(ctrd_event_decode(b.buf, b.len, &ev), 0);
        assert_int_equal(ev.kind, CTRD_EVENT_CONTAINER_UPDATE);
        assert_string_equal(ev.namespace, "k8s.io");
        assert_string_equal(ev.container_id, "c1");
        assert_string_equal(ev.image_name, "quay.io/x/y@sha256:abc");
        assert_int_equal(ev.timestamp_usec, 1700000000123456ULL);

        /* an event type we don't decode: OTHER, not an error */
        Containerd__Services__Images__V1__ImageDelete del = CONTAINERD__SERVICES__IMAGES__V1__IMAGE_DELETE__INIT;
        del.name = "x";
        build_envelope(&b, 1, 0, "default", "/namespaces/create", "containerd.events.NamespaceCreate", &del.base, NULL, 0);
        assert_int_equal(ctrd_event_decode(b.buf, b.len, &ev), 0);
        assert_int_equal(ev.kind, CTRD_EVENT_OTHER);
        assert_string_equal(ev.topic, "/namespaces/create");
        assert_string_equal(ev.image_name, "");

        /* no event at all, negative timestamp */
        build_envelope(&b, -5, 0, "default", "/x", NULL, NULL, NULL, 0);
        assert_int_equal(ctrd_event_decode(b.buf, b.len, &ev), 0);
        assert_int_equal(ev.kind, CTRD_EVENT_OTHER);
        assert_int_equal(ev.timestamp_usec, 0);
        assert_string_equal(ev.type_url, "");

        /* the empty message is a valid proto3 Envelope */
        assert_int_equal(ctrd_event_decode((const uint8_t *) "", 0, &ev), 0);
        assert_int_equal(ev.kind, CTRD_EVENT_OTHER);

        /* known type with a malformed payload */
        static const uint8_t garbage[] = { 0x0a, 0x7f, 'a' };
        build_envelope(&b, 1, 0, "default", "/images/create", "containerd.services.images.v1.ImageCreate", NULL,
                       garbage, sizeof(garbage));
        assert_int_equal(ctrd_event_decode(b.buf, b.len, &ev), -EBADMSG);

        /* malformed envelope */
        static const uint8_t bad[] = { 0x12, 0x10, 'a', 'b' };
        assert_int_equal(ctrd_event_decode(bad, sizeof(bad), &ev), -EBADMSG);
        static const uint8_t badwire[] = { 0x0f };
        assert_int_equal(ctrd_event_decode(badwire, sizeof(badwire), &ev), -EBADMSG);

        /* over-long peer strings are rejected, ev untouched */
        memset(longname, 'a', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = 0;
        Containerd__Services__Images__V1__ImageCreate ic = CONTAINERD__SERVICES__IMAGES__V1__IMAGE_CREATE__INIT;
        ic.name = longname;
        build_envelope(&b, 1, 0, "default", "/images/create", "containerd.services.images.v1.ImageCreate", &ic.base,
                       NULL, 0);
        memset(&ev, 0x5a, sizeof(ev));
        assert_int_equal(ctrd_event_decode(b.buf, b.len, &ev), -ENAMETOOLONG);
        assert_int_equal(((uint8_t *) &ev)[0], 0x5a);
        ic.name = "ok";
        longname[PW_NS_MAX] = 0; /* 77 chars: one too many for a namespace */
        build_envelope(&b, 1, 0, longname, "/images/create", "containerd.services.images.v1.ImageCreate", &ic.base,
                       NULL, 0);
        assert_int_equal(ctrd_event_decode(b.buf, b.len, &ev), -ENAMETOOLONG);
        longname[PW_NS_MAX - 1] = 0; /* 76: fits */
        build_envelope(&b, 1, 0, longname, "/images/create", "containerd.services.images.v1.ImageCreate", &ic.base,
                       NULL, 0);
        assert_int_equal(ctrd_event_decode(b.buf, b.len, &ev), 0);
        assert_string_equal(ev.image_name, "ok");
        assert_int_equal(strlen(ev.namespace), 76);
}

/* ------------------------------------------------------------ JSON */

static void test_goarch(void **state) {
        static const struct {
                const char *machine, *arch, *variant;
        } cases[] = {
                { "x86_64", "amd64", "" }, { "aarch64", "arm64", "v8" }, { "armv7l", "arm", "v7" },
                { "armv6l", "arm", "v6" }, { "i686", "386", "" },       { "ppc64le", "ppc64le", "" },
                { "s390x", "s390x", "" },  { "riscv64", "riscv64", "" }, { "vax", NULL, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const char *v = "unset";
                const char *a = ctrd_goarch(cases[i].machine, &v);
                if (!cases[i].arch) {
                        assert_null(a);
                        continue;
                }
                assert_string_equal(a, cases[i].arch);
                assert_string_equal(v, cases[i].variant);
        }
}

/* The OCI digest grammar as ctrd_digest_valid() had it before its tables: the reference
 * the table is checked against. */
static bool digest_valid_ref(const char *d) {
        const char *colon = d ? strchr(d, ':') : NULL;
        if (!colon || colon == d || !colon[1] || strlen(d) >= PW_DIGEST_MAX)
                return false;
        for (const char *p = d; p < colon; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("+._-", *p)))
                        return false;
        for (const char *p = colon + 1; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      strchr("=_-", *p)))
                        return false;
        return true;
}

static void test_digest_valid(void **state) {
        static const struct {
                const char *d;
                bool ok;
        } cases[] = {
                {"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", true},
                {"sha256:AbC=_-", true},
                {"a+b.c_d-e:x", true},
                {"sha256:", false},
                {":abc", false},
                {"sha256", false},
                {"", false},
                {"Sha256:abc", false},
                {"sha256:ab:c", false},
                {"sha256:ab c", false},
                {"sha256:ab+c", false},
                {"sha/256:abc", false},
                {"sha256:abc\n", false},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                assert_int_equal(ctrd_digest_valid(cases[i].d), cases[i].ok);
                assert_int_equal(digest_valid_ref(cases[i].d), cases[i].ok);
        }
        assert_false(ctrd_digest_valid(NULL));
        /* every byte in the algorithm and in the encoded part, as the reference says */
        for (unsigned c = 1; c < 256; c++) {
                char a[] = "sha2x6:abcdef", e[] = "sha256:abxdef", f[] = "x";
                a[4] = e[9] = f[0] = (char) c;
                assert_int_equal(ctrd_digest_valid(a), digest_valid_ref(a));
                assert_int_equal(ctrd_digest_valid(e), digest_valid_ref(e));
                assert_int_equal(ctrd_digest_valid(f), digest_valid_ref(f));
        }
        /* the length bound: PW_DIGEST_MAX - 1 characters pass, PW_DIGEST_MAX do not */
        char longd[PW_DIGEST_MAX + 1];
        memcpy(longd, "sha256:", 7);
        memset(longd + 7, 'a', sizeof longd - 8);
        longd[PW_DIGEST_MAX] = 0;
        assert_false(ctrd_digest_valid(longd));
        longd[PW_DIGEST_MAX - 1] = 0;
        assert_true(ctrd_digest_valid(longd));
}

#define D(c) "sha256:" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
#define ENTRY(dig, os, arch, var) \
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" dig "\",\"size\":1," \
        "\"platform\":{\"os\":\"" os "\",\"architecture\":\"" arch "\"" var "}}"

static void test_parse_index(void **state) {
        static const char multi[] = "{\"schemaVersion\":2,\"manifests\":[" ENTRY(D("1"), "linux", "amd64", "") ","
                ENTRY(D("2"), "linux", "arm64", ",\"variant\":\"v8\"") "," ENTRY(D("3"), "linux", "arm", ",\"variant\":\"v6\"") ","
                ENTRY(D("4"), "linux", "arm", ",\"variant\":\"v7\"") "," ENTRY(D("5"), "windows", "amd64", "") ","
                ENTRY(D("6"), "unknown", "unknown", "") "]}";
        static const struct {
                const char *json;
                const char *arch, *variant;
                int ret;
                const char *pick;
                size_t n;
        } cases[] = {
                { multi, "amd64", "", 0, D("1"), 6 },
                { multi, "arm64", "v8", 0, D("2"), 6 },
                { multi, "arm", "v7", 0, D("4"), 6 },
                { multi, "arm", "v5", -ENOENT, NULL, 0 },
                { multi, "s390x", "", -ENOENT, NULL, 0 },
                /* arm64 without a variant in the index still matches */
                { "{\"manifests\":[" ENTRY(D("7"), "linux", "arm64", "") "]}", "arm64", "v8", 0, D("7"), 1 },
                /* exact variant preferred over a variant-less entry */
                { "{\"manifests\":[" ENTRY(D("7"), "linux", "arm64", "") "," ENTRY(D("8"), "linux", "arm64", ",\"variant\":\"v8\"") "]}",
                  "arm64", "v8", 0, D("8"), 2 },
                { "{\"manifests\":[{\"digest\":\"sha256:../../etc\"}]}", "amd64", "", -EBADMSG, NULL, 0 },
                { "{\"manifests\":[{\"digest\":7}]}", "amd64", "", -EBADMSG, NULL, 0 },
                { "{\"manifests\":{}}", "amd64", "", -EBADMSG, NULL, 0 },
                { "[]", "amd64", "", -EBADMSG, NULL, 0 },
                { "{\"manifests\":[", "amd64", "", -EBADMSG, NULL, 0 },
                { "{\"manifests\":[],\"manifests\":[]}", "amd64", "", -EBADMSG, NULL, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                CtrdImageConfig cfg = {};
                char err[256] = "";
                int r = ctrd_parse_index(cases[i].json, strlen(cases[i].json), "linux", cases[i].arch, cases[i].variant,
                                         &cfg, err, sizeof(err));
                if (r != cases[i].ret)
                        fail_msg("case %zu: %d want %d (%s)", i, r, cases[i].ret, err);
                if (r < 0) {
                        assert_true(err[0] != 0);
                        assert_false(cfg.is_index); /* untouched */
                        continue;
                }
                assert_true(cfg.is_index);
                assert_string_equal(cfg.platform_digest, cases[i].pick);
                assert_int_equal(cfg.n_manifests, cases[i].n);
        }

        /* more manifests than we keep: capped, still picks the one past the cap */
        char *big = malloc(200 * 250);
        size_t o = (size_t) snprintf(big, 64, "{\"manifests\":[");
        for (int k = 0; k < 100; k++)
                o += (size_t) snprintf(big + o, 250, "%s{\"digest\":\"sha256:%064d\",\"platform\":{\"os\":\"linux\",\"architecture\":\"%s\"}}",
                                       k ? "," : "", k, k == 99 ? "amd64" : "arm64");
        o += (size_t) snprintf(big + o, 8, "]}");
        CtrdImageConfig cfg = {};
        assert_int_equal(ctrd_parse_index(big, o, "linux", "amd64", "", &cfg, NULL, 0), 0);
        assert_int_equal(cfg.n_manifests, CTRD_INDEX_MANIFESTS_MAX);
        assert_string_equal(cfg.platform_digest, "sha256:0000000000000000000000000000000000000000000000000000000000000099");
        free(big);
}

static void test_parse_manifest_config(void **state) {
        static const struct {
                const char *json;
                int ret;
                const char *config;
        } mcases[] = {
                { "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D("c") "\"},\"layers\":[]}", 0, D("c") },
                { "{\"config\":{}}", -EBADMSG, NULL },
                { "{\"config\":{\"digest\":\"nocolon\"}}", -EBADMSG, NULL },
                { "{\"manifests\":[]}", -EBADMSG, NULL },
                { "not json", -EBADMSG, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(mcases); i++) {
                CtrdImageConfig cfg = {};
                char err[128] = "";
                int r = ctrd_parse_manifest(mcases[i].json, strlen(mcases[i].json), &cfg, err, sizeof(err));
                if (r != mcases[i].ret)
                        fail_msg("manifest case %zu: %d (%s)", i, r, err);
                if (r == 0)
                        assert_string_equal(cfg.config_digest, mcases[i].config);
                else
                        assert_true(err[0]);
        }

        char longrev[400];
        memset(longrev, 'f', sizeof(longrev) - 1);
        longrev[sizeof(longrev) - 1] = 0;
        char longjson[600];
        snprintf(longjson, sizeof(longjson), "{\"config\":{\"Labels\":{\"" CTRD_REVISION_LABEL "\":\"%s\"}}}", longrev);
        static const char sha[] = "0123456789abcdef0123456789abcdef01234567";
        const struct {
                const char *json;
                int ret;
                bool has, invalid;
                const char *rev;
        } ccases[] = {
                { "{\"config\":{\"Labels\":{\"" CTRD_REVISION_LABEL "\":\"0123456789abcdef0123456789abcdef01234567\"}}}", 0, true, false, sha },
                { "{\"config\":{\"labels\":{\"" CTRD_REVISION_LABEL "\":\"v1\"}}}", 0, true, false, "v1" },
                { "{\"config\":{\"Labels\":{\"" CTRD_REVISION_LABEL "\":\"\"}}}", 0, true, false, "" },
                { "{\"config\":{\"Labels\":{\"other\":\"x\"}}}", 0, false, false, "" },
                { "{\"config\":{\"Labels\":null}}", 0, false, false, "" },
                { "{\"architecture\":\"amd64\"}", 0, false, false, "" },
                { "{\"config\":{\"Labels\":{\"" CTRD_REVISION_LABEL "\":42}}}", 0, true, true, "" },
                { longjson, 0, true, true, "" },
                { "{", -EBADMSG, false, false, "" },
        };
        for (size_t i = 0; i < ELEMENTSOF(ccases); i++) {
                CtrdImageConfig cfg = { .has_revision = true, .revision = "stale" };
                int r = ctrd_parse_config(ccases[i].json, strlen(ccases[i].json), &cfg, NULL, 0);
                if (r != ccases[i].ret)
                        fail_msg("config case %zu: %d", i, r);
                if (r < 0)
                        continue;
                assert_int_equal(cfg.has_revision, ccases[i].has);
                assert_int_equal(cfg.revision_invalid, ccases[i].invalid);
                assert_string_equal(cfg.revision, ccases[i].rev);
        }
}

/* ------------------------------------------------------------ direct blob reads */

/* Each case is a file planted under blobs/ and what reading its digest gives. */
static void test_blob_read_at(void **state) {
        const char *dir = *state;
        /* sha256("abc") and sha256("") */
        static const char abc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        static const char empty[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        static const char other[] = "0000000000000000000000000000000000000000000000000000000000000001";
        static const char fifo[] = "0000000000000000000000000000000000000000000000000000000000000002";
        static const char sub[] = "0000000000000000000000000000000000000000000000000000000000000003";
        static const char link[] = "0000000000000000000000000000000000000000000000000000000000000004";
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dfd >= 0);
        assert_int_equal(mkdirat(dfd, "sha256", 0700), 0);
        _cleanup_close_ int sfd = openat(dfd, "sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(sfd >= 0);
        const struct {
                const char *name, *content;
        } files[] = { { abc, "abc" }, { empty, "" }, { other, "abc" } };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_close_ int w = openat(sfd, files[i].name, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                assert_true(w >= 0);
                assert_int_equal(write(w, files[i].content, strlen(files[i].content)),
                                 (ssize_t) strlen(files[i].content));
        }
        /* 20,000 bytes: more than the first read takes */
        static char big_hex[65];
        static char big[20000];
        memset(big, 'x', sizeof big);
        {
                uint8_t md[SHA256_DIGEST_SIZE];
                sha256(big, sizeof big, md);
                for (size_t i = 0; i < SHA256_DIGEST_SIZE; i++)
                        snprintf(big_hex + 2 * i, 3, "%02x", md[i]);
                _cleanup_close_ int w = openat(sfd, big_hex, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                assert_true(w >= 0);
                assert_int_equal(write(w, big, sizeof big), (ssize_t) sizeof big);
        }
        assert_int_equal(mkfifoat(sfd, fifo, 0600), 0);
        assert_int_equal(mkdirat(sfd, sub, 0700), 0);
        assert_int_equal(symlinkat(abc, sfd, link), 0);

        char d_big[80];
        snprintf(d_big, sizeof d_big, "sha256:%s", big_hex);
        char d_abc[80], d_empty[80], d_other[80], d_fifo[80], d_sub[80], d_link[80], d_short[80];
        snprintf(d_abc, sizeof d_abc, "sha256:%s", abc);
        snprintf(d_empty, sizeof d_empty, "sha256:%s", empty);
        snprintf(d_other, sizeof d_other, "sha256:%s", other);
        snprintf(d_fifo, sizeof d_fifo, "sha256:%s", fifo);
        snprintf(d_sub, sizeof d_sub, "sha256:%s", sub);
        snprintf(d_link, sizeof d_link, "sha256:%s", link);
        snprintf(d_short, sizeof d_short, "sha256:%.63s", abc);
        const struct {
                const char *digest;
                size_t max;
                int r;
                const char *content;
        } cases[] = {
                { d_abc, 16, 0, "abc" },
                { d_abc, 3, 0, "abc" },          /* exactly the bound */
                { d_abc, 2, -EFBIG, NULL },      /* over it */
                { d_empty, 16, 0, "" },
                { d_big, sizeof big, 0, big },       /* larger than the first read */
                { d_big, sizeof big - 1, -EFBIG, NULL },
                { d_big, 100, -EFBIG, NULL },
                { d_other, 16, -EBADMSG, NULL }, /* bytes not matching the name */
                { d_fifo, 16, -EBADMSG, NULL },  /* no wait for a writer: read as empty, not matching */
                { d_sub, 16, -EISDIR, NULL },
                { d_link, 16, -ELOOP, NULL }, /* never followed */
                { "sha256:2222222222222222222222222222222222222222222222222222222222222222", 16, -ENOENT, NULL },
                /* containerd names its files in lower case */
                { "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", 16, -EINVAL, NULL },
                { d_short, 16, -EINVAL, NULL },
                { "sha256:../sha256/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f200", 16, -EINVAL,
                  NULL },
                { "sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 16, -EOPNOTSUPP, NULL },
                { "", 16, -EOPNOTSUPP, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint8_t *buf = (uint8_t *) "untouched";
                size_t len = 99;
                int r = ctrd_blob_read_at(dfd, cases[i].digest, cases[i].max, &buf, &len);
                if (r != cases[i].r)
                        fail_msg("case %zu (%s): %d, expected %d", i, cases[i].digest, r, cases[i].r);
                if (r < 0) {
                        assert_string_equal((const char *) buf, "untouched");
                        assert_int_equal(len, 99);
                        continue;
                }
                size_t want = cases[i].content == big ? sizeof big : strlen(cases[i].content);
                assert_int_equal(len, want);
                assert_memory_equal(buf, cases[i].content, len);
                free(buf);
        }
}

/* ------------------------------------------------------------ against a private containerd */

typedef struct Live {
        char dir[64];
        char sock[128];
        pid_t pid;
        sd_event *e;
        Ctrd *ctrd;
        int pending;
        /* results */
        CtrdVersion version;
        bool saw_test_ns;
        CtrdImage image;
        int get_missing_error;
        char get_missing_reason[512];
        CtrdImageConfig cfg;
        int resolve_error;
        CtrdContainer container;
        size_t n_containers;
        int container_error;
        int blob_error;
        int events_seen;
        CtrdEvent event;
        int grpc_error;
        GrpcStatus grpc_status;
} Live;

static Live live;

static int live_setup(void **state) {
        if (!live_containerd_possible() || access("/usr/bin/python3", X_OK) < 0)
                return 0; /* the tests skip */
        char cfg[256];
        live_containerd_prepare(live.dir, sizeof(live.dir), "/tmp/pw-ctrd-XXXXXX", live.sock, sizeof(live.sock), cfg,
                                sizeof(cfg));
        live.pid = live_containerd_spawn(live.dir, cfg, SIGTERM);
        live_containerd_wait(live.sock);

        char tar[128], script[512];
        snprintf(tar, sizeof(tar), "%s/img.tar", live.dir);
        snprintf(script, sizeof(script), "%s/tests/unit/fixtures/make_oci_tar.py", PW_SOURCE_DIR);
        const char *mk[] = { "python3", script, tar, "docker.io/library/pwtest:1.0", NULL };
        assert_int_equal(test_run_cmd(mk), 0);
        const char *imp[] = { "ctr", "-a", live.sock, "-n", "test", "images", "import", tar, NULL };
        assert_int_equal(test_run_cmd(imp), 0);
        return 0;
}

static int live_teardown(void **state) {
        if (live.pid > 0)
                live_containerd_stop(live.pid, live.dir);
        return 0;
}

static void live_begin(void) {
        if (live.pid <= 0)
                skip();
        assert_int_equal(sd_event_new(&live.e), 0);
        char err[256];
        assert_int_equal(ctrd_new(&live.ctrd, live.e, live.sock, 0, err, sizeof(err)), 0);
}

/* Run the loop until the test's callbacks say stop; bounded. (sd_event_exit would
 * finish the loop for good, and the tests reuse it.) */
static bool live_stop;
static void live_run(void) {
        uint64_t deadline = now_usec_monotonic() + 20 * 1000000ULL;
        live_stop = false;
        while (!live_stop && now_usec_monotonic() < deadline)
                assert_true(sd_event_run(live.e, 100 * 1000) >= 0);
        assert_true(live_stop);
}

static void live_end(void) {
        assert_int_equal(ctrd_pending(live.ctrd), 0);
        live.ctrd = ctrd_free(live.ctrd);
        live.e = sd_event_unref(live.e);
}

static void live_done(void) {
        if (--live.pending == 0)
                live_stop = true;
}

static void on_version(Ctrd *c, int error, const char *reason, const CtrdVersion *v, void *ud) {
        assert_int_equal(error, 0);
        assert_null(reason);
        live.version = *v;
        live_done();
}
static void on_resolved(Ctrd *c, int error, const char *reason, const CtrdImageConfig *cfg, void *ud) {
        live.resolve_error = error;
        if (error < 0)
                print_message("resolve: %s\n", reason);
        if (error >= 0)
                live.cfg = *cfg;
        live_done();
}
static void on_images(Ctrd *c, int error, const char *reason, const char *ns, const CtrdImageEntry *imgs, size_t n,
                      void *ud) {
        assert_int_equal(error, 0);
        assert_string_equal(ns, "test");
        assert_int_equal(n, 1);
        /* borrowed for the callback: kept as copies */
        assert_int_equal(strcpy_bounded(live.image.name, sizeof live.image.name, imgs[0].name), 0);
        assert_int_equal(strcpy_bounded(live.image.target_digest, sizeof live.image.target_digest, imgs[0].target_digest), 0);
        assert_int_equal(strcpy_bounded(live.image.target_media_type, sizeof live.image.target_media_type,
                                        imgs[0].target_media_type),
                         0);
        live.image.target_size = imgs[0].target_size;
        assert_int_equal(ctrd_image_resolve(c, ns, imgs[0].target_digest, imgs[0].target_media_type, on_resolved, NULL), 0);
        live.pending++;
        live_done();
}
static void on_namespaces(Ctrd *c, int error, const char *reason, const CtrdNamespaceList *l, void *ud) {
        assert_int_equal(error, 0);
        for (size_t i = 0; i < l->n; i++)
                if (streq_ptr(l->names[i], "test"))
                        live.saw_test_ns = true;
        assert_int_equal(ctrd_images_list(c, "test", on_images, NULL), 0);
        live.pending++;
        live_done();
}
static void on_image_missing(Ctrd *c, int error, const char *reason, const CtrdImage *img, void *ud) {
        live.get_missing_error = error;
        assert_null(img);
        strcpy_bounded(live.get_missing_reason, sizeof(live.get_missing_reason), reason);
        live_done();
}
static void on_blob(Ctrd *c, int error, const char *reason, const uint8_t *d, size_t n, void *ud) {
        live.blob_error = error;
        live_done();
}
static void on_raw_done(GrpcCall *call, int error, const GrpcStatus *st, void *ud) {
        live.grpc_error = error;
        live.grpc_status = *st;
        live_done();
}

static void test_live_unary(void **state) {
        live_begin();
        assert_int_equal(ctrd_version(live.ctrd, on_version, NULL), 0);
        assert_int_equal(ctrd_namespaces_list(live.ctrd, on_namespaces, NULL), 0);
        assert_int_equal(ctrd_image_get(live.ctrd, "test", "docker.io/library/nope:1", on_image_missing, NULL), 0);
        /* a blob bigger than allowed */
        live.pending = 3;
        live_run();
        assert_int_equal(live.pending, 0);
        assert_true(live.version.version[0]);
        assert_true(live.saw_test_ns);
        assert_string_equal(live.image.name, "docker.io/library/pwtest:1.0");
        assert_string_equal(live.image.target_media_type, CTRD_MT_OCI_INDEX);
        assert_int_equal(live.get_missing_error, -ENOENT);
        assert_non_null(strstr(live.get_missing_reason, "NOT_FOUND"));
        assert_int_equal(live.resolve_error, 0);
        assert_true(live.cfg.is_index);
        assert_int_equal(live.cfg.n_manifests, 2);
        assert_true(streq_ptr(live.cfg.platform_digest, live.cfg.manifests[0]) ||
                    streq_ptr(live.cfg.platform_digest, live.cfg.manifests[1]));
        assert_true(startswith(live.cfg.config_digest, "sha256:"));
        assert_true(live.cfg.has_revision);
        assert_string_equal(live.cfg.revision, "0123456789abcdef0123456789abcdef01234567");

        /* bounded content read, and a call without the namespace header (trailers-only) */
        assert_int_equal(ctrd_content_read(live.ctrd, "test", live.image.target_digest, 16, on_blob, NULL), 0);
        GrpcClient *g = NULL;
        assert_int_equal(grpc_client_new(&g, live.e, live.sock, 0), 0);
        assert_int_equal(grpc_call_start(g, "/containerd.services.images.v1.Images/List", NULL, NULL, 0,
                                         5 * 1000000ULL, NULL, on_raw_done, NULL, NULL),
                         0);
        live.pending = 2;
        live_run();
        assert_int_equal(live.blob_error, -EFBIG);
        assert_int_equal(live.grpc_error, 0);
        assert_int_equal(live.grpc_status.code, GRPC_STATUS_FAILED_PRECONDITION);
        assert_non_null(strstr(live.grpc_status.message, "namespace is required"));
        /* unknown method → UNIMPLEMENTED */
        assert_int_equal(grpc_call_start(g, "/containerd.services.nope.v1.Nope/Nope", NULL, NULL, 0, 5 * 1000000ULL,
                                         NULL, on_raw_done, NULL, NULL),
                         0);
        live.pending = 1;
        live_run();
        assert_int_equal(live.grpc_error, 0);
        assert_int_equal(live.grpc_status.code, GRPC_STATUS_UNIMPLEMENTED);
        grpc_client_free(g);
        live_end();
}

static void on_container(Ctrd *c, int error, const char *reason, const CtrdContainer *ct, void *ud) {
        live.container_error = error;
        if (ct)
                live.container = *ct;
        live_done();
}
static void on_containers(Ctrd *c, int error, const char *reason, const char *ns, const CtrdContainer *cts, size_t n,
                          void *ud) {
        assert_int_equal(error, 0);
        live.n_containers = n;
        live_done();
}

static void test_live_containers(void **state) {
        live_begin();
        const char *create[] = { "ctr", "-a", live.sock, "-n", "test", "containers", "create",
                                 "--label", "io.kubernetes.pod.namespace=prod", "--label", "io.kubernetes.pod.name=web-1",
                                 "--label", "io.kubernetes.container.name=app",
                                 "docker.io/library/pwtest:1.0", "pw-c1", NULL };
        assert_int_equal(test_run_cmd(create), 0);
        assert_int_equal(ctrd_container_get(live.ctrd, "test", "pw-c1", on_container, NULL), 0);
        assert_int_equal(ctrd_containers_list(live.ctrd, "test", on_containers, NULL), 0);
        live.pending = 2;
        live_run();
        assert_int_equal(live.container_error, 0);
        assert_string_equal(live.container.id, "pw-c1");
        assert_string_equal(live.container.image, "docker.io/library/pwtest:1.0");
        assert_string_equal(live.container.workload.namespace, "prod");
        assert_string_equal(live.container.workload.pod, "web-1");
        assert_string_equal(live.container.workload.container, "app");
        assert_int_equal(live.n_containers, 1);

        assert_int_equal(ctrd_container_get(live.ctrd, "test", "nope", on_container, NULL), 0);
        live.pending = 1;
        live_run();
        assert_int_equal(live.container_error, -ENOENT);
        live_end();
}

static pid_t tagger;
static int tag_round;

static void on_event(Ctrd *c, const CtrdEvent *ev, void *ud) {
        if (ev->kind != CTRD_EVENT_IMAGE_CREATE || !startswith(ev->image_name, "docker.io/library/pwtag:"))
                return;
        live.events_seen++;
        live.event = *ev;
        live_stop = true;
}

/* The stream confirms nothing until its first event: tag again every 200 ms until one arrives. */
static int on_tag_timer(sd_event_source *s, uint64_t usec, void *ud) {
        if (tagger > 0 && waitpid(tagger, NULL, WNOHANG) == 0)
                goto again;
        char name[64];
        snprintf(name, sizeof(name), "docker.io/library/pwtag:%d", ++tag_round);
        tagger = fork();
        if (tagger == 0) {
                int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
                dup2(null, 1);
                dup2(null, 2);
                execlp("ctr", "ctr", "-a", live.sock, "-n", "test", "images", "tag", "docker.io/library/pwtest:1.0", name,
                       (char *) NULL);
                _exit(127);
        }
again:
        sd_event_source_set_time(s, usec + 200 * 1000);
        sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

static void on_end(Ctrd *c, int error, const char *reason, void *ud) {
        fail_msg("stream ended: %d %s", error, reason);
}

static void test_live_subscribe(void **state) {
        sd_event_source *t = NULL;
        CtrdCall *sub = NULL;
        uint64_t now;
        static const char *const filters[] = { "topic~=\"^/(images|containers|tasks)/\"" };

        live_begin();
        assert_int_equal(ctrd_subscribe(live.ctrd, filters, 1, on_event, on_end, NULL, &sub), 0);
        assert_non_null(sub);
        assert_true(sd_event_now(live.e, CLOCK_MONOTONIC, &now) >= 0);
        assert_int_equal(sd_event_add_time(live.e, &t, CLOCK_MONOTONIC, now + 100 * 1000, 1, on_tag_timer, NULL), 0);
        live_run();
        sd_event_source_disable_unref(t);
        if (tagger > 0)
                waitpid(tagger, NULL, 0);
        assert_true(live.events_seen >= 1);
        assert_string_equal(live.event.namespace, "test");
        assert_string_equal(live.event.topic, "/images/create");
        assert_true(live.event.timestamp_usec > 1600000000ULL * 1000000ULL);
        assert_int_equal(ctrd_pending(live.ctrd), 1);
        ctrd_call_cancel(sub);
        live_end();
}

static int resolve_sync_calls;
static void on_resolved_sync(Ctrd *c, int error, const char *reason, const CtrdImageConfig *cfg, void *ud) {
        resolve_sync_calls++;
        on_resolved(c, error, reason, cfg, ud);
}

static bool cfg_equal(const CtrdImageConfig *a, const CtrdImageConfig *b) {
        return streq_ptr(a->platform_digest, b->platform_digest) && streq_ptr(a->config_digest, b->config_digest) &&
               a->has_revision == b->has_revision && streq_ptr(a->revision, b->revision) &&
               a->is_index == b->is_index && a->n_manifests == b->n_manifests && streq_ptr(a->platform, b->platform);
}

/* Resolve live.image (listed by test_live_unary) and run until it is resolved and
 * nothing else is pending (the content root probe). */
static void resolve_and_settle(void) {
        assert_int_equal(ctrd_image_resolve(live.ctrd, "test", live.image.target_digest, live.image.target_media_type,
                                            on_resolved, NULL),
                         0);
        live.pending = 1;
        live_run();
        for (int i = 0; i < 200 && ctrd_pending(live.ctrd) > 0; i++)
                assert_true(sd_event_run(live.e, 100 * 1000) >= 0);
        assert_int_equal(ctrd_pending(live.ctrd), 0);
}

/* The blobs read straight from the content store give what Content.Read gives; a blob
 * missing from the disk goes to containerd; turned off, nothing is read directly. */
static void test_live_resolve_direct(void **state) {
        uint64_t direct, api;
        if (live.pid <= 0 || !live.image.target_digest[0])
                skip();
        /* through containerd only */
        live_begin();
        ctrd_set_content_direct(live.ctrd, false);
        resolve_and_settle();
        assert_int_equal(live.resolve_error, 0);
        CtrdImageConfig via_api = live.cfg;
        ctrd_get_content_stats(live.ctrd, &direct, &api);
        assert_int_equal(direct, 0);
        assert_int_equal(api, 3); /* index, manifest, config */
        assert_null(ctrd_content_root(live.ctrd));
        live_end();

        /* direct: the first resolve asks where the store is (its blobs through containerd
         * meanwhile), the second reads all three from the disk, before it returns */
        live_begin();
        resolve_and_settle();
        assert_int_equal(live.resolve_error, 0);
        assert_true(cfg_equal(&live.cfg, &via_api));
        char root[512];
        snprintf(root, sizeof root, "%s/root/io.containerd.content.v1.content", live.dir);
        assert_string_equal(ctrd_content_root(live.ctrd), root);
        uint64_t direct0, api0;
        ctrd_get_content_stats(live.ctrd, &direct0, &api0);
        live.cfg = (CtrdImageConfig){};
        resolve_sync_calls = 0;
        assert_int_equal(ctrd_image_resolve(live.ctrd, "test", live.image.target_digest, live.image.target_media_type,
                                            on_resolved_sync, NULL),
                         0);
        assert_int_equal(resolve_sync_calls, 1);
        assert_int_equal(live.resolve_error, 0);
        assert_true(cfg_equal(&live.cfg, &via_api));
        assert_int_equal(ctrd_pending(live.ctrd), 0);
        ctrd_get_content_stats(live.ctrd, &direct, &api);
        assert_int_equal(direct - direct0, 3);
        assert_int_equal(api, api0);

        /* the config blob gone from the disk: containerd is asked (and says NOT_FOUND) */
        char blob[640], aside[660];
        snprintf(blob, sizeof blob, "%s/blobs/sha256/%s", root, via_api.config_digest + strlen("sha256:"));
        snprintf(aside, sizeof aside, "%s.aside", blob);
        assert_int_equal(rename(blob, aside), 0);
        assert_int_equal(ctrd_image_resolve(live.ctrd, "test", live.image.target_digest, live.image.target_media_type,
                                            on_resolved, NULL),
                         0);
        live.pending = 1;
        live_run();
        assert_int_equal(rename(aside, blob), 0);
        assert_int_equal(live.resolve_error, -ENOENT);
        uint64_t direct1 = direct;
        ctrd_get_content_stats(live.ctrd, &direct, &api);
        assert_int_equal(direct - direct1, 2); /* index and manifest */
        assert_int_equal(api - api0, 1);       /* the config */

        /* on the worker (a listing's look-ups): never called back before it returns, then
         * from the loop with what the synchronous chain found, every blob read directly */
        uint64_t direct2 = direct, api2 = api;
        live.cfg = (CtrdImageConfig){};
        resolve_sync_calls = 0;
        assert_int_equal(ctrd_image_resolve_async(live.ctrd, "test", live.image.target_digest,
                                                  live.image.target_media_type, on_resolved_sync, NULL),
                         0);
        assert_int_equal(resolve_sync_calls, 0);
        live.pending = 1;
        live_run();
        assert_int_equal(resolve_sync_calls, 1);
        assert_int_equal(live.resolve_error, 0);
        assert_true(cfg_equal(&live.cfg, &via_api));
        ctrd_get_content_stats(live.ctrd, &direct, &api);
        assert_int_equal(direct - direct2, 3);
        assert_int_equal(api, api2);

        /* its config blob gone: the worker hands it to the loop, which asks containerd */
        assert_int_equal(rename(blob, aside), 0);
        assert_int_equal(ctrd_image_resolve_async(live.ctrd, "test", live.image.target_digest,
                                                  live.image.target_media_type, on_resolved, NULL),
                         0);
        live.pending = 1;
        live_run();
        assert_int_equal(rename(aside, blob), 0);
        assert_int_equal(live.resolve_error, -ENOENT);
        uint64_t direct3 = direct;
        ctrd_get_content_stats(live.ctrd, &direct, &api);
        assert_int_equal(direct - direct3, 2);
        assert_int_equal(api - api2, 1);

        /* a bad target: the same error, from the loop */
        live.pending = 1;
        assert_int_equal(ctrd_image_resolve_async(live.ctrd, "test", via_api.config_digest, CTRD_MT_OCI_INDEX,
                                                  on_resolved, NULL),
                         0);
        live_run();
        assert_int_equal(live.resolve_error, -EBADMSG);

        /* released (the listing's end) and started again; freed with a chain on it: no
         * callback, nothing leaked (ASan) */
        ctrd_resolve_worker_release(live.ctrd);
        resolve_sync_calls = 0;
        assert_int_equal(ctrd_image_resolve_async(live.ctrd, "test", live.image.target_digest,
                                                  live.image.target_media_type, on_resolved_sync, NULL),
                         0);
        live_end();
        assert_int_equal(resolve_sync_calls, 0);
}

/* Asked ahead (as the agent does beside its first listing): the first resolve already
 * reads every blob from the disk, none through containerd; and many chains on the
 * worker at once (handed back in groups) each come back once, with the same answer. */
static void test_live_probe_ahead(void **state) {
        uint64_t direct, api;
        if (live.pid <= 0 || !live.image.target_digest[0])
                skip();
        live_begin();
        /* asked while the store holds no blob yet (no blobs/ directory: a node's first
         * start): not turned off, asked again */
        char blobs[512], aside[530];
        snprintf(blobs, sizeof blobs, "%s/root/io.containerd.content.v1.content/blobs", live.dir);
        snprintf(aside, sizeof aside, "%s.aside", blobs);
        assert_int_equal(rename(blobs, aside), 0);
        ctrd_content_probe(live.ctrd);
        for (int i = 0; i < 200 && ctrd_pending(live.ctrd) > 0; i++)
                assert_true(sd_event_run(live.e, 100 * 1000) >= 0);
        assert_int_equal(rename(aside, blobs), 0);
        assert_null(ctrd_content_root(live.ctrd));
        ctrd_content_probe(live.ctrd);
        for (int i = 0; i < 200 && ctrd_pending(live.ctrd) > 0; i++)
                assert_true(sd_event_run(live.e, 100 * 1000) >= 0);
        assert_non_null(ctrd_content_root(live.ctrd));
        resolve_sync_calls = 0;
        live.pending = 1;
        assert_int_equal(ctrd_image_resolve(live.ctrd, "test", live.image.target_digest, live.image.target_media_type,
                                            on_resolved_sync, NULL),
                         0);
        assert_int_equal(resolve_sync_calls, 1); /* before it returned: every blob from the disk */
        assert_int_equal(live.resolve_error, 0);
        ctrd_get_content_stats(live.ctrd, &direct, &api);
        assert_int_equal(direct, 3);
        assert_int_equal(api, 0);
        CtrdImageConfig want = live.cfg;

        enum { N = 41 }; /* more than two groups, and a short last one */
        resolve_sync_calls = 0;
        for (int i = 0; i < N; i++)
                assert_int_equal(ctrd_image_resolve_async(live.ctrd, "test", live.image.target_digest,
                                                          live.image.target_media_type, on_resolved_sync, NULL),
                                 0);
        assert_int_equal(resolve_sync_calls, 0);
        live.pending = N;
        live_run();
        assert_int_equal(resolve_sync_calls, N);
        assert_int_equal(live.resolve_error, 0);
        assert_true(cfg_equal(&live.cfg, &want));
        ctrd_get_content_stats(live.ctrd, &direct, &api);
        assert_int_equal(direct, 3 + 3 * N);
        assert_int_equal(api, 0);
        live_end();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_real_envelopes),
                cmocka_unit_test(test_synthetic_envelopes),
                cmocka_unit_test(test_goarch),
                cmocka_unit_test(test_digest_valid),
                cmocka_unit_test(test_parse_index),
                cmocka_unit_test(test_parse_manifest_config),
                cmocka_unit_test_setup_teardown(test_blob_read_at, setup_dir, teardown_dir),
        };
        const struct CMUnitTest live_tests[] = {
                cmocka_unit_test(test_live_unary),
                cmocka_unit_test(test_live_resolve_direct),
                cmocka_unit_test(test_live_probe_ahead),
                cmocka_unit_test(test_live_containers),
                cmocka_unit_test(test_live_subscribe),
        };
        int r = cmocka_run_group_tests_name("pure", tests, NULL, NULL);
        r |= cmocka_run_group_tests_name("live containerd", live_tests, live_setup, live_teardown);
        return r;
}
