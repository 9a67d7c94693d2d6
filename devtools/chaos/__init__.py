"""`make chaos`: faults under load (see devtools.chaos.run)."""
