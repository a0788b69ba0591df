"""Shared fixtures. Tests never reach the network: the hub is forced offline."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
# Under pytest-xdist, each worker and the processes its tests start get their share of the cores.
# PyTorch's default, a thread per core in every process, makes the workers' threads spin against
# each other: a 300-step RewACT test took 280 s beside another worker, 9 s with one thread.
if (workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))

import importlib  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DATASET = REPO_ROOT / "data" / "demo_metaworld"


@pytest.fixture
def cli(capsys):
    """`cli("labeling.run", *args)`: a command's `main` run in this process through `run_cli`,
    exactly what `python -m <module>` does after start-up, as a CompletedProcess. Error-path
    tests use it to spare a fresh interpreter (seconds of torch and LeRobot imports) per case;
    each command keeps at least one test through a real `python -m` process."""

    def run(module: str, *args) -> subprocess.CompletedProcess:
        from common.cli import run_cli

        main = importlib.import_module(module).main
        argv = [str(arg) for arg in args]
        capsys.readouterr()
        try:
            code = run_cli(main, argv)
        except SystemExit as exit:  # argparse's own usage errors
            code = exit.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["python", "-m", module, *argv], code, out, err)

    return run


@pytest.fixture(scope="session")
def demo_root() -> Path:
    return DEMO_DATASET


@pytest.fixture(scope="session")
def image_dataset(tmp_path_factory) -> Path:
    """A small image-feature (not video) dataset with three cameras, generated once."""
    from data.benchmark import GenerateConfig, generate
    from data.rollout import RolloutConfig

    out = tmp_path_factory.mktemp("image_ds") / "reach_images"
    config = GenerateConfig(
        out=out,
        tasks=("reach-v3",),
        successes=1,
        failures_per_kind=1,
        failure_kinds=("stall",),
        rollout=RolloutConfig(cameras=("corner2", "topview", "gripperPOV"), image_size=64),
        use_videos=False,
    )
    return generate(config, progress=False)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random-weight Qwen2-VL, Qwen2.5-VL and Qwen3-VL checkpoints, built once."""
    from training.reward_vlm.models import FAMILIES, build_tiny_vlm

    root = tmp_path_factory.mktemp("tiny_vlm")
    return {family: build_tiny_vlm(family, root / family) for family in FAMILIES}


@pytest.fixture
def fake_openai(tmp_path):
    """Start tests/fake_openai_server.py; yields start(*flags, fail_first=.., ...) -> (base_url, log path)."""
    import subprocess
    import sys

    processes = []

    def start(*options: str, fail_first: int = 0, reject_logprobs: bool = False, unreadable: bool = False,
              reject_prefill: bool = False):
        """`options`: further flags of the server, e.g. "--api-key", "k"."""
        log = tmp_path / f"requests{len(processes)}.jsonl"
        cmd = [sys.executable, str(REPO_ROOT / "tests" / "fake_openai_server.py"), "--log", str(log),
               "--fail-first", str(fail_first), "--max-seconds", "300", *options]
        if reject_logprobs:
            cmd.append("--reject-logprobs")
        if unreadable:
            cmd.append("--unreadable")
        if reject_prefill:
            cmd.append("--reject-prefill")
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        processes.append(process)
        port = int(process.stdout.readline())
        return f"http://127.0.0.1:{port}/v1", log

    yield start
    for process in processes:
        process.kill()
        process.wait()


# ACT sized for unit tests: every policy test here builds on these settings.
TINY_ACT = dict(
    dim_model=32, n_heads=2, dim_feedforward=64, n_encoder_layers=1, n_decoder_layers=1,
    chunk_size=4, n_action_steps=4, latent_dim=8, pretrained_backbone_weights=None, device="cpu",
)


def act_features(cameras=1, state_dim=4, action_dim=3, image=32, env_state_dim=0) -> dict:
    """`input_features` and `output_features` of a policy config for a made-up dataset layout."""
    from lerobot.configs.types import FeatureType, PolicyFeature

    inputs = {}
    if env_state_dim:
        inputs["observation.environment_state"] = PolicyFeature(FeatureType.ENV, (env_state_dim,))
    if state_dim:
        inputs["observation.state"] = PolicyFeature(FeatureType.STATE, (state_dim,))
    for i in range(cameras):
        inputs[f"observation.images.cam{i}"] = PolicyFeature(FeatureType.VISUAL, (3, image, image))
    return {"input_features": inputs, "output_features": {"action": PolicyFeature(FeatureType.ACTION, (action_dim,))}}


def lerobot_train_command(demo_root: Path, output_dir: Path, policy_type: str, *extra: str) -> list[str]:
    """Stock `lerobot-train` for two CPU steps on the demo, offline, no pretrained backbone."""
    import shutil
    import sys

    executable = Path(sys.executable).with_name("lerobot-train")
    return [
        str(executable) if executable.exists() else shutil.which("lerobot-train"),
        "--dataset.repo_id=local/demo_metaworld", f"--dataset.root={demo_root}", f"--policy.type={policy_type}",
        "--policy.pretrained_backbone_weights=null", "--policy.device=cpu", "--policy.push_to_hub=false",
        "--steps=2", "--batch_size=2", "--num_workers=0", "--save_freq=2", "--env_eval_freq=0",
        "--wandb.enable=false", f"--output_dir={output_dir}", *extra,
    ]


@pytest.fixture(scope="session")
def demo_checkpoint(demo_root, tmp_path_factory) -> Path:
    """A tiny RewACT trained 2 steps on the demo by stock lerobot-train (96 px, corner2 + topview)."""
    out = tmp_path_factory.mktemp("rewact") / "run"
    cmd = lerobot_train_command(demo_root, out, "rewact", "--policy.dim_model=32", "--policy.dim_feedforward=64",
                                "--policy.n_encoder_layers=1", "--policy.n_decoder_layers=1",
                                "--policy.chunk_size=5", "--policy.n_action_steps=5")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "checkpoints" / "last" / "pretrained_model"
