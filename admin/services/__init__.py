"""Business operations, one package per resource. Views and CLI commands call these; they never call
Stripe directly (admin.stripe_gateway does, through core.stripe_reader)."""
