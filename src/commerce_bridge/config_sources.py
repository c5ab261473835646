"""Where the settings come from besides the environment, and how URLs in them are shown.

* ``CB_<NAME>_FILE`` reads a secret from a file (Docker and Kubernetes secrets), for the settings in
  :data:`~commerce_bridge.config.SECRET_FIELDS`; a file that cannot be read is a problem named at start-up.
* The optional TOML file (``CB_CONFIG_FILE``, default ``./commerce-bridge.toml``): keys are the setting names in
  lower case without the prefix; a named file that is missing or unreadable stops start-up.
* :func:`mask_url` and :func:`mask_urls_in`: every URL that ``config show``, ``doctor`` or an error message prints
  has its credentials, query values and fragment masked.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic_settings import PydanticBaseSettingsSource

from commerce_bridge.errors import ConfigurationError

ENV_PREFIX = "CB_"
DEFAULT_CONFIG_FILE = "commerce-bridge.toml"

MASK = "********"
PLAIN_QUERY_PARAMS = frozenset({
    "sslmode", "application_name", "connect_timeout", "target_session_attrs", "mode", "cache", "timeout",
})
"""URL query parameters whose values are shown; every other query value is masked."""
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")  # to the next space: a password may hold quotes


def mask_url(url: str) -> str:
    """``url`` with its credentials masked, host and path kept: what ``config show`` and ``doctor`` print.

    * the password of ``user:password@`` (and, in http(s) URLs, a user name without a password, which is
      usually a token) becomes ``********``;
    * every query value becomes ``********``, except those of :data:`PLAIN_QUERY_PARAMS` (``sslmode``...);
      webhook URLs carry tokens and signatures there (``?token=``, ``?sig=``);
    * a ``#fragment`` becomes ``#********``.

    A string that is not a URL (no ``scheme://``) is returned unchanged.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK  # a URL that does not even parse: show nothing of it
    if not parts.scheme:
        return url
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        if colon:
            userinfo = f"{user}:{MASK}"
        elif parts.scheme.lower() in ("http", "https"):
            userinfo = MASK
    out = f"{parts.scheme}://{userinfo}{at}{hostport}{parts.path}"
    if parts.query:
        out += "?" + "&".join(_mask_query_item(item) for item in parts.query.split("&"))
    if parts.fragment:
        out += f"#{MASK}"
    return out


def _mask_query_item(item: str) -> str:
    name, eq, value = item.partition("=")
    if not eq:
        return MASK if name else name  # a bare value may be a token itself
    return item if name.lower() in PLAIN_QUERY_PARAMS or not value else f"{name}={MASK}"


def mask_urls_in(text: str) -> str:
    """``text`` with every URL in it passed through :func:`mask_url` (for messages that quote a URL)."""
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)


def read_secret_files(names: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Values of ``CB_<NAME>_FILE`` secrets, and a problem line per file that cannot be read."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for name in names:
        env = f"{ENV_PREFIX}{name.upper()}_FILE"
        path = os.environ.get(env)
        if not path:
            continue
        try:
            values[name] = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            problems.append(f"{env}: cannot read {path!r} ({exc.strerror})")
    return values, problems


class SecretFileSource(PydanticBaseSettingsSource):
    """``CB_<NAME>_FILE=/path`` reads a secret from a file (Docker/Kubernetes secrets)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __init__(self, settings_cls: Any, names: Sequence[str]) -> None:
        super().__init__(settings_cls)
        self._names = names

    def __call__(self) -> dict[str, Any]:
        return dict(read_secret_files(self._names)[0])


class TomlSource(PydanticBaseSettingsSource):
    """The optional TOML file (``CB_CONFIG_FILE`` or ``./commerce-bridge.toml``)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        explicit = os.environ.get(f"{ENV_PREFIX}CONFIG_FILE")
        path = Path(explicit or DEFAULT_CONFIG_FILE)
        if not path.exists():
            if explicit:
                msg = f"CB_CONFIG_FILE: file {explicit!r} does not exist"
                raise ConfigurationError(f"Invalid configuration: {msg}", errors=[msg])
            return {}
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            msg = f"CB_CONFIG_FILE: cannot read {str(path)!r}: {exc}"
            raise ConfigurationError(f"Invalid configuration: {msg}", errors=[msg]) from exc
        return {k.lower(): v for k, v in data.items()}
