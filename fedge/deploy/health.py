"""Is a SuperLink or SuperNode up? Both answer ``GET /health`` over HTTP(S).

The SuperLink serves it on its one port (HTTPS when it has TLS); a SuperNode
on its local Runtime API port (plain HTTP on 127.0.0.1 by default).
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# What a container of either role answers on, with Flower's default ports.
LOCAL_URLS = (
    "https://127.0.0.1:8000/health",
    "http://127.0.0.1:8000/health",
    "http://127.0.0.1:9094/health",
)


@dataclass(frozen=True)
class Probe:
    url: str
    ok: bool
    detail: str


def probe(url: str, ca_cert: Path | None = None, timeout: float = 5.0) -> Probe:
    """GET ``url``. HTTPS is verified against ``ca_cert`` when given; without it
    only 127.0.0.1/localhost URLs are probed unverified (a liveness check)."""
    context = None
    if url.startswith("https://"):
        if ca_cert is not None:
            context = ssl.create_default_context(cafile=str(ca_cert))
        elif url.startswith(("https://127.0.0.1", "https://localhost")):
            context = ssl.create_default_context()  # loopback liveness: no identity check
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            return Probe(url, False, "HTTPS to another host needs --ca (the federation's ca.crt)")
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return Probe(url, response.status == 200, f"HTTP {response.status}")
    except urllib.error.HTTPError as e:
        return Probe(url, False, f"HTTP {e.code}")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return Probe(url, False, str(reason))


def first_healthy(
    urls: Sequence[str], ca_cert: Path | None = None, timeout: float = 5.0
) -> tuple[Probe | None, list[Probe]]:
    """The first URL that answers 200, and every probe made."""
    probes = []
    for url in urls:
        result = probe(url, ca_cert, timeout)
        probes.append(result)
        if result.ok:
            return result, probes
    return None, probes
