"""The Compute Ledger library: the metering protocol (:mod:`ledger.protocol`, pure) and everything that speaks
to the chain (:mod:`ledger.chain`). Roles (``attestor``, ``auditor``, ``api``) build on these; entry points
(``compute_ledger``) on the roles."""

__version__ = "0.1.0"
