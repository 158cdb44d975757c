"""Version references cached for the request path: renewed without caching a stale read."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.pausing import Pause

from modelbay.registry import NewVersion, Registry, VersionRecord, make_engine, migrate
from modelbay.serving.resolver import ModelResolver
from modelbay.tensors import Signature


class PausedRegistry(Registry):
    """The real registry, whose version lookup can be paused after its read."""

    pause: Pause

    def get_version(self, name: str, ref: str | int = "latest") -> VersionRecord:
        found = super().get_version(name, ref)
        self.pause.hit()
        return found


def _registry(tmp_path: Path) -> PausedRegistry:
    engine = make_engine(f"sqlite:///{tmp_path}/registry.db")
    migrate(engine)
    registry = PausedRegistry(engine)
    registry.pause = Pause()
    new = NewVersion(
        format="onnx", entrypoint="m.onnx", files=[], signature=Signature(inputs=[], outputs=[])
    )
    registry.add_version("m", new)
    registry.add_version("m", new)
    return registry


def test_a_reference_read_before_an_invalidation_is_not_cached_after_it(tmp_path: Path) -> None:
    # An alias moved on this server invalidates the cache; a renewal that read the alias
    # before the move must not put the old version back for another two seconds.
    registry = _registry(tmp_path)
    registry.set_alias("m", "production", 1)
    resolver = ModelResolver(registry)
    registry.pause.armed = True
    renewal = threading.Thread(target=resolver.refresh, args=("m", "production"))
    renewal.start()
    assert registry.pause.read.wait(5)  # it has read version 1
    registry.set_alias("m", "production", 2)
    resolver.invalidate("m")  # what moving an alias through the API does here
    registry.pause.go.set()
    renewal.join(5)
    assert resolver.peek("m", "production") is None
    assert resolver.resolve("m", "production")[0].version == 2


def test_a_fresh_reference_is_due_for_renewal_only_past_half_its_lifetime(
    tmp_path: Path,
) -> None:
    resolver = ModelResolver(_registry(tmp_path))
    assert not resolver.due("m", "latest")  # nothing cached: nothing to renew
    assert resolver.resolve("m")[0].version == 2
    assert not resolver.due("m", "latest")  # just read
    key = ("m", "latest")
    read_at, record, labels = resolver._resolved[key]
    resolver._resolved[key] = (read_at - 1.5, record, labels)  # 1.5 s of a 2 s life
    assert resolver.due("m", "latest")
    assert resolver.peek("m", "latest") is not None  # still served meanwhile
