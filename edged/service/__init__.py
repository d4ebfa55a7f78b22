"""Service lifecycle: running under systemd (readiness, watchdog, reload and stop notifications)."""
