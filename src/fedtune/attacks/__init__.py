"""Simulated Byzantine attacks on client updates, one file each, found by ``ATTACKS``
(``fedtune ls attacks``), and the executor wrapper that applies them."""

from fedtune.attacks import agr_agnostic, alie, fang, gaussian, ipm, scaling, sign_flip  # noqa: F401  (each registers itself)
from fedtune.attacks.registry import ATTACKS, attacker_ids  # noqa: F401
