"""Backtests and shadow reports: two rulesets' decisions on the same payments, side by side, with
precision and recall against the chargebacks the stream itself carries."""
