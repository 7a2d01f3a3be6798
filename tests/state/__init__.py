"""Tests of streamrisk.state: the chunked entity store and rebuilding entities from it."""
