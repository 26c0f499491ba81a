/* The node's ledger: for every (containerd namespace, reference) the digests it has
 * resolved to, with first/last seen times, which one is current, and the findings
 * already raised for it, so that reconciles and restarts alert on change, not on
 * every look.
 *
 * In memory: a hash table keyed by (namespace, reference), O(1) lookups. On disk:
 * STATE_DIR/ledger.json, rewritten whole by ledger_save() (temp file, fsync, rename,
 * fsync the directory). The file is one header line followed by a JSON body:
 *
 *   pullwatch-ledger 1 <body length> <crc32 of body, 8 hex>\n
 *   {"version":1,"references":[{"namespace":"k8s.io","reference":"docker.io/library/nginx:latest",
 *     "current":"sha256:…","digests":[{"digest":"sha256:…","first_seen":…,"last_seen":…}],
 *     "raised":[{"digest":"sha256:…","kind":"tag_moved","last_raised":…}]}]}
 *
 * so truncation and corruption are detected before the JSON is even parsed. Cost: a
 * save is O(entries) (~200 bytes of file per history entry, ~2 MB and ~30 ms for 10k
 * references) plus two fsyncs; the body is streamed to the file (generated twice: once
 * for the header's length and CRC, once to write), so a save allocates ~16 KiB whatever
 * the size. The caller saves when ledger_is_dirty() and debounces (e.g. at most every
 * few seconds, and at exit).
 *
 * Memory: ~220 bytes per reference with one digest and three raised kinds at 1,000
 * references (digests are interned and a "sha256:"+64 lowercase hex digest is kept as
 * 32 bytes; kinds are interned; strings are allocated to their length); measured by
 * tests/bench/ledger_bench.sh.
 *
 * Bounds: at most max_entries history entries (one per (namespace, reference, digest)).
 * When a ledger_record() goes over the cap, entries are pruned one at a time:
 *   1. the non-current entry with the oldest last_seen, in any reference;
 *   2. only when every entry is some reference's current digest: the whole reference
 *      with the oldest last_seen, never the reference being recorded.
 * A pruned digest's raised findings go with it. Each reference keeps at most
 * LEDGER_RAISED_PER_REF_MAX raised findings, the oldest last_raised evicted first.
 * Pruning scans the table: O(entries) per record once at the cap; pulls are rare. A
 * larger excess (a file loaded under a smaller cap, a save pruned to fit LEDGER_FILE_MAX)
 * is pruned in one pass with one sort: O(entries log entries).
 *
 * Times are CLOCK_REALTIME µs supplied by the caller (the ledger reads no clock except
 * for naming a corrupt file). Not thread-safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pullwatch/finding.h"

#define LEDGER_FILE "ledger.json"
#define LEDGER_KIND_MAX 32             /* finding kind name, with NUL */
#define LEDGER_RAISED_PER_REF_MAX 64
#define LEDGER_FILE_MAX (64U << 20)    /* the saver never writes more, the loader refuses more */
#define LEDGER_REASON_MAX 1024

typedef struct Ledger Ledger;

typedef struct LedgerDigest {
        char digest[PW_DIGEST_MAX];
        uint64_t first_seen_usec, last_seen_usec;
} LedgerDigest;

typedef struct LedgerOpenReport {
        uint64_t references, entries, raised; /* loaded from the file */
        uint64_t pruned;                      /* entries over max_entries dropped at load */
        bool corrupt;                         /* the file was unreadable and moved aside */
        char reason[LEDGER_REASON_MAX];       /* when corrupt: one line, ready to log */
} LedgerOpenReport;

typedef struct LedgerStats {
        uint64_t references, entries, raised;
        uint64_t pruned; /* since open */
} LedgerStats;

/* An empty in-memory ledger with no file behind it (ledger_save() returns -EINVAL).
 * *ret owned by the caller, released with ledger_free(). max_entries >= 1. */
int ledger_new(Ledger **ret, size_t max_entries);

/* Load STATE_DIR/ledger.json (a missing file is an empty ledger). A truncated, corrupt
 * or schema-violating file is renamed to ledger.json.corrupt-<UTC timestamp>, described in
 * report->reason, and the ledger opens empty: this still returns 0. Fails only on
 * system errors (-ENOMEM, an unreadable directory...). report may be NULL. */
int ledger_open(Ledger **ret, const char *state_dir, size_t max_entries, LedgerOpenReport *report);
Ledger *ledger_free(Ledger *l); /* accepts NULL, returns NULL; does not save */

/* For read-only commands (report, scan): load STATE_DIR/ledger.json into a ledger with no
 * file behind it (ledger_save() returns -EINVAL), changing nothing on disk: no directory
 * created, no temp file removed, a bad file left where it is. -ENOENT if there is no file;
 * -EBADMSG with a one-line reason in err for a truncated, corrupt or oversized file or one
 * that is not a regular file (refused at once, never waited on). */
int ledger_read(Ledger **ret, const char *state_dir, size_t max_entries, char *err, size_t errlen);

/* Note that (ns, ref) resolves to digest at now_usec. A first sighting is not a change.
 * When the reference's current digest was another one, *ret_changed is true and
 * ret_previous_digest (PW_DIGEST_MAX bytes, may be NULL) gets it; otherwise "" and
 * false. -EINVAL for empty, over-long (ns < PW_NS_MAX, ref < PW_REF_MAX, digest <
 * PW_DIGEST_MAX) or not valid UTF-8 strings (JSON could not hold them). May prune (see
 * above). */
int ledger_record(Ledger *l, const char *ns, const char *ref, const char *digest, uint64_t now_usec,
                  char *ret_previous_digest, bool *ret_changed);

/* The current digest of (ns, ref), copied to *ret; -ENOENT if unknown. */
int ledger_lookup(const Ledger *l, const char *ns, const char *ref, LedgerDigest *ret);

/* Visit every reference in (namespace, reference) order. digests (borrowed, valid for
 * the call only) are in first_seen order; current is an index into them. Return 0 to
 * continue, >0 to stop, <0 to abort with that error. Do not modify l from the callback. */
typedef int (*ledger_visit_t)(const char *ns, const char *ref, const LedgerDigest *digests, size_t n_digests,
                              size_t current, void *userdata);
int ledger_foreach(const Ledger *l, ledger_visit_t visit, void *userdata);

/* Whether a finding of kind (a finding_kind_to_string() name) for (ns, ref, digest)
 * should be raised now: true if never raised, or if reminder_interval_usec > 0 and at
 * least that long has passed since it was last raised. Unknown references: true. */
bool ledger_should_raise(const Ledger *l, const char *ns, const char *ref, const char *digest, const char *kind,
                         uint64_t now_usec, uint64_t reminder_interval_usec);
/* When a finding of kind for (ns, ref, digest) was last raised; -ENOENT if never. */
int ledger_last_raised(const Ledger *l, const char *ns, const char *ref, const char *digest, const char *kind,
                       uint64_t *ret_usec);
/* Remember that it was raised at now_usec. -ENOENT if (ns, ref) was never recorded;
 * -EINVAL as for ledger_record() (kind < LEDGER_KIND_MAX); -E2BIG past 65535 distinct
 * kinds in one ledger. */
int ledger_mark_raised(Ledger *l, const char *ns, const char *ref, const char *digest, const char *kind,
                       uint64_t now_usec);

typedef enum LedgerRaiseFlags {
        LEDGER_RAISE_ALWAYS = 1 << 0, /* a transition (a tag that moved): raised whatever was raised before */
} LedgerRaiseFlags;

/* Decide and mark in one call: 1 if a finding (or, for FINDING_PULL, the pull record) of kind for (ns, ref, digest)
 * is to be raised now — by the rule of ledger_should_raise(), or always with
 * LEDGER_RAISE_ALWAYS — and it is then marked raised at now_usec; 0 if it was raised
 * already. ret_previous_usec (optional) gets when it was raised before this call, 0 if
 * never. A NULL ledger raises everything. Marking is best effort (a reference never
 * recorded cannot be marked): a failure to remember never suppresses a finding, at
 * worst it is raised again. */
int ledger_raise(Ledger *l, const char *ns, const char *ref, const char *digest, FindingKind kind, uint64_t now_usec,
                 uint64_t reminder_interval_usec, LedgerRaiseFlags flags, uint64_t *ret_previous_usec);

/* Whether a tagged reference of repository name (normalised domain/path, as ref_name()
 * gives it) in namespace ns currently resolves to digest: the CRI plugin's repo-digest
 * record (name@digest) of a pull already recorded under its tag. An index kept on
 * every change of a current digest makes this O(1), not a scan of the ledger. */
bool ledger_tagged_current(const Ledger *l, const char *ns, const char *name, const char *digest);

/* Crash-safe rewrite of STATE_DIR/ledger.json; clears the dirty flag. The file never
 * exceeds LEDGER_FILE_MAX, the limit ledger_open() enforces: a ledger that would is first
 * pruned, oldest history first as for the cap, until it fits. Returns the number of
 * entries so pruned (0 almost always), -EFBIG if even pruning cannot make it fit. */
int ledger_save(Ledger *l);
bool ledger_is_dirty(const Ledger *l);
void ledger_get_stats(const Ledger *l, LedgerStats *ret);

/* Pure core. ledger_format(): the whole file text (header + body), deterministic for a
 * given content; *ret is malloc()ed, owned by the caller. ledger_parse(): fill an EMPTY
 * ledger from file text; all or nothing. -EBADMSG with a one-line reason in err (may be
 * NULL) for any bad content; -ENOMEM; -EBUSY if into is not empty. Entries over the cap
 * are pruned after a successful parse (counted in stats.pruned). */
int ledger_format(const Ledger *l, char **ret, size_t *ret_len);
int ledger_parse(Ledger *into, const char *buf, size_t len, char *err, size_t errlen);
