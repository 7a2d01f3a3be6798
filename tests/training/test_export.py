"""Point-in-time export: each payment's row is what its decision saw, so no feature sees a later event
(checked against the same recording cut right after the payment, and on a chargeback that comes later)."""

from __future__ import annotations

import orjson

from streamrisk.loadgen import patterns
from streamrisk.loadgen.patterns import DAY, HOUR, MINUTE
from streamrisk.recording.jsonl import Recorded
from streamrisk.rules import default_ruleset
from streamrisk.settings import Settings
from streamrisk.training.export import FEATURES, export_features

NOW = 1_700_000_000_000


def _recorded(recs: list) -> list[Recorded]:
    recs = sorted(recs, key=lambda r: r[2]["ts"])
    return [Recorded(t, k, orjson.dumps(v), v["ts"] + 5) for t, k, v in recs]


def recording() -> list[Recorded]:
    """A month of a normal user, who is then defrauded: a big payment from a new device, charged back
    two days later; then a burst from the thief's device, and one more payment from the owner's phone."""
    recs = patterns.normal_user("u1", NOW - 3 * DAY)
    recs.append(patterns.payment("u1:big", "u1", "shop-9", 900.0, NOW - 3 * DAY + HOUR, device="thief"))
    recs.append(patterns.chargeback("u1:cb", "u1:big", "u1", "shop-9", 900.0, NOW - DAY))
    recs += [patterns.payment(f"u1:b{i}", "u1", "shop-9", 40.0, NOW - DAY + MINUTE + i * 10_000,
                              device="thief") for i in range(12)]
    recs.append(patterns.payment("u1:last", "u1", "shop-1", 30.0, NOW, device="u1-phone"))
    recs.append(patterns.repayment("u1:r", "u1", 10.0, NOW + HOUR, NOW - 2 * DAY))
    return _recorded(recs)


def _row(export, event_id: str) -> dict[str, float]:
    i = export.event_ids.index(event_id)
    return dict(zip(export.features, export.rows[i], strict=True))


def test_a_payments_row_equals_its_row_from_the_recording_cut_right_after_it() -> None:
    full = recording()
    whole = export_features(full, Settings(), default_ruleset())
    assert len(whole) == 30 * 1.5 + 1 + 12 + 1  # every payment decided once, in decision order
    for event_id in ("u1:n3-0", "u1:big", "u1:b0", "u1:b11", "u1:last"):
        cut = next(i for i, r in enumerate(full) if r.topic == "payments"
                   and orjson.loads(r.value)["event_id"] == event_id)
        alone = export_features(full[:cut + 1], Settings(), default_ruleset())
        assert alone.event_ids[-1] == event_id
        assert _row(whole, event_id) == _row(alone, event_id), event_id


def test_a_later_chargeback_is_not_seen_by_the_payment_it_names_but_by_payments_after_it() -> None:
    e = export_features(recording(), Settings(), default_ruleset())
    assert _row(e, "u1:big")["user.chargeback_count_30d"] == 0.0
    assert _row(e, "u1:big")["user.new_device"] == 1.0
    assert _row(e, "u1:b0")["user.chargeback_count_30d"] == 1.0
    assert _row(e, "u1:b11")["user.payment_count_5m"] == 12.0
    assert _row(e, "u1:b0")["user.payment_count_5m"] == 1.0  # the burst's first sees none of the rest
    # The hand-set side is kept per payment: its score, and the verdict the rules gave.
    i = e.event_ids.index("u1:b11")
    assert e.live_action[i] == "decline" and "VELOCITY_5M" in e.reasons[i] and e.rule_rank[i] == 2
    assert 0.0 < e.handset_score[i] < 1.0


def test_the_streams_label_events_are_kept_beside_the_rows() -> None:
    e = export_features(recording(), Settings(), default_ruleset())
    assert [(c.payment_id, c.reason) for c in e.chargebacks] == [("u1:big", "fraud")]
    assert [(r.user_id, r.ts - r.due_ts) for r in e.repayments] == [("u1", 2 * DAY + HOUR)]
    assert e.features == FEATURES and e.matrix().shape == (len(e), len(FEATURES))
