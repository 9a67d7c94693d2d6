"""`hotdeal`: the operator CLI. Each command calls the same use case as its admin endpoint."""
