/* Fuzz target for the config file loader (config_load_buffer); a loaded config must
 * dump to JSON that loads again, and a Policy can be built or refused cleanly. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pullwatch/config.h"
#include "pullwatch/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Config c;
        char err[512];
        if (config_init(&c) < 0)
                abort();
        if (config_load_buffer(&c, (const char *) data, size, "fuzz.json", err, sizeof(err)) < 0) {
                if (!err[0] || strchr(err, '\n'))
                        abort();
                config_done(&c);
                return 0;
        }
        json_t *j = NULL;
        if (config_to_json(&c, &j) < 0)
                abort();
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        Config d;
        if (!s || config_init(&d) < 0 || config_load_buffer(&d, s, strlen(s), "dump", err, sizeof(err)) < 0)
                abort();
        free(s);
        config_done(&d);

        Policy *p = NULL;
        if (policy_new_from_config(&c, &p, err, sizeof(err)) >= 0)
                policy_free(p);
        config_done(&c);
        return 0;
}
