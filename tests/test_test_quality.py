"""A test that cannot fail is a defect: every test function must assert something.

A test function passes this check when its body (nested functions included) holds an `assert`, a
`pytest.raises` / `pytest.warns` / `pytest.fail`, a call whose name starts with `assert` (NumPy's
assert_array_equal, the suite's assert_* helpers), or a call of a helper of its own module that does any of
these (followed transitively). Everything else is reported by file, line and name.
"""
import ast
import os

TESTS = os.path.dirname(os.path.abspath(__file__))


def _callee(node):
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _direct(fn):
    """(asserts directly, names of the functions it calls)."""
    called, ok = set(), False
    for node in ast.walk(fn):
        if isinstance(node, ast.Assert):
            ok = True
        elif isinstance(node, ast.Call):
            name = _callee(node)
            if name.startswith(("assert", "_assert")) or name in ("raises", "warns", "fail", "deprecated_call"):
                ok = True
            called.add(name)
    return ok, called


def unasserted(source, filename="<test>"):
    """[(line, name)] of the test functions in `source` that assert nothing."""
    tree = ast.parse(source, filename)
    funcs = {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    info = {name: _direct(fn) for name, fn in funcs.items()}
    asserting = {n for n, (ok, _) in info.items() if ok}
    changed = True
    while changed:  # helpers that call asserting helpers assert too
        changed = False
        for n, (_, called) in info.items():
            if n not in asserting and called & asserting:
                asserting.add(n)
                changed = True
    return [(fn.lineno, name) for name, fn in funcs.items() if name.startswith("test") and name not in asserting]


def test_every_test_function_asserts_something():
    bad = []
    for dirpath, _, files in os.walk(TESTS):
        for f in sorted(files):
            if f.startswith("test") and f.endswith(".py"):
                p = os.path.join(dirpath, f)
                bad += [f"{os.path.relpath(p, TESTS)}:{line} {name}" for line, name in unasserted(open(p).read(), p)]
    assert bad == []


def test_the_check_catches_a_test_without_assertion():
    src = '''
import numpy as np, pytest
def helper(x):
    assert x
def test_runs_only():
    np.zeros(3).sum()
def test_uses_helper():
    helper(1)
def test_numpy():
    np.testing.assert_array_equal(1, 1)
def test_raises():
    with pytest.raises(ValueError):
        int("x")
'''
    assert unasserted(src) == [(5, "test_runs_only")]
