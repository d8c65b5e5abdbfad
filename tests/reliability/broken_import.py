"""A plugin module that fails on import (reliability tests)."""
raise RuntimeError("this plugin is broken on purpose")
