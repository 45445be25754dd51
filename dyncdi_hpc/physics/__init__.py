"""Pure JAX physics: geometry, crystals and forward models. No I/O, no Dask."""
