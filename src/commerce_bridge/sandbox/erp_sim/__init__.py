"""Sandbox peer: erp_sim."""
