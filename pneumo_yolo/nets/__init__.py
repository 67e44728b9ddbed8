"""The networks: one detector interface (:mod:`.detector`) with a family per arch, the image classifier, and the one loader of weights files."""
