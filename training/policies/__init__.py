"""What policies trained here need computed from a dataset beforehand (ACTvantage's advantages)."""
