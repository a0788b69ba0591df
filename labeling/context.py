"""What every stage needs: the dataset, the model caller, the prompts and the clip layout."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.cli import DatasetError
from common.dataset import EpisodeSource
from labeling.calls import ModelCaller
from labeling.clips import ClipImages, ClipSpec
from labeling.prompts import PromptLibrary


@dataclass
class LabelingContext:
    source: EpisodeSource
    caller: ModelCaller
    prompts: PromptLibrary
    clip: ClipSpec
    episodes: list[int]
    episodes_per_group: int = 8  # episodes whose frames are in memory at once
    # --on-bad-episode skip: an episode whose frames cannot be read is left out, not the run.
    skip_bad_episodes: bool = False
    skipped: dict[int, str] = field(default_factory=dict)  # episode -> why its frames could not be read

    def groups(self) -> list[list[int]]:
        """The episodes still in the run, in groups decoded and batched together."""
        episodes = [e for e in self.episodes if e not in self.skipped]
        size = max(1, self.episodes_per_group)
        return [episodes[i : i + size] for i in range(0, len(episodes), size)]

    def clip_images(self, episode: int, frames: set[int]) -> ClipImages | None:
        """The frames a stage needs; None once the episode is skipped as unreadable."""
        if episode in self.skipped:
            return None
        try:
            with self.caller.stats.timed("decode"):
                return ClipImages(self.source, self.clip, episode, frames)
        except DatasetError as err:
            if not self.skip_bad_episodes:
                raise
            self.skipped[episode] = str(err)
            return None
