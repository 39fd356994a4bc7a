"""Ingest: event schemas, validation and the tracker, the one way events enter the warehouse."""
