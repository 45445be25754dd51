"""Scheduling: cluster profiles as dask config, task submission, progress, the sweep driver."""
