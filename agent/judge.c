/* See include/pullwatch/judge.h. */
#include "pullwatch/judge.h"

#include <inttypes.h>
#include <stdarg.h>

#include "pullwatch/log.h"
#include "pullwatch/ref.h"
#include "pullwatch/util.h"

#define PODS_TEXT_MAX 512
#define WHAT_MAX (PW_NS_MAX + PW_REF_MAX + 4 * PW_K8S_NAME_MAX + 8)
#define KEY_MAX (WHAT_MAX + 256)

void judge_skip(Judge *jd, bool from_listing, const char *fmt, ...) {
        char reason[LOG_SKIPS_REASON_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, sizeof reason, fmt, ap);
        va_end(ap);
        if (from_listing)
                log_skips_add(&jd->listing_skips, "%s", reason);
        else
                log_skips_add_stream(&jd->event_skips, now_usec_monotonic(), LOG_LEVEL_WARNING, "%s", reason);
}

void judge_listing_done(Judge *jd) {
        log_skips_flush(&jd->listing_skips, LOG_LEVEL_WARNING, "records_skipped");
}

void judge_skips_flush(Judge *jd) {
        judge_listing_done(jd);
        log_skips_flush(&jd->event_skips, LOG_LEVEL_WARNING, "records_skipped");
}

/* An image record the policy judged: its parsed reference and findings. */
typedef struct Judged {
        const Observation *o;
        Ref ref;
        char name[PW_NAME_MAX];
        Finding fs[POLICY_FINDINGS_MAX];
        size_t n;
} Judged;

/* node | what | digest | kind | reminder period: one record per period at most, so a
 * reminder is a new record and a crash-repeat is not. */
static void record_key(const Judge *jd, const char *what, const char *digest, FindingKind kind, uint64_t now,
                       char *buf, size_t size) {
        uint64_t every = jd->config->reminder_interval_usec;
        SBuf b = sbuf_init(buf, size); /* as "%s|%s|%s|%s|%" PRIu64 */
        sbuf_add(&b, jd->config->node);
        sbuf_add_mem(&b, "|", 1);
        sbuf_add(&b, what);
        sbuf_add_mem(&b, "|", 1);
        sbuf_add(&b, digest);
        sbuf_add_mem(&b, "|", 1);
        sbuf_add(&b, finding_kind_to_string(kind));
        sbuf_add_mem(&b, "|", 1);
        sbuf_add_u64(&b, every ? now / every : 0);
}

/* false: nothing to judge — a bad reference (logged), or CRI's image-id twin of a named
 * record, never a record of its own. */
static bool parse(Judge *jd, const Observation *o, bool from_listing, Judged *jg) {
        char err[256] = "";
        jg->o = o;
        if (ref_parse(o->ref, &jg->ref, err, sizeof err) < 0) {
                judge_skip(jd, from_listing, "ignoring image record \"%.*s\" in namespace %s: %s", 200, o->ref,
                           o->namespace, err);
                return false;
        }
        (void) ref_name(&jg->ref, jg->name, sizeof jg->name);
        return !jg->ref.is_image_id;
}

/* false: the policy could not judge it (logged). */
static bool evaluate(Judge *jd, const Observation *o, const char *previous, Judged *jg) {
        char err[256] = "";
        if (policy_evaluate_ref(jd->policy, o, &jg->ref, previous, jd->pins, jg->fs, ELEMENTSOF(jg->fs), &jg->n, err,
                                sizeof err) < 0) {
                log_warning("cannot judge %s in namespace %s: %s, ignoring", o->ref, o->namespace, err);
                return false;
        }
        return true;
}

/* The pods still running the previous digest of a moved tag, named in its message. */
typedef struct PodsText {
        Finding *f;
        char text[PODS_TEXT_MAX];
        size_t len, n;
} PodsText;

static bool pods_visit(const FindingWorkload *w, const char *pod, void *userdata) {
        PodsText *p = userdata;
        if (p->n++ == 0)
                p->f->workload = *w;
        int k = snprintf(p->text + p->len, sizeof p->text - p->len, "%s%s", p->len ? ", " : "", pod);
        if (k < 0 || (size_t) k >= sizeof p->text - p->len)
                return false;
        p->len += (size_t) k;
        return true;
}

static void name_pods(Judge *jd, const Observation *o, const char *previous, Finding *f) {
        PodsText p = {.f = f};
        attribution_foreach(jd->attribution, o->namespace, o->ref, previous, pods_visit, &p);
        if (p.n == 0)
                return;
        finding_format_message(f);
        size_t ml = strlen(f->message);
        snprintf(f->message + ml, sizeof f->message - ml, "; still running the previous digest: %s", p.text);
}

static void emit_pull(Judge *jd, const Judged *jg, const char *key) {
        const Observation *o = jg->o;
        Finding pull = {.kind = FINDING_PULL, .severity = SEVERITY_INFO, .time_usec = o->time_usec};
        strcpy_bounded(pull.namespace, sizeof pull.namespace, o->namespace);
        strcpy_bounded(pull.image.ref, sizeof pull.image.ref, o->ref);
        strcpy_bounded(pull.image.name, sizeof pull.image.name, jg->name);
        strcpy_bounded(pull.image.tag, sizeof pull.image.tag, jg->ref.tag);
        pull.image.tag_implicit = jg->ref.tag_implicit;
        strcpy_bounded(pull.image.digest, sizeof pull.image.digest, o->digest);
        strcpy_bounded(pull.image.media_type, sizeof pull.image.media_type, o->media_type);
        if (o->has_revision)
                strcpy_bounded(pull.image.revision, sizeof pull.image.revision, o->revision);
        pull.found_at_start = o->found_at_start;
        jd->out.emit(&pull, key, jd->out.userdata);
}

/* The pull and its findings, each raised once (or on every move), with ids that carry
 * the transition and when this move was last raised: a second A→B is a new record,
 * a re-report after a crash (the ledger not yet saved) repeats the id it had. */
static void raise_image(Judge *jd, Judged *jg, bool changed, const char *previous, uint64_t now) {
        const Observation *o = jg->o;
        char what[WHAT_MAX], key[KEY_MAX];
        uint64_t last_move = 0;
        if (changed) {
                (void) ledger_last_raised(jd->ledger, o->namespace, o->ref, o->digest,
                                         finding_kind_to_string(FINDING_TAG_MOVED), &last_move);
                snprintf(what, sizeof what, "%s|%s|from %s|%" PRIu64, o->namespace, o->ref, previous, last_move);
        } else
                snprintf(what, sizeof what, "%s|%s", o->namespace, o->ref);

        if (ledger_raise(jd->ledger, o->namespace, o->ref, o->digest, FINDING_PULL, now, 0,
                         changed ? LEDGER_RAISE_ALWAYS : 0, NULL) != 0) {
                record_key(jd, what, o->digest, FINDING_PULL, 0, key, sizeof key);
                emit_pull(jd, jg, key);
        }
        for (size_t i = 0; i < jg->n; i++) {
                Finding *f = &jg->fs[i];
                bool transition = f->kind == FINDING_TAG_MOVED;
                if (ledger_raise(jd->ledger, o->namespace, o->ref, o->digest, f->kind, now,
                                 jd->config->reminder_interval_usec, transition ? LEDGER_RAISE_ALWAYS : 0,
                                 NULL) == 0)
                        continue;
                if (o->found_at_start && !f->found_at_start) {
                        f->found_at_start = true;
                        finding_format_message(f);
                }
                if (transition)
                        name_pods(jd, o, previous, f);
                record_key(jd, what, o->digest, f->kind, now, key, sizeof key);
                jd->out.emit(f, key, jd->out.userdata);
        }
}

void judge_image(Judge *jd, const Observation *o, bool from_listing) {
        Judged jg;
        if (!parse(jd, o, from_listing, &jg))
                return;
        /* CRI's repo-digest twin: if a tagged record of the same repository already
         * resolved to this digest, the pull was recorded under the tag */
        if (jg.ref.is_digest_only && ledger_tagged_current(jd->ledger, o->namespace, jg.name, o->digest))
                return;

        char previous[PW_DIGEST_MAX] = "";
        bool changed = false;
        uint64_t now = now_usec_realtime();
        if (jd->ledger) {
                /* the repository name if o->ref is tagged (ref_tagged_name()'s answer): the
                 * ledger's index of tagged references need not parse it again */
                const char *tagged = jg.ref.tag[0] && !jg.ref.is_image_id ? jg.name : "";
                ledger_from_listing(jd->ledger, from_listing);
                int r = ledger_record_named(jd->ledger, o->namespace, o->ref, tagged, o->digest, now, previous,
                                            &changed);
                ledger_from_listing(jd->ledger, false);
                if (r < 0)
                        log_warning_errno(r, "cannot record %s in the ledger: %m, ignoring", o->ref);
        }
        if (jg.ref.tag[0] == 0)
                changed = false;
        if (!evaluate(jd, o, changed ? previous : NULL, &jg))
                return;
        if (jd->out.judged)
                jd->out.judged(o, &jg.ref, jg.name, jg.fs, jg.n, from_listing, jd->out.userdata);
        if (!jd->remember) {
                for (size_t i = 0; i < jg.n; i++)
                        jd->out.emit(&jg.fs[i], NULL, jd->out.userdata);
                return;
        }
        raise_image(jd, &jg, changed, previous, now);
}

/* A container: its findings name the workload, once per workload, digest and kind (a
 * crash-looping pod does not flood). */
void judge_container(Judge *jd, const Observation *o) {
        Judged jg;
        if (!parse(jd, o, false, &jg))
                return;
        /* A pull that published no event (containerd 1.7's Transfer service publishes no
         * /images/create or /images/update, #9725): the container's image is not in the
         * ledger at this digest. Record the pull now, marked as found at container start,
         * rather than at the next re-list. (In order: a pull that did publish its events
         * was judged before this container, whose event came after them.) */
        LedgerDigest known;
        if (jd->remember && jd->ledger &&
            (ledger_lookup(jd->ledger, o->namespace, o->ref, &known) < 0 || !streq_ptr(known.digest, o->digest)) &&
            !(jg.ref.is_digest_only && ledger_tagged_current(jd->ledger, o->namespace, jg.name, o->digest))) {
                Observation img = *o;
                memset(&img.workload, 0, sizeof img.workload);
                img.found_at_start = true;
                judge_image(jd, &img, false);
        }
        if (!evaluate(jd, o, NULL, &jg))
                return;
        if (!jd->remember) {
                for (size_t i = 0; i < jg.n; i++)
                        jd->out.emit(&jg.fs[i], NULL, jd->out.userdata);
                return;
        }
        const FindingWorkload *w = &o->workload;
        char what[WHAT_MAX], key[KEY_MAX];
        uint64_t now = now_usec_realtime();
        for (size_t i = 0; i < jg.n; i++) {
                if (jg.fs[i].kind == FINDING_TAG_MOVED)
                        continue; /* a pull-time finding */
                snprintf(what, sizeof what, "%s|%s|%s/%s/%s", o->namespace, o->ref, w->namespace,
                         w->pod[0] ? w->pod : w->container_id, w->container);
                record_key(jd, what, o->digest, jg.fs[i].kind, now, key, sizeof key);
                if (attribution_seen(jd->attribution, key))
                        continue;
                jd->out.emit(&jg.fs[i], key, jd->out.userdata);
        }
}
