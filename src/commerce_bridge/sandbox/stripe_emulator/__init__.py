"""Sandbox peer: stripe_emulator."""
