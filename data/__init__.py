"""Ground-truth benchmark data: MetaWorld scripted rollouts written as LeRobot datasets."""
