"""restmcts: LLM self-training with process-reward-guided tree search (ReST-MCTS*) on Ray."""

__version__ = "0.1.0"
