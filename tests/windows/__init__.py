"""Tests of streamrisk.windows: scenarios, oracle-based properties and the record codec."""
