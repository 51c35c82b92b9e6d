"""The ServerApp: Flower's entry point on the server side."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedge.config import FedgeConfig, from_run_config
from fedge.extras import require_torch
from server.rounds import RoundCallback


def build_server_app(
    cfg: FedgeConfig | None = None,
    *,
    printer: Callable[[str], None] | None = print,
    on_embed_progress: Callable[[int], None] | None = None,
    callbacks: Sequence[RoundCallback] = (),
) -> ServerApp:
    """A ServerApp for ``cfg``, or (None) for the run config Flower provides.

    ``printer`` gets one line per round (None: no lines); ``callbacks`` get
    every round's report as well (a live display, for example)."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        require_torch("the fedge ServerApp")
        from server.federation import run_server

        run_cfg = cfg if cfg is not None else from_run_config(context.run_config)
        run_server(
            grid,
            run_cfg,
            extra_callbacks=callbacks,
            printer=printer,
            on_embed_progress=on_embed_progress,
        )

    return server_app


app = build_server_app()
