"""Analysis of reconstructions: sample-frame grids, displacement and strain, uncertainties."""
