"""Pulling message traces from Microsoft 365 (the Graph message-trace API) into a folder the readers load."""
