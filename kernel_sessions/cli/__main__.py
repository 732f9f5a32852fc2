"""``python -m kernel_sessions.cli``: the command line."""

from kernel_sessions.cli.app import main

raise SystemExit(main())
