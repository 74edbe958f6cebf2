"""Uncertainty for similarity cells: bootstrap intervals, jackknife errors, permutation tests, and
leave-one-out influence (:mod:`.loo`).

Every statistic here works on per-layer metric states (the two-stage metric contract of
`repsim_cli.metrics.contract`), never on the activation stores: resampling examples either
re-weights a layer's centred Gram (inner-product metrics) or re-prepares the layer's state on the
resampled rows of its in-memory data (every other metric).
"""
