"""Built-in method plugins of stereodistill (installed as ``stereodistill_plugins``)."""
