"""The reconciler process (FastStream): flushes ended deals, recovers, releases orphans."""
