/* See include/pullwatch/dynbuf.h. */
#include "pullwatch/dynbuf.h"

void dynbuf_init(DynBuf *b, size_t max) {
        *b = DYNBUF_INIT(max);
}

void dynbuf_free(DynBuf *b) {
        free(b->data);
        *b = DYNBUF_INIT(b->max);
}

void dynbuf_reset(DynBuf *b) {
        b->len = 0;
        if (b->data)
                b->data[0] = 0;
}

/* Room for len + n bytes and the NUL. */
static int dynbuf_reserve(DynBuf *b, size_t n) {
        if (n > b->max || b->len > b->max - n)
                return -E2BIG;
        size_t need = b->len + n + 1;
        if (need <= b->cap)
                return 0;
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
                cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        if (cap > b->max + 1 && b->max < SIZE_MAX)
                cap = b->max + 1;
        char *d = realloc(b->data, cap);
        if (!d)
                return -ENOMEM;
        b->data = d;
        b->cap = cap;
        return 0;
}

int dynbuf_add(DynBuf *b, const void *p, size_t n) {
        int r = dynbuf_reserve(b, n);
        if (r < 0)
                return r;
        if (n)
                memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = 0;
        return 0;
}

int dynbuf_puts(DynBuf *b, const char *s) {
        return dynbuf_add(b, s, strlen(s));
}

int dynbuf_printf(DynBuf *b, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        int r = dynbuf_reserve(b, (size_t) n);
        if (r < 0)
                return r;
        va_start(ap, fmt);
        (void) vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t) n;
        return 0;
}

int dynbuf_take(DynBuf *b, char **ret, size_t *ret_len) {
        if (!b->data) {
                char *e = strdup("");
                if (!e)
                        return -ENOMEM;
                *ret = e;
        } else
                *ret = b->data;
        if (ret_len)
                *ret_len = b->len;
        *b = DYNBUF_INIT(b->max);
        return 0;
}
