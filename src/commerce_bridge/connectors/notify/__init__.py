"""The notify connector: delivering alerts (and later customer notifications) to people and systems."""
