"""Signed outbound webhooks: forward events to other systems (CRM, WMS, data lake)."""
