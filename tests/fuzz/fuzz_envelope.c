/* ctrd_event_decode on arbitrary bytes: an Envelope as containerd's Subscribe stream sends it. */
#include <stdint.h>
#include <string.h>

#include "pullwatch/containerd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        CtrdEvent ev;
        if (ctrd_event_decode(data, size, &ev) >= 0) {
                /* everything decoded must be a terminated string within its field */
                if (strnlen(ev.namespace, sizeof(ev.namespace)) == sizeof(ev.namespace) ||
                    strnlen(ev.topic, sizeof(ev.topic)) == sizeof(ev.topic) ||
                    strnlen(ev.type_url, sizeof(ev.type_url)) == sizeof(ev.type_url) ||
                    strnlen(ev.image_name, sizeof(ev.image_name)) == sizeof(ev.image_name) ||
                    strnlen(ev.container_id, sizeof(ev.container_id)) == sizeof(ev.container_id) ||
                    !ctrd_event_kind_to_string(ev.kind))
                        __builtin_trap();
        }
        return 0;
}
