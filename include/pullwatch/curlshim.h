/* libcurl, loaded only when it is used.
 *
 * libcurl serves one optional feature, shipping to an endpoint, but linking it maps its
 * whole dependency tree (OpenSSL, GnuTLS, Kerberos, LDAP, p11-kit...) into every agent:
 * ~1.2 MiB of private dirty relocation data and several MiB of RSS per node, even when
 * no endpoint is configured. agent/curlshim.c defines the libcurl functions the project
 * calls and forwards them to libcurl.so.4, dlopen()ed on first use — the way systemd
 * loads its optional libraries (src/shared/dlfcn-util.h). Nothing links -lcurl.
 *
 * Call curlshim_load() where a clear error is wanted (curlev_new() does); a libcurl
 * function called without a loadable libcurl fails as libcurl itself would fail
 * (NULL, CURLE_FAILED_INIT, CURLM_INTERNAL_ERROR). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Load libcurl.so.4 and resolve every function (once; later calls return the first
 * result). -ENOENT/-ELIBBAD with a one-line reason in err (optional) on failure. */
int curlshim_load(char *err, size_t errlen);
/* Whether libcurl is mapped into the process (for tests: it must not be, until used). */
bool curlshim_loaded(void);
