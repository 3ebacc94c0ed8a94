"""Offline evaluation of the surge detectors: seeded surges injected into real calls, scored against EARS baselines.

Pure: no file or network I/O (numpy and h3 only). The modules, in the order an evaluation uses them:

- :mod:`~detectors.evaluation.events`: the known real surges and feed outages of the shared files;
- :mod:`~detectors.evaluation.calls`: the calls replayed (:class:`Calls`);
- :mod:`~detectors.evaluation.injection`: injection planning (:func:`plan_injections`, :func:`merge`);
- :mod:`~detectors.evaluation.replay`: the worker's detector suite replayed in event time;
- :mod:`~detectors.evaluation.scoring`: false alerts and detection delays (:class:`Score`);
- :mod:`~detectors.evaluation.baselines`: EARS C1, C2, C3 and a fixed threshold on the same regions and windows;
- :mod:`~detectors.evaluation.tuning`: each baseline tuned to our false-alert rate (:class:`Tuner`);
- :mod:`~detectors.evaluation.summary`: POD, delays, ROC points;
- :mod:`~detectors.evaluation.real_events`: our alerts around the known real events;
- :mod:`~detectors.evaluation.report`: the text report;
- :mod:`~detectors.evaluation.run`: all of it in one call (:func:`evaluate`).

The command is ``python bench/evaluate.py`` (it reads the file, writes ``results.json`` and plots the ROC curves).
"""

from detectors.evaluation.calls import Calls
from detectors.evaluation.injection import Injection, Plan, merge, plan_injections
from detectors.evaluation.report import format_table, report
from detectors.evaluation.run import SWEEP, evaluate
from detectors.evaluation.scoring import Score

__all__ = ["SWEEP", "Calls", "Injection", "Plan", "Score", "evaluate", "format_table", "merge", "plan_injections", "report"]
