"""The backbone delivery protocol between the server and edge clients.

Before a node's first round the server sends it a ``query.backbone`` message
(``step = status``, the run's backbone ``fingerprint``). The node answers with
its ``runtime`` and the artifact ``format`` it needs (empty for PyTorch
clients, which build the backbone themselves) and the ``sha256`` of a matching
artifact it already holds. When the node lacks the server's artifact, the
server sends it once (``step = deliver``: the ``info`` JSON and the file's
bytes under ``artifact``, in a ConfigRecord); the node checks the bytes
against the sha256 and keeps them. After that only the head travels.
"""

from __future__ import annotations

from dataclasses import dataclass

from flwr.app import ConfigRecord, RecordDict

from fedge.artifacts import ArtifactInfo

MESSAGE_TYPE = "query.backbone"
RECORD = "backbone"
STATUS, DELIVER = "status", "deliver"


def status_request(fingerprint: str) -> RecordDict:
    return RecordDict({RECORD: ConfigRecord({"step": STATUS, "fingerprint": fingerprint})})


def delivery_request(info: ArtifactInfo, data: bytes) -> RecordDict:
    record = ConfigRecord({"step": DELIVER, "info": info.to_json(), "artifact": data})
    return RecordDict({RECORD: record})


@dataclass(frozen=True)
class NodeStatus:
    """A node's answer: its runtime, the format it needs ('' = none), the
    sha256 of the matching artifact it holds ('' = none)."""

    runtime: str
    format: str
    sha256: str

    def to_content(self) -> RecordDict:
        record = ConfigRecord(
            {"runtime": self.runtime, "format": self.format, "sha256": self.sha256}
        )
        return RecordDict({RECORD: record})

    @classmethod
    def from_content(cls, content: RecordDict) -> NodeStatus:
        r = content[RECORD]
        return cls(str(r["runtime"]), str(r["format"]), str(r["sha256"]))


def request_of(content: RecordDict) -> ConfigRecord:
    record = content[RECORD]
    assert isinstance(record, ConfigRecord)
    return record
