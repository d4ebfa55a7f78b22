"""cloud_bridge: the cloud side of escalation — workers that take edged's MQTT requests and answer them
with an LLM backend (an OpenAI-compatible HTTP server or in-process llama.cpp)."""
