"""Startup and threads: `import witnp` and the command line load no Numba until a command needs a kernel;
--threads / WITNP_THREADS / set_threads limit BLAS and Numba (default 1)."""
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

import witnp as wn
from witnp.cli.main import main


def _py(code, **env):
    e = dict(os.environ, **env)
    e.pop("WITNP_THREADS", None) if "WITNP_THREADS" not in env else None
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=120)


def test_import_and_help_load_no_numba():
    r = _py("import sys, witnp as wn; wn.LayerConfig(); import witnp.cli.main as m; "
            "from click.testing import CliRunner; assert CliRunner().invoke(m.main, ['--help']).exit_code == 0; "
            "assert CliRunner().invoke(m.main, ['train', '--set', 'seed=-1']).exit_code == 1; "
            "print('numba' in sys.modules, 'witnp.kernels' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


def test_public_names_resolve_and_the_layer_list_is_complete():
    assert sorted(wn.layers.__all__) == sorted(wn._LAYERS)
    for name in wn.__all__:
        assert getattr(wn, name) is not None, name
    import witnp.optim
    from witnp.losses import CrossEntropyLoss
    assert witnp.optim is wn.train.optim and CrossEntropyLoss is wn.CrossEntropyLoss
    with pytest.raises(AttributeError, match="no attribute 'Lineer'"):
        wn.Lineer


def test_set_threads_limits_blas_and_numba():
    r = _py("import numpy, witnp as wn; from threadpoolctl import threadpool_info; wn.set_threads(1); "
            "import numba; print([i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'], "
            "numba.get_num_threads())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[1] 1"


def test_threads_option_and_environment():
    r = _py("import numpy; from click.testing import CliRunner; from witnp.cli.main import main; "
            "from threadpoolctl import threadpool_info; CliRunner().invoke(main, ['--threads', '2', 'inspect', 'x']); "
            "print([i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'])")
    assert r.returncode == 0 and r.stdout.strip() == "[2]", r.stdout + r.stderr
    r = _py("import numpy; from click.testing import CliRunner; from witnp.cli.main import main; "
            "from threadpoolctl import threadpool_info; CliRunner().invoke(main, ['inspect', 'x']); "
            "print([i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'])")
    assert r.stdout.strip() == "[1]", r.stdout + r.stderr  # the default
    out = CliRunner().invoke(main, ["--threads", "0", "inspect", "x"])
    assert out.exit_code == 2 and "--threads" in out.output
    with pytest.raises(ValueError, match="set_threads: n=0"):
        wn.set_threads(0)
