"""Shared package of the ML governance backbone: event models, settings, sessions, ledger, notifier."""
