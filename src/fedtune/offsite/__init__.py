"""Tuning without seeing the model: the clients train a smaller stand-in the model owner builds
(offsite-tuning's emulator, FedSP's auxiliary model) and only adapter tensors come back."""

from fedtune.offsite import emulator, fedsp  # noqa: F401  (registers the methods)
from fedtune.offsite.client_side import (
    OFFSITE,
    ClientSide,
    build_client_side,
    for_clients,
    load_client_side,
)

__all__ = ["OFFSITE", "ClientSide", "build_client_side", "for_clients", "load_client_side"]
