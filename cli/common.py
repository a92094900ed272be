"""What every witnp command shares: one-line errors (`friendly`), datasets by name or path, the data a model
file records, and the checks that no output is a command's own input."""
from __future__ import annotations

import contextlib
import functools
import os

import click

from witnp.errors import TrainingDiverged

from . import runconfig


EXIT_ERRORS = (ValueError, TypeError, OSError, KeyError, TrainingDiverged)  # ModelFileError is a ValueError


def friendly(fn):
    """Turn library errors into one-line click errors unless --debug was given."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except BrokenPipeError:  # `witnp inspect ... | head`: the reader left; end quietly (Python's own advice)
            import sys
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(1)
        except EXIT_ERRORS as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.ClickException(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    return wrapper


def is_interrupt(e: BaseException) -> bool:
    """Ctrl-C: a KeyboardInterrupt, or one that surfaced wrapped (Numba turns a KeyboardInterrupt raised while a
    compiled function loads its constants into "SystemError: ... returned a result with an exception set",
    the interrupt as its cause)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


@contextlib.contextmanager
def exit_on_interrupt(message):
    """Ctrl-C (`is_interrupt`) inside the block: print message() (what is kept, how to continue) to stderr and
    exit 130, instead of a traceback."""
    try:
        yield
    except (KeyboardInterrupt, SystemError) as e:
        if not is_interrupt(e):
            raise
        click.echo("\ninterrupted: " + message(), err=True)
        raise SystemExit(130)


def _load_dataset(data):
    return runconfig.load_dataset(data)


def _model_takes(model, d, model_path):
    """MODEL run on one test frame of the data, before any work: a clear error when they do not fit."""
    try:
        y = model(d.x_test[:1])
    except (ValueError, TypeError) as e:
        raise runconfig.RunConfigError(f"{model_path} does not take the frames of {d.name} (x {d.x_test.shape[1:]}): "
                                       f"{e}") from None
    from witnp.train.tasks import task_of
    task = task_of(d.y_test)
    bad = task.check_output(y.shape, d.y_test[:1].shape, None)
    if bad is None and d.n_classes is not None and y.shape[-1] < d.n_classes:
        bad = f"the model outputs {y.shape[-1]} classes; {d.name} has {d.n_classes}"
    if bad:
        raise runconfig.RunConfigError(f"{model_path} does not fit {d.name}: {bad}")


def _data_of(model_path, data):
    """--data, or the dataset the model file records it was trained on."""
    if data:
        return data
    from witnp.handoff.model_file import recorded_data
    rec = recorded_data(model_path)
    if rec is None:
        raise runconfig.RunConfigError(f"{model_path} records no training data (saved without it); pass --data "
                                       f"NAME_OR_NPZ")
    return rec


def _check_outputs(model_path, outs):
    """Each output a new or replaceable file in an existing folder, none of them the input model or another
    output: refused before any work, so no command writes over its own input."""
    for i, (opt, p) in enumerate(outs):
        if wn_same(p, model_path):
            raise runconfig.RunConfigError(f"{opt} {p}: that is MODEL itself; expected a new file (writing it "
                                           f"would replace the model this command reads)")
        for opt2, p2 in outs[:i]:
            if wn_same(p, p2):
                raise runconfig.RunConfigError(f"{opt} {p}: the same file as {opt2}; expected separate files")
        folder = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(folder):
            raise runconfig.RunConfigError(f"{opt} {p}: the folder {folder} does not exist")
        if os.path.isdir(p):
            raise runconfig.RunConfigError(f"{opt} {p}: a folder; expected a file path")


def wn_same(a, b):
    from witnp.handoff.atomic import same_file
    return same_file(a, b)
