"""The client's side of SecAgg+ (Flower's ``secaggplus_mod``), for our handler.

Flower 1.41 has SecAgg+ only as the legacy workflow: in the stage where the
client trains, ``secaggplus_mod`` hands the handler legacy ``fitins.*``
records and expects ``fitres.*`` records back. :func:`secure_train` adapts
our Message-API train handler to that, and sends the **update** (new minus
received parameters) rather than the parameters: updates are small, so
SecAgg+'s fixed-point quantization loses less, and the server adds the
aggregate update to the global head it holds. Under central DP the update is
clipped here (Flower's own clipping function), since Flower's clipping mod
cannot sit beside ``secaggplus_mod``.
"""

from __future__ import annotations

import json

import flwr.compat.common.recorddict_compat as compat
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM, clip_inputs_inplace, get_norm

from fedge.records import ARRAY_KEYS, ARRAYS, CONFIG, LEGACY_CONFIG, METRICS, NUM_EXAMPLES


def is_secagg_message(msg: Message) -> bool:
    """A train message that is a stage of the SecAgg+ protocol."""
    return RECORD_KEY_CONFIGS in msg.content.config_records


def secure_train(call_next: ClientAppCallable) -> ClientAppCallable:
    """Wrap a Message-API train handler so it speaks SecAgg+'s legacy records."""

    def handler(msg: Message, context: Context) -> Message:
        fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
        config = json.loads(str(fitins.config[LEGACY_CONFIG]))
        keys = [str(k) for k in config.pop(ARRAY_KEYS)]
        received = parameters_to_ndarrays(fitins.parameters)
        msg.content = RecordDict(
            {
                ARRAYS: ArrayRecord({k: Array(a) for k, a in zip(keys, received, strict=True)}),
                CONFIG: ConfigRecord(config),
            }
        )
        reply = call_next(msg, context)
        if reply.has_error():
            raise RuntimeError(reply.error.reason)
        new = reply.content[ARRAYS]
        delta = [new[k].numpy().astype(r.dtype) - r for k, r in zip(keys, received, strict=True)]
        clipping_norm = config.get(KEY_CLIPPING_NORM)
        if clipping_norm is not None and get_norm(delta) > float(clipping_norm):
            clip_inputs_inplace(delta, float(clipping_norm))
        metrics = dict(reply.content[METRICS])
        fitres = FitRes(
            Status(Code.OK, ""),
            ndarrays_to_parameters(delta),
            int(metrics.pop(NUM_EXAMPLES)),  # type: ignore[arg-type]
            metrics,  # type: ignore[arg-type]
        )
        return Message(compat.fitres_to_recorddict(fitres, keep_input=True), reply_to=msg)

    return handler


def secagg_train(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Run one SecAgg+ stage; the training stage calls our handler through the adapter."""
    return secaggplus_mod(msg, context, secure_train(call_next))
