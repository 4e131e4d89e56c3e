"""Everything that talks to mesh-llm: framing, the host session, the mesh view."""
