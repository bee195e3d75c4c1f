"""Pull message traces from Microsoft 365 through the Graph message-trace API (``exo-deferrals pull``).

``client`` (HTTP within Graph's quota, retries, plain errors), ``auth`` (MSAL sign-in, token cache) and ``run``
(windows, the output folder, resuming, details). The folder is read back by :mod:`analysis.io.graph`.
"""
