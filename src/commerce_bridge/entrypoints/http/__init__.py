"""commerce-bridge."""
