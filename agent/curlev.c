/* libcurl multi on sd-event: libcurl tells us which fds and which timeout it wants
 * (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION), sd-event watches them, and we
 * hand readiness back with curl_multi_socket_action(). Same shape as systemd's
 * src/import/curl-util.c, without its hashmap: the per-socket state hangs off
 * curl_multi_assign(). */
#include "pullwatch/curlev.h"
#include "pullwatch/curlshim.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "pullwatch/util.h"

typedef struct CurlEvIo CurlEvIo;
typedef struct CurlEvXfer CurlEvXfer;

/* One watched socket. Kept on a list as well, so curlev_free() can release any
 * that libcurl never told us to remove. */
struct CurlEvIo {
        CurlEv *ev;
        curl_socket_t fd;
        sd_event_source *source;
        CurlEvIo *prev, *next;
};

/* One attached easy handle; stored as the easy's CURLOPT_PRIVATE. */
struct CurlEvXfer {
        CURL *easy;
        curlev_done_t done;
        void *userdata;
        bool deferred; /* on ev->deferred, not yet in the multi */
        CurlEvXfer *prev, *next;
};

struct CurlEv {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        CurlEvIo *ios;
        CurlEvXfer *xfers;
        /* Transfers added from inside a libcurl callback (a stream's write callback that
         * starts a lookup): libcurl refuses that with CURLM_RECURSIVE_API_CALL, so they
         * wait here and join the multi from a defer source on the next loop turn. */
        CurlEvXfer *deferred;
        sd_event_source *defer_source;
};

#define LIST_UNLINK(head, item)                                  \
        do {                                                     \
                if ((item)->next)                                \
                        (item)->next->prev = (item)->prev;       \
                if ((item)->prev)                                \
                        (item)->prev->next = (item)->next;       \
                else                                             \
                        (head) = (item)->next;                   \
                (item)->prev = (item)->next = NULL;              \
        } while (0)
#define LIST_PREPEND(head, item)                                 \
        do {                                                     \
                (item)->prev = NULL;                             \
                (item)->next = (head);                           \
                if (head)                                        \
                        (head)->prev = (item);                   \
                (head) = (item);                                 \
        } while (0)

static void io_free(CurlEvIo *io) {
        if (!io)
                return;
        LIST_UNLINK(io->ev->ios, io);
        sd_event_source_disable_unref(io->source);
        free(io);
}

static void check_completed(CurlEv *ev) {
        CURLMsg *msg;
        int left;

        /* Re-read the queue after every callback: the callee may have added or
         * removed transfers (remove_handle drops that easy's pending message). */
        while ((msg = curl_multi_info_read(ev->multi, &left))) {
                if (msg->msg != CURLMSG_DONE)
                        continue;

                CURL *easy = msg->easy_handle;
                CURLcode result = msg->data.result;
                CurlEvXfer *x = NULL;
                if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &x) != CURLE_OK || !x) {
                        curl_multi_remove_handle(ev->multi, easy);
                        continue;
                }

                curlev_done_t done = x->done;
                void *userdata = x->userdata;
                curl_multi_remove_handle(ev->multi, easy);
                curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
                LIST_UNLINK(ev->xfers, x);
                free(x);

                if (done)
                        done(ev, easy, result, userdata);
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        CurlEvIo *io = userdata;
        CurlEv *ev = io->ev;
        int action = 0, running;

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & EPOLLERR)
                action |= CURL_CSELECT_ERR;

        /* io may be freed inside this call (CURL_POLL_REMOVE); don't touch it after. */
        (void) curl_multi_socket_action(ev->multi, fd, action, &running);
        check_completed(ev);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CurlEv *ev = userdata;
        int running;

        (void) curl_multi_socket_action(ev->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_completed(ev);
        return 0;
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        CurlEv *ev = userp;
        CurlEvIo *io = socketp;
        uint32_t events;
        int r;

        if (what == CURL_POLL_REMOVE) {
                if (io) {
                        curl_multi_assign(ev->multi, fd, NULL);
                        io_free(io);
                }
                return 0;
        }

        switch (what) {
        case CURL_POLL_IN:
                events = EPOLLIN;
                break;
        case CURL_POLL_OUT:
                events = EPOLLOUT;
                break;
        case CURL_POLL_INOUT:
                events = EPOLLIN | EPOLLOUT;
                break;
        default:
                return -1;
        }

        if (io) {
                r = sd_event_source_set_io_events(io->source, events);
                if (r < 0)
                        return -1;
                r = sd_event_source_set_enabled(io->source, SD_EVENT_ON);
                return r < 0 ? -1 : 0;
        }

        io = calloc(1, sizeof(*io));
        if (!io)
                return -1;
        io->ev = ev;
        io->fd = fd;
        r = sd_event_add_io(ev->event, &io->source, fd, events, on_io, io);
        if (r < 0) {
                free(io);
                return -1;
        }
        (void) sd_event_source_set_description(io->source, "curl-io");
        LIST_PREPEND(ev->ios, io);
        if (curl_multi_assign(ev->multi, fd, io) != CURLM_OK) {
                io_free(io);
                return -1;
        }
        return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
        CurlEv *ev = userp;
        uint64_t usec;
        int r;

        if (timeout_ms < 0) {
                if (ev->timer)
                        (void) sd_event_source_set_enabled(ev->timer, SD_EVENT_OFF);
                return 0;
        }

        /* Never call socket_action from inside this callback (libcurl forbids it);
         * a 0 timeout becomes a timer that fires on the next loop iteration. */
        r = sd_event_now(ev->event, CLOCK_MONOTONIC, &usec);
        if (r < 0)
                return -1;
        usec += (uint64_t) timeout_ms * 1000ULL;

        if (ev->timer) {
                r = sd_event_source_set_time(ev->timer, usec);
                if (r < 0)
                        return -1;
                r = sd_event_source_set_enabled(ev->timer, SD_EVENT_ONESHOT);
                return r < 0 ? -1 : 0;
        }

        /* accuracy 1µs: 0 would mean sd-event's default of 250 ms, stalling every transfer */
        r = sd_event_add_time(ev->event, &ev->timer, CLOCK_MONOTONIC, usec, 1, on_timer, ev);
        if (r < 0)
                return -1;
        (void) sd_event_source_set_description(ev->timer, "curl-timer");
        return 0;
}

int curlev_new(CurlEv **ret, sd_event *e) {
        int r0 = curlshim_load(NULL, 0); /* libcurl is loaded on first use: say so if it cannot be */
        if (r0 < 0)
                return r0;
        CurlEv *ev;

        if (!ret || !e)
                return -EINVAL;

        ev = calloc(1, sizeof(*ev));
        if (!ev)
                return -ENOMEM;
        ev->event = sd_event_ref(e);

        ev->multi = curl_multi_init();
        if (!ev->multi) {
                curlev_free(ev);
                return -ENOMEM;
        }
        if (curl_multi_setopt(ev->multi, CURLMOPT_SOCKETFUNCTION, socket_cb) != CURLM_OK ||
            curl_multi_setopt(ev->multi, CURLMOPT_SOCKETDATA, ev) != CURLM_OK ||
            curl_multi_setopt(ev->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
            curl_multi_setopt(ev->multi, CURLMOPT_TIMERDATA, ev) != CURLM_OK) {
                curlev_free(ev);
                return -EIO;
        }

        *ret = ev;
        return 0;
}

CurlEv *curlev_free(CurlEv *ev) {
        if (!ev)
                return NULL;

        while (ev->deferred) {
                CurlEvXfer *x = ev->deferred;
                curl_easy_setopt(x->easy, CURLOPT_PRIVATE, NULL);
                LIST_UNLINK(ev->deferred, x);
                free(x);
        }
        sd_event_source_disable_unref(ev->defer_source);
        while (ev->xfers) {
                CurlEvXfer *x = ev->xfers;
                curl_multi_remove_handle(ev->multi, x->easy);
                curl_easy_setopt(x->easy, CURLOPT_PRIVATE, NULL);
                LIST_UNLINK(ev->xfers, x);
                free(x);
        }
        /* Cleanup may still call socket_cb/timer_cb: keep our sources alive until then. */
        if (ev->multi)
                curl_multi_cleanup(ev->multi);
        while (ev->ios)
                io_free(ev->ios);
        sd_event_source_disable_unref(ev->timer);
        sd_event_unref(ev->event);
        free(ev);
        return NULL;
}

static int on_defer(sd_event_source *s, void *userdata) {
        CurlEv *ev = userdata;
        /* Detach the whole list first: a done callback below may add (and defer) again. */
        CurlEvXfer *list = ev->deferred;
        ev->deferred = NULL;
        while (list) {
                CurlEvXfer *x = list;
                LIST_UNLINK(list, x);
                x->deferred = false;
                CURLMcode mc = curl_multi_add_handle(ev->multi, x->easy);
                if (mc == CURLM_OK) {
                        LIST_PREPEND(ev->xfers, x);
                        continue;
                }
                /* it never started: report it as a failed transfer, exactly once */
                CURL *easy = x->easy;
                curlev_done_t done = x->done;
                void *ud = x->userdata;
                curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
                free(x);
                done(ev, easy, mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY : CURLE_FAILED_INIT, ud);
        }
        return 0;
}

static int defer_add(CurlEv *ev, CurlEvXfer *x) {
        if (!ev->defer_source) {
                int r = sd_event_add_defer(ev->event, &ev->defer_source, on_defer, ev);
                if (r < 0)
                        return r;
        }
        int r = sd_event_source_set_enabled(ev->defer_source, SD_EVENT_ONESHOT);
        if (r < 0)
                return r;
        x->deferred = true;
        LIST_PREPEND(ev->deferred, x);
        return 0;
}

int curlev_add(CurlEv *ev, CURL *easy, curlev_done_t done, void *userdata) {
        CurlEvXfer *x;

        if (!ev || !easy)
                return -EINVAL;
        /* Already attached (here or to another CurlEv): don't clobber its PRIVATE. */
        if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &x) == CURLE_OK && x)
                return -EEXIST;

        x = calloc(1, sizeof(*x));
        if (!x)
                return -ENOMEM;
        x->easy = easy;
        x->done = done;
        x->userdata = userdata;

        if (curl_easy_setopt(easy, CURLOPT_PRIVATE, x) != CURLE_OK) {
                free(x);
                return -EIO;
        }
        CURLMcode mc = curl_multi_add_handle(ev->multi, easy);
        if (mc == CURLM_RECURSIVE_API_CALL) {
                int r = defer_add(ev, x);
                if (r < 0) {
                        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
                        free(x);
                }
                return r;
        }
        if (mc != CURLM_OK) {
                curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
                free(x);
                return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : mc == CURLM_ADDED_ALREADY ? -EEXIST : -EIO;
        }
        LIST_PREPEND(ev->xfers, x);
        return 0;
}

sd_event_source *curlev_timer_source(const CurlEv *ev) {
        return ev ? ev->timer : NULL;
}

int curlev_remove(CurlEv *ev, CURL *easy) {
        CurlEvXfer *x = NULL;

        if (!ev || !easy)
                return -EINVAL;
        if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &x) != CURLE_OK || !x)
                return -ENOENT;

        if (x->deferred)
                LIST_UNLINK(ev->deferred, x);
        else {
                curl_multi_remove_handle(ev->multi, easy);
                LIST_UNLINK(ev->xfers, x);
        }
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        free(x);
        return 0;
}
