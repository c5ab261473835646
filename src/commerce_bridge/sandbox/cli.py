"""``commerce-bridge sandbox ...``: run the sandbox peers alone or together."""

from __future__ import annotations

import typer

from commerce_bridge.sandbox.clarity_sim.cli import command as clarity_command
from commerce_bridge.sandbox.erp_sim.cli import command as erp_command
from commerce_bridge.sandbox.mailbox.cli import command as mail_command
from commerce_bridge.sandbox.order import command as order_command
from commerce_bridge.sandbox.stripe_emulator.cli import command as stripe_command
from commerce_bridge.sandbox.up import command as up_command

sandbox_app = typer.Typer(help="Sandbox peers: a Stripe emulator, a Clarity simulator, an ERPNext simulator, "
                               "a mail catcher. For demos and tests; no account needed.",
                          no_args_is_help=True)
sandbox_app.command("stripe", help="Run the Stripe emulator (use it through the official stripe SDK).")(stripe_command)
sandbox_app.command("clarity", help="Run the Clarity eCommerce (CEF) API simulator.")(clarity_command)
sandbox_app.command("erp", help="Run the ERPNext REST API simulator.")(erp_command)
sandbox_app.command("mail", help="Run the SMTP catcher with its HTTP message list.")(mail_command)
sandbox_app.command("up", help="Run every peer in one process; print URLs, credentials and the bridge's settings.")(
    up_command)
sandbox_app.command("order", help="Place one storefront order at the Clarity simulator and follow it through the "
                                  "peers.")(order_command)
