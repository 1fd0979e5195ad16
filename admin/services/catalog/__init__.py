"""What an organisation sells or asks for: Stripe products."""
