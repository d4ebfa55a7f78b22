"""cloud_bridge: the cloud side of escalation — workers that take edged's MQTT requests and answer them
with an LLM backend (an OpenAI-compatible HTTP server or in-process llama.cpp)."""

import os

# One OpenBLAS thread, before anything imports numpy: the in-process llama.cpp backend needs every core and an
# idle OpenBLAS worker still spins now and then. An operator's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
