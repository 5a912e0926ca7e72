"""vzlibvirt: Virtuozzo-style host-routed and bridged guest networking for libvirt.

Importing the package is cheap on purpose: the hook runs five times per guest life, so
heavy modules (lxml, pyroute2) are imported only by the code paths that need them.
"""

__version__ = "0.1.0"
XMLNS = "http://vzlibvirt.org/xmlns/network/1.0"
# Above libvirt's own limit (virsh reads a domain XML file of at most 10 MiB): a foreign
# guest with a large <metadata> of another tool must still pass untouched (issue 13).
MAX_XML_BYTES = 16 << 20
