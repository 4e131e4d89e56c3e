"""The local devnet: a whole paid mesh on one machine, and its stand-ins.

`fake_upstream` plays mesh-llm's OpenAI API, which cannot run here; the
integration tests use it too.
"""
