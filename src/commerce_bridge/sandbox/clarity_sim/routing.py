"""A small case-insensitive router for the simulator's ServiceStack-style routes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from commerce_bridge.sandbox.clarity_sim.core import Handler

_PARAM = re.compile(r"\{(\w+)(\*?)\}")


@dataclass(frozen=True)
class Route:
    """One method + path template; ``{Name}`` matches one segment, ``{Name*}`` the rest (slashes too)."""

    method: str
    template: str
    handler: Handler
    permission: str | None
    regex: re.Pattern[str]


class Router:
    """Routes relative to the API base; ServiceStack matches paths case-insensitively."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, methods: str, template: str, handler: Handler, permission: str | None = None) -> None:
        parts = _PARAM.split(template)
        pattern = ""
        # re.split with 2 groups yields [text, name, star, text, name, star, ...]
        for i in range(0, len(parts), 3):
            pattern += re.escape(parts[i])
            if i + 2 < len(parts):
                name, star = parts[i + 1], parts[i + 2]
                pattern += f"(?P<{name}>.+)" if star else f"(?P<{name}>[^/]+)"
        regex = re.compile(f"^{pattern}/?$", re.IGNORECASE)
        for method in methods.split(","):
            self.routes.append(Route(method.strip().upper(), template, handler, permission, regex))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """The route, its path parameters, and whether the path matched under another method."""
        path_matched = False
        for route in self.routes:
            found = route.regex.match(path)
            if found is None:
                continue
            if route.method == method:
                return route, {k: v for k, v in found.groupdict().items() if v is not None}, True
            path_matched = True
        return None, {}, path_matched
