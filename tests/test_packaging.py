"""`pip install .` gives a working program: prompts and every imported package are in the wheel."""

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import DEMO_DATASET, REPO_ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    tree = out / "tree"  # setuptools writes build/ and egg-info into the tree it builds: not ours
    shutil.copytree(REPO_ROOT, tree, ignore=shutil.ignore_patterns(
        ".*", "outputs", "build", "*.egg-info", "models", "docs", "demo_metaworld", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(tree)], check=True, cwd=out, capture_output=True, timeout=300)
    return next(out.glob("reward_labeling-*.whl"))


def test_wheel_holds_the_prompt_files_and_every_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for prompt in (REPO_ROOT / "prompts").glob("*.txt"):
        assert f"prompts/{prompt.name}" in names
    for package in ("labeling", "rewact", "training", "data"):
        assert f"{package}/__init__.py" in names
    for asset in ("index.html", "report.js", "report.css"):  # the review page's static files
        assert f"labeling/report_assets/{asset}" in names
    assert not any(name.startswith(("tests/", "data/demo_metaworld/")) for name in names)


@pytest.mark.slow
def test_installed_wheel_runs_labeling_away_from_the_source_tree(wheel, tmp_path):
    """A fresh venv sees the dependencies (a .pth to ours) and the wheel, never the checkout."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")  # a path line: no editable finders
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    # The caller's environment stays out: with PYTHONPATH at the checkout, pip would see the project
    # as installed already and skip the wheel.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, timeout=300, env=env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([python, "-c", "import labeling, data.generate, training.experiments.unflagged_failures, prompts; "
                            "print(labeling.__file__, prompts.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert where.returncode == 0, where.stderr
    assert str(REPO_ROOT) not in where.stdout and str(site) in where.stdout
    result = subprocess.run([python, "-m", "labeling.run", "--dataset", str(DEMO_DATASET), "--out", "o",
                             "--model", "/nonexistent", "--dry-run", "--episodes", "0", "--cameras", "topview"],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ANSWER: <score from 1 to 5>" in result.stdout and "Task: Pick and place a puck" in result.stdout
