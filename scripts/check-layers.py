#!/usr/bin/env python3
"""Checks that a crate's top-level modules form layers: no import cycle between them.

Usage: scripts/check-layers.py <crate>/src [<crate>/src ...]

A top-level module is a file `src/<name>.rs` or a folder `src/<name>/`. Module A depends on
module B when any file of A names `crate::B` (in a `use` or inline path) or, in a top-level file,
`super::B`. Comments are ignored; test modules count (a test that reaches up a layer is a cycle
too). The script prints each module with what it imports, lowest layer first, and exits 1 with
the cycle when there is one.
"""

import re
import sys
from pathlib import Path

CRATE_PATH = re.compile(r"\bcrate::(\w+)")
# `use crate::{a, b::c}`: the names directly inside the braces.
CRATE_GROUP = re.compile(r"\bcrate::\{([^}]*)\}", re.S)
SUPER_PATH = re.compile(r"\bsuper::(\w+)")


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def top_level_modules(src: Path) -> dict[str, list[Path]]:
    modules: dict[str, list[Path]] = {}
    for entry in sorted(src.iterdir()):
        if entry.is_file() and entry.suffix == ".rs" and entry.stem not in ("lib", "main"):
            modules.setdefault(entry.stem, []).append(entry)
        elif entry.is_dir():
            modules.setdefault(entry.name, []).extend(sorted(entry.rglob("*.rs")))
    return modules


def dependencies(src: Path, modules: dict[str, list[Path]]) -> dict[str, set[str]]:
    deps: dict[str, set[str]] = {name: set() for name in modules}
    for name, files in modules.items():
        for file in files:
            text = strip_comments(file.read_text())
            used = set(CRATE_PATH.findall(text))
            for group in CRATE_GROUP.findall(text):
                used.update(re.findall(r"(?:^|,)\s*(\w+)", group))
            if file.parent == src:  # in `src/x.rs`, `super::` is the crate root
                used.update(SUPER_PATH.findall(text))
            deps[name].update(u for u in used if u in modules and u != name)
    return deps


def find_cycle(deps: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(deps[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(deps):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layers(deps: dict[str, set[str]]) -> list[list[str]]:
    level: dict[str, int] = {}

    def depth(node: str) -> int:
        if node not in level:
            level[node] = 1 + max((depth(d) for d in deps[node]), default=-1)
        return level[node]

    for node in deps:
        depth(node)
    out: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for node, lvl in level.items():
        out[lvl].append(node)
    return [sorted(layer) for layer in out]


def check(src: Path) -> bool:
    modules = top_level_modules(src)
    deps = dependencies(src, modules)
    cycle = find_cycle(deps)
    print(f"{src}:")
    if cycle:
        print("  import cycle between top-level modules: " + " -> ".join(cycle))
        for a, b in zip(cycle, cycle[1:]):
            files = [str(f.relative_to(src)) for f in modules[a]
                     if re.search(rf"\bcrate::{b}\b|\bcrate::\{{[^}}]*\b{b}\b", strip_comments(f.read_text()))]
            print(f"    {a} -> {b}: {', '.join(files) or '(super:: path)'}")
        return False
    for i, layer in enumerate(layers(deps)):
        for name in layer:
            below = ", ".join(sorted(deps[name])) or "-"
            print(f"  layer {i}: {name:<12} imports {below}")
    return True


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    ok = all([check(Path(arg)) for arg in sys.argv[1:]])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
