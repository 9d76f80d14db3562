"""Who may do what on RabbitMQ: one user per principal, each with only the
permissions it needs (docs/security.md).

Principals (``services.common.config.amqp_principals``): every Nameko service,
the gateway and the chain watcher, each logging in with its own name and
password (``EXCHANGE_RABBITMQ_PASSWORD_<NAME>``); the operator
(``EXCHANGE_RABBITMQ_USER``) keeps every permission: the stack, tools and
tests use it.

RabbitMQ checks three patterns per user and vhost, on resource names:
*configure* (declare, delete), *write* (publish to an exchange, bind a queue)
and *read* (consume a queue, bind from an exchange); and, on topic exchanges,
topic permissions: the routing key of a publish must match *write*, the
binding key of a bind must match *read*. Here:

* a service may declare, bind and consume its own queues (``rpc-<name>``, its
  RPC reply queues, ``<name>.*``, its event-handler and catalogue queues),
  publish to its own events exchange (``<name>.events``) and bind from the
  events exchanges it follows;
* on Nameko's RPC exchange, a principal may publish only replies (the reply
  keys are UUIDs) and the requests it has a reason to make (the gateway:
  every service's verbs but ``wallets.credit_deposit``; orders: matching's;
  users: ``wallets.open_accounts``; the chain watcher: the deposit verbs),
  and may bind only its own request key (``<name>.*``) and reply keys: no one
  else can place an order or take another service's requests;
* engine commands go through ``COMMANDS_EXCHANGE``, where only orders and
  matching may publish; nobody but the operator may publish to the default
  exchange (which reaches every queue).

``definitions`` renders all of it as a RabbitMQ definitions document: loaded
at the broker's boot (``load_definitions`` in rabbitmq.conf, so the compose
and Ansible brokers get the users too) and imported into a running broker by
``stack/prepare.py``. Pure: reads settings only.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from services.common.config import (COMMANDS_EXCHANGE, OTHER_AMQP_PRINCIPALS, RPC_EXCHANGE,
                                    Settings, service_names)

# A Nameko reply key (uuid4): replies are routed by it.
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# services.matching.providers.command_queue_name(market) without the market.
COMMAND_QUEUES = r"matching\.commands\."
# The gateway's push channel when EXCHANGE_PUSH_CHANNEL is unset (gateway/sockets.py).
DEFAULT_PUSH_CHANNEL = "exchange-push"


@dataclass(frozen=True)
class Access:
    """What one service needs beyond its own resources."""
    follows: tuple[str, ...] = ()   # events exchanges it binds queues to
    calls: tuple[str, ...] = ()     # RPC it makes: "<service>" (every verb) or "<service>.<verb>"
    commands: bool = False          # sends engine commands (declares and binds their queues)


# Every service follows the registry's catalogue (services/common/catalogue.py).
SERVICES = {
    "orders": Access(follows=("matching.events", "users.events"), calls=("matching",),
                     commands=True),
    "matching": Access(commands=True),
    "wallets": Access(follows=("matching.events",)),
    "marketdata": Access(follows=("matching.events",), calls=("matching.get_depth",)),
    "users": Access(calls=("wallets.open_accounts",)),
    "registry": Access(),
}
CATALOGUE_EXCHANGE = "registry.events"
GATEWAY_FOLLOWS = ("matching.events", "wallets.events", "users.events", CATALOGUE_EXCHANGE)
# Verbs only the chain watcher and the operator may call: they mint money.
NOT_FOR_THE_GATEWAY = ("wallets.credit_deposit",)
DEPOSIT_WATCHER_CALLS = ("wallets.credit_deposit", "wallets.deposit_address", "wallets.health")


def one_of(*patterns: str) -> str:
    return "^(" + "|".join(patterns) + ")$"


def _call_pattern(call: str) -> str:
    return re.escape(call) if "." in call else rf"{re.escape(call)}\.[a-z_]+"


@dataclass(frozen=True)
class Grant:
    configure: str
    write: str
    read: str
    topics: dict[str, tuple[str, str]]  # exchange -> (write, read) routing-key patterns


def service_grant(name: str, access: Access) -> Grant:
    n = re.escape(name)
    own = [f"rpc-{n}", rf"rpc\.reply-{n}-{UUID}", rf"{n}\..+",
           rf"evt-[a-z_]+-[a-z_]+--{n}\..+", rf"registry\.catalogue\.{n}\..+"]
    follows = [re.escape(x) for x in (*access.follows, CATALOGUE_EXCHANGE)]
    commands = [re.escape(COMMANDS_EXCHANGE), COMMAND_QUEUES + ".+"] if access.commands else []
    rpc = re.escape(RPC_EXCHANGE)
    topics = {RPC_EXCHANGE: (one_of(UUID, *map(_call_pattern, access.calls)),
                             one_of(rf"{n}\.\*", UUID))}
    if access.commands:
        keys = one_of(COMMAND_QUEUES + "[A-Za-z0-9_-]+")
        topics[COMMANDS_EXCHANGE] = (keys, keys)
    return Grant(configure=one_of(rpc, *own, *follows, *commands),
                 write=one_of(rpc, *own, *commands),
                 read=one_of(rpc, *own, *follows, *commands),
                 topics=topics)


def standalone_reply_queue() -> str:
    return rf"rpc\.reply-standalone_rpc_proxy-{UUID}"


def gateway_grant(settings: Settings) -> Grant:
    push = re.escape(settings.get("EXCHANGE_PUSH_CHANNEL") or DEFAULT_PUSH_CHANNEL)
    own = [standalone_reply_queue(), r"gateway\..+", r"registry\.catalogue\.gateway\..+",
           r"python-socketio\..+", push]
    follows = [re.escape(x) for x in GATEWAY_FOLLOWS]
    rpc = re.escape(RPC_EXCHANGE)
    refused = "".join(f"(?!{re.escape(verb)}$)" for verb in NOT_FOR_THE_GATEWAY)
    services = "|".join(re.escape(s) for s in service_names())
    return Grant(configure=one_of(rpc, *own, *follows), write=one_of(rpc, *own),
                 read=one_of(rpc, *own, *follows),
                 topics={RPC_EXCHANGE: (one_of(UUID, rf"{refused}({services})\.[a-z_]+"),
                                        one_of(UUID))})


def deposit_watcher_grant() -> Grant:
    rpc = re.escape(RPC_EXCHANGE)
    own = one_of(rpc, standalone_reply_queue())
    return Grant(configure=own, write=own, read=own,
                 topics={RPC_EXCHANGE: (one_of(UUID, *map(re.escape, DEPOSIT_WATCHER_CALLS)),
                                        one_of(UUID))})


def grants(settings: Settings) -> dict[str, Grant]:
    """Every principal but the operator, by name."""
    found = {name: service_grant(name, SERVICES.get(name, Access())) for name in service_names()}
    found["gateway"] = gateway_grant(settings)
    found["deposit_watcher"] = deposit_watcher_grant()
    assert set(found) == set(service_names()) | set(OTHER_AMQP_PRINCIPALS)
    return found


def vhosts(settings: Settings) -> list[str]:
    return [settings["EXCHANGE_RABBITMQ_VHOST"]] + [
        settings["EXCHANGE_RABBITMQ_VHOST"] + suffix for suffix in settings.test_suffixes]


def definitions(settings: Settings) -> dict:
    """The users, vhosts and permissions, as RabbitMQ's definitions JSON."""
    operator = settings["EXCHANGE_RABBITMQ_USER"]
    granted = grants(settings)
    users = [{"name": operator, "password": settings["EXCHANGE_RABBITMQ_PASSWORD"],
              "tags": "administrator"}]
    users += [{"name": name, "password": settings.amqp_login(name)[1], "tags": ""}
              for name in granted]
    permissions, topic_permissions = [], []
    for vhost in vhosts(settings):
        permissions.append({"user": operator, "vhost": vhost,
                            "configure": ".*", "write": ".*", "read": ".*"})
        for name, grant in granted.items():
            permissions.append({"user": name, "vhost": vhost, "configure": grant.configure,
                                "write": grant.write, "read": grant.read})
            topic_permissions += [{"user": name, "vhost": vhost, "exchange": exchange,
                                   "write": write, "read": read}
                                  for exchange, (write, read) in grant.topics.items()]
    return {"users": users, "vhosts": [{"name": v} for v in vhosts(settings)],
            "permissions": permissions, "topic_permissions": topic_permissions}


def write_definitions(settings: Settings, path: Path) -> Path:
    """The definitions file (it holds passwords: readable by its owner only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(definitions(settings), out, indent=1)
    os.chmod(path, 0o600)
    return path
