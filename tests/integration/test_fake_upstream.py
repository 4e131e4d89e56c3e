"""The fake mesh-llm API answers the way the gate and the devnet expect mesh-llm to."""

from __future__ import annotations

import json

import httpx
import pytest
from mesh_x402.devnet.fake_upstream import FAILURE_HEADER, FakeModel, FakeUpstream

pytestmark = pytest.mark.integration


def client(fake: FakeUpstream) -> httpx.Client:
    return httpx.Client(base_url=fake.url, trust_env=False)


def sse_documents(raw: bytes) -> list[dict]:
    return [
        json.loads(block[len(b"data: ") :])
        for block in raw.split(b"\n\n")
        if block.startswith(b"data: ") and block != b"data: [DONE]"
    ]


class TestFakeUpstream:
    def test_models_can_change_while_serving(self) -> None:
        """The devnet gives each node its own models."""
        with FakeUpstream([FakeModel("a")]) as fake, client(fake) as http:
            assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["a"]
            fake.set_models([FakeModel("b", owned_by="node-2"), FakeModel("c")])
            listed = http.get("/v1/models").json()["data"]
            assert [(m["id"], m["owned_by"]) for m in listed] == [
                ("b", "node-2"),
                ("c", "mesh-llm"),
            ]
            gone = http.post("/v1/chat/completions", json={"model": "a", "messages": []})
            assert gone.status_code == 404
            assert gone.json()["error"]["code"] == "model_not_found"

    def test_stream_without_include_usage_has_no_usage(self) -> None:
        """Like OpenAI and llama.cpp: usage in a stream only when asked."""
        body = {"model": "m", "prompt": "abcdefgh", "stream": True, "max_tokens": 3}
        with FakeUpstream([FakeModel("m")]) as fake, client(fake) as http:
            plain = sse_documents(http.post("/v1/completions", json=body).content)
            asked = sse_documents(
                http.post(
                    "/v1/completions", json={**body, "stream_options": {"include_usage": True}}
                ).content
            )
        assert all("usage" not in doc for doc in plain)
        assert asked[-1] == {**asked[-1], "choices": [], "usage": asked[-1]["usage"]}
        assert asked[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
        assert all(doc["usage"] is None for doc in asked[:-1])
        assert plain[-1]["choices"][0]["finish_reason"] == "length"

    def test_request_id_echoed_or_minted(self) -> None:
        with FakeUpstream([FakeModel("m")]) as fake, client(fake) as http:
            echoed = http.get("/v1/models", headers={"x-request-id": "abc"})
            minted = http.get("/v1/models")
        assert echoed.headers["x-request-id"] == "abc"
        assert minted.headers["x-request-id"].startswith("req-")
        assert [r.request_id for r in fake.requests] == ["abc", minted.headers["x-request-id"]]

    @pytest.mark.parametrize(
        ("content", "status"),
        [(b"{not json", 400), (b"[1]", 400), (b"[" * 200_000, 400), (b'{"model": 5}', 404)],
    )
    def test_bad_requests_get_openai_errors(self, content: bytes, status: int) -> None:
        with FakeUpstream([FakeModel("m")]) as fake, client(fake) as http:
            answer = http.post("/v1/chat/completions", content=content)
        assert answer.status_code == status
        assert answer.json()["error"]["message"]

    def test_unknown_failure_header_is_refused(self) -> None:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        with FakeUpstream([FakeModel("m")]) as fake, client(fake) as http:
            answer = http.post("/v1/chat/completions", json=body, headers={FAILURE_HEADER: "nope"})
        assert answer.status_code == 400
        assert FAILURE_HEADER in answer.json()["error"]["message"]

    def test_unknown_failure_mode_in_config_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown failure"):
            FakeModel("m", failure="explode")

    def test_text_length_matches_the_token_count(self) -> None:
        """Four characters per completion token, so the devnet's metering is realistic."""
        body = {"model": "m", "messages": [{"role": "user", "content": "x" * 9}]}
        with FakeUpstream([FakeModel("m", completion_tokens=7)]) as fake, client(fake) as http:
            answer = http.post("/v1/chat/completions", json=body).json()
        assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}
        assert len(answer["choices"][0]["message"]["content"]) == 4 * 7
        assert answer["choices"][0]["finish_reason"] == "stop"
