"""Recordings: topics written to JSON Lines (`streamrisk record`) and sent back (`streamrisk replay`)."""
