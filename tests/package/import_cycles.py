"""Print the import cycles of a package (module-level and function-level imports alike).

A copy of the code-structure review's checker (shared/reviews/import_cycles.py), kept
beside the test so that it runs from any clone.

    python import_cycles.py minildr
"""
import ast
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "minildr")
mods = {".".join(p.with_suffix("").parts).removesuffix(".__init__"): p for p in root.rglob("*.py")}
edges = {m: set() for m in mods}
for m, p in mods.items():
    pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
    for node in ast.walk(ast.parse(p.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
            for c in subs or ([target] if target in mods else []):
                if c != m:
                    edges[m].add(c)
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]


def visit(v):
    index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))


sys.setrecursionlimit(10000)
for v in mods:
    if v not in index:
        visit(v)
for comp in sccs:
    print("cycle:", ", ".join(comp))
    for a in comp:
        for b in sorted(edges[a] & set(comp)):
            print(f"    {a} -> {b}")
print(f"{len(sccs)} cycle(s) among {len(mods)} modules")
