/* GnuTLS, loaded only when it is used.
 *
 * TLS serves one optional feature, shipping to an https:// endpoint (agent/httpc.c).
 * Linking it would map GnuTLS and its dependencies (nettle, hogweed, gmp, p11-kit,
 * libtasn1, libidn2, libunistring) into every agent, endpoint or not. agent/tlsshim.c
 * dlopen()s libgnutls.so.30 on first use and resolves the functions below into
 * sym_NAME pointers — systemd's dlopen pattern (src/shared/dlfcn-util.h). Nothing
 * links -lgnutls; only GnuTLS's headers are used, for its types and constants.
 *
 * Why GnuTLS and not OpenSSL: measured in the README's shipping section (one verified
 * TLS request from a tiny program: GnuTLS 0.6 MiB private dirty vs OpenSSL 1.07 MiB). */
#pragma once

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdbool.h>
#include <stddef.h>

#define TLSSHIM_SONAME "libgnutls.so.30"

/* name, return type, parameters: every GnuTLS function the project calls. */
#define TLSSHIM_FUNCTIONS(X)                                                                                  \
        X(gnutls_check_version, const char *, (const char *req))                                             \
        X(gnutls_certificate_allocate_credentials, int, (gnutls_certificate_credentials_t * res))            \
        X(gnutls_certificate_free_credentials, void, (gnutls_certificate_credentials_t sc))                  \
        X(gnutls_certificate_set_x509_trust_file, int,                                                        \
          (gnutls_certificate_credentials_t cred, const char *cafile, gnutls_x509_crt_fmt_t type))           \
        X(gnutls_certificate_set_x509_system_trust, int, (gnutls_certificate_credentials_t cred))             \
        X(gnutls_certificate_set_x509_key_file, int,                                                          \
          (gnutls_certificate_credentials_t res, const char *certfile, const char *keyfile,                   \
           gnutls_x509_crt_fmt_t type))                                                                       \
        X(gnutls_init, int, (gnutls_session_t * session, unsigned int flags))                                \
        X(gnutls_deinit, void, (gnutls_session_t session))                                                   \
        X(gnutls_set_default_priority, int, (gnutls_session_t session))                                      \
        X(gnutls_credentials_set, int, (gnutls_session_t session, gnutls_credentials_type_t type, void *cred)) \
        X(gnutls_server_name_set, int,                                                                        \
          (gnutls_session_t session, gnutls_server_name_type_t type, const void *name, size_t name_length))  \
        X(gnutls_session_set_verify_cert, void, (gnutls_session_t session, const char *hostname, unsigned flags)) \
        X(gnutls_session_get_verify_cert_status, unsigned int, (gnutls_session_t session))                   \
        X(gnutls_certificate_verification_status_print, int,                                                  \
          (unsigned int status, gnutls_certificate_type_t type, gnutls_datum_t *out, unsigned int flags))    \
        X(gnutls_transport_set_int2, void, (gnutls_session_t session, int r, int s))                         \
        X(gnutls_handshake, int, (gnutls_session_t session))                                                 \
        X(gnutls_record_send, ssize_t, (gnutls_session_t session, const void *data, size_t data_size))      \
        X(gnutls_record_recv, ssize_t, (gnutls_session_t session, void *data, size_t data_size))            \
        X(gnutls_record_get_direction, int, (gnutls_session_t session))                                      \
        X(gnutls_error_is_fatal, int, (int error))                                                           \
        X(gnutls_strerror, const char *, (int error))                                                        \
        X(gnutls_alert_get, gnutls_alert_description_t, (gnutls_session_t session))                         \
        X(gnutls_alert_get_name, const char *, (gnutls_alert_description_t alert))                           \
        X(gnutls_bye, int, (gnutls_session_t session, gnutls_close_request_t how))

#define TLSSHIM_DECLARE(name, ret, params) extern ret(*sym_##name) params;
TLSSHIM_FUNCTIONS(TLSSHIM_DECLARE)
#undef TLSSHIM_DECLARE

/* gnutls_free is a variable of GnuTLS (a function pointer), not a function. */
void tlsshim_free(void *p);

/* Load libgnutls.so.30 and resolve every function (once; later calls return the first
 * result). -ENOENT/-ELIBBAD with a one-line reason in err (optional) on failure. The
 * sym_ pointers may be called only after it returned 0. */
int tlsshim_load(char *err, size_t errlen);
/* Whether GnuTLS is mapped into the process (for tests: it must not be, until used). */
bool tlsshim_loaded(void);
