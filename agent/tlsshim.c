/* See include/pullwatch/tlsshim.h. */
#include "pullwatch/tlsshim.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>

#define TLSSHIM_DEFINE(name, ret, params) ret(*sym_##name) params;
TLSSHIM_FUNCTIONS(TLSSHIM_DEFINE)
#undef TLSSHIM_DEFINE

static gnutls_free_function *free_var;
static void *handle;
static int load_result = 1; /* 1: not tried yet */
static char load_error[256];

int tlsshim_load(char *err, size_t errlen) {
        if (load_result == 1) {
                handle = dlopen(TLSSHIM_SONAME, RTLD_NOW | RTLD_LOCAL);
                if (!handle) {
                        load_result = -ENOENT;
                        snprintf(load_error, sizeof load_error, "cannot load %s (install libgnutls30): %s",
                                 TLSSHIM_SONAME, dlerror());
                } else {
                        load_result = 0;
#define RESOLVE(name, ret, params)                                                                            \
        if (load_result == 0 && !(sym_##name = (ret(*) params) dlsym(handle, #name))) {                       \
                load_result = -ELIBBAD;                                                                       \
                snprintf(load_error, sizeof load_error, "%s has no %s: too old a GnuTLS", TLSSHIM_SONAME, #name); \
        }
                        TLSSHIM_FUNCTIONS(RESOLVE)
#undef RESOLVE
                        if (load_result == 0 && !(free_var = (gnutls_free_function *) dlsym(handle, "gnutls_free"))) {
                                load_result = -ELIBBAD;
                                snprintf(load_error, sizeof load_error, "%s has no gnutls_free", TLSSHIM_SONAME);
                        }
                        /* 3.6.5: TLS 1.3 and gnutls_session_set_verify_cert's IP address checks */
                        if (load_result == 0 && !sym_gnutls_check_version("3.6.5")) {
                                load_result = -ELIBBAD;
                                snprintf(load_error, sizeof load_error, "%s is older than 3.6.5",
                                         TLSSHIM_SONAME);
                        }
                }
        }
        if (load_result < 0 && err && errlen > 0)
                snprintf(err, errlen, "%s", load_error);
        return load_result;
}

bool tlsshim_loaded(void) {
        return load_result == 0;
}

void tlsshim_free(void *p) {
        if (p && free_var && *free_var)
                (*free_var)(p);
}
