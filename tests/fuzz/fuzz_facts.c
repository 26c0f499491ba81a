/* Fuzz target for facts_check/facts_find (the config facts file, agent/facts.c): a file
 * that passes the check answers a look-up of every record's target, with digests of the
 * sha256 form and a revision that fits; a rejected one says why in one line. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pullwatch/facts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char err[256] = "";
        size_t count = 0;
        if (size > FACTS_FILE_MAX)
                return 0;
        if (facts_check(data, size, &count, err, sizeof err) < 0) {
                if (!err[0] || strchr(err, '\n'))
                        abort();
                return 0;
        }
        for (size_t i = 0; i < count; i++) {
                const uint8_t *r = data + FACTS_HEADER_SIZE + i * FACTS_RECORD_SIZE;
                char digest[PW_DIGEST_MAX];
                char *p = digest + sprintf(digest, "sha256:");
                for (size_t k = 0; k < 32; k++)
                        p += sprintf(p, "%02x", r[k]);
                FactsEntry e;
                if (facts_find(data, size, digest, &e) < 0 || strlen(e.platform_digest) != 71 ||
                    strlen(e.config_digest) != 71 || strncmp(e.config_digest, "sha256:", 7) != 0 ||
                    strlen(e.revision) > 255 || (!e.has_revision && e.revision[0]))
                        abort();
        }
        return 0;
}
