"""Shared by the handoff tests: the VAD example trained once (a few epochs) for the export tests that need a
real model (C reference, ONNX)."""
import pytest
from click.testing import CliRunner

from witnp.cli.main import main


@pytest.fixture(scope="session")
def vad_run(tmp_path_factory):
    """The run folder of examples/vad_arctic.toml trained one epoch per stage."""
    out = tmp_path_factory.mktemp("vad") / "run"
    r = CliRunner().invoke(main, ["train", "--config", "examples/vad_arctic.toml", "--out", str(out), "--set",
                                  "stages.0.epochs=1", "--set", "stages.1.epochs=1", "--set", "stages.2.epochs=1",
                                  "--set", "noise_seeds=2", "--no-progress"])
    assert r.exit_code == 0, r.output
    return out
