"""dyncdi-hpc: batch BCDI reconstructions with kinematical and dynamical forward models.

The command line (`dyncdi`) is the main entry point; modules follow the data flow: data ->
physics -> recon -> task -> sweep -> schedule -> store -> merge -> analysis -> report.
"""

from .provenance import package_version

__version__ = package_version()

__all__ = ["__version__"]
