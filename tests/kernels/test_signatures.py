"""Kernel signatures stay readable: no compiled function of witnp.kernels takes more than 15 parameters
(geometry goes in dims arrays or tuples, as the grouped kernels document)."""
import importlib
import pkgutil

import witnp.kernels as K


def test_no_kernel_takes_more_than_15_parameters():
    seen, big = set(), []
    for mod in pkgutil.walk_packages(K.__path__, "witnp.kernels."):
        for name, obj in vars(importlib.import_module(mod.name)).items():
            f = getattr(obj, "py_func", None)
            if f is not None and id(f) not in seen:
                seen.add(id(f))
                if f.__code__.co_argcount > 15:
                    big.append(f"{mod.name}.{name}: {f.__code__.co_argcount}")
    assert len(seen) > 30 and big == []


# Helpers every convolution and GRU kernel calls into. Numba compiles a jitted callee once per argument
# *type*, and a literal (`1`, `0`, `True`) is a type of its own (Literal[int](1)): one such call compiled a
# second rows_fma, ~1.5 s more of a cold `witnp train`. Callers pass np.int64(...) / np.bool_(...) instead.
# (tile_fma_tab has one caller, conv_image, whose literal False the tile folds away; tile_fma's literal
# single-row call in layout.py is a deliberate specialization of its own.)
SHARED = {"rows_fma", "conv_image", "_fill"}


def _literal_args(call):
    import ast
    out = []
    for a in call.args:
        items = a.elts if isinstance(a, ast.Tuple) else [a]
        out += [ast.unparse(i) for i in items if isinstance(i, ast.Constant) and isinstance(i.value, (bool, int))]
    return out


def test_shared_tile_helpers_get_no_literal_arguments():
    import ast
    import os
    root = os.path.dirname(K.__file__)
    found, calls = [], 0
    for dirpath, _, files in os.walk(root):
        for fn in files:
            if fn.endswith(".py"):
                path = os.path.join(dirpath, fn)
                for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                    if isinstance(node, ast.Call) and getattr(node.func, "id", None) in SHARED:
                        calls += 1
                        lits = _literal_args(node)
                        if lits:
                            found.append(f"{os.path.relpath(path, root)}:{node.lineno} {node.func.id}: {lits}")
    assert calls >= 15 and found == []
