"""Stripe connector: the official SDK behind the StripeGateway port, with our error table."""
