"""C{python -m h2proxy_tools.audit}: the same as the C{h2proxy-audit} command."""

import sys

from h2proxy_tools.audit.cli import main

sys.exit(main())
