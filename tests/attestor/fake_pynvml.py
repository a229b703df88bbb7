"""The fake ``pynvml`` the attestor tests use: the product's simulated driver (:mod:`attestor.simdriver`),
under the names the tests know. Everything it models, and what is measured versus assumed, is documented
there."""

from attestor.simdriver import *  # noqa: F401,F403
from attestor.simdriver import (  # noqa: F401
    NOT_SUPPORTED,
    SimGpu as FakeGpu,
    SimulatedNvml as FakeNvml,
    _err,
    _us,
)
