/* The node's ledger: for every (containerd namespace, reference) the digests it has
 * resolved to, with first/last seen times, which one is current, and the findings
 * already raised for it, so that reconciles and restarts alert on change, not on
 * every look.
 *
 * In memory: a hash table keyed by (namespace, reference), O(1) lookups. On disk, two
 * files: the snapshot STATE_DIR/ledger.json, rewritten whole by a compaction (temp file,
 * fsync, rename, fsync the directory), and the change log STATE_DIR/ledger.log, to which
 * ledger_save() appends the references changed since the last save (see "Change log"
 * below). The snapshot is one header line followed by a JSON body:
 *
 *   pullwatch-ledger 1 <body length> <crc32 of body, 8 hex>\n
 *   {"version":1,"references":[{"namespace":"k8s.io","reference":"docker.io/library/nginx:latest",
 *     "current":"sha256:…","digests":[{"digest":"sha256:…","first_seen":…,"last_seen":…}],
 *     "raised":[{"digest":"sha256:…","kind":"tag_moved","last_raised":…}]}]}
 *
 * so truncation and corruption are detected before the JSON is even parsed. A compaction
 * is O(entries) (~200 bytes of file per history entry, ~2 MB and ~30 ms for 10k
 * references) plus four fsyncs; the body is streamed to the file (generated twice: once
 * for the header's length and CRC, once to write), so it allocates ~16 KiB whatever the
 * size. The caller saves when ledger_is_dirty() and debounces (e.g. at most every few
 * seconds), and compacts at a clean exit.
 *
 * Change log: frames as the spool's (little endian: u32 magic "PWL1", u32 payload
 * length, u64 seq, u32 CRC32 of bytes 4..15 and the payload, then the payload). Frame 0
 * names the snapshot the log extends ("pullwatch-ledger-log 1 <body length> <body CRC32>
 * <body Adler-32>"); each later frame is one change, with increasing seqs: a reference
 * as it now is — the snapshot's reference object, replacing the reference whole — or
 * {"namespace":…,"reference":…,"removed":true}. A save appends the changes since the
 * last one in one write and one fdatasync(): O(changes), ~0.2-0.5 KiB per reference
 * changed, whatever the size of the ledger. When the log would outgrow the snapshot (or
 * LEDGER_LOG_COMPACT_MIN), when the changes are not trackable (out of memory) or after a
 * failed append, the save compacts instead: the snapshot is rewritten, then a new log
 * naming it replaces the old one (atomically). A crash between the two leaves a log that
 * names the previous snapshot: it is stale, and ignored. A load is the snapshot plus a
 * replay of its log, both bounded by LEDGER_FILE_MAX (the one size limit, on both sides).
 * In the log, a frame that does not decode with nothing valid after it is a torn tail
 * (an append that never returned: dropped, with one line); one followed by valid frames
 * is skipped (corruption, one line); a bad header, a log over LEDGER_FILE_MAX or one that
 * is not a regular file is moved aside (one line), the snapshot standing alone.
 *
 * last_seen refreshes: every re-list sees every image again and moves its last_seen. A
 * move within the same LEDGER_LAST_SEEN_GRAIN_USEC (an hour of the clock) changes memory
 * only: it is saved with the reference's next change, at the next compaction or at a
 * clean exit, so a re-list costs no save unless an hour turned over; a crash can leave a
 * saved last_seen up to an hour behind (it orders pruning, and the report shows it).
 *
 * Memory: ~220 bytes per reference with one digest and three raised kinds at 1,000
 * references (digests are interned and a "sha256:"+64 lowercase hex digest is kept as
 * 32 bytes; kinds are interned; strings are allocated to their length); measured by
 * tests/bench/ledger_bench.sh. A ledger with a state directory moves its references
 * and their history, after each load and each compaction, into a frozen image: an
 * unlinked file in the state directory (O_TMPFILE) mapped MAP_PRIVATE, whose pages are
 * clean and file-backed (not private dirty, reclaimable) until a change writes one (copy
 * on write of that page, until the next compaction); a re-list's last_seen moves are
 * kept beside it (4 bytes a reference). Without O_TMPFILE support or space in the state
 * directory the references stay in anonymous memory, as before. References made after
 * the image stay in the pool until the next image: a save compacts (instead of
 * appending) once LEDGER_THAWED_MAX of them wait, so a listing a save cut in two is not
 * left there (~190 bytes each, private dirty: up to ~1.9 MiB at 10,000).
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
#include "pullwatch/util.h"

#define LEDGER_FILE "ledger.json"
#define LEDGER_LOG_FILE "ledger.log"
#define LEDGER_LOG_MAGIC 0x314c5750U /* "PWL1" read as little endian */
#define LEDGER_LOG_MAGIC_TEXT "pullwatch-ledger-log"
#define LEDGER_LOG_FRAME_HEADER 20
#define LEDGER_LOG_COMPACT_MIN (256U << 10)            /* a log may reach this even beside a small snapshot */
#define LEDGER_THAWED_MAX 1024U /* references outside the frozen image before a save compacts (see "Memory") */
#define LEDGER_LAST_SEEN_GRAIN_USEC (3600ULL * 1000000ULL) /* see "last_seen refreshes" */
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
        uint64_t log_records;                 /* changes replayed from the change log */
        char log_reason[LEDGER_REASON_MAX];   /* not empty: what was wrong with the change log (a torn
                                               * tail dropped, corrupt records skipped, a bad log moved
                                               * aside), one line, ready to log */
} LedgerOpenReport;

typedef struct LedgerStats {
        uint64_t references, entries, raised;
        uint64_t pruned;                     /* since open */
        uint64_t log_records, log_bytes;     /* in the change log since the snapshot (0 without one) */
        uint64_t snapshot_bytes;             /* of the snapshot loaded or last written */
        uint64_t image_references;           /* in the frozen image (see "Memory"), 0 without one */
        uint64_t image_bytes;                /* its mapping's length */
} LedgerStats;

/* An empty in-memory ledger with no file behind it (ledger_save() returns -EINVAL).
 * *ret owned by the caller, released with ledger_free(). max_entries >= 1. */
int ledger_new(Ledger **ret, size_t max_entries);

/* Load STATE_DIR/ledger.json (a missing file is an empty ledger) and replay its change
 * log. A truncated, corrupt or schema-violating snapshot is renamed to
 * ledger.json.corrupt-<UTC timestamp> (its log beside it, ledger.log.corrupt-…),
 * described in report->reason, and the ledger opens empty: this still returns 0. What was
 * wrong with the log alone is in report->log_reason (see "Change log"). Fails only on
 * system errors (-ENOMEM, an unreadable directory...). report may be NULL. */
int ledger_open(Ledger **ret, const char *state_dir, size_t max_entries, LedgerOpenReport *report);
Ledger *ledger_free(Ledger *l); /* accepts NULL, returns NULL; does not save */

/* For read-only commands (report, scan): load STATE_DIR/ledger.json and replay its change
 * log as ledger_open() would, into a ledger with no file behind it (ledger_save() returns
 * -EINVAL), changing nothing on disk: no directory created, no temp file removed, a bad
 * file left where it is, a torn log not cut. -ENOENT if there is no snapshot; -EBADMSG
 * with a one-line reason in err for a truncated, corrupt or oversized file, a log with a
 * bad header, or either not a regular file (refused at once, never waited on). */
int ledger_read(Ledger **ret, const char *state_dir, size_t max_entries, char *err, size_t errlen);

/* Note that (ns, ref) resolves to digest at now_usec. A first sighting is not a change.
 * When the reference's current digest was another one, *ret_changed is true and
 * ret_previous_digest (PW_DIGEST_MAX bytes, may be NULL) gets it; otherwise "" and
 * false. -EINVAL for empty, over-long (ns < PW_NS_MAX, ref < PW_REF_MAX, digest <
 * PW_DIGEST_MAX) or not valid UTF-8 strings (JSON could not hold them). May prune (see
 * above). */
int ledger_record(Ledger *l, const char *ns, const char *ref, const char *digest, uint64_t now_usec,
                  char *ret_previous_digest, bool *ret_changed);
/* The same, told what ref_tagged_name(ref) gives: tagged_name the repository name when ref
 * is a tagged reference, "" when it is not (NULL: the ledger parses ref itself). The judge
 * has parsed the reference already; the index of tagged references (see
 * ledger_tagged_current()) then costs no second parse. A wrong name is a caller's bug
 * (asserted in debug builds). */
int ledger_record_named(Ledger *l, const char *ns, const char *ref, const char *tagged_name, const char *digest,
                        uint64_t now_usec, char *ret_previous_digest, bool *ret_changed);

/* Room for n references in the tables that otherwise grow step by step as references
 * are recorded (a listing of n images, before it is judged): each grows once, not a
 * dozen times, and the index of tagged references is not rebuilt (a rebuild parses
 * every reference in it again: 40 M instructions while a fresh agent judged 10,000
 * images). Tables already that large are left alone. Best effort: -ENOMEM leaves the
 * ledger as it was, working. */
int ledger_reserve(Ledger *l, size_t n);

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

/* Make every change durable; clears the dirty flag. Appends the changes to the change log
 * (one write, one fdatasync: O(changes)), or compacts (ledger_compact()) when the log
 * would outgrow its bound or cannot take them. On failure nothing said saved before is
 * lost, the dirty flag stays and the next save compacts. Returns what ledger_compact()
 * returns when it compacted, else 0. */
int ledger_save(Ledger *l);
/* Crash-safe rewrite of STATE_DIR/ledger.json with everything, then a new, empty change
 * log; clears the dirty flag. The snapshot never exceeds LEDGER_FILE_MAX, the limit
 * ledger_open() enforces: a ledger that would is first pruned, oldest history first as for
 * the cap, until it fits. Returns the number of entries so pruned (0 almost always),
 * -EFBIG if even pruning cannot make it fit. */
int ledger_compact(Ledger *l);
/* What is recorded from now on comes from a listing (on) or from an event (off): only a
 * listing's new references make ledger_settle() compact. */
void ledger_from_listing(Ledger *l, bool on);
/* A burst of changes (a listing) is over: if it made references (ledger_from_listing())
 * and references were made since the frozen image (until now), the next save compacts,
 * so that a new image holds them (see "Memory"); otherwise nothing changes. */
void ledger_settle(Ledger *l);
bool ledger_is_dirty(const Ledger *l);
void ledger_get_stats(const Ledger *l, LedgerStats *ret);

/* Pure core. ledger_format(): the whole file text (header + body), deterministic for a
 * given content; *ret is malloc()ed, owned by the caller. ledger_parse(): fill an EMPTY
 * ledger from file text; all or nothing. -EBADMSG with a one-line reason in err (may be
 * NULL) for any bad content; -ENOMEM; -EBUSY if into is not empty. Entries over the cap
 * are pruned after a successful parse (counted in stats.pruned). */
int ledger_format(const Ledger *l, char **ret, size_t *ret_len);
int ledger_parse(Ledger *into, const char *buf, size_t len, char *err, size_t errlen);
/* For tests and the fuzz target: whether a snapshot body in the form ledger_format()
 * writes is read without jansson (the default; anything else is read through jansson
 * either way, which decides what is valid). Process-wide. */
void ledger_set_fast_parse(bool on);

typedef struct LedgerReplayReport {
        uint64_t records;         /* changes applied */
        uint64_t corrupt_records; /* frames skipped: unreadable bytes followed by a valid frame, or a
                                   * frame whose CRC holds but whose change is not valid */
        uint64_t skipped_bytes;   /* bytes of the unreadable regions */
        uint64_t dropped_bytes;   /* a torn tail: from the first bad frame with nothing valid after */
        uint64_t valid_end;       /* offset after the last valid frame */
        uint64_t last_seq;
        char first_error[160];    /* the first corrupt record, for the one line */
} LedgerReplayReport;

/* Pure core of the change log. ledger_replay(): apply change log text (a whole file) to l,
 * loaded from the snapshot it extends (ledger_parse()); the replayed content counts as
 * saved (not dirty) unless it had to be pruned to max_entries. -ESTALE (nothing applied)
 * if the log names another snapshot; -EBADMSG with a one-line reason in err for a bad
 * header or a log over LEDGER_FILE_MAX; -ENOMEM. ret (may be NULL) gets what was found.
 * ledger_log_header(): the header frame naming l's snapshot (what ledger_replay() wants
 * first), ledger_log_frame(): a frame around payload (may overlap buf) — for tests and
 * the fuzz target; both return the frame's size and write it only if it fits in size. */
int ledger_replay(Ledger *l, const void *buf, size_t len, LedgerReplayReport *ret, char *err, size_t errlen);
size_t ledger_log_header(const Ledger *l, uint8_t *buf, size_t size);
size_t ledger_log_frame(uint64_t seq, const void *payload, size_t len, uint8_t *buf, size_t size);

DEFINE_TRIVIAL_CLEANUP_FUNC(Ledger *, ledger_free);
