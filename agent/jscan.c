/* See include/pullwatch/jscan.h. Two halves: the check (every byte, once, recursive
 * descent bounded by JSCAN_DEPTH_MAX) and the walks over a checked document (skipping
 * values by their brackets and quotes alone, which the check made safe). */
#include "pullwatch/jscan.h"
#include "pullwatch/utf8.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the check */

typedef struct Scan {
        const char *p, *end, *start;
        const char *why; /* the first failure */
} Scan;

static bool scan_fail(Scan *s, const char *why) {
        if (!s->why)
                s->why = why;
        return false;
}

static bool is_ws(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_ws(Scan *s) {
        while (s->p < s->end && is_ws(*s->p))
                s->p++;
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

static int hex_value(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The four hex digits at p (the caller made sure they are there), or -1. */
static int hex4(const char *p) {
        int v = 0;
        for (int i = 0; i < 4; i++) {
                int h = hex_value(p[i]);
                if (h < 0)
                        return -1;
                v = v << 4 | h;
        }
        return v;
}

/* One UTF-8 sequence starting at s->p with a lead byte >= 0x80: as utf8_valid_n() and
 * jansson (no overlong forms, no surrogates, nothing past U+10FFFF). */
static bool check_utf8(Scan *s) {
        size_t n = utf8_sequence_len(s->p, (size_t) (s->end - s->p));
        if (n == 0)
                return scan_fail(s, "invalid UTF-8 in a string");
        s->p += n;
        return true;
}

/* The bytes of a string that need a look: the quote, the backslash, control characters
 * and the lead bytes of UTF-8; the rest (most of a digest or a label) is skipped in a
 * tight loop. */
static const uint8_t string_special[256] = {
        [0x00 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, [0x80 ... 0xff] = 1,
};

#define SWAR_ONES 0x0101010101010101ULL
#define SWAR_HIGH 0x8080808080808080ULL

/* Has any of the eight bytes at p (unaligned) the value c? (exact for "any": a borrow
 * only runs past a byte that is zero) */
static inline uint64_t swar_has(uint64_t x, uint8_t c) {
        uint64_t v = x ^ (SWAR_ONES * c);
        return (v - SWAR_ONES) & ~v & SWAR_HIGH;
}

static inline uint64_t swar_load(const char *p) {
        uint64_t x;
        memcpy(&x, p, sizeof x);
        return x;
}

/* Is any of the eight bytes at p string_special[]? A quote, a backslash, a byte below
 * 0x20 or one of 0x80 and above; eight at a time through a digest or a label's run of
 * plain ASCII (check_string() was 5 % of a scan's instructions byte by byte). */
static inline bool swar_special8(const char *p) {
        uint64_t x = swar_load(p);
        /* below 0x20: x - 0x20 borrows in that byte (high bytes are caught by x & HIGH) */
        uint64_t below = (x - SWAR_ONES * 0x20) & ~x & SWAR_HIGH;
        return (below | (x & SWAR_HIGH) | swar_has(x, '"') | swar_has(x, '\\')) != 0;
}

static bool check_string(Scan *s) {
        s->p++; /* the opening quote */
        for (;;) {
                while (s->end - s->p >= 8 && !swar_special8(s->p))
                        s->p += 8;
                while (s->p < s->end && !string_special[(uint8_t) *s->p])
                        s->p++;
                if (s->p >= s->end)
                        return scan_fail(s, "unterminated string");
                unsigned char c = (unsigned char) *s->p;
                if (c == '"') {
                        s->p++;
                        return true;
                }
                if (c < 0x20)
                        return scan_fail(s, "control character in a string");
                if (c >= 0x80) {
                        if (!check_utf8(s))
                                return false;
                        continue;
                }
                if (c != '\\') {
                        s->p++;
                        continue;
                }
                if (s->end - s->p < 2)
                        return scan_fail(s, "unterminated string");
                switch (s->p[1]) {
                case '"':
                case '\\':
                case '/':
                case 'b':
                case 'f':
                case 'n':
                case 'r':
                case 't':
                        s->p += 2;
                        continue;
                case 'u':
                        break;
                default:
                        return scan_fail(s, "invalid escape in a string");
                }
                int u = s->end - s->p >= 6 ? hex4(s->p + 2) : -1;
                if (u < 0)
                        return scan_fail(s, "invalid \\u escape in a string");
                s->p += 6;
                if (u == 0)
                        return scan_fail(s, "\\u0000 in a string");
                if (u >= 0xdc00 && u <= 0xdfff)
                        return scan_fail(s, "lone low surrogate in a string");
                if (u >= 0xd800 && u <= 0xdbff) {
                        int lo = s->end - s->p >= 6 && s->p[0] == '\\' && s->p[1] == 'u' ? hex4(s->p + 2) : -1;
                        if (lo < 0xdc00 || lo > 0xdfff)
                                return scan_fail(s, "lone high surrogate in a string");
                        s->p += 6;
                }
        }
}

/* As jansson: an integer (no fraction, no exponent) must fit int64_t; a real must not
 * overflow a double (underflow is fine). */
static bool number_in_range(Scan *s, const char *b, size_t len, bool real) {
        if (!real) {
                size_t digits = len - (*b == '-');
                if (digits < 19)
                        return true;
                if (digits > 19)
                        return scan_fail(s, "integer out of range");
                const char *max = *b == '-' ? "9223372036854775808" : "9223372036854775807";
                return memcmp(b + (*b == '-'), max, 19) <= 0 || scan_fail(s, "integer out of range");
        }
        char small[64];
        char *buf = len < sizeof small ? small : malloc(len + 1);
        if (!buf)
                return scan_fail(s, "out of memory");
        memcpy(buf, b, len);
        buf[len] = 0;
        errno = 0;
        double v = strtod(buf, NULL);
        bool overflow = errno == ERANGE && (v > 1.0 || v < -1.0);
        if (buf != small)
                free(buf);
        return !overflow || scan_fail(s, "real number out of range");
}

static bool check_number(Scan *s) {
        const char *b = s->p;
        bool real = false;
        if (*s->p == '-')
                s->p++;
        if (s->p >= s->end || !is_digit(*s->p))
                return scan_fail(s, "invalid number");
        if (*s->p == '0')
                s->p++;
        else
                while (s->p < s->end && is_digit(*s->p))
                        s->p++;
        if (s->p < s->end && *s->p == '.') {
                real = true;
                s->p++;
                if (s->p >= s->end || !is_digit(*s->p))
                        return scan_fail(s, "invalid number");
                while (s->p < s->end && is_digit(*s->p))
                        s->p++;
        }
        if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
                real = true;
                s->p++;
                if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
                        s->p++;
                if (s->p >= s->end || !is_digit(*s->p))
                        return scan_fail(s, "invalid number");
                while (s->p < s->end && is_digit(*s->p))
                        s->p++;
        }
        return number_in_range(s, b, (size_t) (s->p - b), real);
}

static bool check_literal(Scan *s, const char *lit, size_t n) {
        if ((size_t) (s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
                return scan_fail(s, "invalid literal");
        s->p += n;
        return true;
}

static bool check_value(Scan *s, unsigned depth);

/* An object or an array, s->p at its opening bracket. */
static bool check_container(Scan *s, unsigned depth) {
        bool object = *s->p == '{';
        char close = object ? '}' : ']';
        if (depth >= JSCAN_DEPTH_MAX)
                return scan_fail(s, "nested too deep");
        s->p++;
        skip_ws(s);
        if (s->p < s->end && *s->p == close) {
                s->p++;
                return true;
        }
        for (;;) {
                if (object) {
                        if (s->p >= s->end || *s->p != '"')
                                return scan_fail(s, "expected a string key");
                        if (!check_string(s))
                                return false;
                        skip_ws(s);
                        if (s->p >= s->end || *s->p != ':')
                                return scan_fail(s, "expected ':' after a key");
                        s->p++;
                        skip_ws(s);
                }
                if (!check_value(s, depth + 1))
                        return false;
                skip_ws(s);
                if (s->p < s->end && *s->p == ',') {
                        s->p++;
                        skip_ws(s);
                        continue;
                }
                if (s->p < s->end && *s->p == close) {
                        s->p++;
                        return true;
                }
                return scan_fail(s, object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
}

static bool check_value(Scan *s, unsigned depth) {
        if (s->p >= s->end)
                return scan_fail(s, "unexpected end");
        switch (*s->p) {
        case '{':
        case '[':
                return check_container(s, depth);
        case '"':
                return check_string(s);
        case 't':
                return check_literal(s, "true", 4);
        case 'f':
                return check_literal(s, "false", 5);
        case 'n':
                return check_literal(s, "null", 4);
        case '-':
        case '0' ... '9':
                return check_number(s);
        default:
                return scan_fail(s, "unexpected character");
        }
}

static JscanType type_at(const char *p) {
        switch (*p) {
        case '{':
                return JSCAN_OBJECT;
        case '[':
                return JSCAN_ARRAY;
        case '"':
                return JSCAN_STRING;
        case 't':
                return JSCAN_TRUE;
        case 'f':
                return JSCAN_FALSE;
        case 'n':
                return JSCAN_NULL;
        default:
                return JSCAN_NUMBER;
        }
}

int jscan_document(const char *json, size_t len, JscanValue *ret, char *err, size_t errlen) {
        Scan s = {.p = json, .end = json + len, .start = json};
        if (!json)
                s.p = s.end = s.start = "";
        skip_ws(&s);
        const char *b = s.p;
        if (check_value(&s, 0)) {
                const char *e = s.p;
                skip_ws(&s);
                if (s.p == s.end) {
                        *ret = (JscanValue){type_at(b), b, (size_t) (e - b)};
                        return 0;
                }
                scan_fail(&s, "garbage after the document");
        }
        if (errlen > 0)
                snprintf(err, errlen, "%s at byte %zu", s.why, (size_t) (s.p - s.start));
        return -EBADMSG;
}

/* ---------------------------------------------------------------- walks over a checked document */

/* Past the string whose opening quote is at p (its closing quote is before end): the
 * next quote not escaped, that is not after an odd run of backslashes. */
static const char *skip_string(const char *p, const char *end) {
        for (p++;;) {
                const char *q = memchr(p, '"', (size_t) (end - p));
                size_t bs = 0;
                while (q - bs > p && q[-1 - (ptrdiff_t) bs] == '\\')
                        bs++;
                if (bs % 2 == 0)
                        return q + 1;
                p = q + 1;
        }
}

/* The bytes a walk over a container stops at; everything else is skipped in a tight loop
 * (skipping was a third of the walks' instructions when every byte went through a switch). */
static const uint8_t structural[256] = {['"'] = 1, ['{'] = 2, ['['] = 2, ['}'] = 3, [']'] = 3};

/* Past the value at p, which ends at or before end. */
static const char *skip_value(const char *p, const char *end) {
        if (*p == '"')
                return skip_string(p, end);
        if (*p != '{' && *p != '[') {
                while (p < end && *p != ',' && *p != '}' && *p != ']' && !is_ws(*p))
                        p++;
                return p;
        }
        size_t depth = 0;
        do {
                while (!structural[(uint8_t) *p])
                        p++; /* a checked container ends before end with its bracket */
                switch (structural[(uint8_t) *p]) {
                case 1:
                        p = skip_string(p, end);
                        continue;
                case 2:
                        depth++;
                        break;
                default:
                        depth--;
                        break;
                }
                p++;
        } while (depth > 0);
        return p;
}

static const char *skip_ws_to(const char *p, const char *end) {
        while (p < end && is_ws(*p))
                p++;
        return p;
}

static size_t put_utf8(char *o, uint32_t c) {
        if (c < 0x80) {
                o[0] = (char) c;
                return 1;
        }
        if (c < 0x800) {
                o[0] = (char) (0xc0 | c >> 6);
                o[1] = (char) (0x80 | (c & 0x3f));
                return 2;
        }
        if (c < 0x10000) {
                o[0] = (char) (0xe0 | c >> 12);
                o[1] = (char) (0x80 | (c >> 6 & 0x3f));
                o[2] = (char) (0x80 | (c & 0x3f));
                return 3;
        }
        o[0] = (char) (0xf0 | c >> 18);
        o[1] = (char) (0x80 | (c >> 12 & 0x3f));
        o[2] = (char) (0x80 | (c >> 6 & 0x3f));
        o[3] = (char) (0x80 | (c & 0x3f));
        return 4;
}

/* The checked string at p decoded into buf (size > 0), NUL-terminated: its length, or
 * -ENAMETOOLONG (buf ""). */
static int decode_string(const char *p, char *buf, size_t size) {
        size_t o = 0;
        for (p++; *p != '"';) {
                char tmp[4];
                size_t n;
                if (*p != '\\') {
                        /* a run of plain bytes at once, up to the next quote or backslash (the
                         * string is checked: both come before its end) */
                        const char *q = p + 1;
                        while (*q != '"' && *q != '\\')
                                q++;
                        n = (size_t) (q - p);
                        if (n >= size - o) {
                                buf[0] = 0;
                                return -ENAMETOOLONG;
                        }
                        memcpy(buf + o, p, n);
                        o += n;
                        p = q;
                        continue;
                }
                char e = p[1];
                p += 2;
                switch (e) {
                case 'b':
                        tmp[0] = '\b', n = 1;
                        break;
                case 'f':
                        tmp[0] = '\f', n = 1;
                        break;
                case 'n':
                        tmp[0] = '\n', n = 1;
                        break;
                case 'r':
                        tmp[0] = '\r', n = 1;
                        break;
                case 't':
                        tmp[0] = '\t', n = 1;
                        break;
                case 'u': {
                        uint32_t c = (uint32_t) hex4(p);
                        p += 4;
                        if (c >= 0xd800 && c <= 0xdbff) {
                                c = 0x10000 + ((c - 0xd800) << 10) + ((uint32_t) hex4(p + 2) - 0xdc00);
                                p += 6;
                        }
                        n = put_utf8(tmp, c);
                        break;
                }
                default: /* " \ / */
                        tmp[0] = e, n = 1;
                        break;
                }
                if (n >= size - o) {
                        buf[0] = 0;
                        return -ENAMETOOLONG;
                }
                memcpy(buf + o, tmp, n);
                o += n;
        }
        buf[o] = 0;
        return (int) o;
}

/* Is the key whose opening quote is at p (ending before kend) key? */
static bool key_equal(const char *p, const char *kend, const char *key, size_t klen) {
        const char *raw = p + 1;
        size_t rlen = (size_t) (kend - 1 - raw);
        if (!memchr(raw, '\\', rlen))
                return rlen == klen && memcmp(raw, key, klen) == 0;
        /* escaped: decoded, it is never longer than its raw bytes */
        if (klen > rlen)
                return false;
        char small[256];
        char *buf = rlen < sizeof small ? small : malloc(rlen + 1);
        if (!buf)
                return false;
        int n = decode_string(p, buf, rlen + 1);
        bool eq = n >= 0 && (size_t) n == klen && memcmp(buf, key, klen) == 0;
        if (buf != small)
                free(buf);
        return eq;
}

int jscan_members(const JscanValue *obj, const char *const *keys, size_t n, JscanValue *rets) {
        size_t klen[JSCAN_MEMBERS_MAX];
        int found = 0;
        if (n > JSCAN_MEMBERS_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                rets[i] = (JscanValue){JSCAN_NONE, NULL, 0};
                klen[i] = strlen(keys[i]);
        }
        if (!obj || obj->type != JSCAN_OBJECT)
                return 0;
        const char *end = obj->p + obj->len - 1; /* its '}' */
        const char *p = skip_ws_to(obj->p + 1, end);
        while (p < end) {
                const char *kend = skip_string(p, end);
                size_t match = n;
                for (size_t i = 0; i < n && match == n; i++)
                        if (key_equal(p, kend, keys[i], klen[i]))
                                match = i;
                p = skip_ws_to(kend, end) + 1; /* the ':' */
                p = skip_ws_to(p, end);
                const char *vend = skip_value(p, end);
                if (match < n) {
                        if (rets[match].type != JSCAN_NONE) {
                                for (size_t i = 0; i < n; i++)
                                        rets[i] = (JscanValue){JSCAN_NONE, NULL, 0};
                                return -EBADMSG;
                        }
                        found++;
                        rets[match] = (JscanValue){type_at(p), p, (size_t) (vend - p)};
                }
                p = skip_ws_to(vend, end);
                if (p < end) /* the ',' */
                        p = skip_ws_to(p + 1, end);
        }
        return found;
}

int jscan_member(const JscanValue *obj, const char *key, JscanValue *ret) {
        int r = jscan_members(obj, &key, 1, ret);
        return r < 0 ? r : r > 0;
}

void jscan_iter_init(const JscanValue *arr, JscanIter *it) {
        if (!arr || arr->type != JSCAN_ARRAY) {
                *it = (JscanIter){NULL, NULL};
                return;
        }
        it->end = arr->p + arr->len - 1; /* its ']' */
        it->p = skip_ws_to(arr->p + 1, it->end);
}

bool jscan_iter_next(JscanIter *it, JscanValue *ret) {
        if (!it->p || it->p >= it->end)
                return false;
        const char *vend = skip_value(it->p, it->end);
        *ret = (JscanValue){type_at(it->p), it->p, (size_t) (vend - it->p)};
        it->p = skip_ws_to(vend, it->end);
        if (it->p < it->end) /* the ',' */
                it->p = skip_ws_to(it->p + 1, it->end);
        return true;
}

int jscan_string(const JscanValue *v, char *buf, size_t size) {
        if (!v || v->type != JSCAN_STRING) {
                if (size > 0)
                        buf[0] = 0;
                return -EINVAL;
        }
        if (size == 0)
                return -ENAMETOOLONG;
        int r = decode_string(v->p, buf, size);
        return r < 0 ? r : 0;
}
