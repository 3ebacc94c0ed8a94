"""Watchfloor streams: event schema, ingestion, Faust agents and Redis state."""
