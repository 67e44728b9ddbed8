"""Data commands: ``convert``."""
