"""Statistics of a comparison: resampling, permutation nulls and leave-one-out influence."""
