"""Benchmarks behind `vqa bench ...`: speed and memory as ratios to a baseline measured in the
same run (e.g. decode-only time of the same frames), so figures compare across machines."""
