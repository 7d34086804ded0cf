"""``i2v keys ...``, ``i2v audit`` and ``i2v usage``: the admin API and usage from a shell."""

from __future__ import annotations

import argparse
import json
from typing import Any

from i2v_client.admin import Admin, ApiKey, usage
from i2v_client.client import Client
from i2v_client.terminal import emit

EXIT_OK = 0


def _json_arg(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _line(key: ApiKey) -> str:
    expires = f"expires {key.expires_at:%Y-%m-%d %H:%M}" if key.expires_at else "no expiry"
    return (f"{key.id}  {key.name:<20} {key.status:<8} {key.source:<11} {','.join(key.scopes):<20} "
            f"{key.prefix or '-':<13} {expires}")


def cmd_create(client: Client, args: argparse.Namespace) -> int:
    made = Admin(client).create_key(args.name, args.scopes.split(","), owner=args.owner, expires_at=args.expires_at,
                                    limits=args.limits, quotas=args.quotas)
    emit(made, f"{_line(made)}\nkey (shown once, keep it safe): {made.key}", args.json)
    return EXIT_OK


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    keys = Admin(client).list_keys()
    emit([key.model_dump(mode="json") for key in keys], "\n".join(_line(key) for key in keys) or "no keys", args.json)
    return EXIT_OK


def cmd_get(client: Client, args: argparse.Namespace) -> int:
    key = Admin(client).get_key(args.key_id)
    emit(key, _line(key), args.json)
    return EXIT_OK


def cmd_update(client: Client, args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {name: getattr(args, name) for name in ("name", "owner", "expires_at", "limits", "quotas")
                              if getattr(args, name) is not None}
    if args.scopes is not None:
        fields["scopes"] = args.scopes.split(",")
    if args.no_expiry:
        fields["expires_at"] = None
    key = Admin(client).update_key(args.key_id, **fields)
    emit(key, _line(key), args.json)
    return EXIT_OK


def cmd_revoke(client: Client, args: argparse.Namespace) -> int:
    key = Admin(client).revoke_key(args.key_id)
    emit(key, _line(key), args.json)
    return EXIT_OK


def cmd_rotate(client: Client, args: argparse.Namespace) -> int:
    made = Admin(client).rotate_key(args.key_id, args.overlap_s)
    emit(made, f"{_line(made)}\nnew key (shown once): {made.key}\nthe old one works {args.overlap_s:g} s more",
         args.json)
    return EXIT_OK


def cmd_audit(client: Client, args: argparse.Namespace) -> int:
    entries = Admin(client).audit(args.limit)
    lines = [f"{e.at_time:%Y-%m-%d %H:%M:%S}  {e.actor:<22} {e.action:<11} {e.target or '-':<22} {e.client_ip or '-'}"
             for e in entries]
    emit([e.model_dump(mode="json") for e in entries], "\n".join(lines) or "no entries", args.json)
    return EXIT_OK


def cmd_usage(client: Client, args: argparse.Namespace) -> int:
    reports = Admin(client).usage(args.since, args.until, args.key).keys if args.all or args.key else \
        [usage(client, args.since, args.until)]
    lines = [f"{r.key:<22} videos {r.totals.videos}  frames {r.totals.frames}  compute units "
             f"{r.totals.compute_units:g}  model s {r.totals.model_seconds:g}  cache hits {r.totals.cache_hits}  "
             f"failed {r.totals.failed}" for r in reports]
    emit([r.model_dump(mode="json") for r in reports], "\n".join(lines) or "no usage", args.json)
    return EXIT_OK


def add_admin_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``keys``, ``audit`` and ``usage`` on the ``i2v`` parser's subcommands."""
    keys = commands.add_parser("keys", parents=[common], help="API keys (admin scope)").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION")
    create = keys.add_parser("create", parents=[common], help="create a key; prints its secret once")
    create.add_argument("name")
    create.add_argument("--scopes", default="generate,read", help="comma-separated: generate, read, admin")
    create.add_argument("--owner", default="")
    update = keys.add_parser("update", parents=[common], help="change a key's fields")
    update.add_argument("key_id")
    update.add_argument("--name")
    update.add_argument("--owner")
    update.add_argument("--scopes")
    update.add_argument("--no-expiry", action="store_true", help="remove the expiry")
    for parser in (create, update):
        parser.add_argument("--expires-at", help="RFC 3339 (2027-01-31T00:00:00Z) or Unix seconds")
        parser.add_argument("--limits", type=_json_arg, help='JSON, e.g. {"rate_per_minute": 30, "max_concurrent": 2}')
        parser.add_argument("--quotas", type=_json_arg, help='JSON, e.g. {"videos_per_day": 10}')
    create.set_defaults(run=cmd_create)
    update.set_defaults(run=cmd_update)
    keys.add_parser("list", parents=[common], help="every key, configured ones included").set_defaults(run=cmd_list)
    for name, run, text in (("get", cmd_get, "show a key"), ("revoke", cmd_revoke, "revoke a key")):
        action = keys.add_parser(name, parents=[common], help=text)
        action.add_argument("key_id")
        action.set_defaults(run=run)
    rotate = keys.add_parser("rotate", parents=[common], help="a new secret; the old one works --overlap-s more")
    rotate.add_argument("key_id")
    rotate.add_argument("--overlap-s", type=float, default=0)
    rotate.set_defaults(run=cmd_rotate)

    audit = commands.add_parser("audit", parents=[common], help="the admin audit log, newest first (admin scope)")
    audit.add_argument("--limit", type=int, default=50)
    audit.set_defaults(run=cmd_audit)

    use = commands.add_parser("usage", parents=[common], help="your key's usage (--all: every key, admin scope)")
    use.add_argument("--since", help="first day, YYYY-MM-DD (default: the 1st of this month)")
    use.add_argument("--until", help="last day (default: today)")
    use.add_argument("--all", action="store_true")
    use.add_argument("--key", help="one key's usage (admin scope)")
    use.set_defaults(run=cmd_usage)
