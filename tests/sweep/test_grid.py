"""The sweep's grid: values split as TOML values, points in a fixed order with stable names, refusals."""
import pytest

from witnp.sweep.grid import Point, expand, parse_grid


def test_values_split_on_top_level_commas_only():
    grid = parse_grid(["quant.y_quant_bits=8,10,12", "model.layers.0.kernel_size=[3,3],[5,5]", "name='a,b',\"c\""])
    assert grid == [("quant.y_quant_bits", ["8", "10", "12"]), ("model.layers.0.kernel_size", ["[3,3]", "[5,5]"]),
                    ("name", ["'a,b'", '"c"'])]


def test_points_are_every_combination_seed_fastest():
    pts = expand(parse_grid(["a=1,2", "b=x,y"]), seeds=2)
    assert [p.sets for p in pts][:3] == [("a=1", "b=x", "seed=0"), ("a=1", "b=x", "seed=1"), ("a=1", "b=y", "seed=0")]
    assert len(pts) == 8 and len({p.name for p in pts}) == 8
    assert Point(("a=1", "seed=0")).name == Point(("a=1", "seed=0")).name  # stable: the folder of a resumed point
    assert Point(("a=1", "seed=0")).name.startswith("a=1_seed=0_")
    assert [p.sets for p in expand([], seeds=3)] == [("seed=0",), ("seed=1",), ("seed=2",)]


@pytest.mark.parametrize("items,match", [
    (["quant.y_quant_bits"], "expected KEY=V1,V2"), (["=1,2"], "expected KEY=V1,V2"), (["a b=1"], "KEY=V1"),
    (["seed=1,,2"], "an empty value"), (["seed=1,1"], "given twice"), (["a=1", "a=2"], "a: given twice")])
def test_bad_grids(items, match):
    with pytest.raises(ValueError, match=match):
        parse_grid(items)


def test_seeds_and_a_seed_grid_do_not_mix():
    with pytest.raises(ValueError, match="--seeds and --grid seed"):
        expand(parse_grid(["seed=0,1"]), seeds=2)
    with pytest.raises(ValueError, match="--seeds 0"):
        expand([], seeds=0)
