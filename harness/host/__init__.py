"""Plugin host: the pluggy manager (entry points, fault-isolated loading) and the built-in ``core`` plugin."""
