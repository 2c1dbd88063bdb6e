"""Results of pure git computations, remembered while the rules they depend on stay the same.

What a branch holds that its base lacks, how far apart two commits are, which paths a landing
would conflict on: given the commits, these depend only on the repository's history and on the
rules that decide how files compare (attributes, configuration). A caller that knows those
rules are unchanged opens a `scope` naming them; inside it, `remembered` answers a repeated
question from memory. Outside any scope everything is computed afresh.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
MAX_RESULTS = 8192

_scope: Hashable | None = None
_results: OrderedDict[tuple[Hashable, ...], object] = OrderedDict()


@contextmanager
def scope(rules: Hashable) -> Iterator[None]:
    """Remember results under `rules`: what, besides the commits, they may depend on."""
    global _scope
    outer, _scope = _scope, rules
    try:
        yield
    finally:
        _scope = outer


def remembered(kind: str, key: tuple[Hashable, ...], compute: Callable[[], T]) -> T:
    """`compute()`, or its result for the same `kind`, `key` and scope. Results are shared:
    they must be immutable (tuples, not lists)."""
    if _scope is None:
        return compute()
    full = (kind, _scope, *key)
    try:
        found = _results[full]
    except KeyError:
        pass
    else:
        _results.move_to_end(full)
        return found  # type: ignore[return-value]
    value = compute()
    _results[full] = value
    while len(_results) > MAX_RESULTS:
        _results.popitem(last=False)
    return value


def forget() -> None:
    _results.clear()
