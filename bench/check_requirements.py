"""Fail if bench/run.py, or a module of this project it imports, imports a
package that bench/requirements.in does not list.

`make bench` runs in its own virtualenv, and nothing in `make test` runs the
bench itself (it takes minutes and rebuilds the demo host). When the tests'
shared module (molecule/_shared/testlib.py) began to import yaml, `make bench`
broke at its first line and no test noticed; `make lint` runs this instead.
"""

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# Where bench/run.py finds the project's own modules (its sys.path entries).
LOCAL_DIRS = [BENCH, BENCH.parent / "molecule" / "_shared"]


def normalized(name):
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def required():
    names = set()
    for line in (BENCH / "requirements.in").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(normalized(re.split(r"[\s\[<>=!~;]", line, 1)[0]))
    return names


def local_module(name):
    for directory in LOCAL_DIRS:
        if (directory / f"{name}.py").is_file():
            return directory / f"{name}.py"
    return None


def third_party_imports(entry):
    """Top-level names of the packages `entry` and the local modules it
    imports (at any depth, also inside functions) import."""
    found, seen, todo = {}, set(), [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".", 1)[0]
                if top in sys.stdlib_module_names:
                    continue
                module = local_module(top)
                if module:
                    todo.append(module)
                else:
                    found.setdefault(top, path.relative_to(BENCH.parent))
    return found


def main():
    have = required()
    # Import name to distribution name (yaml is PyYAML's), as far as this
    # interpreter knows them; otherwise the two are taken to be the same.
    distributions = importlib.metadata.packages_distributions()
    missing = [
        f"{path} imports {module}, which bench/requirements.in does not list"
        for module, path in sorted(third_party_imports(BENCH / "run.py").items())
        if not {normalized(d) for d in distributions.get(module, [module])} & have
    ]
    for line in missing:
        print(line, file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
