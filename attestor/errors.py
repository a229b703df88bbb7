"""The one base exception of the ``attestor`` package and its specific kinds."""


class AttestorError(Exception):
    """Base of every error raised by ``attestor``. Messages never contain key material."""


class NoDriverError(AttestorError, RuntimeError):
    """NVML (the NVIDIA driver library) is not installed or not loaded on this machine."""


class GpuNotFoundError(AttestorError, LookupError):
    """A GPU UUID from the node's configuration is not present on this machine."""


class KeystoreError(AttestorError):
    """The keystore cannot be written, read or decrypted."""


class ConfigError(AttestorError, ValueError):
    """Invalid attestor configuration (flags or config file)."""


class SpoolError(AttestorError):
    """The durable spool refused an operation (for example a report out of sequence)."""


class BridgeError(AttestorError):
    """The bridge could not be reached or answered something the attestor cannot use."""
