"""The self-training loop (Algorithm 1): search -> extract -> train -> sync -> evaluate."""

from restmcts.loop.driver import SelfTraining, self_train

__all__ = ["SelfTraining", "self_train"]
