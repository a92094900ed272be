"""LayerConfig: vendor names and values, presets, global defaults, and refusals that name the field."""
import dataclasses

import pytest

import witnp as wn
from witnp.noise import NoiseModelBase, register_noise_model


def test_defaults_follow_chip_md():
    c = wn.LayerConfig()
    assert (c.use_quantization, c.noise_model, c.noise_level, c.x_quant_bits, c.y_quant_bits) == (
        False, "NORMAL", 0, 8, 8)
    assert (c.use_auto_scale, c.auto_scale_update_step, c.handle_neg_in, c.bias_row_N, c.bias_d, c.w_clip) == (
        True, 2, "FALSE", 8, 0.0, None)


def test_vendor_names_and_values():
    c = wn.LayerConfig(auto_scale_updata_step=20, handle_neg_in=wn.HandleNegInType.Shift,
                       noise_model=wn.NoiseModel.NORMAL)
    assert c.auto_scale_update_step == 20 and c.handle_neg_in == "Shift" and c.noise_model == "NORMAL"
    assert wn.LayerConfig(handle_neg_in="pn").handle_neg_in == "PN"
    assert c.replace(auto_scale_updata_step=3).auto_scale_update_step == 3
    assert wn.LayerConfig(bias_d=[1, 2.5]).bias_d == (1.0, 2.5)


def test_round_trip_dict():
    c = wn.LayerConfig(use_quantization=True, bias_d=(1.0, 2.0), w_clip=0.5)
    assert wn.LayerConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['bogus'\]"):
        wn.LayerConfig.from_dict({"bogus": 1})


@pytest.mark.parametrize("kw, err, match", [
    (dict(x_quant_bits=20), ValueError, r"x_quant_bits=20 is not allowed; expected an integer in 8\.\.12"),
    (dict(y_quant_bits=7), ValueError, r"y_quant_bits=7 .* 8\.\.12"),
    (dict(x_quant_bits=8.5), ValueError, r"x_quant_bits=8\.5"),
    (dict(noise_level=10), ValueError, r"noise_level=10 .* 0\.\.9"),
    (dict(noise_level="4"), TypeError, r"noise_level='4' must be an integer"),
    (dict(handle_neg_in="NEG"), ValueError, r"handle_neg_in='NEG' is not allowed; expected one of"),
    (dict(scale_x=0), ValueError, r"scale_x=0 is not allowed; expected a finite number > 0"),
    (dict(scale_weight=-4), ValueError, r"scale_weight=-4"),
    (dict(scale_y=float("nan")), ValueError, r"scale_y=nan"),
    (dict(noise_model="MBS"), ValueError, r"noise_model='MBS' is not supported: its arithmetic is not defined"),
    (dict(noise_model=wn.NoiseModel.ARRMDL), ValueError, r"noise_model='ARRMDL' is not supported"),
    (dict(noise_model="GAUSS"), ValueError, r"noise_model='GAUSS' is not allowed"),
    (dict(weight_quant_bits=4), ValueError, r"weight_quant_bits=4 .* 8\.\.8"),
    (dict(bias_row_N=0), ValueError, r"bias_row_N=0"),
    (dict(auto_scale_update_step=0), ValueError, r"auto_scale_update_step=0"),
    (dict(shift_num=-1), ValueError, r"shift_num=-1 is not allowed; expected a finite number >= 0"),
    (dict(w_clip=0), ValueError, r"w_clip=0"),
    (dict(bias_d=[[1, 2]]), ValueError, r"bias_d=\[\[1, 2\]\] is not allowed"),
    (dict(use_quantization="yes"), TypeError, r"use_quantization='yes' must be True or False"),
])
def test_impossible_values_are_refused_naming_the_field(kw, err, match):
    with pytest.raises(err, match="LayerConfig: " + match):
        wn.LayerConfig(**kw)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        wn.LayerConfig().noise_level = 3


def test_presets_and_global_default():
    q = wn.preset("qat")
    assert (q.use_quantization, q.handle_neg_in, q.scale_x, q.auto_scale_update_step, q.noise_level) == (
        True, "PN", 16.0, 20, 0)
    assert wn.preset("qat_nat").noise_level == 4 and wn.preset("qat", noise_level=2).noise_level == 2
    with pytest.raises(ValueError, match="preset: unknown name 'int4'"):
        wn.preset("int4")
    with wn.default_config(q):
        assert wn.Linear(2, 2).config is q
    assert wn.Linear(2, 2).config == wn.LayerConfig()


def test_noise_models_are_pluggable():
    class Uniform(NoiseModelBase):
        name = "UNIFORM_TEST"

        def apply(self, m, e):
            return m + self.level * e

        def derivative(self, m, e):
            return m * 0 + 1

    register_noise_model("UNIFORM_TEST", Uniform)
    assert wn.LayerConfig(noise_model="UNIFORM_TEST", noise_level=1).noise_model == "UNIFORM_TEST"


def test_attribute_assignment_shows_the_equivalent_call():
    """The vendor's manual writes cfg.use_quantization = True; witnp's configs are frozen and say what to do."""
    cfg = wn.LayerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError, match=r"cfg = cfg.replace\(use_quantization=True\)"):
        cfg.use_quantization = True
    assert cfg.replace(use_quantization=True).use_quantization and not cfg.use_quantization


@pytest.mark.parametrize("name, base, args", [
    ("WitinGruCell", "GRUCell", (4, 3)), ("WitinElementAdd", "Add", ()), ("WitinElementMul", "Mul", ()),
    ("WitinElementDivide", "Divide", ()), ("WitinGELU", "GELU", ()), ("WitinSigmoid", "Sigmoid", ()),
    ("WitinTanh", "Tanh", ()), ("WitinPReLU", "PReLU", ()), ("WitinSqrt", "Sqrt", ()), ("WitinMean", "Mean", ()),
    ("WitinCat", "Cat", ()), ("WitinBatchNorm2d", "BatchNorm2d", (3,))])
def test_vendor_names_take_layer_config(name, base, args):
    cfg = wn.LayerConfig(use_quantization=True, noise_level=2)
    layer = getattr(wn, name)(*args, layer_config=cfg)
    assert isinstance(layer, getattr(wn, base)) and type(layer).__name__ == name and layer.config == cfg
    with pytest.raises(TypeError, match="not both"):
        getattr(wn, name)(*args, layer_config=cfg, config=cfg)
