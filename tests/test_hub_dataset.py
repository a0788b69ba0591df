"""Hub datasets through huggingface_hub's own client against tests/local_hub.py: a command
downloads only the files holding the episodes and cameras it reads, at the revision asked,
into LeRobot's hub cache; a second run downloads nothing; offline, the cache answers."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = "user/demo"
HUB_SERVER = Path(__file__).resolve().parent / "local_hub.py"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def split_demo(demo_root, tmp_path_factory) -> Path:
    """The demo in three data files and three video files per camera (episodes 0-4, 5-9, 10-13),
    made with LeRobot's own tools, so an episode subset needs a subset of the files."""
    from lerobot.datasets.aggregate import aggregate_datasets
    from lerobot.datasets.dataset_tools import split_dataset
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    work = tmp_path_factory.mktemp("split")
    parts = split_dataset(LeRobotDataset("local/demo", root=demo_root),
                          {"a": list(range(5)), "b": list(range(5, 10)), "c": list(range(10, 14))}, work / "parts")
    aggregate_datasets([f"local/{name}" for name in parts], "local/split", roots=[d.root for d in parts.values()],
                       aggr_root=work / "split", concatenate_videos=False, concatenate_data=False)
    return work / "split"


@pytest.fixture(scope="module")
def hub(split_demo, demo_root, tmp_path_factory):
    """The split demo as tag v3.0 of `user/demo`, the one-file demo as branch `single`, and the
    split demo without one video file as branch `broken`; yields (endpoint, request log)."""
    work = tmp_path_factory.mktemp("hub")
    broken = shutil.copytree(split_demo, work / "broken")
    (broken / "videos/observation.images.topview/chunk-000/file-001.mp4").unlink()
    log = work / "requests.jsonl"
    server = subprocess.Popen([sys.executable, str(HUB_SERVER), "--repo", REPO, "--tag", f"v3.0={split_demo}",
                               "--branch", f"single={demo_root}", "--branch", f"broken={broken}", "--log", str(log)],
                              stdout=subprocess.PIPE, text=True)
    yield f"http://127.0.0.1:{int(server.stdout.readline())}", log
    server.kill()
    server.wait()


def run_command(module: str, hub, home: Path, *args, offline: bool = False) -> tuple[subprocess.CompletedProcess, list]:
    """`python -m module args` against the local hub with its own HF_HOME; returns the result
    and the files the hub served (GET of resolve/) during the run."""
    endpoint, log = hub
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE_"))}
    env |= {"HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1" if offline else "0",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    seen = len(log.read_text().splitlines()) if log.exists() else 0
    result = subprocess.run([sys.executable, "-m", module, *map(str, args)], env=env, capture_output=True, text=True,
                            timeout=600)
    requests = [json.loads(line) for line in log.read_text().splitlines()[seen:]] if log.exists() else []
    served = sorted(r["path"].split("/resolve/", 1)[1].split("/", 1)[1] for r in requests
                    if r["method"] == "GET" and "/resolve/" in r["path"])
    return result, served


def test_labeling_a_hub_dataset_downloads_only_the_asked_episodes_once(hub, tiny_models, tmp_path):
    import pandas as pd
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    home = tmp_path / "hf_home"
    label = ["--dataset", REPO, "--episodes", "0,7", "--cameras", "topview", "--stages", "progress",
             "--model", tiny_models["qwen2_5_vl"], "--device", "cpu", "--image-size", "48", "--quiet",
             "--out", tmp_path / "labeled", "--overwrite"]
    first, served = run_command("labeling.run", hub, home, *label)
    assert first.returncode == 0, first.stderr[-3000:]
    files = [f"{kind}/chunk-000/file-00{i}.{ext}" for i in (0, 1) for kind, ext in (
        ("data", "parquet"), ("videos/observation.images.topview", "mp4"), ("videos/observation.images.corner2", "mp4"))]
    meta = ["meta/episodes/chunk-000/file-000.parquet", "meta/info.json", "meta/stats.json", "meta/tasks.parquet"]
    # episodes 0 and 7 live in files 000 and 001; nothing of file 002 (episodes 10-13) is fetched.
    # The output dataset holds every camera of the labeled episodes, so corner2 comes at the end.
    assert served == sorted(meta + files)
    snapshots = list((home / "lerobot" / "hub" / "datasets--user--demo" / "snapshots").iterdir())
    assert len(snapshots) == 1  # the normal LeRobot hub cache, one commit
    provenance = json.loads((tmp_path / "labeled" / "labels" / "provenance.json").read_text())
    assert provenance["dataset"]["revision"] == "v3.0" and provenance["dataset"]["commit"] == snapshots[0].name
    labeled = LeRobotDataset("local/labeled", root=tmp_path / "labeled")
    assert labeled.num_episodes == 2 and pd.read_parquet(tmp_path / "labeled" / "data")["reward.labeled"].eq(1).all()

    again, served = run_command("labeling.run", hub, home, *label)
    assert again.returncode == 0, again.stderr[-3000:]
    assert served == []  # everything came from the cache

    inspect = ["--dataset", REPO, "--episodes", "0,7", "--cameras", "topview"]
    offline, served = run_command("labeling.inspect", hub, home, *inspect, offline=True)
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert "decoded frame 0 of episode 0" in offline.stdout

    missing, _ = run_command("labeling.inspect", hub, home, "--dataset", REPO, "--episodes", "12", offline=True)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert all(part in missing.stderr for part in (
        REPO, "v3.0", "videos/observation.images.corner2/chunk-000/file-002.mp4", "HF_HUB_OFFLINE"))


def test_revision_and_cameras_choose_the_files(hub, tmp_path):
    home = tmp_path / "hf_home"
    result, served = run_command("labeling.inspect", hub, home, "--dataset", REPO, "--revision", "single",
                                 "--episodes", "12", "--cameras", "topview")
    assert result.returncode == 0, result.stderr[-3000:]
    # branch `single` keeps every episode in one file; only the camera shown is fetched, no data file
    assert [path for path in served if not path.startswith("meta/")] == [
        "videos/observation.images.topview/chunk-000/file-000.mp4"]

    broken, _ = run_command("labeling.inspect", hub, home, "--dataset", REPO, "--revision", "broken",
                            "--episodes", "7", "--cameras", "topview")
    assert broken.returncode == 2 and len(broken.stderr.strip().splitlines()) == 1
    assert all(part in broken.stderr for part in (REPO, "'broken'", "videos/observation.images.topview/chunk-000/file-001.mp4"))
