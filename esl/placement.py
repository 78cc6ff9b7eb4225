"""Where a Cluster places the next call: the policies, and what they see of each node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from esl.exceptions import ConnectionError

if TYPE_CHECKING:  # pragma: no cover
    from esl.inbound import Inbound

__all__ = ["FewestSessions", "NoNodeAvailable", "NodeInfo", "Placement", "RoundRobin"]


class NoNodeAvailable(ConnectionError):
    """Every node is down or at its limit."""


@dataclass(frozen=True)
class NodeInfo:
    """What a placement policy sees of one node."""

    name: str
    client: Inbound
    #: calls up on the node (last figure + picks since), None while unknown
    sessions: int | None
    #: the node's limit, None for none
    max_sessions: int | None


class Placement(Protocol):
    """Chooses a node among the candidates (all up and under their limit; never empty)."""

    def choose(self, candidates: list[NodeInfo]) -> NodeInfo: ...


class FewestSessions:
    """The node with the fewest calls (unknown counts last); ties go to the first node given."""

    def choose(self, candidates: list[NodeInfo]) -> NodeInfo:
        return min(candidates, key=lambda n: (n.sessions is None, n.sessions or 0))


class RoundRobin:
    """Each node in turn."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: list[NodeInfo]) -> NodeInfo:
        node = candidates[self._next % len(candidates)]
        self._next += 1
        return node
