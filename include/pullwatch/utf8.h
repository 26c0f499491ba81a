/* Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF), as jansson
 * requires of every string it is given. Pure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Whether the len bytes at p are strict UTF-8 without a NUL byte. */
bool utf8_valid_n(const void *p, size_t len);
