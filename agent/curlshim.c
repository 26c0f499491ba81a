/* See include/pullwatch/curlshim.h. The type-checking macros of curl.h would rename the
 * definitions below: they are off in this file only. */
#define CURL_DISABLE_TYPECHECK 1
#include "pullwatch/curlshim.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <stdarg.h>

#include "pullwatch/util.h"

#define LIBCURL_SONAME "libcurl.so.4"

/* The functions the project calls, one line each: name, return type, parameters. */
#define CURLSHIM_FUNCTIONS(X)                                                                              \
        X(curl_global_init, CURLcode, (long flags))                                                       \
        X(curl_global_cleanup, void, (void))                                                              \
        X(curl_easy_init, CURL *, (void))                                                                 \
        X(curl_easy_cleanup, void, (CURL * e))                                                            \
        X(curl_easy_perform, CURLcode, (CURL * e))                                                        \
        X(curl_easy_setopt, CURLcode, (CURL * e, CURLoption o, ...))                                      \
        X(curl_easy_getinfo, CURLcode, (CURL * e, CURLINFO i, ...))                                       \
        X(curl_easy_strerror, const char *, (CURLcode c))                                                 \
        X(curl_easy_header, CURLHcode,                                                                    \
          (CURL * e, const char *name, size_t index, unsigned int origin, int request, struct curl_header **h)) \
        X(curl_slist_append, struct curl_slist *, (struct curl_slist * l, const char *s))                 \
        X(curl_slist_free_all, void, (struct curl_slist * l))                                             \
        X(curl_multi_init, CURLM *, (void))                                                               \
        X(curl_multi_cleanup, CURLMcode, (CURLM * m))                                                     \
        X(curl_multi_setopt, CURLMcode, (CURLM * m, CURLMoption o, ...))                                  \
        X(curl_multi_add_handle, CURLMcode, (CURLM * m, CURL * e))                                        \
        X(curl_multi_remove_handle, CURLMcode, (CURLM * m, CURL * e))                                     \
        X(curl_multi_socket_action, CURLMcode, (CURLM * m, curl_socket_t s, int ev, int *running))        \
        X(curl_multi_assign, CURLMcode, (CURLM * m, curl_socket_t s, void *p))                            \
        X(curl_multi_info_read, CURLMsg *, (CURLM * m, int *left))

#define DECLARE_POINTER(name, ret, params) static ret(*p_##name) params;
CURLSHIM_FUNCTIONS(DECLARE_POINTER)

static void *handle;
static int load_result = 1; /* 1: not tried yet */
static char load_error[256];

int curlshim_load(char *err, size_t errlen) {
        if (load_result == 1) {
                handle = dlopen(LIBCURL_SONAME, RTLD_NOW | RTLD_LOCAL);
                if (!handle) {
                        load_result = -ENOENT;
                        snprintf(load_error, sizeof load_error, "cannot load %s (install libcurl4): %s",
                                 LIBCURL_SONAME, dlerror());
                } else {
                        load_result = 0;
#define RESOLVE(name, ret, params)                                                                       \
        if (load_result == 0 && !(p_##name = (ret(*) params) dlsym(handle, #name))) {                    \
                load_result = -ELIBBAD;                                                                  \
                snprintf(load_error, sizeof load_error, "%s has no %s: too old a libcurl", LIBCURL_SONAME, #name); \
        }
                        CURLSHIM_FUNCTIONS(RESOLVE)
#undef RESOLVE
                }
        }
        if (load_result < 0 && err && errlen > 0)
                snprintf(err, errlen, "%s", load_error);
        return load_result;
}

bool curlshim_loaded(void) {
        return load_result == 0;
}

static bool ready(void) {
        return curlshim_load(NULL, 0) == 0;
}

CURLcode curl_global_init(long flags) {
        return ready() ? p_curl_global_init(flags) : CURLE_FAILED_INIT;
}

void curl_global_cleanup(void) {
        if (load_result == 0)
                p_curl_global_cleanup();
}

CURL *curl_easy_init(void) {
        return ready() ? p_curl_easy_init() : NULL;
}

void curl_easy_cleanup(CURL *e) {
        if (ready())
                p_curl_easy_cleanup(e);
}

CURLcode curl_easy_perform(CURL *e) {
        return ready() ? p_curl_easy_perform(e) : CURLE_FAILED_INIT;
}

/* An option's argument type is encoded in its number (curl.h: CURLOPTTYPE_*); forward
 * exactly the one argument each option takes. */
CURLcode curl_easy_setopt(CURL *e, CURLoption o, ...) {
        if (!ready())
                return CURLE_FAILED_INIT;
        va_list ap;
        va_start(ap, o);
        CURLcode r;
        if (o < CURLOPTTYPE_OBJECTPOINT)
                r = p_curl_easy_setopt(e, o, va_arg(ap, long));
        else if (o < CURLOPTTYPE_OFF_T)
                r = p_curl_easy_setopt(e, o, va_arg(ap, void *)); /* object, slist, callback pointers */
        else if (o < CURLOPTTYPE_BLOB)
                r = p_curl_easy_setopt(e, o, va_arg(ap, curl_off_t));
        else
                r = p_curl_easy_setopt(e, o, va_arg(ap, void *));
        va_end(ap);
        return r;
}

CURLcode curl_easy_getinfo(CURL *e, CURLINFO i, ...) {
        if (!ready())
                return CURLE_FAILED_INIT;
        va_list ap;
        va_start(ap, i);
        CURLcode r = p_curl_easy_getinfo(e, i, va_arg(ap, void *)); /* always a pointer to the result */
        va_end(ap);
        return r;
}

const char *curl_easy_strerror(CURLcode c) {
        return ready() ? p_curl_easy_strerror(c) : "libcurl is not available";
}

CURLHcode curl_easy_header(CURL *e, const char *name, size_t index, unsigned int origin, int request,
                           struct curl_header **h) {
        return ready() ? p_curl_easy_header(e, name, index, origin, request, h) : CURLHE_NOT_BUILT_IN;
}

struct curl_slist *curl_slist_append(struct curl_slist *l, const char *s) {
        return ready() ? p_curl_slist_append(l, s) : NULL;
}

void curl_slist_free_all(struct curl_slist *l) {
        if (ready())
                p_curl_slist_free_all(l);
}

CURLM *curl_multi_init(void) {
        return ready() ? p_curl_multi_init() : NULL;
}

CURLMcode curl_multi_cleanup(CURLM *m) {
        return ready() ? p_curl_multi_cleanup(m) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_setopt(CURLM *m, CURLMoption o, ...) {
        if (!ready())
                return CURLM_INTERNAL_ERROR;
        va_list ap;
        va_start(ap, o);
        CURLMcode r;
        if (o < CURLOPTTYPE_OBJECTPOINT)
                r = p_curl_multi_setopt(m, o, va_arg(ap, long));
        else if (o < CURLOPTTYPE_OFF_T)
                r = p_curl_multi_setopt(m, o, va_arg(ap, void *));
        else
                r = p_curl_multi_setopt(m, o, va_arg(ap, curl_off_t));
        va_end(ap);
        return r;
}

CURLMcode curl_multi_add_handle(CURLM *m, CURL *e) {
        return ready() ? p_curl_multi_add_handle(m, e) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_remove_handle(CURLM *m, CURL *e) {
        return ready() ? p_curl_multi_remove_handle(m, e) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_socket_action(CURLM *m, curl_socket_t s, int ev, int *running) {
        return ready() ? p_curl_multi_socket_action(m, s, ev, running) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_assign(CURLM *m, curl_socket_t s, void *p) {
        return ready() ? p_curl_multi_assign(m, s, p) : CURLM_INTERNAL_ERROR;
}

CURLMsg *curl_multi_info_read(CURLM *m, int *left) {
        return ready() ? p_curl_multi_info_read(m, left) : NULL;
}
