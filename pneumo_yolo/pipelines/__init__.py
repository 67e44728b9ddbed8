"""Whole runs of the library's stages on synthetic data: the demo, the ablation of the winners' steps, and the comparison of the detectors."""
