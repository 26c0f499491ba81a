/* Fuzz target for the registry documents the agent reads through containerd's Content
 * service: ctrd_parse_index (for three platforms), ctrd_parse_manifest and
 * ctrd_parse_config, each on the same bytes. Whatever the input: a failure leaves a
 * one-line reason, a success only digests of the OCI grammar and terminated strings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pullwatch/containerd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_err(int r, const char *err) {
        if (r < 0 && (!err[0] || strchr(err, '\n')))
                abort();
}

static void check_string(const char *s, size_t size) {
        if (!memchr(s, 0, size))
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const platforms[][2] = {{"amd64", ""}, {"arm64", "v8"}, {"arm", "v7"}};
        const char *json = (const char *) data;
        char err[256];
        for (size_t p = 0; p < sizeof platforms / sizeof platforms[0]; p++) {
                CtrdImageConfig cfg = {0};
                err[0] = 0;
                int r = ctrd_parse_index(json, size, "linux", platforms[p][0], platforms[p][1], &cfg, err, sizeof err);
                check_err(r, err);
                if (r < 0)
                        continue;
                if (!ctrd_digest_valid(cfg.platform_digest) || cfg.n_manifests > CTRD_INDEX_MANIFESTS_MAX)
                        abort();
                check_string(cfg.platform, sizeof cfg.platform);
                for (size_t i = 0; i < cfg.n_manifests; i++)
                        if (!ctrd_digest_valid(cfg.manifests[i]))
                                abort();
        }

        CtrdImageConfig cfg = {0};
        err[0] = 0;
        int r = ctrd_parse_manifest(json, size, &cfg, err, sizeof err);
        check_err(r, err);
        if (r >= 0 && !ctrd_digest_valid(cfg.config_digest))
                abort();

        cfg = (CtrdImageConfig){0};
        err[0] = 0;
        r = ctrd_parse_config(json, size, &cfg, err, sizeof err);
        check_err(r, err);
        check_string(cfg.revision, sizeof cfg.revision);
        if (r >= 0 && !cfg.has_revision && cfg.revision[0])
                abort();
        return 0;
}
