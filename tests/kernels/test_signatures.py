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
