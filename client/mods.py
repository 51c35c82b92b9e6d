"""The mod on our train handler: Flower's privacy mods, chosen per message.

Mods are attached to the train handler only (Flower's DP mods do not check
the message type; on an evaluate handler they break the reply). Which one
runs follows what the server sent, so a ClientApp built before it knows the
run config (``flwr run``) still does the right thing:

- a SecAgg+ stage message: Flower's ``secaggplus_mod`` (see ``client.secagg``);
- a train message whose config carries ``clipping_norm`` (central DP): Flower's
  ``fixedclipping_mod``, which clips the update before it leaves the client;
- anything else: the handler alone.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp.mod import fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from client.secagg import is_secagg_message, secagg_train
from fedge.records import CONFIG


def train_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    if is_secagg_message(msg):
        return secagg_train(msg, context, call_next)
    config = msg.content.config_records.get(CONFIG)
    if config is not None and KEY_CLIPPING_NORM in config:
        return fixedclipping_mod(msg, context, call_next)
    return call_next(msg, context)
