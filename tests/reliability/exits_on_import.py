"""A plugin module that calls ``sys.exit(3)`` on import (reliability tests)."""
import sys

sys.exit(3)
