"""``python -m harness.cli`` (what ``torchrun ... -m harness.cli`` starts): the ``harness`` command."""
import sys

from harness.cli.main import main

sys.exit(main())
