"""envs/ must pin exactly what pyproject.toml pins, so conda users get the same stack."""

import re
import tomllib

import yaml

from .conftest import REPO


def test_conda_env_pins_match_pyproject():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs" / "videnhance.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pinned = {re.split("==", p)[0].lower(): p for p in pip_section if "==" in p}
    assert {p.split("==")[0].lower(): p for p in pyproject} == pinned
    assert all("==" in p for p in pyproject), "every runtime dependency is pinned exactly"
