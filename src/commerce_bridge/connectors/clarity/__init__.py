"""Clarity eCommerce (CEF) connector: session auth, order polling, status actions and AddPayment over httpx."""
