#!/usr/bin/python3
"""Run a command under the seccomp filter a systemd unit file asks for, without systemd.

    seccomp_run.py UNIT -- CMD [ARG...]

Reads the unit's SystemCallFilter= lines (an allow list, then ~deny lists, as systemd
applies them in order), SystemCallErrorNumber= and RestrictAddressFamilies=; expands
every @group with `systemd-analyze syscall-filter` (nested groups too); loads the
resulting filter with libseccomp (Debian's python3-seccomp): a call outside the set
fails with the unit's errno, and so does a socket() of a family outside the list
(systemd answers EAFNOSUPPORT there; libseccomp cannot range-compare one argument
twice in a rule, and the difference does not matter to what is proven). Then execs CMD. Prints to stderr one line with the
number of system calls allowed. Run it under `setpriv --no-new-privs` (a filter needs
no_new_privs or CAP_SYS_ADMIN) with the unit's capability set.
"""
import errno
import os
import socket
import subprocess
import sys

import seccomp


def unit_values(path, key):
    vals = []
    for line in open(path):
        line = line.strip()
        if line.startswith(key + "="):
            v = line[len(key) + 1:].strip()
            if v == "":
                vals = []  # an empty assignment resets the list
            else:
                vals.append(v)
    return vals


_groups = {}


def expand(name):
    """The system calls a name stands for (a @group recursively, or itself)."""
    if not name.startswith("@"):
        return {name}
    if name not in _groups:
        out = subprocess.run(["systemd-analyze", "syscall-filter", name], check=True,
                             capture_output=True, text=True).stdout
        members = set()
        for line in out.splitlines()[1:]:
            s = line.strip()
            if s and not s.startswith("#"):
                members |= expand(s)
        _groups[name] = members
    return _groups[name]


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit(__doc__)
    unit, cmd = sys.argv[1], sys.argv[3:]
    allowed, first = set(), True
    for value in unit_values(unit, "SystemCallFilter"):
        deny = value.startswith("~")
        names = set()
        for n in value.lstrip("~").split():
            names |= expand(n)
        if deny:
            allowed -= names
        elif first:
            allowed = names
        else:
            allowed |= names
        first = False
    if not allowed:
        sys.exit(f"seccomp_run: {unit} has no SystemCallFilter allow list")
    # systemd always allows these (seccomp-util.c, the @default group, and execve for the exec)
    allowed |= expand("@default") | {"execve"}
    err = unit_values(unit, "SystemCallErrorNumber")
    action = seccomp.ERRNO(getattr(errno, err[-1])) if err else seccomp.KILL_PROCESS
    f = seccomp.SyscallFilter(action)
    n = 0
    families = []
    for fam in " ".join(unit_values(unit, "RestrictAddressFamilies")).split():
        families.append(getattr(socket, fam))
    for name in sorted(allowed):
        try:
            if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) < 0:
                continue  # a pseudo number: not a call of this architecture
        except (ValueError, RuntimeError):
            continue
        if name == "socket" and families:
            for fam in families:
                f.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, fam))
        else:
            f.add_rule(seccomp.ALLOW, name)
        n += 1
    print(f"seccomp_run: {n} system calls allowed by {os.path.basename(unit)}, "
          f"socket families {[int(x) for x in sorted(families)] or 'any'}", file=sys.stderr)
    f.load()
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
