from tradingstack.backup.cli import main

raise SystemExit(main())
