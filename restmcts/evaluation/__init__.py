"""jobs/evaluate.py's library: the paper's comparisons on any task, and the report they make.

    grid         every strategy at several budgets on the held-out split (Figure 2)
    runs         self-training runs side by side, and false positives in their policy data (Table 2)
    prm_quality  a PRM on MCTS*-inferred values against one on Monte Carlo labels (Table 3)
    report       results.csv, the plots and report.md
"""
