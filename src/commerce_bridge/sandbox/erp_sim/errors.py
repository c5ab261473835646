"""Frappe-shaped errors of the ERPNext simulator: ``exc_type``, ``exception``, ``_server_messages``."""

from __future__ import annotations

import json
import uuid

from starlette.responses import Response

# exc_type -> HTTP status, as frappe maps its exception classes.
STATUS = {
    "ValidationError": 417, "MandatoryError": 417, "LinkValidationError": 417, "UpdateAfterSubmitError": 417,
    "TimestampMismatchError": 417, "DocstatusTransitionError": 417, "CannotChangeConstantError": 417,
    "DoesNotExistError": 404, "DuplicateEntryError": 409, "PermissionError": 403, "AuthenticationError": 401,
    "CSRFTokenError": 400, "ItemPriceDuplicateItem": 417, "NegativeStockError": 417,
}


class FrappeError(Exception):
    """An error raised inside the simulated frappe request; ``exc_type`` picks the HTTP status."""

    def __init__(self, exc_type: str, message: str) -> None:
        super().__init__(message)
        self.exc_type = exc_type
        self.message = message

    @property
    def status(self) -> int:
        return STATUS.get(self.exc_type, 500)


def error_response(exc: FrappeError) -> Response:
    """The JSON body frappe sends for an exception (``_server_messages`` is a JSON string of JSON strings)."""
    server_message = json.dumps({"message": exc.message, "title": "Message", "indicator": "red",
                                 "raise_exception": 1, "__frappe_exc_id": uuid.uuid4().hex})
    qualified = f"frappe.exceptions.{exc.exc_type}"
    traceback = f"Traceback (most recent call last):\n  (simulated)\n{qualified}: {exc.message}\n"
    body = {
        "exception": f"{qualified}: {exc.message}",
        "exc_type": exc.exc_type,
        "exc": json.dumps([traceback]),
        "_server_messages": json.dumps([server_message]),
    }
    return Response(json.dumps(body), status_code=exc.status, media_type="application/json")
