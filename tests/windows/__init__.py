"""Tests of streamrisk.windows: scenarios and oracle-based properties."""
