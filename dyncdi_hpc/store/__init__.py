"""Storage: one Zarr v3 store per sweep, every group an xarray Dataset."""
