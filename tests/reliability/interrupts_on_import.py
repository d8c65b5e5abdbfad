"""A plugin module that raises ``KeyboardInterrupt`` on import (reliability tests)."""
raise KeyboardInterrupt
