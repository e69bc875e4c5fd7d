"""Parsing of the web side's settings (webhooks): kept out of ``config/settings.py``, which
holds every variable in ``ENV_VARS`` and would otherwise pass its size limit."""

from __future__ import annotations

import base64
import binascii
import ipaddress

__all__ = ["networks", "webhook_secret"]


def _error(message: str) -> Exception:
    from config.settings import SettingsError  # noqa: PLC0415 - config.settings imports this module

    return SettingsError(message)


def webhook_secret(name: str, raw: str) -> str | None:
    """Standard Webhooks secrets are ``whsec_`` + base64; the message never shows the value."""
    if not raw:
        return None
    encoded = raw.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise _error(f"{name} must be 'whsec_' followed by base64") from None
    if len(key) < 16:
        raise _error(f"{name} is too short: use at least 16 random bytes (24 recommended)")
    return raw


def networks(name: str, raw: str) -> str:
    """A comma-separated list of addresses or networks (``127.0.0.1/32,10.0.0.0/8``)."""
    for item in filter(None, (part.strip() for part in raw.split(","))):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise _error(f"{name}: {item!r} is not an address or network") from None
    return raw
