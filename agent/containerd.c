/* Typed containerd calls: protobuf-c requests/responses over the gRPC client,
 * decoded into the plain bounded structs of containerd.h. */
#include "pullwatch/containerd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "containerd_events.pb-c.h"
#include "containers.pb-c.h"
#include "content.pb-c.h"
#include "events.pb-c.h"
#include "google_protobuf.pb-c.h"
#include "images.pb-c.h"
#include "introspection.pb-c.h"
#include "namespaces.pb-c.h"
#include "version.pb-c.h"
#include "pullwatch/grpc.h"
#include "pullwatch/jscan.h"
#include "pullwatch/sha256.h"
#include "pullwatch/thread.h"
#include "pullwatch/util.h"

#define M_SUBSCRIBE "/containerd.services.events.v1.Events/Subscribe"
#define M_VERSION "/containerd.services.version.v1.Version/Version"
#define M_NAMESPACES_LIST "/containerd.services.namespaces.v1.Namespaces/List"
#define M_IMAGES_LIST "/containerd.services.images.v1.Images/List"
#define M_IMAGES_GET "/containerd.services.images.v1.Images/Get"
#define M_CONTAINERS_LIST "/containerd.services.containers.v1.Containers/List"
#define M_CONTAINERS_GET "/containerd.services.containers.v1.Containers/Get"
#define M_CONTENT_READ "/containerd.services.content.v1.Content/Read"
#define M_PLUGINS "/containerd.services.introspection.v1.Introspection/Plugins"

static const char *str_or_empty(const char *s) {
        return s ? s : "";
}

/* ================================================================= event decoding */

static const char *const event_kind_names[_CTRD_EVENT_KIND_MAX] = {
        [CTRD_EVENT_OTHER] = "other",
        [CTRD_EVENT_IMAGE_CREATE] = "image-create",
        [CTRD_EVENT_IMAGE_UPDATE] = "image-update",
        [CTRD_EVENT_IMAGE_DELETE] = "image-delete",
        [CTRD_EVENT_CONTAINER_CREATE] = "container-create",
        [CTRD_EVENT_CONTAINER_UPDATE] = "container-update",
        [CTRD_EVENT_CONTAINER_DELETE] = "container-delete",
        [CTRD_EVENT_TASK_CREATE] = "task-create",
        [CTRD_EVENT_TASK_START] = "task-start",
        [CTRD_EVENT_TASK_EXIT] = "task-exit",
        [CTRD_EVENT_TASK_DELETE] = "task-delete",
        [CTRD_EVENT_INVALID] = "invalid",
};

const char *ctrd_event_kind_to_string(CtrdEventKind k) {
        if ((int) k < 0 || k >= _CTRD_EVENT_KIND_MAX)
                return NULL;
        return event_kind_names[k];
}

static const struct {
        const char *type_url;
        CtrdEventKind kind;
        const ProtobufCMessageDescriptor *desc;
} event_types[] = {
        { "containerd.services.images.v1.ImageCreate", CTRD_EVENT_IMAGE_CREATE,
          &containerd__services__images__v1__image_create__descriptor },
        { "containerd.services.images.v1.ImageUpdate", CTRD_EVENT_IMAGE_UPDATE,
          &containerd__services__images__v1__image_update__descriptor },
        { "containerd.services.images.v1.ImageDelete", CTRD_EVENT_IMAGE_DELETE,
          &containerd__services__images__v1__image_delete__descriptor },
        { "containerd.events.ContainerCreate", CTRD_EVENT_CONTAINER_CREATE, &containerd__events__container_create__descriptor },
        { "containerd.events.ContainerUpdate", CTRD_EVENT_CONTAINER_UPDATE, &containerd__events__container_update__descriptor },
        { "containerd.events.ContainerDelete", CTRD_EVENT_CONTAINER_DELETE, &containerd__events__container_delete__descriptor },
        { "containerd.events.TaskCreate", CTRD_EVENT_TASK_CREATE, &containerd__events__task_create__descriptor },
        { "containerd.events.TaskStart", CTRD_EVENT_TASK_START, &containerd__events__task_start__descriptor },
        { "containerd.events.TaskExit", CTRD_EVENT_TASK_EXIT, &containerd__events__task_exit__descriptor },
        { "containerd.events.TaskDelete", CTRD_EVENT_TASK_DELETE, &containerd__events__task_delete__descriptor },
};

/* typeurl writes the bare message name; accept the type.googleapis.com/ form too. */
static const char *type_name(const char *type_url) {
        const char *slash = strrchr(type_url, '/');
        return slash ? slash + 1 : type_url;
}

static int copy_field(char *dst, size_t size, const char *src) {
        return strcpy_bounded(dst, size, str_or_empty(src));
}

static int decode_payload(CtrdEvent *ev, const ProtobufCMessage *m) {
        int r = 0;

        switch (ev->kind) {
        case CTRD_EVENT_IMAGE_CREATE:
                r = copy_field(ev->image_name, sizeof(ev->image_name),
                               ((const Containerd__Services__Images__V1__ImageCreate *) m)->name);
                break;
        case CTRD_EVENT_IMAGE_UPDATE:
                r = copy_field(ev->image_name, sizeof(ev->image_name),
                               ((const Containerd__Services__Images__V1__ImageUpdate *) m)->name);
                break;
        case CTRD_EVENT_IMAGE_DELETE:
                r = copy_field(ev->image_name, sizeof(ev->image_name),
                               ((const Containerd__Services__Images__V1__ImageDelete *) m)->name);
                break;
        case CTRD_EVENT_CONTAINER_CREATE: {
                const Containerd__Events__ContainerCreate *p = (const void *) m;
                r = copy_field(ev->container_id, sizeof(ev->container_id), p->id);
                if (r >= 0)
                        r = copy_field(ev->image_name, sizeof(ev->image_name), p->image);
                break;
        }
        case CTRD_EVENT_CONTAINER_UPDATE: {
                const Containerd__Events__ContainerUpdate *p = (const void *) m;
                r = copy_field(ev->container_id, sizeof(ev->container_id), p->id);
                if (r >= 0)
                        r = copy_field(ev->image_name, sizeof(ev->image_name), p->image);
                break;
        }
        case CTRD_EVENT_CONTAINER_DELETE:
                r = copy_field(ev->container_id, sizeof(ev->container_id),
                               ((const Containerd__Events__ContainerDelete *) m)->id);
                break;
        case CTRD_EVENT_TASK_CREATE: {
                const Containerd__Events__TaskCreate *p = (const void *) m;
                r = copy_field(ev->container_id, sizeof(ev->container_id), p->container_id);
                ev->pid = p->pid;
                break;
        }
        case CTRD_EVENT_TASK_START: {
                const Containerd__Events__TaskStart *p = (const void *) m;
                r = copy_field(ev->container_id, sizeof(ev->container_id), p->container_id);
                ev->pid = p->pid;
                break;
        }
        case CTRD_EVENT_TASK_EXIT: {
                const Containerd__Events__TaskExit *p = (const void *) m;
                r = copy_field(ev->container_id, sizeof(ev->container_id), p->container_id);
                ev->pid = p->pid;
                ev->exit_status = p->exit_status;
                break;
        }
        case CTRD_EVENT_TASK_DELETE: {
                const Containerd__Events__TaskDelete *p = (const void *) m;
                r = copy_field(ev->container_id, sizeof(ev->container_id), p->container_id);
                ev->pid = p->pid;
                ev->exit_status = p->exit_status;
                break;
        }
        default:
                break;
        }
        return r;
}

static uint64_t timestamp_usec(const Google__Protobuf__Timestamp *t) {
        if (!t || t->seconds < 0 || t->nanos < 0 || t->nanos >= 1000000000)
                return 0;
        if ((uint64_t) t->seconds > UINT64_MAX / 1000000ULL - 1)
                return 0;
        return (uint64_t) t->seconds * 1000000ULL + (uint64_t) t->nanos / 1000ULL;
}

int ctrd_event_decode(const uint8_t *buf, size_t len, CtrdEvent *ret) {
        Containerd__Services__Events__V1__Envelope *env;
        CtrdEvent ev = {};
        int r = 0;

        if (!ret || (!buf && len > 0))
                return -EINVAL;
        env = (Containerd__Services__Events__V1__Envelope *) protobuf_c_message_unpack(
                &containerd__services__events__v1__envelope__descriptor, NULL, len, buf);
        if (!env)
                return -EBADMSG;

        ev.timestamp_usec = timestamp_usec(env->timestamp);
        if (copy_field(ev.namespace, sizeof(ev.namespace), env->namespace_) < 0 ||
            copy_field(ev.topic, sizeof(ev.topic), env->topic) < 0 ||
            (env->event && copy_field(ev.type_url, sizeof(ev.type_url), env->event->type_url) < 0)) {
                r = -ENAMETOOLONG;
                goto out;
        }

        ev.kind = CTRD_EVENT_OTHER;
        if (env->event) {
                const char *name = type_name(str_or_empty(env->event->type_url));
                for (size_t i = 0; i < ELEMENTSOF(event_types); i++) {
                        if (!streq_ptr(name, event_types[i].type_url))
                                continue;
                        ProtobufCMessage *m = protobuf_c_message_unpack(
                                event_types[i].desc, NULL, env->event->value.len, env->event->value.data);
                        if (!m) {
                                r = -EBADMSG;
                                goto out;
                        }
                        ev.kind = event_types[i].kind;
                        r = decode_payload(&ev, m);
                        protobuf_c_message_free_unpacked(m, NULL);
                        break;
                }
        }
out:
        protobuf_c_message_free_unpacked(&env->base, NULL);
        if (r < 0)
                return r;
        *ret = ev;
        return 0;
}

/* ================================================================= pure JSON helpers */

const char *ctrd_goarch(const char *machine, const char **ret_variant) {
        static const struct {
                const char *machine, *arch, *variant;
        } map[] = {
                { "x86_64", "amd64", "" },   { "amd64", "amd64", "" },  { "i386", "386", "" },
                { "i486", "386", "" },       { "i586", "386", "" },     { "i686", "386", "" },
                { "aarch64", "arm64", "v8" }, { "arm64", "arm64", "v8" }, { "armv8l", "arm", "v8" },
                { "armv7l", "arm", "v7" },   { "armv6l", "arm", "v6" },  { "armv5tel", "arm", "v5" },
                { "ppc64le", "ppc64le", "" }, { "ppc64", "ppc64", "" },  { "s390x", "s390x", "" },
                { "riscv64", "riscv64", "" }, { "mips64", "mips64", "" }, { "loongarch64", "loong64", "" },
        };
        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (streq_ptr(machine, map[i].machine)) {
                        if (ret_variant)
                                *ret_variant = map[i].variant;
                        return map[i].arch;
                }
        return NULL;
}

bool ctrd_media_type_is_index(const char *mt) {
        return streq_ptr(mt, CTRD_MT_OCI_INDEX) || streq_ptr(mt, CTRD_MT_DOCKER_LIST);
}

#define fail(err, errlen, ...) errbuf_fail(err, errlen, -EBADMSG, __VA_ARGS__)

/* OCI digest grammar: algorithm [a-z0-9+._-]+ ":" encoded [a-zA-Z0-9=_-]+, bounded.
 * Keeps what we log and send back to containerd tame. */
/* Which bytes each part may hold (bit 1: the algorithm, bit 2: the encoded part): a
 * table, as every listed image's digest and each blob's pass here (strchr() per byte was
 * 3 % of a 10,000-image scan). */
#define DG_ALGO 1
#define DG_ENC 2
static const uint8_t digest_chars[256] = {
        ['a' ... 'z'] = DG_ALGO | DG_ENC, ['0' ... '9'] = DG_ALGO | DG_ENC, ['A' ... 'Z'] = DG_ENC,
        ['+'] = DG_ALGO, ['.'] = DG_ALGO, ['_'] = DG_ALGO | DG_ENC, ['-'] = DG_ALGO | DG_ENC, ['='] = DG_ENC,
};

bool ctrd_digest_valid(const char *d) {
        if (!d)
                return false;
        const unsigned char *p = (const unsigned char *) d;
        size_t i = 0;
        while (digest_chars[p[i]] & DG_ALGO)
                i++;
        if (i == 0 || p[i] != ':')
                return false;
        size_t enc = ++i;
        while (digest_chars[p[i]] & DG_ENC)
                i++;
        return i > enc && p[i] == 0 && i < PW_DIGEST_MAX;
}

/* The document, checked whole (jscan), and its top-level object. */
static int doc_load(const char *s, size_t len, const char *what, JscanValue *ret, char *err, size_t errlen) {
        char why[96];
        if (jscan_document(s, len, ret, why, sizeof why) < 0)
                return fail(err, errlen, "%s is not valid JSON: %s", what, why);
        if (ret->type != JSCAN_OBJECT)
                return fail(err, errlen, "%s is not a JSON object", what);
        return 0;
}

/* obj's member key, refused when the key is there twice (see jscan.h). */
static int doc_member(const JscanValue *obj, const char *key, JscanValue *ret, const char *what, char *err,
                      size_t errlen) {
        if (jscan_member(obj, key, ret) < 0)
                return fail(err, errlen, "%s has the key \"%s\" twice in one object", what, key);
        return 0;
}

/* obj's member key as a string into buf: 1; 0 (buf "") when absent or not a string;
 * -ENAMETOOLONG (buf "") when it does not fit; -EBADMSG (said) when the key is twice. */
static int doc_string(const JscanValue *obj, const char *key, char *buf, size_t size, const char *what, char *err,
                      size_t errlen) {
        JscanValue v;
        buf[0] = 0;
        int r = doc_member(obj, key, &v, what, err, errlen);
        if (r < 0)
                return r;
        if (v.type != JSCAN_STRING)
                return 0;
        r = jscan_string(&v, buf, size);
        return r < 0 ? -ENAMETOOLONG : 1;
}

int ctrd_parse_index(const char *json, size_t len, const char *os, const char *arch, const char *variant,
                     CtrdImageConfig *cfg, char *err, size_t errlen) {
        static const char what[] = "image index";
        JscanValue top, manifests, m, p;
        JscanIter it;
        char d[PW_DIGEST_MAX], best_digest[PW_DIGEST_MAX] = "";
        char pos[32], parch[32], pvar[32];
        size_t i = 0;
        int best_score = -1, r;
        CtrdImageConfig out = *cfg;

        if ((r = doc_load(json, len, what, &top, err, errlen)) < 0 ||
            (r = doc_member(&top, "manifests", &manifests, what, err, errlen)) < 0)
                return r;
        if (manifests.type != JSCAN_ARRAY)
                return fail(err, errlen, "image index has no manifests array");
        out.is_index = true;
        out.n_manifests = 0;
        for (jscan_iter_init(&manifests, &it); jscan_iter_next(&it, &m); i++) {
                r = doc_string(&m, "digest", d, sizeof d, what, err, errlen);
                if (r == -EBADMSG)
                        return r;
                if (r <= 0 || !ctrd_digest_valid(d))
                        return fail(err, errlen, "image index entry %zu has no valid digest", i);
                if (out.n_manifests < CTRD_INDEX_MANIFESTS_MAX)
                        (void) strcpy_bounded(out.manifests[out.n_manifests++], PW_DIGEST_MAX, d);

                if ((r = doc_member(&m, "platform", &p, what, err, errlen)) < 0)
                        return r;
                /* an os or architecture too long for these buffers is none we look for */
                int ro = doc_string(&p, "os", pos, sizeof pos, what, err, errlen);
                int ra = ro == -EBADMSG ? ro : doc_string(&p, "architecture", parch, sizeof parch, what, err, errlen);
                int rv = ra == -EBADMSG ? ra : doc_string(&p, "variant", pvar, sizeof pvar, what, err, errlen);
                if (rv == -EBADMSG)
                        return rv;
                if (ro <= 0 || ra <= 0 || !streq_ptr(pos, os) || !streq_ptr(parch, arch))
                        continue;
                /* exact variant beats no variant; a different variant doesn't match
                 * (containerd's platforms.Only is more lenient for arm; good enough here) */
                int score;
                if (rv == 0 || (rv > 0 && isempty(pvar)))
                        score = 1;
                else if (rv > 0 && !isempty(variant) && streq_ptr(pvar, variant))
                        score = 2;
                else
                        continue;
                if (score > best_score) {
                        best_score = score;
                        (void) strcpy_bounded(best_digest, sizeof best_digest, d);
                }
        }
        if (best_score < 0) {
                fail(err, errlen, "image index has no manifest for %s/%s%s%s", os, arch, isempty(variant) ? "" : "/",
                     str_or_empty(variant));
                return -ENOENT;
        }
        (void) strcpy_bounded(out.platform_digest, sizeof(out.platform_digest), best_digest);
        snprintf(out.platform, sizeof(out.platform), "%s/%s%s%.8s", os, arch, isempty(variant) ? "" : "/",
                 str_or_empty(variant));
        *cfg = out;
        return 0;
}

int ctrd_parse_manifest(const char *json, size_t len, CtrdImageConfig *cfg, char *err, size_t errlen) {
        static const char what[] = "image manifest";
        JscanValue top, manifests, config;
        char d[PW_DIGEST_MAX];
        int r;

        static const char *const keys[] = {"manifests", "config"};
        JscanValue v[2];
        if ((r = doc_load(json, len, what, &top, err, errlen)) < 0)
                return r;
        if (jscan_members(&top, keys, 2, v) < 0)
                return fail(err, errlen, "%s has the key \"manifests\" or \"config\" twice", what);
        manifests = v[0];
        config = v[1];
        if (manifests.type == JSCAN_ARRAY)
                return fail(err, errlen, "expected an image manifest, got an index");
        if ((r = doc_string(&config, "digest", d, sizeof d, what, err, errlen)) == -EBADMSG)
                return r;
        if (r <= 0 || !ctrd_digest_valid(d))
                return fail(err, errlen, "image manifest has no valid config digest");
        (void) strcpy_bounded(cfg->config_digest, sizeof(cfg->config_digest), d);
        return 0;
}

int ctrd_parse_config(const char *json, size_t len, CtrdImageConfig *cfg, char *err, size_t errlen) {
        static const char what[] = "image config";
        JscanValue top, c, labels, rev;
        int r;

        /* Docker writes config.Labels; some builders use lower-case config.labels */
        static const char *const keys[] = {"Labels", "labels"};
        JscanValue v[2];
        if ((r = doc_load(json, len, what, &top, err, errlen)) < 0 ||
            (r = doc_member(&top, "config", &c, what, err, errlen)) < 0)
                return r;
        if (jscan_members(&c, keys, 2, v) < 0)
                return fail(err, errlen, "%s has the key \"Labels\" or \"labels\" twice", what);
        labels = v[0].type != JSCAN_NONE ? v[0] : v[1];
        if ((r = doc_member(&labels, CTRD_REVISION_LABEL, &rev, what, err, errlen)) < 0)
                return r;
        cfg->has_revision = rev.type != JSCAN_NONE;
        cfg->revision_invalid = false;
        cfg->revision[0] = 0;
        if (cfg->has_revision && jscan_string(&rev, cfg->revision, sizeof(cfg->revision)) < 0)
                cfg->revision_invalid = true;
        return 0;
}

/* ================================================================= client */

typedef struct CallKind CallKind;

/* The caller's callback, typed by the kind of call; kind->fail and kind->deliver are
 * the only places that read it, each the member of its own kind. */
typedef union CallCallback {
        ctrd_event_cb_t event; /* Subscribe; its end goes to on_end */
        ctrd_version_cb_t version;
        ctrd_namespaces_cb_t namespaces;
        ctrd_images_cb_t images;
        ctrd_image_cb_t image;
        ctrd_containers_cb_t containers;
        ctrd_container_cb_t container;
        ctrd_blob_cb_t blob;
} CallCallback;

/* Reading blobs straight from containerd's local content store (see
 * ctrd_set_content_direct()): not asked yet, asking (Introspection.Plugins), on, off. */
typedef enum ContentDirect {
        DIRECT_UNKNOWN,
        DIRECT_PROBING,
        DIRECT_ON,
        DIRECT_OFF,
} ContentDirect;

typedef struct Resolve Resolve;
typedef struct ResolveWorker ResolveWorker;

struct Ctrd {
        sd_event *event;
        GrpcClient *grpc;
        CtrdCall *calls;
        size_t n_calls;
        ContentDirect direct;
        int blobs_fd;       /* DIRECT_ON: <content root>/blobs/sha256, else -1 */
        char *content_root; /* DIRECT_ON: the content plugin's root export */
        uint64_t n_direct, n_api;
        ResolveWorker *worker; /* ctrd_image_resolve_async(): started at its first, or NULL */
};

struct CtrdCall {
        Ctrd *ctrd;
        CtrdCall *prev, *next;
        const CallKind *kind;
        GrpcCall *gcall;
        CallCallback cb;
        ctrd_stream_end_cb_t on_end;
        void *userdata;
        void (*free_userdata)(void *userdata); /* when dropped without a callback */
        char ns[PW_NS_MAX];
        char what[PW_REF_MAX]; /* the name/id/digest asked for, for reasons */
        /* unary: the one response message; content read: the blob so far */
        uint8_t *buf;
        size_t len, max;
        bool got_message;
};

int ctrd_new(Ctrd **ret, sd_event *e, const char *address, size_t max_message, char *err,
             size_t errlen) {
        Ctrd *c;
        int r;

        if (!ret || !e || isempty(address)) {
                if (err && errlen)
                        snprintf(err, errlen, "no containerd address");
                return -EINVAL;
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        r = grpc_client_new(&c->grpc, e, address, max_message);
        if (r < 0) {
                if (err && errlen) {
                        if (r == -ENAMETOOLONG)
                                snprintf(err, errlen, "containerd address %.120s is longer than %d bytes", address,
                                         GRPC_SOCKET_PATH_MAX);
                        else
                                snprintf(err, errlen, "cannot set up the gRPC client: %s", strerror(-r));
                }
                free(c);
                return r;
        }
        c->event = sd_event_ref(e);
        c->blobs_fd = -1;
        *ret = c;
        return 0;
}

int ctrd_set_burst_window(Ctrd *c, uint64_t window_usec) {
        return c ? grpc_client_set_burst_window(c->grpc, window_usec) : -EINVAL;
}

void ctrd_set_after_read(Ctrd *c, void (*cb)(void *userdata), void *userdata) {
        grpc_client_set_after_read(c->grpc, cb, userdata);
}

uint64_t ctrd_burst_reads(const Ctrd *c) {
        return c ? grpc_client_burst_reads(c->grpc) : 0;
}

int ctrd_set_keepalive(Ctrd *c, uint64_t interval_usec, uint64_t timeout_usec) {
        return c ? grpc_client_set_keepalive(c->grpc, interval_usec, timeout_usec) : -EINVAL;
}

static void call_free(CtrdCall *call) {
        Ctrd *c = call->ctrd;
        if (call->next)
                call->next->prev = call->prev;
        if (call->prev)
                call->prev->next = call->next;
        else
                c->calls = call->next;
        c->n_calls--;
        free(call->buf);
        free(call);
}

static void worker_stop(Ctrd *c, bool drop);

Ctrd *ctrd_free(Ctrd *c) {
        if (!c)
                return NULL;
        /* grpc_client_free cancels the transfers silently; then drop our wrappers */
        grpc_client_free(c->grpc);
        while (c->calls) {
                CtrdCall *call = c->calls;
                if (call->free_userdata)
                        call->free_userdata(call->userdata);
                call_free(call);
        }
        worker_stop(c, true);
        sd_event_unref(c->event);
        if (c->blobs_fd >= 0)
                close(c->blobs_fd);
        free(c->content_root);
        free(c);
        return NULL;
}

size_t ctrd_pending(const Ctrd *c) {
        return c ? c->n_calls : 0;
}

void ctrd_call_cancel(CtrdCall *call) {
        if (!call)
                return;
        grpc_call_cancel(call->gcall);
        if (call->free_userdata)
                call->free_userdata(call->userdata);
        call_free(call);
}

/* One kind of call: its method, how it fails and how its answer is delivered. Each
 * kind reads only its own member of CtrdCall.cb. */
struct CallKind {
        const char *name;   /* "Images.Get", for reasons */
        const char *method; /* gRPC path */
        /* unary calls: the response message type, decoded once on_done says OK */
        const ProtobufCMessageDescriptor *response;
        /* streams: each message as it arrives (unary calls keep their one message) */
        int (*on_message)(CtrdCall *call, const uint8_t *msg, size_t len);
        /* success: a unary call's decoded response, or NULL for a stream that ended OK */
        void (*deliver)(CtrdCall *call, const ProtobufCMessage *m);
        void (*report_error)(CtrdCall *call, int error, const char *reason);
};

static void fail_formatted(CtrdCall *call, int error, const char *fmt, ...) _printf_(3, 4);
static void fail_formatted(CtrdCall *call, int error, const char *fmt, ...) {
        char reason[GRPC_MESSAGE_MAX + 128];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, sizeof reason, fmt, ap);
        va_end(ap);
        call->kind->report_error(call, error, reason);
}

/* ---- Events.Subscribe */

static int subscribe_message(CtrdCall *call, const uint8_t *msg, size_t len) {
        CtrdEvent ev;
        /* a single undecodable event does not end the stream: the subscriber is told, to
         * say so (bad input is never dropped without a word) */
        int r = ctrd_event_decode(msg, len, &ev);
        if (r < 0)
                ev = (CtrdEvent){.kind = CTRD_EVENT_INVALID, .error = r};
        call->cb.event(call->ctrd, &ev, call->userdata);
        return 0;
}
static void subscribe_fail(CtrdCall *call, int error, const char *reason) {
        if (call->on_end)
                call->on_end(call->ctrd, error, reason, call->userdata);
}
static void subscribe_deliver(CtrdCall *call, const ProtobufCMessage *m) {
        subscribe_fail(call, 0, "event stream closed by containerd");
}

/* ---- Version */

static void version_fail(CtrdCall *call, int error, const char *reason) {
        call->cb.version(call->ctrd, error, reason, NULL, call->userdata);
}
static void version_deliver(CtrdCall *call, const ProtobufCMessage *m) {
        const Containerd__Services__Version__V1__VersionResponse *p = (const void *) m;
        CtrdVersion v = {};
        if (copy_field(v.version, sizeof(v.version), p->version) < 0 ||
            copy_field(v.revision, sizeof(v.revision), p->revision) < 0)
                return version_fail(call, -ENAMETOOLONG, "Version: version string too long");
        call->cb.version(call->ctrd, 0, NULL, &v, call->userdata);
}

/* ---- Namespaces.List */

static void namespaces_fail(CtrdCall *call, int error, const char *reason) {
        call->cb.namespaces(call->ctrd, error, reason, NULL, call->userdata);
}
static void namespaces_deliver(CtrdCall *call, const ProtobufCMessage *m) {
        const Containerd__Services__Namespaces__V1__ListNamespacesResponse *p = (const void *) m;
        _cleanup_free_ CtrdNamespaceList *list = calloc(1, sizeof(*list));
        if (!list)
                return namespaces_fail(call, -ENOMEM, "Namespaces.List: out of memory");
        for (size_t i = 0; i < p->n_namespaces && list->n < CTRD_NAMESPACES_MAX; i++)
                if (p->namespaces[i] && copy_field(list->names[list->n], PW_NS_MAX, p->namespaces[i]->name) >= 0 &&
                    list->names[list->n][0])
                        list->n++;
        call->cb.namespaces(call->ctrd, 0, NULL, list, call->userdata);
}

/* ---- Images.List, Images.Get */

static void image_from_proto(const Containerd__Services__Images__V1__Image *p, CtrdImage *img, int *r) {
        *img = (CtrdImage) {};
        if (copy_field(img->name, sizeof(img->name), p->name) < 0 ||
            (p->target && (copy_field(img->target_digest, sizeof(img->target_digest), p->target->digest) < 0 ||
                           copy_field(img->target_media_type, sizeof(img->target_media_type),
                                      p->target->media_type) < 0)))
                *r = -ENAMETOOLONG;
        if (p->target)
                img->target_size = p->target->size;
}

static bool field_fits(const char *s, size_t size) {
        return strnlen(str_or_empty(s), size) < size;
}

/* A list record as it is in the reply, if every field fits its CtrdImage counterpart. */
static bool image_entry_from_proto(const Containerd__Services__Images__V1__Image *p, CtrdImageEntry *e) {
        const Containerd__Types__Descriptor *t = p->target;
        *e = (CtrdImageEntry){
                .name = str_or_empty(p->name),
                .target_digest = t ? str_or_empty(t->digest) : "",
                .target_media_type = t ? str_or_empty(t->media_type) : "",
                .target_size = t ? t->size : 0,
        };
        return field_fits(e->name, PW_REF_MAX) && field_fits(e->target_digest, PW_DIGEST_MAX) &&
               field_fits(e->target_media_type, PW_MEDIA_TYPE_MAX);
}

/* Records of one List reply that could not be taken: said by the caller in one line. */
typedef struct ListSkips {
        size_t n;
        char reason[GRPC_MESSAGE_MAX + 128];
} ListSkips;

static void list_skip(ListSkips *sk, const char *what, size_t i, const char *name) {
        if (sk->n++ == 0)
                snprintf(sk->reason, sizeof sk->reason, "record %zu %s", i, what);
        if (sk->n == 1 && name) {
                size_t l = strlen(sk->reason);
                snprintf(sk->reason + l, sizeof sk->reason - l, " (\"%.64s…\")", name);
        }
}

/* "Images.List: N records skipped: <first reason>", or NULL when none was. */
static const char *list_skips_summary(ListSkips *sk, const char *kind, char *buf, size_t size) {
        if (sk->n == 0)
                return NULL;
        snprintf(buf, size, "%s: %zu record%s skipped: %s", kind, sk->n, sk->n == 1 ? "" : "s", sk->reason);
        return buf;
}

static void images_fail(CtrdCall *call, int error, const char *reason) {
        call->cb.images(call->ctrd, error, reason, call->ns, NULL, 0, call->userdata);
}
static void images_deliver(CtrdCall *call, const ProtobufCMessage *m) {
        const Containerd__Services__Images__V1__ListImagesResponse *p = (const void *) m;
        if (p->n_images > CTRD_LIST_MAX)
                return fail_formatted(call, -E2BIG, "Images.List: %zu images, more than %u; ignoring the reply",
                                      p->n_images, CTRD_LIST_MAX);
        _cleanup_free_ CtrdImageEntry *imgs = malloc((p->n_images ? p->n_images : 1) * sizeof(*imgs));
        size_t n = 0;
        if (!imgs)
                return images_fail(call, -ENOMEM, "Images.List: out of memory");
        ListSkips sk = {};
        char summary[sizeof sk.reason + 64];
        for (size_t i = 0; i < p->n_images; i++) {
                if (!p->images[i])
                        continue;
                if (image_entry_from_proto(p->images[i], &imgs[n]))
                        n++;
                else
                        list_skip(&sk, "has a field too long", i, p->images[i]->name);
        }
        call->cb.images(call->ctrd, 0, list_skips_summary(&sk, "Images.List", summary, sizeof summary), call->ns,
                        imgs, n, call->userdata);
}

static void image_fail(CtrdCall *call, int error, const char *reason) {
        call->cb.image(call->ctrd, error, reason, NULL, call->userdata);
}
static void image_deliver(CtrdCall *call, const ProtobufCMessage *m) {
        const Containerd__Services__Images__V1__GetImageResponse *p = (const void *) m;
        CtrdImage img;
        int r = 0;
        if (!p->image)
                return fail_formatted(call, -EBADMSG, "Images.Get %s: empty response", call->what);
        image_from_proto(p->image, &img, &r);
        if (r < 0)
                return fail_formatted(call, r, "Images.Get %s: a field is too long", call->what);
        call->cb.image(call->ctrd, 0, NULL, &img, call->userdata);
}

/* ---- Containers.List, Containers.Get */

static void label_into(char *dst, size_t size, const char *v) {
        if (strcpy_bounded(dst, size, str_or_empty(v)) < 0)
                dst[0] = 0;
}

static void container_from_proto(const Containerd__Services__Containers__V1__Container *p, CtrdContainer *ct,
                                 int *r) {
        *ct = (CtrdContainer) {};
        if (copy_field(ct->id, sizeof(ct->id), p->id) < 0 || copy_field(ct->image, sizeof(ct->image), p->image) < 0)
                *r = -ENAMETOOLONG;
        for (size_t i = 0; i < p->n_labels; i++) {
                const char *k = p->labels[i] ? p->labels[i]->key : NULL, *v = p->labels[i] ? p->labels[i]->value : NULL;
                if (streq_ptr(k, "io.kubernetes.pod.namespace"))
                        label_into(ct->workload.namespace, sizeof(ct->workload.namespace), v);
                else if (streq_ptr(k, "io.kubernetes.pod.name"))
                        label_into(ct->workload.pod, sizeof(ct->workload.pod), v);
                else if (streq_ptr(k, "io.kubernetes.container.name"))
                        label_into(ct->workload.container, sizeof(ct->workload.container), v);
                else if (streq_ptr(k, "io.cri-containerd.kind"))
                        ct->is_sandbox = streq_ptr(v, "sandbox");
        }
}

static void containers_fail(CtrdCall *call, int error, const char *reason) {
        call->cb.containers(call->ctrd, error, reason, call->ns, NULL, 0, call->userdata);
}
static void containers_deliver(CtrdCall *call, const ProtobufCMessage *m) {
        const Containerd__Services__Containers__V1__ListContainersResponse *p = (const void *) m;
        if (p->n_containers > CTRD_LIST_MAX)
                return fail_formatted(call, -E2BIG, "Containers.List: %zu containers, more than %u; ignoring the reply",
                                      p->n_containers, CTRD_LIST_MAX);
        _cleanup_free_ CtrdContainer *cts = calloc(p->n_containers ? p->n_containers : 1, sizeof(*cts));
        size_t n = 0;
        if (!cts)
                return containers_fail(call, -ENOMEM, "Containers.List: out of memory");
        ListSkips sk = {};
        char summary[sizeof sk.reason + 64];
        for (size_t i = 0; i < p->n_containers; i++) {
                int k = 0;
                if (!p->containers[i])
                        continue;
                container_from_proto(p->containers[i], &cts[n], &k);
                if (k >= 0)
                        n++;
                else
                        list_skip(&sk, "has a field too long", i, p->containers[i]->id);
        }
        call->cb.containers(call->ctrd, 0, list_skips_summary(&sk, "Containers.List", summary, sizeof summary),
                            call->ns, cts, n, call->userdata);
}

static void container_fail(CtrdCall *call, int error, const char *reason) {
        call->cb.container(call->ctrd, error, reason, NULL, call->userdata);
}
static void container_deliver(CtrdCall *call, const ProtobufCMessage *m) {
        const Containerd__Services__Containers__V1__GetContainerResponse *p = (const void *) m;
        CtrdContainer ct;
        int r = 0;
        if (!p->container)
                return fail_formatted(call, -EBADMSG, "Containers.Get %s: empty response", call->what);
        container_from_proto(p->container, &ct, &r);
        if (r < 0)
                return fail_formatted(call, r, "Containers.Get %s: a field is too long", call->what);
        call->cb.container(call->ctrd, 0, NULL, &ct, call->userdata);
}

/* ---- Content.Read: a stream of chunks, reassembled up to call->max bytes */

static int content_message(CtrdCall *call, const uint8_t *msg, size_t len) {
        Containerd__Services__Content__V1__ReadContentResponse *p = (void *) protobuf_c_message_unpack(
                &containerd__services__content__v1__read_content_response__descriptor, NULL, len, msg);
        if (!p)
                return -EBADMSG;
        int r = 0;
        if (p->offset != (int64_t) call->len)
                r = -EBADMSG;
        else if (p->data.len > call->max - call->len)
                r = -EFBIG;
        else if (p->data.len > 0) {
                uint8_t *nb = realloc(call->buf, call->len + p->data.len);
                if (!nb)
                        r = -ENOMEM;
                else {
                        call->buf = nb;
                        memcpy(call->buf + call->len, p->data.data, p->data.len);
                        call->len += p->data.len;
                }
        }
        protobuf_c_message_free_unpacked(&p->base, NULL);
        return r;
}
static void content_fail(CtrdCall *call, int error, const char *reason) {
        call->cb.blob(call->ctrd, error, reason, NULL, 0, call->userdata);
}
static void content_deliver(CtrdCall *call, const ProtobufCMessage *m) {
        call->cb.blob(call->ctrd, 0, NULL, call->buf ? call->buf : (const uint8_t *) "", call->len, call->userdata);
}

/* ---- Introspection.Plugins: where the local content store keeps its blobs */

static void content_direct_off(Ctrd *c) {
        c->direct = DIRECT_OFF;
        if (c->blobs_fd >= 0)
                close(c->blobs_fd);
        c->blobs_fd = -1;
        free(c->content_root);
        c->content_root = NULL;
}

static void plugins_fail(CtrdCall *call, int error, const char *reason) {
        /* an old or locked-down containerd: every blob through Content.Read, as before */
        if (call->ctrd->direct == DIRECT_PROBING)
                content_direct_off(call->ctrd);
}
static void plugins_deliver(CtrdCall *call, const ProtobufCMessage *m) {
        const Containerd__Services__Introspection__V1__PluginsResponse *p = (const void *) m;
        Ctrd *c = call->ctrd;
        const char *root = NULL;
        if (c->direct != DIRECT_PROBING)
                return; /* turned off meanwhile */
        for (size_t i = 0; !root && i < p->n_plugins; i++) {
                const Containerd__Services__Introspection__V1__Plugin *pl = p->plugins[i];
                if (!pl || !streq_ptr(pl->type, CTRD_CONTENT_PLUGIN_TYPE) || !streq_ptr(pl->id, "content"))
                        continue;
                for (size_t k = 0; k < pl->n_exports; k++)
                        if (pl->exports[k] && streq_ptr(pl->exports[k]->key, "root"))
                                root = pl->exports[k]->value;
        }
        char path[4096];
        /* the sha256 directory itself: each blob's open then looks up one name, not two */
        int n = root && root[0] == '/' ? snprintf(path, sizeof path, "%s/blobs/sha256", root) : -1;
        /* not in our mount namespace, not readable by us: containerd answers instead */
        int fd = n > 0 && (size_t) n < sizeof path ? open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (fd < 0 && n > 0 && errno == ENOENT && access(root, X_OK) == 0) {
                /* the store is there but holds no blob yet (asked at connect, before any
                 * pull): ask again at the next resolve, when there is one to read */
                c->direct = DIRECT_UNKNOWN;
                return;
        }
        if (fd < 0 || !(c->content_root = strdup(root))) {
                if (fd >= 0)
                        close(fd);
                content_direct_off(c);
                return;
        }
        c->blobs_fd = fd;
        c->direct = DIRECT_ON;
}

static const CallKind KIND_PLUGINS = {"Introspection.Plugins", M_PLUGINS,
                                      &containerd__services__introspection__v1__plugins_response__descriptor, NULL,
                                      plugins_deliver, plugins_fail};

static int start(Ctrd *c, const CallKind *kind, CallCallback cb, const char *ns, const char *what,
                 const ProtobufCMessage *req, uint64_t timeout, void *userdata, size_t max, CtrdCall **ret);

/* Ask once where the content store is; until it answers, blobs come through Content.Read. */
static void content_probe(Ctrd *c) {
        Containerd__Services__Introspection__V1__PluginsRequest req =
                CONTAINERD__SERVICES__INTROSPECTION__V1__PLUGINS_REQUEST__INIT;
        char *filters[] = {(char *) "type==" CTRD_CONTENT_PLUGIN_TYPE ",id==content"};
        req.n_filters = ELEMENTSOF(filters);
        req.filters = filters;
        c->direct = DIRECT_PROBING;
        if (start(c, &KIND_PLUGINS, (CallCallback){}, NULL, NULL, &req.base, CTRD_UNARY_TIMEOUT_USEC, NULL, 0, NULL) <
            0)
                content_direct_off(c);
}

void ctrd_content_probe(Ctrd *c) {
        if (c && c->direct == DIRECT_UNKNOWN)
                content_probe(c);
}

void ctrd_set_content_direct(Ctrd *c, bool enabled) {
        if (!enabled)
                content_direct_off(c);
        else if (c->direct == DIRECT_OFF)
                c->direct = DIRECT_UNKNOWN;
}

const char *ctrd_content_root(const Ctrd *c) {
        return c && c->direct == DIRECT_ON ? c->content_root : NULL;
}

void ctrd_get_content_stats(const Ctrd *c, uint64_t *ret_direct, uint64_t *ret_api) {
        *ret_direct = c->n_direct;
        *ret_api = c->n_api;
}

/* The direct read. Most blobs (manifests, configs: a few KiB) fit the caller's buffer
 * and take three system calls: open, one read that comes back short (the end of a
 * regular file), close. One that fills it is read whole after an fstat() for its size.
 * No fstat() to refuse what is not a regular file: O_NONBLOCK keeps a FIFO or a terminal
 * from blocking, a directory fails the read, and whatever bytes come are used only if
 * they hash to the digest. *ret_data is buf, or *ret_heap (the caller's, free()). */
static int blob_read(int dir_fd, bool sha256_dir, const char *digest, size_t max_bytes, uint8_t *buf, size_t bufsize,
                     uint8_t **ret_heap, const uint8_t **ret_data, size_t *ret_len) {
        uint8_t want[SHA256_DIGEST_SIZE], got[SHA256_DIGEST_SIZE];
        if (!digest || !startswith(digest, SHA256_PREFIX))
                return -EOPNOTSUPP;
        if (!sha256_digest_pack(digest, want))
                return -EINVAL; /* exactly 64 lowercase hex digits: also keeps the path inside blobs/sha256 */
        const char *hex = digest + strlen(SHA256_PREFIX);
        char path[sizeof "sha256/" + 2 * SHA256_DIGEST_SIZE]; /* by hand: snprintf() was 4 % of the worker */
        size_t o = sha256_dir ? 0 : strlen("sha256/");
        memcpy(path, "sha256/", o);
        memcpy(path + o, hex, 2 * SHA256_DIGEST_SIZE + 1); /* packed above: exactly 64 digits and the NUL */
        _cleanup_close_ int fd = openat(dir_fd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        ssize_t k;
        do
                k = read(fd, buf, bufsize);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return -errno;
        _cleanup_free_ uint8_t *heap = NULL;
        const uint8_t *data = buf;
        size_t len = (size_t) k;
        if (len > max_bytes)
                return -EFBIG;
        if (len == bufsize) { /* more may follow: as large as fstat() says, and no larger */
                struct stat st;
                if (fstat(fd, &st) < 0)
                        return -errno;
                if ((uint64_t) st.st_size > max_bytes)
                        return -EFBIG;
                size_t size = (size_t) st.st_size;
                if (size < len || !(heap = malloc(size ? size : 1)))
                        return size < len ? -EBADMSG : -ENOMEM;
                memcpy(heap, buf, len);
                while (len < size) {
                        k = read(fd, heap + len, size - len);
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k < 0)
                                return -errno;
                        if (k == 0)
                                break;
                        len += (size_t) k;
                }
                data = heap;
        }
        /* cut short, grown meanwhile, or not what its name says: not ours to trust */
        sha256(data, len, got);
        if (memcmp(got, want, sizeof got) != 0)
                return -EBADMSG;
        *ret_heap = TAKE_PTR(heap);
        *ret_data = data;
        *ret_len = len;
        return 0;
}

/* On the stack, up to three deep (index, manifest, config) under the judge's frames: most
 * manifests and configs fit; a larger blob costs an fstat() and a malloc(). */
#define BLOB_READ_BUF (8U << 10)

int ctrd_blob_read_at(int blobs_fd, const char *digest, size_t max_bytes, uint8_t **ret, size_t *ret_len) {
        uint8_t buf[BLOB_READ_BUF];
        uint8_t *heap = NULL;
        const uint8_t *data;
        size_t len;
        int r = blob_read(blobs_fd, false, digest, max_bytes, buf, sizeof buf, &heap, &data, &len);
        if (r < 0)
                return r;
        if (!heap) {
                heap = malloc(len ? len : 1);
                if (!heap)
                        return -ENOMEM;
                memcpy(heap, data, len);
        }
        *ret = heap;
        *ret_len = len;
        return 0;
}

static const CallKind KIND_SUBSCRIBE = {"Events.Subscribe", M_SUBSCRIBE, NULL, subscribe_message, subscribe_deliver,
                                        subscribe_fail};
static const CallKind KIND_VERSION = {"Version", M_VERSION, &containerd__services__version__v1__version_response__descriptor,
                                      NULL, version_deliver, version_fail};
static const CallKind KIND_NAMESPACES = {"Namespaces.List", M_NAMESPACES_LIST,
                                         &containerd__services__namespaces__v1__list_namespaces_response__descriptor,
                                         NULL, namespaces_deliver, namespaces_fail};
static const CallKind KIND_IMAGES_LIST = {"Images.List", M_IMAGES_LIST,
                                          &containerd__services__images__v1__list_images_response__descriptor, NULL,
                                          images_deliver, images_fail};
static const CallKind KIND_IMAGE_GET = {"Images.Get", M_IMAGES_GET,
                                        &containerd__services__images__v1__get_image_response__descriptor, NULL,
                                        image_deliver, image_fail};
static const CallKind KIND_CONTAINERS_LIST = {"Containers.List", M_CONTAINERS_LIST,
                                              &containerd__services__containers__v1__list_containers_response__descriptor,
                                              NULL, containers_deliver, containers_fail};
static const CallKind KIND_CONTAINER_GET = {"Containers.Get", M_CONTAINERS_GET,
                                            &containerd__services__containers__v1__get_container_response__descriptor,
                                            NULL, container_deliver, container_fail};
static const CallKind KIND_CONTENT_READ = {"Content.Read", M_CONTENT_READ, NULL, content_message, content_deliver,
                                           content_fail};

/* ---- the shared path of every call */

static int on_message(GrpcCall *gcall, const uint8_t *msg, size_t len, void *userdata) {
        CtrdCall *call = userdata;
        if (call->kind->on_message)
                return call->kind->on_message(call, msg, len);
        if (call->got_message)
                return -EBADMSG; /* unary: exactly one message */
        /* the reader's buffer, kept as it is: a copy of a 10,000-image listing (~2.9 MB)
         * was ~700 page faults of every scan and reconcile */
        call->buf = grpc_call_take_message(gcall);
        if (!call->buf) {
                call->buf = malloc(len ? len : 1);
                if (!call->buf)
                        return -ENOMEM;
                memcpy(call->buf, msg, len);
        }
        call->len = len;
        call->got_message = true;
        return 0;
}

/* protobuf-c's allocations for one reply, within a budget: a hostile reply of empty
 * records (2 bytes each) decodes to ~50 times its size, so a max_message_bytes reply could
 * take gigabytes. */
typedef struct DecodeBudget {
        size_t left;
        bool exceeded;
} DecodeBudget;

static void *budget_alloc(void *data, size_t size) {
        DecodeBudget *b = data;
        size_t need = size + sizeof(max_align_t);
        if (size > SIZE_MAX - sizeof(max_align_t) || need > b->left) {
                b->exceeded = true;
                return NULL;
        }
        max_align_t *p = malloc(need);
        if (!p)
                return NULL;
        memcpy(p, &need, sizeof(need)); /* the size, to give it back on free */
        b->left -= need;
        return p + 1;
}

static void budget_free(void *data, void *ptr) {
        DecodeBudget *b = data;
        if (!ptr)
                return;
        max_align_t *p = (max_align_t *) ptr - 1;
        size_t need;
        memcpy(&need, p, sizeof(need));
        b->left += need;
        free(p);
}

/* A large reply (a listing: 10,000 image records are 2 MB) decodes into one anonymous
 * mapping, bumped through and unmapped whole once delivered: protobuf-c allocates every
 * record, string and descriptor of it, and malloc() and free() one by one (with the
 * budget's bookkeeping) took as many instructions as the decode itself. The mapping is
 * the budget: reserved, not committed; only the pages the decode reaches are touched. A
 * small reply (Images.Get, Version) keeps malloc(): two system calls would cost more. */
#define DECODE_ARENA_MIN (64U << 10)

typedef struct DecodeArena {
        uint8_t *base;
        size_t size, used;
        bool exceeded;
} DecodeArena;

static void *arena_alloc(void *data, size_t size) {
        DecodeArena *a = data;
        size_t off = (a->used + (_Alignof(max_align_t) - 1)) & ~(_Alignof(max_align_t) - 1);
        if (off > a->size || size > a->size - off) {
                a->exceeded = true;
                return NULL;
        }
        a->used = off + size;
        return a->base + off;
}

static void arena_free(void *data, void *ptr) {
        /* the whole mapping goes at once */
}

/* A unary call ended OK: decode its one message and deliver it. */
static void deliver_unary(CtrdCall *call) {
        const CallKind *k = call->kind;
        if (!call->got_message)
                return fail_formatted(call, -EBADMSG, "%s: OK status without a response message", k->name);
        size_t limit = CTRD_DECODE_RATIO * call->len + (1U << 20);
        DecodeBudget budget = { .left = limit };
        DecodeArena arena = { .size = limit };
        ProtobufCAllocator alloc = { .alloc = budget_alloc, .free = budget_free, .allocator_data = &budget };
        bool *exceeded = &budget.exceeded;
        if (call->len >= DECODE_ARENA_MIN) {
                void *m = mmap(NULL, limit, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
                if (m != MAP_FAILED) {
                        arena.base = m;
                        alloc = (ProtobufCAllocator) { .alloc = arena_alloc, .free = arena_free, .allocator_data = &arena };
                        exceeded = &arena.exceeded;
                }
        }
        ProtobufCMessage *m = protobuf_c_message_unpack(k->response, &alloc, call->len, call->buf);
        if (!m && *exceeded)
                fail_formatted(call, -E2BIG, "%s: the response (%zu bytes) decodes to more than %u times its size; ignoring it",
                               k->name, call->len, CTRD_DECODE_RATIO);
        else if (!m)
                fail_formatted(call, -EBADMSG, "%s: cannot decode the response (%zu bytes)", k->name, call->len);
        else {
                k->deliver(call, m);
                if (!arena.base)
                        protobuf_c_message_free_unpacked(m, &alloc);
        }
        if (arena.base)
                munmap(arena.base, arena.size);
}

static void on_done(GrpcCall *gcall, int error, const GrpcStatus *st, void *userdata) {
        CtrdCall *call = userdata;
        const char *what = call->kind->name;

        call->gcall = NULL; /* freed by grpc when we return */

        if (error < 0) {
                if (error == -EFBIG)
                        fail_formatted(call, error, "%s %s: blob larger than %zu bytes", what, call->what, call->max);
                else if (error == -EBADMSG && call->kind == &KIND_CONTENT_READ)
                        fail_formatted(call, error, "%s %s: malformed or out-of-order chunk", what, call->what);
                else
                        fail_formatted(call, error, "%s", st->message);
        } else if (st->code != GRPC_STATUS_OK) {
                const char *name = grpc_status_to_string(st->code);
                fail_formatted(call, grpc_status_to_errno(st->code), "%s%s%s: %s: %s", what, call->what[0] ? " " : "",
                               call->what, name ? name : "status", st->message[0] ? st->message : "(no message)");
        } else if (call->kind->response)
                deliver_unary(call);
        else
                call->kind->deliver(call, NULL);

        call_free(call);
}

static int start(Ctrd *c, const CallKind *kind, CallCallback cb, const char *ns, const char *what,
                 const ProtobufCMessage *req, uint64_t timeout, void *userdata, size_t max, CtrdCall **ret) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        CtrdCall *call;
        int r;

        if (!c)
                return -EINVAL;

        len = protobuf_c_message_get_packed_size(req);
        buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        protobuf_c_message_pack(req, buf);

        call = calloc(1, sizeof(*call));
        if (!call)
                return -ENOMEM;
        call->ctrd = c;
        call->kind = kind;
        call->cb = cb;
        call->userdata = userdata;
        call->max = max;
        if ((ns && strcpy_bounded(call->ns, sizeof(call->ns), ns) < 0) ||
            (what && strcpy_bounded(call->what, sizeof(call->what), what) < 0)) {
                free(call);
                return -ENAMETOOLONG;
        }

        r = grpc_call_start(c->grpc, kind->method, ns, buf, len, timeout, on_message, on_done, call, &call->gcall);
        if (r < 0) {
                free(call);
                return r;
        }
        call->next = c->calls;
        if (c->calls)
                c->calls->prev = call;
        c->calls = call;
        c->n_calls++;
        if (ret)
                *ret = call;
        return 0;
}

int ctrd_subscribe(Ctrd *c, const char *const *filters, size_t n_filters, ctrd_event_cb_t on_event,
                   ctrd_stream_end_cb_t on_end, void *userdata, CtrdCall **ret) {
        Containerd__Services__Events__V1__SubscribeRequest req = CONTAINERD__SERVICES__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
        CtrdCall *call = NULL;

        if (!on_event || (n_filters > 0 && !filters))
                return -EINVAL;
        req.n_filters = n_filters;
        req.filters = (char **) filters;
        int r = start(c, &KIND_SUBSCRIBE, (CallCallback){.event = on_event}, NULL, NULL, &req.base, 0, userdata, 0,
                      &call);
        if (r < 0)
                return r;
        call->on_end = on_end;
        if (ret)
                *ret = call;
        return 0;
}

int ctrd_version(Ctrd *c, ctrd_version_cb_t cb, void *userdata) {
        Google__Protobuf__Empty req = GOOGLE__PROTOBUF__EMPTY__INIT;
        if (!cb)
                return -EINVAL;
        return start(c, &KIND_VERSION, (CallCallback){.version = cb}, NULL, NULL, &req.base, CTRD_UNARY_TIMEOUT_USEC,
                     userdata, 0, NULL);
}

int ctrd_namespaces_list(Ctrd *c, ctrd_namespaces_cb_t cb, void *userdata) {
        Containerd__Services__Namespaces__V1__ListNamespacesRequest req =
                CONTAINERD__SERVICES__NAMESPACES__V1__LIST_NAMESPACES_REQUEST__INIT;
        if (!cb)
                return -EINVAL;
        return start(c, &KIND_NAMESPACES, (CallCallback){.namespaces = cb}, NULL, NULL, &req.base,
                     CTRD_UNARY_TIMEOUT_USEC, userdata, 0, NULL);
}

int ctrd_images_list(Ctrd *c, const char *ns, ctrd_images_cb_t cb, void *userdata) {
        Containerd__Services__Images__V1__ListImagesRequest req = CONTAINERD__SERVICES__IMAGES__V1__LIST_IMAGES_REQUEST__INIT;
        if (!cb || isempty(ns))
                return -EINVAL;
        return start(c, &KIND_IMAGES_LIST, (CallCallback){.images = cb}, ns, NULL, &req.base, CTRD_UNARY_TIMEOUT_USEC,
                     userdata, 0, NULL);
}

ssize_t ctrd_filter_quote(const char *value, char *buf, size_t size) {
        static const char hex[] = "0123456789abcdef";
        size_t n = 0;
        if (!value || !buf || size == 0)
                return -EINVAL;
#define PUT(ch)                                  \
        do {                                     \
                if (n + 1 >= size)               \
                        return -ENAMETOOLONG;    \
                buf[n++] = (char) (ch);          \
        } while (0)
        PUT('"');
        for (const unsigned char *p = (const unsigned char *) value; *p; p++) {
                if (*p == '"' || *p == '\\') {
                        PUT('\\');
                        PUT(*p);
                } else if (*p < 0x20 || *p >= 0x7f) {
                        /* containerd's scanner ends a quoted value at a newline and reads it as
                         * UTF-8: every other byte as an escape, which its unquote turns back
                         * into that very byte */
                        PUT('\\');
                        PUT('x');
                        PUT(hex[*p >> 4]);
                        PUT(hex[*p & 15]);
                } else
                        PUT(*p);
        }
        PUT('"');
#undef PUT
        buf[n] = 0;
        return (ssize_t) n;
}

int ctrd_images_get_many(Ctrd *c, const char *ns, const char *const *names, size_t n, ctrd_images_cb_t cb,
                         void *userdata) {
        Containerd__Services__Images__V1__ListImagesRequest req = CONTAINERD__SERVICES__IMAGES__V1__LIST_IMAGES_REQUEST__INIT;
        if (!cb || isempty(ns) || !names || n == 0 || n > CTRD_GET_MANY_MAX)
                return -EINVAL;
        _cleanup_free_ char *filters = NULL;
        _cleanup_free_ char **f = calloc(n, sizeof *f);
        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
                if (isempty(names[i]) || strlen(names[i]) >= PW_REF_MAX)
                        return -EINVAL;
                total += sizeof "name==" + 4 * strlen(names[i]) + 2;
        }
        filters = malloc(total);
        if (!f || !filters)
                return -ENOMEM;
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
                /* one selector per name, ORed by containerd: `name=="…"`, the value quoted
                 * (escaped), so that no name can end the value or add a selector of its own */
                f[i] = filters + at;
                memcpy(f[i], "name==", 6);
                ssize_t k = ctrd_filter_quote(names[i], f[i] + 6, total - at - 6);
                if (k < 0)
                        return (int) k;
                at += 6 + (size_t) k + 1;
        }
        req.n_filters = n;
        req.filters = f;
        char what[32];
        snprintf(what, sizeof what, "(%zu names)", n);
        return start(c, &KIND_IMAGES_LIST, (CallCallback){.images = cb}, ns, what, &req.base, CTRD_UNARY_TIMEOUT_USEC,
                     userdata, 0, NULL);
}

int ctrd_image_get(Ctrd *c, const char *ns, const char *name, ctrd_image_cb_t cb, void *userdata) {
        Containerd__Services__Images__V1__GetImageRequest req = CONTAINERD__SERVICES__IMAGES__V1__GET_IMAGE_REQUEST__INIT;
        if (!cb || isempty(ns) || isempty(name))
                return -EINVAL;
        req.name = (char *) name;
        return start(c, &KIND_IMAGE_GET, (CallCallback){.image = cb}, ns, name, &req.base, CTRD_UNARY_TIMEOUT_USEC,
                     userdata, 0, NULL);
}

int ctrd_containers_list(Ctrd *c, const char *ns, ctrd_containers_cb_t cb, void *userdata) {
        Containerd__Services__Containers__V1__ListContainersRequest req =
                CONTAINERD__SERVICES__CONTAINERS__V1__LIST_CONTAINERS_REQUEST__INIT;
        if (!cb || isempty(ns))
                return -EINVAL;
        return start(c, &KIND_CONTAINERS_LIST, (CallCallback){.containers = cb}, ns, NULL, &req.base,
                     CTRD_UNARY_TIMEOUT_USEC, userdata, 0, NULL);
}

int ctrd_container_get(Ctrd *c, const char *ns, const char *id, ctrd_container_cb_t cb, void *userdata) {
        Containerd__Services__Containers__V1__GetContainerRequest req =
                CONTAINERD__SERVICES__CONTAINERS__V1__GET_CONTAINER_REQUEST__INIT;
        if (!cb || isempty(ns) || isempty(id))
                return -EINVAL;
        req.id = (char *) id;
        return start(c, &KIND_CONTAINER_GET, (CallCallback){.container = cb}, ns, id, &req.base,
                     CTRD_UNARY_TIMEOUT_USEC, userdata, 0, NULL);
}

static int content_read(Ctrd *c, const char *ns, const char *digest, size_t max_bytes, ctrd_blob_cb_t cb,
                        void *userdata, CtrdCall **ret) {
        Containerd__Services__Content__V1__ReadContentRequest req =
                CONTAINERD__SERVICES__CONTENT__V1__READ_CONTENT_REQUEST__INIT;
        if (!cb || isempty(ns) || !ctrd_digest_valid(digest) || max_bytes == 0)
                return -EINVAL;
        req.digest = (char *) digest;
        return start(c, &KIND_CONTENT_READ, (CallCallback){.blob = cb}, ns, digest, &req.base, CTRD_UNARY_TIMEOUT_USEC,
                     userdata, max_bytes, ret);
}

int ctrd_content_read(Ctrd *c, const char *ns, const char *digest, size_t max_bytes, ctrd_blob_cb_t cb,
                      void *userdata) {
        return content_read(c, ns, digest, max_bytes, cb, userdata, NULL);
}

/* ---------------------------------------------------------------- resolve chain */

typedef enum ResolveStage {
        STAGE_TARGET,
        STAGE_MANIFEST,
        STAGE_CONFIG,
} ResolveStage;

struct Resolve {
        ResolveStage stage;
        char ns[PW_NS_MAX];
        ctrd_resolve_cb_t cb;
        void *userdata;
        /* on the resolve worker (ctrd_image_resolve_async()): the queue's link, what the
         * direct reads came to (1 done, 0 rs->stage's blob wants Content.Read, < 0 an
         * error whose reason is err), how many blobs it read */
        Resolve *next;
        int result;
        unsigned n_read;
        char *err;
        CtrdImageConfig cfg; /* last: its manifests[] (8.7 KB) are written only for an index */
};

/* What resolve_new() zeroes: all but cfg.manifests[] (read up to cfg.n_manifests only),
 * which calloc() zeroed for every chain of a listing: 10,000 × 8.7 KB, 97 M instructions
 * of a fresh reconcile's 2.3 G. */
#define RESOLVE_ZEROED offsetof(Resolve, cfg.manifests)

static void resolve_free(Resolve *rs) {
        if (rs) {
                free(rs->err);
                free(rs);
        }
}

static void resolve_free_void(void *rs) {
        resolve_free(rs);
}

static void resolve_finish(Ctrd *c, Resolve *rs, int error, const char *reason) {
        rs->cb(c, error, error < 0 ? reason : NULL, error < 0 ? NULL : &rs->cfg, rs->userdata);
        resolve_free(rs);
}

static const char *stage_digest(const Resolve *rs) {
        return rs->stage == STAGE_TARGET ? rs->cfg.target_digest :
               rs->stage == STAGE_MANIFEST ? rs->cfg.platform_digest : rs->cfg.config_digest;
}

/* One blob of the chain parsed (pure: the worker runs it too): 1 when the config was
 * read; 0 and rs->stage the next blob's (stage_digest()); < 0 an error said in err
 * (-EOPNOTSUPP: said whole, without the "resolving" prefix). */
static int resolve_step(Resolve *rs, const uint8_t *data, size_t len, char *err, size_t errlen) {
        const char *json = (const char *) data;
        int r;
        switch (rs->stage) {
        case STAGE_TARGET: {
                bool index = ctrd_media_type_is_index(rs->cfg.target_media_type);
                if (isempty(rs->cfg.target_media_type)) {
                        /* no media type given: let the document say (mediaType, or manifests[]) */
                        JscanValue top, manifests = {}, mt = {};
                        char mts[PW_MEDIA_TYPE_MAX] = "";
                        if (jscan_document(json, len, &top, NULL, 0) >= 0) {
                                /* twice: as if absent (the manifest's own parse refuses it) */
                                (void) jscan_member(&top, "mediaType", &mt);
                                (void) jscan_member(&top, "manifests", &manifests);
                                (void) jscan_string(&mt, mts, sizeof mts);
                        }
                        index = ctrd_media_type_is_index(mts) || manifests.type == JSCAN_ARRAY;
                }
                if (index) {
                        struct utsname u;
                        const char *variant = "", *arch;
                        (void) uname(&u);
                        arch = ctrd_goarch(u.machine, &variant);
                        if (!arch) {
                                snprintf(err, errlen, "no GOARCH known for machine %.64s", u.machine);
                                return -EOPNOTSUPP;
                        }
                        r = ctrd_parse_index(json, len, "linux", arch, variant, &rs->cfg, err, errlen);
                        if (r < 0)
                                return r;
                        rs->stage = STAGE_MANIFEST;
                        return 0;
                }
                (void) strcpy_bounded(rs->cfg.platform_digest, sizeof(rs->cfg.platform_digest), rs->cfg.target_digest);
        }
                __attribute__((fallthrough));
        case STAGE_MANIFEST:
                r = ctrd_parse_manifest(json, len, &rs->cfg, err, errlen);
                if (r < 0)
                        return r;
                rs->stage = STAGE_CONFIG;
                return 0;
        case STAGE_CONFIG:
                r = ctrd_parse_config(json, len, &rs->cfg, err, errlen);
                return r < 0 ? r : 1;
        default:
                return -EINVAL;
        }
}

/* An error of the chain, as the callback hears it. */
static void resolve_fail(Ctrd *c, Resolve *rs, int r, const char *err) {
        if (r == -EOPNOTSUPP && err[0]) {
                resolve_finish(c, rs, r, err);
                return;
        }
        char full[GRPC_MESSAGE_MAX + 160];
        snprintf(full, sizeof(full), "resolving %s: %s", rs->cfg.target_digest, err[0] ? err : strerror(-r));
        resolve_finish(c, rs, r, full);
}

static void on_resolve_blob(Ctrd *c, int error, const char *reason, const uint8_t *data, size_t len, void *userdata);

/* rs->stage's blob through Content.Read. */
static int resolve_read_api(Ctrd *c, Resolve *rs) {
        CtrdCall *call = NULL;
        c->n_api++;
        int r = content_read(c, rs->ns, stage_digest(rs), CTRD_BLOB_MAX, on_resolve_blob, rs, &call);
        if (r >= 0)
                call->free_userdata = resolve_free_void; /* ctrd_free() mid-chain must not leak rs */
        return r;
}

static int resolve_read(Ctrd *c, Resolve *rs) {
        if (c->direct == DIRECT_UNKNOWN)
                content_probe(c);
        if (c->direct == DIRECT_ON) {
                uint8_t buf[BLOB_READ_BUF];
                _cleanup_free_ uint8_t *heap = NULL;
                const uint8_t *data;
                size_t len = 0;
                if (blob_read(c->blobs_fd, true, stage_digest(rs), CTRD_BLOB_MAX, buf, sizeof buf, &heap, &data, &len) >=
                    0) {
                        c->n_direct++;
                        on_resolve_blob(c, 0, NULL, data, len, rs); /* may finish (and free) rs */
                        return 0;
                }
                /* missing, unreadable, over-long or not matching its digest: containerd says */
        }
        return resolve_read_api(c, rs);
}

/* The next blob after a step: read, or the chain fails saying which blob. */
static void resolve_next(Ctrd *c, Resolve *rs, bool api_only) {
        char err[GRPC_MESSAGE_MAX + 64] = "";
        int r = api_only ? resolve_read_api(c, rs) : resolve_read(c, rs);
        if (r < 0) {
                snprintf(err, sizeof(err), "cannot read %s %s: %s", rs->stage == STAGE_MANIFEST ? "manifest" : "config",
                         stage_digest(rs), strerror(-r));
                resolve_fail(c, rs, r, err);
        }
}

static void on_resolve_blob(Ctrd *c, int error, const char *reason, const uint8_t *data, size_t len, void *userdata) {
        Resolve *rs = userdata;
        char err[GRPC_MESSAGE_MAX + 64] = "";

        if (error < 0) {
                resolve_finish(c, rs, error, reason);
                return;
        }
        int r = resolve_step(rs, data, len, err, sizeof(err));
        if (r > 0)
                resolve_finish(c, rs, 0, NULL);
        else if (r < 0)
                resolve_fail(c, rs, r, err);
        else
                resolve_next(c, rs, false);
}


/* ---------------------------------------------------------------- resolve worker */

/* A listing's chains of direct reads (open, read, SHA-256, JSON parse: most of a fresh
 * reconcile's CPU) run on WORKER_THREADS threads of their own, taking chains one at a
 * time from one queue, while the loop judges what came back: the blob reads (system time
 * mostly) are the longer part, so two readers beside the judging loop (one reader made
 * a 10,000-image scan 5 % slower at load 4-5). The worker only reads blobs (its own stack buffer)
 * and parses (jscan: pure, allocates nothing); everything else — callbacks, Content.Read for a blob
 * it could not read, the counters — stays on the loop, which hears of finished chains
 * through an eventfd. Its stack is mapped here and unmapped when it stops (the end of a
 * listing): an idle agent has no thread. */
#define WORKER_STACK_SIZE (1U << 20) /* jscan's check recurses up to 2048 levels */
/* Finished chains handed back to the loop in groups: one eventfd write and one wake-up
 * of the loop per group, not per chain (at 10,000 images the per-chain hand-off was
 * 12,500 context switches). A group is cut short when the worker runs out of work, so
 * the last chains never wait. A quarter of the jobs in flight: the loop judges one group
 * while the worker reads the next. */
#define WORKER_HANDBACK 16

#define WORKER_THREADS 2

/* Chains handed to the threads in groups too: queued on the loop (no lock), given over
 * with one signal when WORKER_HANDOFF wait or at the loop's next turn (a defer source).
 * One at a time, the loop woke a sleeping thread for each chain whenever it judged slower
 * than the threads read: a fresh reconcile of 10,000 images (the loop also records each
 * in the ledger and holds its journald entry) put each thread to sleep and woke it 4,500
 * times (perf sched: 600 ms of scheduling delay per thread at load 2.5), a scan 280. */
#define WORKER_HANDOFF 16

struct ResolveWorker {
        pthread_t threads[WORKER_THREADS];
        unsigned n_threads;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        Resolve *in, *in_tail;   /* to read, oldest first (lock) */
        Resolve *out, *out_tail; /* read, for the loop (lock) */
        unsigned n_out;          /* chains put on out since the loop was last told (lock) */
        bool stop;               /* (lock) */
        size_t pending;          /* handed to the worker and not back yet (the loop's) */
        Resolve *staged, *staged_tail; /* to hand to the threads at the next flush (the loop's) */
        unsigned n_staged;
        int efd;
        sd_event_source *source;
        sd_event_source *flush; /* defer: hands the staged chains over */
        void *stacks[WORKER_THREADS];
        int blobs_fd; /* a duplicate of the Ctrd's */
};

static void queue_append(Resolve **head, Resolve **tail, Resolve *rs) {
        rs->next = NULL;
        if (*tail)
                (*tail)->next = rs;
        else
                *head = rs;
        *tail = rs;
}

/* On the loop: the staged chains to the threads, one signal for the group. */
static void worker_flush(ResolveWorker *w) {
        if (!w->staged)
                return;
        bool many = w->n_staged > 1;
        pthread_mutex_lock(&w->lock);
        if (w->in_tail)
                w->in_tail->next = w->staged;
        else
                w->in = w->staged;
        w->in_tail = w->staged_tail;
        if (many)
                pthread_cond_broadcast(&w->wake); /* the threads waiting, if any: no system call otherwise */
        else
                pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        w->staged = w->staged_tail = NULL;
        w->n_staged = 0;
        (void) sd_event_source_set_enabled(w->flush, SD_EVENT_OFF);
}

static int on_worker_flush(sd_event_source *s, void *userdata) {
        Ctrd *c = userdata;
        worker_flush(c->worker);
        return 0;
}

/* On the worker: the chain's blobs read directly until done, an error, or a blob that
 * wants Content.Read (rs->stage). */
static void worker_resolve(int blobs_fd, Resolve *rs) {
        char err[GRPC_MESSAGE_MAX + 64] = "";
        for (;;) {
                uint8_t buf[BLOB_READ_BUF];
                _cleanup_free_ uint8_t *heap = NULL;
                const uint8_t *data;
                size_t len = 0;
                if (blob_read(blobs_fd, true, stage_digest(rs), CTRD_BLOB_MAX, buf, sizeof buf, &heap, &data, &len) < 0) {
                        rs->result = 0;
                        return;
                }
                rs->n_read++;
                int r = resolve_step(rs, data, len, err, sizeof(err));
                if (r != 0) {
                        rs->result = r;
                        if (r < 0 && err[0])
                                rs->err = strdup(err);
                        return;
                }
        }
}

static void *worker_main(void *userdata) {
        ResolveWorker *w = userdata;
        pthread_mutex_lock(&w->lock);
        for (;;) {
                while (!w->in && !w->stop)
                        pthread_cond_wait(&w->wake, &w->lock);
                if (!w->in)
                        break;
                /* one chain at a time: the threads share the queue */
                Resolve *rs = w->in;
                w->in = rs->next;
                if (!w->in)
                        w->in_tail = NULL;
                pthread_mutex_unlock(&w->lock);
                worker_resolve(w->blobs_fd, rs);
                pthread_mutex_lock(&w->lock);
                queue_append(&w->out, &w->out_tail, rs);
                /* the loop is told when WORKER_HANDBACK chains wait for it, or when
                 * nothing is left to read (this thread is about to wait) */
                bool tell = ++w->n_out >= WORKER_HANDBACK || !w->in;
                if (tell) {
                        w->n_out = 0;
                        pthread_mutex_unlock(&w->lock);
                        uint64_t one = 1;
                        (void) !write(w->efd, &one, sizeof one);
                        pthread_mutex_lock(&w->lock);
                }
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* On the loop: finished chains, in the order the worker finished them. */
static int on_worker_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Ctrd *c = userdata;
        ResolveWorker *w = c->worker;
        uint64_t n;
        (void) !read(fd, &n, sizeof n);
        pthread_mutex_lock(&w->lock);
        Resolve *done = w->out;
        w->out = w->out_tail = NULL;
        pthread_mutex_unlock(&w->lock);
        while (done) {
                Resolve *rs = done;
                done = rs->next;
                w->pending--;
                c->n_direct += rs->n_read;
                if (rs->result > 0)
                        resolve_finish(c, rs, 0, NULL);
                else if (rs->result < 0)
                        resolve_fail(c, rs, rs->result, rs->err ? rs->err : "");
                else if (rs->stage == STAGE_TARGET) {
                        int r = resolve_read_api(c, rs);
                        if (r < 0)
                                resolve_fail(c, rs, r, "");
                } else
                        resolve_next(c, rs, true);
        }
        return 0;
}

static int worker_start(Ctrd *c) {
        ResolveWorker *w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        /* its own: ctrd_set_content_direct(false) closes the Ctrd's */
        w->blobs_fd = fcntl(c->blobs_fd, F_DUPFD_CLOEXEC, 3);
        w->efd = w->blobs_fd < 0 ? -1 : eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        int r = w->efd < 0 ? -errno : 0;
        if (r >= 0)
                r = sd_event_add_io(c->event, &w->source, w->efd, EPOLLIN, on_worker_done, c);
        if (r >= 0)
                r = sd_event_add_defer(c->event, &w->flush, on_worker_flush, c);
        if (r >= 0) {
                (void) sd_event_source_set_enabled(w->flush, SD_EVENT_OFF);
                /* before whatever else is pending: the threads wait for these */
                (void) sd_event_source_set_priority(w->flush, SD_EVENT_PRIORITY_IMPORTANT);
                (void) sd_event_source_set_description(w->flush, "resolve-worker-flush");
                (void) sd_event_source_set_description(w->source, "resolve-worker");
                pthread_mutex_init(&w->lock, NULL);
                pthread_cond_init(&w->wake, NULL);
        }
        for (unsigned i = 0; r >= 0 && i < WORKER_THREADS; i++) {
                if (thread_start(&w->threads[i], &w->stacks[i], WORKER_STACK_SIZE, worker_main, w) < 0)
                        break; /* fewer threads */
                w->n_threads++;
        }
        if (r >= 0 && w->n_threads == 0) {
                pthread_cond_destroy(&w->wake);
                pthread_mutex_destroy(&w->lock);
                r = -ENOMEM;
        }
        if (r < 0) {
                sd_event_source_disable_unref(w->flush);
                sd_event_source_disable_unref(w->source);
                if (w->efd >= 0)
                        close(w->efd);
                if (w->blobs_fd >= 0)
                        close(w->blobs_fd);
                free(w);
                return r;
        }
        c->worker = w;
        return 0;
}

/* drop: chains not handed back yet are freed without their callbacks (ctrd_free());
 * else the worker is stopped only when none is pending. */
static void worker_stop(Ctrd *c, bool drop) {
        ResolveWorker *w = c->worker;
        if (!w || (!drop && w->pending > 0))
                return;
        for (Resolve *rs = w->staged, *next; rs; rs = next) { /* only when dropped */
                next = rs->next;
                resolve_free(rs);
        }
        w->staged = w->staged_tail = NULL;
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_broadcast(&w->wake);
        pthread_mutex_unlock(&w->lock);
        for (unsigned i = 0; i < w->n_threads; i++)
                (void) pthread_join(w->threads[i], NULL);
        for (Resolve *rs = w->out, *next; rs; rs = next) {
                next = rs->next;
                resolve_free(rs);
        }
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        sd_event_source_disable_unref(w->flush);
        sd_event_source_disable_unref(w->source);
        close(w->efd);
        close(w->blobs_fd);
        for (unsigned i = 0; i < w->n_threads; i++)
                thread_stack_free(w->stacks[i], WORKER_STACK_SIZE);
        free(w);
        c->worker = NULL;
}

void ctrd_resolve_worker_release(Ctrd *c) {
        if (c)
                worker_stop(c, false);
}

/* A chain at its first blob (STAGE_TARGET); *ret owned by the caller (resolve_free()). */
static int resolve_new(const char *ns, const char *target_digest, const char *target_media_type,
                       ctrd_resolve_cb_t cb, void *userdata, Resolve **ret) {
        if (!cb || isempty(ns) || !ctrd_digest_valid(target_digest))
                return -EINVAL;
        Resolve *rs = malloc(sizeof(*rs));
        if (!rs)
                return -ENOMEM;
        memset(rs, 0, RESOLVE_ZEROED);
        rs->cb = cb;
        rs->userdata = userdata;
        if (strcpy_bounded(rs->ns, sizeof(rs->ns), ns) < 0 ||
            strcpy_bounded(rs->cfg.target_media_type, sizeof(rs->cfg.target_media_type),
                           str_or_empty(target_media_type)) < 0) {
                resolve_free(rs);
                return -ENAMETOOLONG;
        }
        (void) strcpy_bounded(rs->cfg.target_digest, sizeof(rs->cfg.target_digest), target_digest);
        rs->stage = STAGE_TARGET;
        *ret = rs;
        return 0;
}

int ctrd_image_resolve(Ctrd *c, const char *ns, const char *target_digest, const char *target_media_type,
                       ctrd_resolve_cb_t cb, void *userdata) {
        Resolve *rs = NULL;
        if (!c)
                return -EINVAL;
        int r = resolve_new(ns, target_digest, target_media_type, cb, userdata, &rs);
        if (r < 0)
                return r;
        r = resolve_read(c, rs);
        if (r < 0)
                resolve_free(rs);
        return r;
}

int ctrd_image_resolve_async(Ctrd *c, const char *ns, const char *target_digest, const char *target_media_type,
                             ctrd_resolve_cb_t cb, void *userdata) {
        if (!c || c->direct != DIRECT_ON || (!c->worker && worker_start(c) < 0))
                return ctrd_image_resolve(c, ns, target_digest, target_media_type, cb, userdata);
        Resolve *rs = NULL;
        int r = resolve_new(ns, target_digest, target_media_type, cb, userdata, &rs);
        if (r < 0)
                return r;
        ResolveWorker *w = c->worker;
        w->pending++;
        queue_append(&w->staged, &w->staged_tail, rs);
        if (++w->n_staged >= WORKER_HANDOFF)
                worker_flush(w);
        else if (w->n_staged == 1 && sd_event_source_set_enabled(w->flush, SD_EVENT_ONESHOT) < 0)
                worker_flush(w); /* no turn to wait for: now */
        return 0;
}
