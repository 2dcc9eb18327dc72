"""``python -m clipasso_engine`` is the ``clipasso`` command."""

from .cli import main

raise SystemExit(main())
