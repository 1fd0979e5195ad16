"""Stripe Connect: connected accounts and their persons, transfers to them, their payouts."""
