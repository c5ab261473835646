"""ERPNext connector: the REST resource API over httpx, idempotent by our external keys."""
