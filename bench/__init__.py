"""The performance benchmark of the backbone (`make bench`): cold start, replay throughput, memory, cost."""
