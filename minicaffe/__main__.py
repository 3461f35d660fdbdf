from minicaffe.cli import main

raise SystemExit(main())
