/* judge: the container-start catch-up (issue 12, item 1). A container whose image the
 * ledger does not know at that digest — a pull that published no image event — records
 * the pull then, once, marked as found at container start; a container on an image whose
 * pull was recorded adds no pull record; scan mode (no memory) never records pulls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "pullwatch/config.h"
#include "pullwatch/judge.h"
#include "pullwatch/util.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define REV "0123456789abcdef0123456789abcdef01234567"

typedef struct Captured {
        Finding f[32];
        size_t n;
} Captured;

static void capture(Finding *f, const char *key, void *userdata) {
        Captured *c = userdata;
        assert_true(c->n < ELEMENTSOF(c->f));
        if (!f->message[0])
                finding_format_message(f);
        c->f[c->n++] = *f;
}

typedef struct Fixture {
        Config config;
        Policy *policy;
        Pins *pins;
        Ledger *ledger;
        Attribution *attribution;
        Captured out;
        Judge jd;
} Fixture;

static int setup(void **state) {
        Fixture *x = calloc(1, sizeof *x);
        char err[256];
        assert_non_null(x);
        assert_int_equal(config_init(&x->config), 0);
        free(x->config.node);
        x->config.node = strdup("node-a");
        assert_int_equal(config_finish(&x->config, err, sizeof err), 0);
        assert_int_equal(policy_new_from_config(&x->config, &x->policy, err, sizeof err), 0);
        assert_int_equal(pins_new_empty(&x->pins), 0);
        assert_int_equal(ledger_new(&x->ledger, 1000), 0);
        assert_int_equal(attribution_new(&x->attribution), 0);
        x->jd = (Judge){.config = &x->config, .policy = x->policy, .pins = x->pins, .ledger = x->ledger,
                        .attribution = x->attribution, .remember = true,
                        .out = {.emit = capture, .userdata = &x->out}};
        *state = x;
        return 0;
}

static int teardown(void **state) {
        Fixture *x = *state;
        attribution_free(x->attribution);
        ledger_free(x->ledger);
        pins_free(x->pins);
        policy_free(x->policy);
        config_done(&x->config);
        free(x);
        return 0;
}

static Observation obs(const char *ref, const char *digest, const char *pod) {
        Observation o = {.config_known = true, .has_revision = true, .time_usec = 1000};
        strcpy_bounded(o.namespace, sizeof o.namespace, "k8s.io");
        strcpy_bounded(o.ref, sizeof o.ref, ref);
        strcpy_bounded(o.digest, sizeof o.digest, digest);
        strcpy_bounded(o.media_type, sizeof o.media_type, "application/vnd.oci.image.manifest.v1+json");
        strcpy_bounded(o.revision, sizeof o.revision, REV);
        if (pod) {
                strcpy_bounded(o.workload.namespace, sizeof o.workload.namespace, "shop");
                strcpy_bounded(o.workload.pod, sizeof o.workload.pod, pod);
                strcpy_bounded(o.workload.container, sizeof o.workload.container, "web");
                strcpy_bounded(o.workload.container_id, sizeof o.workload.container_id, pod);
        }
        return o;
}

static size_t count(const Captured *c, FindingKind kind, bool found_at_start) {
        size_t n = 0;
        for (size_t i = 0; i < c->n; i++)
                n += c->f[i].kind == kind && c->f[i].found_at_start == found_at_start;
        return n;
}

static void test_unknown_image_recorded_at_container_start(void **state) {
        Fixture *x = *state;
        Observation c = obs("registry.local/web:1.0.0", D1, "web-1");
        judge_container(&x->jd, &c);
        assert_int_equal(count(&x->out, FINDING_PULL, true), 1);
        assert_int_equal(count(&x->out, FINDING_PULL, false), 0);
        const Finding *p = &x->out.f[0];
        assert_string_equal(p->image.digest, D1);
        assert_string_equal(p->workload.pod, ""); /* the pull is the node's, not the pod's */
        assert_non_null(strstr(p->message, "found at container start"));
        char *json = NULL;
        assert_int_equal(finding_to_json_string(p, &json), 0);
        assert_non_null(strstr(json, "\"found\":\"container_start\""));
        free(json);

        /* a second container on it: nothing new */
        size_t before = x->out.n;
        Observation c2 = obs("registry.local/web:1.0.0", D1, "web-2");
        judge_container(&x->jd, &c2);
        assert_int_equal(x->out.n, before);
}

static void test_findings_come_with_the_catch_up(void **state) {
        Fixture *x = *state;
        Observation c = obs("registry.local/web:latest", D1, "web-1");
        judge_container(&x->jd, &c);
        assert_int_equal(count(&x->out, FINDING_PULL, true), 1);
        assert_int_equal(count(&x->out, FINDING_LATEST_TAG, true), 1); /* the node's, at catch-up */
        /* and the workload's own latest_tag, naming the pod, as for any container */
        size_t pod_findings = 0;
        for (size_t i = 0; i < x->out.n; i++)
                pod_findings += x->out.f[i].kind == FINDING_LATEST_TAG && streq_ptr(x->out.f[i].workload.pod, "web-1");
        assert_int_equal(pod_findings, 1);
}

static void test_known_image_adds_no_pull(void **state) {
        Fixture *x = *state;
        Observation img = obs("registry.local/web:1.0.0", D1, NULL);
        judge_image(&x->jd, &img, false);
        assert_int_equal(count(&x->out, FINDING_PULL, false), 1);
        Observation c = obs("registry.local/web:1.0.0", D1, "web-1");
        judge_container(&x->jd, &c);
        assert_int_equal(count(&x->out, FINDING_PULL, true), 0);
        assert_int_equal(count(&x->out, FINDING_PULL, false), 1);
}

static void test_moved_tag_caught_at_container_start(void **state) {
        Fixture *x = *state;
        Observation img = obs("registry.local/web:main", D1, NULL);
        judge_image(&x->jd, &img, false);
        /* re-pulled at D2 without an event, then a container starts on it */
        Observation c = obs("registry.local/web:main", D2, "web-1");
        judge_container(&x->jd, &c);
        assert_int_equal(count(&x->out, FINDING_PULL, true), 1);
        assert_int_equal(count(&x->out, FINDING_TAG_MOVED, true), 1);
        for (size_t i = 0; i < x->out.n; i++)
                if (x->out.f[i].kind == FINDING_TAG_MOVED)
                        assert_string_equal(x->out.f[i].image.previous_digest, D1);
}

static void test_scan_records_no_pull(void **state) {
        Fixture *x = *state;
        x->jd.remember = false;
        Observation c = obs("registry.local/web:1.0.0", D1, "web-1");
        judge_container(&x->jd, &c);
        assert_int_equal(count(&x->out, FINDING_PULL, true) + count(&x->out, FINDING_PULL, false), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_unknown_image_recorded_at_container_start, setup, teardown),
                cmocka_unit_test_setup_teardown(test_findings_come_with_the_catch_up, setup, teardown),
                cmocka_unit_test_setup_teardown(test_known_image_adds_no_pull, setup, teardown),
                cmocka_unit_test_setup_teardown(test_moved_tag_caught_at_container_start, setup, teardown),
                cmocka_unit_test_setup_teardown(test_scan_records_no_pull, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
