"""commerce-bridge: Stripe <-> Clarity eCommerce <-> ERP integration with durable, replayable workflows."""

__version__ = "0.1.0"
