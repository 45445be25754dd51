"""The multi-reflection stage of a sweep: sets of datasets that are one crystal seen through
several reflections, turned after the merge into one displacement vector field.

sets (what a set is: its reflections, simulation and truth), independent (the classic route:
single-reflection objects aligned in the sample frame and combined by least squares, then the
joint AD from them), stage (a sweep's sets, from the store's groups to multi/<name>).
"""
