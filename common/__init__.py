"""The layer every other package stands on: dataset access (`dataset`), the command-line error
convention (`cli`), the 1-5 scale and its rewards (`scale`), the files a labeling run writes
(`label_files`), the ground-truth sidecar (`ground_truth`) and the reward sources read from
all of them (`reward_sources`). It imports none of `labeling`, `rewact`, `training`, `data`.
"""
