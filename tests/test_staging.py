"""`common.staging`: outputs are built in `<out>.partial` and appear whole or not at all."""

import pytest

from common.staging import publish, staging_dir, write_file


def test_a_fresh_staging_directory_drops_a_killed_runs_leftovers(tmp_path):
    out = tmp_path / "labeled"
    leftover = tmp_path / "labeled.partial" / "half.parquet"
    leftover.parent.mkdir()
    leftover.write_text("half")
    assert staging_dir(out) == leftover.parent and not leftover.parent.exists()


def test_a_resumed_staging_directory_keeps_its_checkpoints(tmp_path):
    checkpoint = tmp_path / "model.partial" / "state.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_text("step 200")
    assert staging_dir(tmp_path / "model", resume=True) == checkpoint.parent and checkpoint.read_text() == "step 200"


def test_publish_replaces_the_old_output_only_with_a_finished_one(tmp_path):
    out = tmp_path / "labeled"
    (out / "old").mkdir(parents=True)
    staging = staging_dir(out)
    (staging / "new").mkdir(parents=True)
    assert (out / "old").is_dir()  # still the previous output while the new one is built
    assert publish(staging, out) == out
    assert sorted(p.name for p in out.iterdir()) == ["new"] and not staging.exists()


def test_a_file_is_replaced_only_by_a_finished_write(tmp_path):
    out = tmp_path / "scores" / "threshold.json"
    write_file(out, lambda partial: partial.write_text("old"))

    def killed(partial):
        partial.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_file(out, killed)
    assert out.read_text() == "old"
    assert write_file(out, lambda partial: partial.write_text("new")) == out and out.read_text() == "new"
    assert [p.name for p in out.parent.iterdir()] == ["threshold.json"]  # the killed write's leftover is gone
