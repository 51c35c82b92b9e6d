"""The ServerApp: Flower's entry point on the server side."""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedge.config import FedgeConfig, from_run_config
from server.federation import run_server


def build_server_app(
    cfg: FedgeConfig | None = None,
    *,
    printer: Callable[[str], None] | None = print,
    on_embed_progress: Callable[[int], None] | None = None,
) -> ServerApp:
    """A ServerApp for ``cfg``, or (None) for the run config Flower provides."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        run_cfg = cfg if cfg is not None else from_run_config(context.run_config)
        run_server(grid, run_cfg, printer=printer, on_embed_progress=on_embed_progress)

    return server_app


app = build_server_app()
