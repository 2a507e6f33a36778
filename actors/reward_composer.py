"""Per-step rewards from scored frames: the weighted sum of scorer outputs the learner trains on.

Frames arrive every ``frame_stride`` steps (plus the reset frame and the episode's last step). The
*interval* of frame j is the steps (t_{j-1}, t_j]; its reward is placed on step t_j, the step whose
info carries frame j. Steps between frames get 0 from the scorer terms. One rule for every stride,
and it never needs a frame that has not been rendered yet, so an episode cut between two frames by
RLlib's ``truncate_episodes`` sampling is handled: the interval's reward lands in the next chunk.

Each configured component c with weight w_c contributes at t_j:

- potential components (progress-type): ``w_c * (c(frame_j) - c(frame_{j-1}))``, so an episode's
  return telescopes to ``w_c * (c(last frame) - c(reset frame))`` whatever the stride;
- rate components (the rest): ``w_c * c(frame_j) * (t_j - t_{j-1})``, the value held over the interval,
  so a return does not depend on the stride either.

The name ``reward`` means the scorer's scalar reward; any other name must be one of the scorer's
components, otherwise :class:`RewardCompositionError` says which names the scorer did return.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence


class RewardCompositionError(ValueError):
    """The configured reward components do not fit the scorer's answers."""


def component_value(result: Any, name: str) -> float:
    """``result.reward`` for ``reward``, else ``result.components[name]``; a clear error if it is missing."""
    if name == "reward":
        return float(result.reward)
    comps = getattr(result, "components", None) or {}
    if name not in comps:
        raise RewardCompositionError(
            f"reward.components asks for {name!r} but the scorer returned components {sorted(comps)} "
            f"(use 'reward' for its scalar reward)")
    return float(comps[name])


class RewardComposer:
    """Turns the scored frames of an episode into the per-step reward terms of the reward path (see module doc)."""

    def __init__(self, components: Mapping[str, float], potential_components: Sequence[str] = ()) -> None:
        self.weights: Dict[str, float] = {str(k): float(v) for k, v in dict(components).items()}
        if not self.weights:
            raise RewardCompositionError("reward.components is empty: name at least one scorer output, e.g. {reward: 1.0}")
        self.potential = set(potential_components)
        unknown = sorted(self.potential - set(self.weights))
        if unknown:
            raise RewardCompositionError(
                f"reward.potential_components {unknown} are not in reward.components {sorted(self.weights)}")

    def interval_terms(self, current: Any, previous: Any, interval: int) -> Dict[str, float]:
        """Weighted contribution of each component for the interval closed by ``current``.

        ``previous`` is the scored frame opening the interval (the reset frame for the first one);
        ``interval`` the number of env steps between the two frames (>= 1).
        """
        if interval < 1:
            raise ValueError(f"a frame interval spans at least one step, got {interval}")
        terms = {}
        for name, w in self.weights.items():
            value = component_value(current, name)
            if name in self.potential:
                terms[name] = w * (value - component_value(previous, name))
            else:
                terms[name] = w * value * interval
        return terms

    def check(self, result: Any) -> None:
        """Fail early if ``result`` lacks a configured component."""
        for name in self.weights:
            component_value(result, name)
