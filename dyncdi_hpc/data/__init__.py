"""Datasets: simulated crystals and their diffraction, loaded files, validation."""
