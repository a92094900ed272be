"""The README's two set-up commands, run as written in a fresh virtual environment on a copy of the tree.

The test command is run with PYTEST_ADDOPTS selecting the golden tests (the whole suite is what is running
this test already) and WITNP_README_TEST set so that it does not recurse.
"""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IGNORE = shutil.ignore_patterns(".venv", ".git", "runs", "__pycache__", "*.egg-info", ".hypothesis", ".pytest_cache",
                                "build", "dist")

pytestmark = pytest.mark.skipif(os.environ.get("WITNP_README_TEST") == "1", reason="inside the README test")


def readme_command(tag):
    text = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(r"<!-- readme-command: " + tag + r" -->\s*```bash\n(.*?)\n```", text, re.S)
    assert m, f"README has no command tagged {tag}"
    return m.group(1)


def test_readme_commands_in_a_fresh_venv(tmp_path):
    work = tmp_path / "witnp"
    shutil.copytree(ROOT, work, ignore=IGNORE)
    env = dict(os.environ, WITNP_README_TEST="1", PYTEST_ADDOPTS="-k golden -p no:cacheprovider")
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    for tag in ("main", "tests"):
        r = subprocess.run(["bash", "-c", readme_command(tag)], cwd=work, env=env, capture_output=True, text=True,
                           timeout=1200)
        assert r.returncode == 0, f"README {tag} command failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        if tag == "main":
            assert "nat " in r.stdout and (work / "runs" / "default" / "best.h5").exists()
        else:
            assert re.search(r"\d+ passed", r.stdout)
