"""The package's arrows: cli -> witnp -> kernels, and no import circle between modules.

Reads every module's imports (module level and inside functions) with `ast`, resolving relative imports; an
edge from a package's `__init__` to a module inside that package (a re-export) is not a dependency.
Run it alone to print the graph's cycles: `python -m pytest tests/test_layout.py -q`.
"""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = {"witnp": "witnp", "kernels": "witnp.kernels", "cli": "witnp.cli"}


def _modules():
    mods = {}
    for folder, pkg in FOLDERS.items():
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, f), os.path.join(ROOT, folder))[:-3].split(os.sep)
                    init = rel[-1] == "__init__"
                    name = ".".join([pkg] + (rel[:-1] if init else rel))
                    mods[name] = (os.path.join(dirpath, f), init)
    return mods


def _edges(mods):
    edges = {m: set() for m in mods}
    for mod, (path, init) in mods.items():
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod if init else mod.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    base = base + ("." + node.module if node.module else "")
                else:
                    base = node.module or ""
                targets = [base + "." + a.name if base + "." + a.name in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if not t or t == mod or (init and t.startswith(mod + ".")):
                    continue
                edges[mod].add(t)
    return edges


def _cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    assert _cycles(_edges(_modules())) == []


def test_arrows_point_down():
    edges = _edges(_modules())
    up = [(a, b) for a, bs in edges.items() for b in bs
          if (a.startswith("witnp.kernels") and not b.startswith("witnp.kernels"))
          or (not a.startswith("witnp.cli") and b.startswith("witnp.cli"))]
    assert up == []


def test_the_checker_sees_a_circle():
    """The checker itself: a two-module circle and a package re-export (not a circle)."""
    edges = {"a": {"b"}, "b": {"a"}, "p": set(), "p.x": set()}
    assert _cycles(edges) == [["a", "b"]]
    assert _cycles({"p": {"p.x"}, "p.x": set()}) == []
