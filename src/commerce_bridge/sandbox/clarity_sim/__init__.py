"""Sandbox peer: clarity_sim."""
