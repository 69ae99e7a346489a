"""Training and test data: procedural scenes with exact ground truth, datasets over clips."""
