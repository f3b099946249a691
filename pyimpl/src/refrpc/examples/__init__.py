"""Worked examples: the paper's three applications (MapReduce, RL, parameter server)."""
