"""The stock worker process (FastStream): settles orders, releases stock exactly once."""
