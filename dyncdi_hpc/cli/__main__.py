"""`python -m dyncdi_hpc.cli`: the dyncdi command."""

from . import main

main(prog_name="dyncdi")
