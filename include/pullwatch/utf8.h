/* Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF), as jansson
 * requires of every string it is given. Pure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Whether the len bytes at p are strict UTF-8 without a NUL byte. */
bool utf8_valid_n(const void *p, size_t len);

/* The length (2-4) of the one strict UTF-8 sequence of a non-ASCII character at p,
 * given avail bytes from p on (avail >= 1, *p >= 0x80); 0 when it is not one. */
size_t utf8_sequence_len(const void *p, size_t avail);
