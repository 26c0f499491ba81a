#!/usr/bin/env python3
"""Query JSON-lines (pullwatch --stdout, journalctl -o json) for the integration suite.

    jsonl.py count FILE [COND...]          number of matching objects
    jsonl.py get FILE FIELD [COND...]      FIELD of each matching object, one per line
    jsonl.py lines FILE [COND...]          the matching objects, one per line
    jsonl.py check FILE                    exit 1 naming the first line that is not a JSON object

FILE may be "-" for stdin; a missing FILE counts as empty.
FIELD and the left side of a COND are dotted paths (image.digest, IMAGE_DIGEST).
COND is one of
    path=value     equal (a missing or null field never equals)
    path!=value    not equal (a missing field is "not equal")
    path~=regex    re.search matches
    path?          present, not null, not empty
    !path?         missing, null or empty
Lines that are not JSON objects are ignored by count/get/lines (use check).
A journald field holding binary data (a list of bytes) is decoded as UTF-8.
"""
import json
import re
import sys


def load(path):
    try:
        f = sys.stdin if path == "-" else open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    out = []
    with f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            out.append((n, line, obj))
    return out


def lookup(obj, path):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    if isinstance(cur, list) and all(isinstance(b, int) for b in cur):
        cur = bytes(cur).decode("utf-8", "replace")
    return cur


def text(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def matches(obj, conds):
    for c in conds:
        if c.startswith("!") and c.endswith("?"):
            if text(lookup(obj, c[1:-1])) not in (None, ""):
                return False
        elif c.endswith("?"):
            if text(lookup(obj, c[:-1])) in (None, ""):
                return False
        elif "!=" in c:
            k, v = c.split("!=", 1)
            if text(lookup(obj, k)) == v:
                return False
        elif "~=" in c:
            k, v = c.split("~=", 1)
            t = text(lookup(obj, k))
            if t is None or not re.search(v, t):
                return False
        elif "=" in c:
            k, v = c.split("=", 1)
            if text(lookup(obj, k)) != v:
                return False
        else:
            sys.exit(f"jsonl.py: bad condition {c!r}")
    return True


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    mode, path = argv[1], argv[2]
    rows = load(path)
    if mode == "check":
        for n, line, obj in rows:
            if not isinstance(obj, dict):
                print(f"{path}:{n}: not a JSON object: {line[:200]}")
                return 1
        return 0
    if mode == "get":
        if len(argv) < 4:
            sys.exit(__doc__)
        field, conds = argv[3], argv[4:]
    else:
        field, conds = None, argv[3:]
    sel = [(line, obj) for _, line, obj in rows if isinstance(obj, dict) and matches(obj, conds)]
    if mode == "count":
        print(len(sel))
    elif mode == "get":
        for _, obj in sel:
            v = text(lookup(obj, field))
            print("" if v is None else v)
    elif mode == "lines":
        for line, _ in sel:
            print(line)
    else:
        sys.exit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
