"""Sandbox peer: mailbox."""
