/* One question of the reference grammar for modules that keep their own `Ref` type (the
 * ledger): the normalised repository name of a tagged reference. See ref.h. */
#pragma once

#include <stddef.h>

/* 1 and name (domain/path, e.g. docker.io/library/nginx) if s is a valid reference with a
 * tag (written or implied: "nginx" is nginx:latest, while "nginx@sha256:…" has none);
 * 0 for a reference without a tag, an image id or an invalid one; -ENAMETOOLONG if name
 * does not fit in size bytes. */
int ref_tagged_name(const char *s, char *name, size_t size);
