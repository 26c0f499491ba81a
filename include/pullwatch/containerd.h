/* Typed containerd calls over the gRPC client, decoded into plain fixed-size structs.
 *
 * Every call is asynchronous on the sd-event loop: it returns < 0 if it could not be
 * started (its callback is then never called), else its callback runs exactly once
 * (streams: on_event per event, then the end callback once), unless cancelled or the
 * Ctrd is freed first. Callbacks get error as -errno and a one-line human reason
 * (NULL on success); results are borrowed for the callback's duration only.
 * gRPC statuses map through grpc_status_to_errno(): NOT_FOUND → -ENOENT,
 * DEADLINE_EXCEEDED → -ETIMEDOUT, FAILED_PRECONDITION → -EBADE, ...
 *
 * Peer-controlled strings are copied with strcpy_bounded(): an over-long value makes
 * an event fail to decode with -ENAMETOOLONG, and drops that one entry from a list. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "pullwatch/finding.h"

#define CTRD_TOPIC_MAX 128
#define CTRD_TYPE_URL_MAX 160
#define CTRD_VERSION_MAX 128
#define CTRD_NAMESPACES_MAX 256       /* more are ignored */
#define CTRD_LIST_MAX 65536U          /* images or containers in one List reply; more: the reply is refused */
#define CTRD_DECODE_RATIO 16U         /* a reply may decode to 16 times its size (+1 MiB); more: refused */
#define CTRD_INDEX_MANIFESTS_MAX 64   /* manifests kept from one index; more are ignored */
#define CTRD_BLOB_MAX (4U << 20)      /* manifests, indexes and configs we read */
#define CTRD_UNARY_TIMEOUT_USEC (30ULL * 1000000ULL)

/* Media types we understand. */
#define CTRD_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define CTRD_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define CTRD_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define CTRD_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define CTRD_REVISION_LABEL "org.opencontainers.image.revision"
#define CTRD_CONTENT_PLUGIN_TYPE "io.containerd.content.v1"

typedef struct Ctrd Ctrd;
typedef struct CtrdCall CtrdCall;

/* ---------------------------------------------------------------- events (pure) */

typedef enum CtrdEventKind {
        CTRD_EVENT_OTHER, /* a type we don't decode: namespace/topic/type_url still valid */
        CTRD_EVENT_IMAGE_CREATE,
        CTRD_EVENT_IMAGE_UPDATE,
        CTRD_EVENT_IMAGE_DELETE,
        CTRD_EVENT_CONTAINER_CREATE,
        CTRD_EVENT_CONTAINER_UPDATE,
        CTRD_EVENT_CONTAINER_DELETE,
        CTRD_EVENT_TASK_CREATE,
        CTRD_EVENT_TASK_START,
        CTRD_EVENT_TASK_EXIT,
        CTRD_EVENT_TASK_DELETE,
        CTRD_EVENT_INVALID, /* delivered by a subscription for a message that did not decode:
                             * only .error is set */
        _CTRD_EVENT_KIND_MAX,
} CtrdEventKind;

typedef struct CtrdEvent {
        CtrdEventKind kind;
        uint64_t timestamp_usec; /* CLOCK_REALTIME µs from the envelope; 0 if absent */
        char namespace[PW_NS_MAX];
        char topic[CTRD_TOPIC_MAX];
        char type_url[CTRD_TYPE_URL_MAX];
        char image_name[PW_REF_MAX];            /* image events: name; container create/update: image */
        char container_id[PW_CONTAINER_ID_MAX]; /* container events: id; task events: container_id */
        uint32_t pid;                           /* task create/start/exit/delete */
        uint32_t exit_status;                   /* task exit/delete */
        int error;                              /* CTRD_EVENT_INVALID: ctrd_event_decode()'s error */
} CtrdEvent;

/* "image-create", ...; static, NULL if out of range. */
const char *ctrd_event_kind_to_string(CtrdEventKind k);
/* Decode one serialized Envelope. -EBADMSG if it (or a known payload) is malformed,
 * -ENAMETOOLONG if a string does not fit; *ret untouched on failure. */
int ctrd_event_decode(const uint8_t *buf, size_t len, CtrdEvent *ret);

/* ---------------------------------------------------------------- result types */

typedef struct CtrdVersion {
        char version[CTRD_VERSION_MAX];
        char revision[CTRD_VERSION_MAX];
} CtrdVersion;

typedef struct CtrdNamespaceList {
        size_t n;
        char names[CTRD_NAMESPACES_MAX][PW_NS_MAX];
} CtrdNamespaceList;

typedef struct CtrdImage {
        char name[PW_REF_MAX];
        char target_digest[PW_DIGEST_MAX];
        char target_media_type[PW_MEDIA_TYPE_MAX];
        int64_t target_size;
} CtrdImage;

/* One record of an Images.List reply: its strings borrowed from the decoded reply for the
 * callback's duration, each NUL-terminated and shorter than the matching CtrdImage field
 * (a longer record is skipped, as for CtrdImage). 32 bytes, not CtrdImage's 784: a
 * listing of 10,000 images handed back 7.8 MB of zeroed copies before. */
typedef struct CtrdImageEntry {
        const char *name;
        const char *target_digest;     /* "" without a target */
        const char *target_media_type; /* "" without a target */
        int64_t target_size;
} CtrdImageEntry;

typedef struct CtrdContainer {
        char id[PW_CONTAINER_ID_MAX];
        char image[PW_REF_MAX];
        /* io.kubernetes.pod.namespace / pod.name / container.name labels; "" when absent
         * or over-long. container_id is left empty: the caller decides. */
        FindingWorkload workload;
        bool is_sandbox; /* io.cri-containerd.kind=sandbox: a pod's pause container, not a workload */
} CtrdContainer;

/* What ctrd_image_resolve() found. */
typedef struct CtrdImageConfig {
        char target_digest[PW_DIGEST_MAX];
        char target_media_type[PW_MEDIA_TYPE_MAX];
        bool is_index;                        /* target was an OCI index / Docker manifest list */
        char platform[48];                    /* "linux/amd64" that was picked (index only) */
        char platform_digest[PW_DIGEST_MAX];  /* manifest for this platform (= target if not an index) */
        char config_digest[PW_DIGEST_MAX];
        bool has_revision;                    /* config.Labels has org.opencontainers.image.revision */
        bool revision_invalid;                /* ... but it was over-long or not a string: revision "" */
        char revision[PW_REVISION_MAX];
        size_t n_manifests;                   /* index only: every manifest digest listed */
        char manifests[CTRD_INDEX_MANIFESTS_MAX][PW_DIGEST_MAX];
} CtrdImageConfig;

/* ---------------------------------------------------------------- pure helpers */

/* GOARCH for a uname machine: x86_64→amd64, aarch64→arm64, armv7l→arm (variant v7), ...
 * Returns the static arch string or NULL; *ret_variant (optional) gets a static variant
 * or "". */
const char *ctrd_goarch(const char *machine, const char **ret_variant);
/* From an index/manifest list: collects every manifest digest into cfg->manifests and
 * picks the one for os/arch(/variant) into cfg->platform_digest and cfg->platform.
 * -ENOENT if no entry matches, -EBADMSG if not a valid index. */
int ctrd_parse_index(const char *json, size_t len, const char *os, const char *arch, const char *variant,
                     CtrdImageConfig *cfg, char *err, size_t errlen);
/* From an image manifest: config descriptor digest into cfg->config_digest. */
int ctrd_parse_manifest(const char *json, size_t len, CtrdImageConfig *cfg, char *err, size_t errlen);
/* From an image config: the revision label into cfg->has_revision/revision. */
int ctrd_parse_config(const char *json, size_t len, CtrdImageConfig *cfg, char *err, size_t errlen);
/* The OCI digest grammar: algorithm ([a-z0-9+._-]+) ":" encoded ([A-Za-z0-9=_-]+), shorter
 * than PW_DIGEST_MAX. What the ctrd_parse_* functions accept as a digest (containerd
 * itself checks an algorithm's length when the digest is used). */
bool ctrd_digest_valid(const char *d);
/* True for the index/manifest-list media types. */
bool ctrd_media_type_is_index(const char *mt);

/* ---------------------------------------------------------------- client */

typedef void (*ctrd_version_cb_t)(Ctrd *c, int error, const char *reason, const CtrdVersion *v, void *userdata);
typedef void (*ctrd_namespaces_cb_t)(Ctrd *c, int error, const char *reason, const CtrdNamespaceList *list,
                                     void *userdata);
/* ns is the namespace asked for (also on error). reason with error 0: records of the
 * reply were skipped (a field too long, an empty record), said in one line
 * ("Images.List: N records skipped: <first reason>…"); NULL when none was. */
typedef void (*ctrd_images_cb_t)(Ctrd *c, int error, const char *reason, const char *ns, const CtrdImageEntry *imgs,
                                 size_t n, void *userdata);
typedef void (*ctrd_image_cb_t)(Ctrd *c, int error, const char *reason, const CtrdImage *img, void *userdata);
typedef void (*ctrd_containers_cb_t)(Ctrd *c, int error, const char *reason, const char *ns,
                                     const CtrdContainer *cts, size_t n, void *userdata);
typedef void (*ctrd_container_cb_t)(Ctrd *c, int error, const char *reason, const CtrdContainer *ct,
                                    void *userdata);
typedef void (*ctrd_blob_cb_t)(Ctrd *c, int error, const char *reason, const uint8_t *data, size_t len,
                               void *userdata);
typedef void (*ctrd_resolve_cb_t)(Ctrd *c, int error, const char *reason, const CtrdImageConfig *cfg,
                                  void *userdata);
/* Events that fail to decode are skipped (they don't end the stream). */
typedef void (*ctrd_event_cb_t)(Ctrd *c, const CtrdEvent *ev, void *userdata);
/* The stream ended: error < 0 transport or gRPC error; 0 if containerd closed it with OK. */
typedef void (*ctrd_stream_end_cb_t)(Ctrd *c, int error, const char *reason, void *userdata);

/* address: containerd's socket path (copied).
 * max_message 0: 16 MiB. err (optional) gets a one-line reason on failure. */
int ctrd_new(Ctrd **ret, sd_event *e, const char *address, size_t max_message, char *err,
             size_t errlen);
/* Cancels every pending call without calling its callback. Accepts NULL. Not from a callback. */
Ctrd *ctrd_free(Ctrd *c);
/* Detect a containerd that stops answering while the event stream is open: see
 * grpc_client_set_keepalive(). The stream then ends with -ETIMEDOUT. */
int ctrd_set_keepalive(Ctrd *c, uint64_t interval_usec, uint64_t timeout_usec);
/* See grpc_client_set_burst_window(). */
int ctrd_set_burst_window(Ctrd *c, uint64_t window_usec);
uint64_t ctrd_burst_reads(const Ctrd *c); /* grpc_client_burst_reads() */
/* See grpc_client_set_after_read(). */
void ctrd_set_after_read(Ctrd *c, void (*cb)(void *userdata), void *userdata);
/* Number of calls still running (a one-shot scan runs the loop until this is 0). */
size_t ctrd_pending(const Ctrd *c);

/* Subscribe with the given filters (OR'ed; e.g. topic~="^/(images|containers|tasks)/").
 * No deadline. *ret (optional) is borrowed until on_end is called or ctrd_call_cancel(). */
int ctrd_subscribe(Ctrd *c, const char *const *filters, size_t n_filters, ctrd_event_cb_t on_event,
                   ctrd_stream_end_cb_t on_end, void *userdata, CtrdCall **ret);
/* Stop a call without calling its callbacks. Safe from its own on_event. Accepts NULL. */
void ctrd_call_cancel(CtrdCall *call);

int ctrd_version(Ctrd *c, ctrd_version_cb_t cb, void *userdata);
int ctrd_namespaces_list(Ctrd *c, ctrd_namespaces_cb_t cb, void *userdata);
int ctrd_images_list(Ctrd *c, const char *ns, ctrd_images_cb_t cb, void *userdata);
/* Images.Get of several names in one call: an Images.List whose filters name each
 * (`name=="…"`, ORed by containerd), answered with the records among names that exist, in
 * containerd's order (an unknown name is simply absent). names borrowed; 1 to
 * CTRD_GET_MANY_MAX of them, each non-empty and shorter than PW_REF_MAX (else -EINVAL).
 * containerd reads every image record of the namespace to answer a List: for one name,
 * ctrd_image_get() costs it less. */
#define CTRD_GET_MANY_MAX 64
int ctrd_images_get_many(Ctrd *c, const char *ns, const char *const *names, size_t n, ctrd_images_cb_t cb,
                         void *userdata);
/* value as a quoted string of containerd's filter syntax, into buf (NUL-terminated):
 * '"' and '\\' escaped, every byte outside printable ASCII as \xHH. Returns its length,
 * -ENAMETOOLONG when buf is too small (4 × strlen(value) + 3 always fits). Pure. */
ssize_t ctrd_filter_quote(const char *value, char *buf, size_t size);
/* Unknown image: error -ENOENT. */
int ctrd_image_get(Ctrd *c, const char *ns, const char *name, ctrd_image_cb_t cb, void *userdata);
int ctrd_containers_list(Ctrd *c, const char *ns, ctrd_containers_cb_t cb, void *userdata);
/* Unknown container: error -ENOENT. */
int ctrd_container_get(Ctrd *c, const char *ns, const char *id, ctrd_container_cb_t cb, void *userdata);
/* Content.Read of a whole blob; more than max_bytes → -EFBIG. */
int ctrd_content_read(Ctrd *c, const char *ns, const char *digest, size_t max_bytes, ctrd_blob_cb_t cb,
                      void *userdata);
/* target (index or manifest) → platform manifest → config, CTRD_BLOB_MAX per blob, each
 * blob read straight from containerd's content store when it can be (see
 * ctrd_set_content_direct()), else through Content.Read. target_media_type may be ""
 * (then the JSON decides). The callback may run before this returns (every blob read
 * directly). */
int ctrd_image_resolve(Ctrd *c, const char *ns, const char *target_digest, const char *target_media_type,
                       ctrd_resolve_cb_t cb, void *userdata);
/* The same; with direct reads on it never calls back before it returns: the chain's reads
 * and parsing run on worker threads (started at the first such call) and the callback
 * comes from the loop; a blob the worker cannot read goes through Content.Read as above.
 * Without direct reads (off, or not known yet) it is ctrd_image_resolve(). For a
 * listing's thousands of look-ups: the loop judges while the worker reads. */
int ctrd_image_resolve_async(Ctrd *c, const char *ns, const char *target_digest, const char *target_media_type,
                             ctrd_resolve_cb_t cb, void *userdata);
/* Stop the worker when no chain is on it (at a listing's end: an idle agent keeps no
 * thread); the next ctrd_image_resolve_async() starts it again. */
void ctrd_resolve_worker_release(Ctrd *c);

/* Direct content reads. containerd's local content store keeps a blob at
 * <root>/blobs/sha256/<hex> (the layout of content/local since 1.0; root is the content
 * plugin's "root" export, asked once with Introspection.Plugins at the first resolve).
 * Reading those files costs the agent three system calls a blob instead of containerd a
 * gRPC stream (~0.1 ms of its CPU each: 2 s for a listing of 10,000 images), and is as
 * trustworthy: the bytes are checked against the digest (SHA-256) before use. A blob that
 * is not there (another mount namespace, a proxy content plugin), not readable, larger
 * than asked or not matching its digest is read through Content.Read as before; so is
 * every blob before the answer, or when containerd has no such export.
 * On by default; enabled=false turns it off (closes the directory). */
void ctrd_set_content_direct(Ctrd *c, bool enabled);
/* Ask where the content store is now, if direct reads are on and that is not known yet
 * (else the first resolve asks, and its chains go through Content.Read until the answer):
 * sent beside the first listing, the answer is in before the listing's reply. */
void ctrd_content_probe(Ctrd *c);
/* The content root in use; NULL while direct reads are off or not set up (yet). Borrowed. */
const char *ctrd_content_root(const Ctrd *c);
/* Blobs read directly, and through Content.Read, by ctrd_image_resolve() so far. */
void ctrd_get_content_stats(const Ctrd *c, uint64_t *ret_direct, uint64_t *ret_api);
/* The direct read itself: blob digest ("sha256:" + 64 lowercase hex) from blobs_fd (an
 * open <root>/blobs directory), at most max_bytes whose SHA-256 is the digest's. Opened
 * without following a symlink and without blocking (a FIFO reads as empty); no fstat()
 * unless the blob is larger than the first read: whatever is not the blob fails the hash.
 * *ret (owned by the caller, free()) and *ret_len on success; -EOPNOTSUPP for another
 * algorithm, -EINVAL for a malformed digest, -ELOOP for a symlink, -EISDIR, -EFBIG over
 * max_bytes, -EBADMSG when the bytes do not match, -ENOENT and other open/read errors as
 * they come. *ret untouched on failure. */
int ctrd_blob_read_at(int blobs_fd, const char *digest, size_t max_bytes, uint8_t **ret, size_t *ret_len);
