"""The one error a reward model or its scorer raises when it cannot be built or cannot take an input."""


class ScorerError(ValueError):
    """A scorer (or the reward model under it) cannot be built or cannot take an input; the message says why."""
