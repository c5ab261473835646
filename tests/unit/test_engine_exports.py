"""``commerce_bridge.engine`` exports exactly its public surface (as httpx's test_exported_members does)."""

from __future__ import annotations

import commerce_bridge.engine as engine


def test_all_names_exactly_the_public_names_of_the_package() -> None:
    public = {name for name in vars(engine) if not name.startswith("_")}
    modules = {"admin", "breaker", "dispatch", "fence", "interpreter", "limits", "outcome", "retry", "runtime"}
    assert set(engine.__all__) == public - modules
    assert all(getattr(engine, name) is not None for name in engine.__all__)
