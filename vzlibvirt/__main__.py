"""`python -m vzlibvirt`: what the hook shims exec."""

import sys

from vzlibvirt.cli import main

sys.exit(main())
