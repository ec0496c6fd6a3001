"""The protocol registry that the engine, the CLI and the GUI ask.

Protocols join it through the `labctl.protocols` entry-point group, read once on first use:
labctl's own declare themselves in its pyproject.toml exactly as a protocol in a user's package
does in that package's (`name = "module:ProtocolClass"`), so a new protocol appears in
`labctl protocols`, `labctl run` and the GUI with no edit to labctl. A plugin that fails to load
or that reuses a taken name is left out with a warning (`PROTOCOLS.errors` keeps why); it never
takes the built-ins down with it. Scripts and tests may also add a protocol object directly
(`PROTOCOLS[name] = protocol`).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import Protocol

ENTRY_POINT_GROUP = "labctl.protocols"
log = logging.getLogger(__name__)


class ProtocolRegistry(MutableMapping[str, "Protocol"]):
    """name -> Protocol instance, loaded from the entry points at the first access: labctl's own
    protocols first, then the plugins, each by name (so a plugin cannot shadow a built-in)."""

    def __init__(self, group: str = ENTRY_POINT_GROUP):
        self.group = group
        self.errors: dict[str, str] = {}  # entry point -> why it was left out
        self._protocols: dict[str, Protocol] | None = None

    def _loaded(self) -> dict[str, Protocol]:
        if self._protocols is None:
            protocols: dict[str, Protocol] = {}
            self._protocols = protocols
            for ep in sorted(entry_points(group=self.group), key=lambda ep: (_distribution(ep) != "labctl", ep.name)):
                self._join(ep, protocols)
        return self._protocols

    def _join(self, ep: EntryPoint, protocols: dict[str, Protocol]) -> None:
        from .engine import Protocol

        where = f"{ep.name} = {ep.value!r} ({_distribution(ep) or 'unknown package'})"
        try:
            obj = ep.load()
            protocol = obj() if isinstance(obj, type) else obj
        except Exception as exc:  # a broken plugin must not take the registry down
            self._refuse(where, f"does not load: {type(exc).__name__}: {exc}")
            return
        if not isinstance(protocol, Protocol):
            self._refuse(where, f"is a {type(protocol).__name__}, not a labctl.engine.Protocol")
        elif getattr(protocol, "name", None) != ep.name:
            self._refuse(where, f"names its protocol {getattr(protocol, 'name', None)!r}; the entry point's "
                                f"name must be the protocol's name")
        elif ep.name in protocols:
            self._refuse(where, f"the name {ep.name!r} is taken by {type(protocols[ep.name]).__module__}")
        else:
            protocols[ep.name] = protocol

    def _refuse(self, where: str, why: str) -> None:
        self.errors[where] = why
        log.warning("protocol entry point %s left out: %s", where, why)

    def __getitem__(self, name: str) -> Protocol:
        return self._loaded()[name]

    def __setitem__(self, name: str, protocol: Protocol) -> None:
        self._loaded()[name] = protocol

    def __delitem__(self, name: str) -> None:
        del self._loaded()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


def _distribution(ep: EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


PROTOCOLS = ProtocolRegistry()
