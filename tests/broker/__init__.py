"""Tests of the embedded broker (streamrisk.broker)."""
