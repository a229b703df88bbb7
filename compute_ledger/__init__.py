"""Entry points of Compute Ledger: the ``compute-ledger`` console command and the end-to-end demo."""
