from gliocore.cli import main

raise SystemExit(main())
