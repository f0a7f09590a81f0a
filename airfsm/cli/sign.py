"""`airfsm sign`: the auth sign, the exact `AT+HTTPDATA` body and its length, for a device.

What the vendor's transcript tells people to count by hand (and the classic cause of failed
auths).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from airfsm.cli.commands import add_command
from airfsm.cli.common import secret_from
from airfsm.core import aliyun
from airfsm.host.errors import Exit, HostError


def cmd_sign(args: argparse.Namespace, env: Mapping[str, str]) -> Exit:
    secret = secret_from(args, env)
    identity = aliyun.DeviceIdentity(product_key=args.product_key, device_name=args.device_name,
                                     device_secret=secret, client_id=args.client_id)
    try:
        form = aliyun.auth_form(identity, args.sign_method)
    except ValueError as exc:
        raise HostError(f"bad configuration: {exc}") from None
    print(f"sign:   {form.sign}")
    print(f"method: {args.sign_method}")
    print(f"body:   {form.body.decode('ascii')}")
    print(f"length: {len(form.body)}")
    print(f"AT command: AT+HTTPDATA={len(form.body)},20000")
    return Exit.OK


def register(sub: Any) -> None:
    p = add_command(sub, "sign")
    p.add_argument("--product-key", required=True)
    p.add_argument("--device-name", required=True)
    p.add_argument("--device-secret", help="or AIRFSM_DEVICE_SECRET")
    p.add_argument("--client-id", default=None)
    p.add_argument("--sign-method", default=aliyun.DEFAULT_SIGN_METHOD,
                   choices=aliyun.SIGN_METHODS)
    p.set_defaults(handler=cmd_sign)
