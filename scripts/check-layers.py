#!/usr/bin/env python3
"""Fails when a module of the dirsync crate imports one above it in the layer order.

The order is the one docs/architecture.md documents; keep the two the same. Each top-level
module of `src/` has a rank; a file may name `crate::X` only for an X of lower rank. Leaf
modules (rank 0) may be used by anyone and import nothing of dirsync. Modules in the same
layer are ordered too, so that no two can import each other.

Usage: scripts/check-layers.py [SRC_DIR]   (default: src)
"""

import pathlib
import re
import sys

# Highest first. One line per layer; modules on a line are ordered left (higher) to right.
LAYERS = [
    ["main", "lib", "commands", "cli"],
    ["console"],
    ["setup"],
    ["push"],
    ["daemon"],
    ["sync"],
    ["triage"],
    ["policy", "source", "sink"],
    ["store"],
    ["diff"],
    ["config"],
    ["event"],
    ["model"],
]
# Shared by several layers; import nothing of dirsync.
LEAVES = [
    "attribute_path", "glob", "signing", "run", "process_stats", "telemetry", "feed", "mutex",
    "scim_protocol",
]
# Below the leaves: any module, leaves included, may use these; they import nothing of dirsync.
BOTTOM = ["terminal"]

CRATE_PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
# `use crate::{a, b::c}` names several modules at once.
CRATE_GROUP = re.compile(r"\bcrate::\{([^}]*)\}", re.S)


def ranks():
    rank = {}
    next_rank = 1000
    for layer in LAYERS:
        for module in layer:
            rank[module] = next_rank
            next_rank -= 10
    for leaf in LEAVES:
        rank[leaf] = 0
    for bottom in BOTTOM:
        rank[bottom] = -10
    return rank


def referenced_modules(text):
    # Comments may mention modules freely.
    code = "\n".join(line.split("//", 1)[0] for line in text.splitlines())
    found = set(CRATE_PATH.findall(code))
    for group in CRATE_GROUP.findall(code):
        for item in group.split(","):
            name = item.strip().split("::", 1)[0].split(" ", 1)[0]
            if name:
                found.add(name)
    return found


def module_of(path, src):
    relative = path.relative_to(src)
    return relative.parts[0].removesuffix(".rs")


def main():
    src = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    rank = ranks()
    problems = []
    for path in sorted(src.rglob("*.rs")):
        module = module_of(path, src)
        if module not in rank:
            problems.append(
                f"{path}: module `{module}` has no place in the layer order: "
                "add it to scripts/check-layers.py and docs/architecture.md"
            )
            continue
        for used in sorted(referenced_modules(path.read_text())):
            if used == module or used not in rank or rank[used] < min(rank[module], 0):
                continue
            if rank[module] <= 0:
                problems.append(
                    f"{path}: leaf module `{module}` imports `crate::{used}`; leaves import nothing of dirsync"
                )
            elif rank[used] >= rank[module]:
                problems.append(
                    f"{path}: `{module}` imports `crate::{used}`, which is not below it in the layer order"
                )
    if problems:
        print("layer check failed (docs/architecture.md has the order):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"layer check: {sum(1 for _ in src.rglob('*.rs'))} files import downward only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
