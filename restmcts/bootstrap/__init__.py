"""The starting models the self-training loop begins from, built with the project's own parts.

    arith.py       the embedded default from nothing: tiny models (tiny.py) on the arith task
    pretrained.py  a pretrained LLM as the policy, and an initial PRM for it
    labels.py      Monte Carlo value labels for the initial PRM, as replay rows (shared by both)
    inprocess.py   the engines and learners run in this process, and how bootstrap.* maps onto them
"""
