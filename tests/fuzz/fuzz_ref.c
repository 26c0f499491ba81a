/* Fuzz target for ref_parse, with invariants: a successful parse formats to a string
 * that re-parses to the same Ref (tag_implicit aside) and formats identically again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pullwatch/ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char s[PW_REF_MAX + 64];
        if (size >= sizeof(s))
                size = sizeof(s) - 1;
        memcpy(s, data, size);
        s[size] = 0;

        Ref r, again;
        char err[256], a[PW_REF_MAX], b[PW_REF_MAX], name[PW_NAME_MAX];
        if (ref_parse(s, &r, err, sizeof(err)) < 0) {
                if (!err[0] || strchr(err, '\n'))
                        abort(); /* failures always explain themselves in one line */
                return 0;
        }
        if (ref_format(&r, a, sizeof(a)) < 0 || ref_name(&r, name, sizeof(name)) < 0)
                abort();
        if (ref_parse(a, &again, err, sizeof(err)) < 0)
                abort();
        again.tag_implicit = r.tag_implicit;
        if (!ref_equal(&r, &again))
                abort();
        if (ref_format(&again, b, sizeof(b)) < 0 || strcmp(a, b) != 0)
                abort();
        /* flags are consistent with the fields */
        if (r.is_image_id && (r.domain[0] || r.path[0] || r.tag[0] || !r.digest[0]))
                abort();
        if (!r.is_image_id && (!r.domain[0] || !r.path[0] || (!r.tag[0] && !r.digest[0])))
                abort();
        if (r.tag_implicit && (strcmp(r.tag, "latest") != 0 || r.digest[0]))
                abort();
        if (r.is_digest_only != (!r.is_image_id && r.digest[0] && !r.tag[0]))
                abort();
        if (r.digest[0] && !ref_digest_is_valid(r.digest))
                abort();
        if (r.tag[0] && !ref_tag_is_valid(r.tag))
                abort();
        (void) ref_is_commit_sha_tag(r.tag);
        (void) ref_is_semver_tag(r.tag);
        return 0;
}
