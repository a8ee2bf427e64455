"""Search kernels: exact MaxSim, binary popcount scans, blocked dense top-k, batched BM25.

Each module holds one kernel with its cost model in the docstring.
"""
