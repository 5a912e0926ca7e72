"""vzlibvirt: Virtuozzo-style host-routed and bridged guest networking for libvirt.

Importing the package is cheap on purpose: the hook runs five times per guest life, so
heavy modules (lxml, pyroute2) are imported only by the code paths that need them.
"""

__version__ = "0.1.0"
XMLNS = "http://vzlibvirt.org/xmlns/network/1.0"
MAX_XML_BYTES = 1 << 20  # libvirt domain XML is kilobytes; anything this large is hostile
