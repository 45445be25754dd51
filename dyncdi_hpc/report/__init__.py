"""Report: figures of merged results, loss curves and uncertainties, and a page linking them."""
