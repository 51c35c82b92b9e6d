"""Helpers for running a real federation: credentials, health checks."""
