/* Policy: pure rules from an Observation (plus what the ledger knew and the pins) to
 * Findings. No I/O, no clock: the time of a finding is the observation's.
 *
 * Rules (each can be switched off with severity.<kind> = off):
 *   latest_tag        the tag is "latest", written or implied (a stored name without tag)
 *   mutable_tag       the tag is in mutable_tags (but latest reports as latest_tag only), or,
 *                     in strict mode, matches none of allowed_tag_patterns
 *   tag_moved         the ledger knew another digest for this reference
 *   digest_mismatch   a pin for name:tag (pins file, or the digest written in the reference
 *                     itself) equals none of: the target digest, the platform manifest
 *                     digest. So CI may pin a multi-arch image at its index or at the
 *                     node's platform manifest without a false alarm.
 *   revision_mismatch the tag looks like a commit id (ref_is_commit_sha_tag), the config
 *                     was read, and org.opencontainers.image.revision is missing or does not
 *                     start with the tag (case-insensitive)
 *   untraceable       the config was read and carries no revision label (if
 *                     report_untraceable); not raised when revision_mismatch already was
 *
 * No findings at all for exempt observations (containerd namespace, Kubernetes namespace,
 * registry, repository) and for CRI image-id records ("sha256:<hex>": they carry no name
 * to judge or exempt, and the same pull always has a named record). Digest-only records
 * ("name@sha256:…") get no tag findings (latest/mutable/revision), and a reference that
 * carries a digest is pinned whatever its tag says: "name:latest@sha256:…" raises neither
 * latest_tag nor mutable_tag (digest_mismatch still applies).
 *
 * The caller fills id, node and message (finding_format_message). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "pullwatch/config.h"
#include "pullwatch/finding.h"
#include "pullwatch/observation.h"
#include "pullwatch/pins.h"

/* Most findings one observation can give: one of latest/mutable, tag_moved,
 * digest_mismatch, one of revision_mismatch/untraceable. */
#define POLICY_FINDINGS_MAX 4

typedef struct Policy Policy;

/* Build a policy from the policy keys of c (mutable_tags, allowed_tag_patterns, strict,
 * report_untraceable, exempt_*, severity.*). c is borrowed; the Policy keeps its own
 * copies. *ret is owned by the caller (policy_free). -EINVAL with err naming the bad
 * value (a regex that does not compile, an exempt repository that is not a name). */
int policy_new_from_config(const Config *c, Policy **ret, char *err, size_t errlen);
/* Accepts NULL; returns NULL. */
Policy *policy_free(Policy *p);

/* Is kind enabled, and with which severity. */
bool policy_kind_enabled(const Policy *p, FindingKind kind);
Severity policy_severity(const Policy *p, FindingKind kind);

/* Is the observation exempt (any exemption matches)? -EINVAL if its reference is
 * malformed. */
int policy_is_exempt(const Policy *p, const Observation *o);

/* Evaluate one observation. previous_digest is what the ledger knew for the same
 * reference (NULL or "" if nothing); pins may be NULL. Findings are written to
 * out[0..*ret_n); max must be >= POLICY_FINDINGS_MAX or -ENOBUFS may be returned (out may
 * then hold partial results, *ret_n untouched). -EINVAL with err if o->ref is malformed.
 * All arguments borrowed. */
int policy_evaluate(const Policy *p, const Observation *o, const char *previous_digest, const Pins *pins,
                    Finding *out, size_t max, size_t *ret_n, char *err, size_t errlen);
/* The same, with o->ref already parsed by the caller (ref_parse() of o->ref succeeded
 * into *ref): the judge parses each reference once, not once per module. */
int policy_evaluate_ref(const Policy *p, const Observation *o, const Ref *ref, const char *previous_digest,
                        const Pins *pins, Finding *out, size_t max, size_t *ret_n, char *err, size_t errlen);

/* `pullwatch check REF`: the tag rules and the pins, offline, without a digest lookup.
 * digest_mismatch only when ref carries a digest and a pin for its name:tag differs.
 * Registry and repository exemptions apply. Findings have time_usec 0 and no namespace:
 * the caller stamps them. Same contract as policy_evaluate otherwise. */
int policy_check_reference(const Policy *p, const char *ref, const Pins *pins, Finding *out, size_t max,
                           size_t *ret_n, char *err, size_t errlen);
