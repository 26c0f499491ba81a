/* Digest pins: a JSON map { "reference": "sha256:…", … } as a CI job or a ConfigMap
 * writes it. Keys are normalised with ref_parse() on load, so "nginx:1.25" and
 * "docker.io/library/nginx:1.25" are the same pin. A key must name a tag (explicit or
 * the implied latest) and carry no digest; a value must be a valid digest. Two keys that
 * normalise to the same reference must agree.
 *
 * Bounded: the file at most PINS_FILE_MAX bytes, at most PINS_ENTRIES_MAX entries.
 * A Pins is immutable once built; reload by building a new one and swapping. */
#pragma once

#include <stddef.h>

#include "pullwatch/ref.h"

#define PINS_FILE_MAX (4U * 1024U * 1024U)
#define PINS_ENTRIES_MAX 65536U

typedef struct Pins Pins;

/* Parse len bytes of JSON at buf. On success *ret is a new Pins owned by the caller
 * (free with pins_free). On failure -EINVAL (bad JSON or entry: err names the key),
 * -E2BIG (too large or too many entries), -ENOMEM; *ret untouched. */
int pins_parse(const char *buf, size_t len, Pins **ret, char *err, size_t errlen);
/* Read and parse the file at path (regular file, O_CLOEXEC, size bounded). Errors as
 * pins_parse plus -errno of open/read; err starts with the path. */
int pins_load(const char *path, Pins **ret, char *err, size_t errlen);
/* An empty set of pins, owned by the caller. */
int pins_new_empty(Pins **ret);
/* Accepts NULL; returns NULL. */
Pins *pins_free(Pins *p);

size_t pins_size(const Pins *p); /* 0 for NULL */

/* The pinned digest for a reference (any spelling ref_parse accepts; only its
 * name:tag counts), or NULL if none, if p is NULL or if ref has no tag or is
 * malformed. The string is borrowed from p and lives as long as p. */
const char *pins_lookup(const Pins *p, const char *ref);
const char *pins_lookup_ref(const Pins *p, const Ref *r);
