"""In-memory fakes of the ports in hotdeal_core/ports/, for the unit tier."""
