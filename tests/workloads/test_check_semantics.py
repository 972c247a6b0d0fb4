"""How a run's history is checked: a failed cas means "the compare failed" only when the
client said so; a cas refused for another reason did not happen and is dropped."""

from kvcheck.checker.history import Op
from kvcheck.checker.linearizable import compare_failed_ops
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.run import check_ops


def history(cas_error: str) -> list[Op]:
    rows = [
        (0, "invoke", "write", 1, None), (0, "ok", "write", 1, None),
        # the register holds 1 for the whole cas: its compare cannot have failed
        (1, "invoke", "cas", [1, 2], None), (1, "fail", "cas", [1, 2], cas_error),
        (2, "invoke", "read", None, None), (2, "ok", "read", 1, None),
    ]
    return [Op(type=t, f=f, value=v, process=p, index=i, error=e, key="r")
            for i, (p, t, f, v, e) in enumerate(rows)]


def test_a_refused_cas_is_dropped_and_a_compare_failure_is_kept() -> None:
    assert [op.index for op in compare_failed_ops(history("not_leader"))] == [0, 1, 4, 5]
    assert len(compare_failed_ops(history("compare-failed"))) == 6


def test_an_impossible_compare_failure_is_an_anomaly() -> None:
    config = RunConfig(workload="register")
    assert check_ops(history("compare-failed"), config, {})["valid"] is False
    # the same cas refused by a follower did not happen: nothing to contradict
    assert check_ops(history("not_leader"), config, {})["valid"] is True
