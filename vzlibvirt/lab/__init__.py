"""The self-contained vzlibvirt lab: a private libvirtd in its own network and mount
namespaces, a LAN namespace holding "Computer X", and tiny guests to wire.

It is test scaffolding (the e2e fixture and `vzlibvirt lab up|demo|down`), so unlike the
product it may use `ip`/`nsenter` freely, but only inside the namespaces it creates.
"""
