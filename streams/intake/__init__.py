"""The HTTP intake: a CAD system pushes calls and status changes (``python -m streams.intake``; see docs/intake.md).

:mod:`streams.intake.publish` is the Kafka adapter every door shares (the intake, pollers).
"""
