/* A growing buffer with a hard maximum (curl's dynbuf rule: every dynamic buffer has
 * one). The content is always NUL-terminated once something was added, so it can be
 * used as a string; len does not count the NUL. Initialise with DYNBUF_INIT(max) or
 * dynbuf_init(); free with dynbuf_free() (or _cleanup_(dynbuf_free)). */
#pragma once

#include "pullwatch/util.h"

typedef struct DynBuf {
        char *data; /* owned; NULL until the first add */
        size_t len, cap, max;
} DynBuf;

#define DYNBUF_INIT(m) ((DynBuf){.max = (m)})

void dynbuf_init(DynBuf *b, size_t max);
void dynbuf_free(DynBuf *b);
/* Forget the content, keep the allocation. */
void dynbuf_reset(DynBuf *b);
/* -E2BIG if the content would exceed max bytes (nothing is added then), -ENOMEM. */
int dynbuf_add(DynBuf *b, const void *p, size_t n);
int dynbuf_puts(DynBuf *b, const char *s);
/* Any length up to the maximum; -E2BIG beyond it (nothing is added), -EINVAL for a bad format. */
int dynbuf_printf(DynBuf *b, const char *fmt, ...) _printf_(2, 3);
/* Hand the content to the caller (malloc()ed, NUL-terminated, never NULL on success:
 * an empty buffer gives ""); the buffer is left empty. */
int dynbuf_take(DynBuf *b, char **ret, size_t *ret_len);
