"""The app's ClientApp (``[tool.flwr.app.components] clientapp``): hands each
message to the PyTorch client or to the edge client, as the node's kind says
(``client/kinds.py``). Each client is imported on first use, so a node
without PyTorch never imports it.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from client.kinds import EDGE, TORCH, client_kind
from fedge import delivery
from fedge.config import FedgeConfig, from_run_config
from fedge.extras import require_torch


def _torch_app(cfg: FedgeConfig | None) -> ClientApp:
    require_torch("a PyTorch client (node config runtime=torch, or no runtime given)")
    from client.app import build_client_app

    return build_client_app(cfg)


def _edge_app(cfg: FedgeConfig | None) -> ClientApp:
    from client.edge_app import build_edge_app

    return build_edge_app(cfg)


def _no_artifact_needed(message: Message) -> Message:
    """A PyTorch client builds its backbone itself: it needs no artifact."""
    status = delivery.NodeStatus(runtime=TORCH, format="", sha256="")
    return Message(status.to_content(), reply_to=message)


class DispatchingClientApp(ClientApp):
    """A ClientApp that serves each node as its kind: PyTorch or edge."""

    def __init__(self, cfg: FedgeConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self._apps: dict[str, ClientApp] = {}

    def _app(self, kind: str) -> ClientApp:
        if kind not in self._apps:
            self._apps[kind] = _edge_app(self.cfg) if kind == EDGE else _torch_app(self.cfg)
        return self._apps[kind]

    def __call__(self, message: Message, context: Context) -> Message:
        cfg = self.cfg if self.cfg is not None else from_run_config(context.run_config)
        kind = client_kind(cfg, context.node_config).kind
        if kind == TORCH and message.metadata.message_type == delivery.MESSAGE_TYPE:
            return _no_artifact_needed(message)
        return self._app(kind)(message=message, context=context)


def build_dispatching_app(cfg: FedgeConfig | None = None) -> ClientApp:
    """The ClientApp for ``cfg``, or (None) for the run config Flower provides."""
    return DispatchingClientApp(cfg)


app = build_dispatching_app()
