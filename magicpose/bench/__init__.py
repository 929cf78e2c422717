"""Benchmarks: FLOPs and wall clock of the sampling loop (`sampling`), the training step (`training`), the data
loader (`data`). `magicpose benchmark` runs them."""
