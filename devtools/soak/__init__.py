"""The soak (`make soak`): hours-long behaviour in minutes; see __main__.py and run.py."""
