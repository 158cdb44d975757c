"""The SDK's public surface, pinned: changing it is a deliberate API change."""

from __future__ import annotations

import modelbay
import modelbay.client


def test_client_package_exports_exactly_its_public_api() -> None:
    assert sorted(modelbay.client.__all__) == [
        "ApiError",
        "Client",
        "DEFAULT_URL",
        "InputDocument",
        "ModelRef",
        "ProgressCallback",
        "SignatureSource",
        "outputs_to_json",
        "parse_input_document",
    ]
    assert all(hasattr(modelbay.client, name) for name in modelbay.client.__all__)


def test_client_is_reachable_from_the_top_level_package() -> None:
    assert modelbay.Client is modelbay.client.Client
