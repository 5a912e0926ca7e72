"""vzlibvirt: Virtuozzo-style host-routed and bridged guest networking for libvirt.

Importing the package is cheap on purpose: the hook runs five times per guest life, so
heavy modules (lxml, pyroute2) are imported only by the code paths that need them.
"""

__version__ = "0.1.0"
