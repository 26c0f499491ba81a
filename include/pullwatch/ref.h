/* Image references: the distribution grammar and its normalisation (distribution/reference, reference.go).
 *
 *   reference := name [":" tag] ["@" digest]      name := [domain "/"] path
 *
 * Pure: no allocation, no I/O. A Ref is plain and fixed-size; copy it by value.
 *
 * Normalisation follows distribution's ParseNormalizedNamed:
 *   nginx                  -> docker.io/library/nginx:latest   (tag_implicit)
 *   user/app               -> docker.io/user/app:latest        (tag_implicit)
 *   index.docker.io/x/y    -> docker.io/x/y:latest
 *   localhost:5000/a/b:1   -> domain "localhost:5000", path "a/b", tag "1"
 *   name@sha256:...        -> digest kept, no tag, is_digest_only
 *   name:tag@sha256:...    -> BOTH tag and digest kept. containerd's ParseDockerRef
 *                             would keep only the digest; ref_format_docker() does that.
 *   sha256:<64 hex>        -> is_image_id (a CRI image id record name), only digest set
 *
 * Deliberate choices where implementations differ:
 *   - a first component with uppercase letters is a domain (upstream), so "Foo/bar" is
 *     domain "Foo"; an uppercase path is rejected ("repository name must be lowercase");
 *   - the normalised name (domain/path, "docker.io/library/" included) is limited to
 *     255 characters, as containerd 1.6 counts it (upstream counts only the path);
 *   - digests: sha256 (64), sha384 (96) and sha512 (128) lowercase hex only (OCI
 *     image-spec; go-digest knows no other algorithm);
 *   - bracketed IPv6 hosts are accepted (upstream), with an optional port. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "pullwatch/finding.h"

#define REF_NAME_MAX 255 /* the normalised domain/path */

typedef struct Ref {
        char domain[PW_NAME_MAX];   /* "docker.io", "localhost:5000", "" for an image id */
        char path[PW_NAME_MAX];     /* "library/nginx", "" for an image id */
        char tag[PW_TAG_MAX];       /* "" when the reference has no tag (digest only, image id) */
        char digest[PW_DIGEST_MAX]; /* "algo:hex" or "" */
        bool tag_implicit;          /* no tag and no digest were written: "latest" was implied */
        bool is_image_id;           /* the bare CRI image id "sha256:<64 hex>" */
        bool is_digest_only;        /* name@digest without a tag */
} Ref;

/* Parse and normalise s. On failure returns -EINVAL (malformed) and, when err is
 * non-NULL, a one-line reason (not including the input itself, which may be hostile);
 * *ret is untouched. */
int ref_parse(const char *s, Ref *ret, char *err, size_t errlen);

/* "domain/path" (empty string for an image id). -ENAMETOOLONG if buf is too small. */
int ref_name(const Ref *r, char *buf, size_t len);
/* The full normalised string: domain/path[:tag][@digest], or the image id.
 * Re-parsing it gives the same Ref except that tag_implicit becomes false. */
int ref_format(const Ref *r, char *buf, size_t len);
/* As ParseDockerRef would name it: like ref_format, but a reference carrying both a tag
 * and a digest keeps only the digest. This is how CRI stores such a pull. */
int ref_format_docker(const Ref *r, char *buf, size_t len);
/* "domain/path:tag" — the key under which a tagged reference is pinned. -ENOENT if the
 * reference has no tag. */
int ref_format_tagged(const Ref *r, char *buf, size_t len);

/* Only these are "equal": same domain, path, tag, digest and flags. */
bool ref_equal(const Ref *a, const Ref *b);

/* A valid "algo:hex" digest per the rules above. */
bool ref_digest_is_valid(const char *digest);
/* A valid tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}. */
bool ref_tag_is_valid(const char *tag);

/* 7–40 lowercase hex characters, as a short or full git commit id. Tags made only of
 * digits (dates such as 20240101, build numbers) are NOT taken for commit ids unless
 * they are a full 40-character id: treating them as such would raise
 * revision_mismatch on every date-tagged image. */
bool ref_is_commit_sha_tag(const char *tag);
/* A semantic-version-like tag: optional "v", MAJOR.MINOR[.PATCH], optional
 * "-prerelease" and "+build" ([0-9A-Za-z.-]). "v1.2.3", "1.2.3-rc.1", "1.2" match;
 * "1", "v1", "latest" do not. */
bool ref_is_semver_tag(const char *tag);
