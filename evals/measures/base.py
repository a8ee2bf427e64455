"""Measure objects (ir_measures style) and the one parser that turns strings into them.

A measure is a frozen value with declared parameters: ``nDCG @ 10`` builds ``nDCG@10``.
Strings are accepted only at the edges (the CLI, config files) through :func:`parse_measure`,
whose error message lists the names in :data:`MEASURES`, the registry every measure joins.

>>> from evals.measures import nDCG
>>> str(nDCG @ 10)
'nDCG@10'
>>> parse_measure("ndcg_cut_10") == nDCG @ 10
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from rag.core.errors import ConfigError

if TYPE_CHECKING:
    from evals.measures.prepare import Prepared

#: name -> measure class, filled by ``Measure.__init_subclass__``.
MEASURES: dict[str, type[Measure]] = {}
#: lower-cased aliases (``mrr``, ``hit``, ``recall``, trec_eval names) -> registry name.
ALIASES: dict[str, str] = {}


@dataclass(frozen=True)
class Measure:
    """Base of every measure. Subclasses set ``name`` and implement :meth:`_compute`.

    ``cutoff`` is the rank depth ``k`` (``None``: the whole ranking, where the measure allows it).
    """

    cutoff: int | None = None

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    needs_cutoff: ClassVar[bool] = False
    takes_cutoff: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            MEASURES[cls.name] = cls
            ALIASES[cls.name.lower()] = cls.name
            for a in cls.aliases:
                ALIASES[a.lower()] = cls.name

    def __post_init__(self) -> None:
        c = self.cutoff
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
            raise ConfigError(f"{self.name} cutoff must be an int >= 1, got {c!r}")
        if c is not None and not self.takes_cutoff:
            raise ConfigError(f"{self.name} takes no cutoff, got @{c}")

    def __matmul__(self, cutoff: int) -> Measure:
        """``nDCG @ 10``: the same measure at rank depth ``cutoff``."""
        return replace(self, cutoff=cutoff)

    def __str__(self) -> str:
        return self.name if self.cutoff is None else f"{self.name}@{self.cutoff}"

    def __repr__(self) -> str:
        return str(self)

    def depth(self) -> int | None:
        """Rank positions this measure reads (``None``: the whole ranking)."""
        return self.cutoff

    def compute(self, prep: Prepared) -> np.ndarray:
        """Per-query values, shape ``(Q,)``, in the order of ``prep.qids``."""
        if self.needs_cutoff and self.cutoff is None:
            raise ConfigError(f"{self.name} needs a cutoff, e.g. {self.name}@10")
        return self._compute(prep)

    def _compute(self, prep: Prepared) -> np.ndarray:
        raise NotImplementedError


_SPEC = re.compile(r"^\s*([A-Za-z_]+?)(?:\s*(?:@|_cut_|_cut\.|_|\.)\s*(\d+))?\s*$")


def accepted_names() -> str:
    """The accepted measure names, from the registry (for error messages and ``--help``)."""
    names = []
    for n, cls in MEASURES.items():
        shown = f"{n}@k" if cls.needs_cutoff else (f"{n}[@k]" if cls.takes_cutoff else n)
        names.append(shown)
    aliases = sorted(a for a, n in ALIASES.items() if a != n.lower())
    return f"{', '.join(names)} (aliases: {', '.join(aliases)})"


def parse_measure(spec: str | Measure) -> Measure:
    """Parse ``"ndcg@10"``, ``"nDCG@10"``, ``"ndcg_cut_10"``, ``"P_5"``, ``"mrr@10"``, ``"Rprec"``.

    Case-insensitive; trec_eval names (``ndcg_cut``, ``map_cut``, ``recip_rank``, ``P``, ``recall``,
    ``success``) are accepted. A :class:`Measure` passes through unchanged.
    """
    if isinstance(spec, Measure):
        return spec
    m = _SPEC.match(spec) if isinstance(spec, str) else None
    name = ALIASES.get(m.group(1).lower().rstrip("_")) if m else None
    if m is None or name is None:
        raise ConfigError(f"unknown measure {spec!r}; accepted: {accepted_names()}")
    cls = MEASURES[name]
    cutoff = int(m.group(2)) if m.group(2) else None
    measure = cls(cutoff=cutoff)
    if cls.needs_cutoff and cutoff is None:
        raise ConfigError(f"measure {spec!r} needs a cutoff, e.g. {name}@10")
    return measure


def parse_measures(specs: str | list[str | Measure]) -> list[Measure]:
    """Parse a comma-separated string or a list; duplicates are dropped, order kept."""
    items = [s for s in specs.split(",") if s.strip()] if isinstance(specs, str) else list(specs)
    if not items:
        raise ConfigError(f"no measures given; accepted: {accepted_names()}")
    return list(dict.fromkeys(parse_measure(s) for s in items))
