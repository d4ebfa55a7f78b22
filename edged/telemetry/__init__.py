"""Observability: Prometheus metrics (metrics.py) and journald-friendly logging (logging.py)."""
