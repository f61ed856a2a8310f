"""Policies that are not learned: the baselines, XLA's greedy (xla-msa) and CP-SAT's optimum."""

from agent.heuristics.baselines import all_fast, all_slow, first_fit, random_legal
from agent.heuristics.cpsat import CpsatResult, solve_cpsat
from agent.heuristics.xla_msa import memory_boundedness, memory_boundedness_order, xla_msa

__all__ = ["CpsatResult", "all_fast", "all_slow", "first_fit", "memory_boundedness", "memory_boundedness_order", "random_legal", "solve_cpsat",
           "xla_msa"]
