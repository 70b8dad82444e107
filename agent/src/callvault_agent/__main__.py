"""`python -m callvault_agent` is the `callvault-agent` command."""

from callvault_agent.cli import main

raise SystemExit(main())
