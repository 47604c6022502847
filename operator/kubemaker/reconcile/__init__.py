"""Helpers shared by the controllers: the work queue, conditions, status patches."""
