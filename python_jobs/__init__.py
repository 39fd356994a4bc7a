"""Studyin analytics warehouse: tracker, simulator, pipeline and python jobs."""
