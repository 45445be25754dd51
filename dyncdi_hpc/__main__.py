"""`python -m dyncdi_hpc`: the dyncdi command."""

from .cli import main

main(prog_name="dyncdi")
