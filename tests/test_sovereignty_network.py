"""Nothing in the privacy gate touches the network: loading Presidio and spaCy, scanning (e-mail validation uses
tldextract, whose default extractor downloads the public suffix list), redacting, scanning a reply and writing
the audit log run in a fresh interpreter whose audit hook records, and refuses, every socket connect and name
lookup. A positive control in the same process shows the hook catches tldextract's default download."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, sys
events = []
NETWORK = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "urllib.Request"}
def hook(event, args):
    if event in NETWORK:
        events.append(event + " " + repr(args)[:120])
        raise ConnectionRefusedError("network blocked by the test's audit hook")
sys.addaudithook(hook)

from pathlib import Path
from edged.config.privacy import PrivacySettings
from edged.domain import Message
from edged.sovereignty.audit import AuditLog, AuditRoute
from edged.sovereignty.gate import SensitivityGate

gate = SensitivityGate.load(PrivacySettings())
messages = [
    Message("system", "Contacts: ops@example.co.uk, a.b@mail.example.org, x@sub.example.com.au."),
    Message("user", "I'm Maria Garcia (maria.garcia@gmail.com, +44 20 7946 0958), see https://example.com/x."),
]
verdict = gate.assess(messages)
release = gate.release(messages, verdict)
report = gate.scan_reply("Dear <PERSON_1>, write to jo@example.net.", release)
audit = AuditLog(Path(sys.argv[1]))
audit.record(request_id="r1", route=AuditRoute.CLOUD_REDACTED, verdict=verdict, messages=messages)
during = list(events)

import tldextract
try:
    tldextract.TLDExtract(cache_dir=sys.argv[1] + "/tld-cache")("someone@example.com")
except Exception:
    pass
print(json.dumps({"during": during, "control": events[len(during):], "entities": dict(verdict.entities),
                  "invented": report.invented, "redacted": release.redacted}))
"""


def test_load_scan_redact_and_audit_open_no_connection(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TLDEXTRACT")}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))  # no cached suffix list to lean on
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "audit")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["during"] == []
    assert result["entities"]["EMAIL_ADDRESS"] == 4  # the e-mail recognizer did validate domains
    assert result["invented"] == {"EMAIL_ADDRESS": 1}
    assert result["redacted"] is True
    assert any(e.startswith(("socket.", "urllib.")) for e in result["control"]), result["control"]
