"""The shared mechanisms every resource uses: jobs, bulk selection, outbox, audit, the Stripe reader,
job parameters and confirmations."""
