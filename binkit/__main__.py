"""``python -m binkit`` is the ``binkit`` command."""

from binkit.cli import main

raise SystemExit(main())
