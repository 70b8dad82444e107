"""callvault-agent: reports an operator's activity and screenshots to a callvault server."""

__version__ = "0.1.0"
