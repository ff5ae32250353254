import sys

from nbdeploy.frontends.cli import main

sys.exit(main())
