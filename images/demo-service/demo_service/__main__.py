"""`python -m demo_service`: configuration from the environment (see demo_service.config)."""

from demo_service.app import main

main()
