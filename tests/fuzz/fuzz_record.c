/* Fuzz target for record_from_json (one JSON line of the record schema), with invariants:
 * a failure explains itself in one line and leaves nothing to free; a decoded pull or
 * finding re-encodes (finding_to_json) to a line that decodes to the same struct; the
 * decoder's fast paths (pull and finding lines; inventory lines) and jansson's
 * (record_from_json_generic) give the same answer: the same error, or the same record
 * (record_equal: every field, an inventory's images and pods too). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pullwatch/record.h"
#include "record_equal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static Record rec, again, generic;
        char err[256] = "", gerr[256] = "";
        int r = record_from_json((const char *) data, size, &rec, err, sizeof err);
        /* the fast path (pulls and findings without jansson) decides as jansson's does */
        int g = record_from_json_generic((const char *) data, size, &generic, gerr, sizeof gerr);
        if (g != r || strcmp(gerr, err) != 0)
                abort();
        if (r >= 0 && (generic.type != rec.type || memcmp(generic.cluster, rec.cluster, sizeof rec.cluster) != 0 ||
                       memcmp(&generic.finding, &rec.finding, sizeof rec.finding) != 0 || !record_equal(&generic, &rec)))
                abort();
        if (r >= 0)
                record_done(&generic);
        if (r < 0) {
                if (!err[0] || strchr(err, '\n') || rec.inventory.images)
                        abort();
                return 0;
        }
        if (rec.type == RECORD_INVENTORY) {
                if (rec.inventory.part < 1 || rec.inventory.part > rec.inventory.parts ||
                    rec.inventory.n_images > RECORD_IMAGES_MAX)
                        abort();
                for (size_t i = 0; i < rec.inventory.n_images; i++) {
                        char text[RECORD_FINDINGS_TEXT_MAX];
                        record_findings_text(rec.inventory.images[i].findings, text, sizeof text);
                        if (rec.inventory.images[i].n_pods > RECORD_PODS_MAX)
                                abort();
                }
                record_done(&rec);
                return 0;
        }
        /* the message is free text the encoder writes as is: compare everything */
        char *text = NULL;
        if (finding_to_json_string(&rec.finding, &text) < 0)
                abort();
        if (record_from_json(text, strlen(text), &again, err, sizeof err) < 0)
                abort();
        if (memcmp(&again.finding, &rec.finding, sizeof rec.finding) != 0)
                abort();
        free(text);
        record_done(&again);
        record_done(&rec);
        return 0;
}
