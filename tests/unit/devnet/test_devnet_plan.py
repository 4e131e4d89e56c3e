"""The devnet's mesh layout, request plan, progress output and report, without processes."""

from __future__ import annotations

import io
import json
from itertools import product

import pytest
from mesh_x402.devnet.progress import Progress
from mesh_x402.devnet.report import (
    AgentLine,
    ChainInfo,
    Check,
    ClientLine,
    DevnetReport,
    RequestLine,
    SettlementInfo,
)
from mesh_x402.devnet.topology import mesh_layout, plan_requests


class TestMeshLayout:
    @pytest.mark.parametrize("nodes", [2, 3, 5])
    def test_one_model_per_attribution_case(self, nodes: int) -> None:
        """A model on node 0, one on node 1, and one split across two nodes (hosted by both)."""
        models, layout = mesh_layout(nodes)
        assert len(layout) == nodes
        solo = [m for m in models if not m.split]
        split = [m for m in models if m.split]
        assert [m.hosted for m in solo] == [(0,), (1,)]
        assert len(split) == 1
        assert split[0].hosted == (nodes - 2, nodes - 1)
        for model in split:
            for index in model.hosted:
                assert model.id in layout[index].hosted_models
        assert len({node.vram_bytes for node in layout[:3]}) == min(nodes, 3)

    def test_one_node_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least 2 nodes"):
            mesh_layout(1)


class TestPlan:
    @pytest.mark.parametrize(("requests", "nodes"), [(6, 2), (12, 3), (24, 3)])
    def test_every_entry_node_sees_every_model_streamed_and_not(
        self, requests: int, nodes: int
    ) -> None:
        """Enough requests reach every (entry, model) pair and both modes at every entry."""
        models, _ = mesh_layout(nodes)
        plan = plan_requests(requests, nodes, 2, models)
        assert [p.index for p in plan] == list(range(requests))
        assert {p.entry for p in plan} == set(range(nodes))
        assert {p.client for p in plan} == {0, 1}
        for entry in range(nodes):
            mine = [p for p in plan if p.entry == entry]
            assert {p.stream for p in mine} == {True, False}
            if requests >= nodes * len(models):
                assert {p.model for p in mine} == {m.id for m in models}
        if requests >= nodes * len(models) * 2:
            pairs = {(p.entry, p.model) for p in plan}
            assert pairs == set(product(range(nodes), [m.id for m in models]))


class TestProgress:
    def test_log_lines_when_not_a_terminal(self) -> None:
        """Each step and tick is its own line, numbered, for logs and CI."""
        out = io.StringIO()
        progress = Progress(2, stream=out, interactive=False)
        progress.step("deploying")
        progress.tick(1, 3, "alice -> node-0")
        progress.step("paying")
        progress.finish("done")
        lines = out.getvalue().splitlines()
        assert len(lines) == 4
        assert lines[0].startswith("devnet ")
        assert lines[0].endswith("[1/2] deploying")
        assert lines[1].endswith("1/3 alice -> node-0")
        assert lines[2].endswith("[2/2] paying")
        assert "\r" not in out.getvalue()

    def test_bar_redrawn_in_place_on_a_terminal(self) -> None:
        """One line redrawn with carriage returns; notes get a line of their own."""
        out = io.StringIO()
        progress = Progress(4, stream=out, interactive=True)
        progress.step("deploying")
        progress.note("a warning")
        progress.step("paying")
        progress.finish()
        text = out.getvalue()
        assert text.count("\n") == 2  # the note's line and the final one
        assert "[" + "#" * 24 + "]" in text.splitlines()[-1]
        assert "a warning\n" in text


def _report(*, ok: bool) -> DevnetReport:
    return DevnetReport(
        chain=ChainInfo(
            kind="anvil",
            rpc="http://127.0.0.1:1",
            chain_id=31337,
            token="0x" + "1" * 40,
            settlement="0x" + "2" * 40,
            identity_registry="0x" + "3" * 40,
            deployed_at=3,
        ),
        nodes=[],
        requests=[
            RequestLine(
                index=0,
                client="alice",
                entry="node-0",
                model="m",
                stream=True,
                status=200,
                receipt_id="r",
                authorized=1000,
                charged=800,
                prompt_tokens=10,
                completion_tokens=20,
                credits={0: 800},
                error=None,
            )
        ],
        clients=[
            ClientLine(
                name="alice",
                address="0x" + "4" * 40,
                funded=5000,
                requests=1,
                paid=1,
                streamed=1,
                prompt_tokens=10,
                completion_tokens=20,
                authorized=1000,
                charged=800,
                refunded=200,
                balance_after=4200,
            )
        ],
        agents=[
            AgentLine(
                agent_id=0,
                node="node-0",
                credited=800,
                acknowledged=800,
                payments=1,
                withdrawn=800,
                remaining=0,
                wallet="0x" + "5" * 40,
                wallet_balance=800,
            )
        ],
        settlement=SettlementInfo(status="settled", batches=1, settled=1),
        transactions=[],
        gas=[],
        checks=[
            Check(name="a", ok=True, detail="fine"),
            Check(name="b", ok=ok, detail="fine" if ok else "broken"),
        ],
        workdir="/tmp/x",
        seconds=1.0,
    )


class TestReport:
    def test_json_has_invariants_ok_and_summary(self) -> None:
        """`invariants` maps each check to its outcome; `ok` is their conjunction."""
        document = json.loads(_report(ok=False).to_json())
        assert document["invariants"] == {"a": True, "b": False}
        assert document["ok"] is False
        assert document["summary"]["charged"] == 800
        assert document["summary"]["refunded"] == 200
        assert document["summary"]["streamed"] == 1
        assert json.loads(_report(ok=True).to_json())["ok"] is True

    def test_text_has_one_line_per_check(self) -> None:
        text = _report(ok=False).render()
        assert "  [ok] a: fine" in text
        assert "  [FAIL] b: broken" in text
        assert text.rstrip().endswith("SOME INVARIANTS FAILED")
        assert _report(ok=True).render().rstrip().endswith("all invariants hold")
