"""What every stage needs: the dataset, the model caller, the prompts and the clip layout."""

from __future__ import annotations

from dataclasses import dataclass

from labeling.calls import ModelCaller
from labeling.clips import ClipSpec
from labeling.dataset import EpisodeSource
from labeling.prompts import PromptLibrary


@dataclass
class LabelingContext:
    source: EpisodeSource
    caller: ModelCaller
    prompts: PromptLibrary
    clip: ClipSpec
    episodes: list[int]
    episodes_per_group: int = 8  # episodes whose frames are in memory at once

    def groups(self) -> list[list[int]]:
        size = max(1, self.episodes_per_group)
        return [self.episodes[i : i + size] for i in range(0, len(self.episodes), size)]
