"""``python -m configurable_agents``."""

from .cli import main

main()
