"""The base every detector (and model) of this package is built on: the constructor is the configuration.

River's idea (``river.base.Base``): a detector's constructor parameters are
stored under their own names, unchanged, so the parameters can be read back
from the signature. That gives, once for every class:

* :meth:`Detector._params`: the configuration, ``{name: value}`` in signature order;
* :meth:`Detector.clone`: a fresh object of the same configuration that has
  learnt nothing (a parameter that is itself a :class:`Detector`, such as a
  baseline, is cloned too);
* ``repr``: ``Name(param=value, ...)``, what a model card quotes.

A subclass only writes ``__init__`` (validate, store each parameter under its
name, set up empty state); it overrides :meth:`clone` only when a fresh object
needs more than its parameters (the zone watch's zones, a shared baseline).

Examples
--------
>>> class Threshold(Detector):
...     def __init__(self, level: float = 3.0, window_min: int = 15) -> None:
...         self.level, self.window_min = level, window_min
...         self.seen = 0
>>> det = Threshold(level=4.5)
>>> det.seen = 12
>>> det, det.clone().seen
(Threshold(level=4.5, window_min=15), 0)
"""

from __future__ import annotations

import inspect
from typing import Any, Self


class Detector:
    """Parameters read from the constructor's signature: ``_params``, ``clone`` and ``repr`` for every detector."""

    def _params(self) -> dict[str, Any]:
        """The constructor's parameters and their values, in signature order (each stored under its own name)."""
        return {name: getattr(self, name) for name in inspect.signature(type(self)).parameters}

    def clone(self, new_params: dict[str, Any] | None = None) -> Self:
        """A fresh object with the same configuration that has learnt nothing.

        Parameters that are detectors themselves (a baseline) are cloned as well,
        unless ``new_params`` gives them: its values replace the parameters (e.g. a
        baseline to share), as they are.
        """
        new = new_params or {}
        params = {
            name: value.clone() if isinstance(value, Detector) else value for name, value in self._params().items() if name not in new
        }
        return type(self)(**{**params, **new})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{name}={value!r}' for name, value in self._params().items())})"
