"""Differential privacy and secure aggregation: the ``privacy`` config section and its methods.
Importing the package registers the client-side clipping hook."""

from fedtune.privacy import client_clipping  # noqa: F401  (registers its training hook)
from fedtune.privacy.config import (
    ClientLevelDP,
    PrivacyConfig,
    SampleLevelDP,
    SecureAggregation,
)

__all__ = ["ClientLevelDP", "PrivacyConfig", "SampleLevelDP", "SecureAggregation"]
