#!/usr/bin/env python3
"""A short summary of cis490's own import graph, and a check of its rules.

Every ``import`` of a ``cis490`` module is counted, at module level and
inside functions alike (a deferred import is still a dependency). Modules are
grouped into *layers* — the first component under ``cis490`` (``fleet``,
``data``, ``models``, ``train``, ``evaluate``, ...); top-level modules
(``cis490/demo.py``, ``cis490/cli.py``) are layers of their own.

Printed: the layer-to-layer edges with how many imports make each, the
import cycles between modules and between layers, and every import that
breaks the rules (``RULES`` below; docs/ARCHITECTURE.md explains them).

    python scripts/import_graph.py            # summary; exit 1 if a rule is broken
    python scripts/import_graph.py --json     # the same as JSON

Only the standard library: it reads the sources (``ast``), it imports nothing.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cis490"

# layer -> the cis490 layers it may import (itself always allowed). ``common`` is the
# neutral helpers module; the CLIs and the demo sit on top of everything.
# ``common``, ``progress`` (progress lines) and ``heap`` (returning freed memory to the OS)
# import nothing of cis490, and anything may import them.
NEUTRAL = {"common", "progress", "heap"}
RULES: dict[str, set[str]] = {
    "common": set(),
    "progress": set(),
    "heap": set(),
    "fleet": NEUTRAL,
    "data": NEUTRAL,
    "models": NEUTRAL,
    "train": NEUTRAL | {"models", "data"},
    "evaluate": NEUTRAL | {"models", "data", "train"},
}
TOP = {"demo", "replay", "cli", "spool_cli", "__main__", "kinds", "__init__"}  # may import any layer


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def resolve(importer: str, is_pkg: bool, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        return node.module
    base = importer.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def collect(modules: set[str]) -> dict[str, set[str]]:
    """module -> the cis490 modules it imports (the most specific known module)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = resolve(importer, path.name == "__init__.py", node)
                if base is None:
                    continue
                # `from cis490.fleet import atomic` names a module; `from x import f` a symbol
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            for t in targets:
                if not (t == "cis490" or t.startswith("cis490.")):
                    continue
                while t not in modules and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t != importer and t in modules:
                    edges[importer].add(t)
                    # importing a submodule runs its package's __init__ too
                    parent = t.rsplit(".", 1)[0]
                    while parent != "cis490" and parent in modules and not importer.startswith(parent + "."):
                        edges[importer].add(parent)
                        parent = parent.rsplit(".", 1)[0]
        edges.setdefault(importer, set())
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def analyse() -> dict:
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    edges = collect(modules)
    layer_edges: dict[tuple[str, str], int] = defaultdict(int)
    violations = []
    for a, targets in sorted(edges.items()):
        la = layer_of(a)
        for b in sorted(targets):
            lb = layer_of(b)
            if la == lb or lb == "__init__":
                continue
            layer_edges[(la, lb)] += 1
            if la in TOP:
                continue
            if lb not in RULES.get(la, set()):
                violations.append(f"{a} imports {b} ({la} -> {lb} is not allowed)")
    layer_graph: dict[str, set[str]] = defaultdict(set)
    for (la, lb) in layer_edges:
        layer_graph[la].add(lb)
    return {
        "modules": len(modules),
        "imports": sum(len(t) for t in edges.values()),
        "layer_edges": {f"{a} -> {b}": n for (a, b), n in sorted(layer_edges.items())},
        "module_cycles": cycles(edges),
        "layer_cycles": cycles(layer_graph),
        "violations": violations,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    res = analyse()
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"{res['modules']} modules, {res['imports']} imports of cis490 modules")
        print("layer edges (imports):")
        for edge, n in res["layer_edges"].items():
            print(f"  {edge}: {n}")
        print(f"module cycles: {len(res['module_cycles'])}")
        for c in res["module_cycles"]:
            print("  " + " <-> ".join(c))
        print(f"layer cycles: {len(res['layer_cycles'])}")
        for c in res["layer_cycles"]:
            print("  " + " <-> ".join(c))
        print(f"rule violations: {len(res['violations'])}")
        for v in res["violations"]:
            print("  " + v)
    return 1 if res["violations"] or res["module_cycles"] or res["layer_cycles"] else 0


if __name__ == "__main__":
    sys.exit(main())
