"""Reconstruction: projection phase retrieval, losses, regularisers and the AD optimiser loop."""
