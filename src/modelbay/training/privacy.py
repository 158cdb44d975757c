"""The privacy budget of a federated job's central differential privacy.

Each round releases the mean of the clients' updates, each clipped to L2 norm ``dp_clip``,
plus Gaussian noise of standard deviation ``dp_noise × dp_clip / m`` (m: the clients
averaged), so adding or removing one client's whole data moves the released sum by at most
``dp_clip``: a Gaussian mechanism of noise multiplier ``z = dp_noise``. Every client takes
part in every round (no sampling), so no amplification applies.

``epsilon`` is the Rényi-DP bound: T rounds compose to RDP ``ε(α) = T·α / (2z²)`` (Mironov
2017), converted to (ε, δ) with the conversion of Canonne, Kamath and Steinke (2020) and
minimised over α, as Google's ``dp-accounting`` (Flower's accountant) does. It is computed
here because ``dp-accounting`` pins ``attrs<24``, below what the rest of the stack needs;
for the Gaussian mechanism without sampling the bound is a closed form, and
``gaussian_epsilon`` (the exact value: T Gaussian rounds are one Gaussian mechanism of
``z/√T``, Dong, Roth and Su 2019) checks it from below in the tests.
"""

from __future__ import annotations

import math

import numpy as np

_ORDERS = 1.0 + np.geomspace(1e-4, 1e5, 20_000)
"""Rényi orders α searched."""


def epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """ε of ``rounds`` Gaussian rounds of ``noise_multiplier`` at ``delta`` (inf without
    noise)."""
    if noise_multiplier <= 0:
        return math.inf
    if rounds <= 0:
        return 0.0
    alpha = _ORDERS
    rdp = rounds * alpha / (2.0 * noise_multiplier**2)
    eps = rdp + np.log1p(-1.0 / alpha) - (math.log(delta) + np.log(alpha)) / (alpha - 1.0)
    return max(0.0, float(eps.min()))


def gaussian_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """The exact ε of ``rounds`` Gaussian rounds: μ-GDP with ``μ = √T / z``, whose
    δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2) is solved for ε."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    mu = math.sqrt(rounds) / noise_multiplier

    def excess(eps: float) -> float:
        value = norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2)
        return float(value) - delta

    if excess(0.0) <= 0:
        return 0.0
    high = 1.0
    while excess(high) > 0:
        high *= 2
    return float(brentq(excess, 0.0, high, xtol=1e-9))
