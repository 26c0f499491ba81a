/* `pullwatch check`: judge image references offline against the policy and the pins, for
 * CI pipelines and manifest linting.
 *
 * References come from the command line, from stdin ("-") or from files (--file PATH),
 * one per line or, when the input holds YAML `image:` entries (a Kubernetes manifest),
 * the value of every such entry, with its line number. Results are written as text
 * (one line per reference or finding), JSON (one array of findings and errors) or SARIF
 * 2.1.0 (so code-scanning tools show a finding on the manifest line that caused it).
 *
 * The encoders and the manifest-line reader are pure (no I/O) and unit-tested;
 * check_main() is the command. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "pullwatch/finding.h"
#include "pullwatch/policy.h"

typedef enum CheckFormat {
        CHECK_FORMAT_TEXT,
        CHECK_FORMAT_JSON,
        CHECK_FORMAT_SARIF,
        _CHECK_FORMAT_MAX,
        _CHECK_FORMAT_INVALID = -EINVAL,
} CheckFormat;

#define CHECK_VALUE_MAX 4096             /* longest reference (or image: value) read from input */
#define CHECK_INPUT_MAX (16 * 1024 * 1024) /* largest file or stdin read */
#define CHECK_ERROR_MAX 256
#define CHECK_REFS_MAX 10000             /* references judged per run; more is an error, not memory */

/* The SARIF rule id (and JSON kind) of an input that is not a valid reference. */
#define CHECK_INVALID_REFERENCE "invalid_reference"

/* One reference looked at, and what came of it. */
typedef struct CheckItem {
        char *input;             /* owned: the reference as written (YAML quotes removed); may hold any byte */
        size_t input_len;
        const char *uri;         /* borrowed: the file it came from; "-" for stdin; NULL for an argument */
        size_t line;             /* 1-based line in uri; 0 for an argument */
        char error[CHECK_ERROR_MAX]; /* non-empty: the input is invalid, and why (never quotes the input) */
        Finding *findings;       /* owned (malloc) by check_main's items; n_findings of them */
        size_t n_findings;
} CheckItem;

CheckFormat check_format_from_string(const char *s);

/* Write s (len bytes, any byte) into buf as printable ASCII for quoting in a message:
 * '"' and '\\' are backslash-escaped, \t \n \r as such, every other byte below 0x20 or
 * above 0x7e as \xHH. Cut with "..." if it does not fit. Always NUL-terminated. */
void check_escape(const char *s, size_t len, char *buf, size_t size);

/* Read one manifest line (len bytes, no newline). If it is a YAML `image:` entry (any
 * indentation, optional "- " list markers, key image, optionally quoted, then ':' and a
 * blank or the end) with a scalar value, put the value (unquoted: plain, 'single' or
 * "double" with YAML escapes) in buf and its length in *ret_len, and return 1. Return 0
 * for any other line, and for an image: key with no scalar value (a nested mapping such
 * as Helm's image: {repository: …}). -EINVAL with err for a value that cannot be read
 * (unterminated quote, bad escape, text after the closing quote, block scalar, alias);
 * -ENAMETOOLONG if the value does not fit in size bytes. */
int check_manifest_image(const char *line, size_t len, char *buf, size_t size, size_t *ret_len, char *err,
                         size_t errlen);

/* The JSON format: one array with an object per finding (the finding JSON of the README
 * plus "reference", and "file"/"line" when known) and per invalid input ({"kind":
 * "invalid_reference", "severity": "error", "reference": escaped input, "message",
 * "error", "file", "line"}). *ret is a new reference. */
int check_to_json(const CheckItem *items, size_t n, json_t **ret);

/* The SARIF 2.1.0 log: one run, tool.driver.rules for every finding kind and
 * invalid_reference, a result per finding or invalid input with ruleId, ruleIndex,
 * level (critical/high: error, medium: warning, low/info: note; invalid input: error),
 * message and, when the reference came from a file, a location with the file's uri
 * (percent-encoded where needed) and startLine. *ret is a new reference. */
int check_to_sarif(const CheckItem *items, size_t n, json_t **ret);

/* The command: pullwatch check [--format text|json|sarif] [--file PATH]... [REF...|-].
 * Returns the exit status: 0 clean, 1 findings, 2 error (an invalid reference included). */
int check_main(int argc, char **argv);
