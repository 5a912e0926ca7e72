"""The hook shim template, `shim.sh.in`: data, no code.

It lives here, where the shims belong in the source tree, and the build carries this
directory into the package as `vzlibvirt.hooks` (pyproject.toml), so install-hooks reads
the same file from a checkout, an editable install and a wheel.
"""
