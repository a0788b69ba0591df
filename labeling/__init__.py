"""RoboReward-style progress labeling of LeRobot datasets."""
