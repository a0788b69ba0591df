"""The review page of a labeling run (`labeling.report`), opened from disk in headless Chromium,
and the correction round trip (`labeling.correct`, `labeling.run --corrections`)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chromium import Chromium, find_chromium
from common.label_files import LABELS_DIR, read_keypoints, read_outcomes
from labeling.corrections import FORMAT, Corrections, apply_corrections
from labeling.run import main as label


def _label(demo_root: Path, model: Path, out: Path, *extra: str) -> None:
    assert label(["--dataset", str(demo_root), "--out", str(out), "--model", str(model), "--device", "cpu",
                  "--image-size", "96", "--stages", "progress", "--quiet", *extra]) == 0


@pytest.fixture(scope="module")
def labeled(demo_root, tiny_models, tmp_path_factory) -> Path:
    """The demo labeled by a tiny random Qwen2.5-VL, progress stage only; never modified."""
    out = tmp_path_factory.mktemp("report") / "labeled"
    _label(demo_root, tiny_models["qwen2_5_vl"], out)
    return out


@pytest.fixture
def copy_of(labeled, tmp_path) -> Path:
    """A copy of the labeled output and its answer cache, for tests that change them."""
    out = tmp_path / "labeled"
    shutil.copytree(labeled, out)
    shutil.copytree(labeled.with_name("labeled.cache"), tmp_path / "labeled.cache")
    return out


def _corrections(path: Path, **kinds) -> Path:
    path.write_text(json.dumps({"format": FORMAT, "dataset": "local/demo_metaworld", **kinds}))
    return path


def _frames(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / LABELS_DIR / "frames.parquet")


def _page_data(path: Path) -> dict:
    """What one of the page's data scripts (`callback({...});`) hands the page."""
    text = path.read_text()
    return json.loads(text[text.index("(") + 1: text.rindex(")")])


@pytest.mark.slow
def test_a_run_writes_a_light_page_that_needs_no_network_and_the_command_rebuilds_it(labeled, demo_root):
    page = labeled / "report"
    text = {path.name: path.read_text() for path in page.glob("*.*")}
    assert set(text) == {"index.html", "report.js", "report.css", "data.js"}
    for name in ("index.html", "report.js", "report.css"):  # nothing fetched from the network: it opens offline
        assert not re.search(r"https?://|//cdn|fetch\(|XMLHttpRequest", text[name]), name
    episodes = sorted(int(path.stem) for path in (page / "episodes").glob("*.js"))
    assert episodes == list(range(14))  # every episode of the demo, its details loaded on demand
    assert len(list((page / "frames").glob("*.jpg"))) == 14 * 2  # one strip per episode and camera
    size = sum(path.stat().st_size for path in page.rglob("*") if path.is_file())
    assert size < 14 * 200_000, size  # thumbnails, not video inlined

    before = text["data.js"]
    result = subprocess.run([sys.executable, "-m", "labeling.report", str(labeled)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"wrote {page / 'index.html'}"
    assert (page / "data.js").read_text() == before


@pytest.mark.slow
def test_review_in_chromium_then_apply_the_exported_corrections(labeled, copy_of, tmp_path):
    assert find_chromium(), "the browser test needs Debian's chromium (scripts/setup_env.sh installs it)"
    frames = _frames(labeled)
    episode = 2
    length = int((frames["episode_index"] == episode).sum())
    keyframes = pd.read_parquet(labeled / LABELS_DIR / "keyframes.parquet")
    last = keyframes[keyframes["episode_index"] == episode].sort_values("frame").iloc[-1]
    new_score = 1 if last["model_score"] != 1 else 5

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    profile = tmp_path / "profile"
    with Chromium(profile, downloads) as browser:
        browser.open((copy_of / "report" / "index.html").as_uri())
        assert browser.evaluate("document.querySelectorAll('#episodes tbody tr').length") == 14
        assert browser.evaluate("document.querySelector('#shown').textContent") == "14 of 14 episodes"

        browser.click(f'#episodes tr[data-episode="{episode}"]')
        browser.wait_for("document.querySelector('#curve-svg')")
        curve = browser.evaluate("document.querySelector('.expected-line').getAttribute('d')")
        assert curve.count("L") == length - 1  # a point per frame
        assert browser.evaluate("document.querySelectorAll('#curve-svg circle[data-frame]').length") == \
            int((keyframes["episode_index"] == episode).sum())
        strips = browser.evaluate("""Promise.all([...document.querySelectorAll('#cameras .frame')].map((div) =>
            new Promise((done) => { const image = new Image(); image.onload = () => done(image.naturalWidth);
              image.onerror = () => done(0); image.src = div.style.backgroundImage.slice(5, -2); })))""")
        assert len(strips) == 2 and all(width > 0 for width in strips)  # both cameras' frames load from disk

        # Scrubbing: a click on the curve moves the cursor and every camera to that frame.
        position = browser.evaluate("document.querySelector('#cameras .frame').style.backgroundPosition")
        browser.click("#curve-svg")
        label = browser.evaluate("document.querySelector('#frame-label').textContent")
        clicked = int(re.match(r"frame (\d+) /", label).group(1))
        assert abs(clicked - (320 - 34) / (640 - 34 - 12) * (length - 1)) <= 1  # the curve's middle, in frames
        assert browser.evaluate("document.querySelector('#cameras .frame').style.backgroundPosition") != position
        assert browser.evaluate("document.querySelector('#cursor').getAttribute('x1')") != "34"

        # Hovering a keyframe shows the score distribution the model answered with.
        box = browser.evaluate(f"""(() => {{ const r = document.querySelector('circle[data-frame="{last.frame}"]')
            .getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; }})()""")
        browser.call("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=box[0], y=box[1])
        browser.wait_for("!document.querySelector('#tooltip').hidden")
        assert browser.evaluate("document.querySelectorAll('#tooltip .distribution span').length") == 5

        browser.click(f'.keyframe-row[data-frame="{last.frame}"] .score-button[data-score="{new_score}"]')
        browser.click('.verdict-controls button[data-verdict="failure"]')
        count = "document.querySelector('#corrections-count').textContent"
        assert browser.evaluate(count).startswith("2 corrections")
        browser.screenshot(tmp_path / "report.png")
        browser.open((copy_of / "report" / "index.html").as_uri())  # a reload keeps the review's corrections
        assert browser.evaluate(count).startswith("2 corrections")
        browser.click("#export")
        exported = browser.wait_for_download()
    assert (tmp_path / "report.png").stat().st_size > 20_000

    corrections = json.loads(exported.read_text())
    assert corrections["format"] == FORMAT and corrections["dataset"] == "local/demo_metaworld"
    assert corrections["keyframes"] == [{"episode": episode, "frame": int(last.frame), "score": new_score}]
    assert corrections["verdicts"] == [{"episode": episode, "success": False}]
    assert corrections["dropped"] == []

    result = subprocess.run([sys.executable, "-m", "labeling.correct", str(copy_of), str(exported)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    corrected = _frames(copy_of)
    assert corrected[corrected["episode_index"] == episode]["score"].iloc[-1] == new_score
    rows = _page_data(copy_of / "report" / "data.js")["episodes"]
    assert [row["episode"] for row in rows if row["corrected"]] == [episode]  # the rebuilt page marks it


@pytest.mark.slow
def test_corrections_refill_rewrite_every_output_file_and_survive_a_resume(copy_of, demo_root, tiny_models, tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from labeling.correct import main as correct

    out = copy_of
    before = _frames(out)
    episode, dropped = 0, 3
    last = int((before["episode_index"] == episode).sum()) - 1
    path = _corrections(tmp_path / "corrections.json", keyframes=[{"episode": episode, "frame": 0, "score": 1},
                                                                   {"episode": episode, "frame": last, "score": 5}],
                        verdicts=[{"episode": 1, "success": True}], dropped=[dropped])
    assert correct([str(out), str(path)]) == 0

    frames = _frames(out)
    curve = frames[frames["episode_index"] == episode]
    assert curve["score"].iloc[0] == 1 and curve["score"].iloc[-1] == 5  # the reviewer's scores at their frames
    assert (np.diff(curve["expected"]) >= -1e-9).all()  # refilled by the progress stage's fill, between them
    assert dropped not in set(frames["episode_index"])
    others = before[~before["episode_index"].isin([episode, dropped])]
    others = others.assign(success=others["success"] | (others["episode_index"] == 1))  # the reviewer's verdict
    pd.testing.assert_frame_equal(frames[frames["episode_index"].isin(others["episode_index"].unique())]
                                  .reset_index(drop=True), others.reset_index(drop=True))
    assert read_outcomes(out)[1]  # and in the episode table every consumer reads

    dataset = LeRobotDataset("local/labeled", root=out)
    table = dataset.hf_dataset.to_pandas()
    assert (table[table["episode_index"] == dropped]["reward.labeled"] == 0).all()
    assert table[table["episode_index"] == episode]["reward.score"].iloc[-1] == 5
    assert str(dropped) not in map(str, read_keypoints(out / "rewact_extensions" / "reward_keypoints.json"))
    progress = pd.read_parquet(out / "sarm_progress.parquet")
    assert progress[progress["episode_index"] == episode]["progress_sparse"].iloc[-1] == 1.0
    keyframes = pd.read_parquet(out / LABELS_DIR / "keyframes.parquet")
    assert set(keyframes[keyframes["source"] == "review"]["frame"]) == {0, last}
    provenance = json.loads((out / LABELS_DIR / "provenance.json").read_text())
    assert provenance["corrections"]["dropped"] == [dropped]
    assert provenance["corrections"]["verdicts"] == [{"episode": 1, "success": True}]
    assert json.loads((out / "labeling_summary.json").read_text())["skipped"] == {str(dropped): "dropped in review"}

    # A later run on the same output rebuilds the labels from the cached answers: the corrections stay.
    _label(demo_root, tiny_models["qwen2_5_vl"], out, "--overwrite")
    summary = json.loads((out / "labeling_summary.json").read_text())
    assert summary["model_calls"] == 0
    pd.testing.assert_frame_equal(_frames(out), frames)


@pytest.mark.slow
def test_an_output_labeled_with_the_retired_unimodal_fill_can_still_be_corrected(copy_of, tmp_path):
    from labeling.correct import main as correct

    provenance_path = copy_of / LABELS_DIR / "provenance.json"
    provenance = json.loads(provenance_path.read_text())
    provenance["config"]["progress"]["fill"] = "unimodal"  # as outputs written before the piecewise fill say
    provenance_path.write_text(json.dumps(provenance))
    last = int((_frames(copy_of)["episode_index"] == 0).sum()) - 1
    path = _corrections(tmp_path / "c.json", keyframes=[{"episode": 0, "frame": 0, "score": 1},
                                                       {"episode": 0, "frame": last, "score": 5}])
    assert correct([str(copy_of), str(path)]) == 0
    curve = _frames(copy_of).query("episode_index == 0")
    assert curve["score"].iloc[0] == 1 and curve["score"].iloc[-1] == 5  # refilled, by its successor


@pytest.mark.slow
def test_negatives_verdicts_and_raw_answers_reach_the_page_and_survive_a_correction(demo_root, fake_openai, tmp_path,
                                                                                    cli):
    base_url, _ = fake_openai()
    out = tmp_path / "labeled"
    assert label(["--dataset", str(demo_root), "--out", str(out), "--backend", "openai", "--base-url", base_url,
                  "--model", "served", "--episodes", "0,7", "--image-size", "64", "--quiet"]) == 0
    rows = _page_data(out / "report" / "data.js")["episodes"]
    assert [row["episode"] for row in rows if row["verdict"] != "not labeled"] == [0, 7]
    detail = _page_data(out / "report" / "episodes" / "000000.js")
    assert detail["negatives"] and detail["verdicts"] and detail["task_rewrite"][0]["paraphrases"]
    stages = {answer["stage"] for answer in detail["raw_answers"]}
    assert stages == {"progress", "describe", "counterfactual", "validate"}

    sidecar = {name: pd.read_parquet(out / LABELS_DIR / f"{name}.parquet")
               for name in ("negatives", "verdicts", "tasks")}
    keyframes = pd.read_parquet(out / LABELS_DIR / "keyframes.parquet")
    last = int(keyframes[keyframes["episode_index"] == 7]["frame"].max())
    result = cli("labeling.correct", out, _corrections(tmp_path / "c.json",
                                                       keyframes=[{"episode": 7, "frame": last, "score": 2}]))
    assert result.returncode == 0, result.stderr
    for name, table in sidecar.items():  # read back into the pipeline's records and written again, unchanged
        pd.testing.assert_frame_equal(pd.read_parquet(out / LABELS_DIR / f"{name}.parquet"), table)
    assert _frames(out).groupby("episode_index")["score"].last().to_dict()[7] == 2


@pytest.mark.slow
def test_bad_corrections_are_one_line_errors_and_change_nothing(labeled, tmp_path, cli):
    digest = (labeled / LABELS_DIR / "frames.parquet").read_bytes()
    cases = [
        (tmp_path / "missing.json", "cannot read corrections"),
        (_corrections(tmp_path / "a.json", keyframes=[{"episode": 0, "frame": 0, "score": 7}]), "outside 1-5"),
        (_corrections(tmp_path / "b.json", dropped=[99]), "no such episode"),
        (_corrections(tmp_path / "c.json", keyframes=[{"episode": 0, "frame": 10_000, "score": 2}]), "has no frame"),
    ]
    (tmp_path / "d.json").write_text(json.dumps({"format": "something else"}))
    cases.append((tmp_path / "d.json", "expected 'labeling-corrections/1'"))
    for path, message in cases:
        result = cli("labeling.correct", labeled, path)
        assert result.returncode == 2, result
        assert result.stderr.startswith("error: ") and message in result.stderr and result.stderr.count("\n") == 1
    assert (labeled / LABELS_DIR / "frames.parquet").read_bytes() == digest
    assert not (labeled.with_name("labeled.cache") / "corrections.json").exists()


def test_reviewed_verdicts_replace_the_runs_own():
    from labeling.config import LabelingConfig
    from labeling.output import episode_table
    from labeling.pipeline import LabeledEpisodes
    from labeling.records import EpisodeLabels

    def labels(episode, final):
        return EpisodeLabels(episode, 3, "t", expected=np.array([1.0, 2.0, final]), score=np.array([1, 2, round(final)]))

    result = LabeledEpisodes({0: labels(0, 4.8), 1: labels(1, 2.0)}, {0: True, 1: False}, skipped={2: "unreadable"})
    apply_corrections(Corrections(verdicts={0: False, 1: True}), result, LabelingConfig(), dataset="")
    table = episode_table(result, 3.5, {0: 0, 1: 1, 2: 2}, reviewed={0, 1})
    assert table["success"].tolist() == [False, True, False]  # the skipped episode has no verdict
    assert table["reason"].tolist() == ["set in review", "set in review", "unreadable"]
