/* jscan: reading a few members out of a JSON document without building it.
 *
 * A fresh reconcile of 10,000 images reads two small documents per image (manifest,
 * config) for one or two strings each; jansson built every object, array and string of
 * them (hash tables, mallocs: 57,000 instructions a 340-byte blob, a third of the
 * agent's CPU). jscan checks the whole document once as jansson does (RFC 8259 grammar,
 * UTF-8, escapes, surrogate pairs, no \u0000, integers within int64, reals that do not
 * overflow, nesting up to JSCAN_DEPTH_MAX) and then walks the bytes for the members
 * asked for: nothing is allocated.
 *
 * One difference from jansson's JSON_REJECT_DUPLICATES, said where it lies: a key twice
 * in one object is refused only where jscan_member() looks it up (the members a reader
 * acts on: two "digest"s must not mean one thing here and another to containerd);
 * twins elsewhere in the document (an Env or a history entry) are not looked at.
 * Pure and reentrant (the resolve worker runs it). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define JSCAN_DEPTH_MAX 2048 /* as jansson's JSON_PARSER_MAX_DEPTH */

typedef enum JscanType {
        JSCAN_NONE, /* not there (jscan_member() found no such key), or not looked at */
        JSCAN_OBJECT,
        JSCAN_ARRAY,
        JSCAN_STRING,
        JSCAN_NUMBER,
        JSCAN_TRUE,
        JSCAN_FALSE,
        JSCAN_NULL,
} JscanType;

/* One value of a checked document: its bytes (borrowed from the document), from its
 * first byte ('{', '[', '"', ...) to its last. */
typedef struct JscanValue {
        JscanType type;
        const char *p;
        size_t len;
} JscanValue;

/* Checks json[0..len) whole; *ret (the top-level value) only if it is valid JSON.
 * -EBADMSG with a one-line reason in err (errlen may be 0) otherwise. */
int jscan_document(const char *json, size_t len, JscanValue *ret, char *err, size_t errlen);

/* The member key of obj (a value of a checked document): 1 and *ret, 0 and ret->type
 * JSCAN_NONE when obj has no such key or is not an object, -EBADMSG when the key is
 * there twice. Keys compare as decoded ("\u0064igest" is "digest"). */
int jscan_member(const JscanValue *obj, const char *key, JscanValue *ret);

/* Several members of obj in one walk: rets[i] for keys[i] (JSCAN_NONE when absent), as
 * jscan_member() each; how many were found, -EBADMSG (every rets[i] JSCAN_NONE) when one
 * of the keys is there twice, -EINVAL for more than JSCAN_MEMBERS_MAX keys. */
#define JSCAN_MEMBERS_MAX 8
int jscan_members(const JscanValue *obj, const char *const *keys, size_t n, JscanValue *rets);

/* The elements of arr (a value of a checked document), in order:
 *     JscanIter it; JscanValue v;
 *     for (jscan_iter_init(&arr, &it); jscan_iter_next(&it, &v);) ...
 * none when arr is not an array. The iterator borrows the document. */
typedef struct JscanIter {
        const char *p, *end;
} JscanIter;
void jscan_iter_init(const JscanValue *arr, JscanIter *it);
bool jscan_iter_next(JscanIter *it, JscanValue *ret);

/* The decoded UTF-8 of string v into buf (NUL-terminated; never has a NUL inside): 0;
 * -ENAMETOOLONG when it does not fit (buf ""), -EINVAL when v is not a string. */
int jscan_string(const JscanValue *v, char *buf, size_t size);
