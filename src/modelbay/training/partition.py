"""How a simulated federation deals the training split out to its clients.

``iid``: every client gets an equal, stratified random share (each class dealt out in turn,
so class proportions match the whole). ``label``: the non-IID split of McMahan et al.
(2017): the rows sorted by label are cut into ``2 × clients`` equal shards and each client
gets two shards at random, so it sees a few classes only. Regression targets are sorted by
value for ``label`` the same way.
"""

from __future__ import annotations

import numpy as np

from modelbay.training.spec import Partition
from modelbay.training.table import InvalidDataset

SHARDS_PER_CLIENT = 2


def partition_rows(
    target: np.ndarray, rows: np.ndarray, clients: int, how: Partition, seed: int
) -> list[np.ndarray]:
    """``rows`` (indices into ``target``) dealt to ``clients``: disjoint, covering all of
    them, each part sorted; deterministic from ``seed``."""
    if len(rows) < clients:
        raise InvalidDataset(
            f"{len(rows)} training rows cannot be shared among {clients} clients", param="clients"
        )
    rng = np.random.default_rng(seed)
    if how == "iid":
        parts = _stratified(target, rows, clients, rng)
    else:
        parts = _shards(target, rows, clients, rng)
    return [np.sort(part).astype(np.int64) for part in parts]


def _stratified(
    target: np.ndarray, rows: np.ndarray, clients: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Each class's rows shuffled and dealt round-robin, continuing where the last class
    stopped, so the parts differ in size by one row at most."""
    values = target[rows]
    groups = [rows[values == c] for c in np.unique(values)] if values.dtype.kind in "iub" else []
    if not groups:  # regression: one group
        groups = [rows]
    dealt: list[list[np.ndarray]] = [[] for _ in range(clients)]
    start = 0
    for group in groups:
        shuffled = rng.permutation(group)
        for client in range(clients):
            dealt[(start + client) % clients].append(shuffled[client::clients])
        start = (start + len(shuffled)) % clients
    return [np.concatenate(parts) for parts in dealt]


def _shards(
    target: np.ndarray, rows: np.ndarray, clients: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Rows sorted by label (ties shuffled), cut into shards, two shards per client."""
    shuffled = rng.permutation(rows)
    ordered = shuffled[np.argsort(target[shuffled], kind="stable")]
    shards = np.array_split(ordered, SHARDS_PER_CLIENT * clients)
    order = rng.permutation(len(shards))
    return [np.concatenate([shards[i] for i in order[c::clients]]) for c in range(clients)]
