/* config: enum keys are stored parsed beside their text (no user parses them again). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pullwatch/config.h"
#include "pullwatch/log.h"
#include "pullwatch/util.h"

static void test_enum_values(void **state) {
        static const struct {
                const char *file;
                ShipFormat format;
                SpoolFsync fsync;
                int level;
        } cases[] = {
                {"{}", SHIP_FORMAT_JSONL, SPOOL_FSYNC_BATCH, LOG_LEVEL_INFO}, /* the defaults */
                {"{\"endpoint_format\":\"loki\",\"spool_fsync\":\"always\",\"log_level\":\"err\"}", SHIP_FORMAT_LOKI,
                 SPOOL_FSYNC_ALWAYS, LOG_LEVEL_ERR},
                {"{\"spool_fsync\":\"never\",\"log_level\":\"debug\"}", SHIP_FORMAT_JSONL, SPOOL_FSYNC_NEVER,
                 LOG_LEVEL_DEBUG},
                {"{\"log_level\":\"warning\"}", SHIP_FORMAT_JSONL, SPOOL_FSYNC_BATCH, LOG_LEVEL_WARNING},
                {"{\"log_level\":\"notice\"}", SHIP_FORMAT_JSONL, SPOOL_FSYNC_BATCH, LOG_LEVEL_NOTICE},
                /* a rejected value leaves the previous one */
                {"{\"spool_fsync\":\"sometimes\"}", SHIP_FORMAT_JSONL, SPOOL_FSYNC_BATCH, LOG_LEVEL_INFO},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Config c = {};
                char err[256];
                assert_int_equal(config_init(&c), 0);
                (void) config_load_buffer(&c, cases[i].file, strlen(cases[i].file), "test", err, sizeof err);
                Config copy = {};
                assert_int_equal(config_copy(&copy, &c), 0);
                if (c.endpoint_format_value != cases[i].format || c.spool_fsync_value != cases[i].fsync ||
                    c.log_level_value != cases[i].level || copy.spool_fsync_value != c.spool_fsync_value)
                        fail_msg("case %zu: %d %d %d", i, c.endpoint_format_value, c.spool_fsync_value,
                                 c.log_level_value);
                config_done(&copy);
                config_done(&c);
        }
}

/* endpoint_transport: native by default, curl on request, anything else refused. */
static void test_transport(void **state) {
        static const struct {
                const char *file;
                int r;
                ShipTransport transport;
        } cases[] = {
                {"{}", 0, SHIP_TRANSPORT_NATIVE},
                {"{\"endpoint_transport\":\"curl\"}", 0, SHIP_TRANSPORT_CURL},
                {"{\"endpoint_transport\":\"native\"}", 0, SHIP_TRANSPORT_NATIVE},
                {"{\"endpoint_transport\":\"openssl\"}", -EINVAL, SHIP_TRANSPORT_NATIVE},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Config c = {};
                char err[256] = "";
                assert_int_equal(config_init(&c), 0);
                int r = config_load_buffer(&c, cases[i].file, strlen(cases[i].file), "test", err, sizeof err);
                if ((r < 0) != (cases[i].r < 0) || c.endpoint_transport_value != cases[i].transport)
                        fail_msg("case %zu: r=%d transport %d (%s)", i, r, c.endpoint_transport_value, err);
                if (r < 0 && !strstr(err, "native|curl"))
                        fail_msg("case %zu: the error does not name the choices: %s", i, err);
                config_done(&c);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_enum_values),
                cmocka_unit_test(test_transport),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
