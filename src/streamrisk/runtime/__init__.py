"""The worker around the core: the batch loop, delivery and checkpoints, the broadcast reader, the
collector and topic admin."""
