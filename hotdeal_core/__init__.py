"""Shared kernel of hotdeal: what the order API, the stock worker and the reconciler all need.
Process packages import this and `schemas`; they never import each other."""
