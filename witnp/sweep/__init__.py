"""Sweeps: many runs of one run config over a grid of settings, on a local process pool or a Dask cluster.

    grid.py       --grid KEY=V1,V2,... and --seeds N into points (each a list of --set items and a name)
    executors.py  run a function over points: a local process pool, or Dask (local cluster or a scheduler)
    results.py    the sweep folder's results.jsonl / results.csv and the ranking summary

Nothing here knows what a point runs: `witnp sweep` (cli/sweep_cmd.py) gives the function (a `witnp train`
of the point's config). A point is a pure function of (config, data, seed), so where and in which order points
run does not change their results.
"""
