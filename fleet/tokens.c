/* Bearer tokens → cluster names, re-read when the file changes (see fleet.h). */
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include "pullwatch/fleet.h"
#include "pullwatch/record.h"
#include "pullwatch/util.h"

#define TOKENS_FILE_MAX (1U << 20)
#define TOKEN_MAX 512

typedef struct TokenEntry {
        char *token;
        char cluster[RECORD_CLUSTER_MAX];
} TokenEntry;

struct Tokens {
        pthread_mutex_t lock;
        char *path;
        TokenEntry *entries;
        size_t n;
        struct stat st; /* of the file the entries come from */
        uint64_t checked_usec;
        bool reported; /* the current problem was already reported once */
};

static void entries_free(TokenEntry *e, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (e[i].token) {
                        explicit_bzero(e[i].token, strlen(e[i].token));
                        free(e[i].token);
                }
        free(e);
}

Tokens *tokens_free(Tokens *t) {
        if (!t)
                return NULL;
        entries_free(t->entries, t->n);
        free(t->path);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
}

static bool cluster_name_valid(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if ((unsigned char) *s <= 0x20 || (unsigned char) *s >= 0x7f)
                        return false;
        return true;
}

static int load(Tokens *t, struct stat *ret_st, char *err, size_t errlen) {
        _cleanup_close_ int fd = open(t->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errbuf_fail(err, errlen, -errno, "tokens file %s: %s", t->path, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0)
                return errbuf_fail(err, errlen, -errno, "tokens file %s: %s", t->path, strerror(errno));
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = read_fd_bounded(fd, TOKENS_FILE_MAX, &text, &len);
        if (r < 0)
                return errbuf_fail(err, errlen, r, "tokens file %s: %s", t->path, strerror(-r));
        if (len > TOKENS_FILE_MAX) {
                explicit_bzero(text, len);
                return errbuf_fail(err, errlen, -EFBIG, "tokens file %s: larger than %u bytes", t->path,
                                   TOKENS_FILE_MAX);
        }
        TokenEntry *e = NULL;
        size_t n = 0, alloc = 0, lineno = 0;
        char *save = NULL;
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                lineno++;
                char *tok_save = NULL, *token = strtok_r(line, " \t\r", &tok_save);
                if (!token || token[0] == '#')
                        continue;
                char *cluster = strtok_r(NULL, " \t\r", &tok_save), *extra = strtok_r(NULL, " \t\r", &tok_save);
                if (!cluster || (extra && extra[0] != '#') || strlen(token) > TOKEN_MAX ||
                    strlen(cluster) >= RECORD_CLUSTER_MAX || !cluster_name_valid(cluster)) {
                        r = errbuf_fail(err, errlen, -EBADMSG,
                                        "tokens file %s: line %zu: want \"TOKEN CLUSTER\" (token up to %d bytes,"
                                        " cluster up to %d printable bytes)",
                                        t->path, lineno, TOKEN_MAX, RECORD_CLUSTER_MAX - 1);
                        break;
                }
                r = greedy_realloc((void **) &e, &alloc, n + 1, sizeof *e, 8);
                if (r < 0)
                        break;
                e[n].token = strdup(token);
                if (!e[n].token) {
                        r = -ENOMEM;
                        break;
                }
                memcpy(e[n].cluster, cluster, strlen(cluster) + 1);
                n++;
        }
        explicit_bzero(text, len);
        if (r < 0) {
                entries_free(e, n);
                return r;
        }
        entries_free(t->entries, t->n);
        t->entries = e;
        t->n = n;
        *ret_st = st;
        return 0;
}

int tokens_new(Tokens **ret, const char *path, char *err, size_t errlen) {
        Tokens *t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        pthread_mutex_init(&t->lock, NULL);
        t->path = strdup(path);
        if (!t->path) {
                tokens_free(t);
                return -ENOMEM;
        }
        int r = load(t, &t->st, err, errlen);
        if (r < 0) {
                tokens_free(t);
                return r;
        }
        t->checked_usec = now_usec_monotonic();
        *ret = t;
        return 0;
}

static bool same_file(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
               a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Compare without leaking where the first difference is (nor, beyond its bucket, the length). */
static bool token_equal(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        unsigned char d = la != lb;
        for (size_t i = 0; i < TOKEN_MAX; i++) {
                unsigned char x = i < la ? (unsigned char) a[i] : 0, y = i < lb ? (unsigned char) b[i] : 0;
                d |= x ^ y;
        }
        return d == 0;
}

int tokens_lookup(Tokens *t, const char *token, char *buf, size_t size, char *err, size_t errlen) {
        int r = 0;
        pthread_mutex_lock(&t->lock);
        uint64_t now = now_usec_monotonic();
        if (now - t->checked_usec >= 1000000ULL) {
                t->checked_usec = now;
                struct stat st;
                if (stat(t->path, &st) < 0 || !same_file(&st, &t->st)) {
                        char why[512] = "";
                        r = load(t, &st, why, sizeof why);
                        if (r >= 0) {
                                t->st = st;
                                t->reported = false;
                        } else {
                                if (!t->reported) /* once per problem; the last good set stays */
                                        errbuf_fail(err, errlen, r, "%s, keeping the previous tokens", why);
                                t->reported = true;
                                memset(&t->st, 0, sizeof t->st); /* try again on the next check */
                        }
                }
        }
        int found = 0;
        if (token && strlen(token) <= TOKEN_MAX)
                for (size_t i = 0; i < t->n; i++)
                        if (token_equal(token, t->entries[i].token) && !found) {
                                found = 1;
                                if (strcpy_bounded(buf, size, t->entries[i].cluster) < 0)
                                        found = 0;
                        }
        pthread_mutex_unlock(&t->lock);
        return found;
}
