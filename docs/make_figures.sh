#!/usr/bin/env bash
# Regenerates the README's figures of the default run (and its plots in docs/img): the main job's table,
# post-training calibration, the noise sweep (3 and 10 seeds, with its plot), 50 chips (with their
# histogram), the per-layer comparison, the NAT noise-level sweep and the bit-width search. Run it from the
# repository root with witnp installed (`pip install -e ".[plot,dask]"`) whenever a change can move them
# (training arithmetic, the recipe, the data); it prints every figure and writes the plots, and the README's
# sentences are then edited by hand from its output (log: $OUT/figures.log). About 5 minutes on 2 cores.
set -euo pipefail
OUT=${1:-/tmp/witnp-figures}
rm -rf "$OUT" && mkdir -p "$OUT"
exec > >(tee "$OUT/figures.log") 2>&1
R="$OUT/default"

echo "== main job: witnp train"
witnp train --out "$R" --no-progress | tail -6

echo "== post-training calibration of the float model"
for c in extrema moving_average percentile:99.9 mse kl; do
  echo "-- $c"; witnp eval "$R/float.h5" --quantize --calibration "$c" | tail -2
done

echo "== noise sweep, 3 seeds (README: Noise sweeps)"
witnp eval "$R/float.h5" "$R/qat.h5" "$R/nat.h5" --quantize --noise-levels 8 --noise-seeds 3
echo "== noise sweep, 10 seeds, levels 0-8, plot"
witnp eval "$R/float.h5" "$R/qat.h5" "$R/nat.h5" --quantize --noise-levels 0-8 --noise-seeds 10 \
  --plot docs/img/sweep_default.png

echo "== 50 chips of the NAT model, and its per-read figure over 50 seeds"
witnp eval "$R/nat.h5" --chips 50 --plot docs/img/chips_default.png
witnp eval "$R/nat.h5" --noise-seeds 50 | tail -2

echo "== per-layer comparison of the default run's model"
witnp inspect "$R/best.h5" --compare

echo "== sweep: NAT training noise level x 3 seeds"
start=$SECONDS
witnp sweep --grid stages.2.noise_level=2,4,6 --seeds 3 --out "$OUT/sweep" | tail -8
echo "sweep: $((SECONDS - start)) s"

echo "== bit-width search, budgets 0.5 and 1.0"
for b in 0.5 1.0; do  # the found / all-8 / all-12 rows are in result.json
  witnp search-bits --config cli/default.toml --budget "$b" --out "$OUT/bits$b" > /dev/null
  python3 -c "import json, sys; r = json.load(open(sys.argv[1]))['rows']
for k, v in r.items(): print(k, v['bits'], 'val %.2f / test %.2f %%' % (100 * v['val']['accuracy'], 100 * v['test']['accuracy']), 'digital MACs', v['digital_macs'])" "$OUT/bits$b/result.json"
done
