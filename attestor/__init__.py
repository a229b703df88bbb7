"""The metering daemon of a GPU node: sample the GPUs, close windows, sign reports, spool, send.

Modules, one per boundary: ``nvml`` (the only importer of ``pynvml``), ``source`` (the GPU source interface
and the simulated source), ``keys`` (the only holder of the node key), ``spool`` (SQLite), ``bridge`` (HTTP to
the bridge), ``metrics`` (Prometheus), ``meter`` (samples -> signed report), ``daemon`` (the loop),
``cli`` (``compute-ledger attest ...``).
"""

from .errors import AttestorError

__version__ = "0.1.0"

__all__ = ["AttestorError", "__version__"]
