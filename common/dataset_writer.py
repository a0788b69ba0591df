"""Create LeRobot datasets for the splits and negatives this project records.

LeRobot encodes each episode's video with SVT-AV1, whose library prints a twenty-line banner
per encoder to the terminal; over hundreds of episodes that buries the progress bars. Errors
still print.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

SVT_LOG_ERRORS_ONLY = "1"  # SVT-AV1's SVT_LOG levels: 0 fatal, 1 error, 2 warning, 3 info (default)


def create_dataset(**kwargs: Any) -> LeRobotDataset:
    """`LeRobotDataset.create(**kwargs)` with the video encoder's banner silenced, unless SVT_LOG is set."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    os.environ.setdefault("SVT_LOG", SVT_LOG_ERRORS_ONLY)
    return LeRobotDataset.create(**kwargs)
