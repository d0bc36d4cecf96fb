"""Fail if a hashed lock file (.txt) no longer satisfies the list it was
generated from (.in): a pin edited in the .in without regenerating the
lock would otherwise be ignored silently, since `make` installs the lock.

Usage: check_locks.py LIST.in [LIST.in ...]; each lock is the .in's name
with .txt. Lines of a .in that include another (-r) are followed; -c
lines constrain only and are skipped.
"""

import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def requirements(path):
    """The requirements a .in names, with those of the files it includes."""
    found = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-c"):
            continue
        if line.startswith("-r"):
            found += requirements(path.parent / line[2:].strip())
        else:
            found.append(Requirement(line))
    return found


def pins(path):
    """Distribution name to version, as the lock pins them."""
    found = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[canonicalize_name(match[1])] = match[2]
    return found


def problems(listing):
    lock = listing.with_suffix(".txt")
    if not lock.is_file():
        return [f"{listing}: its lock {lock} is missing"]
    pinned = pins(lock)
    found = []
    for requirement in requirements(listing):
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None:
            found.append(f"{lock} does not pin {requirement.name}, which {listing} lists")
        elif not requirement.specifier.contains(version, prereleases=True):
            found.append(f"{lock} pins {requirement.name}=={version}, but {listing} asks for "
                         f"{requirement.name}{requirement.specifier}")
    return found


def main(paths):
    found = [problem for path in paths for problem in problems(Path(path))]
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        print("Regenerate the locks: make locks (or the pip-compile command in a lock's header).", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
