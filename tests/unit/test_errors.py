"""The error tree: stable codes, messages from docstrings, transient vs permanent."""

from __future__ import annotations

import pickle

from commerce_bridge import errors as E


def test_every_error_has_a_unique_code_and_a_docstring() -> None:
    classes = E.all_error_classes()
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    assert all((c.__doc__ or "").strip() for c in classes)


def test_transient_and_permanent_branches_are_what_the_style_guide_says() -> None:
    for cls in (E.UpstreamUnavailable, E.RateLimited, E.Conflict, E.StoreUnavailable, E.CircuitOpen):
        assert cls.transient
    for cls in (E.ValidationError, E.MappingError, E.NotFound, E.UpstreamRejected, E.UpstreamAuthFailed,
                E.SignatureInvalid, E.ConfigurationError):
        assert not cls.transient


def test_default_message_is_the_docstring_and_request_id_prefixes_str() -> None:
    err = E.UpstreamRejected(upstream_request_id="req_123")
    assert err.message == "The upstream system rejected the request."
    assert str(err) == "Request req_123: The upstream system rejected the request."


def test_all_exports_match_the_public_names() -> None:
    public = {n for n, v in vars(E).items() if isinstance(v, type) and issubclass(v, E.BridgeError)}
    assert public | {"all_error_classes"} == set(E.__all__)


def test_rate_limited_keeps_retry_after() -> None:
    assert E.RateLimited(retry_after=2.5).retry_after == 2.5


def test_errors_survive_pickling_for_cross_process_use() -> None:
    err = pickle.loads(pickle.dumps(E.ValidationError("bad email")))
    assert isinstance(err, E.ValidationError) and err.message == "bad email"
