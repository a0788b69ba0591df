"""The packages stand in layers: `common` at the bottom, `labeling`, `rewact` and `data` on it,
`training` on top. A lower layer never imports a higher one, `training` uses only what
`labeling` exports, and no module imports a command (library code never depends on a command
line; experiments share code through `training.experiments.workbench`, not through each other)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import labeling

REPO = Path(__file__).resolve().parents[1]
OURS = ("common", "labeling", "rewact", "data", "training")
MAY_IMPORT = {
    "common": {"common"},
    "labeling": {"common", "labeling"},
    "rewact": {"common", "rewact"},
    "data": {"common", "data"},
    "training": {"common", "data", "rewact", "training", "labeling"},
}


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every import of one of our packages in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return [(module, names) for module, names in found if module.split(".")[0] in OURS]


@pytest.mark.parametrize("package", list(MAY_IMPORT))
def test_no_package_imports_a_higher_layer(package):
    wrong = [f"{path.relative_to(REPO)}: {module}" for path in (REPO / package).rglob("*.py")
             for module, _ in imports_of(path) if module.split(".")[0] not in MAY_IMPORT[package]]
    assert not wrong, wrong


def test_training_uses_only_what_labeling_exports():
    wrong = [f"{path.relative_to(REPO)}: {module} {names}" for path in (REPO / "training").rglob("*.py")
             for module, names in imports_of(path)
             if module.split(".")[0] == "labeling" and (module != "labeling" or set(names) - set(labeling.__all__))]
    assert not wrong, wrong


def test_labeling_exports_resolve_without_loading_torch_until_used():
    code = ("import sys, labeling; assert 'torch' not in sys.modules and 'lerobot' not in sys.modules; "
            "[getattr(labeling, name) for name in labeling.__all__]; print('ok')")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True).stdout == "ok\n"


def test_labeling_loads_no_ground_truth_code():
    """Beyond not naming it (test_labeling_run): importing every labeling module loads neither
    the ground-truth sidecar reader nor the benchmark package."""
    modules = sorted({".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                      for p in (REPO / "labeling").rglob("*.py")} - {"labeling.backends.vllm_backend"})
    code = (f"import importlib, sys; [importlib.import_module(m) for m in {modules!r}]; "
            "print(sorted(m for m in sys.modules if m == 'data' or m.startswith(('data.', 'common.ground_truth', "
            "'common.reward_sources', 'rewact', 'training'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr[-2000:]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def is_command(path: Path) -> bool:
    """A module run as `python -m ...`: it has `main` and the `__main__` guard."""
    text = path.read_text()
    return "\ndef main(" in text and 'if __name__ == "__main__":' in text


def test_no_module_imports_a_command():
    sources = [path for package in OURS for path in (REPO / package).rglob("*.py")]
    commands = {module_name(path) for path in sources if is_command(path)}
    assert {"labeling.run", "training.compare", "training.finetune_vlm"} <= commands
    wrong = [f"{path.relative_to(REPO)}: {module}" for path in sources for module, names in imports_of(path)
             if module in commands or any(f"{module}.{name}" in commands for name in names)]
    assert not wrong, wrong


def test_training_library_sits_in_purpose_packages():
    """The top of `training/` holds only commands; library code lives in its sub-packages."""
    top = [path for path in (REPO / "training").glob("*.py") if path.name != "__init__.py"]
    assert top and all(is_command(path) for path in top), [p.name for p in top if not is_command(p)]
