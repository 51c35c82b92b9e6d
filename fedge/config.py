"""Configuration keys, defaults and validation: the one source of truth.

Every tunable of a run is a field of :class:`FedgeConfig`. Its key (the field
name with ``-`` for ``_``) is the key used in ``[tool.flwr.app.config]``, in
``--config FILE.toml``, in ``--set KEY=VALUE`` and in Flower's ``run_config``.
Values are checked where they enter: an unknown key or a bad value raises
:class:`ConfigError` naming the key and what it accepts.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedge.errors import FedgeError

Scalar = bool | int | float | str

BACKBONES = (
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "resnet18",
    "efficientnet_b0",
)
DATASETS = ("cifar10", "image-folder", "medmnist-npz")
HEADS = ("linear", "mlp")
PARTITIONERS = ("iid", "dirichlet", "pathological")
STRATEGIES = (
    "fedavg",
    "fedprox",
    "fedadam",
    "fedyogi",
    "fedavgm",
    "fedmedian",
    "fedtrimmedavg",
    "krum",
    "closed-form",
)
INITS = ("random", "closed-form")
CLOSED_FORM_SOLVERS = ("lda", "ridge")
CLOSED_FORM_GRAMS = ("triangle", "factor")
SIMULATION_BACKENDS = ("ray", "inprocess")
OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda", "mps")
EMBEDDING_CACHES = ("disk", "memory", "off")
EDGE_RUNTIMES = ("auto", "ai-edge-litert", "tflite-runtime", "onnxruntime")


class ConfigError(FedgeError, ValueError):
    """A configuration key or value that fedge cannot use."""


def _option(
    default: Scalar,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    group: str,
) -> Any:
    return field(
        default=default,
        metadata={
            "help": help,
            "choices": choices,
            "minimum": minimum,
            "maximum": maximum,
            "exclusive_minimum": exclusive_minimum,
            "group": group,
        },
    )


@dataclass(frozen=True)
class FedgeConfig:
    """A resolved, validated run configuration (attribute = key with ``_``)."""

    # --- data ---------------------------------------------------------------
    dataset: str = _option("cifar10", "Dataset kind.", choices=DATASETS, group="data")
    data_path: str = _option(
        "",
        "Dataset location: a folder, a .tar/.tar.gz or a .npz file. Empty: "
        "cifar10 is downloaded to the cache dir. Deployment: each SuperNode's "
        "node config `data-path` overrides it.",
        group="data",
    )
    partitioner: str = _option(
        "dirichlet",
        "How simulation splits the training set across clients.",
        choices=PARTITIONERS,
        group="data",
    )
    dirichlet_alpha: float = _option(
        0.5,
        "Dirichlet concentration (smaller = more label skew).",
        minimum=0.0,
        exclusive_minimum=True,
        group="data",
    )
    classes_per_client: int = _option(
        2,
        "Classes per client for the pathological partitioner.",
        minimum=1,
        group="data",
    )
    max_samples_per_client: int = _option(
        200,
        "Cap on each client's training samples (0 = no cap).",
        minimum=0,
        group="data",
    )
    local_test_fraction: float = _option(
        0.2,
        "Share of each client's data held out as its local test split.",
        minimum=0.0,
        maximum=0.9,
        group="data",
    )
    max_test_samples: int = _option(
        1000,
        "Cap on the server's held-out test samples (0 = no cap).",
        minimum=0,
        group="data",
    )
    seed: int = _option(0, "Seed for partitions, sampling and training.", group="data")
    class_names: str = _option(
        "",
        "Comma-separated class names, for a server without data of its own (data-path "
        "empty): the model's classes; evaluation is then federated only.",
        group="data",
    )

    # --- model --------------------------------------------------------------
    backbone: str = _option(
        "mobilenet_v2",
        "Frozen torchvision backbone.",
        choices=BACKBONES,
        group="model",
    )
    weights: str = _option(
        "imagenet",
        "Backbone weights: `imagenet` (torchvision's official weights, cached "
        "or downloaded), `none` (random init) or a path to a state_dict file.",
        group="model",
    )
    image_size: int = _option(
        128,
        "Square input size the images are resized to.",
        minimum=32,
        group="model",
    )
    head: str = _option("linear", "Trainable head.", choices=HEADS, group="model")
    mlp_hidden: int = _option(256, "Hidden width of the `mlp` head.", minimum=1, group="model")
    unfreeze_last: int = _option(
        0,
        "Backbone blocks to train with the head (>0 turns the embedding cache "
        "off and sends those blocks every round).",
        minimum=0,
        group="model",
    )

    # --- federation -----------------------------------------------------------
    num_clients: int = _option(10, "Simulated clients (SuperNodes).", minimum=1, group="federation")
    num_rounds: int = _option(10, "Federated rounds.", minimum=1, group="federation")
    fraction_train: float = _option(
        1.0,
        "Share of clients sampled for training each round.",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
        group="federation",
    )
    fraction_evaluate: float = _option(
        1.0,
        "Share of clients sampled for federated evaluation (0 = skip).",
        minimum=0.0,
        maximum=1.0,
        group="federation",
    )
    min_clients: int = _option(2, "Minimum clients a round needs.", minimum=1, group="federation")
    round_timeout: float = _option(
        3600.0,
        "Seconds each wait of a round may last (for min-clients nodes to connect, for "
        "training replies, for evaluation replies); a round aggregates the replies it "
        "has if at least min-clients answered, and records who was missing.",
        minimum=0.0,
        exclusive_minimum=True,
        group="federation",
    )
    strategy: str = _option(
        "fedavg",
        "Aggregation strategy: Flower's own, or `closed-form` (the linear head solved "
        "exactly from the clients' summed embedding statistics, in one round).",
        choices=STRATEGIES,
        group="federation",
    )
    init: str = _option(
        "random",
        "Initial head: `random`, or `closed-form` (round 1 collects statistics and "
        "solves the head; the strategy's rounds continue from it).",
        choices=INITS,
        group="federation",
    )
    closed_form_solver: str = _option(
        "lda",
        "Closed-form head: `lda` (shared-covariance discriminant) or `ridge` "
        "(ridge regression on one-hot labels).",
        choices=CLOSED_FORM_SOLVERS,
        group="federation",
    )
    closed_form_shrinkage: float = _option(
        0.1,
        "Closed-form regularization: the (co)variance is shrunk this far toward a "
        "multiple of the identity (0 = none, 1 = identity only).",
        minimum=0.0,
        maximum=1.0,
        group="federation",
    )
    closed_form_gram: str = _option(
        "triangle",
        "How a client sends its Gram matrix X^T X: `triangle` (upper triangle, "
        "d(d+1)/2 floats, summable so secure aggregation applies) or `factor` "
        "(an exact factor F with F F^T = X^T X, d x min(n, d) floats: smaller when a "
        "client has fewer samples than d/2, but not summable).",
        choices=CLOSED_FORM_GRAMS,
        group="federation",
    )
    proximal_mu: float = _option(
        0.01, "FedProx proximal term weight.", minimum=0.0, group="federation"
    )
    server_lr: float = _option(
        0.0,
        "Server learning rate (fedavgm; eta of fedadam/fedyogi); 0 = the strategy's own default.",
        minimum=0.0,
        group="federation",
    )
    server_momentum: float = _option(
        0.9,
        "Server momentum (fedavgm).",
        minimum=0.0,
        maximum=1.0,
        group="federation",
    )
    trim_beta: float = _option(
        0.2,
        "Fraction trimmed at each end (fedtrimmedavg).",
        minimum=0.0,
        maximum=0.49,
        group="federation",
    )
    krum_malicious: int = _option(
        0, "Malicious clients Krum tolerates.", minimum=0, group="federation"
    )

    # --- local training -------------------------------------------------------
    local_epochs: int = _option(5, "Local epochs per round.", minimum=1, group="training")
    batch_size: int = _option(32, "Local batch size.", minimum=1, group="training")
    optimizer: str = _option("sgd", "Local optimizer.", choices=OPTIMIZERS, group="training")
    lr: float = _option(
        0.01,
        "Local learning rate.",
        minimum=0.0,
        exclusive_minimum=True,
        group="training",
    )
    momentum: float = _option(0.9, "SGD momentum.", minimum=0.0, maximum=1.0, group="training")
    weight_decay: float = _option(0.0, "Local L2 weight decay.", minimum=0.0, group="training")

    # --- runtime --------------------------------------------------------------
    device: str = _option(
        "auto",
        "Where clients and server run torch.",
        choices=DEVICES,
        group="runtime",
    )
    num_cpus: float = _option(
        1.0,
        "CPUs per simulated client (simulation backend).",
        minimum=0.0,
        exclusive_minimum=True,
        group="runtime",
    )
    num_gpus: float = _option(
        0.0,
        "GPU fraction per simulated client (simulation backend).",
        minimum=0.0,
        group="runtime",
    )
    simulation_backend: str = _option(
        "ray",
        "How `fedge simulate` runs the ClientApps: `ray` (Flower's simulation engine) "
        "or `inprocess` (fedge's in-process Grid: same ServerApp, strategies and "
        "ClientApp, no Ray; far less per-update overhead).",
        choices=SIMULATION_BACKENDS,
        group="runtime",
    )
    ray_address: str = _option(
        "",
        "Ray cluster to run the simulation on (`auto`, `HOST:PORT` or `ray://HOST:PORT`); "
        "empty: $RAY_ADDRESS when set, else a local Ray started for the run.",
        group="runtime",
    )
    embedding_cache: str = _option(
        "disk",
        "Reuse frozen-backbone embeddings: `disk` (memory + files in the cache "
        "dir), `memory`, or `off` (recompute every epoch).",
        choices=EMBEDDING_CACHES,
        group="runtime",
    )
    embed_batch_size: int = _option(
        64, "Batch size of the embedding pass.", minimum=1, group="runtime"
    )
    resume: bool = _option(
        False,
        "Continue the run in run-dir from its last checkpointed round (starts at "
        "round 1 when it has no checkpoint yet).",
        group="runtime",
    )
    cache_dir: str = _option(
        "",
        "Cache for weights, datasets and embeddings (empty: $FEDGE_CACHE_DIR or ~/.cache/fedge).",
        group="runtime",
    )
    run_dir: str = _option("", "Run directory (empty: runs/<timestamp>).", group="runtime")

    # --- edge clients -----------------------------------------------------------
    edge_fraction: float = _option(
        0.0,
        "Share of simulated clients that run the edge runtime (an exported backbone "
        "and a numpy head, no PyTorch), chosen by partition id.",
        minimum=0.0,
        maximum=1.0,
        group="edge",
    )
    edge_runtime: str = _option(
        "auto",
        "Inference runtime of edge clients (`auto`: the first installed of "
        "ai-edge-litert, tflite-runtime, onnxruntime); a SuperNode's node config "
        "`runtime` overrides it.",
        choices=EDGE_RUNTIMES,
        group="edge",
    )

    # --- reporting ------------------------------------------------------------
    tensorboard: bool = _option(
        False,
        "Also write each round's metrics as TensorBoard event files under "
        "RUN_DIR/tensorboard (needs `pip install fedge[tensorboard]`).",
        group="reporting",
    )

    # ------------------------------------------------------------------------
    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_value(f, getattr(self, f.name))
        if self.min_clients > self.num_clients:
            raise ConfigError(
                f"min-clients={self.min_clients} exceeds num-clients="
                f"{self.num_clients}; lower min-clients or raise num-clients."
            )
        if self.resume and not self.run_dir:
            raise ConfigError("resume=true needs run-dir=<the directory of the run to continue>.")
        names = self.class_name_list
        if self.class_names and (len(set(names)) != len(names) or len(names) < 2):
            raise ConfigError(
                f"config key 'class-names' must list at least two distinct, non-empty "
                f"names separated by commas, got {self.class_names!r}."
            )

        if "closed-form" in (self.strategy, self.init) and (
            self.head != "linear" or self.unfreeze_last
        ):
            raise ConfigError(
                "strategy=closed-form and init=closed-form solve a linear head on frozen "
                f"embeddings; got head={self.head!r} unfreeze-last={self.unfreeze_last}. "
                "Use head=linear and unfreeze-last=0."
            )

    @property
    def class_name_list(self) -> list[str]:
        """``class-names`` split at commas (empty when unset)."""
        return [n.strip() for n in self.class_names.split(",")] if self.class_names else []

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "") -> FedgeConfig:
        """Build from ``{key: value}`` (hyphenated keys), checking every entry."""
        return cls(**_to_field_values(values, source))

    def replace(self, values: Mapping[str, Any], source: str = "") -> FedgeConfig:
        """Return a copy with ``values`` (hyphenated keys) applied and checked."""
        return dataclasses.replace(self, **_to_field_values(values, source))

    def to_run_config(self) -> dict[str, Scalar]:
        """The hyphenated mapping Flower carries as ``run_config``."""
        return {key_of(f): getattr(self, f.name) for f in dataclasses.fields(self)}


def key_of(f: dataclasses.Field[Any]) -> str:
    return f.name.replace("_", "-")


def options() -> tuple[dataclasses.Field[Any], ...]:
    """All configuration fields, in declaration order."""
    return dataclasses.fields(FedgeConfig)


_FIELDS_BY_KEY = {key_of(f): f for f in dataclasses.fields(FedgeConfig)}


def known_keys() -> list[str]:
    return list(_FIELDS_BY_KEY)


def _unknown_key_error(key: str, source: str) -> ConfigError:
    near = difflib.get_close_matches(key, _FIELDS_BY_KEY, n=3)
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    where = f" (from {source})" if source else ""
    return ConfigError(
        f"unknown config key '{key}'{where}.{hint} Run `fedge config keys` for the list of keys."
    )


def _to_field_values(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in values.items():
        f = _FIELDS_BY_KEY.get(key)
        if f is None:
            raise _unknown_key_error(key, source)
        out[f.name] = _coerce(f, raw, source)
    return out


def _type_name(tp: type) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "text"}[tp]


def _field_type(f: dataclasses.Field[Any]) -> type:
    return {"bool": bool, "int": int, "float": float, "str": str}[str(f.type)]


def _coerce(f: dataclasses.Field[Any], raw: Any, source: str) -> Scalar:
    """Convert ``raw`` (possibly a string from ``--set``) to the field's type."""
    tp = _field_type(f)
    where = f" (from {source})" if source else ""
    bad = ConfigError(f"config key '{key_of(f)}'{where} must be {_type_name(tp)}, got {raw!r}.")
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false", "1", "0"):
            return raw.lower() in ("true", "1")
        raise bad
    if tp is str:
        if isinstance(raw, str):
            return raw
        raise bad
    if isinstance(raw, bool):
        raise bad
    if tp is int:
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, str):
            try:
                return int(raw)
            except ValueError:
                raise bad from None
        raise bad
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            raise bad from None
    raise bad


def _check_value(f: dataclasses.Field[Any], value: Any) -> None:
    meta = f.metadata
    key = key_of(f)
    choices = meta["choices"]
    if choices is not None and value not in choices:
        raise ConfigError(
            f"config key '{key}' got {value!r}; allowed values: {', '.join(choices)}."
        )
    lo, hi = meta["minimum"], meta["maximum"]
    if lo is not None:
        if meta["exclusive_minimum"] and not value > lo:
            raise ConfigError(f"config key '{key}' must be > {lo}, got {value!r}.")
        if not meta["exclusive_minimum"] and not value >= lo:
            raise ConfigError(f"config key '{key}' must be >= {lo}, got {value!r}.")
    if hi is not None and not value <= hi:
        raise ConfigError(f"config key '{key}' must be <= {hi}, got {value!r}.")


# --- resolution: defaults <- file <- --set, with provenance --------------------


@dataclass(frozen=True)
class ResolvedConfig:
    """A configuration and, for each key, where its value came from."""

    config: FedgeConfig
    sources: dict[str, str]


def parse_set_items(items: Iterable[str]) -> dict[str, str]:
    """Parse ``KEY=VALUE`` strings from the command line."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--set expects KEY=VALUE, got {item!r} (for example --set num-rounds=5)."
            )
        out[key.strip()] = value.strip()
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read keys from a TOML file: a flat table or ``[tool.flwr.app.config]``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist.")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file '{p}' is not valid TOML: {e}") from e
    table = data.get("tool", {}).get("flwr", {}).get("app", {}).get("config")
    if table is None:
        table = data.get("fedge", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file '{p}' holds no table of config keys.")
    return table


def resolve(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ResolvedConfig:
    """Apply a config file and then ``--set`` overrides on top of the defaults."""
    cfg = FedgeConfig()
    sources = {key: "default" for key in _FIELDS_BY_KEY}
    if config_file is not None:
        values = read_config_file(config_file)
        cfg = cfg.replace(values, source=str(config_file))
        sources.update({k: f"file {config_file}" for k in values})
    if overrides:
        cfg = cfg.replace(overrides, source="--set")
        sources.update({k: "--set" for k in overrides})
    return ResolvedConfig(cfg, sources)


def from_run_config(run_config: Mapping[str, Any]) -> FedgeConfig:
    """Config of a Flower run; keys Flower adds that fedge does not own are kept out."""
    return FedgeConfig.from_mapping(run_config, source="run_config")
