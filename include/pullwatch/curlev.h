/* libcurl multi driven by sd-event (the pattern of systemd's src/import/curl-util.c):
 * the event loop owns every fd and timer, libcurl is driven only through
 * curl_multi_socket_action(). Shared by the gRPC transport and the shipper. */
#pragma once

#include <curl/curl.h>
#include <systemd/sd-event.h>

typedef struct CurlEv CurlEv;

/* Called once when a transfer added with curlev_add() completes (any CURLcode).
 * The easy handle has already been removed from the multi; the callee owns it again
 * and may free it, or re-add it. */
typedef void (*curlev_done_t)(CurlEv *ev, CURL *easy, CURLcode result, void *userdata);

/* *ret is owned by the caller, released with curlev_free(). The CurlEv borrows e
 * (takes its own reference). */
int curlev_new(CurlEv **ret, sd_event *e);
/* Accepts NULL. Removes (does not free) the easy handles still attached. Returns NULL. */
CurlEv *curlev_free(CurlEv *ev);

/* Start a transfer. The CurlEv borrows easy until done is called or curlev_remove().
 * CURLOPT_PRIVATE of easy is used internally: callers must not set it. */
int curlev_add(CurlEv *ev, CURL *easy, curlev_done_t done, void *userdata);
/* Stop a transfer without calling done; the caller keeps ownership of easy. */
int curlev_remove(CurlEv *ev, CURL *easy);

/* The timer source libcurl's timeouts run on (borrowed; NULL before libcurl asked for a
 * timeout). For tests and diagnostics: its accuracy decides how late a transfer starts. */
sd_event_source *curlev_timer_source(const CurlEv *ev);
