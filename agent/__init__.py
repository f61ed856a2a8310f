"""mallocbench agents: the mallocGame and the mapping policies (built by the game issue)."""
