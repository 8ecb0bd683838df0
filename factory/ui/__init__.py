"""What the user sees while a build runs: one presenter draws the stages' events (factory.core.events)."""

from factory.ui.presenter import Mode, mode_for, presenter_for

__all__ = ["Mode", "mode_for", "presenter_for"]
