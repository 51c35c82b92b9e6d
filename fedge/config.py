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
import math
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
    "bulyan",
    "closed-form",
)
# Strategies that need every client's own update (no secure aggregation, no central DP).
ROBUST_STRATEGIES = ("fedmedian", "fedtrimmedavg", "krum", "bulyan")
# Strategies whose aggregate is FedAvg's equal-weight mean, as central DP's noise assumes.
CENTRAL_DP_STRATEGIES = ("fedavg", "fedprox")
DP_MODES = ("none", "central", "local")
ATTACKS = ("none", "sign-flip", "scale", "noise", "label-flip")
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
        0,
        "Malicious clients Krum and Bulyan tolerate (Bulyan needs at least "
        "4 x this + 3 clients per round).",
        minimum=0,
        group="federation",
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
    export: bool = _option(
        False,
        "After the last round, export the model as `fedge export RUN_DIR` does: ONNX and "
        "TFLite files, verified against PyTorch, in RUN_DIR/export (needs the `export` "
        'extra: pip install -e ".[dev,export]").',
        group="reporting",
    )

    # --- privacy --------------------------------------------------------------
    dp: str = _option(
        "none",
        "Differential privacy: `central` (clients clip their update to dp-clipping-norm, "
        "the server adds Gaussian noise to the aggregate; client-level privacy of the "
        "released model) or `local` (DP-SGD on each client: per-sample clipping and "
        "noise; example-level privacy of each client's data).",
        choices=DP_MODES,
        group="privacy",
    )
    dp_noise_multiplier: float = _option(
        1.0,
        "Noise standard deviation as a multiple of dp-clipping-norm.",
        minimum=0.0,
        exclusive_minimum=True,
        group="privacy",
    )
    dp_clipping_norm: float = _option(
        1.0,
        "L2 bound: of each client's update (central) or of each sample's gradient (local).",
        minimum=0.0,
        exclusive_minimum=True,
        group="privacy",
    )
    dp_delta: float = _option(
        1e-5,
        "The delta at which epsilon is reported (keep it below 1 / records protected).",
        minimum=0.0,
        maximum=0.1,
        exclusive_minimum=True,
        group="privacy",
    )
    dp_target_epsilon: float = _option(
        0.0,
        "Privacy budget: the run stops (central) or clients stop training (local) before "
        "epsilon would exceed it (0 = no limit).",
        minimum=0.0,
        group="privacy",
    )
    secure_aggregation: bool = _option(
        False,
        "Hide each client's update from the server with Flower's SecAgg+ (the server "
        "only learns the weighted sum).",
        group="privacy",
    )
    secagg_shares: float = _option(
        1.0,
        "SecAgg+: share of the round's clients each client sends key shares to (1 = all).",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
        group="privacy",
    )
    secagg_threshold: float = _option(
        0.5,
        "SecAgg+: share of a client's key shares needed to reconstruct its masks "
        "(higher = more clients must collude, fewer dropouts tolerated).",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
        group="privacy",
    )
    secagg_timeout: float = _option(
        300.0,
        "SecAgg+: seconds each protocol stage waits for replies.",
        minimum=0.0,
        exclusive_minimum=True,
        group="privacy",
    )

    # --- robustness -----------------------------------------------------------
    max_update_norm: float = _option(
        0.0,
        "Reject a client's update whose L2 norm (new minus global head) exceeds this "
        "(0 = no limit). Keys, shapes, dtypes and finiteness are always checked.",
        minimum=0.0,
        group="robustness",
    )
    malicious_fraction: float = _option(
        0.0,
        "Simulation only: share of clients that attack; partitions 0..k-1 with "
        "k = round(malicious-fraction x num-clients), rounding half up.",
        minimum=0.0,
        maximum=1.0,
        group="robustness",
    )
    attack: str = _option(
        "none",
        "What attackers do: `sign-flip` (send -attack-scale x their update), `scale` "
        "(send attack-scale x their update), `noise` (Gaussian noise, attack-scale x the "
        "update's RMS), `label-flip` (train on label K-1-y).",
        choices=ATTACKS,
        group="robustness",
    )
    attack_scale: float = _option(
        10.0,
        "Strength of the sign-flip, scale and noise attacks.",
        minimum=0.0,
        exclusive_minimum=True,
        group="robustness",
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
        _check_combinations(self)

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

    @property
    def clients_per_round(self) -> int:
        """Clients Flower's strategies sample each round when all num-clients are up."""
        return max(int(self.num_clients * self.fraction_train), self.min_clients)

    @property
    def num_attackers(self) -> int:
        """Simulated attackers: partitions 0..k-1, k = malicious-fraction x num-clients
        rounded half up."""
        return math.floor(self.malicious_fraction * self.num_clients + 0.5)

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


def _check_combinations(cfg: FedgeConfig) -> None:
    """Combinations of privacy and robustness keys that cannot work, and why."""
    m = cfg.clients_per_round
    if "closed-form" in (cfg.strategy, cfg.init) and (
        cfg.dp != "none" or cfg.secure_aggregation or cfg.malicious_fraction > 0
    ):
        raise ConfigError(
            "strategy=closed-form and init=closed-form collect each client's class sums "
            "and Gram matrix in the clear: they have no differential privacy, secure "
            "aggregation or attack simulation. Use dp=none, secure-aggregation=false and "
            "malicious-fraction=0, or init=random with another strategy."
        )
    if cfg.dp == "central" and cfg.strategy not in CENTRAL_DP_STRATEGIES:
        raise ConfigError(
            f"dp=central does not combine with strategy={cfg.strategy}: the noise is "
            "calibrated to an equal-weight mean of clipped updates (FedAvg's aggregate), so "
            f"the reported epsilon would not hold for {cfg.strategy}'s aggregate. Use "
            f"strategy={' or '.join(CENTRAL_DP_STRATEGIES)}, or dp=local."
        )
    if cfg.dp == "local" and (cfg.unfreeze_last > 0 or cfg.embedding_cache == "off"):
        raise ConfigError(
            "dp=local trains the head with DP-SGD on cached embeddings; it needs "
            "unfreeze-last=0 and embedding-cache=disk or memory."
        )
    if cfg.edge_fraction > 0 and (
        cfg.dp != "none" or cfg.secure_aggregation or cfg.malicious_fraction > 0
    ):
        raise ConfigError(
            "edge clients (edge-fraction > 0) do not run differential privacy, secure "
            "aggregation or simulated attacks yet: they have no DP-SGD, clipping mod, "
            "SecAgg+ mod or attacker. Set edge-fraction=0, or dp=none, "
            "secure-aggregation=false and malicious-fraction=0."
        )
    if cfg.resume and (cfg.dp == "local" or (cfg.dp == "central" and cfg.secure_aggregation)):
        where = (
            "each client's DP-SGD ledger lives in its Flower context"
            if cfg.dp == "local"
            else "the accountant of central DP with secure aggregation lives on the server only"
        )
        raise ConfigError(
            f"resume=true with dp={cfg.dp}"
            + (" and secure-aggregation=true" if cfg.dp == "central" else "")
            + f" is not supported: {where} and is not in the checkpoint, so the resumed run "
            "would under-report epsilon. Start a new run-dir (epsilon then starts at 0 for "
            "the new run: add the old run's epsilon yourself)."
        )
    if cfg.dp == "local" and cfg.strategy == "fedprox":
        raise ConfigError(
            "dp=local does not combine with strategy=fedprox: DP-SGD clips and noises "
            "per-sample gradients of the loss, and FedProx's proximal term is not part of "
            "them. Use strategy=fedavg (or another) with dp=local."
        )
    if cfg.dp == "none" and cfg.dp_target_epsilon > 0:
        raise ConfigError(
            f"dp-target-epsilon={cfg.dp_target_epsilon} needs dp=central or dp=local."
        )
    if cfg.secure_aggregation and cfg.strategy in ROBUST_STRATEGIES:
        raise ConfigError(
            f"secure-aggregation=true does not combine with strategy={cfg.strategy}: "
            f"{cfg.strategy} inspects every client's own update, and secure aggregation "
            "hides them (the server only learns their sum). Use fedavg, fedprox, fedadam, "
            "fedyogi or fedavgm, or turn secure-aggregation off."
        )
    if cfg.secure_aggregation and cfg.max_update_norm > 0:
        raise ConfigError(
            "max-update-norm does not combine with secure-aggregation=true: the server "
            "never sees an individual update to measure it. Bound updates with dp=central "
            "(clients clip to dp-clipping-norm) instead, or set max-update-norm=0."
        )
    if cfg.secure_aggregation and m < 3:
        raise ConfigError(
            f"secure-aggregation=true needs at least 3 clients per round (this config "
            f"samples {m}): with 2, each client could subtract its own update from the sum "
            "and learn the other's. Raise num-clients, fraction-train or min-clients."
        )
    if cfg.secure_aggregation and m > 1023:
        raise ConfigError(
            f"secure-aggregation=true supports at most 1023 clients per round (SecAgg+ sums "
            f"22-bit quantized values modulo 2^32); this config samples {m}. Lower "
            "fraction-train or num-clients."
        )
    if (cfg.malicious_fraction > 0) != (cfg.attack != "none"):
        raise ConfigError(
            f"malicious-fraction={cfg.malicious_fraction} and attack={cfg.attack} go "
            "together: set both (e.g. malicious-fraction=0.2 attack=sign-flip) or neither."
        )
    if cfg.strategy == "bulyan" and m < 4 * cfg.krum_malicious + 3:
        raise ConfigError(
            f"strategy=bulyan with krum-malicious={cfg.krum_malicious} needs at least "
            f"{4 * cfg.krum_malicious + 3} clients per round (4 x krum-malicious + 3); this "
            f"config samples {m}. Lower krum-malicious or sample more clients."
        )
    if cfg.strategy == "krum" and m < 2 * cfg.krum_malicious + 3:
        raise ConfigError(
            f"strategy=krum with krum-malicious={cfg.krum_malicious} needs at least "
            f"{2 * cfg.krum_malicious + 3} clients per round (2 x krum-malicious + 3); this "
            f"config samples {m}. Lower krum-malicious or sample more clients."
        )


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
