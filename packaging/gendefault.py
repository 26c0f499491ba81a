#!/usr/bin/python3
"""Write /etc/default/pullwatch from `pullwatch --help`: every option as a commented
PULLWATCH_* (or CONTAINERD_ADDRESS, NODE_NAME) variable with its description and
default, so the file documents the installed binary and never drifts from it.

    gendefault.py PULLWATCH_BINARY OUTPUT

Fails (exit 1, one line) when --help lists no option in the expected two-line form
("  --flag   description" then "      TYPE, key "K", env VAR, default: D")."""
import os
import re
import subprocess
import sys

binary, out = sys.argv[1], sys.argv[2]
text = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout + \
    subprocess.run([binary, "--help"], capture_output=True, text=True).stderr
# list keys whose environment variable splits at newlines, not commas (agent/config.c
# CONFIG_F_ONE_PER_FLAG)
ONE_PER_LINE = {"allowed_tag_patterns"}
opt = re.compile(r"^  (--[a-z0-9-]+)\s+(.*)$")
meta = re.compile(r'^\s+(\S+), key "([^"]+)", env ([A-Z0-9_]+), default: (.*)$')
lines, desc = [], None
for line in text.splitlines():
    m = opt.match(line)
    if m:
        desc = (m.group(1), m.group(2).strip())
        continue
    m = meta.match(line)
    if m and desc:
        typ, key, env, default = m.groups()
        d = "" if default == "(none)" else default
        note = ""
        if key in ONE_PER_LINE:  # --help joins the default with commas, the variable splits at newlines
            note, d = " Regexes hold commas, so the variable takes one per line: set this key in the JSON file.", ""
        lines += ["", f"# {desc[1]} ({typ}; {desc[0]}, JSON key \"{key}\").{note}", f"#{env}={d}"]
        desc = None
if len(lines) < 3 * 10:
    sys.exit(f"gendefault: found {len(lines) // 3} options in `{binary} --help`, expected every key")
head = """# /etc/default/pullwatch: the environment of pullwatch.service (EnvironmentFile=).
# Every line below is a setting at its default, commented out; uncomment and change
# what you need, then `systemctl restart pullwatch`. Precedence: command-line flags,
# then the JSON file named by PULLWATCH_CONFIG, then these variables, then defaults.
# Lists are comma-separated. Generated from `pullwatch --help` of this build."""
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out + ".tmp", "w") as f:
    f.write(head + "\n" + "\n".join(lines) + "\n")
os.replace(out + ".tmp", out)
