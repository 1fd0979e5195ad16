"""Reconciliation: one processor's Stripe account next to paydesk's records over a period, row by row.

- ``filter``: what to compare (processor, period, objects) and which rows to show;
- ``compare``: one table-driven comparator for charges, refunds and invoices (a ``Row`` per object);
- ``scan``: the ``reconcile.scan`` job that reads Stripe for a period and keeps the compared rows
  (``ReconcileScan``), which the page shows, the CLI prints and "fix all" works through;
- ``fix``: putting one row right, and the ``reconcile.fix_all`` job over a kept scan.
"""
