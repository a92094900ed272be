"""``witnp``: the click group. Parses and validates, then calls the library; errors the user can cause print
one clear line and exit 1 (``witnp --debug ...`` shows the traceback instead). One file per command:
train_cmd, eval_cmd, export_cmd, inspect_cmd, sweep_cmd, search_bits_cmd; what they share in common.py, the run folder in run_folder.py."""
from __future__ import annotations

import os

import click

import witnp as wn

from .eval_cmd import eval_
from .export_cmd import export
from .inspect_cmd import inspect
from .search_bits_cmd import search_bits
from .sweep_cmd import sweep
from .train_cmd import train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(wn.__version__, prog_name="witnp")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.option("--threads", type=click.IntRange(1), default=None, envvar="WITNP_THREADS", show_envvar=True,
              help="Threads for BLAS and Numba [default: 1, never slower than more on a shared or busy machine; "
                   "see witnp/threads.py].")
@click.pass_context
def main(ctx, debug, threads):
    """Train and deploy neural networks for analog compute-in-memory chips (WTM2101 class)."""
    ctx.ensure_object(dict)["debug"] = debug
    from witnp.threads import set_threads
    set_threads(threads or 1)
    if os.environ.get("WITNP_KEEP_FREED_MEMORY", "1") != "0":
        wn.keep_freed_memory()  # steps reuse freed pages instead of faulting in new ones (witnp/memory.py)


for _command in (train, eval_, export, inspect, sweep, search_bits):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
