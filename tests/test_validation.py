import re

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from server.validation import UpdateRules, screen_updates

GLOBAL = {"head.weight": np.zeros((3, 4), np.float32), "head.bias": np.zeros(3, np.float32)}


def _record(arrays):
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()})


def _reply(node, arrays=None, metrics=None, extra_records=None):
    arrays = {k: v + 0.1 for k, v in GLOBAL.items()} if arrays is None else arrays
    content = RecordDict(
        {
            "arrays": _record(arrays),
            "metrics": MetricRecord(
                {"num-examples": 10, "train-loss": 0.5} if metrics is None else metrics
            ),
            **(extra_records or {}),
        }
    )
    msg = Message(content, dst_node_id=0, message_type="train")
    msg.metadata.__dict__["_src_node_id"] = node
    return msg


def _bad(**changes):
    return {**{k: v + 0.1 for k, v in GLOBAL.items()}, **changes}


CASES = [  # (how the reply is broken, what the reason must say)
    ({"arrays": {"head.weight": GLOBAL["head.weight"]}}, r"missing \['head.bias'\]"),
    ({"arrays": _bad(extra=np.zeros(2, np.float32))}, r"unexpected \['extra'\]"),
    ({"arrays": _bad(**{"head.bias": np.zeros(4, np.float32)})}, r"shape \(4,\), expected"),
    ({"arrays": _bad(**{"head.bias": np.zeros(3, np.float64)})}, "dtype float64"),
    ({"arrays": _bad(**{"head.bias": np.array([0, np.nan, 0], np.float32)})}, "non-finite"),
    ({"metrics": {"train-loss": 0.5}}, "'num-examples' is missing"),
    ({"metrics": {"num-examples": 0, "train-loss": 0.5}}, "positive finite"),
    ({"extra_records": {"more": _record(GLOBAL)}}, "expected one ArrayRecord"),
    ({"metrics": {"num-examples": 10, "train-loss": 0.5, "odd": 1.0}}, "metric keys differ"),
]


def test_each_broken_update_is_rejected_with_its_node_and_reason(flower_task):
    good = [_reply(100), _reply(101)]
    broken = [_reply(node, **how) for node, (how, _) in enumerate(CASES, start=1)]
    accepted, rejected = screen_updates(good + broken, _record(GLOBAL), UpdateRules())
    assert [m.metadata.src_node_id for m in accepted] == [100, 101]
    reasons = dict(rejected)
    assert sorted(reasons) == list(range(1, len(CASES) + 1))
    for node, (_, pattern) in enumerate(CASES, start=1):
        assert reasons[node].startswith("rejected update: ")
        assert re.search(pattern, reasons[node]), (node, reasons[node])
    # the rest aggregates as if the broken ones had never been sent
    arrays, _ = FedAvg().aggregate_train(1, accepted)
    np.testing.assert_allclose(arrays["head.bias"].numpy(), 0.1, rtol=1e-6)


def test_update_norm_limit_is_on_new_minus_global(flower_task):
    near = _reply(1)  # every coordinate +0.1: norm sqrt(15) * 0.1 = 0.387
    far = _reply(2, arrays={k: v + 1.0 for k, v in GLOBAL.items()})  # norm 3.87
    accepted, rejected = screen_updates(
        [near, far], _record(GLOBAL), UpdateRules(max_update_norm=1.0)
    )
    assert [m.metadata.src_node_id for m in accepted] == [1]
    assert rejected == [(2, "rejected update: update norm 3.873 exceeds max-update-norm 1")]


def test_no_norm_limit_by_default(flower_task):
    far = _reply(2, arrays={k: v + 1e6 for k, v in GLOBAL.items()})
    accepted, rejected = screen_updates([far], _record(GLOBAL), UpdateRules())
    assert len(accepted) == 1 and not rejected


def test_updates_are_checked_against_the_heads_own_dtypes(flower_task):
    """FedAdam aggregates in float64; clients still send their float32 head."""
    wide = _record({k: v.astype(np.float64) for k, v in GLOBAL.items()})
    rules = UpdateRules(dtypes={k: str(v.dtype) for k, v in GLOBAL.items()})
    accepted, rejected = screen_updates([_reply(1)], wide, rules)
    assert len(accepted) == 1 and not rejected
    _, rejected = screen_updates([_reply(1)], wide, UpdateRules())
    assert rejected == [(1, "rejected update: 'head.weight' has dtype float32, expected float64")]


def _statistics_reply(node, counts):
    content = RecordDict(
        {
            "statistics": _record({"counts": counts, "sums": np.ones((3, 4), np.float32)}),
            "metrics": MetricRecord({"num-examples": 10}),
        }
    )
    msg = Message(content, dst_node_id=0, message_type="train")
    msg.metadata.__dict__["_src_node_id"] = node
    return msg


def test_closed_form_statistics_pass_when_finite_and_are_rejected_otherwise(flower_task):
    good = _statistics_reply(1, np.array([3, 4, 3], np.float32))
    bad = _statistics_reply(2, np.array([3, np.inf, 3], np.float32))
    accepted, rejected = screen_updates([good, bad], _record(GLOBAL), UpdateRules())
    assert [m.metadata.src_node_id for m in accepted] == [1]
    assert rejected == [
        (2, "rejected update: statistics 'counts' has non-finite values (NaN or inf)")
    ]
