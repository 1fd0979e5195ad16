"""Staff moving money (issue 19): refunds, charging a saved customer, capture by charge id, saved cards.

Every operation checks its input before Stripe is called (a ``ServiceError`` naming the field), goes through
``admin.stripe_gateway`` with an idempotency key stable for one staff action, and writes one audit entry with
the Stripe request id in the transaction that records the outcome.
"""
