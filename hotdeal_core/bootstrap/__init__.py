"""Composition: what each process is built from.

`resources.py` builds the shared resources of a process once (engine, Redis client, stock
store, outbox relay, group commits, the use cases' `Context`) and is the one place that
closes them; `consumer_process.py` is the shell of the two consumer processes (their
Kafka broker, periodic duties, whose leadership is `duty_locks.py`, the HTTP port, SIGUSR1). Each
process's composition root (`create_app` in order_api/, stock_worker/, reconciler/) calls
them.
"""
