"""`hotdeal buyer token USER_ID... [--stdin] [--ttl SECONDS]`: development buyer tokens,
refused unless ALLOW_DEV_SECRETS; needs no database."""

from __future__ import annotations

import json
import sys
from typing import Annotated, NoReturn

import typer

from hotdeal_cli.context import EXIT_USAGE
from hotdeal_cli.render import print_error
from hotdeal_core.identity import BUYER_ID, DEFAULT_TTL_SECONDS, TokenMinter
from hotdeal_core.settings import InsecureSecrets, load_settings

buyer_app = typer.Typer(no_args_is_help=True, help="Development buyer tokens (JWT).")


@buyer_app.command("token")
def token(
    user_ids: Annotated[list[str] | None, typer.Argument(
        help="Buyer ids (the tokens' `sub`).", show_default=False)] = None,
    stdin: Annotated[bool, typer.Option(
        "--stdin", help="Also read buyer ids from standard input, one a line.")] = False,
    ttl: Annotated[int, typer.Option(
        min=1, help="Seconds until the tokens expire.")] = DEFAULT_TTL_SECONDS,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object a line: {user_id, token}.")] = False,
) -> None:
    """Print one signed token per line, in the order of the buyer ids given."""
    buyers = list(user_ids or [])
    if stdin:
        buyers.extend(line.strip() for line in sys.stdin if line.strip())
    bad = next((b for b in buyers if BUYER_ID.fullmatch(b) is None), None)
    if not buyers or bad is not None:
        _fail(as_json, "validation_error", f"{bad!r} is no valid buyer id" if bad is not None
              else "give buyer ids as arguments or with --stdin")
    try:  # a bad setting ends load_settings with its own clear message
        minter = TokenMinter(load_settings())
    except InsecureSecrets as exc:  # production settings: no development tokens
        _fail(as_json, "dev_secrets_required", str(exc))
    if as_json:
        lines = [json.dumps({"user_id": b, "token": minter.token(b, ttl)}) for b in buyers]
    else:
        lines = [minter.token(b, ttl) for b in buyers]
    sys.stdout.write("\n".join(lines) + "\n")  # one write: tens of thousands of lines


def _fail(as_json: bool, code: str, message: str) -> NoReturn:
    print_error(code, message, as_json=as_json)
    raise typer.Exit(EXIT_USAGE)
