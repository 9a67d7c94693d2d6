"""Shared kernel of hotdeal: what the order API, the stock worker and the reconciler all need.

Domain rules, the stock store port and its Redis/Lua adapter, the tables, the outbox, the
use cases, and settings pieces. Process packages import this; they never import each other.
"""
